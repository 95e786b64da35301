//! History of an entity: every version with author and times, any version on its own, and the
//! difference between two versions.

use super::entities::{kind_of, user_names};
use super::{PageCtx, UiError, UiResultExt, render, when};
use crate::AppState;
use crate::auth::SignedIn;
use crate::error::AppError;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use cahier_core::markdown::{ContentType, render_body};
use cahier_core::version_diff::{DiffLine, FieldChange, diff};
use cahier_store::entities::EntityRow;
use serde::Deserialize;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/{section}/{id}/history", get(history))
        .route("/{section}/{id}/versions/{hash}", get(version))
        .route("/{section}/{id}/diff", get(compare))
}

struct VersionView {
    number: usize,
    hash: String,
    short: String,
    author: String,
    received: String,
    device_time: String,
    what: &'static str,
    is_current: bool,
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    p: PageCtx,
    section: String,
    e: EntityRow,
    versions: Vec<VersionView>,
}

async fn entity(
    state: &AppState,
    session: &SignedIn,
    section: &str,
    id: &str,
) -> Result<EntityRow, UiError> {
    let lang = session.lang;
    let kind = kind_of(section).ok_or_else(|| UiError(AppError::NotFound("page".into()), lang))?;
    let id: i64 = id
        .parse()
        .map_err(|_| UiError(AppError::NotFound("entity".into()), lang))?;
    state
        .store
        .entity_of_kind(&session.subject, kind, id)
        .await
        .ui(lang)
}

async fn history(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let e = entity(&state, &session, &section, &id).await?;
    let rows = state.store.history(&session.subject, e.id).await.ui(lang)?;
    let names = user_names(&state.store, rows.iter().map(|r| r.user_id))
        .await
        .ui(lang)?;
    let current: Vec<&str> = e.heads.split(',').collect();
    let mut versions: Vec<VersionView> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| VersionView {
            number: i + 1,
            hash: r.hash.clone(),
            short: r.hash.get(..10).unwrap_or(&r.hash).to_owned(),
            author: names
                .get(&r.user_id)
                .cloned()
                .unwrap_or_else(|| lang.t("common.unknown_user").to_owned()),
            received: when(r.received_at),
            device_time: when(r.time_ms),
            what: match r.message.as_str() {
                "create" => lang.t("history.msg_create"),
                "save" => lang.t("history.msg_save"),
                "attach" => lang.t("attachments.history_attach"),
                _ => lang.t("history.msg_other"),
            },
            is_current: current.contains(&r.hash.as_str()),
        })
        .collect();
    versions.reverse();
    let p = PageCtx::signed_in(
        &state,
        &session,
        format!("{} — {}", lang.t("history.title"), e.title),
    )
    .await
    .ui(lang)?;
    Ok(render(&HistoryPage {
        p,
        section,
        e,
        versions,
    }))
}

#[derive(Template)]
#[template(path = "version.html")]
struct VersionPage {
    p: PageCtx,
    section: String,
    e: EntityRow,
    hash: String,
    title: String,
    date: String,
    tags: Vec<String>,
    body_html: String,
    steps: Vec<(bool, String)>,
}

async fn version(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id, hash)): Path<(String, String, String)>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let e = entity(&state, &session, &section, &id).await?;
    let content = state
        .store
        .content_at(&session.subject, e.id, &hash)
        .await
        .ui(lang)?;
    let p = PageCtx::signed_in(
        &state,
        &session,
        format!("{} — {}", lang.t("history.version"), content.title),
    )
    .await
    .ui(lang)?;
    Ok(render(&VersionPage {
        p,
        section,
        hash: hash.clone(),
        title: content.title.clone(),
        date: content.date.clone(),
        tags: content.tags.clone(),
        body_html: render_body(&content.body, ContentType::from_code(content.content_type)),
        steps: content
            .steps
            .iter()
            .map(|s| (s.done, s.body.clone()))
            .collect(),
        e,
    }))
}

#[derive(Debug, Deserialize)]
struct CompareQuery {
    from: Option<String>,
    to: Option<String>,
}

#[derive(Template)]
#[template(path = "diff.html")]
struct DiffPage {
    p: PageCtx,
    section: String,
    e: EntityRow,
    from: String,
    to: String,
    fields: Vec<FieldChange>,
    body: Vec<DiffLine>,
}

async fn compare(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
    Query(query): Query<CompareQuery>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let e = entity(&state, &session, &section, &id).await?;
    let from = query
        .from
        .filter(|s| !s.is_empty())
        .ok_or_else(|| UiError(AppError::invalid("from", "choose two versions"), lang))?;
    let to = query
        .to
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| e.heads.clone());
    let before = state
        .store
        .content_at(&session.subject, e.id, &from)
        .await
        .ui(lang)?;
    let after = state
        .store
        .content_at(&session.subject, e.id, &to)
        .await
        .ui(lang)?;
    let d = diff(&before, &after);
    let p = PageCtx::signed_in(
        &state,
        &session,
        format!("{} — {}", lang.t("history.diff_title"), e.title),
    )
    .await
    .ui(lang)?;
    Ok(render(&DiffPage {
        p,
        section,
        from: from.get(..10).unwrap_or(&from).to_owned(),
        to: to.get(..10).unwrap_or(&to).to_owned(),
        fields: d.fields,
        body: d.body,
        e,
    }))
}
