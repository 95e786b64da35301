//! Attachments on entity pages: the list with earlier versions, uploads (a plain multipart
//! form without JavaScript; drag-and-drop, progress and pasted images with it), replace,
//! delete, and the file itself at `/{section}/{id}/attachments/{sha256}` (the URL Markdown
//! bodies use for images), under the same access check as the page.
//!
//! CSRF: a multipart form cannot be read by the CSRF middleware without buffering the file, so
//! upload forms carry the token in their action's query string (`?csrf=`), which the middleware
//! accepts for multipart bodies only; scripts send the `X-CSRF-Token` header as elsewhere.

use super::entities::{kind_of, user_names};
use super::{UiError, UiResultExt, when};
use crate::AppState;
use crate::api::uploads::{human_size, receive, serve};
use crate::auth::SignedIn;
use crate::error::AppError;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cahier_core::Subject;
use cahier_store::Store;
use cahier_store::blobs::is_hash;
use cahier_store::uploads::{Attached, UploadPatch, UploadRow, state};
use std::collections::HashMap;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/{section}/{id}/attachments",
            post(upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/{section}/{id}/attachments/{sha}", get(download))
        .route(
            "/{section}/{id}/attachments/{upload}/replace",
            post(replace).layer(DefaultBodyLimit::disable()),
        )
        .route("/{section}/{id}/attachments/{upload}/delete", post(delete))
}

/// One earlier version of an attachment.
#[derive(Debug, Clone)]
pub(crate) struct VersionView {
    pub(crate) name: String,
    pub(crate) size: String,
    pub(crate) at: String,
    pub(crate) short_hash: String,
    pub(crate) url: String,
}

/// One attachment as the entity page lists it.
#[derive(Debug, Clone)]
pub(crate) struct AttachmentView {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) comment: String,
    pub(crate) size: String,
    pub(crate) media_type: String,
    pub(crate) uploader: String,
    pub(crate) at: String,
    pub(crate) hash: String,
    pub(crate) short_hash: String,
    pub(crate) url: String,
    pub(crate) is_image: bool,
    pub(crate) previous: Vec<VersionView>,
}

/// The live attachments of an entity, newest first, each with its earlier versions.
pub(crate) async fn views(
    store: &Store,
    subject: &Subject,
    section: &str,
    entity_id: i64,
) -> Result<Vec<AttachmentView>, AppError> {
    let rows = store.uploads(subject, entity_id, true).await?;
    let names = user_names(store, rows.iter().map(|r| r.user_id)).await?;
    let by_id: HashMap<i64, &UploadRow> = rows.iter().map(|r| (r.id, r)).collect();
    let url = |r: &UploadRow| format!("/{section}/{entity_id}/attachments/{}", r.sha256);
    let short = |r: &UploadRow| r.sha256.get(..12).unwrap_or_default().to_owned();
    let size = |r: &UploadRow| human_size(u64::try_from(r.size).unwrap_or(0));
    Ok(rows
        .iter()
        .filter(|r| r.state == state::NORMAL)
        .map(|r| {
            let mut previous = Vec::new();
            let mut next = r.replaces_id;
            while let Some(old) = next.and_then(|id| by_id.get(&id)) {
                if previous.len() > 100 {
                    break;
                }
                previous.push(VersionView {
                    name: old.real_name.clone(),
                    size: size(old),
                    at: when(old.created_at),
                    short_hash: short(old),
                    url: url(old),
                });
                next = old.replaces_id;
            }
            AttachmentView {
                id: r.id,
                name: r.real_name.clone(),
                comment: r.comment.clone(),
                size: size(r),
                media_type: r.media_type.clone(),
                uploader: names.get(&r.user_id).cloned().unwrap_or_default(),
                at: when(r.created_at),
                hash: r.sha256.clone(),
                short_hash: short(r),
                url: url(r),
                is_image: cahier_store::thumbnails::has_thumbnail(&r.media_type, r.size),
                previous,
            }
        })
        .collect())
}

async fn entity(
    state: &AppState,
    session: &SignedIn,
    section: &str,
    id: &str,
) -> Result<i64, AppError> {
    let kind = kind_of(section).ok_or_else(|| AppError::NotFound("page".into()))?;
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::NotFound("entity".into()))?;
    Ok(state
        .store
        .entity_of_kind(&session.subject, kind, id)
        .await?
        .id)
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// The answer to an upload: JSON for the script, else back to the page. The JSON carries the
/// entity's heads before and after the attach changes when they form one chain, so an editor
/// whose base was `heads_before` moves it to `heads` (its text did not change meanwhile).
fn uploaded(json: bool, section: &str, id: i64, attached: &[Attached]) -> Response {
    if json {
        let chained = attached
            .windows(2)
            .all(|pair| pair[0].heads == pair[1].heads_before);
        let rows: Vec<&UploadRow> = attached.iter().map(|a| &a.upload).collect();
        axum::Json(serde_json::json!({
            "heads_before": attached.first().filter(|_| chained).map(|a| a.heads_before.clone()),
            "heads": attached.last().filter(|_| chained).map(|a| a.heads.clone()),
            "uploads": rows.iter().map(|r| serde_json::json!({
                "id": r.id,
                "real_name": r.real_name,
                "hash": r.sha256,
                "type": r.media_type,
                "url": format!("/{section}/{id}/attachments/{}", r.sha256),
            })).collect::<Vec<_>>(),
        }))
        .into_response()
    } else {
        Redirect::to(&format!("/{section}/{id}#attachments")).into_response()
    }
}

/// `POST /{section}/{id}/attachments` (multipart, one or more `file` fields, `comment`).
async fn upload(
    State(state): State<AppState>,
    session: SignedIn,
    headers: HeaderMap,
    Path((section, id)): Path<(String, String)>,
    multipart: Multipart,
) -> Response {
    let lang = session.lang;
    let json = wants_json(&headers);
    let result = async {
        let id = entity(&state, &session, &section, &id).await?;
        state.store.writable(&session.subject, id).await?;
        let received = receive(&state.store, &headers, multipart).await?;
        if received.files.is_empty() {
            return Err(AppError::invalid("file", lang.t("attachments.none_chosen")));
        }
        let mut rows = Vec::new();
        for file in received.files {
            rows.push(
                state
                    .store
                    .attach(
                        &session.subject,
                        id,
                        file.with_comment(&received.comment),
                        None,
                    )
                    .await?,
            );
        }
        Ok::<_, AppError>((id, rows))
    }
    .await;
    match result {
        Ok((id, rows)) => uploaded(json, &section, id, &rows),
        Err(error) if json => error.into_response(),
        Err(error) => super::error_page(&error, lang),
    }
}

/// `POST /{section}/{id}/attachments/{upload}/replace` (multipart `file`): a new version.
async fn replace(
    State(state): State<AppState>,
    session: SignedIn,
    headers: HeaderMap,
    Path((section, id, upload)): Path<(String, String, String)>,
    multipart: Multipart,
) -> Response {
    let lang = session.lang;
    let json = wants_json(&headers);
    let result = async {
        let id = entity(&state, &session, &section, &id).await?;
        let old: i64 = upload
            .parse()
            .map_err(|_| AppError::NotFound("upload".into()))?;
        state.store.upload(&session.subject, id, old).await?;
        state.store.writable(&session.subject, id).await?;
        let received = receive(&state.store, &headers, multipart).await?;
        let file = received
            .files
            .into_iter()
            .next()
            .ok_or_else(|| AppError::invalid("file", lang.t("attachments.none_chosen")))?;
        let row = state
            .store
            .attach(
                &session.subject,
                id,
                file.with_comment(&received.comment),
                Some(old),
            )
            .await?;
        Ok::<_, AppError>((id, vec![row]))
    }
    .await;
    match result {
        Ok((id, rows)) => uploaded(json, &section, id, &rows),
        Err(error) if json => error.into_response(),
        Err(error) => super::error_page(&error, lang),
    }
}

/// `POST /{section}/{id}/attachments/{upload}/delete` (urlencoded form): soft delete.
async fn delete(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id, upload)): Path<(String, String, String)>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let id = entity(&state, &session, &section, &id).await.ui(lang)?;
    let upload: i64 = upload
        .parse()
        .map_err(|_| AppError::NotFound("upload".into()))
        .ui(lang)?;
    let patch = UploadPatch {
        state: Some(state::DELETED),
        ..Default::default()
    };
    state
        .store
        .update_upload(&session.subject, id, upload, &patch)
        .await
        .ui(lang)?;
    Ok(Redirect::to(&format!("/{section}/{id}#attachments")).into_response())
}

/// `GET /{section}/{id}/attachments/{sha256}`: the file, if the user may read the entity and
/// it has this attachment (any version not deleted).
/// `?thumb=1` asks for the thumbnail of an image instead of the file.
#[derive(Debug, Default, serde::Deserialize)]
struct DownloadParams {
    thumb: Option<String>,
}

async fn download(
    State(state): State<AppState>,
    session: SignedIn,
    headers: HeaderMap,
    Path((section, id, sha)): Path<(String, String, String)>,
    Query(params): Query<DownloadParams>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let id = entity(&state, &session, &section, &id).await.ui(lang)?;
    if !is_hash(&sha) {
        return Err(UiError(AppError::NotFound("file".into()), lang));
    }
    let row = state
        .store
        .upload_by_hash(&session.subject, id, &sha)
        .await
        .ui(lang)?;
    // A field copy may not hold the file: it is fetched now, or a clear answer says why not.
    if let Err(error) = crate::offline_files::ensure_held(&state, &row.sha256, lang).await {
        if params.thumb.is_some() || crate::offline_files::wants_image(&headers) {
            return Ok(crate::offline_files::absent_picture(lang));
        }
        return Err(UiError(error, lang));
    }
    if params.thumb.is_some() {
        let thumbnail = state.store.thumbnail(&row).await.ui(lang)?;
        let Some(thumbnail) = thumbnail else {
            return Err(UiError(AppError::NotFound("thumbnail".into()), lang));
        };
        return Ok((
            [
                (header::CONTENT_TYPE, thumbnail.media_type),
                // Named by the content's hash: it never changes.
                (
                    header::CACHE_CONTROL,
                    "private, max-age=31536000, immutable",
                ),
            ],
            thumbnail.bytes,
        )
            .into_response());
    }
    serve(&state.store, &row, &headers).await.ui(lang)
}
