//! Pages that exist only on a field replica: rejected edits and refused booking requests
//! (each with its reason; a refusal is dismissed from the calendar's buttons), "sync now",
//! which attachment files stay on the laptop (the file policy, with how many files are here
//! and not), and the "available offline" pin of an entry.

use super::{PageCtx, UiError, UiResultExt, render, when};
use crate::AppState;
use crate::auth::SignedIn;
use crate::error::AppError;
use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cahier_store::replica_files::FilePolicy;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/replica/rejected", get(rejected))
        .route("/replica/sync", post(sync_now))
        .route("/replica/files", get(files_page).post(set_files))
        .route("/{section}/{id}/offline", post(pin_entry))
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
    /// The key of the change of a lab booking it asked for, if it was one.
    action_label: Option<&'static str>,
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
                action_label: request
                    .and_then(|r| r.action.as_deref())
                    .map(super::calendar::action_key),
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

struct PinnedView {
    href: String,
    title: String,
}

struct TeamChoice {
    id: i64,
    name: String,
    checked: bool,
}

#[derive(Template)]
#[template(path = "replica_files.html")]
struct FilesPage {
    p: PageCtx,
    /// `all`, `pinned` or `teams`.
    policy: &'static str,
    teams: Vec<TeamChoice>,
    held: usize,
    not_held: usize,
    pinned: Vec<PinnedView>,
}

/// `GET /replica/files`: which files stay on this laptop, how many are here and not, and the
/// pinned entries.
async fn files_page(State(state): State<AppState>, session: SignedIn) -> Result<Response, UiError> {
    require_replica(&state, &session)?;
    let lang = session.lang;
    let store = &state.store;
    let policy = store.file_policy().await.ui(lang)?;
    let chosen: &[String] = match &policy {
        FilePolicy::Teams(teams) => teams,
        _ => &[],
    };
    let teams = store
        .teams_of(session.user.id)
        .await
        .ui(lang)?
        .into_iter()
        .map(|t| TeamChoice {
            checked: chosen.iter().any(|c| c.eq_ignore_ascii_case(&t.name)),
            id: t.id,
            name: t.name,
        })
        .collect();
    let counts = store.file_counts().await.ui(lang)?;
    let pinned = store
        .pinned_entries()
        .await
        .ui(lang)?
        .into_iter()
        .map(|(id, kind, title)| PinnedView {
            href: format!("/{}/{id}", super::entities::section_of(kind)),
            title,
        })
        .collect();
    let p = PageCtx::signed_in(&state, &session, lang.t("replica.files_title").to_owned())
        .await
        .ui(lang)?;
    Ok(render(&FilesPage {
        p,
        policy: match policy {
            FilePolicy::All => "all",
            FilePolicy::Pinned => "pinned",
            FilePolicy::Teams(_) => "teams",
        },
        teams,
        held: counts.held,
        not_held: counts.not_held,
        pinned,
    }))
}

/// `POST /replica/files`: `policy=all|pinned|teams`, with one `team=ID` per chosen team.
/// The files follow at the next sync, which starts at once.
async fn set_files(
    State(state): State<AppState>,
    session: SignedIn,
    body: axum::body::Bytes,
) -> Result<Response, UiError> {
    require_replica(&state, &session)?;
    let lang = session.lang;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|_| AppError::BadRequest("the form could not be read".into()))
        .ui(lang)?;
    let field = |key: &'static str| {
        pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let policy = match field("policy").next().as_deref() {
        Some("all") => FilePolicy::All,
        Some("pinned") => FilePolicy::Pinned,
        Some("teams") => {
            let teams: Vec<String> = field("team").collect();
            if teams.is_empty() {
                return Err(UiError(
                    AppError::invalid("team", lang.t("replica.files_no_team")),
                    lang,
                ));
            }
            FilePolicy::Teams(teams)
        }
        _ => {
            return Err(UiError(
                AppError::invalid("policy", "choose all, pinned or teams"),
                lang,
            ));
        }
    };
    state.store.set_file_policy(&policy).await.ui(lang)?;
    if let Some(handle) = &state.replica {
        handle.sync_now.notify_one();
    }
    Ok(Redirect::to("/replica/files").into_response())
}

#[derive(Debug, serde::Deserialize)]
struct PinForm {
    pin: String,
}

/// `POST /{section}/{id}/offline` with `pin=1` or `pin=0`: pins or unpins an entry the user may
/// read, on this device only; a sync starts at once to fetch (or drop) its files.
async fn pin_entry(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<PinForm>,
) -> Result<Response, UiError> {
    require_replica(&state, &session)?;
    let lang = session.lang;
    let kind = super::entities::kind_of(&section)
        .ok_or_else(|| AppError::NotFound("page".into()))
        .ui(lang)?;
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::NotFound("entity".into()))
        .ui(lang)?;
    let row = state
        .store
        .entity_of_kind(&session.subject, kind, id)
        .await
        .ui(lang)?;
    match form.pin.as_str() {
        "1" => state.store.pin_entity(&row.uuid).await.ui(lang)?,
        "0" => state.store.unpin_entity(&row.uuid).await.ui(lang)?,
        _ => {
            return Err(UiError(AppError::invalid("pin", "expected 1 or 0"), lang));
        }
    }
    if let Some(handle) = &state.replica {
        handle.sync_now.notify_one();
    }
    Ok(Redirect::to(&format!("/{section}/{id}#attachments")).into_response())
}
