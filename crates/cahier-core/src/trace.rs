//! The canonical export of one entity version: the exact bytes a trusted timestamp covers.
//!
//! **Do not modify the serialised form** without a new `format` value: proofs already issued
//! must keep verifying byte for byte, and `docs/TRACEABILITY.md` documents it for auditors.
//!
//! Canonical JSON here means: UTF-8; objects with their keys sorted by their UTF-8 bytes; no
//! whitespace outside strings; strings escaped as `serde_json` does (only `"`, `\`, and control
//! characters, as `\n`-style or `\u00XX`); integers in plain decimal; `null` for absent values.
//! Nothing in the export is a float. No IO here: the store gathers the values.

use crate::EntityContent;
use crate::document::{ATTACHMENT_DELETED, Attachment};
use serde_json::{Map, Value, json};

/// The value of the export's `format` key.
pub const EXPORT_FORMAT: &str = "cahier-timestamp-export/1";

/// What an export holds besides the document's content.
#[derive(Debug, Clone)]
pub struct ExportContext<'a> {
    /// The entity's integer id on this instance.
    pub entity_id: i64,
    /// Its owner's user id.
    pub owner_id: i64,
    /// The document's heads the content was read at (sorted hex change hashes).
    pub heads: &'a [String],
    /// The entity's attachments as the document records them (deleted ones are left out).
    pub attachments: &'a [Attachment],
}

/// Builds the export value of one version. Sorted attachments keep it independent of the
/// document's map order.
pub fn export_value(content: &EntityContent, context: &ExportContext<'_>) -> Value {
    let mut attachments: Vec<&Attachment> = context
        .attachments
        .iter()
        .filter(|a| a.state != Some(ATTACHMENT_DELETED))
        .collect();
    attachments.sort_by(|a, b| a.sha256.cmp(&b.sha256));
    let content_value = serde_json::to_value(content).unwrap_or(Value::Null);
    json!({
        "format": EXPORT_FORMAT,
        "entity_id": context.entity_id,
        "owner_id": context.owner_id,
        "heads": context.heads,
        "content": content_value,
        "attachments": attachments.iter().map(|a| json!({
            "sha256": a.sha256, "name": a.name, "size": a.size,
        })).collect::<Vec<_>>(),
    })
}

/// Writes `value` in the canonical form described at the top of this module.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_object(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // Scalars: serde_json's compact form is already canonical for strings and integers.
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    out.push(b'{');
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(Value::String(key.clone()).to_string().as_bytes());
        out.push(b':');
        if let Some(item) = map.get(key) {
            write_canonical(item, out);
        }
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let value: Value =
            serde_json::from_str("{ \"b\": [1, {\"z\": null, \"a\": \"x\\ny\"}], \"a\": true }")
                .unwrap();
        assert_eq!(
            String::from_utf8(canonical_json(&value)).unwrap(),
            r#"{"a":true,"b":[1,{"a":"x\ny","z":null}]}"#
        );
    }

    #[test]
    fn canonical_json_orders_keys_by_bytes_and_keeps_unicode() {
        let value = json!({"é": "ü", "Z": 1, "a": -2});
        assert_eq!(
            String::from_utf8(canonical_json(&value)).unwrap(),
            "{\"Z\":1,\"a\":-2,\"é\":\"ü\"}"
        );
    }
}
