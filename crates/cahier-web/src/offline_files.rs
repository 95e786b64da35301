//! Attachment files a field replica does not hold (issue #5): before a file or its thumbnail
//! is served, the replica makes sure it is here, fetching it from the lab server on demand
//! (through the verified sync download, stored encrypted like the others). When the server
//! cannot be reached the answer is a clear 404 in the user's language — never a 500 — and an
//! image request gets a small picture saying the same, not a broken image.
//!
//! On a lab server this does nothing: every file is held. It decides nothing about access:
//! callers have already read the upload row through the access policy.

use crate::AppState;
use crate::error::AppError;
use crate::i18n::Lang;
use askama::Template;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cahier_store::replica_files::FilePolicy;

/// The translation key naming a file policy.
pub(crate) fn policy_key(policy: &FilePolicy) -> &'static str {
    match policy {
        FilePolicy::All => "replica.files_all",
        FilePolicy::Pinned => "replica.files_pinned",
        FilePolicy::Teams(_) => "replica.files_teams",
    }
}

/// Makes sure the file named `sha256` is on this replica, fetching it when the server can be
/// reached. On a lab server, or when the file is here, returns at once.
pub(crate) async fn ensure_held(
    state: &AppState,
    sha256: &str,
    lang: Lang,
) -> Result<(), AppError> {
    let Some(replica) = &state.replica else {
        return Ok(());
    };
    let Some(blobs) = state.store.blobs() else {
        return Ok(());
    };
    if blobs.exists(sha256).await {
        return Ok(());
    }
    let absent = || AppError::FileAbsent(lang.t("replica.file_absent").to_owned());
    let Some(fetcher) = &replica.fetcher else {
        return Err(absent());
    };
    match fetcher.fetch(sha256).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::warn!(%sha256, "the lab server has no such file for this device");
            Err(absent())
        }
        Err(error) => {
            tracing::info!(%sha256, %error, "cannot fetch a file on demand");
            if let Ok(mut status) = replica.status.lock() {
                status.online = false;
                status.last_error = Some(error);
            }
            Err(absent())
        }
    }
}

/// Whether a request wants an image (an `<img>` in a page body, or a thumbnail).
pub(crate) fn wants_image(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("image/"))
}

#[derive(Template)]
#[template(path = "file_absent.svg", escape = "html")]
struct AbsentPicture {
    line1: &'static str,
    line2: &'static str,
}

/// A small picture saying the file is not on this laptop, with status 404, for image requests.
pub(crate) fn absent_picture(lang: Lang) -> Response {
    let picture = AbsentPicture {
        line1: lang.t("replica.file_absent_short"),
        line2: lang.t("replica.file_absent_hint"),
    };
    match picture.render() {
        Ok(svg) => (
            StatusCode::NOT_FOUND,
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            svg,
        )
            .into_response(),
        Err(error) => AppError::internal(&error).into_response(),
    }
}
