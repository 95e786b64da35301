//! `/api/v2/experiments/{id}/uploads[/{subid}]`: attachments in eLabFTW's shapes
//! (`reference/elabftw.md` §1.10). Files stream from the multipart body into the blob store
//! through a fixed buffer; the usual JSON body limit does not apply here, the upload limit
//! (`max_upload_mb`) does. Downloads (`?format=binary`) stream from disk with Range support.
//! Only images, PDF, audio and video are shown inline; everything else (SVG, HTML, XML,
//! unknown) is a download in a sandbox, so an attachment can never run script as Cahier.

use super::json::JsonBody;
use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::AppError;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cahier_core::clock::format_sql_datetime;
use cahier_core::{EntityKind, Subject};
use cahier_store::Store;
use cahier_store::blobs::BlobError;
use cahier_store::uploads::{NewUpload, UploadPatch, UploadRow, state};
use serde::Deserialize;
use serde_json::{Value, json};

use super::openapi::{Documented, Op, list_of, object, one_of, schema, string};

pub(super) fn routes() -> Documented {
    // Only the multipart handlers lift the JSON body limit; they count the file against the
    // upload limit themselves. PATCH keeps the usual limit.
    Documented::new()
        .route(
            "uploads",
            "/{entity_type}/{id}/uploads",
            get(list).post(create.layer(DefaultBodyLimit::disable())),
            vec![
                Op::get("List attached files", list_of("Upload")).query(&[(
                    "state",
                    json!({"type": "string", "pattern": "^[1-3](,[1-3])*$"}),
                )]),
                Op::post("Attach a file").multipart(),
            ],
        )
        .route(
            "uploads",
            "/{entity_type}/{id}/uploads/{subid}",
            get(read)
                .patch(update)
                .delete(destroy)
                .post(replace.layer(DefaultBodyLimit::disable())),
            vec![
                Op::get_file(
                    "Describe or download a file (Range supported)",
                    schema("Upload"),
                ),
                Op::patch("Rename, comment or archive a file", schema("Upload")).body(object(&[
                    ("real_name", string()),
                    ("comment", string()),
                    ("state", json!({"type": "integer", "enum": [1, 2]})),
                    ("action", one_of(&["update", "archive"])),
                ])),
                Op::delete("Delete a file (kept in the history)"),
                Op::post("Replace a file by a new version").multipart(),
            ],
        )
}

fn kind(entity_type: &str) -> Result<EntityKind, AppError> {
    match entity_type {
        "experiments" => Ok(EntityKind::Experiment),
        "items" => Ok(EntityKind::Resource),
        "experiments_templates" | "items_types" => Err(AppError::NotImplemented(format!(
            "{entity_type} cannot hold files yet in Cahier; experiments and resources can"
        ))),
        _ => Err(AppError::NotFound("endpoint".into())),
    }
}

fn parse(id: &str, what: &str) -> Result<i64, AppError> {
    id.parse().map_err(|_| AppError::NotFound(what.into()))
}

/// The entity's id after checking the caller may read it (404 otherwise).
async fn entity(
    app: &AppState,
    subject: &Subject,
    entity_type: &str,
    id: &str,
) -> Result<i64, AppError> {
    let kind = kind(entity_type)?;
    let id = parse(id, "entity")?;
    Ok(app.store.entity_of_kind(subject, kind, id).await?.id)
}

/// The API's JSON for one upload.
pub(crate) fn upload_json(row: &UploadRow, entity_type: &str) -> Value {
    json!({
        "id": row.id,
        "item_id": row.entity_id,
        "real_name": row.real_name,
        "long_name": format!("{}/{}", row.sha256.get(..2).unwrap_or_default(), row.sha256),
        "comment": row.comment,
        "filesize": row.size,
        "hash": row.sha256,
        "hash_algorithm": "sha256",
        "type": entity_type,
        "media_type": row.media_type,
        "storage": 1,
        "immutable": 0,
        "created_at": format_sql_datetime(row.created_at),
        "userid": row.user_id,
        "state": row.state,
        "replaces_id": row.replaces_id,
    })
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
}

/// `GET …/uploads`: live uploads, newest first; `?state=1,2` adds archived versions.
async fn list(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> Result<Response, AppError> {
    let id = entity(&app, &caller.subject, &entity_type, &id).await?;
    let wanted: Vec<i64> = query
        .state
        .as_deref()
        .unwrap_or("1")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rows = app
        .store
        .uploads(&caller.subject, id, wanted.contains(&state::ARCHIVED))
        .await?;
    let items: Vec<Value> = rows
        .iter()
        .filter(|r| wanted.contains(&r.state))
        .map(|r| upload_json(r, &entity_type))
        .collect();
    Ok(axum::Json(items).into_response())
}

/// `POST …/uploads` (multipart `file`, optional `comment`): 201 + Location.
async fn create(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    multipart: Multipart,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let id = entity(&app, &caller.subject, &entity_type, &id).await?;
    app.store.writable(&caller.subject, id).await?;
    let received = receive(&app.store, &headers, multipart).await?;
    let file = received.files.into_iter().next().ok_or_else(|| {
        AppError::invalid("file", "send the file in a multipart field named file")
    })?;
    let row = app
        .store
        .attach(
            &caller.subject,
            id,
            file.with_comment(&received.comment),
            None,
        )
        .await?
        .upload;
    Ok(created(&app, &entity_type, id, row.id))
}

/// `POST …/uploads/{subid}` with a new file: a new version; the old one is archived.
async fn replace(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id, subid)): Path<(String, String, String)>,
    headers: HeaderMap,
    multipart: Multipart,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let id = entity(&app, &caller.subject, &entity_type, &id).await?;
    let old = parse(&subid, "upload")?;
    app.store.upload(&caller.subject, id, old).await?;
    app.store.writable(&caller.subject, id).await?;
    let received = receive(&app.store, &headers, multipart).await?;
    let file = received.files.into_iter().next().ok_or_else(|| {
        AppError::invalid("file", "send the file in a multipart field named file")
    })?;
    let row = app
        .store
        .attach(
            &caller.subject,
            id,
            file.with_comment(&received.comment),
            Some(old),
        )
        .await?
        .upload;
    Ok(created(&app, &entity_type, id, row.id))
}

fn created(app: &AppState, entity_type: &str, id: i64, subid: i64) -> Response {
    let location = format!(
        "{}/api/v2/{entity_type}/{id}/uploads/{subid}",
        app.config.public_url.trim_end_matches('/')
    );
    let mut response = StatusCode::CREATED.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

#[derive(Debug, Deserialize)]
struct ReadQuery {
    format: Option<String>,
}

/// `GET …/uploads/{subid}`: JSON, or the file with `?format=binary`.
async fn read(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id, subid)): Path<(String, String, String)>,
    Query(query): Query<ReadQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let id = entity(&app, &caller.subject, &entity_type, &id).await?;
    let row = app
        .store
        .upload(&caller.subject, id, parse(&subid, "upload")?)
        .await?;
    if query.format.as_deref() == Some("binary") {
        if row.state == state::DELETED {
            return Err(AppError::NotFound("upload".into()));
        }
        // A field copy may not hold the file: fetched now, or a 404 that says why.
        crate::offline_files::ensure_held(&app, &row.sha256, crate::i18n::Lang::En).await?;
        return serve(&app.store, &row, &headers).await;
    }
    Ok(axum::Json(upload_json(&row, &entity_type)).into_response())
}

/// `PATCH …/uploads/{subid}`: `real_name`, `comment`, `state`, or `{"action": "archive"}`.
async fn update(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id, subid)): Path<(String, String, String)>,
    body: JsonBody,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let id = entity(&app, &caller.subject, &entity_type, &id).await?;
    let subid = parse(&subid, "upload")?;
    let current = app.store.upload(&caller.subject, id, subid).await?;
    let mut patch = UploadPatch {
        real_name: body.string("real_name")?,
        comment: body.string("comment")?,
        state: body.int("state")?,
    };
    match body.string("action")?.as_deref() {
        None | Some("update") => {}
        Some("archive") => {
            patch.state = Some(if current.state == state::ARCHIVED {
                state::NORMAL
            } else {
                state::ARCHIVED
            });
        }
        Some(other) => {
            return Err(AppError::invalid(
                "action",
                format!("unknown action {other}; expected update or archive"),
            ));
        }
    }
    let row = app
        .store
        .update_upload(&caller.subject, id, subid, &patch)
        .await?;
    Ok(axum::Json(upload_json(&row, &entity_type)).into_response())
}

/// `DELETE …/uploads/{subid}`: soft delete (state 3); the blob stays for the history.
async fn destroy(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id, subid)): Path<(String, String, String)>,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let id = entity(&app, &caller.subject, &entity_type, &id).await?;
    let patch = UploadPatch {
        state: Some(state::DELETED),
        ..Default::default()
    };
    app.store
        .update_upload(&caller.subject, id, parse(&subid, "upload")?, &patch)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A file received and stored as a blob, not yet attached.
#[derive(Debug)]
pub(crate) struct ReceivedFile(NewUpload);

impl ReceivedFile {
    /// The upload to attach, with `comment`.
    pub(crate) fn with_comment(self, comment: &str) -> NewUpload {
        NewUpload {
            comment: comment.to_owned(),
            ..self.0
        }
    }
}

/// What a multipart upload form carried.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// Every `file` field, in order (empty file pickers are skipped).
    pub(crate) files: Vec<ReceivedFile>,
    /// The `comment` field.
    pub(crate) comment: String,
}

/// Slack for the multipart framing and small fields beyond the file limit, bytes.
const FRAMING_SLACK: u64 = 1024 * 1024;
/// After a refusal, how much more of the body is read (and dropped) so the client sees the
/// answer instead of a reset connection.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

/// Streams the `file` fields of a multipart body into the blob store. Over the limit: 413 and
/// nothing kept (the partly written blob is removed when its writer drops).
pub(crate) async fn receive(
    store: &Store,
    headers: &HeaderMap,
    mut multipart: Multipart,
) -> Result<Received, AppError> {
    let blobs = store.blob_store()?;
    let limit = blobs.max_bytes();
    let too_large = || {
        AppError::TooLarge(format!(
            "files are limited to {} (max_upload_mb in cahier.toml)",
            human_size(limit)
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit.saturating_add(FRAMING_SLACK + DRAIN_LIMIT)) {
        return Err(too_large());
    }
    let mut received = Received::default();
    let mut total: u64 = 0;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or_default() {
            "file" => {
                let name = field.file_name().unwrap_or("file").to_owned();
                let client_type = field.content_type().map(str::to_owned);
                let mut writer = blobs.writer().await.map_err(blob_error)?;
                loop {
                    let chunk = match field.chunk().await {
                        Ok(Some(chunk)) => chunk,
                        Ok(None) => break,
                        Err(error) => return Err(multipart_error(error)),
                    };
                    total = total.saturating_add(chunk.len() as u64);
                    if total > limit {
                        drop(writer);
                        let mut drained: u64 = 0;
                        while let Ok(Some(chunk)) = field.chunk().await {
                            drained += chunk.len() as u64;
                            if drained > DRAIN_LIMIT {
                                return Err(too_large());
                            }
                        }
                        drop(field);
                        drain(&mut multipart, drained).await;
                        return Err(too_large());
                    }
                    writer.write(&chunk).await.map_err(blob_error)?;
                }
                if writer.size() == 0 && name.is_empty() {
                    // An empty file picker in a browser form.
                    continue;
                }
                let (sha256, size) = writer.finish().await.map_err(blob_error)?;
                received.files.push(ReceivedFile(NewUpload {
                    sha256,
                    size,
                    media_type: media_type(&name, client_type.as_deref()),
                    real_name: name,
                    comment: String::new(),
                }));
            }
            "comment" => {
                received.comment = field.text().await.map_err(multipart_error)?;
            }
            _ => {
                // `action=replace`, `csrf` and unknown fields: read and ignore.
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    total = total.saturating_add(chunk.len() as u64);
                    if total > limit.saturating_add(FRAMING_SLACK) {
                        return Err(too_large());
                    }
                }
            }
        }
    }
    Ok(received)
}

/// Reads and drops what is left of a refused body, up to [`DRAIN_LIMIT`].
async fn drain(multipart: &mut Multipart, mut drained: u64) {
    while let Ok(Some(mut next)) = multipart.next_field().await {
        while let Ok(Some(chunk)) = next.chunk().await {
            drained += chunk.len() as u64;
            if drained > DRAIN_LIMIT {
                return;
            }
        }
    }
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> AppError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::TooLarge("the upload is larger than this server accepts".into())
    } else {
        AppError::BadRequest(format!("could not read the upload: {}", error.body_text()))
    }
}

pub(crate) fn blob_error(error: BlobError) -> AppError {
    match error {
        BlobError::TooLarge { limit } => AppError::TooLarge(format!(
            "files are limited to {} (max_upload_mb in cahier.toml)",
            human_size(limit)
        )),
        BlobError::NotFound => AppError::NotFound("file".into()),
        BlobError::BadHash => AppError::NotFound("file".into()),
        BlobError::HashMismatch { expected, actual } => AppError::invalid(
            "file",
            format!("the content hashes to {actual}, not {expected}; nothing was kept"),
        ),
        BlobError::Unreadable => AppError::internal(&BlobError::Unreadable),
        BlobError::Io(io) => AppError::internal(&io),
    }
}

/// A blob's content as a response body stream. A read error ends the body early (the client
/// sees a short response, never wrong bytes).
pub(crate) fn blob_stream(
    reader: cahier_store::blobs::BlobReader,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(reader, |mut reader| async move {
        match reader.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(Bytes::from(chunk)), reader)),
            Ok(None) => None,
            Err(error) => Some((Err(std::io::Error::other(error)), reader)),
        }
    })
}

/// A size for people: `1.5 MiB`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The media type a file is stored and served with: from its extension, else what the client
/// said (if it looks like a media type), else `application/octet-stream`.
fn media_type(name: &str, client: Option<&str>) -> String {
    if let Some(guess) = mime_guess::from_path(name).first_raw() {
        return guess.to_owned();
    }
    match client.map(str::trim) {
        Some(t)
            if t.len() <= 100
                && t.split_once('/').is_some_and(|(a, b)| {
                    !a.is_empty()
                        && !b.is_empty()
                        && t.bytes().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, b'/' | b'.' | b'+' | b'-')
                        })
                }) =>
        {
            t.to_ascii_lowercase()
        }
        _ => "application/octet-stream".to_owned(),
    }
}

/// Whether a media type is shown inline (passive content only: no script can run in it).
fn is_inline(media_type: &str) -> bool {
    matches!(
        media_type,
        "image/png"
            | "image/jpeg"
            | "image/gif"
            | "image/webp"
            | "image/avif"
            | "image/bmp"
            | "application/pdf"
    ) || media_type.starts_with("video/")
        || media_type.starts_with("audio/")
}

/// `Content-Disposition` with an ASCII fallback and the UTF-8 name (RFC 6266).
fn disposition(kind: &str, name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded =
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string();
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// A parsed `Range` header against a file of `size` bytes.
enum RangeRequest {
    /// No usable range: send everything.
    Full,
    /// Send bytes `start..=end`.
    Part(u64, u64),
    /// Cannot be satisfied: 416.
    Unsatisfiable,
}

fn parse_range(value: Option<&HeaderValue>, size: u64) -> RangeRequest {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return RangeRequest::Full;
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        // Several ranges: answering with the whole file is allowed (RFC 9110 §14.2).
        return RangeRequest::Full;
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return RangeRequest::Unsatisfiable;
    };
    let (start, end) = (start.trim(), end.trim());
    let parsed = if start.is_empty() {
        // Suffix: the last `end` bytes.
        match end.parse::<u64>() {
            Ok(0) | Err(_) => None,
            Ok(n) if size == 0 => {
                let _ = n;
                None
            }
            Ok(n) => Some((size.saturating_sub(n), size - 1)),
        }
    } else {
        match (start.parse::<u64>(), end) {
            (Ok(s), "") if s < size => Some((s, size - 1)),
            (Ok(s), e) => match e.parse::<u64>() {
                Ok(e) if s <= e && s < size => Some((s, e.min(size - 1))),
                _ => None,
            },
            _ => None,
        }
    };
    match parsed {
        Some((s, e)) => RangeRequest::Part(s, e),
        None => RangeRequest::Unsatisfiable,
    }
}

/// Streams an upload's file: type, disposition, `Accept-Ranges`, 206 for a range, 416 for a
/// range outside the file. Active or unknown content is a sandboxed download.
pub(crate) async fn serve(
    store: &Store,
    row: &UploadRow,
    headers: &HeaderMap,
) -> Result<Response, AppError> {
    let blobs = store.blob_store()?;
    let size = blobs.size(&row.sha256).await.map_err(blob_error)?;
    let (status, start, length) = match parse_range(headers.get(header::RANGE), size) {
        RangeRequest::Full => (StatusCode::OK, 0, size),
        RangeRequest::Part(s, e) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        RangeRequest::Unsatisfiable => {
            let mut response = (
                StatusCode::RANGE_NOT_SATISFIABLE,
                axum::Json(json!({
                    "code": 416,
                    "message": "Range Not Satisfiable",
                    "description": format!("the file has {size} bytes"),
                })),
            )
                .into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
    };
    let reader = blobs
        .open_range(&row.sha256, start, length)
        .await
        .map_err(blob_error)?;
    let stream = blob_stream(reader);
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let h = response.headers_mut();
    let inline = is_inline(&row.media_type);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&row.media_type)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_DISPOSITION,
        disposition(if inline { "inline" } else { "attachment" }, &row.real_name),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", row.sha256)) {
        h.insert(header::ETAG, etag);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    if !inline {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("sandbox; default-src 'none'"),
        );
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) =
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + length - 1))
    {
        h.insert(header::CONTENT_RANGE, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, size: u64) -> Option<(u64, u64)> {
        match parse_range(
            Some(&HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static(""))),
            size,
        ) {
            RangeRequest::Part(s, e) => Some((s, e)),
            RangeRequest::Full => Some((0, u64::MAX)),
            RangeRequest::Unsatisfiable => None,
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(range("bytes=0-3", 10), Some((0, 3)));
        assert_eq!(range("bytes=5-", 10), Some((5, 9)));
        assert_eq!(range("bytes=-4", 10), Some((6, 9)));
        assert_eq!(range("bytes=8-100", 10), Some((8, 9)));
        assert_eq!(range("bytes=10-", 10), None);
        assert_eq!(range("bytes=5-2", 10), None);
        assert_eq!(range("bytes=0-1,4-5", 10), Some((0, u64::MAX)));
        assert_eq!(media_type("a.svg", None), "image/svg+xml");
        assert!(!is_inline("image/svg+xml"));
        assert!(is_inline("image/png"));
    }
}
