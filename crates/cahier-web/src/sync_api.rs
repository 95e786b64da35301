//! `/api/sync/v1`: the sync endpoints field replicas call (docs/SYNC.md). Authenticated by a
//! device credential (`Authorization: Device <token>`), except device registration, which
//! takes the user's e-mail and password. Every call goes through the store's access policy.

use crate::AppState;
use crate::error::AppError;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path};
use axum::extract::{FromRequestParts, Query, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, header, request::Parts};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cahier_core::Subject;
use cahier_store::blobs::is_hash;
use cahier_store::sync::Device;
use cahier_store::sync::proto::{
    BookingRequests, Preferences, PreferencesAnswer, PullDoc, PullEntry, PushDoc, RegisterRequest,
    RegisterResponse,
};
use futures_util::StreamExt;
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
        .route("/bookings", post(bookings))
        .route("/preferences", post(preferences))
        .route(
            "/blobs/{sha256}",
            get(download_blob)
                .head(blob_exists)
                .put(upload_blob.layer(DefaultBodyLimit::disable())),
        )
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

/// `GET /reference`: the records a replica needs, with their version as `ETag`. A replica
/// that sends that version in `If-None-Match` gets `304 Not Modified` while they have not
/// changed, and the records are not even read (a sync with nothing to do stays cheap).
async fn reference(
    State(state): State<AppState>,
    caller: DeviceCaller,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let held = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'));
    let Some(reference) = state
        .store
        .reference_if_changed(&caller.subject, held)
        .await?
    else {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Some(etag) = held.and_then(|v| HeaderValue::from_str(&format!("\"{v}\"")).ok()) {
            response.headers_mut().insert(header::ETAG, etag);
        }
        return Ok(response);
    };
    let etag = reference
        .version
        .as_deref()
        .and_then(|v| HeaderValue::from_str(&format!("\"{v}\"")).ok());
    let mut response = axum::Json(reference).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct FeedQuery {
    since: Option<i64>,
    limit: Option<i64>,
    /// The history the replica read `since` under (docs/SYNC.md, "A restored server").
    history: Option<String>,
    /// The mark of the replica's last acknowledged push that no feed read covered yet.
    pushed: Option<String>,
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
        .feed_in_history(
            &caller.subject,
            since,
            query.limit.unwrap_or(1000),
            query.history.as_deref(),
            query.pushed.as_deref(),
        )
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
    // Bad heads are refused before the answer starts (a 422, not a cut-off stream).
    for doc in &request.docs {
        if cahier_core::document::heads_from_string(&doc.have).is_err() {
            return Err(AppError::invalid(
                "have",
                format!("not a list of change hashes: {}", doc.have),
            ));
        }
    }
    // The first part is read before the answer starts, so a failure there is still an error
    // status; later parts follow as they are read.
    let mut docs = request.docs;
    let rest = docs.split_off(docs.len().min(PULL_PART));
    let first = state.store.pull(&caller.subject, &docs).await?;
    let mut text = String::from("[");
    push_entries(&mut text, &first, true)?;
    let parts: Vec<Vec<PullDoc>> = rest
        .chunks(PULL_PART_NEXT)
        .map(<[PullDoc]>::to_vec)
        .collect();
    let any = !first.is_empty();
    let head = futures_util::stream::once(async move { Ok::<_, std::io::Error>(text) });
    let store = state.store.clone();
    let subject = caller.subject;
    let tail = futures_util::stream::unfold(
        (parts.into_iter(), any, false),
        move |(mut parts, any, done)| {
            let store = store.clone();
            let subject = subject.clone();
            async move {
                if done {
                    return None;
                }
                let Some(part) = parts.next() else {
                    return Some((Ok("\n]\n".to_owned()), (parts, any, true)));
                };
                let mut text = String::new();
                let read = match store.pull(&subject, &part).await {
                    Ok(entries) => {
                        push_entries(&mut text, &entries, !any).map(|()| any || !entries.is_empty())
                    }
                    Err(error) => Err(AppError::from(error)),
                };
                match read {
                    Ok(any) => Some((Ok(text), (parts, any, false))),
                    Err(error) => {
                        // Headers are gone: the answer is cut short, which the replica
                        // sees as a failed request (nothing of a part is half-written).
                        tracing::warn!(?error, "a pull answer was cut short");
                        Some((
                            Err(std::io::Error::other("reading the pull failed")),
                            (parts, any, true),
                        ))
                    }
                }
            }
        },
    );
    let mut response = Response::new(Body::from_stream(head.chain(tail)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Entries of a pull answer's first part: the replica starts writing them while the server
/// reads the next (docs/SYNC.md, "A streamed pull").
const PULL_PART: usize = 50;
/// Entries of each next part (fewer, larger reads: each has a few set queries to make).
const PULL_PART_NEXT: usize = 200;

/// Appends entries to a streamed pull answer, one per line (a JSON array all the same, as
/// older replicas read it): `first` when none was written before.
fn push_entries(text: &mut String, entries: &[PullEntry], first: bool) -> Result<(), AppError> {
    for (i, entry) in entries.iter().enumerate() {
        text.push_str(if first && i == 0 { "\n" } else { ",\n" });
        let json = serde_json::to_string(entry).map_err(|e| AppError::internal(&e))?;
        text.push_str(&json);
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct PushRequest {
    docs: Vec<PushDoc>,
    /// The mark of the replica's last acknowledged push that no feed read covered yet
    /// (docs/SYNC.md, "A restored server"); absent from older replicas.
    #[serde(default)]
    after: Option<String>,
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
            .push_after(
                &caller.subject,
                &caller.device,
                request.docs,
                request.after.as_deref(),
            )
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

/// `POST /bookings` `{requests, changes}`: decides the booking requests a replica made
/// offline, then the changes of the lab's bookings it asked for (cancel, move, approve,
/// refuse), each in its own transaction with the rules of the same action online, recording
/// each outcome by request id (a request sent again gets the same answer); answers the
/// outcomes in order, then the bookings and rules of the resources the user may read, for the
/// replica's calendar.
async fn bookings(
    State(state): State<AppState>,
    caller: DeviceCaller,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    let request: BookingRequests = json_body(&body)?;
    if request.requests.len() > MAX_DOCS {
        return Err(AppError::invalid(
            "requests",
            format!("at most {MAX_DOCS} booking requests per request"),
        ));
    }
    if request.changes.len() > MAX_DOCS {
        return Err(AppError::invalid(
            "changes",
            format!("at most {MAX_DOCS} booking changes per request"),
        ));
    }
    let outcomes = state
        .store
        .decide_booking_requests(&caller.subject, &caller.device, &request.requests)
        .await?;
    // Changes of the lab's bookings (cancel, move, approve, refuse), decided the same way.
    let change_outcomes = state
        .store
        .decide_booking_changes(&caller.subject, &caller.device, &request.changes)
        .await?;
    let mut answer = state.store.booking_mirror(&caller.subject).await?;
    answer.outcomes = outcomes;
    answer.change_outcomes = change_outcomes;
    Ok(axum::Json(answer).into_response())
}

/// `POST /preferences`: the user's preferences chosen on the replica (their time zone),
/// applied to the device's own user when newer than the last applied from this device.
async fn preferences(
    State(state): State<AppState>,
    caller: DeviceCaller,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    let request: Preferences = json_body(&body)?;
    let applied = state
        .store
        .apply_device_preferences(&caller.device, &caller.subject, &request)
        .await?;
    Ok(axum::Json(PreferencesAnswer { applied }).into_response())
}

fn parse_hash(sha256: &str) -> Result<&str, AppError> {
    if is_hash(sha256) {
        Ok(sha256)
    } else {
        Err(AppError::NotFound(
            "file (expected a SHA-256 in lowercase hex)".into(),
        ))
    }
}

/// `HEAD /blobs/{sha256}`: 200 when the server holds the file and the device may know it (it
/// uploaded it, or an entity its user may read references it), else 404. Replicas ask before
/// uploading, so a file is sent once; the answer is exactly what a push will accept.
async fn blob_exists(
    State(state): State<AppState>,
    caller: DeviceCaller,
    Path(sha256): Path<String>,
) -> Result<Response, AppError> {
    let sha256 = parse_hash(&sha256)?;
    let store = &state.store;
    let known = store.blob_store()?.exists(sha256).await
        && store
            .blob_known_to(&caller.subject, &caller.device, sha256)
            .await?;
    Ok(if known {
        StatusCode::OK.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    })
}

/// `PUT /blobs/{sha256}`: streams the body into the blob store, hashing it. Kept only if it
/// hashes to `sha256` (else 422) and fits `max_upload_mb` (else 413); a body cut off midway
/// leaves nothing. Sending a file the server has costs one read of the body and no write. The
/// device is recorded as holding the file, so its pushes may attach it.
async fn upload_blob(
    State(state): State<AppState>,
    caller: DeviceCaller,
    Path(sha256): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let sha256 = parse_hash(&sha256)?.to_owned();
    let blobs = state.store.blob_store()?;
    let too_large = || {
        AppError::TooLarge(format!(
            "files are limited to {} (max_upload_mb on the server)",
            crate::api::uploads::human_size(blobs.max_bytes())
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > blobs.max_bytes()) {
        return Err(too_large());
    }
    let mut writer = blobs
        .writer()
        .await
        .map_err(crate::api::uploads::blob_error)?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|error| AppError::BadRequest(format!("the upload was cut off: {error}")))?;
        writer
            .write(&chunk)
            .await
            .map_err(crate::api::uploads::blob_error)?;
    }
    let (_, size) = writer
        .finish_expecting(&sha256)
        .await
        .map_err(crate::api::uploads::blob_error)?;
    // The device has shown it holds the whole file: its documents may attach it.
    state
        .store
        .record_device_blob(&caller.device, &sha256)
        .await?;
    tracing::info!(device = %caller.device.uuid, %sha256, size, "blob received");
    Ok(StatusCode::CREATED.into_response())
}

/// `GET /blobs/{sha256}`: the file, if an entity the device may read references it (else 404,
/// the same answer as for a file that does not exist).
async fn download_blob(
    State(state): State<AppState>,
    caller: DeviceCaller,
    Path(sha256): Path<String>,
) -> Result<Response, AppError> {
    let sha256 = parse_hash(&sha256)?;
    if !state.store.blob_readable(&caller.subject, sha256).await? {
        return Err(AppError::NotFound("file".into()));
    }
    let blobs = state.store.blob_store()?;
    let size = blobs
        .size(sha256)
        .await
        .map_err(crate::api::uploads::blob_error)?;
    let reader = blobs
        .open(sha256)
        .await
        .map_err(crate::api::uploads::blob_error)?;
    let stream = crate::api::uploads::blob_stream(reader);
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    Ok(response)
}
