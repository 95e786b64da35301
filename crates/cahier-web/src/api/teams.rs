//! Team- and account-level endpoints of API v2 (eLabFTW §7.3): users, teams, team groups,
//! experiment statuses and categories, API keys.
//!
//! Who may do what: members read their teams (and the people in them); team admins and
//! sysadmins write a team's groups and vocabularies and change memberships; only sysadmins
//! create teams and users. A team or user the caller may not see is "not found", exactly like
//! a missing one. Archiving (`patchuser2team` `is_archived`) archives the account itself:
//! Cahier has no per-team archive flag.

use super::entities::created_at_path;
use super::json::JsonBody;
use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::AppError;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use cahier_core::BaseLevel;
use cahier_core::clock::format_sql_datetime;
use cahier_store::accounts::{NewUser, User};
use cahier_store::catalog::{CategoryDefaults, Family, Term, Vocabulary};
use serde_json::{Value, json};
use std::collections::BTreeSet;

use super::openapi::{Documented, Op, integer, list_of, object, one_of, schema, string};

pub(super) fn routes() -> Documented {
    let term_fields = || {
        object(&[
            ("name", string()),
            ("title", string()),
            (
                "color",
                json!({"type": "string", "pattern": "^#?[0-9a-fA-F]{6}$"}),
            ),
            ("is_default", json!({"type": "integer", "enum": [0, 1]})),
            (
                "default_canread_base",
                json!({"type": "integer", "enum": [10, 20, 30, 40, 50], "nullable": true}),
            ),
            (
                "default_canwrite_base",
                json!({"type": "integer", "enum": [10, 20, 30, 40, 50], "nullable": true}),
            ),
            (
                "default_template",
                json!({"type": "integer", "nullable": true}),
            ),
        ])
    };
    Documented::new()
        .route(
            "users",
            "/users",
            get(list_users).post(create_user),
            vec![
                Op::get("List users", list_of("User")),
                Op::post("Create a user (sysadmin)").body(object(&[
                    ("firstname", string()),
                    ("lastname", string()),
                    ("email", string()),
                    ("team", integer()),
                ])),
            ],
        )
        .route(
            "users",
            "/users/{id}",
            get(read_user).patch(patch_user),
            vec![
                Op::get("Read a user", schema("User")),
                Op::patch("Change a user, or act on them", schema("User")).body(object(&[
                    ("action", one_of(&["add", "unreference", "patchuser2team"])),
                    ("team", integer()),
                    ("target", one_of(&["is_admin", "is_archived"])),
                    ("content", integer()),
                ])),
            ],
        )
        .route(
            "teams",
            "/teams",
            get(list_teams).post(create_team),
            vec![
                Op::get("List teams", list_of("Team")),
                Op::post("Create a team (sysadmin)").body(object(&[("name", string())])),
            ],
        )
        .route(
            "teams",
            "/teams/{id}",
            get(read_team).patch(patch_team),
            vec![
                Op::get("Read a team (or current)", schema("Team")),
                Op::patch("Rename a team", schema("Team")).body(object(&[("name", string())])),
            ],
        )
        .route(
            "teams",
            "/teams/{id}/teamgroups",
            get(list_groups).post(create_group),
            vec![
                Op::get("List a team's groups", list_of("TeamGroup")),
                Op::post("Create a team group").body(object(&[("name", string())])),
            ],
        )
        .route(
            "teams",
            "/teams/{id}/teamgroups/{subid}",
            get(read_group).patch(patch_group).delete(delete_group),
            vec![
                Op::get("Read a team group", schema("TeamGroup")),
                Op::patch(
                    "Rename a group, or add or remove a member",
                    schema("TeamGroup"),
                )
                .body(object(&[
                    ("name", string()),
                    ("how", one_of(&["add", "unreference"])),
                    ("userid", integer()),
                ])),
                Op::delete("Delete a team group"),
            ],
        )
        .route(
            "vocabularies",
            "/teams/{id}/{vocabulary}",
            get(list_terms).post(create_term),
            vec![
                Op::get("List statuses or categories", list_of("Term")),
                Op::post("Create a status or category (team admins)").body(term_fields()),
            ],
        )
        .route(
            "vocabularies",
            "/teams/{id}/{vocabulary}/{subid}",
            get(read_term).patch(patch_term).delete(delete_term),
            vec![
                Op::get("Read a status or category", schema("Term")),
                Op::patch("Change a status or category", schema("Term")).body(term_fields()),
                Op::delete("Delete a status or category"),
            ],
        )
        .route(
            "keys",
            "/apikeys",
            get(list_keys).post(create_key),
            vec![
                Op::get("List your API keys", list_of("ApiKey")),
                Op::post("Make an API key (the key is the last segment of Location)").body(object(
                    &[
                        ("name", string()),
                        ("canwrite", json!({"type": "integer", "enum": [0, 1]})),
                    ],
                )),
            ],
        )
        .route(
            "keys",
            "/apikeys/{id}",
            delete(delete_key),
            vec![Op::delete("Revoke an API key")],
        )
}

fn not_found(what: &str) -> AppError {
    AppError::NotFound(what.into())
}

// ---------------------------------------------------------------------------------------------
// Teams

/// The team `{id}` (or `current`), if the caller is a member or a sysadmin.
pub(super) async fn readable_team(
    app: &AppState,
    caller: &ApiCaller,
    id: &str,
) -> Result<i64, AppError> {
    let team_id = if id == "current" {
        caller.team()?
    } else {
        id.parse().map_err(|_| not_found("team"))?
    };
    if !caller.subject.is_sysadmin && !caller.subject.is_member(team_id) {
        return Err(not_found("team"));
    }
    app.store.team(team_id).await?;
    Ok(team_id)
}

/// The team, if the caller may change it (its admins and sysadmins).
pub(super) async fn writable_team(
    app: &AppState,
    caller: &ApiCaller,
    id: &str,
) -> Result<i64, AppError> {
    caller.require_write()?;
    let team_id = readable_team(app, caller, id).await?;
    if caller.subject.is_sysadmin || caller.subject.is_team_admin(team_id) {
        Ok(team_id)
    } else {
        Err(AppError::Forbidden(
            "only this team's admins (or a sysadmin) can change it".into(),
        ))
    }
}

async fn team_json(app: &AppState, team_id: i64) -> Result<Value, AppError> {
    let team = app.store.team(team_id).await?;
    Ok(json!({
        "id": team.id,
        "name": team.name,
        "created_at": format_sql_datetime(team.created_at),
    }))
}

async fn list_teams(State(app): State<AppState>, caller: ApiCaller) -> Result<Response, AppError> {
    let teams = app.store.teams().await?;
    let list: Vec<Value> = teams
        .iter()
        .filter(|t| caller.subject.is_sysadmin || caller.subject.is_member(t.id))
        .map(|t| json!({"id": t.id, "name": t.name, "created_at": format_sql_datetime(t.created_at)}))
        .collect();
    Ok(axum::Json(list).into_response())
}

async fn read_team(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let team_id = readable_team(&app, &caller, &id).await?;
    Ok(axum::Json(team_json(&app, team_id).await?).into_response())
}

fn require_sysadmin(caller: &ApiCaller, what: &str) -> Result<(), AppError> {
    caller.require_write()?;
    if caller.subject.is_sysadmin {
        Ok(())
    } else {
        Err(AppError::Forbidden(format!("only a sysadmin can {what}")))
    }
}

async fn create_team(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: JsonBody,
) -> Result<Response, AppError> {
    require_sysadmin(&caller, "create teams")?;
    let name = body
        .string("name")?
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| AppError::invalid("name", "required, and must not be empty"))?;
    let id = app.store.create_team_by(caller.user.id, &name).await?;
    Ok(created_at_path(&app, &format!("teams/{id}")))
}

async fn patch_team(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, AppError> {
    let team_id = writable_team(&app, &caller, &id).await?;
    if let Some(name) = body.string("name")? {
        app.store
            .rename_team_by(caller.user.id, team_id, &name)
            .await?;
    }
    Ok(axum::Json(team_json(&app, team_id).await?).into_response())
}

// ---------------------------------------------------------------------------------------------
// Team groups

async fn group_json(
    app: &AppState,
    group: &cahier_store::accounts::TeamGroup,
) -> Result<Value, AppError> {
    let users = app.store.users_by_ids(&group.members).await?;
    Ok(json!({
        "id": group.id,
        "team": group.team_id,
        "name": group.name,
        "users": users.iter().map(|u| json!({"userid": u.id, "fullname": u.fullname()})).collect::<Vec<_>>(),
    }))
}

async fn team_group(
    app: &AppState,
    team_id: i64,
    subid: &str,
) -> Result<cahier_store::accounts::TeamGroup, AppError> {
    let group_id: i64 = subid.parse().map_err(|_| not_found("team group"))?;
    let group = app
        .store
        .group(group_id)
        .await
        .map_err(|_| not_found("team group"))?;
    if group.team_id == team_id {
        Ok(group)
    } else {
        Err(not_found("team group"))
    }
}

async fn list_groups(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let team_id = readable_team(&app, &caller, &id).await?;
    let mut list = Vec::new();
    for group in app.store.groups(team_id).await? {
        list.push(group_json(&app, &group).await?);
    }
    Ok(axum::Json(list).into_response())
}

async fn create_group(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, AppError> {
    let team_id = writable_team(&app, &caller, &id).await?;
    let name = body
        .string("name")?
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| AppError::invalid("name", "required, and must not be empty"))?;
    let group_id = app
        .store
        .create_group_by(caller.user.id, team_id, &name)
        .await?;
    Ok(created_at_path(
        &app,
        &format!("teams/{team_id}/teamgroups/{group_id}"),
    ))
}

async fn read_group(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((id, subid)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let team_id = readable_team(&app, &caller, &id).await?;
    let group = team_group(&app, team_id, &subid).await?;
    Ok(axum::Json(group_json(&app, &group).await?).into_response())
}

/// `PATCH …/teamgroups/{subid}`: `{how: "add"|"unreference", userid}` changes membership
/// (the user must be a member of the team); `{name}` renames.
async fn patch_group(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((id, subid)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Response, AppError> {
    let team_id = writable_team(&app, &caller, &id).await?;
    let group = team_group(&app, team_id, &subid).await?;
    let how = body.string("how")?;
    if let Some(how) = how.as_deref() {
        let member = match how {
            "add" => true,
            "unreference" => false,
            other => {
                return Err(AppError::invalid(
                    "how",
                    format!("unknown value {other}; expected add or unreference"),
                ));
            }
        };
        let user_id = body
            .int("userid")?
            .ok_or_else(|| AppError::invalid("userid", "required: the user to add or remove"))?;
        let in_team = app
            .store
            .team_members(team_id)
            .await?
            .iter()
            .any(|m| m.user_id == user_id);
        if !in_team {
            return Err(AppError::invalid(
                "userid",
                "no member of this team has this id",
            ));
        }
        app.store
            .set_group_member_by(caller.user.id, group.id, user_id, member)
            .await?;
    }
    if let Some(name) = body.string("name")? {
        app.store
            .rename_group_by(caller.user.id, group.id, &name)
            .await?;
    } else if how.is_none() {
        return Err(AppError::invalid(
            "how",
            "send how (add or unreference) with userid, or name",
        ));
    }
    let group = team_group(&app, team_id, &subid).await?;
    Ok(axum::Json(group_json(&app, &group).await?).into_response())
}

async fn delete_group(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((id, subid)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let team_id = writable_team(&app, &caller, &id).await?;
    let group = team_group(&app, team_id, &subid).await?;
    app.store.delete_group_by(caller.user.id, group.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Statuses and categories

/// The vocabulary and family behind a path segment (`items_categories` is an old name of
/// `resources_categories`).
fn vocabulary(segment: &str) -> Result<(Vocabulary, Family), AppError> {
    match segment {
        "experiments_status" | "status" => Ok((Vocabulary::Status, Family::Experiment)),
        "experiments_categories" => Ok((Vocabulary::Category, Family::Experiment)),
        "items_status" => Ok((Vocabulary::Status, Family::Resource)),
        "resources_categories" | "items_categories" => Ok((Vocabulary::Category, Family::Resource)),
        _ => Err(not_found("endpoint")),
    }
}

/// The path segment a term is answered under (eLabFTW's `Location` says `items_categories`
/// by mistake; Cahier emits the documented one).
fn canonical_segment(segment: &str) -> &str {
    match segment {
        "items_categories" => "resources_categories",
        "status" => "experiments_status",
        other => other,
    }
}

/// A term as JSON; resource categories add what they give new resources.
async fn term_value(app: &AppState, family: Family, term: &Term) -> Result<Value, AppError> {
    let mut value = term_json(term);
    if family == Family::Resource
        && let Value::Object(map) = &mut value
    {
        let defaults = app.store.category_defaults(term.id).await?;
        map.insert(
            "default_canread_base".into(),
            json!(defaults.canread.map(BaseLevel::code)),
        );
        map.insert(
            "default_canwrite_base".into(),
            json!(defaults.canwrite.map(BaseLevel::code)),
        );
        map.insert("default_template".into(), json!(defaults.template));
    }
    Ok(value)
}

/// A base level from a request (`None` for null: the author's own default).
fn base_level(body: &JsonBody, field: &str) -> Result<Option<BaseLevel>, AppError> {
    body.int(field)?
        .map(|code| {
            BaseLevel::from_code(code)
                .ok_or_else(|| AppError::invalid(field, "expected 10, 20, 30, 40 or 50"))
        })
        .transpose()
}

/// The defaults a request sets on a resource category, merged over `current`: keys absent keep
/// their value, null clears. `None` when the request names none. Checked before anything is
/// written, so a refused request changes nothing.
async fn requested_defaults(
    app: &AppState,
    (vocabulary, family): (Vocabulary, Family),
    team_id: i64,
    current: Option<i64>,
    body: &JsonBody,
) -> Result<Option<CategoryDefaults>, AppError> {
    let keys = [
        "default_canread_base",
        "default_canwrite_base",
        "default_template",
    ];
    if !keys.iter().any(|k| body.has(k)) {
        return Ok(None);
    }
    if (vocabulary, family) != (Vocabulary::Category, Family::Resource) {
        return Err(AppError::invalid(
            "default_template",
            "only resource categories have defaults",
        ));
    }
    let mut defaults = match current {
        Some(id) => app.store.category_defaults(id).await?,
        None => CategoryDefaults::default(),
    };
    if body.has("default_canread_base") {
        defaults.canread = base_level(body, "default_canread_base")?;
    }
    if body.has("default_canwrite_base") {
        defaults.canwrite = base_level(body, "default_canwrite_base")?;
    }
    if body.has("default_template") {
        defaults.template = body.int("default_template")?.filter(|id| *id != 0);
    }
    app.store
        .check_category_defaults(team_id, &defaults)
        .await?;
    Ok(Some(defaults))
}

fn term_json(term: &Term) -> Value {
    json!({
        "id": term.id,
        "team": term.team_id,
        "title": term.title,
        "color": term.color,
        "is_default": i64::from(term.is_default),
        "ordering": term.ordering,
        "state": 1,
    })
}

async fn team_term(
    app: &AppState,
    (vocabulary, family): (Vocabulary, Family),
    team_id: i64,
    subid: &str,
) -> Result<Term, AppError> {
    let id: i64 = subid.parse().map_err(|_| not_found("term"))?;
    app.store
        .terms(vocabulary, team_id, family)
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| {
            not_found(match vocabulary {
                Vocabulary::Status => "status",
                Vocabulary::Category => "category",
            })
        })
}

fn is_default(body: &JsonBody) -> Result<Option<bool>, AppError> {
    match body.0.get("is_default") {
        Some(Value::Bool(b)) => Ok(Some(*b)),
        _ => Ok(body.int("is_default")?.map(|v| v != 0)),
    }
}

/// The name: eLabFTW reads `name`; its example 11 sends `title`. Both are accepted.
fn term_name(body: &JsonBody) -> Result<Option<String>, AppError> {
    match body.string("name")? {
        Some(name) => Ok(Some(name)),
        None => body.string("title"),
    }
}

async fn list_terms(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((id, segment)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let (vocabulary, family) = vocabulary(&segment)?;
    let team_id = readable_team(&app, &caller, &id).await?;
    let terms = app.store.terms(vocabulary, team_id, family).await?;
    let mut list = Vec::with_capacity(terms.len());
    for term in &terms {
        list.push(term_value(&app, family, term).await?);
    }
    Ok(axum::Json(list).into_response())
}

async fn create_term(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((id, segment)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Response, AppError> {
    let (vocabulary, family) = vocabulary(&segment)?;
    let team_id = writable_team(&app, &caller, &id).await?;
    let name = term_name(&body)?
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| AppError::invalid("name", "required (title is accepted too)"))?;
    let color = body.string("color")?.unwrap_or_else(|| "29aeb9".into());
    let defaults = requested_defaults(&app, (vocabulary, family), team_id, None, &body).await?;
    let term_id = app
        .store
        .create_term(
            vocabulary,
            team_id,
            family,
            &name,
            &color,
            is_default(&body)?.unwrap_or(false),
        )
        .await
        .map_err(|e| match e {
            cahier_store::StoreError::Invalid { field, message } if field == "title" => {
                AppError::invalid("name", message)
            }
            other => other.into(),
        })?;
    if let Some(defaults) = defaults {
        app.store
            .set_category_defaults(term_id, team_id, defaults)
            .await?;
    }
    Ok(created_at_path(
        &app,
        &format!("teams/{team_id}/{}/{term_id}", canonical_segment(&segment)),
    ))
}

async fn read_term(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((id, segment, subid)): Path<(String, String, String)>,
) -> Result<Response, AppError> {
    let vocabulary = vocabulary(&segment)?;
    let team_id = readable_team(&app, &caller, &id).await?;
    let term = team_term(&app, vocabulary, team_id, &subid).await?;
    Ok(axum::Json(term_value(&app, vocabulary.1, &term).await?).into_response())
}

async fn patch_term(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((id, segment, subid)): Path<(String, String, String)>,
    body: JsonBody,
) -> Result<Response, AppError> {
    let vocabulary = vocabulary(&segment)?;
    let team_id = writable_team(&app, &caller, &id).await?;
    let term = team_term(&app, vocabulary, team_id, &subid).await?;
    let name = term_name(&body)?;
    let color = body.string("color")?;
    let defaults = requested_defaults(&app, vocabulary, team_id, Some(term.id), &body).await?;
    let term = app
        .store
        .update_term(
            vocabulary.0,
            term.id,
            name.as_deref(),
            color.as_deref(),
            is_default(&body)?,
        )
        .await?;
    if let Some(defaults) = defaults {
        app.store
            .set_category_defaults(term.id, team_id, defaults)
            .await?;
    }
    Ok(axum::Json(term_value(&app, vocabulary.1, &term).await?).into_response())
}

async fn delete_term(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((id, segment, subid)): Path<(String, String, String)>,
) -> Result<Response, AppError> {
    let vocabulary = vocabulary(&segment)?;
    let team_id = writable_team(&app, &caller, &id).await?;
    let term = team_term(&app, vocabulary, team_id, &subid).await?;
    app.store.delete_term(vocabulary.0, term.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Users

/// Ids of the teams whose members the caller sees.
fn visible_teams(caller: &ApiCaller) -> BTreeSet<i64> {
    caller.subject.teams.iter().map(|m| m.team_id).collect()
}

/// Whether the caller sees the full record of a user in these teams: sysadmins, the user
/// themself, and admins of one of the user's teams.
fn sees_full(caller: &ApiCaller, user_id: i64, user_teams: &[i64]) -> bool {
    caller.subject.is_sysadmin
        || caller.user.id == user_id
        || user_teams.iter().any(|t| caller.subject.is_team_admin(*t))
}

async fn user_json(app: &AppState, caller: &ApiCaller, user: &User) -> Result<Value, AppError> {
    let teams = app.store.teams_of(user.id).await?;
    let team_ids: Vec<i64> = teams.iter().map(|t| t.id).collect();
    let mut value = json!({
        "userid": user.id,
        "firstname": user.firstname,
        "lastname": user.lastname,
        "fullname": user.fullname(),
        "teams": teams.iter().map(|t| json!({"id": t.id, "name": t.name, "is_admin": i64::from(t.is_admin)})).collect::<Vec<_>>(),
    });
    if sees_full(caller, user.id, &team_ids)
        && let Value::Object(map) = &mut value
    {
        map.insert("email".into(), json!(user.email));
        map.insert("is_sysadmin".into(), json!(i64::from(user.is_sysadmin)));
        map.insert("is_archived".into(), json!(i64::from(user.is_archived)));
        map.insert("validated".into(), json!(1));
        map.insert("team".into(), json!(user.current_team));
        map.insert("lang".into(), json!(user.lang));
        map.insert(
            "created_at".into(),
            json!(format_sql_datetime(user.created_at)),
        );
        map.insert(
            "last_login".into(),
            json!(user.last_login.map(format_sql_datetime)),
        );
    }
    Ok(value)
}

/// The user `{id}`, if the caller may see them (shares a team, or is a sysadmin).
async fn visible_user(app: &AppState, caller: &ApiCaller, id: &str) -> Result<User, AppError> {
    let user_id: i64 = if id == "me" {
        caller.user.id
    } else {
        id.parse().map_err(|_| not_found("user"))?
    };
    let user = app
        .store
        .user(user_id)
        .await
        .map_err(|_| not_found("user"))?;
    if caller.subject.is_sysadmin || user_id == caller.user.id {
        return Ok(user);
    }
    let mine = visible_teams(caller);
    let shares = app
        .store
        .teams_of(user_id)
        .await?
        .iter()
        .any(|t| mine.contains(&t.id));
    if shares {
        Ok(user)
    } else {
        Err(not_found("user"))
    }
}

async fn list_users(
    State(app): State<AppState>,
    caller: ApiCaller,
    RawQuery(raw): RawQuery,
) -> Result<Response, AppError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|_| AppError::BadRequest("the query string could not be read".into()))?;
    let q = pairs
        .iter()
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.to_lowercase())
        .filter(|v| !v.trim().is_empty());
    let users: Vec<User> = if caller.subject.is_sysadmin {
        app.store.users().await?
    } else {
        let mut ids = BTreeSet::new();
        for team in visible_teams(&caller) {
            ids.extend(
                app.store
                    .team_members(team)
                    .await?
                    .iter()
                    .map(|m| m.user_id),
            );
        }
        let ids: Vec<i64> = ids.into_iter().collect();
        app.store.users_by_ids(&ids).await?
    };
    let mut list = Vec::new();
    for user in users.iter().filter(|u| {
        q.as_deref().is_none_or(|q| {
            u.fullname().to_lowercase().contains(q) || u.email.to_lowercase().contains(q)
        })
    }) {
        list.push(user_json(&app, &caller, user).await?);
    }
    Ok(axum::Json(list).into_response())
}

async fn read_user(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let user = visible_user(&app, &caller, &id).await?;
    Ok(axum::Json(user_json(&app, &caller, &user).await?).into_response())
}

fn required(body: &JsonBody, field: &str) -> Result<String, AppError> {
    body.string(field)?
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| AppError::invalid(field, "required, and must not be empty"))
}

/// `POST /users {firstname, lastname, email, team?}` (sysadmins): the account has no password
/// (the person signs in after a reset); it joins `team`, or the caller's team.
async fn create_user(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: JsonBody,
) -> Result<Response, AppError> {
    require_sysadmin(&caller, "create users")?;
    let firstname = required(&body, "firstname")?;
    let lastname = required(&body, "lastname")?;
    let email = required(&body, "email")?;
    if !email.contains('@') {
        return Err(AppError::invalid("email", "expected an e-mail address"));
    }
    let team_id = match body.int("team")? {
        Some(team) => {
            app.store
                .team(team)
                .await
                .map_err(|_| AppError::invalid("team", "no team has this id"))?;
            team
        }
        None => caller.team()?,
    };
    let id = app
        .store
        .create_user_by(
            caller.user.id,
            NewUser {
                email,
                firstname,
                lastname,
                password: None,
                is_sysadmin: false,
            },
            Some((team_id, false)),
        )
        .await?;
    Ok(created_at_path(&app, &format!("users/{id}")))
}

/// `PATCH /users/{id}`: actions `add` and `unreference` `{team}` (membership) and
/// `patchuser2team` `{team, target: "is_admin"|"is_archived", content}`, by that team's admins
/// or sysadmins.
async fn patch_user(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let user = visible_user(&app, &caller, &id).await?;
    let action = body.string("action")?;
    let team_field = || -> Result<i64, AppError> {
        body.int("team")?
            .ok_or_else(|| AppError::invalid("team", "required: the team's id"))
    };
    let admin_of = |team_id: i64| -> Result<(), AppError> {
        if caller.subject.is_sysadmin || caller.subject.is_team_admin(team_id) {
            Ok(())
        } else {
            Err(AppError::Forbidden(
                "only this team's admins (or a sysadmin) can change its members".into(),
            ))
        }
    };
    let is_member = |team_id: i64| {
        let app = app.clone();
        let user_id = user.id;
        async move {
            Ok::<bool, AppError>(
                app.store
                    .teams_of(user_id)
                    .await?
                    .iter()
                    .any(|t| t.id == team_id),
            )
        }
    };
    match action.as_deref() {
        Some("add") => {
            let team_id = team_field()?;
            if !caller.subject.is_sysadmin && !caller.subject.is_member(team_id) {
                return Err(AppError::invalid("team", "no team has this id"));
            }
            app.store
                .team(team_id)
                .await
                .map_err(|_| AppError::invalid("team", "no team has this id"))?;
            admin_of(team_id)?;
            if !is_member(team_id).await? {
                app.store
                    .add_member_by(caller.user.id, team_id, user.id, false)
                    .await?;
            }
        }
        Some("unreference") => {
            let team_id = team_field()?;
            admin_of(team_id)?;
            if !is_member(team_id).await? {
                return Err(AppError::invalid("team", "the user is not in this team"));
            }
            app.store
                .remove_member_by(caller.user.id, team_id, user.id)
                .await?;
        }
        Some("patchuser2team") => {
            let team_id = team_field()?;
            admin_of(team_id)?;
            if !is_member(team_id).await? {
                return Err(AppError::invalid("team", "the user is not in this team"));
            }
            let content = match body.0.get("content") {
                Some(Value::Bool(b)) => *b,
                _ => {
                    body.int("content")?
                        .ok_or_else(|| AppError::invalid("content", "required: 0 or 1"))?
                        != 0
                }
            };
            match body.string("target")?.as_deref() {
                Some("is_admin") => {
                    if !content {
                        let others = app
                            .store
                            .team_members(team_id)
                            .await?
                            .iter()
                            .filter(|m| m.is_admin && m.user_id != user.id)
                            .count();
                        if others == 0 {
                            return Err(AppError::Conflict(
                                "a team needs at least one admin; name another admin first".into(),
                            ));
                        }
                    }
                    app.store
                        .add_member_by(caller.user.id, team_id, user.id, content)
                        .await?;
                }
                Some("is_archived") => {
                    if user.id == caller.user.id {
                        return Err(AppError::invalid("target", "you cannot archive yourself"));
                    }
                    app.store
                        .set_archived_by(caller.user.id, user.id, content)
                        .await?;
                }
                Some("is_owner") => {
                    return Err(AppError::NotImplemented(
                        "team owners are not available in Cahier".into(),
                    ));
                }
                _ => {
                    return Err(AppError::invalid(
                        "target",
                        "expected is_admin or is_archived",
                    ));
                }
            }
        }
        Some(action @ ("archive" | "validate" | "disable2fa" | "updatepassword")) => {
            return Err(AppError::NotImplemented(format!(
                "the {action} action is not available yet in Cahier"
            )));
        }
        Some(other) => {
            return Err(AppError::invalid(
                "action",
                format!("unknown action {other}"),
            ));
        }
        None => {
            return Err(AppError::invalid(
                "action",
                "required: add, unreference or patchuser2team",
            ));
        }
    }
    let user = app.store.user(user.id).await?;
    Ok(axum::Json(user_json(&app, &caller, &user).await?).into_response())
}

// ---------------------------------------------------------------------------------------------
// API keys

async fn list_keys(State(app): State<AppState>, caller: ApiCaller) -> Result<Response, AppError> {
    let keys = app.store.api_keys(caller.user.id).await?;
    let list: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({
                "id": k.id,
                "name": k.name,
                "can_write": i64::from(k.can_write),
                "team": k.team_id,
                "created_at": format_sql_datetime(k.created_at),
                "last_used_at": k.last_used_at.map(format_sql_datetime),
            })
        })
        .collect();
    Ok(axum::Json(list).into_response())
}

/// `POST /apikeys {name, canwrite}`: as eLabFTW, the new key is the last segment of `Location`;
/// it is also in the body. Keys belong to the caller and the caller's current team.
async fn create_key(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: JsonBody,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let name = required(&body, "name")?;
    let can_write = match body.0.get("canwrite").or_else(|| body.0.get("can_write")) {
        Some(Value::Bool(b)) => *b,
        _ => match body.int("canwrite")?.or(body.int("can_write")?) {
            None | Some(0) => false,
            Some(1) => true,
            Some(_) => return Err(AppError::invalid("canwrite", "expected 0 or 1")),
        },
    };
    let (id, key) = app
        .store
        .create_api_key(caller.user.id, caller.team()?, &name, can_write)
        .await?;
    let mut response = created_at_path(&app, &format!("apikeys/{key}"));
    let body = axum::Json(
        json!({"id": id, "name": name.trim(), "can_write": i64::from(can_write), "key": key}),
    );
    let (parts, _) = response.into_parts();
    response = (parts, body).into_response();
    Ok(response)
}

async fn delete_key(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let key_id: i64 = id.parse().map_err(|_| not_found("api key"))?;
    app.store.delete_api_key(caller.user.id, key_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
