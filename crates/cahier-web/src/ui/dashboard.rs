//! The dashboard: the user's recent experiments, unfinished steps and the team's resources low
//! in stock.

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
    /// Resources of the current team at or below their threshold: (id, title), the first few.
    low_stock: Vec<(i64, String)>,
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
    let low_stock = match session.current_team() {
        Some(team) => state
            .store
            .to_reorder(&session.subject, team)
            .await
            .ui(lang)?
            .into_iter()
            .take(8)
            .map(|r| (r.id, r.title))
            .collect(),
        None => Vec::new(),
    };
    let p = PageCtx::signed_in(&state, &session, lang.t("dashboard.title").to_owned())
        .await
        .ui(lang)?;
    Ok(render(&DashboardPage {
        p,
        first_name: session.user.firstname.clone(),
        has_team: !session.subject.teams.is_empty(),
        recent,
        steps,
        low_stock,
    }))
}
