//! A team's tags (eLabFTW's `/teams/{id}/tags`): every tag its entries carry, plus those its
//! members declared ahead of use, each with the number of entries that carry it.
//!
//! Who may do what: members read the list and declare tags (declaring changes no entry); team
//! admins and sysadmins rename (`updatetag`) or remove a tag across the team. Tags live in each
//! entry's document, so a rename or removal edits every entry that carries the tag, each change
//! in that entry's history under the admin's name. It is refused as a whole, before anything
//! changes, when one of those entries may not be changed (locked, for instance): the answer
//! names them.
//!
//! A tag's id is the same stable number as under `/{entity_type}/{id}/tags`.

use super::entities::created_at_path;
use super::json::JsonBody;
use super::openapi::{Documented, Op, list_of, object, one_of, schema, string};
use super::subresources::tag_id;
use super::teams::{readable_team, writable_team};
use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::AppError;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cahier_store::team_tags::TeamTag;
use serde_json::{Value, json};

pub(super) fn routes() -> Documented {
    Documented::new()
        .route(
            "team tags",
            "/teams/{id}/tags",
            get(list).post(create),
            vec![
                Op::get("List a team's tags", list_of("TeamTag")),
                Op::post("Declare a tag for the team").body(object(&[("tag", string())])),
            ],
        )
        .route(
            "team tags",
            "/teams/{id}/tags/{subid}",
            get(read).patch(patch).delete(remove),
            vec![
                Op::get("Read a team's tag", schema("TeamTag")),
                Op::patch(
                    "Rename a tag on every entry of the team (team admins)",
                    schema("TeamTag"),
                )
                .body(object(&[
                    ("action", one_of(&["updatetag"])),
                    ("tag", string()),
                ])),
                Op::delete("Remove a tag from every entry of the team (team admins)"),
            ],
        )
}

fn tag_json(team_id: i64, tag: &TeamTag) -> Value {
    json!({
        "id": tag_id(&tag.tag),
        "tag": tag.tag,
        "item_count": tag.item_count,
        "is_favorite": 0,
        "team": team_id,
    })
}

async fn find(app: &AppState, team_id: i64, subid: &str) -> Result<TeamTag, AppError> {
    let wanted = subid.parse::<i64>().ok();
    app.store
        .team_tags(team_id)
        .await?
        .into_iter()
        .find(|t| wanted == Some(tag_id(&t.tag)) || t.tag == subid)
        .ok_or_else(|| AppError::NotFound("tag".into()))
}

async fn list(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let team_id = readable_team(&app, &caller, &id).await?;
    let tags = app.store.team_tags(team_id).await?;
    let list: Vec<Value> = tags.iter().map(|t| tag_json(team_id, t)).collect();
    Ok(axum::Json(list).into_response())
}

async fn create(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let team_id = readable_team(&app, &caller, &id).await?;
    let tag = body
        .string("tag")?
        .ok_or_else(|| AppError::invalid("tag", "required: the tag to declare"))?;
    let tag = app
        .store
        .add_team_tag(team_id, &tag, caller.user.id)
        .await?;
    Ok(created_at_path(
        &app,
        &format!("teams/{team_id}/tags/{}", tag_id(&tag)),
    ))
}

async fn read(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((id, subid)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let team_id = readable_team(&app, &caller, &id).await?;
    let tag = find(&app, team_id, &subid).await?;
    Ok(axum::Json(tag_json(team_id, &tag)).into_response())
}

async fn patch(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((id, subid)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Response, AppError> {
    let team_id = writable_team(&app, &caller, &id).await?;
    let tag = find(&app, team_id, &subid).await?;
    match body.string("action")?.as_deref() {
        None | Some("updatetag") => {}
        Some(other) => {
            return Err(AppError::invalid(
                "action",
                format!("unknown action {other}; expected updatetag"),
            ));
        }
    }
    let wanted = body
        .string("tag")?
        .ok_or_else(|| AppError::invalid("tag", "required: the new text of the tag"))?;
    cahier_core::document::clean_tag(&wanted)
        .map_err(|e| AppError::invalid("tag", e.to_string()))?;
    let renamed = app
        .store
        .rename_team_tag(&caller.subject, team_id, &tag.tag, &wanted)
        .await?;
    let after = find(&app, team_id, &renamed).await?;
    Ok(axum::Json(tag_json(team_id, &after)).into_response())
}

async fn remove(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((id, subid)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let team_id = writable_team(&app, &caller, &id).await?;
    let tag = find(&app, team_id, &subid).await?;
    app.store
        .remove_team_tag(&caller.subject, team_id, &tag.tag)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
