//! Entity sub-resources of API v2 (`/{entity_type}/{id}/…`, eLabFTW §7.3): comments, steps,
//! tags, links to experiments and resources, revisions, and `GET /unfinished_steps`. Every read and write goes
//! through the store with the caller's `Subject`; an entity the caller may not read is "not
//! found", exactly like a missing one.
//!
//! Sub-ids. Steps and comments live in the entity's document under string ids; eLabFTW's
//! clients need integers (they parse the last segment of `Location` as one). A sub-resource's
//! public id is therefore a stable integer derived from its string id: the first 13 hex digits
//! (52 bits, safe in JavaScript) when the id is hexadecimal, as every id Cahier makes is, or a
//! 52-bit FNV-1a hash otherwise. Paths also accept the string id itself. A tag's id is the
//! 52-bit FNV-1a hash of its text: stable (unlike a position), and the same for the same tag on
//! every entry, like eLabFTW's team-wide tag ids. Revisions are numbered by the global sequence
//! number of the change (`seq` in the history).

use super::entities::{created_at_path, kind, parse_id};
use super::json::JsonBody;
use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::AppError;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cahier_core::clock::format_sql_datetime;
use cahier_core::document::EntityOp;
use cahier_core::{EntityKind, EntityPatch};
use cahier_store::entities::{CommentRow, EntityRow, StepRow};
use serde_json::{Value, json};
use std::collections::HashMap;

use super::openapi::{Documented, Op, list_of, object, one_of, schema, string};

pub(super) fn routes() -> Documented {
    let text = |name: &str| object(&[(name, string())]);
    Documented::new()
        .route(
            "comments",
            "/{entity_type}/{id}/comments",
            get(list_comments).post(add_comment),
            vec![
                Op::get("List comments", list_of("Comment")),
                Op::post("Comment (readers may comment)").body(text("comment")),
            ],
        )
        .route(
            "comments",
            "/{entity_type}/{id}/comments/{subid}",
            get(read_comment).patch(edit_comment).delete(delete_comment),
            vec![
                Op::get("Read a comment", schema("Comment")),
                Op::patch("Edit your comment", schema("Comment")).body(text("comment")),
                Op::delete("Delete your comment"),
            ],
        )
        .route(
            "steps",
            "/{entity_type}/{id}/steps",
            get(list_steps).post(add_step),
            vec![
                Op::get("List steps", list_of("Step")),
                Op::post("Add a step").body(text("body")),
            ],
        )
        .route(
            "steps",
            "/{entity_type}/{id}/steps/{subid}",
            get(read_step).patch(patch_step).delete(delete_step),
            vec![
                Op::get("Read a step", schema("Step")),
                Op::patch("Finish or reopen a step, or edit its text", schema("Step")).body(
                    object(&[
                        ("action", one_of(&["finish", "update"])),
                        ("body", string()),
                    ]),
                ),
                Op::delete("Delete a step"),
            ],
        )
        .route(
            "tags",
            "/{entity_type}/{id}/tags",
            get(list_tags).post(add_tag).delete(clear_tags),
            vec![
                Op::get("List tags", list_of("Tag")),
                Op::post("Add a tag").body(text("tag")),
                Op::delete("Remove every tag"),
            ],
        )
        .route(
            "tags",
            "/{entity_type}/{id}/tags/{subid}",
            get(read_tag).patch(patch_tag),
            vec![
                Op::get("Read a tag", schema("Tag")),
                Op::patch("Remove the tag from the entry", list_of("Tag"))
                    .body(object(&[("action", one_of(&["unreference"]))])),
            ],
        )
        .route(
            "links",
            "/{entity_type}/{id}/experiments_links",
            get(|app, caller, path| list_links(app, caller, path, EntityKind::Experiment)),
            vec![Op::get("List links to experiments", list_of("Link"))],
        )
        .route(
            "links",
            "/{entity_type}/{id}/experiments_links/{subid}",
            post(|app, caller, path, body| {
                add_link(app, caller, path, body, EntityKind::Experiment)
            })
            .delete(|app, caller, path| remove_link(app, caller, path, EntityKind::Experiment)),
            vec![
                Op::post("Link an experiment (duplicate: also link to what it links to)")
                    .body(object(&[("action", one_of(&["create", "duplicate"]))])),
                Op::delete("Remove the link to an experiment"),
            ],
        )
        .route(
            "links",
            "/{entity_type}/{id}/items_links",
            get(|app, caller, path| list_links(app, caller, path, EntityKind::Resource)),
            vec![Op::get("List links to resources", list_of("Link"))],
        )
        .route(
            "links",
            "/{entity_type}/{id}/items_links/{subid}",
            post(|app, caller, path, body| add_link(app, caller, path, body, EntityKind::Resource))
                .delete(|app, caller, path| remove_link(app, caller, path, EntityKind::Resource)),
            vec![
                Op::post("Link a resource (duplicate: also link to what it links to)")
                    .body(object(&[("action", one_of(&["create", "duplicate"]))])),
                Op::delete("Remove the link to a resource"),
            ],
        )
        .route(
            "revisions",
            "/{entity_type}/{id}/revisions",
            get(list_revisions),
            vec![Op::get("List saved versions", list_of("Revision"))],
        )
        .route(
            "revisions",
            "/{entity_type}/{id}/revisions/{subid}",
            get(read_revision).patch(restore_revision),
            vec![
                Op::get("Read a saved version", schema("Revision")),
                Op::patch("Restore this version's body", schema("Revision"))
                    .body(object(&[("action", one_of(&["replace"]))])),
            ],
        )
        .route(
            "steps",
            "/unfinished_steps",
            get(unfinished_steps),
            vec![
                Op::get(
                    "Unfinished steps of your entries",
                    schema("UnfinishedSteps"),
                )
                .query(&[("scope", one_of(&["user", "team"]))]),
            ],
        )
}

/// 52 bits: integers above 2^53 lose precision in JavaScript clients.
const ID_MASK: u64 = (1 << 52) - 1;

fn fnv52(text: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::try_from(hash & ID_MASK).unwrap_or_default()
}

/// The public integer id of a step or comment (see the module documentation).
pub(crate) fn public_id(string_id: &str) -> i64 {
    match string_id.get(..13) {
        Some(prefix) if string_id.chars().all(|c| c.is_ascii_hexdigit()) => {
            i64::from_str_radix(prefix, 16).unwrap_or_else(|_| fnv52(string_id))
        }
        _ => fnv52(string_id),
    }
}

/// The public id of a tag.
pub(super) fn tag_id(tag: &str) -> i64 {
    fnv52(tag)
}

/// Whether a path sub-id designates the item with this string id.
fn matches(subid: &str, string_id: &str) -> bool {
    subid == string_id || subid.parse::<i64>().ok() == Some(public_id(string_id))
}

/// A new sub-id, the same shape as the web UI's (16 hex digits).
fn new_sub_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// The entity behind `/{entity_type}/{id}`, if the caller may read it.
async fn entity(
    app: &AppState,
    caller: &ApiCaller,
    entity_type: &str,
    id: &str,
) -> Result<EntityRow, AppError> {
    let kind = kind(entity_type)?;
    let id = parse_id(id)?;
    Ok(app.store.entity_of_kind(&caller.subject, kind, id).await?)
}

/// Applies one operation to an entity through the store (which checks the policy).
async fn apply(
    app: &AppState,
    caller: &ApiCaller,
    id: i64,
    ops: Vec<EntityOp>,
    message: &str,
) -> Result<(), AppError> {
    let patch = EntityPatch {
        ops,
        ..Default::default()
    };
    app.store
        .update_entity(&caller.subject, id, None, &patch, message)
        .await?;
    Ok(())
}

/// A required, non-blank text field.
fn required_text(body: &JsonBody, field: &str) -> Result<String, AppError> {
    match body.string(field)? {
        Some(text) if !text.trim().is_empty() => Ok(text),
        _ => Err(AppError::invalid(field, "required, and must not be empty")),
    }
}

async fn fullnames(app: &AppState, ids: &[i64]) -> Result<HashMap<i64, String>, AppError> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    Ok(app
        .store
        .users_by_ids(&ids)
        .await?
        .into_iter()
        .map(|u| (u.id, u.fullname()))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Comments

fn comment_json(entity_id: i64, c: &CommentRow, names: &HashMap<i64, String>) -> Value {
    json!({
        "id": public_id(&c.comment_id),
        "item_id": entity_id,
        "comment": c.body,
        "userid": c.author,
        "fullname": names.get(&c.author).cloned().unwrap_or_default(),
        "created_at": format_sql_datetime(c.created_at),
        "modified_at": format_sql_datetime(c.edited_at.unwrap_or(c.created_at)),
        "immutable": 0,
    })
}

async fn find_comment(app: &AppState, id: i64, subid: &str) -> Result<CommentRow, AppError> {
    app.store
        .comments(id)
        .await?
        .into_iter()
        .find(|c| matches(subid, &c.comment_id))
        .ok_or_else(|| AppError::NotFound("comment".into()))
}

async fn list_comments(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let row = entity(&app, &caller, &entity_type, &id).await?;
    let comments = app.store.comments(row.id).await?;
    let authors: Vec<i64> = comments.iter().map(|c| c.author).collect();
    let names = fullnames(&app, &authors).await?;
    let list: Vec<Value> = comments
        .iter()
        .map(|c| comment_json(row.id, c, &names))
        .collect();
    Ok(axum::Json(list).into_response())
}

async fn add_comment(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let row = entity(&app, &caller, &entity_type, &id).await?;
    let text = required_text(&body, "comment")?;
    let sub = new_sub_id();
    let op = EntityOp::AddComment {
        id: sub.clone(),
        author: caller.user.id,
        body: text,
        at_ms: app.store.now_ms(),
    };
    apply(&app, &caller, row.id, vec![op], "comment").await?;
    Ok(created_at_path(
        &app,
        &format!("{entity_type}/{}/comments/{}", row.id, public_id(&sub)),
    ))
}

async fn read_comment(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id, subid)): Path<(String, String, String)>,
) -> Result<Response, AppError> {
    let row = entity(&app, &caller, &entity_type, &id).await?;
    let comment = find_comment(&app, row.id, &subid).await?;
    let names = fullnames(&app, &[comment.author]).await?;
    Ok(axum::Json(comment_json(row.id, &comment, &names)).into_response())
}

/// The comment, if the caller wrote it (only authors change or delete their comments).
async fn own_comment(
    app: &AppState,
    caller: &ApiCaller,
    entity_type: &str,
    id: &str,
    subid: &str,
) -> Result<(EntityRow, CommentRow), AppError> {
    caller.require_write()?;
    let row = entity(app, caller, entity_type, id).await?;
    let comment = find_comment(app, row.id, subid).await?;
    if comment.author != caller.user.id {
        return Err(AppError::Forbidden(
            "only the author of a comment can change or delete it".into(),
        ));
    }
    Ok((row, comment))
}

async fn edit_comment(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id, subid)): Path<(String, String, String)>,
    body: JsonBody,
) -> Result<Response, AppError> {
    let (row, comment) = own_comment(&app, &caller, &entity_type, &id, &subid).await?;
    let text = required_text(&body, "comment")?;
    let op = EntityOp::EditComment {
        id: comment.comment_id.clone(),
        body: text,
        at_ms: app.store.now_ms(),
    };
    apply(&app, &caller, row.id, vec![op], "comment edited").await?;
    let comment = find_comment(&app, row.id, &comment.comment_id).await?;
    let names = fullnames(&app, &[comment.author]).await?;
    Ok(axum::Json(comment_json(row.id, &comment, &names)).into_response())
}

async fn delete_comment(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id, subid)): Path<(String, String, String)>,
) -> Result<Response, AppError> {
    let (row, comment) = own_comment(&app, &caller, &entity_type, &id, &subid).await?;
    let op = EntityOp::DeleteComment {
        id: comment.comment_id,
    };
    apply(&app, &caller, row.id, vec![op], "comment removed").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Steps

fn step_json(entity_id: i64, s: &StepRow) -> Value {
    json!({
        "id": public_id(&s.step_id),
        "item_id": entity_id,
        "body": s.body,
        "ordering": s.ordering,
        "finished": i64::from(s.done),
        "finished_time": s.done_at.map(format_sql_datetime),
        "finished_by": s.done_by,
        "deadline": Value::Null,
        "deadline_notif": 0,
        "is_immutable": 0,
    })
}

async fn find_step(app: &AppState, id: i64, subid: &str) -> Result<StepRow, AppError> {
    app.store
        .steps(id)
        .await?
        .into_iter()
        .find(|s| matches(subid, &s.step_id))
        .ok_or_else(|| AppError::NotFound("step".into()))
}

async fn list_steps(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let row = entity(&app, &caller, &entity_type, &id).await?;
    let steps = app.store.steps(row.id).await?;
    let list: Vec<Value> = steps.iter().map(|s| step_json(row.id, s)).collect();
    Ok(axum::Json(list).into_response())
}

async fn add_step(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let row = entity(&app, &caller, &entity_type, &id).await?;
    let text = required_text(&body, "body")?;
    let sub = new_sub_id();
    let op = EntityOp::AddStep {
        id: sub.clone(),
        body: text,
        at_ms: app.store.now_ms(),
    };
    apply(&app, &caller, row.id, vec![op], "step").await?;
    Ok(created_at_path(
        &app,
        &format!("{entity_type}/{}/steps/{}", row.id, public_id(&sub)),
    ))
}

async fn read_step(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id, subid)): Path<(String, String, String)>,
) -> Result<Response, AppError> {
    let row = entity(&app, &caller, &entity_type, &id).await?;
    let step = find_step(&app, row.id, &subid).await?;
    Ok(axum::Json(step_json(row.id, &step)).into_response())
}

async fn patch_step(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id, subid)): Path<(String, String, String)>,
    body: JsonBody,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let row = entity(&app, &caller, &entity_type, &id).await?;
    let step = find_step(&app, row.id, &subid).await?;
    let (op, message) = match body.string("action")?.as_deref() {
        Some("finish") => {
            let done = !step.done;
            let op = EntityOp::FinishStep {
                id: step.step_id.clone(),
                done,
                by: caller.user.id,
                at_ms: app.store.now_ms(),
            };
            (op, if done { "step done" } else { "step reopened" })
        }
        None | Some("update") => {
            if body.has("deadline") || body.has("deadline_notif") {
                return Err(AppError::NotImplemented(
                    "step deadlines are not available yet in Cahier".into(),
                ));
            }
            let text = required_text(&body, "body")?;
            let op = EntityOp::EditStep {
                id: step.step_id.clone(),
                body: text,
            };
            (op, "step edited")
        }
        Some("notif") => {
            return Err(AppError::NotImplemented(
                "step deadline notifications are not available yet in Cahier".into(),
            ));
        }
        Some(other) => {
            return Err(AppError::invalid(
                "action",
                format!("unknown action {other}; expected finish or update"),
            ));
        }
    };
    apply(&app, &caller, row.id, vec![op], message).await?;
    let step = find_step(&app, row.id, &step.step_id).await?;
    Ok(axum::Json(step_json(row.id, &step)).into_response())
}

async fn delete_step(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id, subid)): Path<(String, String, String)>,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let row = entity(&app, &caller, &entity_type, &id).await?;
    let step = find_step(&app, row.id, &subid).await?;
    let op = EntityOp::DeleteStep { id: step.step_id };
    apply(&app, &caller, row.id, vec![op], "step removed").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /unfinished_steps`: the caller's own experiments, or with `?scope=team` every
/// experiment of the caller's team they may read. eLabFTW's shape: `{"experiments": [{id,
/// title, steps: [[step id, body], …]}], "items": []}`, newest entry first.
async fn unfinished_steps(
    State(app): State<AppState>,
    caller: ApiCaller,
    RawQuery(raw): RawQuery,
) -> Result<Response, AppError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|_| AppError::BadRequest("the query string could not be read".into()))?;
    let team = match pairs
        .iter()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.as_str())
    {
        None | Some("user") => None,
        Some("team") => Some(caller.team()?),
        Some(_) => return Err(AppError::invalid("scope", "expected user or team")),
    };
    let rows = app
        .store
        .open_steps(&caller.subject, EntityKind::Experiment, team)
        .await?;
    let mut entries: Vec<Value> = Vec::new();
    let mut current: Option<i64> = None;
    for (entity_id, title, step_id, body) in rows {
        if current != Some(entity_id) {
            current = Some(entity_id);
            entries.push(json!({"id": entity_id, "title": title, "steps": []}));
        }
        if let Some(Value::Array(steps)) = entries.last_mut().and_then(|e| e.get_mut("steps")) {
            steps.push(json!([public_id(&step_id), body]));
        }
    }
    Ok(axum::Json(json!({"experiments": entries, "items": []})).into_response())
}

// ---------------------------------------------------------------------------------------------
// Tags

fn tag_json(entity_id: i64, tag: &str) -> Value {
    json!({"id": tag_id(tag), "tag_id": tag_id(tag), "tag": tag, "item_id": entity_id, "is_favorite": 0})
}

fn find_tag(row: &EntityRow, subid: &str) -> Result<String, AppError> {
    row.tags
        .iter()
        .find(|t| subid.parse::<i64>().ok() == Some(tag_id(t)))
        .cloned()
        .ok_or_else(|| AppError::NotFound("tag".into()))
}

async fn list_tags(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let row = entity(&app, &caller, &entity_type, &id).await?;
    let list: Vec<Value> = row.tags.iter().map(|t| tag_json(row.id, t)).collect();
    Ok(axum::Json(list).into_response())
}

async fn add_tag(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let row = entity(&app, &caller, &entity_type, &id).await?;
    let tag = required_text(&body, "tag")?;
    apply(
        &app,
        &caller,
        row.id,
        vec![EntityOp::AddTag(tag.clone())],
        "tag",
    )
    .await?;
    // The document normalises tags: report the one it kept.
    let after = app.store.entity(&caller.subject, row.id).await?;
    let kept = after
        .tags
        .iter()
        .find(|t| !row.tags.contains(t))
        .or_else(|| {
            after
                .tags
                .iter()
                .find(|t| t.eq_ignore_ascii_case(tag.trim()))
        })
        .cloned()
        .unwrap_or_else(|| tag.trim().to_owned());
    Ok(created_at_path(
        &app,
        &format!("{entity_type}/{}/tags/{}", row.id, tag_id(&kept)),
    ))
}

async fn clear_tags(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let row = entity(&app, &caller, &entity_type, &id).await?;
    let ops: Vec<EntityOp> = row.tags.iter().cloned().map(EntityOp::RemoveTag).collect();
    if !ops.is_empty() {
        apply(&app, &caller, row.id, ops, "tags removed").await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn read_tag(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id, subid)): Path<(String, String, String)>,
) -> Result<Response, AppError> {
    let row = entity(&app, &caller, &entity_type, &id).await?;
    let tag = find_tag(&row, &subid)?;
    Ok(axum::Json(tag_json(row.id, &tag)).into_response())
}

/// `PATCH …/tags/{subid} {"action":"unreference"}` removes the tag from this entry and answers
/// the entry's remaining tags.
async fn patch_tag(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id, subid)): Path<(String, String, String)>,
    body: JsonBody,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let row = entity(&app, &caller, &entity_type, &id).await?;
    let tag = find_tag(&row, &subid)?;
    match body.string("action")?.as_deref() {
        Some("unreference") => {}
        Some(other) => {
            return Err(AppError::invalid(
                "action",
                format!("unknown action {other}; expected unreference"),
            ));
        }
        None => return Err(AppError::invalid("action", "required: unreference")),
    }
    apply(
        &app,
        &caller,
        row.id,
        vec![EntityOp::RemoveTag(tag)],
        "tag removed",
    )
    .await?;
    let after = app.store.entity(&caller.subject, row.id).await?;
    let list: Vec<Value> = after.tags.iter().map(|t| tag_json(row.id, t)).collect();
    Ok(axum::Json(list).into_response())
}

// ---------------------------------------------------------------------------------------------
// Links

/// `GET …/experiments_links` or `…/items_links`: the entries of `target_kind` this one links
/// to, among those the caller may read (a link to an unreadable entry is not shown).
async fn list_links(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id)): Path<(String, String)>,
    target_kind: EntityKind,
) -> Result<Response, AppError> {
    let row = entity(&app, &caller, &entity_type, &id).await?;
    let links = app.store.links(&caller.subject, row.id).await?;
    let list: Vec<Value> = links
        .iter()
        .filter(|l| l.kind == target_kind.as_str())
        .map(|l| {
            json!({
                "entityid": l.id, "uuid": l.uuid, "title": l.title, "custom_id": Value::Null,
                "link_state": l.state, "page": target_kind.api_name(), "type": target_kind.api_name(),
            })
        })
        .collect();
    Ok(axum::Json(list).into_response())
}

/// The name of a link target in messages.
fn target_noun(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Resource => "resource",
        _ => "experiment",
    }
}

/// The entry `subid` of `target_kind`, if the caller may read it (otherwise "not found").
async fn link_target(
    app: &AppState,
    caller: &ApiCaller,
    subid: &str,
    target_kind: EntityKind,
) -> Result<(i64, cahier_core::EntityId), AppError> {
    let missing = || AppError::NotFound(format!("{} {subid}", target_noun(target_kind)));
    let target_id: i64 = subid.parse().map_err(|_| missing())?;
    let target = app
        .store
        .entity_of_kind(&caller.subject, target_kind, target_id)
        .await
        .map_err(|_| missing())?;
    let uuid = target.uuid.parse().map_err(|_| missing())?;
    Ok((target.id, uuid))
}

/// `POST …/experiments_links/{subid}` or `…/items_links/{subid}`: links to that entry.
async fn add_link(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id, subid)): Path<(String, String, String)>,
    body: JsonBody,
    target_kind: EntityKind,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let row = entity(&app, &caller, &entity_type, &id).await?;
    let import_theirs = match body.string("action")?.as_deref() {
        None | Some("create") => false,
        Some("duplicate") => true,
        Some(other) => {
            return Err(AppError::invalid(
                "action",
                format!("unknown action {other}; expected create or duplicate"),
            ));
        }
    };
    let (target_id, target) = link_target(&app, &caller, &subid, target_kind).await?;
    if target_id == row.id {
        return Err(AppError::invalid("subid", "an entry cannot link to itself"));
    }
    let at_ms = app.store.now_ms();
    let mut ops = vec![EntityOp::AddLink { target, at_ms }];
    // `duplicate` (eLabFTW): also link to what the target links to (those the caller may
    // read), in the same change.
    if import_theirs {
        for link in app.store.links(&caller.subject, target_id).await? {
            if link.id == row.id {
                continue;
            }
            if let Ok(uuid) = link.uuid.parse() {
                ops.push(EntityOp::AddLink {
                    target: uuid,
                    at_ms,
                });
            }
        }
    }
    let message = if import_theirs {
        "links imported"
    } else {
        "link"
    };
    apply(&app, &caller, row.id, ops, message).await?;
    Ok(created_at_path(
        &app,
        &format!(
            "{entity_type}/{}/{}_links/{target_id}",
            row.id,
            target_kind.api_name()
        ),
    ))
}

/// `DELETE …/experiments_links/{subid}` or `…/items_links/{subid}`.
async fn remove_link(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id, subid)): Path<(String, String, String)>,
    target_kind: EntityKind,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let row = entity(&app, &caller, &entity_type, &id).await?;
    let (target_id, target) = link_target(&app, &caller, &subid, target_kind).await?;
    let linked = app
        .store
        .links(&caller.subject, row.id)
        .await?
        .iter()
        .any(|l| l.id == target_id);
    if !linked {
        return Err(AppError::NotFound("link".into()));
    }
    apply(
        &app,
        &caller,
        row.id,
        vec![EntityOp::RemoveLink { target }],
        "link removed",
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Revisions

async fn list_revisions(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let row = entity(&app, &caller, &entity_type, &id).await?;
    let history = app.store.history(&caller.subject, row.id).await?;
    let users: Vec<i64> = history.iter().map(|v| v.user_id).collect();
    let names = fullnames(&app, &users).await?;
    let list: Vec<Value> = history
        .iter()
        .rev()
        .map(|v| {
            json!({
                "id": v.seq,
                "item_id": row.id,
                "created_at": format_sql_datetime(v.received_at),
                "userid": v.user_id,
                "fullname": names.get(&v.user_id).cloned().unwrap_or_default(),
                "message": v.message,
                "hash": v.hash,
            })
        })
        .collect();
    Ok(axum::Json(list).into_response())
}

async fn revision(
    app: &AppState,
    caller: &ApiCaller,
    row: &EntityRow,
    subid: &str,
) -> Result<Value, AppError> {
    let seq: i64 = subid
        .parse()
        .map_err(|_| AppError::NotFound("revision".into()))?;
    let version = app
        .store
        .history(&caller.subject, row.id)
        .await?
        .into_iter()
        .find(|v| v.seq == seq)
        .ok_or_else(|| AppError::NotFound("revision".into()))?;
    let content = app
        .store
        .content_at(&caller.subject, row.id, &version.hash)
        .await?;
    let names = fullnames(app, &[version.user_id]).await?;
    Ok(json!({
        "id": version.seq,
        "item_id": row.id,
        "created_at": format_sql_datetime(version.received_at),
        "userid": version.user_id,
        "fullname": names.get(&version.user_id).cloned().unwrap_or_default(),
        "message": version.message,
        "hash": version.hash,
        "title": content.title,
        "body": content.body,
        "content_type": content.content_type,
    }))
}

async fn read_revision(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id, subid)): Path<(String, String, String)>,
) -> Result<Response, AppError> {
    let row = entity(&app, &caller, &entity_type, &id).await?;
    Ok(axum::Json(revision(&app, &caller, &row, &subid).await?).into_response())
}

/// `PATCH …/revisions/{subid} {"action":"replace"}`: the body (only the body, as eLabFTW)
/// becomes that version's again, as a new change.
async fn restore_revision(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id, subid)): Path<(String, String, String)>,
    body: JsonBody,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let row = entity(&app, &caller, &entity_type, &id).await?;
    match body.string("action")?.as_deref() {
        Some("replace") => {}
        _ => return Err(AppError::invalid("action", "expected replace")),
    }
    let version = revision(&app, &caller, &row, &subid).await?;
    let patch = EntityPatch {
        body: version["body"].as_str().map(str::to_owned),
        ..Default::default()
    };
    app.store
        .update_entity(&caller.subject, row.id, None, &patch, "revision restored")
        .await?;
    Ok(axum::Json(version).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_ids_are_stable_javascript_safe_integers() {
        // Hex ids (all Cahier makes): the first 13 hex digits.
        assert_eq!(public_id("00000000000000ff"), 0);
        assert_eq!(public_id("0000000000001fff"), 1);
        assert_eq!(public_id("ffffffffffffffff"), (1 << 52) - 1);
        // Anything else: a 52-bit hash, the same every time.
        let other = public_id("step-from-elsewhere");
        assert_eq!(other, public_id("step-from-elsewhere"));
        assert!((0..1 << 52).contains(&other));
        assert_ne!(tag_id("soil"), tag_id("ph"));
        // Paths accept the integer or the string id.
        assert!(matches("1", "0000000000001fff"));
        assert!(matches("0000000000001fff", "0000000000001fff"));
        assert!(!matches("2", "0000000000001fff"));
    }
}
