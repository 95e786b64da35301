//! The `fields` map and `metadata_extra` key of an entity document: eLabFTW's extra fields,
//! written key by key (so concurrent edits of different fields, or of a field's value and its
//! description, merge) and read back as [`Metadata`].

use super::{Conflict, ConflictField, DocError, map_obj, read_str};
use crate::entity::EntityKind;
use crate::fields::{Field, Metadata};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use serde_json::{Map, Value as Json};

/// Writes a JSON value at `key` of the map `obj`, only where it differs from what is there.
fn put_json(doc: &mut AutoCommit, obj: &ObjId, key: &str, value: &Json) -> Result<(), DocError> {
    if read_json(doc, obj, key).as_ref() == Some(value) {
        return Ok(());
    }
    write_json(doc, obj, key, value)
}

/// Writes a JSON value at `key` of the map `obj` even when it equals the visible one: the write
/// then supersedes every concurrent value of the key, which is how a conflict is resolved.
fn write_json(doc: &mut AutoCommit, obj: &ObjId, key: &str, value: &Json) -> Result<(), DocError> {
    match value {
        Json::Array(items) => {
            let list = doc.put_object(obj, key, ObjType::List)?;
            for (i, item) in items.iter().enumerate() {
                insert_json(doc, &list, i, item)?;
            }
        }
        Json::Object(map) => {
            let child = doc.put_object(obj, key, ObjType::Map)?;
            for (k, v) in map {
                put_json(doc, &child, k, v)?;
            }
        }
        scalar => doc.put(obj, key, scalar_of(scalar))?,
    }
    Ok(())
}

fn insert_json(
    doc: &mut AutoCommit,
    list: &ObjId,
    index: usize,
    value: &Json,
) -> Result<(), DocError> {
    match value {
        Json::Array(items) => {
            let child = doc.insert_object(list, index, ObjType::List)?;
            for (i, item) in items.iter().enumerate() {
                insert_json(doc, &child, i, item)?;
            }
        }
        Json::Object(map) => {
            let child = doc.insert_object(list, index, ObjType::Map)?;
            for (k, v) in map {
                put_json(doc, &child, k, v)?;
            }
        }
        scalar => doc.insert(list, index, scalar_of(scalar))?,
    }
    Ok(())
}

fn scalar_of(value: &Json) -> ScalarValue {
    match value {
        Json::Bool(b) => ScalarValue::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => ScalarValue::Int(i),
            None => ScalarValue::F64(n.as_f64().unwrap_or_default()),
        },
        Json::String(s) => ScalarValue::Str(s.as_str().into()),
        _ => ScalarValue::Null,
    }
}

fn json_of_scalar(value: &ScalarValue) -> Json {
    match value {
        ScalarValue::Str(s) => Json::String(s.to_string()),
        ScalarValue::Int(i) | ScalarValue::Timestamp(i) => Json::from(*i),
        ScalarValue::Uint(u) => Json::from(*u),
        ScalarValue::F64(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        ScalarValue::Boolean(b) => Json::Bool(*b),
        _ => Json::Null,
    }
}

fn read_value<D: ReadDoc>(doc: &D, value: Value<'_>, obj: &ObjId) -> Json {
    match value {
        Value::Scalar(s) => json_of_scalar(&s),
        Value::Object(ObjType::Map) => {
            let map: Map<String, Json> = doc
                .keys(obj)
                .filter_map(|k| read_json(doc, obj, &k).map(|v| (k, v)))
                .collect();
            Json::Object(map)
        }
        Value::Object(ObjType::List) => {
            let items = (0..doc.length(obj))
                .filter_map(|i| {
                    let (v, child) = doc.get(obj, i).ok()??;
                    Some(read_value(doc, v, &child))
                })
                .collect();
            Json::Array(items)
        }
        Value::Object(_) => Json::Null,
    }
}

fn read_json<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> Option<Json> {
    let (value, child) = doc.get(obj, key).ok()??;
    Some(read_value(doc, value, &child))
}

/// Writes one field's map, creating it if needed; keys it no longer has are deleted.
pub(super) fn write_field(
    doc: &mut AutoCommit,
    fields: &ObjId,
    field: &Field,
) -> Result<(), DocError> {
    let entry = match doc.get(fields, field.name.as_str())? {
        Some((Value::Object(ObjType::Map), obj)) => obj,
        _ => doc.put_object(fields, field.name.as_str(), ObjType::Map)?,
    };
    let present: Vec<String> = doc.keys(&entry).collect();
    for key in present {
        if !field.props.contains_key(&key) {
            doc.delete(&entry, key.as_str())?;
        }
    }
    for (key, value) in &field.props {
        put_json(doc, &entry, key, value)?;
    }
    Ok(())
}

pub(super) fn write_metadata(
    doc: &mut AutoCommit,
    metadata: &Metadata,
    require: bool,
) -> Result<(), DocError> {
    let mut checked = Vec::with_capacity(metadata.fields.len());
    for field in &metadata.fields {
        let field = field.clone().checked()?;
        if require {
            field.check_required()?;
        }
        checked.push(field);
    }
    let fields = map_obj(doc, "fields")?;
    let present: Vec<String> = doc.keys(&fields).collect();
    for name in present {
        if !checked.iter().any(|f| f.name == name) {
            doc.delete(&fields, name.as_str())?;
        }
    }
    for field in &checked {
        write_field(doc, &fields, field)?;
    }
    let extra = if metadata.extra.is_empty() {
        None
    } else {
        Some(Json::Object(metadata.extra.clone()).to_string())
    };
    let current = read_str(doc, &ROOT, "metadata_extra").filter(|s| s != "{}");
    if current != extra {
        doc.put(ROOT, "metadata_extra", extra.unwrap_or_else(|| "{}".into()))?;
    }
    Ok(())
}

pub(super) fn set_field_value(
    doc: &mut AutoCommit,
    name: &str,
    value: &Json,
) -> Result<(), DocError> {
    let fields = map_obj(doc, "fields")?;
    let entry = match doc.get(&fields, name)? {
        Some((Value::Object(ObjType::Map), obj)) => obj,
        _ => {
            return Err(DocError::InvalidField {
                name: name.to_owned(),
                message: "no such field here; add it to the entry or its template first".into(),
            });
        }
    };
    let field = read_field(doc, name, &entry);
    let value = field.check_value(value)?;
    let is_template = read_str(doc, &ROOT, "kind")
        .and_then(|k| EntityKind::parse(&k))
        .is_some_and(|k| {
            matches!(
                k,
                EntityKind::ExperimentTemplate | EntityKind::ResourceTemplate
            )
        });
    let mut updated = field;
    updated.props.insert("value".into(), value.clone());
    if !is_template {
        updated.check_required()?;
    }
    put_json(doc, &entry, "value", &value)
}

fn read_field<D: ReadDoc>(doc: &D, name: &str, entry: &ObjId) -> Field {
    let props = match read_value(doc, Value::Object(ObjType::Map), entry) {
        Json::Object(map) => map,
        _ => Map::new(),
    };
    Field {
        name: name.to_owned(),
        props,
    }
}

pub(super) fn read_metadata<D: ReadDoc>(doc: &D) -> Metadata {
    let mut metadata = Metadata::default();
    if let Ok(fields) = map_obj(doc, "fields") {
        for name in doc.keys(&fields) {
            if let Ok(Some((Value::Object(ObjType::Map), entry))) = doc.get(&fields, name.as_str())
            {
                metadata.fields.push(read_field(doc, &name, &entry));
            }
        }
    }
    if let Some(Json::Object(extra)) =
        read_str(doc, &ROOT, "metadata_extra").and_then(|s| serde_json::from_str(&s).ok())
    {
        metadata.extra = extra;
    }
    metadata.sort();
    metadata
}

/// A metadata value as shown in a conflict: a scalar's text, a list as JSON.
fn conflict_text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

/// The concurrent values of one field's `value` key, each as JSON.
fn concurrent_values<D: ReadDoc>(doc: &D, entry: &ObjId) -> Vec<Json> {
    doc.get_all(entry, "value")
        .map(|all| {
            all.into_iter()
                .map(|(value, obj)| read_value(doc, value, &obj))
                .collect()
        })
        .unwrap_or_default()
}

/// Metadata fields whose value was set to different values concurrently (on two replicas, or
/// on a replica and the server): every value is kept until someone picks one.
pub(super) fn field_conflicts<D: ReadDoc>(doc: &D) -> Vec<Conflict> {
    let Ok(fields) = map_obj(doc, "fields") else {
        return Vec::new();
    };
    let mut conflicts = Vec::new();
    for name in doc.keys(&fields) {
        let Ok(Some((Value::Object(ObjType::Map), entry))) = doc.get(&fields, name.as_str()) else {
            continue;
        };
        let mut values: Vec<String> = concurrent_values(doc, &entry)
            .iter()
            .map(conflict_text)
            .collect();
        values.sort();
        values.dedup();
        if values.len() > 1 {
            conflicts.push(Conflict {
                field: ConflictField::Field(name),
                values,
            });
        }
    }
    conflicts
}

/// Resolves a conflict on the value of field `name`: `value` is the text of one of the
/// concurrent values (as [`field_conflicts`] gives it), written back with its own type; any
/// other text is checked against the field's definition like a new value. The write
/// supersedes every concurrent value, including when the chosen one is the visible one.
pub(super) fn resolve_field_conflict(
    doc: &mut AutoCommit,
    name: &str,
    value: &str,
) -> Result<(), DocError> {
    let fields = map_obj(doc, "fields")?;
    let entry = match doc.get(&fields, name)? {
        Some((Value::Object(ObjType::Map), obj)) => obj,
        _ => return Err(DocError::NotFound("field")),
    };
    let chosen = match concurrent_values(doc, &entry)
        .into_iter()
        .find(|v| conflict_text(v) == value)
    {
        Some(known) => known,
        None => read_field(doc, name, &entry).check_value(&Json::String(value.to_owned()))?,
    };
    write_json(doc, &entry, "value", &chosen)
}
