//! The REST API, compatible with eLabFTW's API v2 (`reference/elabftw.md` §7): raw key in
//! `Authorization`, POST → 201 + `Location`, PATCH → 200 + full object, DELETE → 204, errors as
//! `{code, message, description}`, dates as `YYYY-MM-DD HH:MM:SS`, `canread`/`canwrite`/`metadata`
//! as JSON strings. Endpoints whose feature does not exist yet answer 501 and say so.

mod entities;
pub(crate) mod exports;
mod json;
mod subresources;
mod teams;
pub(crate) mod uploads;

use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::AppError;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cahier_core::clock::format_sql_datetime;
use serde_json::json;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/info", get(info))
        .route("/users/me", get(me))
        .merge(entities::routes())
        .merge(uploads::routes())
        .merge(subresources::routes())
        .merge(teams::routes())
        .merge(exports::routes())
        .fallback(not_found)
}

async fn not_found() -> Response {
    AppError::NotFound("endpoint".into()).into_response()
}

/// `GET /info`: instance facts that scripts print.
async fn info(State(state): State<AppState>, _caller: ApiCaller) -> Result<Response, AppError> {
    let (users, teams, experiments, items) = state.store.instance_counts().await?;
    Ok(axum::Json(json!({
        "elabftw_version": state.config.version,
        "elabftw_version_int": 0,
        "cahier_version": state.config.version,
        "ts_balance": 0,
        "all_users_count": users,
        "active_users_count": users,
        "items_count": items,
        "teams_count": teams,
        "experiments_count": experiments,
        "experiments_timestamped_count": 0,
        "uploads_filesize_sum": 0,
        "uploads_filesize_sum_formatted": "0 B",
    }))
    .into_response())
}

/// `GET /users/me`.
async fn me(State(state): State<AppState>, caller: ApiCaller) -> Result<Response, AppError> {
    let teams = state.store.teams_of(caller.user.id).await?;
    let user = &caller.user;
    Ok(axum::Json(json!({
        "userid": user.id,
        "firstname": user.firstname,
        "lastname": user.lastname,
        "fullname": user.fullname(),
        "email": user.email,
        "is_sysadmin": i64::from(user.is_sysadmin),
        "team": caller.team_id,
        "teams": teams.iter().map(|t| json!({"id": t.id, "name": t.name, "is_admin": i64::from(t.is_admin)})).collect::<Vec<_>>(),
        "lang": user.lang,
        "created_at": format_sql_datetime(user.created_at),
        "last_login": user.last_login.map(format_sql_datetime),
    }))
    .into_response())
}
