//! Typed metadata ("extra fields", eLabFTW's `metadata` JSON, `reference/elabftw.md` §1.12):
//! field definitions and values, their validation, and the conversion to and from eLabFTW's
//! `metadata` string. The API, the entity page and the .eln export all go through here.
//!
//! A field is kept as eLabFTW's own object (`{"type": .., "value": .., "unit": .., "units": [..],
//! "options": [..], "required": .., "description": .., "group_id": .., "position": ..,
//! "allow_multi_values": ..}`), unknown keys included, so a round trip through Cahier gives back
//! what a script sent. Everything of `metadata` beyond `extra_fields` (`elabftw` with
//! `extra_fields_groups`, `display_main_text`, unknown keys) is kept verbatim in
//! [`Metadata::extra`]. This module does no IO: whether an `experiments` or `items` field points
//! at an entry the user may read is checked by the store, from [`Field::link_targets`].

use serde_json::{Map, Value};

/// Field types, with eLabFTW's names.
pub const FIELD_TYPES: [&str; 15] = [
    "text",
    "number",
    "date",
    "datetime-local",
    "time",
    "select",
    "radio",
    "checkbox",
    "url",
    "email",
    "experiments",
    "items",
    "users",
    "compounds",
    "uploads",
];

/// Longest accepted field name, in characters.
pub const MAX_NAME_CHARS: usize = 255;
/// Longest accepted text value, in characters.
pub const MAX_VALUE_CHARS: usize = 20_000;

/// A rule broken by a field; `name` is the field's name (or `metadata` for the whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct FieldError {
    /// The field at fault.
    pub name: String,
    /// What is wrong and what to do.
    pub message: String,
}

fn error(name: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        name: name.to_owned(),
        message: message.into(),
    }
}

/// One field: its name and eLabFTW's object (definition keys and `value`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Field {
    /// The name (eLabFTW's key; unique within an entity).
    pub name: String,
    /// eLabFTW's object for this field, unknown keys included.
    pub props: Map<String, Value>,
}

/// What an `experiments` or `items` field points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// An experiment (integer id).
    Experiment,
    /// A resource (integer id).
    Resource,
}

impl Field {
    /// A field of `field_type` with an empty value.
    pub fn new(name: &str, field_type: &str) -> Self {
        let mut props = Map::new();
        props.insert("type".into(), Value::String(field_type.to_owned()));
        props.insert("value".into(), Value::String(String::new()));
        Self {
            name: name.to_owned(),
            props,
        }
    }

    /// The type (`text` when absent, as in eLabFTW).
    pub fn field_type(&self) -> &str {
        self.props
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("text")
    }

    /// The value (`Null` when absent).
    pub fn value(&self) -> &Value {
        self.props.get("value").unwrap_or(&Value::Null)
    }

    /// The value's texts: one per value of a multi-valued select, none when empty.
    pub fn value_texts(&self) -> Vec<String> {
        value_texts(self.value())
    }

    /// The value as one line of text (multi values joined with ", ").
    pub fn display_value(&self) -> String {
        self.value_texts().join(", ")
    }

    /// Whether the value must be filled in.
    pub fn required(&self) -> bool {
        truthy(self.props.get("required"))
    }

    /// Whether several options may be chosen (a multi-select).
    pub fn allow_multi_values(&self) -> bool {
        truthy(self.props.get("allow_multi_values"))
    }

    /// The help text.
    pub fn description(&self) -> &str {
        self.props
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The allowed values of a select or radio field.
    pub fn options(&self) -> Vec<String> {
        strings(self.props.get("options"))
    }

    /// The units a number may be given in.
    pub fn units(&self) -> Vec<String> {
        strings(self.props.get("units"))
    }

    /// The chosen unit.
    pub fn unit(&self) -> &str {
        self.props.get("unit").and_then(Value::as_str).unwrap_or("")
    }

    /// The group (eLabFTW's `group_id`, a number or a numeric string).
    pub fn group_id(&self) -> Option<i64> {
        as_int(self.props.get("group_id")?)
    }

    /// The position in the form (eLabFTW's `position`).
    pub fn position(&self) -> Option<i64> {
        as_int(self.props.get("position")?)
    }

    /// For `experiments` and `items` fields: the kind and ids they point at.
    pub fn link_targets(&self) -> Option<(LinkKind, Vec<i64>)> {
        let kind = match self.field_type() {
            "experiments" => LinkKind::Experiment,
            "items" => LinkKind::Resource,
            _ => return None,
        };
        let ids = self
            .value_texts()
            .iter()
            .filter_map(|v| v.parse().ok())
            .collect();
        Some((kind, ids))
    }

    /// The value as a number, when it is one (for range search).
    pub fn number(&self) -> Option<f64> {
        match self.value() {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok().filter(|n: &f64| n.is_finite()),
            _ => None,
        }
    }

    /// Whether the value is empty (`""`, `null` or `[]`).
    pub fn is_empty(&self) -> bool {
        self.value_texts().is_empty()
    }

    /// Checks the definition: a known type, and for a number a chosen unit among its units.
    pub fn check_definition(&self) -> Result<(), FieldError> {
        let name = self.name.as_str();
        if name.trim().is_empty() {
            return Err(error("metadata", "a field needs a name"));
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(error(
                name,
                format!("a field name has at most {MAX_NAME_CHARS} characters"),
            ));
        }
        if !FIELD_TYPES.contains(&self.field_type()) {
            return Err(error(
                name,
                format!(
                    "unknown type {:?}; use one of {}",
                    self.field_type(),
                    FIELD_TYPES.join(", ")
                ),
            ));
        }
        for key in ["options", "units"] {
            match self.props.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
                Some(_) => return Err(error(name, format!("{key} must be a list of texts"))),
            }
        }
        let unit = self.unit();
        let units = self.units();
        if !unit.is_empty() && !units.is_empty() && !units.iter().any(|u| u == unit) {
            return Err(error(
                name,
                format!("unit {unit:?} is not one of {}", units.join(", ")),
            ));
        }
        Ok(())
    }

    /// Checks the value against the definition (not `required`: see [`Field::check_required`]),
    /// returning it as stored: numbers as text, checkbox as `on` or empty.
    pub fn check_value(&self, value: &Value) -> Result<Value, FieldError> {
        let name = self.name.as_str();
        let bad = |message: &str| Err(error(name, message));
        if let Value::Array(items) = value {
            if !matches!(
                self.field_type(),
                "select" | "experiments" | "items" | "users"
            ) || !(self.allow_multi_values() || items.len() <= 1)
            {
                return bad("only a multiple-choice list accepts several values");
            }
            let mut out = Vec::new();
            for item in items {
                let checked = self.check_one(item)?;
                if !value_texts(&checked).is_empty() {
                    out.push(checked);
                }
            }
            return Ok(Value::Array(out));
        }
        if matches!(value, Value::Object(_)) {
            return bad("expected a text, a number or a list of them");
        }
        self.check_one(value)
    }

    fn check_one(&self, value: &Value) -> Result<Value, FieldError> {
        let name = self.name.as_str();
        let bad = |message: String| Err(error(name, message));
        let text = match value {
            Value::Null => return Ok(Value::String(String::new())),
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => {
                if self.field_type() == "checkbox" {
                    return Ok(Value::String(if *b { "on".into() } else { String::new() }));
                }
                return bad("expected a text, not true or false".into());
            }
            _ => return bad("expected a text or a number".into()),
        };
        if text.chars().count() > MAX_VALUE_CHARS {
            return bad(format!("at most {MAX_VALUE_CHARS} characters"));
        }
        if text.is_empty() {
            return Ok(Value::String(text));
        }
        match self.field_type() {
            "number" => {
                if !text.parse::<f64>().is_ok_and(f64::is_finite) {
                    return bad(format!("{text:?} is not a number; write it like 12 or 4.5"));
                }
                // Keep what the writer sent (eLabFTW stores numbers as text), trimmed.
                return Ok(keep(value, text));
            }
            "date" if !crate::clock::is_valid_date(&text) => {
                return bad(format!("{text:?} is not a date; write it as YYYY-MM-DD"));
            }
            "datetime-local" if !is_datetime_local(&text) => {
                return bad(format!(
                    "{text:?} is not a date and time; write it as YYYY-MM-DDTHH:MM"
                ));
            }
            "time" if !is_time(&text) => {
                return bad(format!("{text:?} is not a time; write it as HH:MM"));
            }
            "email" if !is_email(&text) => {
                return bad(format!(
                    "{text:?} is not an e-mail address; write it like name@example.org"
                ));
            }
            "url" if !is_url(&text) => {
                return bad(format!(
                    "{text:?} is not a web address; write it starting with https://"
                ));
            }
            "checkbox" => {
                return match text.as_str() {
                    "on" | "true" | "1" | "yes" => Ok(Value::String("on".into())),
                    "off" | "false" | "0" | "no" => Ok(Value::String(String::new())),
                    _ => bad(format!("{text:?} is not a tick; use on or an empty value")),
                };
            }
            "select" | "radio" => {
                let options = self.options();
                if !options.iter().any(|o| o == &text) {
                    return bad(format!(
                        "{text:?} is not one of the choices: {}",
                        options.join(", ")
                    ));
                }
            }
            "experiments" | "items" | "users" | "compounds" | "uploads" => {
                if !text.parse::<i64>().is_ok_and(|n| n > 0) {
                    return bad(format!(
                        "{text:?} is not an entry number; give the id of the entry"
                    ));
                }
                return Ok(keep(value, text));
            }
            _ => {}
        }
        Ok(keep(value, text))
    }

    /// Fails when the field is required and empty.
    pub fn check_required(&self) -> Result<(), FieldError> {
        if self.required() && self.is_empty() {
            Err(error(&self.name, "this field is required; fill it in"))
        } else {
            Ok(())
        }
    }

    /// Checks the definition and the value, returning the field with its value as stored.
    pub fn checked(mut self) -> Result<Self, FieldError> {
        self.check_definition()?;
        let value = self.check_value(self.value())?;
        self.props.insert("value".into(), value);
        Ok(self)
    }
}

/// All fields of an entity and the rest of eLabFTW's `metadata` object.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Metadata {
    /// The fields, in form order (position, then name).
    pub fields: Vec<Field>,
    /// Every key of `metadata` other than `extra_fields` (`elabftw` …), kept verbatim.
    pub extra: Map<String, Value>,
}

impl Metadata {
    /// Parses eLabFTW's `metadata`, given as a JSON string or an object; checks every field's
    /// definition and value (not `required`).
    pub fn from_json(input: &Value) -> Result<Self, FieldError> {
        let object = match input {
            Value::Null => return Ok(Self::default()),
            Value::String(s) if s.trim().is_empty() => return Ok(Self::default()),
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(map)) => map,
                Ok(_) | Err(_) => {
                    return Err(error(
                        "metadata",
                        "expected a JSON object like {\"extra_fields\": {..}}",
                    ));
                }
            },
            Value::Object(map) => map.clone(),
            _ => {
                return Err(error(
                    "metadata",
                    "expected a JSON object like {\"extra_fields\": {..}}",
                ));
            }
        };
        let mut extra = object;
        let fields_json = extra.remove("extra_fields").unwrap_or(Value::Null);
        let mut fields = Vec::new();
        match fields_json {
            Value::Null => {}
            Value::Object(map) => {
                for (name, props) in map {
                    let Value::Object(props) = props else {
                        return Err(error(&name, "expected an object with type and value"));
                    };
                    fields.push(Field { name, props }.checked()?);
                }
            }
            _ => {
                return Err(error(
                    "metadata",
                    "extra_fields must be an object keyed by field name",
                ));
            }
        }
        if let Some(groups) = extra
            .get("elabftw")
            .and_then(|e| e.get("extra_fields_groups"))
            && !groups.is_array()
        {
            return Err(error(
                "metadata",
                "elabftw.extra_fields_groups must be a list of {id, name}",
            ));
        }
        let mut metadata = Self { fields, extra };
        metadata.sort();
        Ok(metadata)
    }

    /// Parses eLabFTW's `metadata` string.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        Self::from_json(&Value::String(text.to_owned()))
    }

    /// Sorts fields into form order: position, then name.
    pub fn sort(&mut self) {
        self.fields.sort_by(|a, b| {
            a.position()
                .unwrap_or(i64::MAX)
                .cmp(&b.position().unwrap_or(i64::MAX))
                .then_with(|| a.name.cmp(&b.name))
        });
    }

    /// Whether there is nothing to say.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.extra.is_empty()
    }

    /// eLabFTW's `metadata` object.
    pub fn to_json(&self) -> Value {
        let mut object = self.extra.clone();
        let fields: Map<String, Value> = self
            .fields
            .iter()
            .map(|f| (f.name.clone(), Value::Object(f.props.clone())))
            .collect();
        object.insert("extra_fields".into(), Value::Object(fields));
        Value::Object(object)
    }

    /// eLabFTW's `metadata` string, or `None` when there are no fields and nothing else.
    pub fn to_json_string(&self) -> Option<String> {
        if self.is_empty() {
            None
        } else {
            Some(self.to_json().to_string())
        }
    }

    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The groups (eLabFTW's `elabftw.extra_fields_groups`), in their order.
    pub fn groups(&self) -> Vec<(i64, String)> {
        self.extra
            .get("elabftw")
            .and_then(|e| e.get("extra_fields_groups"))
            .and_then(Value::as_array)
            .map(|groups| {
                groups
                    .iter()
                    .filter_map(|g| {
                        let id = as_int(g.get("id")?)?;
                        let name = g.get("name")?.as_str()?.to_owned();
                        Some((id, name))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first required field left empty, as an error.
    pub fn check_required(&self) -> Result<(), FieldError> {
        self.fields.iter().try_for_each(Field::check_required)
    }

    /// The metadata an entry copied from this one starts with (from a template, or a
    /// duplicate): the same, except values eLabFTW marks `blank_value_on_duplicate`, emptied.
    pub fn for_copy(&self) -> Self {
        let mut copy = self.clone();
        for field in &mut copy.fields {
            if truthy(field.props.get("blank_value_on_duplicate")) {
                field
                    .props
                    .insert("value".into(), Value::String(String::new()));
            }
        }
        copy
    }

    /// Adds a field or replaces the one with the same name.
    pub fn upsert(&mut self, field: Field) {
        match self.fields.iter_mut().find(|f| f.name == field.name) {
            Some(existing) => *existing = field,
            None => self.fields.push(field),
        }
        self.sort();
    }
}

/// A checked value as stored: text trimmed, other JSON kinds as sent.
fn keep(value: &Value, text: String) -> Value {
    match value {
        Value::String(_) => Value::String(text),
        other => other.clone(),
    }
}

/// The texts of a value: one per item of a list, none when empty.
pub fn value_texts(value: &Value) -> Vec<String> {
    match value {
        Value::Null => Vec::new(),
        Value::String(s) if s.trim().is_empty() => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Number(n) => vec![n.to_string()],
        Value::Bool(true) => vec!["on".into()],
        Value::Bool(false) => Vec::new(),
        Value::Array(items) => items.iter().flat_map(value_texts).collect(),
        Value::Object(_) => Vec::new(),
    }
}

fn truthy(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64().is_some_and(|n| n != 0),
        Some(Value::String(s)) => matches!(s.as_str(), "1" | "true" | "on"),
        _ => false,
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn as_int(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_time(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    let in_range = |p: &str, max: u32| digits(p, 2) && p.parse::<u32>().is_ok_and(|v| v <= max);
    match parts.as_slice() {
        [h, m] => in_range(h, 23) && in_range(m, 59),
        [h, m, sec] => {
            let whole = sec.split('.').next().unwrap_or("");
            in_range(h, 23) && in_range(m, 59) && in_range(whole, 59)
        }
        _ => false,
    }
}

fn is_datetime_local(s: &str) -> bool {
    match s.split_once(['T', ' ']) {
        Some((date, time)) => crate::clock::is_valid_date(date) && is_time(time),
        None => false,
    }
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
}

fn is_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests;
