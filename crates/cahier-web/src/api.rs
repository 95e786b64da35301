//! The REST API, compatible with eLabFTW's API v2 (`reference/elabftw.md` §7): raw key in
//! `Authorization`, POST → 201 + `Location`, PATCH → 200 + full object, DELETE → 204, errors as
//! `{code, message, description}`, dates as `YYYY-MM-DD HH:MM:SS`, `canread`/`canwrite`/`metadata`
//! as JSON strings. Endpoints whose feature does not exist yet answer 501 and say so.

mod archive;
pub(crate) mod entities;
mod events;
pub(crate) mod exports;
mod json;
pub(crate) mod openapi;
pub(crate) mod pdf;
mod stock;
mod subresources;
mod team_tags;
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

/// The API's routes and its OpenAPI document, made from the same table.
pub(crate) fn documented(version: &str) -> (Router<AppState>, serde_json::Value) {
    use openapi::{Documented, Op, schema};
    Documented::new()
        .route(
            "instance",
            "/info",
            get(info),
            vec![Op::get("Counts and version", schema("Info"))],
        )
        .route(
            "users",
            "/users/me",
            get(me),
            vec![Op::get("The caller", schema("User"))],
        )
        .merge(entities::routes())
        .merge(uploads::routes())
        .merge(subresources::routes())
        .merge(teams::routes())
        .merge(team_tags::routes())
        .merge(events::routes())
        .merge(stock::routes())
        .merge(exports::routes())
        .finish(version)
}

pub(crate) fn routes(version: &str) -> Router<AppState> {
    let (router, document) = documented(version);
    openapi::remember(document);
    let version = version.to_owned();
    router
        .route(
            "/openapi.json",
            get(move || async move { axum::Json(openapi::document(&version).clone()) }),
        )
        .fallback(not_found)
        .layer(axum::middleware::map_response(json_errors))
}

/// Errors made by the framework before a handler runs (a query string, path or multipart
/// body that cannot be read) come as plain text; scripts expect eLabFTW's JSON error, so they
/// are rewritten as one, keeping the status and the text.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    // Framework rejections are one short line; anything longer is cut.
    let text = match axum::body::to_bytes(body, 16 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let description = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("Error").to_owned()
    } else {
        text.trim().to_owned()
    };
    let mut rewritten = (
        status,
        axum::Json(json!({
            "code": status.as_u16(),
            "message": status.canonical_reason().unwrap_or("Error"),
            "description": description,
        })),
    )
        .into_response();
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
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
