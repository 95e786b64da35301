//! Entity pages, generic over the kind of entity: the list with search and filters, the page
//! that shows and edits one entry (autosave, steps, comments, links, access, conflicts), and the
//! actions on it (duplicate, delete, restore, lock, unlock).

use super::{PageCtx, UiError, UiResultExt, render, when};
use crate::AppState;
use crate::auth::SignedIn;
use crate::error::AppError;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cahier_core::access::Grant;
use cahier_core::document::{ConflictField, EntityOp};
use cahier_core::markdown::ContentType;
use cahier_core::{AccessRule, BaseLevel, EntityKind, EntityPatch};
use cahier_store::Store;
use cahier_store::catalog::{Family, Vocabulary};
use cahier_store::entities::{EntityRow, state};
use cahier_store::listing::{ListQuery, Order};
use serde::Deserialize;
use std::collections::HashMap;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/{section}", get(list_entities).post(create_entity))
        .route("/{section}/{id}", get(show_entity))
        .route("/{section}/{id}/save", post(save_entity))
        .route("/{section}/{id}/preview", post(preview_body))
        .route("/{section}/{id}/steps", post(add_step))
        .route("/{section}/{id}/steps/{step}/toggle", post(toggle_step))
        .route("/{section}/{id}/steps/{step}/delete", post(delete_step))
        .route("/{section}/{id}/comments", post(add_comment))
        .route(
            "/{section}/{id}/comments/{comment}/delete",
            post(delete_comment),
        )
        .route("/{section}/{id}/links", post(add_link))
        .route("/{section}/{id}/links/{target}/delete", post(remove_link))
        .route("/{section}/{id}/access", post(set_access))
        .route("/{section}/{id}/resolve", post(resolve_conflict))
        .route("/{section}/{id}/{action}", post(entity_action))
}

/// Maps a URL section to an entity kind (only sections whose feature exists).
pub(super) fn kind_of(section: &str) -> Option<EntityKind> {
    match section {
        "experiments" => Some(EntityKind::Experiment),
        "templates" => Some(EntityKind::ExperimentTemplate),
        "resources" => Some(EntityKind::Resource),
        "resource-templates" => Some(EntityKind::ResourceTemplate),
        _ => None,
    }
}

fn section_kind(section: &str, lang: crate::i18n::Lang) -> Result<EntityKind, UiError> {
    kind_of(section).ok_or_else(|| UiError(AppError::NotFound("page".into()), lang))
}

/// An option of a select.
#[derive(Debug, Clone)]
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

/// Who may book a resource (eLabFTW's canbook), shown and changed beside read and write.
#[derive(Debug, Clone)]
struct BookAccess {
    who: String,
    /// Base levels, after a first "same as read" option.
    levels: Vec<Choice>,
    same_as_read: bool,
    users: String,
    you_may: bool,
}

/// A status or category shown as a coloured badge with its name.
#[derive(Debug, Clone, Default)]
struct Badge {
    title: String,
    color: String,
}

#[derive(Debug, Clone)]
struct ListRow {
    id: i64,
    title: String,
    date: String,
    status: Option<Badge>,
    category: Option<Badge>,
    tags: Vec<String>,
    owner: String,
    changed: String,
    locked: bool,
    conflicts: bool,
    is_default: bool,
    /// At or below its reorder threshold (resources tracking stock).
    low_stock: bool,
    /// On a field replica: pinned "available offline" (its files are kept here).
    pinned: bool,
}

#[derive(Template)]
#[template(path = "entity_list.html")]
struct ListPage {
    p: PageCtx,
    section: String,
    /// Page heading and "new" button label (experiments or templates).
    heading: String,
    new_label: String,
    /// Templates offered for a new entry ("blank" is always offered); empty on template lists.
    templates: Vec<Choice>,
    has_templates: bool,
    /// Whether the team's default template is among `templates` (then it is preselected).
    has_default_template: bool,
    /// "Blank experiment" or "Blank resource".
    blank_label: String,
    is_template_list: bool,
    /// Categories offered when making a resource (the team's default preselected); empty
    /// for other kinds, which take the default category.
    new_categories: Vec<Choice>,
    /// Where this kind's templates are listed, for entry lists: (href, label).
    templates_page: Option<(String, String)>,
    /// Why the search could not be read, shown under the box.
    search_error: Option<String>,
    q: String,
    statuses: Vec<Choice>,
    categories: Vec<Choice>,
    tags: Vec<Choice>,
    orders: Vec<Choice>,
    descending: bool,
    mine: bool,
    deleted: bool,
    rows: Vec<ListRow>,
    next_url: Option<String>,
    is_first_page: bool,
    has_filters: bool,
    /// When whole words found nothing: the same search with the last word as a prefix.
    prefix_search: Option<(String, String)>,
}

#[derive(Debug, Default, Deserialize)]
struct ListParams {
    q: Option<String>,
    status: Option<String>,
    category: Option<String>,
    tag: Option<String>,
    order: Option<String>,
    sort: Option<String>,
    owner: Option<String>,
    after: Option<String>,
    deleted: Option<String>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

async fn badges(
    store: &Store,
    vocabulary: Vocabulary,
    ids: impl Iterator<Item = i64>,
) -> Result<HashMap<i64, Badge>, AppError> {
    let mut ids: Vec<i64> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(store
        .terms_by_ids(vocabulary, &ids)
        .await?
        .into_iter()
        .map(|t| {
            (
                t.id,
                Badge {
                    title: t.title,
                    color: t.color,
                },
            )
        })
        .collect())
}

pub(super) async fn user_names(
    store: &Store,
    ids: impl Iterator<Item = i64>,
) -> Result<HashMap<i64, String>, AppError> {
    let mut ids: Vec<i64> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(store
        .users_by_ids(&ids)
        .await?
        .into_iter()
        .map(|u| (u.id, u.fullname()))
        .collect())
}

async fn list_entities(
    State(state): State<AppState>,
    session: SignedIn,
    Path(section): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let kind = section_kind(&section, lang)?;
    let store = &state.store;
    let mut query = ListQuery::new(kind);
    // A malformed `field:` filter or advanced query keeps the list (searched by the words
    // alone) and says what to write, next to the search box.
    let mut search_error = None;
    if let Some(q) = non_empty(&params.q)
        && let Err(error) = cahier_store::extended::apply_q(&mut query, q)
    {
        search_error = Some(match error {
            cahier_store::StoreError::Invalid { message, .. } => message,
            other => other.to_string(),
        });
        query.q = Some(q.to_owned());
    }
    let parse_id = |s: Option<&str>, field: &str| -> Result<Option<i64>, UiError> {
        s.map(|v| {
            v.parse::<i64>()
                .map_err(|_| UiError(AppError::invalid(field, "expected a number"), lang))
        })
        .transpose()
    };
    let status = parse_id(non_empty(&params.status), "status")?;
    let category = parse_id(non_empty(&params.category), "category")?;
    query.statuses.extend(status);
    query.categories.extend(category);
    if let Some(tag) = non_empty(&params.tag) {
        query.tags.push(tag.to_owned());
    }
    let mine = non_empty(&params.owner) == Some("me");
    if mine {
        query.owners.push(session.user.id);
    }
    let deleted = non_empty(&params.deleted).is_some();
    if deleted {
        query.states = vec![state::DELETED];
    }
    query.order = Order::parse(non_empty(&params.order).unwrap_or("")).ui(lang)?;
    query.descending = non_empty(&params.sort) != Some("asc");
    query.after = non_empty(&params.after).map(str::to_owned);
    let page = store
        .list_entities(&session.subject, &query)
        .await
        .ui(lang)?;

    let status_badges = badges(
        store,
        Vocabulary::Status,
        page.rows.iter().filter_map(|r| r.status_id),
    )
    .await
    .ui(lang)?;
    let category_badges = badges(
        store,
        Vocabulary::Category,
        page.rows.iter().filter_map(|r| r.category_id),
    )
    .await
    .ui(lang)?;
    let owners = user_names(store, page.rows.iter().map(|r| r.owner_id))
        .await
        .ui(lang)?;
    let page_is_empty = page.rows.is_empty();
    let is_template_list = cahier_core::template::is_template(kind);
    let default_template = match (session.current_team(), is_template_list) {
        (Some(team), true) => store.default_template(team, kind).await.ui(lang)?,
        _ => None,
    };
    let templates = match cahier_core::template::template_kind(kind) {
        Some(template_kind) => template_choices(store, &session, template_kind)
            .await
            .ui(lang)?,
        None => Vec::new(),
    };
    let low_stock = if kind == EntityKind::Resource {
        let ids: Vec<i64> = page.rows.iter().map(|r| r.id).collect();
        store.low_stock_among(&ids).await.ui(lang)?
    } else {
        Default::default()
    };
    let pinned = match &state.replica {
        Some(_) => store.pinned_uuids().await.ui(lang)?,
        None => Default::default(),
    };
    let rows = page
        .rows
        .iter()
        .map(|r| ListRow {
            pinned: pinned.contains(&r.uuid),
            id: r.id,
            title: r.title.clone(),
            date: r.date.clone(),
            status: r.status_id.and_then(|s| status_badges.get(&s).cloned()),
            category: r.category_id.and_then(|c| category_badges.get(&c).cloned()),
            tags: r.tags.clone(),
            owner: owners.get(&r.owner_id).cloned().unwrap_or_default(),
            changed: when(r.modified_at),
            locked: r.locked_by.is_some(),
            conflicts: r.n_conflicts > 0,
            is_default: default_template == Some(r.id),
            low_stock: low_stock.contains(&r.id),
        })
        .collect();

    let family = Family::of(kind);
    let team = session.current_team();
    let terms = |vocabulary, selected: Option<i64>| async move {
        let list = match team {
            Some(team) => store.terms(vocabulary, team, family).await?,
            None => Vec::new(),
        };
        Ok::<_, AppError>(
            list.into_iter()
                .map(|t| Choice {
                    value: t.id.to_string(),
                    label: t.title,
                    selected: Some(t.id) == selected,
                })
                .collect::<Vec<_>>(),
        )
    };
    let new_categories = match (kind, team) {
        (EntityKind::Resource, Some(team)) => store
            .terms(Vocabulary::Category, team, family)
            .await
            .ui(lang)?
            .into_iter()
            .map(|t| Choice {
                value: t.id.to_string(),
                label: t.title,
                selected: t.is_default,
            })
            .collect(),
        _ => Vec::new(),
    };
    let statuses = terms(Vocabulary::Status, status).await.ui(lang)?;
    let categories = terms(Vocabulary::Category, category).await.ui(lang)?;
    let tag_filter = non_empty(&params.tag).map(str::to_owned);
    let tags = store
        .tags_in_use(&session.subject, kind, 50)
        .await
        .ui(lang)?
        .into_iter()
        .map(|(tag, _)| Choice {
            selected: Some(&tag) == tag_filter.as_ref(),
            value: tag.clone(),
            label: tag,
        })
        .collect();
    let orders = [
        (Order::LastChange, "list.sort_lastchange"),
        (Order::Date, "list.sort_date"),
        (Order::Title, "list.sort_title"),
        (Order::Id, "list.sort_id"),
    ]
    .into_iter()
    .map(|(order, key)| Choice {
        value: order.as_str().into(),
        label: lang.t(key).into(),
        selected: order == query.order,
    })
    .collect();

    let next_url = page.next.map(|cursor| {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for (key, value) in [
            ("q", &params.q),
            ("status", &params.status),
            ("category", &params.category),
            ("tag", &params.tag),
            ("order", &params.order),
            ("sort", &params.sort),
            ("owner", &params.owner),
            ("deleted", &params.deleted),
        ] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                pairs.push((key, v.to_owned()));
            }
        }
        pairs.push(("after", cursor));
        format!(
            "/{section}?{}",
            serde_urlencoded::to_string(&pairs).unwrap_or_default()
        )
    });
    let has_filters = query.q.is_some()
        || status.is_some()
        || category.is_some()
        || tag_filter.is_some()
        || mine
        || deleted;
    // The last typed word as a prefix, field filters kept as typed.
    let typed_q = params.q.clone().unwrap_or_default();
    let prefix_search = match (&query.q, page_is_empty) {
        (Some(_), true)
            if !cahier_store::listing::has_prefix(&typed_q)
                && typed_q
                    .split_whitespace()
                    .last()
                    .is_some_and(|w| !w.contains(':')) =>
        {
            let mut words: Vec<&str> = typed_q.split_whitespace().collect();
            let last = words.pop().unwrap_or_default().to_owned();
            let typed = if words.is_empty() {
                format!("{last}*")
            } else {
                format!("{} {last}*", words.join(" "))
            };
            let mut pairs = vec![("q", typed)];
            if deleted {
                pairs.push(("deleted", "1".to_owned()));
            }
            Some((
                format!(
                    "/{section}?{}",
                    serde_urlencoded::to_string(&pairs).unwrap_or_default()
                ),
                last,
            ))
        }
        _ => None,
    };
    let (heading, new_label) = match kind {
        EntityKind::Experiment => (lang.t("list.title"), lang.t("list.new")),
        EntityKind::ExperimentTemplate => (lang.t("templates.title"), lang.t("templates.new")),
        EntityKind::Resource => (lang.t("resources.title"), lang.t("resources.new")),
        EntityKind::ResourceTemplate => (
            lang.t("resource_templates.title"),
            lang.t("resource_templates.new"),
        ),
    };
    let p = PageCtx::signed_in(&state, &session, heading.to_owned())
        .await
        .ui(lang)?;
    Ok(render(&ListPage {
        p,
        section,
        heading: heading.to_owned(),
        new_label: new_label.to_owned(),
        has_templates: !templates.is_empty(),
        has_default_template: templates.iter().any(|c| c.selected),
        blank_label: lang
            .t(if kind == EntityKind::Resource {
                "templates.blank_resource"
            } else {
                "templates.blank"
            })
            .to_owned(),
        templates,
        is_template_list,
        new_categories,
        templates_page: cahier_core::template::template_kind(kind).map(|t| {
            let key = if t == EntityKind::ResourceTemplate {
                "resource_templates.title"
            } else {
                "templates.title"
            };
            (format!("/{}", section_of(t)), lang.t(key).to_owned())
        }),
        search_error,
        q: params.q.clone().unwrap_or_default(),
        statuses,
        categories,
        tags,
        orders,
        descending: query.descending,
        mine,
        deleted,
        rows,
        next_url,
        is_first_page: query.after.is_none(),
        has_filters,
        prefix_search,
    }))
}

/// The templates of `template_kind` the user may read, the team's default preselected, for the
/// "new entry" chooser. The team default comes first.
async fn template_choices(
    store: &Store,
    session: &SignedIn,
    template_kind: EntityKind,
) -> Result<Vec<Choice>, AppError> {
    let default = match session.current_team() {
        Some(team) => store.default_template(team, template_kind).await?,
        None => None,
    };
    let mut query = ListQuery::new(template_kind);
    query.order = Order::Title;
    query.descending = false;
    query.limit = 200;
    let page = store.list_entities(&session.subject, &query).await?;
    let mut choices: Vec<Choice> = page
        .rows
        .into_iter()
        .map(|r| Choice {
            selected: default == Some(r.id),
            value: r.id.to_string(),
            label: r.title,
        })
        .collect();
    choices.sort_by_key(|c| !c.selected);
    Ok(choices)
}

#[derive(Debug, Default, Deserialize)]
struct CreateForm {
    /// A template id, `blank` (or empty) for none; absent means the team's default template.
    template: Option<String>,
    /// The category of a new resource (empty or absent: the team's default).
    category: Option<String>,
}

async fn create_entity(
    State(state): State<AppState>,
    session: SignedIn,
    Path(section): Path<String>,
    Form(form): Form<CreateForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let kind = section_kind(&section, lang)?;
    let team_id = session
        .current_team()
        .ok_or_else(|| AppError::invalid("team", lang.t("dashboard.no_team")))
        .ui(lang)?;
    let category = non_empty(&form.category)
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| AppError::invalid("category", "expected a category number"))
        })
        .transpose()
        .ui(lang)?;
    let new = cahier_store::NewEntity {
        kind,
        team_id,
        canread: None,
        canwrite: None,
        patch: EntityPatch {
            category: category.map(Some),
            ..EntityPatch::default()
        },
        template: None,
    };
    let template = match (
        form.template.as_deref().map(str::trim),
        cahier_core::template::template_kind(kind),
    ) {
        (_, None) | (Some("blank"), _) => None,
        // A resource "from its category": the category's default template, if it has one.
        (Some(""), Some(EntityKind::ResourceTemplate)) => {
            let category = match category {
                Some(category) => Some(category),
                None => state
                    .store
                    .default_term(Vocabulary::Category, team_id, Family::Resource)
                    .await
                    .ui(lang)?,
            };
            match category {
                Some(category) => {
                    state
                        .store
                        .category_defaults(category)
                        .await
                        .ui(lang)?
                        .template
                }
                None => None,
            }
        }
        (Some(""), _) => None,
        (None, Some(template_kind)) => state
            .store
            .default_template(team_id, template_kind)
            .await
            .ui(lang)?,
        (Some(id), Some(_)) => Some(
            id.parse::<i64>()
                .map_err(|_| AppError::invalid("template", "expected a template number"))
                .ui(lang)?,
        ),
    };
    let id = match template {
        Some(template) => state
            .store
            .create_from_template(&session.subject, template, new)
            .await
            .ui(lang)?,
        None => state
            .store
            .create_entity(&session.subject, new)
            .await
            .ui(lang)?,
    };
    Ok(Redirect::to(&format!("/{section}/{id}")).into_response())
}

#[derive(Debug, Clone)]
struct StepView {
    id: String,
    body: String,
    done: bool,
    done_by: String,
    done_at: String,
}

#[derive(Debug, Clone)]
struct CommentView {
    id: String,
    author: String,
    at: String,
    body: String,
    can_delete: bool,
}

#[derive(Debug, Clone)]
struct LinkView {
    href: String,
    /// What the linked entry is ("Resource", "Experiment"…), so it is not told by place alone.
    kind_label: &'static str,
    id: i64,
    uuid: String,
    title: String,
}

#[derive(Debug, Clone)]
struct ConflictView {
    field: String,
    /// The field's name: a UI string for a root field, the user's own name for a metadata
    /// field.
    label: String,
    values: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
struct CheckItem {
    id: i64,
    label: String,
    checked: bool,
}

#[derive(Template)]
#[template(path = "entity_page.html")]
struct EntityPage {
    p: PageCtx,
    section: String,
    /// On a field replica: whether the entry is pinned "available offline" (files kept here).
    offline_pin: Option<bool>,
    e: EntityRow,
    can_write: bool,
    can_admin: bool,
    is_deleted: bool,
    is_html: bool,
    locked_by: Option<String>,
    locked_at: String,
    /// May add a trusted timestamp (a write grant; a lock does not stop a proof).
    can_stamp: bool,
    /// May lock (owner, team admins).
    can_lock: bool,
    /// May unlock (locker, owner, team admins).
    can_unlock: bool,
    owner: String,
    team: String,
    created: String,
    modified: String,
    status: Option<Badge>,
    category: Option<Badge>,
    statuses: Vec<Choice>,
    categories: Vec<Choice>,
    tags_csv: String,
    steps: Vec<StepView>,
    comments: Vec<CommentView>,
    links: Vec<LinkView>,
    backlinks: Vec<LinkView>,
    /// Heading over the backlinks ("Used in" on a resource, "Linked from" elsewhere).
    backlinks_key: &'static str,
    conflicts: Vec<ConflictView>,
    read_reasons: Vec<&'static str>,
    write_reasons: Vec<&'static str>,
    who_read: String,
    who_write: String,
    read_levels: Vec<Choice>,
    write_levels: Vec<Choice>,
    read_teams: Vec<CheckItem>,
    write_teams: Vec<CheckItem>,
    read_groups: Vec<CheckItem>,
    write_groups: Vec<CheckItem>,
    read_users: String,
    write_users: String,
    /// Who may book (resources only).
    book: Option<BookAccess>,
    attachments: Vec<super::attachments::AttachmentView>,
    /// Whether files can be attached here (writable, and this instance stores files).
    can_upload: bool,
    /// Metadata fields, grouped.
    field_groups: Vec<super::fields::FieldGroupView>,
    has_fields: bool,
    /// Types offered when adding a field.
    field_types: Vec<&'static str>,
    /// Whether this is a template (fields are defaults, not required yet).
    is_template: bool,
    /// The template this entry was made from, if the user may read it: (href, title).
    from_template: Option<(String, String)>,
    /// Whether this template is its team's default, and whether the user may change that.
    is_default_template: bool,
    can_set_default: bool,
    /// Trusted timestamps, newest first.
    timestamps: Vec<TimestampView>,
    /// The Stock panel (resources only).
    stock: Option<super::stock::StockView>,
}

/// One trusted timestamp on the entity page.
#[derive(Debug, Clone)]
struct TimestampView {
    /// The TSA's time (genTime), UTC.
    at: String,
    /// The TSA's name.
    tsa: String,
    /// Download link of the proof archive.
    url: String,
    /// Name of the proof archive.
    name: String,
}

fn grant_key(grant: &Grant) -> &'static str {
    match grant {
        Grant::Owner => "access.grant_owner",
        Grant::Public => "access.grant_public",
        Grant::Organization => "access.grant_org",
        Grant::TeamMember(_) => "access.grant_team",
        Grant::TeamAdmin(_) => "access.grant_admin",
        Grant::ExtraTeam(_) => "access.grant_extra_team",
        Grant::ExtraGroup(_) => "access.grant_extra_group",
        Grant::ExtraUser => "access.grant_extra_user",
        Grant::Writer => "access.grant_writer",
    }
}

pub(super) fn base_key(base: BaseLevel) -> &'static str {
    match base {
        BaseLevel::OwnerOnly => "access.base_10",
        BaseLevel::OwnerAndAdmins => "access.base_20",
        BaseLevel::Team => "access.base_30",
        BaseLevel::Organization => "access.base_40",
        BaseLevel::Public => "access.base_50",
    }
}

/// Describes a rule in words: "everyone in the team Écologie; plus the teams …".
async fn describe_rule(
    store: &Store,
    lang: crate::i18n::Lang,
    rule: &AccessRule,
    team_name: &str,
    team_names: &HashMap<i64, String>,
    group_names: &HashMap<i64, String>,
) -> Result<String, AppError> {
    let mut text = lang.t(base_key(rule.base)).to_owned();
    if matches!(rule.base, BaseLevel::Team | BaseLevel::OwnerAndAdmins) {
        text.push_str(&format!(" ({team_name})"));
    }
    if !rule.teams.is_empty() {
        let names: Vec<String> = rule
            .teams
            .iter()
            .map(|t| team_names.get(t).cloned().unwrap_or_else(|| t.to_string()))
            .collect();
        text.push_str(&format!(
            "; {} {}",
            lang.t("access.plus_teams"),
            names.join(", ")
        ));
    }
    if !rule.teamgroups.is_empty() {
        let names: Vec<String> = rule
            .teamgroups
            .iter()
            .map(|g| group_names.get(g).cloned().unwrap_or_else(|| g.to_string()))
            .collect();
        text.push_str(&format!(
            "; {} {}",
            lang.t("access.plus_groups"),
            names.join(", ")
        ));
    }
    if !rule.users.is_empty() {
        let names = user_names(store, rule.users.iter().copied()).await?;
        let list: Vec<String> = rule
            .users
            .iter()
            .map(|u| names.get(u).cloned().unwrap_or_else(|| u.to_string()))
            .collect();
        text.push_str(&format!(
            "; {} {}",
            lang.t("access.plus_users"),
            list.join(", ")
        ));
    }
    Ok(text)
}

#[derive(Debug, Default, Deserialize)]
struct ShowParams {
    saved: Option<String>,
}

async fn show_entity(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
    Query(params): Query<ShowParams>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::NotFound("entity".into()))
        .ui(lang)?;
    let notice = (params.saved.as_deref() == Some("fields")).then(|| lang.t("fields.saved"));
    render_entity_page(&state, &session, &section, id, None, notice).await
}

/// Renders an entity's page; `fields` carries a refused fields form (typed values and errors).
pub(super) async fn render_entity_page(
    state: &AppState,
    session: &SignedIn,
    section: &str,
    id: i64,
    fields: Option<super::fields::FieldFormState>,
    notice: Option<&'static str>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let kind = section_kind(section, lang)?;
    let section = section.to_owned();
    let store = &state.store;
    let subject = &session.subject;
    let e = store.entity_of_kind(subject, kind, id).await.ui(lang)?;
    let access = e.access();
    let can_write = e.state != state::DELETED && access.may_write(subject);
    let can_admin = access.may_admin(subject);
    let can_stamp = e.state != state::DELETED && access.has_write_grant(subject);
    let can_lock = e.state != state::DELETED && access.may_lock(subject);
    let can_unlock = access.may_unlock(subject);

    let steps = store.steps(id).await.ui(lang)?;
    let comments = store.comments(id).await.ui(lang)?;
    let attachments = super::attachments::views(store, subject, &section, id)
        .await
        .ui(lang)?;
    let mut people: Vec<i64> = vec![e.owner_id];
    people.extend(e.locked_by);
    people.extend(steps.iter().filter_map(|s| s.done_by));
    people.extend(comments.iter().map(|c| c.author));
    let names = user_names(store, people.into_iter()).await.ui(lang)?;
    let name = |id: i64| {
        names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| lang.t("common.unknown_user").to_owned())
    };

    let family = Family::of(kind);
    let status_badges = badges(store, Vocabulary::Status, e.status_id.into_iter())
        .await
        .ui(lang)?;
    let category_badges = badges(store, Vocabulary::Category, e.category_id.into_iter())
        .await
        .ui(lang)?;
    let choices = |terms: Vec<cahier_store::catalog::Term>, selected: Option<i64>| {
        terms
            .into_iter()
            .map(|t| Choice {
                value: t.id.to_string(),
                label: t.title,
                selected: Some(t.id) == selected,
            })
            .collect::<Vec<_>>()
    };
    let statuses = choices(
        store
            .terms(Vocabulary::Status, e.team_id, family)
            .await
            .ui(lang)?,
        e.status_id,
    );
    let categories = choices(
        store
            .terms(Vocabulary::Category, e.team_id, family)
            .await
            .ui(lang)?,
        e.category_id,
    );

    let link_view = |l: cahier_store::entities::LinkRow| LinkView {
        href: EntityKind::parse(&l.kind)
            .map(|k| format!("/{}/{}", section_of(k), l.id))
            .unwrap_or_default(),
        kind_label: lang.t(match EntityKind::parse(&l.kind) {
            Some(EntityKind::Resource) => "kind.resource",
            Some(EntityKind::ExperimentTemplate) => "kind.experiment_template",
            Some(EntityKind::ResourceTemplate) => "kind.resource_template",
            _ => "kind.experiment",
        }),
        id: l.id,
        uuid: l.uuid,
        title: l.title,
    };
    let links = store
        .links(subject, id)
        .await
        .ui(lang)?
        .into_iter()
        .map(link_view)
        .collect();
    let backlinks = store
        .backlinks(subject, &e.uuid)
        .await
        .ui(lang)?
        .into_iter()
        .map(link_view)
        .collect();

    let conflicts = store
        .conflicts(id)
        .await
        .ui(lang)?
        .into_iter()
        .map(|c| ConflictView {
            label: match ConflictField::parse(&c.field) {
                Some(ConflictField::Title) => lang.t("entity.title").to_owned(),
                Some(ConflictField::Date) => lang.t("entity.date").to_owned(),
                Some(ConflictField::Status) => lang.t("entity.status").to_owned(),
                Some(ConflictField::Category) => lang.t("entity.category").to_owned(),
                Some(ConflictField::Field(name)) => name,
                Some(ConflictField::Rating) | None => lang.t("entity.rating").to_owned(),
            },
            values: c
                .values
                .iter()
                .map(|v| {
                    let label = if v.is_empty() {
                        lang.t("entity.empty_value").to_owned()
                    } else {
                        v.clone()
                    };
                    (v.clone(), label)
                })
                .collect(),
            field: c.field,
        })
        .collect();

    let (read_grants, write_grants) = Store::explain_access(&e, subject);
    let dedup = |grants: Vec<Grant>| {
        let mut keys: Vec<&'static str> = grants.iter().map(grant_key).collect();
        keys.dedup();
        keys
    };
    let team = store.team(e.team_id).await.ui(lang)?;
    let all_teams = store.teams().await.ui(lang)?;
    let team_names: HashMap<i64, String> =
        all_teams.iter().map(|t| (t.id, t.name.clone())).collect();
    let groups = store.groups(e.team_id).await.ui(lang)?;
    let group_names: HashMap<i64, String> = groups.iter().map(|g| (g.id, g.name.clone())).collect();
    let who_read = describe_rule(
        store,
        lang,
        &e.canread,
        &team.name,
        &team_names,
        &group_names,
    )
    .await
    .ui(lang)?;
    let who_write = describe_rule(
        store,
        lang,
        &e.canwrite,
        &team.name,
        &team_names,
        &group_names,
    )
    .await
    .ui(lang)?;
    let levels = |selected: BaseLevel| {
        BaseLevel::ALL
            .iter()
            .rev()
            .map(|l| Choice {
                value: l.code().to_string(),
                label: lang.t(base_key(*l)).into(),
                selected: *l == selected,
            })
            .collect::<Vec<_>>()
    };
    let team_checks = |rule: &AccessRule| {
        all_teams
            .iter()
            .map(|t| CheckItem {
                id: t.id,
                label: t.name.clone(),
                checked: rule.teams.contains(&t.id),
            })
            .collect::<Vec<_>>()
    };
    let group_checks = |rule: &AccessRule| {
        groups
            .iter()
            .map(|g| CheckItem {
                id: g.id,
                label: g.name.clone(),
                checked: rule.teamgroups.contains(&g.id),
            })
            .collect::<Vec<_>>()
    };
    let emails = |users: Vec<cahier_store::accounts::User>| {
        users
            .into_iter()
            .map(|u| u.email)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let read_users = emails(store.users_by_ids(&e.canread.users).await.ui(lang)?);
    let write_users = emails(store.users_by_ids(&e.canwrite.users).await.ui(lang)?);
    let book = match kind {
        EntityKind::Resource => match store.canbook(subject, e.id).await {
            Ok((rule, own)) => Some(BookAccess {
                who: describe_rule(store, lang, &rule, &team.name, &team_names, &group_names)
                    .await
                    .ui(lang)?,
                levels: levels(rule.base),
                same_as_read: !own,
                users: if own {
                    emails(store.users_by_ids(&rule.users).await.ui(lang)?)
                } else {
                    String::new()
                },
                you_may: store.may_book(subject, e.id).await.ui(lang)?,
            }),
            Err(_) => None,
        },
        _ => None,
    };

    let metadata = match &e.metadata {
        Some(json) => cahier_core::fields::Metadata::parse(json).unwrap_or_default(),
        None => cahier_core::fields::Metadata::default(),
    };
    let field_groups = super::fields::views(&metadata, fields.as_ref());
    let is_template = cahier_core::template::is_template(kind);
    let from_template = match &e.template_uuid {
        Some(uuid) => match store.entity_by_uuid(subject, uuid).await {
            Ok(t) => Some((format!("/{}/{}", section_of(t.kind), t.id), t.title)),
            Err(cahier_store::StoreError::NotFound(_)) => None,
            Err(other) => return Err(UiError(other.into(), lang)),
        },
        None => None,
    };
    let is_default_template =
        is_template && store.default_template(e.team_id, kind).await.ui(lang)? == Some(e.id);
    let can_set_default = is_template
        && e.state == state::NORMAL
        && (subject.is_team_admin(e.team_id) || subject.is_sysadmin);

    let timestamps = store
        .timestamps(subject, id)
        .await
        .ui(lang)?
        .into_iter()
        .map(|t| TimestampView {
            at: cahier_core::clock::format_sql_datetime(t.gen_time_ms),
            tsa: t.tsa_name,
            url: format!("/{section}/{id}/attachments/{}", t.upload_sha256),
            name: format!("timestamp-{}.zip", t.id),
        })
        .collect();
    let stock = super::stock::view(
        store,
        subject,
        lang,
        &e,
        can_write,
        Some(super::stock::RECENT_EVENTS),
    )
    .await
    .ui(lang)?;
    let mut p = PageCtx::signed_in(state, session, e.title.clone())
        .await
        .ui(lang)?;
    if let Some(notice) = notice {
        p.notice = Some(notice.to_owned());
    }
    if fields.is_some() {
        p.notice = Some(lang.t("fields.refused").to_owned());
    }
    if e.state == state::DELETED {
        p.notice = Some(lang.t("entity.deleted").to_owned());
    } else if !can_write {
        p.notice = Some(
            lang.t(if e.locked_by.is_some() {
                "entity.locked_explain"
            } else {
                "entity.read_only"
            })
            .to_owned(),
        );
    }
    let offline_pin = match &state.replica {
        Some(_) => Some(store.is_pinned(&e.uuid).await.ui(lang)?),
        None => None,
    };
    let page = EntityPage {
        p,
        section: section.clone(),
        offline_pin,
        can_write,
        can_admin,
        can_stamp,
        can_lock,
        can_unlock,
        is_deleted: e.state == state::DELETED,
        is_html: e.content_type == ContentType::Html.code(),
        locked_by: e.locked_by.map(name),
        locked_at: e.locked_at.map(when).unwrap_or_default(),
        owner: name(e.owner_id),
        team: team.name.clone(),
        created: when(e.created_at),
        modified: when(e.modified_at),
        status: e.status_id.and_then(|s| status_badges.get(&s).cloned()),
        category: e.category_id.and_then(|c| category_badges.get(&c).cloned()),
        statuses,
        categories,
        tags_csv: e.tags.join(", "),
        steps: steps
            .into_iter()
            .map(|s| StepView {
                done_by: s.done_by.map(name).unwrap_or_default(),
                done_at: s.done_at.map(when).unwrap_or_default(),
                id: s.step_id,
                body: s.body,
                done: s.done,
            })
            .collect(),
        comments: comments
            .into_iter()
            .map(|c| CommentView {
                can_delete: c.author == session.user.id && can_write,
                author: name(c.author),
                at: when(c.created_at),
                id: c.comment_id,
                body: c.body,
            })
            .collect(),
        links,
        backlinks,
        backlinks_key: if kind == EntityKind::Resource {
            "entity.used_in"
        } else {
            "entity.linked_from"
        },
        conflicts,
        read_reasons: dedup(read_grants),
        write_reasons: dedup(write_grants),
        who_read,
        who_write,
        read_levels: levels(e.canread.base),
        write_levels: levels(e.canwrite.base),
        read_teams: team_checks(&e.canread),
        write_teams: team_checks(&e.canwrite),
        read_groups: group_checks(&e.canread),
        write_groups: group_checks(&e.canwrite),
        read_users,
        write_users,
        book,
        attachments,
        can_upload: can_write && store.blobs().is_some(),
        has_fields: !field_groups.is_empty(),
        field_groups,
        field_types: super::fields::type_choices(),
        is_template,
        from_template,
        is_default_template,
        can_set_default,
        timestamps,
        stock,
        e,
    };
    Ok(render(&page))
}

/// The URL section of a kind.
pub(super) fn section_of(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Experiment => "experiments",
        EntityKind::Resource => "resources",
        EntityKind::ExperimentTemplate => "templates",
        EntityKind::ResourceTemplate => "resource-templates",
    }
}

#[derive(Debug, Default, Deserialize)]
struct SaveForm {
    base: Option<String>,
    title: Option<String>,
    date: Option<String>,
    status: Option<String>,
    category: Option<String>,
    rating: Option<String>,
    tags: Option<String>,
    body: Option<String>,
    content_type: Option<String>,
}

fn optional_id(field: &str, value: Option<&str>) -> Result<Option<Option<i64>>, AppError> {
    match value.map(str::trim) {
        None => Ok(None),
        Some("") => Ok(Some(None)),
        Some(v) => v
            .parse()
            .map(|n| Some(Some(n)))
            .map_err(|_| AppError::invalid(field, "expected a number")),
    }
}

impl SaveForm {
    fn into_patch(self) -> Result<(Option<String>, EntityPatch), AppError> {
        let tags = self.tags.map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        });
        let rating =
            match self.rating.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(r) => Some(r.parse().map_err(|_| {
                    AppError::invalid("rating", "expected a whole number from 0 to 5")
                })?),
            };
        let content_type = match self.content_type.as_deref() {
            None => None,
            Some("1") | Some("html") => Some(ContentType::Html),
            Some("2") | Some("markdown") | Some("") => Some(ContentType::Markdown),
            Some(_) => {
                return Err(AppError::invalid(
                    "content_type",
                    "expected 1 (HTML) or 2 (Markdown)",
                ));
            }
        };
        // Browsers send CRLF line ends in textareas; the document keeps LF.
        let body = self.body.map(|b| b.replace("\r\n", "\n"));
        let patch = EntityPatch {
            title: self.title,
            date: self.date.filter(|d| !d.trim().is_empty()),
            body,
            content_type,
            status: optional_id("status", self.status.as_deref())?,
            category: optional_id("category", self.category.as_deref())?,
            rating,
            tags,
            ops: Vec::new(),
        };
        Ok((self.base.filter(|b| !b.is_empty()), patch))
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

pub(super) async fn entity_id(
    state: &AppState,
    session: &SignedIn,
    section: &str,
    id: &str,
) -> Result<EntityRow, AppError> {
    let kind = kind_of(section).ok_or_else(|| AppError::NotFound("page".into()))?;
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::NotFound("entity".into()))?;
    Ok(state
        .store
        .entity_of_kind(&session.subject, kind, id)
        .await?)
}

async fn save_entity(
    State(state): State<AppState>,
    session: SignedIn,
    headers: HeaderMap,
    Path((section, id)): Path<(String, String)>,
    Form(form): Form<SaveForm>,
) -> Response {
    let lang = session.lang;
    let json = wants_json(&headers);
    let result = async {
        let row = entity_id(&state, &session, &section, &id).await?;
        let (base, patch) = form.into_patch()?;
        let outcome = state
            .store
            .update_entity(&session.subject, row.id, base.as_deref(), &patch, "save")
            .await?;
        Ok::<_, AppError>((row.id, outcome))
    }
    .await;
    match (result, json) {
        (Ok((_, outcome)), true) => axum::Json(serde_json::json!({
            "heads": outcome.heads,
            "base": outcome.base,
            "changed": outcome.changed,
            "merged": outcome.merged,
            "saved_at": when(state.store.now_ms()).get(11..).unwrap_or_default(),
        }))
        .into_response(),
        (Ok((id, _)), false) => Redirect::to(&format!("/{section}/{id}")).into_response(),
        (Err(error), true) => error.into_response(),
        (Err(error), false) => super::error_page(&error, lang),
    }
}

#[derive(Debug, Deserialize)]
struct PreviewForm {
    body: String,
    content_type: Option<String>,
}

async fn preview_body(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
    Form(form): Form<PreviewForm>,
) -> Result<Response, AppError> {
    entity_id(&state, &session, &section, &id).await?;
    let content_type = if form.content_type.as_deref() == Some("1") {
        ContentType::Html
    } else {
        ContentType::Markdown
    };
    Ok(axum::Json(
        serde_json::json!({ "html": cahier_core::markdown::render_body(&form.body, content_type) }),
    )
    .into_response())
}

/// Applies one operation and returns to the entity page (or JSON for scripts).
async fn apply_op(
    state: &AppState,
    session: &SignedIn,
    section: &str,
    id: &str,
    op: EntityOp,
    message: &str,
    anchor: &str,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let row = entity_id(state, session, section, id).await.ui(lang)?;
    let patch = EntityPatch {
        ops: vec![op],
        ..Default::default()
    };
    state
        .store
        .update_entity(&session.subject, row.id, None, &patch, message)
        .await
        .ui(lang)?;
    Ok(Redirect::to(&format!("/{section}/{}#{anchor}", row.id)).into_response())
}

fn new_sub_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

#[derive(Debug, Deserialize)]
struct TextForm {
    body: String,
}

async fn add_step(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
    Form(form): Form<TextForm>,
) -> Result<Response, UiError> {
    if form.body.trim().is_empty() {
        return Err(UiError(
            AppError::invalid("body", "write the step first"),
            session.lang,
        ));
    }
    let op = EntityOp::AddStep {
        id: new_sub_id(),
        body: form.body,
        at_ms: state.store.now_ms(),
    };
    apply_op(&state, &session, &section, &id, op, "step", "steps").await
}

async fn toggle_step(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id, step)): Path<(String, String, String)>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let row = entity_id(&state, &session, &section, &id).await.ui(lang)?;
    let done = state
        .store
        .steps(row.id)
        .await
        .ui(lang)?
        .into_iter()
        .find(|s| s.step_id == step)
        .map(|s| !s.done);
    let done = done.ok_or_else(|| UiError(AppError::NotFound("step".into()), lang))?;
    let op = EntityOp::FinishStep {
        id: step,
        done,
        by: session.user.id,
        at_ms: state.store.now_ms(),
    };
    apply_op(
        &state,
        &session,
        &section,
        &id,
        op,
        if done { "step done" } else { "step reopened" },
        "steps",
    )
    .await
}

async fn delete_step(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id, step)): Path<(String, String, String)>,
) -> Result<Response, UiError> {
    apply_op(
        &state,
        &session,
        &section,
        &id,
        EntityOp::DeleteStep { id: step },
        "step removed",
        "steps",
    )
    .await
}

async fn add_comment(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
    Form(form): Form<TextForm>,
) -> Result<Response, UiError> {
    let op = EntityOp::AddComment {
        id: new_sub_id(),
        author: session.user.id,
        body: form.body,
        at_ms: state.store.now_ms(),
    };
    apply_op(&state, &session, &section, &id, op, "comment", "comments").await
}

async fn delete_comment(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id, comment)): Path<(String, String, String)>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let row = entity_id(&state, &session, &section, &id).await.ui(lang)?;
    let author = state
        .store
        .comments(row.id)
        .await
        .ui(lang)?
        .into_iter()
        .find(|c| c.comment_id == comment)
        .map(|c| c.author);
    match author {
        None => return Err(UiError(AppError::NotFound("comment".into()), lang)),
        Some(a) if a != session.user.id => {
            return Err(UiError(
                AppError::Forbidden("only the author can delete a comment".into()),
                lang,
            ));
        }
        _ => {}
    }
    apply_op(
        &state,
        &session,
        &section,
        &id,
        EntityOp::DeleteComment { id: comment },
        "comment removed",
        "comments",
    )
    .await
}

#[derive(Debug, Deserialize)]
struct LinkForm {
    target: String,
}

async fn add_link(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
    Form(form): Form<LinkForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let target_id: i64 = form
        .target
        .trim()
        .trim_start_matches('#')
        .parse()
        .map_err(|_| AppError::invalid("target", "enter the number of the entry to link"))
        .ui(lang)?;
    let target = state
        .store
        .entity(&session.subject, target_id)
        .await
        .ui(lang)?;
    let uuid = target
        .uuid
        .parse()
        .map_err(|_| AppError::NotFound("entity".into()))
        .ui(lang)?;
    apply_op(
        &state,
        &session,
        &section,
        &id,
        EntityOp::AddLink {
            target: uuid,
            at_ms: state.store.now_ms(),
        },
        "link",
        "links",
    )
    .await
}

async fn remove_link(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id, target)): Path<(String, String, String)>,
) -> Result<Response, UiError> {
    let uuid = target
        .parse()
        .map_err(|_| AppError::NotFound("link".into()))
        .ui(session.lang)?;
    apply_op(
        &state,
        &session,
        &section,
        &id,
        EntityOp::RemoveLink { target: uuid },
        "link removed",
        "links",
    )
    .await
}

#[derive(Debug, Deserialize)]
struct ResolveForm {
    field: String,
    value: String,
}

async fn resolve_conflict(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
    Form(form): Form<ResolveForm>,
) -> Result<Response, UiError> {
    let field = ConflictField::parse(&form.field)
        .ok_or_else(|| AppError::invalid("field", "unknown field"))
        .ui(session.lang)?;
    apply_op(
        &state,
        &session,
        &section,
        &id,
        EntityOp::ResolveConflict {
            field,
            value: form.value,
        },
        "conflict resolved",
        "conflicts",
    )
    .await
}

async fn set_access(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let row = entity_id(&state, &session, &section, &id).await.ui(lang)?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|_| AppError::BadRequest("the form could not be read".into()))
        .ui(lang)?;
    let mut rules = Vec::new();
    for mode in ["read", "write"] {
        let get = |key: String| {
            pairs
                .iter()
                .filter(move |(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
        };
        let base = get(format!("{mode}_base"))
            .next()
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(BaseLevel::from_code)
            .ok_or_else(|| AppError::invalid(&format!("{mode}_base"), "choose a base level"))
            .ui(lang)?;
        let ids = |key: String| {
            get(key)
                .filter_map(|v| v.parse::<i64>().ok())
                .collect::<Vec<_>>()
        };
        let mut users = Vec::new();
        for email in get(format!("{mode}_users"))
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let user = state
                .store
                .user_by_email(email)
                .await
                .map_err(|_| {
                    AppError::invalid(
                        &format!("{mode}_users"),
                        format!("nobody has the address {email}"),
                    )
                })
                .ui(lang)?;
            users.push(user.id);
        }
        rules.push(AccessRule {
            base,
            teams: ids(format!("{mode}_teams")),
            teamgroups: ids(format!("{mode}_groups")),
            users,
        });
    }
    let canwrite = rules
        .pop()
        .unwrap_or_else(|| AccessRule::base(BaseLevel::OwnerOnly));
    let canread = rules
        .pop()
        .unwrap_or_else(|| AccessRule::base(BaseLevel::OwnerOnly));
    // Resources: who may book ("" = the same as read).
    let book = match pairs.iter().find(|(k, _)| k == "book_base") {
        Some((_, value)) if row.kind == EntityKind::Resource => {
            if value.is_empty() {
                Some(None)
            } else {
                let base = value
                    .parse::<i64>()
                    .ok()
                    .and_then(BaseLevel::from_code)
                    .ok_or_else(|| AppError::invalid("book_base", "choose a base level"))
                    .ui(lang)?;
                let mut users = Vec::new();
                for email in pairs
                    .iter()
                    .filter(|(k, _)| k == "book_users")
                    .flat_map(|(_, v)| v.split(','))
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                {
                    let user = state
                        .store
                        .user_by_email(email)
                        .await
                        .map_err(|_| {
                            AppError::invalid(
                                "book_users",
                                format!("nobody has the address {email}"),
                            )
                        })
                        .ui(lang)?;
                    users.push(user.id);
                }
                Some(Some(AccessRule {
                    users,
                    ..AccessRule::base(base)
                }))
            }
        }
        _ => None,
    };
    state
        .store
        .set_access(&session.subject, row.id, canread, canwrite)
        .await
        .ui(lang)?;
    if let Some(rule) = book {
        state
            .store
            .set_canbook(&session.subject, row.id, rule.as_ref())
            .await
            .ui(lang)?;
    }
    Ok(Redirect::to(&format!("/{section}/{}#access", row.id)).into_response())
}

async fn entity_action(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id, action)): Path<(String, String, String)>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let row = entity_id(&state, &session, &section, &id).await.ui(lang)?;
    let store = &state.store;
    let subject = &session.subject;
    match action.as_str() {
        "duplicate" => {
            let new_id = store.duplicate_entity(subject, row.id).await.ui(lang)?;
            return Ok(Redirect::to(&format!("/{section}/{new_id}")).into_response());
        }
        "delete" => {
            store
                .set_state(subject, row.id, state::DELETED)
                .await
                .ui(lang)?;
            return Ok(Redirect::to(&format!("/{section}")).into_response());
        }
        "restore" => {
            store
                .set_state(subject, row.id, state::NORMAL)
                .await
                .ui(lang)?;
        }
        "lock" => {
            store.set_lock(subject, row.id, true).await.ui(lang)?;
        }
        "timestamp" => {
            cahier_trace::stamp_entity(
                store,
                state.tsa().as_deref(),
                subject,
                row.id,
                rand::random(),
            )
            .await
            .ui(lang)?;
            return Ok(Redirect::to(&format!("/{section}/{}#timestamps", row.id)).into_response());
        }
        "unlock" => {
            store.set_lock(subject, row.id, false).await.ui(lang)?;
        }
        "make-default" | "clear-default" => {
            let template = (action == "make-default").then_some(row.id);
            store
                .set_default_template(subject, row.team_id, row.kind, template)
                .await
                .ui(lang)?;
        }
        _ => return Err(UiError(AppError::NotFound("action".into()), lang)),
    }
    Ok(Redirect::to(&format!("/{section}/{}", row.id)).into_response())
}
