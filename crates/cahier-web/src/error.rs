//! The one error type of the web layer. Under `/api` it renders as eLabFTW's JSON error
//! (`{code, message, description}`); in the UI as a page in the user's language. 5xx responses
//! log the cause and show only a fixed text with a request id.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cahier_store::StoreError;

/// An error answered to the client.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request cannot be parsed.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404: missing, or not readable by the caller (indistinguishable on purpose).
    #[error("{0} not found")]
    NotFound(String),
    /// 404: a field copy does not hold this attachment file and cannot fetch it now; the
    /// message (already in the user's language) says what to do.
    #[error("{0}")]
    FileAbsent(String),
    /// 409: clashes with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is too large.
    #[error("request too large: {0}")]
    TooLarge(String),
    /// 422: a value breaks a rule; names the field.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What to do.
        message: String,
    },
    /// 429: throttled.
    #[error("{0}")]
    TooManyRequests(String),
    /// 502: an outside service (the timestamping authority) failed or answered wrongly;
    /// nothing was stored and the user may retry.
    #[error("{0}")]
    BadGateway(String),
    /// 501: the feature is not built yet.
    #[error("{0}")]
    NotImplemented(String),
    /// 500: our fault; details are logged, never shown.
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) | Self::FileAbsent(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message shown to the user (never internal details).
    pub fn public_message(&self) -> String {
        match self {
            Self::Internal(id) => format!(
                "internal error (request {id}); the administrator can find details in the log"
            ),
            other => other.to_string(),
        }
    }

    /// An "invalid field" error.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// Logs an unexpected failure and returns the error to show.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        let id = hex::encode(rand::random::<[u8; 6]>());
        let mut chain = cause.to_string();
        let mut source = cause.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(request_id = %id, error = %chain, "request failed");
        Self::Internal(id)
    }

    /// The JSON body eLabFTW's API uses for errors.
    pub fn json_body(&self) -> serde_json::Value {
        let status = self.status();
        serde_json::json!({
            "code": status.as_u16(),
            "message": status.canonical_reason().unwrap_or("Error"),
            "description": self.public_message(),
        })
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => Self::NotFound(what.to_owned()),
            StoreError::Forbidden(message) => Self::Forbidden(message),
            StoreError::Invalid { field, message } => Self::Invalid { field, message },
            StoreError::Conflict(message) => Self::Conflict(message),
            StoreError::Throttled { minutes } => Self::TooManyRequests(format!(
                "too many failed attempts; try again in {minutes} minutes"
            )),
            other => Self::internal(&other),
        }
    }
}

impl From<cahier_trace::TraceError> for AppError {
    fn from(error: cahier_trace::TraceError) -> Self {
        use cahier_trace::TraceError;
        match error {
            TraceError::NotConfigured => Self::Conflict(error.to_string()),
            TraceError::BadAnswer(message) => {
                tracing::warn!(reason = %message, "timestamping failed");
                Self::BadGateway(format!(
                    "timestamping failed, nothing was stored: {message}"
                ))
            }
            TraceError::Store(store) => store.into(),
            other => Self::internal(&other),
        }
    }
}

impl From<cahier_core::DocError> for AppError {
    fn from(error: cahier_core::DocError) -> Self {
        StoreError::from(error).into()
    }
}

impl IntoResponse for AppError {
    /// The default rendering is JSON; the UI wraps handlers to render pages instead
    /// (see [`crate::ui::UiError`]).
    fn into_response(self) -> Response {
        (self.status(), axum::Json(self.json_body())).into_response()
    }
}
