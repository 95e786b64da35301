//! The crate graph read as import records. Lenient where real files differ from the spec:
//! `@type` string or array, `keywords` string or array, `contentSize` number or string,
//! `description` a string or a reference to a `TextObject`, `creator` for `author`, inline
//! objects without `@id`, dates in any form (kept verbatim when not ISO 8601). Every Dataset in
//! the root's `hasPart` is one record; properties not understood are kept in
//! [`ImportedDataset::extra`] with their references resolved one level deep.

use crate::graph::Graph;
use crate::{CAHIER_NS, ElnError, Result};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// The graph of one crate, indexed by `@id` ([`Graph`]: nodes are parsed when asked for, so
/// memory holds the index, not the nodes).
#[derive(Debug)]
pub struct Crate {
    graph: Graph,
    /// Positions in `root_parts`, sorted by id (a lookup without a second copy of the ids).
    sorted_parts: Vec<usize>,
    /// `@id`s listed in the root's `hasPart`, in order.
    pub root_parts: Vec<String>,
    /// The `conformsTo` of the metadata descriptor.
    pub conforms_to: Option<String>,
    /// Name of the publishing software or organisation, when given.
    pub publisher: Option<String>,
}

/// A person named as author.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportedPerson {
    /// Display name.
    pub name: String,
    /// E-mail, when given.
    pub email: Option<String>,
    /// ORCID or other identifier, when given.
    pub identifier: Option<String>,
}

/// A checklist step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedStep {
    /// Text.
    pub body: String,
    /// Whether it was done.
    pub done: bool,
    /// When it was done, RFC 3339 as written.
    pub done_at: Option<String>,
}

/// A comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedComment {
    /// Text.
    pub body: String,
    /// Who wrote it.
    pub author: Option<ImportedPerson>,
    /// When, as written.
    pub date: Option<String>,
}

/// A `PropertyValue` of the dataset (`variableMeasured`).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedProperty {
    /// `propertyID` or `name`.
    pub name: String,
    /// The value as text.
    pub value: String,
    /// `unitText`, when given.
    pub unit: Option<String>,
    /// `valueReference` (eLabFTW writes the field type there).
    pub kind: Option<String>,
}

/// A file the dataset holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedFile {
    /// Its `@id` in the crate.
    pub id: String,
    /// File name shown to users.
    pub name: String,
    /// Media type, when given.
    pub media_type: Option<String>,
    /// Declared size in bytes, when given.
    pub size: Option<u64>,
    /// Declared SHA-256 (lower-case hex), when given.
    pub sha256: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// Cahier's attachment state (1 normal, 2 archived), in its own exports.
    pub state: Option<i64>,
}

/// Cahier's own properties, present in archives Cahier wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CahierProps {
    /// `experiment`, `resource`, or a template kind.
    pub kind: Option<String>,
    /// The entity's UUID on the instance that exported it.
    pub uuid: Option<String>,
    /// Rating 0–5.
    pub rating: Option<i64>,
    /// History heads of the exported version.
    pub heads: Option<String>,
}

/// One Dataset of the root's `hasPart`: what becomes one experiment or resource.
#[derive(Debug, Clone)]
pub struct ImportedDataset {
    /// `@id`.
    pub id: String,
    /// Title (`name`, else the folder name).
    pub title: String,
    /// Body text.
    pub body: String,
    /// Whether the body is HTML (else Markdown or plain text).
    pub body_is_html: bool,
    /// `dateCreated` as written.
    pub date_created: Option<String>,
    /// `dateModified` as written.
    pub date_modified: Option<String>,
    /// The entry's date, `YYYY-MM-DD`, from `temporal` or `dateCreated` when readable.
    pub date: Option<String>,
    /// Authors (`author`, else `creator`).
    pub authors: Vec<ImportedPerson>,
    /// Tags.
    pub keywords: Vec<String>,
    /// `genre` (eLabFTW: `experiment` or `resource`).
    pub genre: Option<String>,
    /// Category name (`about` → Thing, eLabFTW and Cahier).
    pub category: Option<String>,
    /// Status name (`creativeWorkStatus`).
    pub status: Option<String>,
    /// Steps, in order.
    pub steps: Vec<ImportedStep>,
    /// Comments, oldest first as listed.
    pub comments: Vec<ImportedComment>,
    /// `@id`s of mentioned entities.
    pub mentions: Vec<String>,
    /// eLabFTW's `metadata` JSON (the `elabftw_metadata` PropertyValue).
    pub elabftw_metadata: Option<String>,
    /// Other PropertyValues.
    pub properties: Vec<ImportedProperty>,
    /// Files of this dataset.
    pub files: Vec<ImportedFile>,
    /// Child Datasets not listed in the root (not imported as entities; reported).
    pub nested: Vec<String>,
    /// Cahier's own properties.
    pub cahier: CahierProps,
    /// Every property not understood above, kept.
    pub extra: Map<String, Value>,
}

/// Properties read into [`ImportedDataset`] fields; any other goes to `extra`.
const KNOWN: &[&str] = &[
    "@id",
    "@type",
    "name",
    "text",
    "description",
    "encodingFormat",
    "dateCreated",
    "dateModified",
    "temporal",
    "author",
    "creator",
    "keywords",
    "genre",
    "about",
    "creativeWorkStatus",
    "step",
    "comment",
    "mentions",
    "variableMeasured",
    "hasPart",
];

/// The items of a property: an array's elements, or the single value.
fn items(value: Option<&Value>) -> Vec<&Value> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.iter().collect(),
        Some(other) => vec![other],
    }
}

/// A scalar as text (`{"@value": …}` too).
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Object(map) => text(map.get("@value")),
        Value::Array(list) => text(list.first()),
        Value::Null => None,
    }
}

/// Whether a node has `@type` `wanted` (string or array).
pub fn has_type(node: &Value, wanted: &str) -> bool {
    items(node.get("@type"))
        .iter()
        .any(|t| t.as_str() == Some(wanted))
}

/// The first 10 characters of a date when they read `YYYY-MM-DD`.
pub fn iso_date(value: &str) -> Option<String> {
    let head = value.get(..10)?;
    let bytes = head.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    (digits(0..4) && bytes[4] == b'-' && digits(5..7) && bytes[7] == b'-' && digits(8..10))
        .then(|| head.to_owned())
}

impl Crate {
    /// Indexes a graph held in memory (tests, small crates); see [`Crate::from_graph`].
    pub fn parse(metadata: &Value) -> Result<Self> {
        let bytes = serde_json::to_vec(metadata)
            .map_err(|e| crate::refused(format!("the metadata cannot be written out: {e}")))?;
        Ok(Self::from_graph(Graph::from_bytes(bytes)?))
    }

    /// Reads the descriptor and the root of an indexed graph. Lenient: nodes without `@id`
    /// are ignored, the root is found through the descriptor's `about` (else `./`).
    pub fn from_graph(graph: Graph) -> Self {
        let descriptor = graph
            .node("ro-crate-metadata.json")
            .or_else(|| graph.node("./ro-crate-metadata.json"));
        let descriptor = descriptor.as_ref();
        let root_id = descriptor
            .and_then(|d| d.get("about"))
            .and_then(|a| a.get("@id"))
            .and_then(Value::as_str)
            .unwrap_or("./")
            .to_owned();
        let conforms_to = descriptor.and_then(|d| {
            items(d.get("conformsTo"))
                .first()
                .and_then(|c| c.get("@id").and_then(Value::as_str).map(str::to_owned))
        });
        let root = graph.node(&root_id).unwrap_or(Value::Null);
        let mut this = Self {
            graph,
            sorted_parts: Vec::new(),
            root_parts: Vec::new(),
            conforms_to,
            publisher: None,
        };
        this.root_parts = items(root.get("hasPart"))
            .into_iter()
            .filter_map(|p| p.get("@id").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let mut sorted: Vec<usize> = (0..this.root_parts.len()).collect();
        sorted.sort_by(|&a, &b| this.root_parts[a].cmp(&this.root_parts[b]));
        this.sorted_parts = sorted;
        this.publisher = descriptor
            .and_then(|d| d.get("sdPublisher"))
            .or_else(|| root.get("publisher"))
            .and_then(|p| this.node(p))
            .and_then(|p| text(p.get("name")));
        this
    }

    /// The node a value refers to: `{@id}` looked up, an inline object as is.
    pub fn node<'a>(&self, value: &'a Value) -> Option<Cow<'a, Value>> {
        let map = value.as_object()?;
        match map.get("@id").and_then(Value::as_str) {
            Some(id) if map.len() == 1 => self.graph.node(id).map(Cow::Owned),
            _ => Some(Cow::Borrowed(value)),
        }
    }

    /// The `@id`s of the Datasets of the root's `hasPart`, in order: what becomes one entity
    /// each. Parts that are not Datasets (files listed at the root) are not entities.
    pub fn dataset_ids(&self) -> impl Iterator<Item = &str> {
        self.root_parts
            .iter()
            .map(String::as_str)
            .filter(|id| self.graph.is_dataset(id))
    }

    /// The Dataset with this `@id`, parsed now as an import record (`None` if the graph has
    /// no Dataset with that id). Only this node and those it names are read.
    pub fn dataset(&self, id: &str) -> Result<Option<ImportedDataset>> {
        if !self.graph.is_dataset(id) {
            return Ok(None);
        }
        let Some(node) = self.graph.node(id) else {
            return Err(self.read_failure());
        };
        let dataset = self.dataset_of(&node);
        match self.graph.take_failure() {
            Some(failure) => Err(crate::refused(format!(
                "reading the archive's metadata back failed: {failure}"
            ))),
            None => Ok(Some(dataset)),
        }
    }

    fn read_failure(&self) -> ElnError {
        let failure = self.graph.take_failure().unwrap_or_default();
        crate::refused(format!(
            "reading the archive's metadata back failed: {failure}"
        ))
    }

    /// Every Dataset of the root's `hasPart`, as import records, all in memory: for small
    /// crates and tests. An import walks [`Crate::dataset_ids`] and parses one at a time.
    pub fn datasets(&self) -> Result<Vec<ImportedDataset>> {
        let mut datasets = Vec::new();
        for id in self.dataset_ids() {
            if let Some(dataset) = self.dataset(id)? {
                datasets.push(dataset);
            }
        }
        Ok(datasets)
    }

    /// `@id`s of root parts that are listed but absent from the graph.
    pub fn dangling_parts(&self) -> Vec<String> {
        self.root_parts
            .iter()
            .filter(|id| !self.graph.contains(id))
            .cloned()
            .collect()
    }

    /// Whether `id` is listed in the root's `hasPart` (an entity of the archive).
    fn is_root_part(&self, id: &str) -> bool {
        self.sorted_parts
            .binary_search_by(|&i| self.root_parts[i].as_str().cmp(id))
            .is_ok()
    }

    fn person(&self, value: &Value) -> Option<ImportedPerson> {
        if let Value::String(name) = value {
            return Some(ImportedPerson {
                name: name.clone(),
                ..Default::default()
            });
        }
        let node = self.node(value)?;
        let given = text(node.get("givenName")).unwrap_or_default();
        let family = text(node.get("familyName")).unwrap_or_default();
        let joined = format!("{given} {family}").trim().to_owned();
        let name = text(node.get("name"))
            .filter(|n| !n.trim().is_empty())
            .unwrap_or(joined);
        let id = node.get("@id").and_then(Value::as_str);
        let identifier = text(node.get("identifier"))
            .or_else(|| id.filter(|i| i.contains("orcid.org")).map(str::to_owned));
        let name = if name.is_empty() {
            id.unwrap_or("unknown").to_owned()
        } else {
            name
        };
        Some(ImportedPerson {
            name,
            email: text(node.get("email")),
            identifier,
        })
    }

    /// A value with its references resolved one level (for keeping unknown properties).
    fn resolved(&self, value: &Value) -> Value {
        match value {
            Value::Array(list) => Value::Array(list.iter().map(|v| self.resolved(v)).collect()),
            Value::Object(map) if map.len() == 1 && map.contains_key("@id") => self
                .node(value)
                .map(Cow::into_owned)
                .unwrap_or_else(|| value.clone()),
            other => other.clone(),
        }
    }

    fn dataset_of(&self, node: &Value) -> ImportedDataset {
        let id = node
            .get("@id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let folder = id
            .trim_start_matches("./")
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let title = text(node.get("name"))
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| {
                if folder.is_empty() {
                    "Untitled".to_owned()
                } else {
                    folder
                }
            });
        let format = text(node.get("encodingFormat")).unwrap_or_default();
        let (body, body_is_html) = match (node.get("text"), node.get("description")) {
            (Some(t), _) if text(Some(t)).is_some() => {
                let body = text(Some(t)).unwrap_or_default();
                let html = format.contains("html") || looks_like_html(&body);
                (body, html)
            }
            (_, Some(description)) => match description {
                Value::Object(_) => {
                    let target = self.node(description);
                    let target = target.as_deref();
                    let body = target
                        .and_then(|t| text(t.get("text")).or_else(|| text(t.get("description"))))
                        .unwrap_or_default();
                    let html = target
                        .and_then(|t| text(t.get("encodingFormat")))
                        .is_some_and(|f| f.contains("html"));
                    (body, html)
                }
                other => {
                    let body = text(Some(other)).unwrap_or_default();
                    let html = looks_like_html(&body);
                    (body, html)
                }
            },
            _ => (String::new(), false),
        };
        let date_created = text(node.get("dateCreated"));
        let date_modified = text(node.get("dateModified"));
        let date = text(node.get("temporal"))
            .as_deref()
            .and_then(iso_date)
            .or_else(|| date_created.as_deref().and_then(iso_date));
        let author_value = node.get("author").or_else(|| node.get("creator"));
        let authors = items(author_value)
            .into_iter()
            .filter_map(|a| self.person(a))
            .collect();
        let mut keywords: Vec<String> = Vec::new();
        for k in items(node.get("keywords")) {
            if let Some(s) = text(Some(k)) {
                for word in s.split(',') {
                    let word = word.trim();
                    if !word.is_empty() && !keywords.iter().any(|w| w == word) {
                        keywords.push(word.to_owned());
                    }
                }
            }
        }
        let category = node
            .get("about")
            .and_then(|a| self.node(a))
            .filter(|t| !has_type(t, "Dataset"))
            .and_then(|t| text(t.get("name")));
        let mut steps: Vec<(f64, ImportedStep)> = Vec::new();
        for (n, step) in items(node.get("step")).into_iter().enumerate() {
            let Some(step) = self.node(step) else {
                continue;
            };
            let body = items(step.get("itemListElement"))
                .into_iter()
                .filter_map(|d| self.node(d))
                .filter_map(|d| text(d.get("text")))
                .collect::<Vec<_>>()
                .join("\n");
            let body = if body.is_empty() {
                text(step.get("text"))
                    .or_else(|| text(step.get("name")))
                    .unwrap_or_default()
            } else {
                body
            };
            let status = text(step.get("creativeWorkStatus")).unwrap_or_default();
            let position = text(step.get("position"))
                .and_then(|p| p.parse::<f64>().ok())
                .unwrap_or(n as f64);
            steps.push((
                position,
                ImportedStep {
                    body,
                    done: status.eq_ignore_ascii_case("finished")
                        || status.eq_ignore_ascii_case("done"),
                    done_at: text(step.get("temporal")),
                },
            ));
        }
        steps.sort_by(|a, b| a.0.total_cmp(&b.0));
        let comments = items(node.get("comment"))
            .into_iter()
            .filter_map(|c| self.node(c))
            .map(|c| ImportedComment {
                body: text(c.get("text"))
                    .or_else(|| text(c.get("description")))
                    .unwrap_or_default(),
                author: c.get("author").and_then(|a| self.person(a)),
                date: text(c.get("dateCreated")),
            })
            .filter(|c| !c.body.trim().is_empty())
            .collect();
        let mentions = items(node.get("mentions"))
            .into_iter()
            .filter_map(|m| m.get("@id").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let mut elabftw_metadata = None;
        let mut properties = Vec::new();
        for pv in items(node.get("variableMeasured")) {
            let Some(pv) = self.node(pv) else { continue };
            let name = text(pv.get("propertyID"))
                .or_else(|| text(pv.get("name")))
                .unwrap_or_default();
            let value = match pv.get("value") {
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(|v| text(Some(v)))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => text(other).unwrap_or_default(),
            };
            if name == "elabftw_metadata" {
                elabftw_metadata = Some(value);
                continue;
            }
            if name.is_empty() {
                continue;
            }
            properties.push(ImportedProperty {
                name,
                value,
                unit: text(pv.get("unitText")),
                kind: text(pv.get("valueReference")),
            });
        }
        let mut files = Vec::new();
        let mut nested = Vec::new();
        for part in items(node.get("hasPart")) {
            let Some(part_id) = part.get("@id").and_then(Value::as_str) else {
                continue;
            };
            let target = self.node(part);
            if target.as_deref().is_some_and(|t| has_type(t, "Dataset")) || part_id.ends_with('/') {
                if !self.is_root_part(part_id) {
                    nested.push(part_id.to_owned());
                }
                continue;
            }
            let empty = Value::Null;
            let file = target.as_deref().unwrap_or(&empty);
            let name = text(file.get("name"))
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| {
                    part_id
                        .trim_end_matches('/')
                        .rsplit('/')
                        .next()
                        .unwrap_or(part_id)
                        .to_owned()
                });
            files.push(ImportedFile {
                id: part_id.to_owned(),
                name,
                media_type: text(file.get("encodingFormat")),
                size: text(file.get("contentSize")).and_then(|s| s.trim().parse().ok()),
                sha256: text(file.get("sha256"))
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty()),
                description: text(file.get("description")),
                state: text(file.get(&*format!("{CAHIER_NS}state")))
                    .or_else(|| text(file.get("cahier:state")))
                    .and_then(|s| s.parse().ok()),
            });
        }
        let cahier_prop = |key: &str| {
            node.get(&*format!("cahier:{key}"))
                .or_else(|| node.get(&*format!("{CAHIER_NS}{key}")))
        };
        let cahier = CahierProps {
            kind: text(cahier_prop("kind")),
            uuid: text(cahier_prop("uuid")),
            rating: text(cahier_prop("rating")).and_then(|r| r.parse().ok()),
            heads: text(cahier_prop("heads")),
        };
        let mut extra = Map::new();
        for (key, value) in node.as_object().into_iter().flatten() {
            if KNOWN.contains(&key.as_str())
                || key.starts_with("cahier:")
                || key.starts_with(CAHIER_NS)
            {
                continue;
            }
            extra.insert(key.clone(), self.resolved(value));
        }
        if let Some(status) = node.get("creativeWorkStatus")
            && text(Some(status)).is_none()
        {
            extra.insert("creativeWorkStatus".into(), self.resolved(status));
        }
        ImportedDataset {
            id,
            title,
            body,
            body_is_html,
            date_created,
            date_modified,
            date,
            authors,
            keywords,
            genre: text(node.get("genre")),
            category,
            status: text(node.get("creativeWorkStatus")),
            steps: steps.into_iter().map(|(_, step)| step).collect(),
            comments,
            mentions,
            elabftw_metadata,
            properties,
            files,
            nested,
            cahier,
            extra,
        }
    }
}

fn looks_like_html(body: &str) -> bool {
    let trimmed = body.trim_start();
    trimmed.starts_with('<') && trimmed.contains("</")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lenient_shapes_are_read() {
        let graph = json!({"@graph": [
            {"@id": "ro-crate-metadata.json", "about": {"@id": "./"}},
            {"@id": "./", "@type": "Dataset", "hasPart": [{"@id": "./a/"}]},
            {"@id": "./a/", "@type": ["Dataset"], "keywords": ["x", "y,z"],
             "description": {"@id": "#t"}, "creator": {"@id": "#p"},
             "hasPart": [{"@id": "./a/f.txt"}], "dateCreated": "07:12:23:16:11:11",
             "funder": {"@id": "#org"}},
            {"@id": "#t", "@type": "TextObject", "text": "# hi"},
            {"@id": "#p", "@type": "Person", "givenName": "Ada", "familyName": "L"},
            {"@id": "#org", "@type": "Organization", "name": "Org"},
            {"@id": "./a/f.txt", "@type": "File", "contentSize": 12, "sha256": "AB"}
        ]});
        let krate = Crate::parse(&graph).unwrap();
        let datasets = krate.datasets().unwrap();
        assert_eq!(datasets.len(), 1);
        let d = &datasets[0];
        assert_eq!(d.title, "a");
        assert_eq!(d.keywords, vec!["x", "y", "z"]);
        assert_eq!(d.body, "# hi");
        assert!(!d.body_is_html);
        assert_eq!(d.authors[0].name, "Ada L");
        assert_eq!(d.date, None);
        assert_eq!(d.files[0].size, Some(12));
        assert_eq!(d.files[0].sha256.as_deref(), Some("ab"));
        assert_eq!(d.extra["funder"]["name"], "Org");
    }
}
