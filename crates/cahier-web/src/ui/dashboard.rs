//! The dashboard: the user's recent experiments and unfinished steps.

use super::{PageCtx, UiError, UiResultExt, render, when};
use crate::AppState;
use crate::auth::SignedIn;
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use cahier_core::EntityKind;
use cahier_store::listing::ListQuery;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/", get(dashboard))
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    p: PageCtx,
    first_name: String,
    has_team: bool,
    recent: Vec<(i64, String, String)>,
    steps: Vec<(i64, String, String)>,
}

async fn dashboard(State(state): State<AppState>, session: SignedIn) -> Result<Response, UiError> {
    let lang = session.lang;
    let mut query = ListQuery::new(EntityKind::Experiment);
    query.owners.push(session.user.id);
    query.limit = 8;
    let recent = state
        .store
        .list_entities(&session.subject, &query)
        .await
        .ui(lang)?
        .rows
        .into_iter()
        .map(|r| (r.id, r.title, when(r.modified_at)))
        .collect();
    let steps = state
        .store
        .unfinished_steps(&session.subject, 10)
        .await
        .ui(lang)?;
    let p = PageCtx::signed_in(&state, &session, lang.t("dashboard.title").to_owned())
        .await
        .ui(lang)?;
    Ok(render(&DashboardPage {
        p,
        first_name: session.user.firstname.clone(),
        has_team: !session.subject.teams.is_empty(),
        recent,
        steps,
    }))
}
