//! Exchange pages: import an `.eln` archive (upload → preview of what will be created →
//! confirm → report), the Exports page (background exports with progress and download), and
//! the one-entry `.eln` download of the entry page. The store does the work (`eln_import`,
//! `export_jobs`); these handlers only move files and render.
//!
//! Between preview and confirmation the uploaded archive waits in the blob store's `tmp`
//! folder under a name bound to the user (`import-<user>-<token>.eln`): another user cannot
//! confirm it, and the orphan sweep removes one that is never confirmed.

use super::entities::kind_of;
use super::{PageCtx, UiError, UiResultExt, render, when};
use crate::AppState;
use crate::api::exports::{
    eln_response, export_download, import_options, receive_archive, start_export,
};
use crate::auth::SignedIn;
use crate::error::AppError;
use askama::Template;
use axum::extract::{Multipart, Path, State};
use axum::handler::Handler;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use cahier_store::eln_import::{ImportPreview, ImportReport};
use cahier_store::export_jobs::{ExportJob, ExportScope};
use serde::Deserialize;
use std::collections::HashMap;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/import", get(import_page))
        .route(
            "/import/preview",
            post(preview.layer(axum::extract::DefaultBodyLimit::disable())),
        )
        .route("/import/confirm", post(confirm))
        .route("/exports", get(exports_page).post(new_export))
        .route("/exports/{id}/download", get(download))
        .route("/{section}/{id}/export", get(entity_export))
}

#[derive(Template)]
#[template(path = "import.html")]
struct ImportPage {
    p: PageCtx,
    teams: Vec<(i64, String, bool)>,
    preview: Option<ImportPreview>,
    token: String,
    team: String,
    target: String,
    report: Option<ImportReport>,
}

async fn teams(state: &AppState, session: &SignedIn) -> Result<Vec<(i64, String, bool)>, UiError> {
    let current = session.current_team();
    Ok(state
        .store
        .teams_of(session.user.id)
        .await
        .ui(session.lang)?
        .into_iter()
        .map(|t| (t.id, t.name, Some(t.id) == current))
        .collect())
}

async fn import_page(
    State(state): State<AppState>,
    session: SignedIn,
) -> Result<Response, UiError> {
    let p = PageCtx::signed_in(
        &state,
        &session,
        session.lang.t("exchange.import_title").into(),
    )
    .await
    .ui(session.lang)?;
    Ok(render(&ImportPage {
        p,
        teams: teams(&state, &session).await?,
        preview: None,
        token: String::new(),
        team: String::new(),
        target: String::new(),
        report: None,
    }))
}

fn waiting_path(
    state: &AppState,
    user_id: i64,
    token: &str,
) -> Result<std::path::PathBuf, AppError> {
    if token.len() != 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AppError::invalid(
            "token",
            "this import is no longer waiting; upload the file again",
        ));
    }
    Ok(state
        .store
        .blob_store()?
        .root()
        .join("tmp")
        .join(format!("import-{user_id}-{token}.eln")))
}

async fn preview(
    State(state): State<AppState>,
    session: SignedIn,
    multipart: Multipart,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let mut received = receive_archive(&state.store, multipart).await.ui(lang)?;
    let options = import_options(&received.fields, session.current_team()).ui(lang)?;
    let preview = state
        .store
        .preview_received_eln(&session.subject, &received.path, &options)
        .await
        .ui(lang)?;
    let token = hex::encode(rand::random::<[u8; 16]>());
    let waiting = waiting_path(&state, session.user.id, &token).ui(lang)?;
    tokio::fs::rename(&received.path, &waiting)
        .await
        .map_err(|e| AppError::internal(&e))
        .ui(lang)?;
    received.path = std::path::PathBuf::new();
    let p = PageCtx::signed_in(&state, &session, lang.t("exchange.preview_title").into())
        .await
        .ui(lang)?;
    Ok(render(&ImportPage {
        p,
        teams: Vec::new(),
        preview: Some(preview),
        token,
        team: options.team_id.to_string(),
        target: received.fields.get("target").cloned().unwrap_or_default(),
        report: None,
    }))
}

#[derive(Debug, Deserialize)]
struct ConfirmForm {
    token: String,
    #[serde(default)]
    team: String,
    #[serde(default)]
    target: String,
}

async fn confirm(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<ConfirmForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let path = waiting_path(&state, session.user.id, &form.token).ui(lang)?;
    if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
        return Err(UiError(
            AppError::invalid(
                "token",
                "this import is no longer waiting; upload the file again",
            ),
            lang,
        ));
    }
    let fields: HashMap<String, String> =
        HashMap::from([("team".into(), form.team), ("target".into(), form.target)]);
    let options = import_options(&fields, session.current_team()).ui(lang)?;
    let outcome = state
        .store
        .import_received_eln(&session.subject, &path, &options)
        .await;
    let _ = tokio::fs::remove_file(&path).await;
    let report = outcome.ui(lang)?;
    let p = PageCtx::signed_in(&state, &session, lang.t("exchange.report_title").into())
        .await
        .ui(lang)?;
    Ok(render(&ImportPage {
        p,
        teams: Vec::new(),
        preview: None,
        token: String::new(),
        team: String::new(),
        target: String::new(),
        report: Some(report),
    }))
}

struct JobView {
    id: i64,
    what: String,
    format: String,
    state: &'static str,
    is_done: bool,
    is_running: bool,
    done: i64,
    total: i64,
    created: String,
    /// Why it failed, or what a finished one left out.
    error: String,
}

#[derive(Template)]
#[template(path = "exports.html")]
struct ExportsPage {
    p: PageCtx,
    jobs: Vec<JobView>,
    /// Some job is queued or running: the page refreshes itself until none is.
    any_running: bool,
}

fn job_view(job: &ExportJob, lang: crate::i18n::Lang) -> JobView {
    let scope = &job.scope;
    let what = if scope.user.is_some() {
        lang.t("exchange.scope_mine").to_owned()
    } else if scope.team.is_some() {
        lang.t("exchange.scope_team").to_owned()
    } else {
        format!(
            "{} {}",
            scope.experiments.len() + scope.items.len(),
            lang.t("exchange.scope_entries")
        )
    };
    JobView {
        id: job.id,
        what,
        state: match job.state.as_str() {
            "done" => lang.t("exchange.state_done"),
            "failed" => lang.t("exchange.state_failed"),
            "running" => lang.t("exchange.state_running"),
            _ => lang.t("exchange.state_queued"),
        },
        is_done: job.state == "done",
        is_running: matches!(job.state.as_str(), "queued" | "running"),
        format: lang
            .t(match job.format.as_str() {
                "zip" => "exchange.format_zip",
                "zipa" => "exchange.format_zipa",
                "pdf" => "exchange.format_pdf",
                "pdfa" => "exchange.format_pdfa",
                _ => "exchange.format_eln",
            })
            .to_owned(),
        done: job.done,
        total: job.total,
        created: when(job.created_at),
        error: job
            .error
            .clone()
            .or_else(|| job.note.clone())
            .unwrap_or_default(),
    }
}

async fn exports_page(
    State(state): State<AppState>,
    session: SignedIn,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let jobs: Vec<JobView> = state
        .store
        .export_jobs(&session.subject)
        .await
        .ui(lang)?
        .iter()
        .map(|j| job_view(j, lang))
        .collect();
    let any_running = jobs.iter().any(|j| j.is_running);
    let p = PageCtx::signed_in(&state, &session, lang.t("exchange.exports_title").into())
        .await
        .ui(lang)?;
    Ok(render(&ExportsPage {
        p,
        jobs,
        any_running,
    }))
}

#[derive(Debug, Deserialize)]
struct NewExportForm {
    scope: String,
    #[serde(default)]
    experiments: String,
    #[serde(default)]
    items: String,
    /// One of `EXPORT_FORMATS`; `.eln` when empty.
    #[serde(default)]
    format: String,
}

fn ids(list: &str) -> Result<Vec<i64>, AppError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| AppError::invalid("ids", "expected entry numbers"))
        })
        .collect()
}

async fn new_export(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<NewExportForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let scope = match form.scope.as_str() {
        "mine" => ExportScope {
            user: Some(session.user.id),
            ..Default::default()
        },
        "team" => ExportScope {
            team: session.current_team(),
            ..Default::default()
        },
        _ => ExportScope {
            experiments: ids(&form.experiments).ui(lang)?,
            items: ids(&form.items).ui(lang)?,
            ..Default::default()
        },
    };
    let format = if form.format.is_empty() {
        "eln"
    } else {
        form.format.as_str()
    };
    start_export(&state, &session.subject, &scope, format, lang)
        .await
        .ui(lang)?;
    Ok(Redirect::to("/exports").into_response())
}

async fn download(
    State(state): State<AppState>,
    session: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let id: i64 = id
        .parse()
        .map_err(|_| UiError(AppError::NotFound("export".into()), lang))?;
    export_download(&state.store, &session.subject, id)
        .await
        .ui(lang)
}

async fn entity_export(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let kind = kind_of(&section).ok_or_else(|| UiError(AppError::NotFound("page".into()), lang))?;
    let id: i64 = id
        .parse()
        .map_err(|_| UiError(AppError::NotFound("entity".into()), lang))?;
    let row = state
        .store
        .entity_of_kind(&session.subject, kind, id)
        .await
        .ui(lang)?;
    let name = format!("{}-{}.eln", row.kind.as_str(), row.id);
    eln_response(&state, &session.subject, &[row.id], &name, lang)
        .await
        .ui(lang)
}
