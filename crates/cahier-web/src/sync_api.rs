//! `/api/sync/v1`: the sync endpoints field replicas call (docs/SYNC.md). Authenticated by a
//! device credential (`Authorization: Device <token>`), except device registration, which
//! takes the user's e-mail and password. Every call goes through the store's access policy.

use crate::AppState;
use crate::error::AppError;
use axum::Router;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::{HeaderMap, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cahier_core::Subject;
use cahier_store::sync::Device;
use cahier_store::sync::proto::{PullDoc, PushDoc, RegisterRequest, RegisterResponse};
use serde::Deserialize;

/// Most documents in one push or pull request.
pub const MAX_DOCS: usize = 1000;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/devices", post(register_device))
        .route("/reference", get(reference))
        .route("/feed", get(feed))
        .route("/pull", post(pull))
        .route("/push", post(push))
        .route("/check", post(check))
}

/// A request from a registered, unrevoked device.
pub struct DeviceCaller {
    /// The device.
    pub device: Device,
    /// Its user, for the policy.
    pub subject: Subject,
}

impl FromRequestParts<AppState> for DeviceCaller {
    type Rejection = AppError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let credential = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Device "))
            .ok_or_else(|| {
                AppError::Unauthorized(
                    "send the device credential as Authorization: Device <token>".into(),
                )
            })?;
        let device = state
            .store
            .authenticate_device(credential)
            .await?
            .ok_or_else(|| {
                AppError::Unauthorized(
                    "this device is unknown or has been revoked; register it again".into(),
                )
            })?;
        let subject = state.store.subject(device.user_id).await?;
        Ok(DeviceCaller { device, subject })
    }
}

fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    serde_json::from_slice(bytes)
        .map_err(|e| AppError::BadRequest(format!("the body is not a valid sync request: {e}")))
}

async fn register_device(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    let request: RegisterRequest = json_body(&body)?;
    let client = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("direct")
        .to_owned();
    let (device, token) = state
        .store
        .register_device(&request.email, &request.password, &request.name, &client)
        .await
        .map_err(|e| match e {
            cahier_store::StoreError::Invalid { .. } => {
                AppError::Unauthorized("wrong e-mail or password".into())
            }
            other => other.into(),
        })?;
    Ok(axum::Json(RegisterResponse {
        device: device.uuid,
        token,
        user_id: device.user_id,
    })
    .into_response())
}

async fn reference(
    State(state): State<AppState>,
    caller: DeviceCaller,
) -> Result<Response, AppError> {
    Ok(axum::Json(state.store.reference(&caller.subject).await?).into_response())
}

#[derive(Debug, Deserialize)]
struct FeedQuery {
    since: Option<i64>,
    limit: Option<i64>,
}

async fn feed(
    State(state): State<AppState>,
    caller: DeviceCaller,
    Query(query): Query<FeedQuery>,
) -> Result<Response, AppError> {
    let since = query.since.unwrap_or(0);
    if since < 0 {
        return Err(AppError::invalid("since", "must not be negative"));
    }
    let feed = state
        .store
        .feed(&caller.subject, since, query.limit.unwrap_or(1000))
        .await?;
    Ok(axum::Json(feed).into_response())
}

#[derive(Debug, Deserialize)]
struct PullRequest {
    docs: Vec<PullDoc>,
}

async fn pull(
    State(state): State<AppState>,
    caller: DeviceCaller,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    let request: PullRequest = json_body(&body)?;
    if request.docs.len() > MAX_DOCS {
        return Err(AppError::invalid(
            "docs",
            format!("at most {MAX_DOCS} documents per request"),
        ));
    }
    Ok(axum::Json(state.store.pull(&caller.subject, &request.docs).await?).into_response())
}

#[derive(Debug, Deserialize)]
struct PushRequest {
    docs: Vec<PushDoc>,
}

async fn push(
    State(state): State<AppState>,
    caller: DeviceCaller,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    let request: PushRequest = json_body(&body)?;
    if request.docs.len() > MAX_DOCS {
        return Err(AppError::invalid(
            "docs",
            format!("at most {MAX_DOCS} documents per request"),
        ));
    }
    Ok(axum::Json(
        state
            .store
            .push(&caller.subject, &caller.device, request.docs)
            .await?,
    )
    .into_response())
}

#[derive(Debug, Deserialize)]
struct CheckRequest {
    uuids: Vec<String>,
}

async fn check(
    State(state): State<AppState>,
    caller: DeviceCaller,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    let request: CheckRequest = json_body(&body)?;
    let revoked = state.store.revoked(&caller.subject, &request.uuids).await?;
    Ok(axum::Json(serde_json::json!({ "revoked": revoked })).into_response())
}
