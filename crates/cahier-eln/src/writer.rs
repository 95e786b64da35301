//! Cahier's `.eln` export: RO-Crate 1.2, one top folder, a flattened graph (no inline objects
//! besides `{@id}` references), every entity a Dataset listed in the root's `hasPart`, with an
//! explicit folder entry even when it holds no file, ASCII-safe `@id`s, and root `name`,
//! `description`, `datePublished`, `license`.
//!
//! Standard properties carry what other ELNs read (the same ones eLabFTW writes); Cahier's own
//! (`cahier:kind`, `cahier:uuid`, `cahier:heads`, `cahier:rating`, `cahier:state`,
//! `cahier:timestamps`) live under [`CAHIER_NS`], declared in the `@context`, so a Cahier →
//! .eln → Cahier round trip loses nothing. DO NOT rename existing properties: archives already
//! written must keep importing.
//!
//! Everything is streamed, so memory does not grow with the size of the export: the caller
//! writes each attachment in chunks between [`ElnWriter::start_file`] and the next call, and the
//! metadata nodes of each entity go to a temporary file as soon as the entity is complete.
//! [`ElnWriter::finish`] writes `ro-crate-metadata.json` last, copying that file in. Only the
//! ids of people and categories already written are remembered (to write each node once).

use crate::scratch::{PlainScratch, Scratch, ScratchFile};
use crate::{CAHIER_NS, ROCRATE_CONTEXT_1_2, Result};
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::io::{BufWriter, Seek, Write};
use zip::write::SimpleFileOptions;

/// A person in the export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPerson {
    /// Stable key within the export (the user id).
    pub key: String,
    /// Display name.
    pub name: String,
    /// E-mail.
    pub email: Option<String>,
}

/// A step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportStep {
    /// Text.
    pub body: String,
    /// Done.
    pub done: bool,
    /// When done, RFC 3339.
    pub done_at: Option<String>,
}

/// A comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportComment {
    /// Author.
    pub author: ExportPerson,
    /// When written, RFC 3339.
    pub created_at: String,
    /// Text.
    pub body: String,
}

/// One typed field, for readers that do not understand eLabFTW's metadata JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportField {
    /// Name.
    pub name: String,
    /// Value as text.
    pub value: String,
    /// Unit.
    pub unit: Option<String>,
    /// eLabFTW field type (`text`, `number` …).
    pub kind: String,
}

/// An attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    /// SHA-256 of the content.
    pub sha256: String,
    /// File name.
    pub name: String,
    /// Media type.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// When attached, RFC 3339.
    pub created_at: String,
    /// Comment.
    pub comment: String,
    /// 1 normal, 2 archived.
    pub state: i64,
}

/// A link of an entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportLink {
    /// UUID of the target.
    pub uuid: String,
    /// The target's kind when the target is part of this export (the link then points at its
    /// Dataset); `None` for a target outside the export (written as `urn:uuid:`).
    pub kind: Option<String>,
}

/// One entity to export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportEntity {
    /// UUID.
    pub uuid: String,
    /// Kind (`experiment`, `resource`, …).
    pub kind: String,
    /// Title.
    pub title: String,
    /// Body source.
    pub body: String,
    /// Whether the body is HTML (else Markdown).
    pub body_is_html: bool,
    /// Date `YYYY-MM-DD`.
    pub date: String,
    /// Created, RFC 3339.
    pub created_at: String,
    /// Last modified, RFC 3339.
    pub modified_at: String,
    /// Owner.
    pub author: ExportPerson,
    /// Tags.
    pub tags: Vec<String>,
    /// Category name.
    pub category: Option<String>,
    /// Category colour (hex, no `#`).
    pub category_color: Option<String>,
    /// Status name.
    pub status: Option<String>,
    /// Steps in order.
    pub steps: Vec<ExportStep>,
    /// Comments.
    pub comments: Vec<ExportComment>,
    /// Linked entities.
    pub links: Vec<ExportLink>,
    /// eLabFTW's `metadata` JSON, when the entity has fields.
    pub metadata_json: Option<String>,
    /// The fields, one by one.
    pub fields: Vec<ExportField>,
    /// Rating 0–5.
    pub rating: i64,
    /// History heads of the exported version.
    pub heads: String,
    /// eLabFTW-style unique reference.
    pub elabid: String,
    /// Its saved versions, oldest first: change hash, author, device, the device's clock (not
    /// proven) and the server's receive time.
    pub history: Vec<Value>,
    /// Trusted timestamps of its versions (heads, hash, time, authority).
    pub timestamps: Vec<Value>,
    /// Signatures of its versions (meaning, signer, minisign public key and signature, and the
    /// signed export itself, so `minisign -V` can check them from the archive alone).
    pub signatures: Vec<Value>,
    /// Attachments.
    pub files: Vec<ExportFile>,
}

/// Writes an `.eln` archive entity by entity.
pub struct ElnWriter<W: Write + Seek> {
    zip: zip::ZipWriter<W>,
    root: String,
    published_at: String,
    publisher: String,
    /// The graph nodes after the four fixed ones, separated by `,\n`.
    graph: BufWriter<Box<dyn ScratchFile>>,
    /// The root's `hasPart` items, separated by `,\n`.
    parts: BufWriter<Box<dyn ScratchFile>>,
    /// Whether a node (resp. a part) was written already (for the separators).
    any_node: bool,
    any_part: bool,
    /// People and categories already written (one node each, however many entities use them).
    shared: HashSet<String>,
    /// The Dataset being written: its files are added to its `hasPart` until the next entity.
    current: Option<Map<String, Value>>,
    n_files: usize,
}

/// Writes `value` pretty-printed, indented by `indent` spaces (its place in the document).
fn write_indented(out: &mut impl Write, value: &Value, indent: usize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| crate::refused(format!("writing the metadata failed: {e}")))?;
    let pad = " ".repeat(indent);
    for (n, line) in text.lines().enumerate() {
        if n > 0 {
            out.write_all(b"\n")?;
        }
        out.write_all(pad.as_bytes())?;
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

impl<W: Write + Seek> std::fmt::Debug for ElnWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElnWriter")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// Letters, digits, `.`, `_` and `-` kept; anything else becomes `_` (ids stay URI-safe).
pub fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches('.');
    let short: String = trimmed.chars().take(80).collect();
    if short.is_empty() {
        "file".to_owned()
    } else {
        short
    }
}

fn id_ref(id: &str) -> Value {
    json!({ "@id": id })
}

impl<S: Write> ElnWriter<zip::write::StreamWriter<S>> {
    /// [`ElnWriter::new`] into a sink that cannot seek (such as an encrypting writer): every
    /// file is followed by a data descriptor instead of a header rewritten in place. `finish`
    /// returns the sink wrapped; `into_inner` unwraps it.
    pub fn new_stream(sink: S, root: &str, published_at: &str, publisher: &str) -> Result<Self> {
        Self::new_stream_with(sink, root, published_at, publisher, &PlainScratch::system())
    }

    /// [`ElnWriter::new_stream`], the graph kept until the end in files of `scratch`
    /// (encrypted at rest on a field replica).
    pub fn new_stream_with(
        sink: S,
        root: &str,
        published_at: &str,
        publisher: &str,
        scratch: &dyn Scratch,
    ) -> Result<Self> {
        Self::start(
            zip::ZipWriter::new_stream(sink),
            root,
            published_at,
            publisher,
            scratch,
        )
    }
}

impl<W: Write + Seek> ElnWriter<W> {
    /// Starts an archive whose top folder is `root` (ASCII-safe), published at `published_at`
    /// (RFC 3339) by `publisher` (the instance's name).
    pub fn new(sink: W, root: &str, published_at: &str, publisher: &str) -> Result<Self> {
        Self::new_with(sink, root, published_at, publisher, &PlainScratch::system())
    }

    /// [`ElnWriter::new`], the graph kept until the end in files of `scratch` (encrypted at
    /// rest on a field replica).
    pub fn new_with(
        sink: W,
        root: &str,
        published_at: &str,
        publisher: &str,
        scratch: &dyn Scratch,
    ) -> Result<Self> {
        Self::start(
            zip::ZipWriter::new(sink),
            root,
            published_at,
            publisher,
            scratch,
        )
    }

    fn start(
        mut zip: zip::ZipWriter<W>,
        root: &str,
        published_at: &str,
        publisher: &str,
        scratch: &dyn Scratch,
    ) -> Result<Self> {
        let root = safe_name(root);
        zip.add_directory(format!("{root}/"), SimpleFileOptions::default())?;
        Ok(Self {
            zip,
            root,
            published_at: published_at.to_owned(),
            publisher: publisher.to_owned(),
            graph: BufWriter::new(scratch.create()?),
            parts: BufWriter::new(scratch.create()?),
            any_node: false,
            any_part: false,
            shared: HashSet::new(),
            current: None,
            n_files: 0,
        })
    }

    /// The top folder's name.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Appends one node to the graph file.
    fn node(&mut self, node: &Value) -> Result<()> {
        if self.any_node {
            self.graph.write_all(b",\n")?;
        }
        self.any_node = true;
        write_indented(&mut self.graph, node, 4)
    }

    /// Appends a node shared between entities (a person, a category) the first time only.
    fn shared_node(&mut self, id: &str, node: impl FnOnce() -> Value) -> Result<()> {
        if self.shared.insert(id.to_owned()) {
            self.node(&node())?;
        }
        Ok(())
    }

    fn person(&mut self, person: &ExportPerson) -> Result<Value> {
        let id = format!("#person-{}", safe_name(&person.key));
        self.shared_node(&id, || {
            let mut node = json!({"@id": id, "@type": "Person", "name": person.name});
            if let Some(email) = &person.email {
                node["email"] = json!(email);
            }
            node
        })?;
        Ok(id_ref(&id))
    }

    /// Writes the Dataset in progress, if any, and lists it in the root's `hasPart`.
    fn flush_current(&mut self) -> Result<()> {
        let Some(dataset) = self.current.take() else {
            return Ok(());
        };
        if let Some(id) = dataset.get("@id") {
            if self.any_part {
                self.parts.write_all(b",\n")?;
            }
            self.any_part = true;
            write_indented(&mut self.parts, &json!({ "@id": id }), 8)?;
        }
        self.node(&Value::Object(dataset))
    }

    /// Adds an entity's Dataset (and its folder); its files follow with
    /// [`ElnWriter::start_file`].
    pub fn begin_entity(&mut self, entity: &ExportEntity) -> Result<()> {
        self.flush_current()?;
        let key = format!("{}-{}", safe_name(&entity.kind), safe_name(&entity.uuid));
        let id = format!("./{key}/");
        self.zip.add_directory(
            format!("{}/{key}/", self.root),
            SimpleFileOptions::default(),
        )?;
        let author = self.person(&entity.author)?;
        let mut d = Map::new();
        d.insert("@id".into(), json!(id));
        d.insert("@type".into(), json!("Dataset"));
        d.insert("name".into(), json!(entity.title));
        d.insert("text".into(), json!(entity.body));
        d.insert(
            "encodingFormat".into(),
            json!(if entity.body_is_html {
                "text/html"
            } else {
                "text/markdown"
            }),
        );
        d.insert("dateCreated".into(), json!(entity.created_at));
        d.insert("dateModified".into(), json!(entity.modified_at));
        d.insert("temporal".into(), json!(entity.date));
        d.insert("author".into(), author);
        d.insert(
            "genre".into(),
            json!(if entity.kind.starts_with("resource") {
                "resource"
            } else {
                "experiment"
            }),
        );
        d.insert(
            "identifier".into(),
            json!(format!("urn:uuid:{}", entity.uuid)),
        );
        d.insert("alternateName".into(), json!(entity.elabid));
        if !entity.tags.is_empty() {
            d.insert("keywords".into(), json!(entity.tags.join(",")));
        }
        if let Some(category) = &entity.category {
            let cid = format!("#category-{}", safe_name(category));
            self.shared_node(&cid, || {
                let mut thing = json!({"@id": cid, "@type": "Thing", "name": category});
                if let Some(color) = &entity.category_color {
                    thing["color"] = json!(color);
                }
                thing
            })?;
            d.insert("about".into(), id_ref(&cid));
        }
        if let Some(status) = &entity.status {
            d.insert("creativeWorkStatus".into(), json!(status));
        }
        let base = safe_name(&entity.uuid);
        let mut steps = Vec::new();
        for (n, step) in entity.steps.iter().enumerate() {
            let sid = format!("#step-{base}-{n}");
            let did = format!("#direction-{base}-{n}");
            self.node(&json!({"@id": did, "@type": "HowToDirection", "text": step.body}))?;
            let mut node = json!({
                "@id": sid, "@type": "HowToStep", "position": n + 1,
                "creativeWorkStatus": if step.done { "finished" } else { "unfinished" },
                "itemListElement": id_ref(&did),
            });
            if let Some(at) = &step.done_at {
                node["temporal"] = json!(at);
            }
            self.node(&node)?;
            steps.push(id_ref(&sid));
        }
        if !steps.is_empty() {
            d.insert("step".into(), Value::Array(steps));
        }
        let mut comments = Vec::new();
        for (n, comment) in entity.comments.iter().enumerate() {
            let cid = format!("#comment-{base}-{n}");
            let author = self.person(&comment.author)?;
            self.node(
                &json!({"@id": cid, "@type": "Comment", "dateCreated": comment.created_at,
                              "text": comment.body, "author": author}),
            )?;
            comments.push(id_ref(&cid));
        }
        if !comments.is_empty() {
            d.insert("comment".into(), Value::Array(comments));
        }
        let mut values = Vec::new();
        if let Some(metadata) = &entity.metadata_json {
            let pid = format!("#pv-{base}-metadata");
            self.node(&json!({"@id": pid, "@type": "PropertyValue",
                              "propertyID": "elabftw_metadata", "value": metadata}))?;
            values.push(id_ref(&pid));
        }
        for (n, field) in entity.fields.iter().enumerate() {
            let pid = format!("#pv-{base}-{n}");
            let mut node = json!({"@id": pid, "@type": "PropertyValue", "propertyID": field.name,
                                  "valueReference": field.kind, "value": field.value});
            if let Some(unit) = &field.unit {
                node["unitText"] = json!(unit);
            }
            self.node(&node)?;
            values.push(id_ref(&pid));
        }
        if !values.is_empty() {
            d.insert("variableMeasured".into(), Value::Array(values));
        }
        d.insert("cahier:kind".into(), json!(entity.kind));
        d.insert("cahier:uuid".into(), json!(entity.uuid));
        d.insert("cahier:rating".into(), json!(entity.rating));
        d.insert("cahier:heads".into(), json!(entity.heads));
        if !entity.history.is_empty() {
            d.insert(
                "cahier:history".into(),
                json!(Value::Array(entity.history.clone()).to_string()),
            );
        }
        if !entity.timestamps.is_empty() {
            d.insert(
                "cahier:timestamps".into(),
                json!(Value::Array(entity.timestamps.clone()).to_string()),
            );
        }
        if !entity.signatures.is_empty() {
            d.insert(
                "cahier:signatures".into(),
                json!(Value::Array(entity.signatures.clone()).to_string()),
            );
        }
        let mentions: Vec<Value> = entity
            .links
            .iter()
            .map(|link| match &link.kind {
                Some(kind) => id_ref(&format!("./{}-{}/", safe_name(kind), safe_name(&link.uuid))),
                None => id_ref(&format!("urn:uuid:{}", link.uuid)),
            })
            .collect();
        if !mentions.is_empty() {
            d.insert("mentions".into(), Value::Array(mentions));
        }
        d.insert("hasPart".into(), json!([]));
        self.current = Some(d);
        Ok(())
    }

    /// Starts the content of `file` in the current entity's folder; write it with
    /// [`ElnWriter::write_chunk`].
    pub fn start_file(&mut self, file: &ExportFile) -> Result<()> {
        let Some(dataset) = &self.current else {
            return Err(crate::refused("a file needs an entity first"));
        };
        let dataset_id = dataset
            .get("@id")
            .and_then(Value::as_str)
            .unwrap_or("./")
            .to_owned();
        self.n_files += 1;
        let name = format!("{:03}-{}", self.n_files, safe_name(&file.name));
        let id = format!("{dataset_id}{name}");
        let path = format!("{}/{}", self.root, id.trim_start_matches("./"));
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(file.size >= u64::from(u32::MAX));
        self.zip.start_file(path, options)?;
        self.node(&json!({"@id": id, "@type": "File", "name": file.name,
                          "encodingFormat": file.media_type,
                          "contentSize": file.size.to_string(), "sha256": file.sha256,
                          "dateCreated": file.created_at, "description": file.comment,
                          "cahier:state": file.state}))?;
        if let Some(Value::Array(parts)) = self
            .current
            .as_mut()
            .and_then(|dataset| dataset.get_mut("hasPart"))
        {
            parts.push(id_ref(&id));
        }
        Ok(())
    }

    /// Adds a text file at the top of the archive, listed in the root's `hasPart` beside the
    /// entities' Datasets (readers take only Datasets for entries, so it is never anyone's
    /// attachment): what the export says about itself, such as files it had to leave out.
    /// Call it between entities or after the last one; the entity in progress is complete.
    pub fn add_root_text(&mut self, name: &str, description: &str, text: &str) -> Result<()> {
        self.flush_current()?;
        let id = safe_name(name);
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        self.zip
            .start_file(format!("{}/{id}", self.root), options)?;
        self.zip.write_all(text.as_bytes())?;
        self.node(&json!({"@id": id, "@type": "File", "name": name,
                          "encodingFormat": "text/plain",
                          "contentSize": text.len().to_string(), "description": description}))?;
        if self.any_part {
            self.parts.write_all(b",\n")?;
        }
        self.any_part = true;
        write_indented(&mut self.parts, &id_ref(&id), 8)
    }

    /// Appends bytes to the file started last.
    pub fn write_chunk(&mut self, bytes: &[u8]) -> Result<()> {
        self.zip.write_all(bytes)?;
        Ok(())
    }

    /// Writes `ro-crate-metadata.json` (streaming the nodes from the temporary files) and closes
    /// the archive.
    pub fn finish(mut self) -> Result<W> {
        self.flush_current()?;
        let mut graph = self
            .graph
            .into_inner()
            .map_err(|e| e.into_error())?
            .into_reader()?;
        let mut parts = self
            .parts
            .into_inner()
            .map_err(|e| e.into_error())?
            .into_reader()?;
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        self.zip
            .start_file(format!("{}/ro-crate-metadata.json", self.root), options)?;
        let out = &mut self.zip;
        let context = json!([ROCRATE_CONTEXT_1_2, {"cahier": CAHIER_NS}]);
        out.write_all(b"{\n  \"@context\": ")?;
        let context = serde_json::to_string_pretty(&context)
            .map_err(|e| crate::refused(format!("writing the metadata failed: {e}")))?;
        out.write_all(context.replace('\n', "\n  ").as_bytes())?;
        out.write_all(b",\n  \"@graph\": [\n")?;
        let descriptor = json!({
            "@id": "ro-crate-metadata.json", "@type": "CreativeWork",
            "about": id_ref("./"),
            "conformsTo": id_ref("https://w3id.org/ro/crate/1.2"),
            "dateCreated": self.published_at,
            "sdPublisher": id_ref("#publisher"),
            "version": "1.0",
        });
        write_indented(out, &descriptor, 4)?;
        out.write_all(b",\n")?;
        // The root Dataset, its `hasPart` copied from the parts file.
        let root = json!({
            "@id": "./", "@type": "Dataset",
            "name": "Cahier export",
            "description": "Experiments and resources exported from Cahier, an electronic lab notebook.",
            "datePublished": self.published_at,
            "license": id_ref("#license"),
            "hasPart": "PARTS",
        });
        let root = serde_json::to_string_pretty(&root)
            .map_err(|e| crate::refused(format!("writing the metadata failed: {e}")))?;
        let (before, after) = root
            .split_once("\"PARTS\"")
            .ok_or_else(|| crate::refused("writing the metadata failed"))?;
        let indent = |text: &str| text.replace('\n', "\n    ");
        out.write_all(b"    ")?;
        out.write_all(indent(before).as_bytes())?;
        if self.any_part {
            out.write_all(b"[\n")?;
            std::io::copy(&mut parts, out)?;
            out.write_all(b"\n      ]")?;
        } else {
            out.write_all(b"[]")?;
        }
        out.write_all(indent(after).as_bytes())?;
        drop(parts);
        out.write_all(b",\n")?;
        let license = json!({
            "@id": "#license", "@type": "CreativeWork", "name": "License not specified",
            "description": "The authors set no licence on these entries; ask them before reusing them.",
        });
        write_indented(out, &license, 4)?;
        out.write_all(b",\n")?;
        let publisher =
            json!({"@id": "#publisher", "@type": "Organization", "name": self.publisher});
        write_indented(out, &publisher, 4)?;
        if self.any_node {
            out.write_all(b",\n")?;
            std::io::copy(&mut graph, out)?;
        }
        out.write_all(b"\n  ]\n}")?;
        Ok(self.zip.finish()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ElnArchive, Limits};
    use std::io::Cursor;

    fn person() -> ExportPerson {
        ExportPerson {
            key: "1".into(),
            name: "Ada Lovelace".into(),
            email: Some("ada@example.org".into()),
        }
    }

    fn titration() -> ExportEntity {
        ExportEntity {
            uuid: "0190-aa".into(),
            kind: "experiment".into(),
            title: "Titration".into(),
            body: "# Aim".into(),
            body_is_html: false,
            date: "2026-01-01".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            modified_at: "2026-01-01T00:00:00Z".into(),
            author: person(),
            tags: vec!["a".into(), "b".into()],
            category: Some("Chemistry".into()),
            category_color: None,
            status: Some("Running".into()),
            steps: vec![ExportStep {
                body: "weigh".into(),
                done: true,
                done_at: None,
            }],
            comments: vec![ExportComment {
                author: person(),
                created_at: "2026-01-01T00:00:00Z".into(),
                body: "ok".into(),
            }],
            links: vec![ExportLink {
                uuid: "other".into(),
                kind: None,
            }],
            metadata_json: None,
            fields: vec![],
            rating: 3,
            heads: "abc".into(),
            elabid: "x".into(),
            history: vec![],
            timestamps: vec![],
            signatures: vec![],
            files: vec![],
        }
    }

    #[test]
    fn an_export_streamed_into_a_sink_that_cannot_seek_reads_back() {
        let mut writer =
            ElnWriter::new_stream(Vec::new(), "export", "2026-01-01T00:00:00Z", "Cahier").unwrap();
        writer.begin_entity(&titration()).unwrap();
        writer
            .start_file(&ExportFile {
                sha256: "00".into(),
                name: "big.bin".into(),
                media_type: "application/octet-stream".into(),
                size: 200_000,
                created_at: "2026-01-01T00:00:00Z".into(),
                comment: String::new(),
                state: 1,
            })
            .unwrap();
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
        writer.write_chunk(&content).unwrap();
        let bytes = writer.finish().unwrap().into_inner();
        let mut archive = ElnArchive::open(Cursor::new(bytes), Limits::default()).unwrap();
        let datasets = archive.krate().datasets().unwrap();
        assert_eq!(datasets[0].title, "Titration");
        let path = archive.resolve(&datasets[0].files[0].id).unwrap();
        let mut out = Vec::new();
        archive.copy(&path, &mut out).unwrap();
        assert_eq!(out, content);
    }

    #[test]
    fn an_export_reads_back_with_its_files() {
        let mut writer = ElnWriter::new(
            Cursor::new(Vec::new()),
            "export",
            "2026-01-01T00:00:00Z",
            "Cahier",
        )
        .unwrap();
        let entity = titration();
        writer.begin_entity(&entity).unwrap();
        writer
            .start_file(&ExportFile {
                sha256: "00".into(),
                name: "data é.csv".into(),
                media_type: "text/csv".into(),
                size: 3,
                created_at: "2026-01-01T00:00:00Z".into(),
                comment: String::new(),
                state: 1,
            })
            .unwrap();
        writer.write_chunk(b"1,2").unwrap();
        let bytes = writer.finish().unwrap().into_inner();
        let mut archive = ElnArchive::open(Cursor::new(bytes), Limits::default()).unwrap();
        let datasets = archive.krate().datasets().unwrap();
        assert_eq!(datasets.len(), 1);
        let d = &datasets[0];
        assert_eq!(d.title, "Titration");
        assert_eq!(d.keywords, vec!["a", "b"]);
        assert_eq!(d.category.as_deref(), Some("Chemistry"));
        assert_eq!(d.status.as_deref(), Some("Running"));
        assert!(d.steps[0].done);
        assert_eq!(d.comments[0].body, "ok");
        assert_eq!(d.mentions, vec!["urn:uuid:other"]);
        assert_eq!(d.cahier.kind.as_deref(), Some("experiment"));
        assert_eq!(d.cahier.rating, Some(3));
        assert_eq!(d.files[0].name, "data é.csv");
        let path = archive.resolve(&d.files[0].id).unwrap();
        let mut out = Vec::new();
        archive.copy(&path, &mut out).unwrap();
        assert_eq!(out, b"1,2");
    }

    #[test]
    fn a_note_at_the_top_is_listed_at_the_root_and_is_no_entry_or_attachment() {
        let mut writer =
            ElnWriter::new_stream(Vec::new(), "export", "2026-01-01T00:00:00Z", "Cahier").unwrap();
        writer.begin_entity(&titration()).unwrap();
        let note = "Files missing from this export\n\n- Titration — plot.png: not here\n";
        writer
            .add_root_text("MISSING-FILES.txt", "Files missing from this export", note)
            .unwrap();
        let bytes = writer.finish().unwrap().into_inner();
        let mut archive = ElnArchive::open(Cursor::new(bytes), Limits::default()).unwrap();
        let krate = archive.krate();
        assert_eq!(
            krate.root_parts,
            vec!["./experiment-0190-aa/", "MISSING-FILES.txt"]
        );
        let datasets = krate.datasets().unwrap();
        assert_eq!(datasets.len(), 1, "the note is not an entry");
        assert!(datasets[0].files.is_empty(), "nor an attachment");
        assert!(
            krate.dangling_parts().is_empty(),
            "its node is in the graph"
        );
        let path = archive.resolve("MISSING-FILES.txt").unwrap();
        let mut out = Vec::new();
        archive.copy(&path, &mut out).unwrap();
        assert_eq!(out, note.as_bytes());
    }

    #[test]
    fn entities_stream_into_one_graph_with_shared_nodes_written_once() {
        let mut writer = ElnWriter::new(
            Cursor::new(Vec::new()),
            "export",
            "2026-01-01T00:00:00Z",
            "Cahier",
        )
        .unwrap();
        let entity = |uuid: &str, links: Vec<ExportLink>| ExportEntity {
            uuid: uuid.into(),
            kind: "experiment".into(),
            title: format!("Entry {uuid}"),
            body: "text".into(),
            body_is_html: false,
            date: "2026-01-01".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            modified_at: "2026-01-01T00:00:00Z".into(),
            author: person(),
            tags: vec![],
            category: Some("Chemistry".into()),
            category_color: None,
            status: None,
            steps: vec![],
            comments: vec![],
            links,
            metadata_json: None,
            fields: vec![],
            rating: 0,
            heads: "abc".into(),
            elabid: "x".into(),
            history: vec![],
            timestamps: vec![],
            signatures: vec![],
            files: vec![],
        };
        writer.begin_entity(&entity("a", vec![])).unwrap();
        let link = ExportLink {
            uuid: "a".into(),
            kind: Some("experiment".into()),
        };
        writer.begin_entity(&entity("b", vec![link])).unwrap();
        let bytes = writer.finish().unwrap().into_inner();
        let mut archive = ElnArchive::open(Cursor::new(bytes), Limits::default()).unwrap();
        let mut text = Vec::new();
        archive.copy("ro-crate-metadata.json", &mut text).unwrap();
        let metadata: serde_json::Value = serde_json::from_slice(&text).unwrap();
        let graph = metadata["@graph"].as_array().unwrap().clone();
        let count = |id: &str| graph.iter().filter(|n| n["@id"] == id).count();
        assert_eq!(count("#person-1"), 1);
        assert_eq!(count("#category-Chemistry"), 1);
        assert_eq!(count("./"), 1);
        let krate = archive.krate();
        assert_eq!(krate.root_parts, vec!["./experiment-a/", "./experiment-b/"]);
        let datasets = krate.datasets().unwrap();
        assert_eq!(datasets.len(), 2);
        assert_eq!(datasets[1].mentions, vec!["./experiment-a/"]);
        assert_eq!(datasets[0].category.as_deref(), Some("Chemistry"));
    }
}
