//! Cahier's HTTP face: the web UI (server-rendered askama pages with a little plain JavaScript)
//! and the eLabFTW-compatible REST API v2. Handlers are thin: they authenticate, call one store
//! method (which applies the access policy), and render HTML or JSON.

pub mod api;
pub mod assets;
mod audit_trail;
pub mod auth;
pub mod error;
pub mod i18n;
pub mod sync_api;
pub mod ui;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use cahier_store::Store;
use std::sync::Arc;

/// Settings the web layer needs.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The URL users reach this instance at (used for links and for the cookies' Secure flag).
    pub public_url: String,
    /// Largest accepted request body for forms and JSON, bytes.
    pub max_body_bytes: usize,
    /// Software version reported by `/api/v2/info`.
    pub version: String,
}

impl WebConfig {
    /// Whether cookies must be marked Secure (the public URL is https).
    pub fn is_https(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

/// Shared state of every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Storage, with the access policy.
    pub store: Store,
    /// Web settings.
    pub config: Arc<WebConfig>,
    /// Set when this process serves a field replica.
    pub replica: Option<Arc<ReplicaHandle>>,
    /// The timestamping authority, when one is configured.
    pub tsa: Option<Arc<cahier_trace::TsaConfig>>,
}

/// What the web layer knows of the field replica it serves.
#[derive(Debug)]
pub struct ReplicaHandle {
    /// The replica's user (every visitor is signed in as them).
    pub user_id: i64,
    /// Where sync stands, updated by the background sync task.
    pub status: std::sync::Mutex<ReplicaStatus>,
    /// Wakes the background sync (after a local change, or on "sync now").
    pub sync_now: tokio::sync::Notify,
}

/// Where sync stands, for the banner every replica page shows.
#[derive(Debug, Clone, Default)]
pub struct ReplicaStatus {
    /// Whether the last attempt reached the server.
    pub online: bool,
    /// Last successful sync, ms.
    pub last_sync_ms: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// The whole application: UI, API, health check, static assets.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    Router::new()
        .merge(ui::routes())
        .nest("/api/v2", api::routes(&state.config.version))
        .nest("/api/sync/v1", sync_api::routes())
        .route("/healthz", axum::routing::get(healthz))
        .merge(assets::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::csrf_guard,
        ))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn healthz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if state.store.is_healthy().await {
        (axum::http::StatusCode::OK, "ok").into_response()
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "database unavailable",
        )
            .into_response()
    }
}

/// Headers that keep pages from being framed, sniffed or made to run foreign scripts.
async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // A handler may set a stricter policy (attachments are served in a sandbox).
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; \
             object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
        ));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
