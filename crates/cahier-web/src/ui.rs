//! The web UI: server-rendered pages, usable before any script runs. Each page module owns its
//! routes, handlers and template structs. Rules live in the store and core, never here.

mod admin;
mod api_page;
mod attachments;
mod audit_log;
mod calendar;
mod calendar_feed;
mod dashboard;
mod entities;
mod exchange;
mod fields;
mod history;
mod pdf;
mod replica_pages;
mod session_pages;
mod settings;
mod signatures;
mod stock;

use crate::AppState;
use crate::auth::SignedIn;
use crate::error::AppError;
use crate::i18n::Lang;
use askama::Template;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// Everything the page layout (`base.html`) needs.
#[derive(Debug, Clone)]
pub struct PageCtx {
    /// Interface language.
    pub lang: Lang,
    /// CSRF token for forms.
    pub csrf: String,
    /// Page title (already translated).
    pub title: String,
    /// The signed-in user, for the navigation.
    pub nav: Option<NavUser>,
    /// A notice to show at the top (already translated).
    pub notice: Option<String>,
    /// Sync state, on a field replica.
    pub replica: Option<ReplicaBanner>,
}

/// The sync banner every page of a field replica shows.
#[derive(Debug, Clone)]
pub struct ReplicaBanner {
    /// Whether the server answered last time.
    pub online: bool,
    /// Last successful sync, formatted, or empty.
    pub last_sync: String,
    /// Entries with changes waiting to be sent.
    pub waiting: i64,
    /// Refused change sets waiting for the user.
    pub rejected: i64,
    /// Booking requests made here, waiting to be sent (pending confirmation).
    pub booking_waiting: i64,
    /// Booking requests the server refused, not yet dismissed.
    pub booking_refused: i64,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// Translation key naming the file policy (which attachment files stay on the laptop).
    pub files_key: &'static str,
}

/// The navigation's view of the user.
#[derive(Debug, Clone)]
pub struct NavUser {
    /// Full name.
    pub name: String,
    /// Instance admin.
    pub is_sysadmin: bool,
    /// Admin of the current team.
    pub is_team_admin: bool,
    /// Teams to switch between: (id, name, is current).
    pub teams: Vec<(i64, String, bool)>,
}

impl PageCtx {
    /// The assets' fingerprint, for cache-busting URLs.
    pub fn assets(&self) -> &'static str {
        crate::assets::version()
    }

    /// Translates a key.
    pub fn t(&self, key: &str) -> &'static str {
        self.lang.t(key)
    }

    /// Context for a visitor who is not signed in.
    pub fn anonymous(lang: Lang, csrf: &str, title_key: &str) -> Self {
        Self {
            lang,
            csrf: csrf.to_owned(),
            title: lang.t(title_key).to_owned(),
            nav: None,
            notice: None,
            replica: None,
        }
    }

    /// Context for a signed-in user.
    pub async fn signed_in(
        state: &AppState,
        session: &SignedIn,
        title: String,
    ) -> Result<Self, AppError> {
        let current = session.current_team();
        let teams = state
            .store
            .teams_of(session.user.id)
            .await?
            .into_iter()
            .map(|t| (t.id, t.name, Some(t.id) == current))
            .collect();
        let replica = match &state.replica {
            None => None,
            Some(handle) => {
                let status = handle.status.lock().map(|s| s.clone()).unwrap_or_default();
                let rejected = state
                    .store
                    .rejected_edits()
                    .await?
                    .iter()
                    .filter(|r| r.status == "pending")
                    .count();
                let (booking_waiting, booking_refused) =
                    state.store.booking_request_counts().await?;
                Some(ReplicaBanner {
                    booking_waiting,
                    booking_refused,
                    online: status.online,
                    last_sync: status.last_sync_ms.map(when).unwrap_or_default(),
                    waiting: state.store.pending_count().await?,
                    rejected: i64::try_from(rejected).unwrap_or(i64::MAX),
                    error: status.last_error,
                    files_key: crate::offline_files::policy_key(&state.store.file_policy().await?),
                })
            }
        };
        Ok(Self {
            lang: session.lang,
            csrf: session.csrf.clone(),
            title,
            nav: Some(NavUser {
                name: session.user.fullname(),
                is_sysadmin: session.user.is_sysadmin,
                is_team_admin: session.is_team_admin(),
                teams,
            }),
            notice: None,
            replica,
        })
    }

    /// Adds a notice from a translation key.
    pub fn with_notice(mut self, key: Option<&str>) -> Self {
        self.notice = key.map(|k| self.lang.t(k).to_owned());
        self
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    p: PageCtx,
    status: u16,
    message: String,
    is_not_found: bool,
}

#[derive(Template)]
#[template(path = "unlock.html")]
struct UnlockPage {
    p: PageCtx,
    error: Option<String>,
}

/// The page a locked field replica shows: it asks for the passphrase. `wrong` adds the
/// "wrong passphrase" message (with a 403).
pub fn unlock_page(lang: Lang, wrong: bool) -> Response {
    let page = UnlockPage {
        p: PageCtx::anonymous(lang, "", "replica.unlock_title"),
        error: wrong.then(|| lang.t("replica.wrong_passphrase").to_owned()),
    };
    let status = if wrong {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::OK
    };
    (status, render(&page)).into_response()
}

/// Renders an error as a page in the user's language.
pub fn error_page(error: &AppError, lang: Lang) -> Response {
    let status = error.status();
    let page = ErrorPage {
        p: PageCtx::anonymous(lang, "", "error.title"),
        status: status.as_u16(),
        message: error.public_message(),
        // A file a field copy lacks says why and what to do, not just "not found".
        is_not_found: status == StatusCode::NOT_FOUND && !matches!(error, AppError::FileAbsent(_)),
    };
    (status, render(&page)).into_response()
}

/// Renders a template; a rendering failure becomes a 500 page.
pub fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            let error = AppError::internal(&error);
            (error.status(), error.public_message()).into_response()
        }
    }
}

/// An error raised by a UI handler, rendered as a page in the user's language.
#[derive(Debug)]
pub struct UiError(pub AppError, pub Lang);

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        error_page(&self.0, self.1)
    }
}

/// Attaches the language to errors of a UI handler.
pub trait UiResultExt<T> {
    /// Renders errors as pages in `lang`.
    fn ui(self, lang: Lang) -> Result<T, UiError>;
}

impl<T, E: Into<AppError>> UiResultExt<T> for Result<T, E> {
    fn ui(self, lang: Lang) -> Result<T, UiError> {
        self.map_err(|e| UiError(e.into(), lang))
    }
}

/// Formats milliseconds as `YYYY-MM-DD HH:MM` (UTC) for pages.
pub fn when(ms: i64) -> String {
    let full = cahier_core::clock::format_sql_datetime(ms);
    full.get(..16).unwrap_or(&full).to_owned()
}

/// All UI routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(session_pages::routes())
        .merge(dashboard::routes())
        .merge(fields::routes())
        .merge(entities::routes())
        .merge(attachments::routes())
        .merge(history::routes())
        .merge(pdf::routes())
        .merge(settings::routes())
        .merge(signatures::routes())
        .merge(admin::routes())
        .merge(audit_log::routes())
        .merge(replica_pages::routes())
        .merge(api_page::routes())
        .merge(calendar::routes())
        .merge(calendar_feed::routes())
        .merge(stock::routes())
        .merge(exchange::routes())
}
