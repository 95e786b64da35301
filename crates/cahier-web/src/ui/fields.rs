//! Metadata fields on an entity page: the form that edits their values (grouped, labelled,
//! required marked, errors next to each field), adding a field definition and removing one.
//! Values are checked by `cahier_core::fields` and saved through the store's update path.

use super::entities::{entity_id, render_entity_page};
use super::{UiError, UiResultExt};
use crate::AppState;
use crate::auth::SignedIn;
use crate::error::AppError;
use crate::i18n::Lang;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use cahier_core::EntityPatch;
use cahier_core::document::EntityOp;
use cahier_core::fields::{FIELD_TYPES, Field, Metadata};
use serde_json::{Value, json};
use std::collections::HashMap;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/{section}/{id}/fields", post(save_fields))
        .route("/{section}/{id}/fields/add", post(add_field))
        .route("/{section}/{id}/fields/remove", post(remove_field))
}

/// What the user typed in the fields form, kept when it is refused so nothing is lost.
#[derive(Debug, Clone, Default)]
pub(super) struct FieldFormState {
    values: HashMap<String, Vec<String>>,
    units: HashMap<String, String>,
    errors: HashMap<String, String>,
}

/// An `<option>`.
#[derive(Debug, Clone)]
pub(super) struct OptionView {
    pub(super) value: String,
    pub(super) selected: bool,
}

/// One field as the form shows it.
#[derive(Debug, Clone)]
pub(super) struct FieldView {
    /// The field's name (also its label).
    pub(super) name: String,
    /// A safe HTML id.
    pub(super) html_id: String,
    /// `text`, `number`, `date`, `datetime-local`, `time`, `email`, `url`, `select`, `checkbox`,
    /// `link` (an entry number).
    pub(super) input: &'static str,
    pub(super) multiple: bool,
    pub(super) value: String,
    pub(super) checked: bool,
    pub(super) options: Vec<OptionView>,
    pub(super) units: Vec<OptionView>,
    pub(super) required: bool,
    pub(super) description: String,
    pub(super) error: Option<String>,
    /// The first field in error gets the focus when the refused form comes back.
    pub(super) focus: bool,
    /// Where a link field points (`/experiments/12`), when it has a value.
    pub(super) href: Option<String>,
    pub(super) type_name: String,
    /// The definition as the edit form shows it.
    pub(super) options_csv: String,
    pub(super) units_csv: String,
}

/// A group of fields.
#[derive(Debug, Clone)]
pub(super) struct FieldGroupView {
    /// Group name; empty for fields without a group.
    pub(super) name: String,
    pub(super) fields: Vec<FieldView>,
}

fn input_of(field_type: &str) -> &'static str {
    match field_type {
        "number" => "number",
        "date" => "date",
        "datetime-local" => "datetime-local",
        "time" => "time",
        "email" => "email",
        "url" => "url",
        "select" | "radio" => "select",
        "checkbox" => "checkbox",
        "experiments" | "items" | "users" | "compounds" | "uploads" => "link",
        _ => "text",
    }
}

/// The groups and fields of an entity's metadata, as the form shows them.
pub(super) fn views(metadata: &Metadata, state: Option<&FieldFormState>) -> Vec<FieldGroupView> {
    let groups = metadata.groups();
    let mut out: Vec<FieldGroupView> = Vec::new();
    for (index, field) in metadata.fields.iter().enumerate() {
        let typed = state.and_then(|s| s.values.get(&field.name));
        let values: Vec<String> = match typed {
            Some(values) => values.clone(),
            None => field.value_texts(),
        };
        let unit = state
            .and_then(|s| s.units.get(&field.name).cloned())
            .unwrap_or_else(|| field.unit().to_owned());
        let group = field
            .group_id()
            .and_then(|id| groups.iter().find(|(g, _)| *g == id))
            .map(|(_, name)| name.clone())
            .unwrap_or_default();
        let href = match field.field_type() {
            "experiments" => values.first().map(|v| format!("/experiments/{v}")),
            _ => None,
        };
        let view = FieldView {
            html_id: format!("field-{index}"),
            input: input_of(field.field_type()),
            multiple: field.allow_multi_values(),
            value: values.first().cloned().unwrap_or_default(),
            checked: values.first().is_some_and(|v| v == "on"),
            options: field
                .options()
                .into_iter()
                .map(|o| OptionView {
                    selected: values.contains(&o),
                    value: o,
                })
                .collect(),
            units: field
                .units()
                .into_iter()
                .map(|u| OptionView {
                    selected: u == unit,
                    value: u,
                })
                .collect(),
            required: field.required(),
            description: field.description().to_owned(),
            error: state.and_then(|s| s.errors.get(&field.name).cloned()),
            focus: false,
            href,
            type_name: field.field_type().to_owned(),
            options_csv: field.options().join(", "),
            units_csv: field.units().join(", "),
            name: field.name.clone(),
        };
        match out.iter_mut().find(|g| g.name == group) {
            Some(existing) => existing.fields.push(view),
            None => out.push(FieldGroupView {
                name: group,
                fields: vec![view],
            }),
        }
    }
    // Named groups in their eLabFTW order, fields without a group last.
    out.sort_by_key(|g| {
        if g.name.is_empty() {
            usize::MAX
        } else {
            groups
                .iter()
                .position(|(_, n)| *n == g.name)
                .unwrap_or(usize::MAX - 1)
        }
    });
    if let Some(first) = out
        .iter_mut()
        .flat_map(|g| g.fields.iter_mut())
        .find(|f| f.error.is_some())
    {
        first.focus = true;
    }
    out
}

/// The field types offered when adding a field.
pub(super) fn type_choices() -> Vec<&'static str> {
    FIELD_TYPES
        .iter()
        .copied()
        .filter(|t| !matches!(*t, "users" | "compounds" | "uploads"))
        .collect()
}

/// A form post as ordered pairs (repeated keys for multiple choices).
type Pairs = Vec<(String, String)>;

fn form_value<'a>(pairs: &'a Pairs, key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The message shown next to a refused field, in the user's language: what to write, by the
/// field's type (core's messages are the API's, in English).
fn message(lang: Lang, field: &Field, error: &cahier_core::fields::FieldError) -> String {
    let key = if error.message.contains("required") {
        "fields.required_error"
    } else if error.message.starts_with("unit") {
        "fields.err_unit"
    } else if error.message.contains("at most") {
        "fields.err_too_long"
    } else {
        match field.field_type() {
            "number" => "fields.err_number",
            "date" => "fields.err_date",
            "datetime-local" => "fields.err_datetime",
            "time" => "fields.err_time",
            "email" => "fields.err_email",
            "url" => "fields.err_url",
            "select" | "radio" => "fields.err_option",
            "checkbox" => "fields.err_checkbox",
            "experiments" | "items" | "users" | "compounds" | "uploads" => "fields.err_link",
            _ => return error.message.clone(),
        }
    };
    lang.t(key).to_owned()
}

async fn save_fields(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
    Form(pairs): Form<Pairs>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let row = entity_id(&state, &session, &section, &id).await.ui(lang)?;
    // Who may not write hears so before any remark on the values.
    state
        .store
        .writable(&session.subject, row.id)
        .await
        .ui(lang)?;
    let content = state
        .store
        .content(&session.subject, row.id)
        .await
        .ui(lang)?;
    let is_template = cahier_core::template::is_template(row.kind);
    let mut form = FieldFormState::default();
    for (key, value) in &pairs {
        if let Some(name) = key.strip_prefix("f:") {
            let value = value.trim();
            let entry = form.values.entry(name.to_owned()).or_default();
            if !value.is_empty() {
                entry.push(value.to_owned());
            }
        } else if let Some(name) = key.strip_prefix("u:") {
            form.units.insert(name.to_owned(), value.clone());
        }
    }
    let mut ops = Vec::new();
    for field in &content.metadata.fields {
        let typed = form.values.get(&field.name).cloned().unwrap_or_default();
        let value = if field.allow_multi_values() {
            Value::Array(typed.iter().map(|v| json!(v)).collect())
        } else {
            json!(typed.first().cloned().unwrap_or_default())
        };
        let mut updated = field.clone();
        if let Some(unit) = form.units.get(&field.name) {
            updated.props.insert("unit".into(), json!(unit));
        }
        let checked = updated
            .check_definition()
            .and_then(|()| updated.check_value(&value));
        let checked = match checked {
            Ok(v) => v,
            Err(e) => {
                form.errors
                    .insert(field.name.clone(), message(lang, &updated, &e));
                continue;
            }
        };
        updated.props.insert("value".into(), checked.clone());
        if !is_template && let Err(e) = updated.check_required() {
            form.errors
                .insert(field.name.clone(), message(lang, &updated, &e));
            continue;
        }
        if updated.unit() != field.unit() {
            ops.push(EntityOp::PutField(updated));
        } else if field.value() != &checked {
            ops.push(EntityOp::SetFieldValue {
                name: field.name.clone(),
                value: checked,
            });
        }
    }
    if form.errors.is_empty() && !ops.is_empty() {
        let patch = EntityPatch {
            ops,
            ..Default::default()
        };
        match state
            .store
            .update_entity(&session.subject, row.id, None, &patch, "save fields")
            .await
        {
            Ok(_) => {}
            Err(cahier_store::StoreError::Invalid {
                field,
                message: text,
            }) if content.metadata.field(&field).is_some() => {
                let shown = match content.metadata.field(&field) {
                    Some(f) if f.link_targets().is_some() => lang.t("fields.err_link").to_owned(),
                    _ => text,
                };
                form.errors.insert(field, shown);
            }
            Err(other) => return Err(UiError(other.into(), lang)),
        }
    }
    if form.errors.is_empty() {
        return Ok(
            Redirect::to(&format!("/{section}/{}?saved=fields#fields", row.id)).into_response(),
        );
    }
    let mut response =
        render_entity_page(&state, &session, &section, row.id, Some(form), None).await?;
    *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    Ok(response)
}

fn list_of(text: &str) -> Vec<Value> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| json!(s))
        .collect()
}

async fn add_field(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
    Form(pairs): Form<Pairs>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let row = entity_id(&state, &session, &section, &id).await.ui(lang)?;
    state
        .store
        .writable(&session.subject, row.id)
        .await
        .ui(lang)?;
    let content = state
        .store
        .content(&session.subject, row.id)
        .await
        .ui(lang)?;
    let name = form_value(&pairs, "name").unwrap_or("").trim().to_owned();
    let field_type = form_value(&pairs, "type").unwrap_or("text");
    let mut field = Field::new(&name, field_type);
    let options = list_of(form_value(&pairs, "options").unwrap_or(""));
    if !options.is_empty() {
        field.props.insert("options".into(), Value::Array(options));
    }
    let units = list_of(form_value(&pairs, "units").unwrap_or(""));
    if let Some(first) = units.first() {
        field.props.insert("unit".into(), first.clone());
        field.props.insert("units".into(), Value::Array(units));
    }
    if form_value(&pairs, "required").is_some() {
        field.props.insert("required".into(), json!(true));
    }
    if form_value(&pairs, "multiple").is_some() {
        field.props.insert("allow_multi_values".into(), json!(true));
    }
    let description = form_value(&pairs, "description").unwrap_or("").trim();
    if !description.is_empty() {
        field.props.insert("description".into(), json!(description));
    }
    let mut metadata = content.metadata.clone();
    // Editing a definition keeps the field's value, position and unknown keys (eLabFTW's
    // `readonly`, …); adding one takes the default value given and the last position.
    let original = form_value(&pairs, "original").map(str::to_owned);
    match original.as_deref().map(|o| metadata.field(o).cloned()) {
        Some(None) => return Err(UiError(AppError::NotFound("field".into()), lang)),
        Some(Some(old)) => {
            for (key, value) in &old.props {
                let defined_here = matches!(
                    key.as_str(),
                    "type"
                        | "options"
                        | "units"
                        | "unit"
                        | "required"
                        | "allow_multi_values"
                        | "description"
                        | "group_id"
                );
                if !defined_here {
                    field.props.insert(key.clone(), value.clone());
                }
            }
            if let (Some(unit), Some(Value::Array(units))) =
                (old.props.get("unit"), field.props.get("units"))
                && units.contains(unit)
            {
                field.props.insert("unit".into(), unit.clone());
            }
            metadata.fields.retain(|f| f.name != old.name);
        }
        None => {
            let value = form_value(&pairs, "value").unwrap_or("").trim().to_owned();
            field.props.insert("value".into(), json!(value));
            let position = i64::try_from(metadata.fields.len()).unwrap_or_default() + 1;
            field.props.insert("position".into(), json!(position));
        }
    }
    let group = form_value(&pairs, "group").unwrap_or("").trim().to_owned();
    if !group.is_empty() {
        let groups = metadata.groups();
        let group_id = match groups.iter().find(|(_, n)| *n == group) {
            Some((id, _)) => *id,
            None => {
                let id = groups.iter().map(|(id, _)| *id).max().unwrap_or(0) + 1;
                let elabftw = metadata.extra.entry("elabftw").or_insert_with(|| json!({}));
                if let Value::Object(elabftw) = elabftw {
                    let list = elabftw
                        .entry("extra_fields_groups")
                        .or_insert_with(|| json!([]));
                    if let Value::Array(list) = list {
                        list.push(json!({"id": id, "name": group}));
                    }
                }
                id
            }
        };
        field.props.insert("group_id".into(), json!(group_id));
    }
    if metadata.field(&name).is_some() {
        return Err(UiError(
            AppError::invalid("name", lang.t("fields.name_taken")),
            lang,
        ));
    }
    metadata.upsert(field);
    let patch = EntityPatch {
        ops: vec![EntityOp::SetMetadata {
            metadata,
            require: false,
        }],
        ..Default::default()
    };
    state
        .store
        .update_entity(&session.subject, row.id, None, &patch, "add field")
        .await
        .ui(lang)?;
    Ok(Redirect::to(&format!("/{section}/{}#fields", row.id)).into_response())
}

async fn remove_field(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
    Form(pairs): Form<Pairs>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let row = entity_id(&state, &session, &section, &id).await.ui(lang)?;
    let name = form_value(&pairs, "name").unwrap_or("").to_owned();
    let patch = EntityPatch {
        ops: vec![EntityOp::RemoveField { name }],
        ..Default::default()
    };
    state
        .store
        .update_entity(&session.subject, row.id, None, &patch, "remove field")
        .await
        .ui(lang)?;
    Ok(Redirect::to(&format!("/{section}/{}#fields", row.id)).into_response())
}
