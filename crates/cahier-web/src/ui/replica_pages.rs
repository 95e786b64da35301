//! Pages that exist only on a field replica: rejected edits and refused booking requests
//! (each with its reason; a refusal is dismissed from the calendar's buttons), and "sync now".

use super::{PageCtx, UiError, UiResultExt, render, when};
use crate::AppState;
use crate::auth::SignedIn;
use crate::error::AppError;
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/replica/rejected", get(rejected))
        .route("/replica/sync", post(sync_now))
}

struct RejectedView {
    title: String,
    reason: String,
    at: String,
}

struct RefusedBookingView {
    id: i64,
    when: String,
    title: String,
    item_title: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "rejected.html")]
struct RejectedPage {
    p: PageCtx,
    edits: Vec<RejectedView>,
    bookings: Vec<RefusedBookingView>,
}

fn require_replica(state: &AppState, session: &SignedIn) -> Result<(), UiError> {
    if state.replica.is_some() {
        Ok(())
    } else {
        Err(UiError(
            AppError::NotFound(session.lang.t("replica.not_replica").into()),
            session.lang,
        ))
    }
}

async fn rejected(State(state): State<AppState>, session: SignedIn) -> Result<Response, UiError> {
    require_replica(&state, &session)?;
    let lang = session.lang;
    let edits = state
        .store
        .rejected_edits()
        .await
        .ui(lang)?
        .into_iter()
        .map(|r| RejectedView {
            title: r.title,
            reason: r.reason,
            at: when(r.created_at),
        })
        .collect();
    let zone = state.store.user_zone(session.user.id).await.ui(lang)?;
    let bookings = state
        .store
        .refused_booking_requests(&session.subject)
        .await
        .ui(lang)?
        .into_iter()
        .map(|b| {
            let request = b.request.as_ref();
            RefusedBookingView {
                id: b.id,
                when: format!("{} – {}", zone.display(b.start_ms), zone.display(b.end_ms)),
                title: b.title.clone(),
                item_title: b.item_title.clone(),
                reason: super::calendar::refusal_text(
                    lang,
                    request.and_then(|r| r.reason_code.as_deref()),
                    request.and_then(|r| r.reason.as_deref()),
                ),
            }
        })
        .collect();
    let p = PageCtx::signed_in(
        &state,
        &session,
        lang.t("replica.rejected_title").to_owned(),
    )
    .await
    .ui(lang)?;
    Ok(render(&RejectedPage { p, edits, bookings }))
}

async fn sync_now(
    State(state): State<AppState>,
    session: SignedIn,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    require_replica(&state, &session)?;
    if let Some(handle) = &state.replica {
        handle.sync_now.notify_one();
    }
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| {
            r.find("://")
                .and_then(|i| r[i + 3..].find('/').map(|j| r[i + 3 + j..].to_owned()))
        })
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or_else(|| "/".to_owned());
    Ok(Redirect::to(&back).into_response())
}
