//! Differences between two versions of an entity, for the history page and the API.

use crate::document::EntityContent;
use serde::Serialize;
use similar::{ChangeTag, TextDiff};

/// One changed scalar field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// The field.
    pub field: &'static str,
    /// Its value in the older version.
    pub before: String,
    /// Its value in the newer version.
    pub after: String,
}

/// One line of a body diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffLine {
    /// `"+"`, `"-"` or `" "`.
    pub sign: &'static str,
    /// The line, without its newline.
    pub text: String,
}

/// The difference between two versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionDiff {
    /// Changed fields.
    pub fields: Vec<FieldChange>,
    /// Body lines, with context.
    pub body: Vec<DiffLine>,
}

/// Metadata fields as one line: `Name = value unit; …`, in form order.
fn fields_summary(metadata: &crate::fields::Metadata) -> String {
    metadata
        .fields
        .iter()
        .map(|f| {
            let unit = if f.is_empty() || f.unit().is_empty() {
                String::new()
            } else {
                format!(" {}", f.unit())
            };
            format!("{} = {}{unit}", f.name, f.display_value())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Compares two versions of one entity.
pub fn diff(before: &EntityContent, after: &EntityContent) -> VersionDiff {
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    let pairs: [(&'static str, String, String); 8] = [
        ("title", before.title.clone(), after.title.clone()),
        ("date", before.date.clone(), after.date.clone()),
        ("status", opt(before.status), opt(after.status)),
        ("category", opt(before.category), opt(after.category)),
        (
            "rating",
            before.rating.to_string(),
            after.rating.to_string(),
        ),
        ("tags", before.tags.join(", "), after.tags.join(", ")),
        (
            "steps",
            before
                .steps
                .iter()
                .map(|s| format!("{}{}", if s.done { "☑ " } else { "☐ " }, s.body))
                .collect::<Vec<_>>()
                .join("; "),
            after
                .steps
                .iter()
                .map(|s| format!("{}{}", if s.done { "☑ " } else { "☐ " }, s.body))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        (
            "metadata",
            fields_summary(&before.metadata),
            fields_summary(&after.metadata),
        ),
    ];
    let fields = pairs
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(field, before, after)| FieldChange {
            field,
            before,
            after,
        })
        .collect();
    let text_diff = TextDiff::from_lines(&before.body, &after.body);
    let body = text_diff
        .iter_all_changes()
        .map(|change| DiffLine {
            sign: match change.tag() {
                ChangeTag::Delete => "-",
                ChangeTag::Insert => "+",
                ChangeTag::Equal => " ",
            },
            text: change.value().trim_end_matches('\n').to_owned(),
        })
        .collect();
    VersionDiff { fields, body }
}
