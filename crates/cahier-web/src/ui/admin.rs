//! Administration: team admins manage their team (members, groups, statuses, categories of
//! experiments and of resources);
//! sysadmins manage teams and accounts. Also the team switcher every member uses.

use super::{PageCtx, UiError, UiResultExt, render};
use crate::AppState;
use crate::auth::SignedIn;
use crate::error::AppError;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cahier_store::accounts::{NewUser, TeamMember, User};
use cahier_store::catalog::{Family, Term, Vocabulary};
use serde::Deserialize;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/team/switch", post(switch_team))
        .route("/team", get(team_page))
        .route("/team/members", post(add_member))
        .route("/team/members/{user}/admin", post(toggle_admin))
        .route("/team/members/{user}/remove", post(remove_member))
        .route("/team/groups", post(create_group))
        .route("/team/groups/{group}/members", post(add_group_member))
        .route(
            "/team/groups/{group}/members/{user}/remove",
            post(remove_group_member),
        )
        .route("/team/groups/{group}/delete", post(delete_group))
        .route("/team/tags", post(declare_tag))
        .route("/team/tags/rename", post(rename_tag))
        .route("/team/tags/remove", post(remove_tag))
        .route("/team/terms/{vocabulary}", post(create_term))
        .route("/team/terms/{vocabulary}/{id}", post(update_term))
        .route("/team/terms/{vocabulary}/{id}/delete", post(delete_term))
        .route("/admin", get(admin_page))
        .route("/admin/teams", post(create_team))
        .route("/admin/teams/{id}/rename", post(rename_team))
        .route("/admin/users", post(create_user))
        .route("/admin/time-zone", post(set_instance_zone))
        .route("/admin/users/{id}/{action}", post(user_action))
}

#[derive(Debug, Deserialize)]
struct SwitchForm {
    team: i64,
}

async fn switch_team(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<SwitchForm>,
) -> Result<Response, UiError> {
    state
        .store
        .set_current_team(session.user.id, form.team)
        .await
        .ui(session.lang)?;
    Ok(Redirect::to("/").into_response())
}

/// The team the signed-in user administers now, or a 403 page.
fn admin_team(session: &SignedIn) -> Result<i64, UiError> {
    let lang = session.lang;
    match session.current_team() {
        Some(team) if session.subject.is_team_admin(team) || session.user.is_sysadmin => Ok(team),
        _ => Err(UiError(
            AppError::Forbidden(lang.t("team.not_admin").into()),
            lang,
        )),
    }
}

struct GroupView {
    id: i64,
    name: String,
    members: Vec<(i64, String)>,
}

#[derive(Template)]
#[template(path = "team_admin.html")]
struct TeamPage {
    p: PageCtx,
    team_name: String,
    me: i64,
    members: Vec<TeamMember>,
    groups: Vec<GroupView>,
    vocabs: Vec<VocabView>,
    /// (tag, entries carrying it, a stable id for form labels)
    tags: Vec<(String, i64, usize)>,
}

struct VocabView {
    key: &'static str,
    title_key: &'static str,
    new_key: &'static str,
    terms: Vec<TermRow>,
}

struct TermRow {
    t: Term,
    /// What a resource category gives new resources; `None` for other vocabularies.
    defaults: Option<DefaultsView>,
}

/// Choices as (value, label, selected).
struct DefaultsView {
    read: Vec<(String, String, bool)>,
    write: Vec<(String, String, bool)>,
    templates: Vec<(String, String, bool)>,
}

fn plain_rows(terms: Vec<Term>) -> Vec<TermRow> {
    terms
        .into_iter()
        .map(|t| TermRow { t, defaults: None })
        .collect()
}

/// The resource categories of a team with their defaults, and the team's shared resource
/// templates to choose from.
async fn resource_category_rows(
    store: &cahier_store::Store,
    session: &SignedIn,
    team_id: i64,
) -> Result<Vec<TermRow>, AppError> {
    use cahier_core::{BaseLevel, EntityKind};
    let lang = session.lang;
    let mut query = cahier_store::listing::ListQuery::new(EntityKind::ResourceTemplate);
    query.order = cahier_store::listing::Order::Title;
    query.descending = false;
    query.limit = 200;
    let templates: Vec<(i64, String)> = store
        .list_entities(&session.subject, &query)
        .await?
        .rows
        .into_iter()
        .filter(|r| r.team_id == team_id && r.canread.base.code() >= BaseLevel::Team.code())
        .map(|r| (r.id, r.title))
        .collect();
    let levels = |selected: Option<BaseLevel>| {
        BaseLevel::ALL
            .iter()
            .rev()
            .map(|l| {
                (
                    l.code().to_string(),
                    lang.t(super::entities::base_key(*l)).to_owned(),
                    Some(*l) == selected,
                )
            })
            .collect()
    };
    let mut rows = Vec::new();
    for t in store
        .terms(Vocabulary::Category, team_id, Family::Resource)
        .await?
    {
        let d = store.category_defaults(t.id).await?;
        rows.push(TermRow {
            defaults: Some(DefaultsView {
                read: levels(d.canread),
                write: levels(d.canwrite),
                templates: templates
                    .iter()
                    .map(|(id, title)| (id.to_string(), title.clone(), d.template == Some(*id)))
                    .collect(),
            }),
            t,
        });
    }
    Ok(rows)
}

async fn team_page(State(state): State<AppState>, session: SignedIn) -> Result<Response, UiError> {
    let lang = session.lang;
    let team_id = admin_team(&session)?;
    let store = &state.store;
    let team = store.team(team_id).await.ui(lang)?;
    let members = store.team_members(team_id).await.ui(lang)?;
    let groups = store.groups(team_id).await.ui(lang)?;
    let mut group_views = Vec::new();
    for g in groups {
        let users = store.users_by_ids(&g.members).await.ui(lang)?;
        group_views.push(GroupView {
            id: g.id,
            name: g.name,
            members: users.into_iter().map(|u| (u.id, u.fullname())).collect(),
        });
    }
    let p = PageCtx::signed_in(&state, &session, lang.t("team.title").to_owned())
        .await
        .ui(lang)?;
    Ok(render(&TeamPage {
        p,
        team_name: team.name,
        me: session.user.id,
        members,
        groups: group_views,
        tags: store
            .team_tags(team_id)
            .await
            .ui(lang)?
            .into_iter()
            .enumerate()
            .map(|(n, t)| (t.tag, t.item_count, n))
            .collect(),
        vocabs: vec![
            VocabView {
                key: "status",
                title_key: "team.statuses",
                new_key: "team.new_status",
                terms: plain_rows(
                    store
                        .terms(Vocabulary::Status, team_id, Family::Experiment)
                        .await
                        .ui(lang)?,
                ),
            },
            VocabView {
                key: "category",
                title_key: "team.categories",
                new_key: "team.new_category",
                terms: plain_rows(
                    store
                        .terms(Vocabulary::Category, team_id, Family::Experiment)
                        .await
                        .ui(lang)?,
                ),
            },
            VocabView {
                key: "resource_category",
                title_key: "team.resource_categories",
                new_key: "team.new_resource_category",
                terms: resource_category_rows(store, &session, team_id)
                    .await
                    .ui(lang)?,
            },
        ],
    }))
}

fn back_to_team() -> Response {
    Redirect::to("/team").into_response()
}

#[derive(Debug, Deserialize)]
struct MemberForm {
    email: String,
    is_admin: Option<String>,
}

async fn add_member(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<MemberForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let team = admin_team(&session)?;
    let user = state
        .store
        .user_by_email(&form.email)
        .await
        .map_err(|_| {
            AppError::invalid(
                "email",
                format!(
                    "nobody has the address {}; a sysadmin creates accounts",
                    form.email.trim()
                ),
            )
        })
        .ui(lang)?;
    state
        .store
        .add_member_by(session.user.id, team, user.id, form.is_admin.is_some())
        .await
        .ui(lang)?;
    Ok(back_to_team())
}

async fn toggle_admin(
    State(state): State<AppState>,
    session: SignedIn,
    Path(user): Path<i64>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let team = admin_team(&session)?;
    let member = state
        .store
        .team_members(team)
        .await
        .ui(lang)?
        .into_iter()
        .find(|m| m.user_id == user);
    let member = member.ok_or_else(|| UiError(AppError::NotFound("member".into()), lang))?;
    if member.is_admin {
        let admins = state
            .store
            .team_members(team)
            .await
            .ui(lang)?
            .iter()
            .filter(|m| m.is_admin)
            .count();
        if admins <= 1 {
            return Err(UiError(
                AppError::Conflict(
                    "a team needs at least one admin; name another admin first".into(),
                ),
                lang,
            ));
        }
    }
    state
        .store
        .add_member_by(session.user.id, team, user, !member.is_admin)
        .await
        .ui(lang)?;
    Ok(back_to_team())
}

async fn remove_member(
    State(state): State<AppState>,
    session: SignedIn,
    Path(user): Path<i64>,
) -> Result<Response, UiError> {
    let team = admin_team(&session)?;
    state
        .store
        .remove_member_by(session.user.id, team, user)
        .await
        .ui(session.lang)?;
    Ok(back_to_team())
}

#[derive(Debug, Deserialize)]
struct TagForm {
    tag: String,
    /// The new text, when renaming.
    new_text: Option<String>,
}

/// Declares a tag ahead of use, so members find it when they tag entries.
async fn declare_tag(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<TagForm>,
) -> Result<Response, UiError> {
    let team = admin_team(&session)?;
    state
        .store
        .add_team_tag(team, &form.tag, session.user.id)
        .await
        .ui(session.lang)?;
    Ok(back_to_team())
}

/// Renames a tag on every entry of the team (refused as a whole if one may not be changed).
async fn rename_tag(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<TagForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let team = admin_team(&session)?;
    let new_text = form
        .new_text
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            UiError(
                AppError::invalid("new_text", lang.t("team.tag_new_text_missing")),
                lang,
            )
        })?;
    state
        .store
        .rename_team_tag(&session.subject, team, &form.tag, new_text)
        .await
        .ui(lang)?;
    Ok(back_to_team())
}

/// Removes a tag from every entry of the team, and forgets it.
async fn remove_tag(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<TagForm>,
) -> Result<Response, UiError> {
    let team = admin_team(&session)?;
    state
        .store
        .remove_team_tag(&session.subject, team, &form.tag)
        .await
        .ui(session.lang)?;
    Ok(back_to_team())
}

#[derive(Debug, Deserialize)]
struct NameForm {
    name: String,
}

async fn create_group(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<NameForm>,
) -> Result<Response, UiError> {
    let team = admin_team(&session)?;
    state
        .store
        .create_group_by(session.user.id, team, &form.name)
        .await
        .ui(session.lang)?;
    Ok(back_to_team())
}

async fn owned_group(state: &AppState, session: &SignedIn, group: i64) -> Result<i64, UiError> {
    let team = admin_team(session)?;
    let found = state.store.group(group).await.ui(session.lang)?;
    if found.team_id != team {
        return Err(UiError(
            AppError::NotFound("team group".into()),
            session.lang,
        ));
    }
    Ok(group)
}

#[derive(Debug, Deserialize)]
struct EmailForm {
    email: String,
}

async fn add_group_member(
    State(state): State<AppState>,
    session: SignedIn,
    Path(group): Path<i64>,
    Form(form): Form<EmailForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let group = owned_group(&state, &session, group).await?;
    let user = state
        .store
        .user_by_email(&form.email)
        .await
        .map_err(|_| {
            AppError::invalid(
                "email",
                format!("nobody has the address {}", form.email.trim()),
            )
        })
        .ui(lang)?;
    state
        .store
        .set_group_member_by(session.user.id, group, user.id, true)
        .await
        .ui(lang)?;
    Ok(back_to_team())
}

async fn remove_group_member(
    State(state): State<AppState>,
    session: SignedIn,
    Path((group, user)): Path<(i64, i64)>,
) -> Result<Response, UiError> {
    let group = owned_group(&state, &session, group).await?;
    state
        .store
        .set_group_member_by(session.user.id, group, user, false)
        .await
        .ui(session.lang)?;
    Ok(back_to_team())
}

async fn delete_group(
    State(state): State<AppState>,
    session: SignedIn,
    Path(group): Path<i64>,
) -> Result<Response, UiError> {
    let group = owned_group(&state, &session, group).await?;
    state
        .store
        .delete_group_by(session.user.id, group)
        .await
        .ui(session.lang)?;
    Ok(back_to_team())
}

/// The vocabulary and family behind a URL segment of the team page.
fn vocabulary(name: &str, lang: crate::i18n::Lang) -> Result<(Vocabulary, Family), UiError> {
    match name {
        "status" => Ok((Vocabulary::Status, Family::Experiment)),
        "category" => Ok((Vocabulary::Category, Family::Experiment)),
        "resource_category" => Ok((Vocabulary::Category, Family::Resource)),
        _ => Err(UiError(AppError::NotFound("page".into()), lang)),
    }
}

#[derive(Debug, Deserialize)]
struct TermForm {
    title: String,
    color: String,
    is_default: Option<String>,
    /// Resource categories only: base levels and template for new resources (empty: none).
    default_canread_base: Option<String>,
    default_canwrite_base: Option<String>,
    default_template: Option<String>,
}

impl TermForm {
    /// The resource category defaults in the form, if it carries them.
    fn defaults(&self) -> Result<Option<cahier_store::catalog::CategoryDefaults>, AppError> {
        if self.default_canread_base.is_none()
            && self.default_canwrite_base.is_none()
            && self.default_template.is_none()
        {
            return Ok(None);
        }
        let number = |field: &str, value: &Option<String>| -> Result<Option<i64>, AppError> {
            value
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| AppError::invalid(field, "expected a number"))
                })
                .transpose()
        };
        let level = |field: &str, value: &Option<String>| {
            number(field, value)?
                .map(|code| {
                    cahier_core::BaseLevel::from_code(code)
                        .ok_or_else(|| AppError::invalid(field, "expected 10, 20, 30, 40 or 50"))
                })
                .transpose()
        };
        Ok(Some(cahier_store::catalog::CategoryDefaults {
            canread: level("default_canread_base", &self.default_canread_base)?,
            canwrite: level("default_canwrite_base", &self.default_canwrite_base)?,
            template: number("default_template", &self.default_template)?,
        }))
    }
}

async fn create_term(
    State(state): State<AppState>,
    session: SignedIn,
    Path(name): Path<String>,
    Form(form): Form<TermForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let team = admin_team(&session)?;
    let (vocab, family) = vocabulary(&name, lang)?;
    state
        .store
        .create_term(
            vocab,
            team,
            family,
            &form.title,
            &form.color,
            form.is_default.is_some(),
        )
        .await
        .ui(lang)?;
    Ok(back_to_team())
}

async fn owned_term(
    state: &AppState,
    session: &SignedIn,
    vocab: Vocabulary,
    id: i64,
) -> Result<(), UiError> {
    let team = admin_team(session)?;
    let term = state.store.term(vocab, id).await.ui(session.lang)?;
    if term.team_id != team {
        return Err(UiError(AppError::NotFound("term".into()), session.lang));
    }
    Ok(())
}

async fn update_term(
    State(state): State<AppState>,
    session: SignedIn,
    Path((name, id)): Path<(String, i64)>,
    Form(form): Form<TermForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let (vocab, family) = vocabulary(&name, lang)?;
    owned_term(&state, &session, vocab, id).await?;
    // Everything is checked before anything is written.
    let team = admin_team(&session)?;
    let defaults = match form.defaults().ui(lang)? {
        Some(defaults) if family == Family::Resource => {
            state
                .store
                .check_category_defaults(team, &defaults)
                .await
                .ui(lang)?;
            Some(defaults)
        }
        _ => None,
    };
    state
        .store
        .update_term(
            vocab,
            id,
            Some(&form.title),
            Some(&form.color),
            Some(form.is_default.is_some()),
        )
        .await
        .ui(lang)?;
    if let Some(defaults) = defaults {
        state
            .store
            .set_category_defaults(id, team, defaults)
            .await
            .ui(lang)?;
    }
    Ok(back_to_team())
}

async fn delete_term(
    State(state): State<AppState>,
    session: SignedIn,
    Path((name, id)): Path<(String, i64)>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let (vocab, _) = vocabulary(&name, lang)?;
    owned_term(&state, &session, vocab, id).await?;
    state.store.delete_term(vocab, id).await.ui(lang)?;
    Ok(back_to_team())
}

/// Refuses anyone but a sysadmin, with the page's message (403).
pub(super) fn require_sysadmin(session: &SignedIn) -> Result<(), UiError> {
    if session.user.is_sysadmin {
        Ok(())
    } else {
        Err(UiError(
            AppError::Forbidden(session.lang.t("admin.not_sysadmin").into()),
            session.lang,
        ))
    }
}

struct UserView {
    user: User,
    teams: String,
}

#[derive(Template)]
#[template(path = "sysadmin.html")]
struct AdminPage {
    p: PageCtx,
    me: i64,
    teams: Vec<cahier_store::accounts::Team>,
    users: Vec<UserView>,
    zone: String,
    zone_chosen: String,
}

#[derive(Debug, Deserialize)]
struct ZoneForm {
    #[serde(default)]
    time_zone: String,
}

/// Sets the instance's time zone (empty: back to the configured or server's zone).
async fn set_instance_zone(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<ZoneForm>,
) -> Result<Response, UiError> {
    require_sysadmin(&session)?;
    let name = Some(form.time_zone.trim()).filter(|n| !n.is_empty());
    state
        .store
        .set_instance_zone(&session.subject, name)
        .await
        .ui(session.lang)?;
    Ok(Redirect::to("/admin").into_response())
}

async fn admin_page(State(state): State<AppState>, session: SignedIn) -> Result<Response, UiError> {
    let lang = session.lang;
    require_sysadmin(&session)?;
    let store = &state.store;
    let mut users = Vec::new();
    for user in store.users().await.ui(lang)? {
        let teams = store.teams_of(user.id).await.ui(lang)?;
        let teams = teams
            .into_iter()
            .map(|t| {
                if t.is_admin {
                    format!("{} ({})", t.name, lang.t("team.admin"))
                } else {
                    t.name
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        users.push(UserView { user, teams });
    }
    let p = PageCtx::signed_in(&state, &session, lang.t("admin.title").to_owned())
        .await
        .ui(lang)?;
    let zone = store.instance_zone().await.ui(lang)?.name().to_owned();
    let zone_chosen = store
        .chosen_instance_zone()
        .await
        .ui(lang)?
        .map(|z| z.name().to_owned())
        .unwrap_or_default();
    Ok(render(&AdminPage {
        p,
        me: session.user.id,
        teams: store.teams().await.ui(lang)?,
        users,
        zone,
        zone_chosen,
    }))
}

async fn create_team(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<NameForm>,
) -> Result<Response, UiError> {
    require_sysadmin(&session)?;
    state
        .store
        .create_team_by(session.user.id, &form.name)
        .await
        .ui(session.lang)?;
    Ok(Redirect::to("/admin").into_response())
}

async fn rename_team(
    State(state): State<AppState>,
    session: SignedIn,
    Path(id): Path<i64>,
    Form(form): Form<NameForm>,
) -> Result<Response, UiError> {
    require_sysadmin(&session)?;
    state
        .store
        .rename_team_by(session.user.id, id, &form.name)
        .await
        .ui(session.lang)?;
    Ok(Redirect::to("/admin").into_response())
}

#[derive(Debug, Deserialize)]
struct NewUserForm {
    email: String,
    firstname: String,
    lastname: String,
    password: String,
    team: Option<i64>,
    is_admin: Option<String>,
    is_sysadmin: Option<String>,
}

async fn create_user(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<NewUserForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    require_sysadmin(&session)?;
    let is_sysadmin = form.is_sysadmin.is_some();
    state
        .store
        .create_user_by(
            session.user.id,
            NewUser {
                email: form.email,
                firstname: form.firstname,
                lastname: form.lastname,
                password: Some(form.password),
                is_sysadmin,
            },
            form.team.map(|team| (team, form.is_admin.is_some())),
        )
        .await
        .ui(lang)?;
    Ok(Redirect::to("/admin").into_response())
}

#[derive(Debug, Default, Deserialize)]
struct UserActionForm {
    team: Option<i64>,
}

async fn user_action(
    State(state): State<AppState>,
    session: SignedIn,
    Path((id, action)): Path<(i64, String)>,
    Form(form): Form<UserActionForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    require_sysadmin(&session)?;
    let store = &state.store;
    if id == session.user.id && matches!(action.as_str(), "archive" | "sysadmin") {
        return Err(UiError(
            AppError::Conflict("you cannot archive yourself or drop your own sysadmin role".into()),
            lang,
        ));
    }
    match action.as_str() {
        "archive" => store
            .set_archived_by(session.user.id, id, true)
            .await
            .ui(lang)?,
        "unarchive" => store
            .set_archived_by(session.user.id, id, false)
            .await
            .ui(lang)?,
        "sysadmin" => {
            let user = store.user(id).await.ui(lang)?;
            store
                .set_sysadmin_by(session.user.id, id, !user.is_sysadmin)
                .await
                .ui(lang)?;
        }
        "teams" => {
            let team = form
                .team
                .ok_or_else(|| AppError::invalid("team", "choose a team"))
                .ui(lang)?;
            store
                .add_member_by(session.user.id, team, id, false)
                .await
                .ui(lang)?;
        }
        _ => return Err(UiError(AppError::NotFound("action".into()), lang)),
    }
    Ok(Redirect::to("/admin").into_response())
}
