//! `GET /{section}/{id}/pdf`: the entity's archival PDF (PDF/A-2b) in the user's language,
//! under the same access check as the page. The work is done by [`crate::api::pdf`].

use super::entities::kind_of;
use super::{UiError, UiResultExt};
use crate::AppState;
use crate::auth::SignedIn;
use crate::error::AppError;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use cahier_pdf::Standard;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/{section}/{id}/pdf", get(download_pdf))
}

async fn download_pdf(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let kind = kind_of(&section)
        .ok_or_else(|| AppError::NotFound("page".into()))
        .ui(lang)?;
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::NotFound("entity".into()))
        .ui(lang)?;
    crate::api::pdf::entity_pdf(&state, &session.subject, kind, id, Standard::PdfA2b, lang)
        .await
        .ui(lang)
}
