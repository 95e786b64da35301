//! The entity document: one Automerge document per experiment, resource or template, holding
//! everything a researcher edits. This module owns the document's shape and every read and
//! write on it; callers never touch Automerge paths directly.
//!
//! Document shape (DO NOT change existing keys or their types: stored documents and their change
//! hashes depend on them; add new keys only, and bump [`SCHEMA_VERSION`]):
//!
//! ```text
//! schema: Int            kind: Str            id: Str (UUIDv7)
//! created_at: Timestamp  created_by: Int      template: Str | Null
//! title: Str   date: Str (YYYY-MM-DD)   content_type: Int (1 HTML, 2 Markdown)
//! status: Int | Null     category: Int | Null     rating: Int
//! body: Text
//! tags: Map<tag, true>
//! steps: Map<step id, {body: Str, pos: Str, done: Bool, done_by: Int|Null, done_at: Timestamp|Null,
//!                      created_at: Timestamp}>
//! links: Map<target entity id, {created_at: Timestamp}>
//! comments: Map<comment id, {author: Int, created_at: Timestamp, body: Str, edited_at: Timestamp|Null}>
//! fields: Map<name, Map<key, JSON>> (typed metadata, eLabFTW's `extra_fields`: one Map per field
//!                                  holding eLabFTW's keys — type, value, unit, units, options,
//!                                  required, description, group_id, position, allow_multi_values
//!                                  and any unknown key — JSON strings/numbers/booleans/null as
//!                                  scalars (Str, Int, F64, Boolean, Null), lists as List, objects
//!                                  as Map; see `fields.rs`. Each key merges on its own on sync.)
//! metadata_extra: Str (absent until set; JSON object: every key of eLabFTW's `metadata` other
//!                                  than `extra_fields`, e.g. `elabftw.extra_fields_groups`)
//! attachments: Map<sha256, {name: Str, mime: Str, size: Int, added_by: Int, added_at: Timestamp,
//!                            comment: Str, state: Int (1 normal, 2 archived, 3 deleted),
//!                            replaces: Str (sha256 of the version it replaces) | Null}>
//!                                  (same issue; the file is the blob of that hash. `comment`,
//!                                  `state` and `replaces` were added later without a schema bump:
//!                                  an entry without them reads as "not recorded", see
//!                                  [`Attachment`])
//! stock: Map (absent until tracking is enabled; unit, threshold, a Counter for the quantity
//!             and the events: see `document/stock.rs`)
//! ```
//!
//! Every container exists from creation, so two replicas never race to create one.

use crate::entity::{EntityId, EntityKind};
use crate::fields::{Field, FieldError, Metadata};
use crate::markdown::ContentType;
use crate::text_splice::line_splices;
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, AutoCommit, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, TextEncoding,
    Value,
};
use serde::Serialize;
use std::collections::BTreeSet;

/// Version of the document shape written by this code.
pub const SCHEMA_VERSION: i64 = 1;
/// Longest accepted title, in characters (eLabFTW stores 255).
pub const MAX_TITLE_CHARS: usize = 255;
/// Longest accepted body, in characters. Larger data belongs in attachments: loading a document
/// costs about 0.7 µs per character.
pub const MAX_BODY_CHARS: usize = 1_000_000;
/// Longest accepted tag, in characters.
pub const MAX_TAG_CHARS: usize = 100;
/// Longest accepted step or comment, in characters.
pub const MAX_NOTE_CHARS: usize = 20_000;

/// Errors from reading or changing a document.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    /// A value the caller gave breaks a field rule; `field` names it.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault, as named in the API.
        field: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// The stored bytes or the history are not what they must be.
    #[error("document is damaged: {0}")]
    Damaged(String),
    /// Automerge refused an operation.
    #[error("document operation failed")]
    Automerge(#[from] automerge::AutomergeError),
    /// A step, comment or link named by id does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A metadata field's definition or value breaks a rule; `name` is the field's name.
    #[error("{name}: {message}")]
    InvalidField {
        /// The field's name.
        name: String,
        /// What is wrong and what to do.
        message: String,
    },
}

impl From<FieldError> for DocError {
    fn from(error: FieldError) -> Self {
        DocError::InvalidField {
            name: error.name,
            message: error.message,
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> DocError {
    DocError::Invalid {
        field,
        message: message.into(),
    }
}

/// The content of a new entity.
#[derive(Debug, Clone)]
pub struct NewContent {
    /// Its id.
    pub id: EntityId,
    /// Its kind.
    pub kind: EntityKind,
    /// Creator's user id.
    pub created_by: i64,
    /// Creation time (ms).
    pub created_at_ms: i64,
    /// The template or entity it was copied from.
    pub template: Option<EntityId>,
    /// Initial values; unset ones get defaults.
    pub patch: EntityPatch,
    /// Default date (`YYYY-MM-DD`) when the patch gives none.
    pub default_date: String,
}

/// A change to an entity's fields. `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityPatch {
    /// New title.
    pub title: Option<String>,
    /// New date, `YYYY-MM-DD`.
    pub date: Option<String>,
    /// New body (replaces the text through small splices).
    pub body: Option<String>,
    /// New body format.
    pub content_type: Option<ContentType>,
    /// New status (`Some(None)` clears it).
    pub status: Option<Option<i64>>,
    /// New category (`Some(None)` clears it).
    pub category: Option<Option<i64>>,
    /// New rating, 0–5.
    pub rating: Option<i64>,
    /// The complete new set of tags.
    pub tags: Option<Vec<String>>,
    /// Other operations, applied in order.
    pub ops: Vec<EntityOp>,
}

/// An operation on a part of an entity.
#[derive(Debug, Clone, PartialEq)]
pub enum EntityOp {
    /// Adds one tag.
    AddTag(String),
    /// Removes one tag.
    RemoveTag(String),
    /// Adds a step at the end.
    AddStep {
        id: String,
        body: String,
        at_ms: i64,
    },
    /// Changes a step's text.
    EditStep { id: String, body: String },
    /// Ticks or unticks a step, recording who and when.
    FinishStep {
        id: String,
        done: bool,
        by: i64,
        at_ms: i64,
    },
    /// Removes a step.
    DeleteStep { id: String },
    /// Adds a comment.
    AddComment {
        id: String,
        author: i64,
        body: String,
        at_ms: i64,
    },
    /// Changes a comment's text.
    EditComment {
        id: String,
        body: String,
        at_ms: i64,
    },
    /// Removes a comment.
    DeleteComment { id: String },
    /// Links to another entity.
    AddLink { target: EntityId, at_ms: i64 },
    /// Removes a link.
    RemoveLink { target: EntityId },
    /// Picks one value for a field whose concurrent values are in conflict.
    ResolveConflict { field: ConflictField, value: String },
    /// References an attachment by the SHA-256 of its content (adding it again updates it and
    /// makes it live again).
    AddAttachment {
        sha256: String,
        name: String,
        media_type: String,
        size: i64,
        at_ms: i64,
        by: i64,
        /// Free comment.
        comment: String,
        /// SHA-256 of the version this one replaces.
        replaces: Option<String>,
    },
    /// Renames, re-comments or changes the state of an attachment; `None` leaves a key alone,
    /// so a rename on one replica and a comment on another both survive the merge.
    UpdateAttachment {
        sha256: String,
        name: Option<String>,
        comment: Option<String>,
        /// 1 normal, 2 archived, 3 deleted.
        state: Option<i64>,
    },
    /// Replaces the metadata fields (and the rest of eLabFTW's `metadata`): fields not in it
    /// are removed, the others written key by key where they differ. With `require`, a
    /// required field left empty is refused.
    SetMetadata { metadata: Metadata, require: bool },
    /// Sets the value of an existing field, checked against its definition; on an experiment
    /// or resource (not a template) a required field cannot be emptied.
    SetFieldValue {
        name: String,
        value: serde_json::Value,
    },
    /// Adds a field or replaces its definition and value.
    PutField(Field),
    /// Removes a field.
    RemoveField { name: String },
    /// Enables stock tracking (the unit is then required) or changes its unit or threshold
    /// (thousandths; `Some(None)` clears it).
    SetStock {
        unit: Option<String>,
        threshold_milli: Option<Option<i64>>,
    },
    /// Records a stock event; the quantity's counter moves by its delta.
    RecordStock(crate::stock::StockEvent),
}

/// Fields whose concurrent values are kept and shown as conflicts: the root fields below, and
/// the value of each metadata field (`fields[name].value`). Serialised as its
/// [`key`](ConflictField::key) (`"title"`, `"field:Temperature"`): the timestamp export
/// (TRACEABILITY.md) carries it, so root fields keep the names they always had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConflictField {
    /// `title`
    Title,
    /// `date`
    Date,
    /// `status`
    Status,
    /// `category`
    Category,
    /// `rating`
    Rating,
    /// The value of the metadata field with this name (key `field:<name>`).
    Field(String),
}

/// Prefix of the key of a metadata field's conflict (`field:<name>`); root keys have no colon.
const FIELD_KEY_PREFIX: &str = "field:";

impl Serialize for ConflictField {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.key())
    }
}

impl ConflictField {
    /// The root fields that can conflict.
    pub const ALL: [ConflictField; 5] = [
        Self::Title,
        Self::Date,
        Self::Status,
        Self::Category,
        Self::Rating,
    ];

    /// The key: the document key of a root field, `field:<name>` for a metadata field. Stored
    /// in `entity_conflicts.field` and sent in the resolve form.
    pub fn key(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Self::Title => "title".into(),
            Self::Date => "date".into(),
            Self::Status => "status".into(),
            Self::Category => "category".into(),
            Self::Rating => "rating".into(),
            Self::Field(name) => format!("{FIELD_KEY_PREFIX}{name}").into(),
        }
    }

    /// Parses [`ConflictField::key`]'s format.
    pub fn parse(key: &str) -> Option<Self> {
        if let Some(name) = key.strip_prefix(FIELD_KEY_PREFIX) {
            return (!name.is_empty()).then(|| Self::Field(name.to_owned()));
        }
        Self::ALL.into_iter().find(|f| f.key() == key)
    }
}

/// A step of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Stable id.
    pub id: String,
    /// Text.
    pub body: String,
    /// Sort key.
    pub pos: String,
    /// Whether ticked.
    pub done: bool,
    /// Who ticked it.
    pub done_by: Option<i64>,
    /// When it was ticked (ms).
    pub done_at_ms: Option<i64>,
}

/// A comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comment {
    /// Stable id.
    pub id: String,
    /// Author's user id.
    pub author: i64,
    /// When written (ms).
    pub created_at_ms: i64,
    /// When last edited (ms).
    pub edited_at_ms: Option<i64>,
    /// Text.
    pub body: String,
}

/// A field with several concurrent values, all kept until someone picks one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// The field.
    pub field: ConflictField,
    /// Every concurrent value, rendered as text (empty string for "none").
    pub values: Vec<String>,
}

/// Everything an entity holds, read out of its document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntityContent {
    /// Id.
    pub id: EntityId,
    /// Kind.
    pub kind: EntityKind,
    /// Creator.
    pub created_by: i64,
    /// Creation time (ms).
    pub created_at_ms: i64,
    /// Template or source it was copied from.
    pub template: Option<EntityId>,
    /// Title.
    pub title: String,
    /// Date `YYYY-MM-DD`.
    pub date: String,
    /// Body source.
    pub body: String,
    /// Body format code (1 HTML, 2 Markdown).
    pub content_type: i64,
    /// Status id.
    pub status: Option<i64>,
    /// Category id.
    pub category: Option<i64>,
    /// Rating 0–5.
    pub rating: i64,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Linked entities, sorted.
    pub links: Vec<EntityId>,
    /// Comments, oldest first.
    pub comments: Vec<Comment>,
    /// Fields with concurrent values.
    pub conflicts: Vec<Conflict>,
    /// Typed metadata fields (eLabFTW's `metadata`). Left out of the serialised form when
    /// empty, so content serialised before fields existed compares equal (golden tests).
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
    /// Stock, when the entity tracks it (left out of the serialised form otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock: Option<crate::stock::Stock>,
}

/// Who and when a commit is made for.
#[derive(Debug, Clone)]
pub struct CommitMeta {
    /// The actor that writes the change (bound to a user and device by the store).
    pub actor: ActorId,
    /// Server or device time, ms (recorded; never trusted for ordering).
    pub time_ms: i64,
    /// What the change is ("create", "save", "comment", …).
    pub message: String,
}

/// One change in an entity's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeInfo {
    /// Content hash (hex).
    pub hash: String,
    /// Actor (hex).
    pub actor: String,
    /// Time recorded by the writer, ms.
    pub time_ms: i64,
    /// Message.
    pub message: String,
    /// Dependencies (hex).
    pub deps: Vec<String>,
    /// The encoded change.
    pub bytes: Vec<u8>,
}

/// An entity's Automerge document.
#[derive(Debug, Clone)]
pub struct EntityDoc {
    doc: AutoCommit,
}

impl EntityDoc {
    /// Creates the document of a new entity, in one change.
    pub fn create(content: &NewContent, meta: &CommitMeta) -> Result<Self, DocError> {
        let mut doc = AutoCommit::new_with_encoding(TextEncoding::UnicodeCodePoint);
        doc.set_actor(meta.actor.clone());
        doc.put(ROOT, "schema", SCHEMA_VERSION)?;
        doc.put(ROOT, "kind", content.kind.as_str())?;
        doc.put(ROOT, "id", content.id.to_string())?;
        doc.put(
            ROOT,
            "created_at",
            ScalarValue::Timestamp(content.created_at_ms),
        )?;
        doc.put(ROOT, "created_by", content.created_by)?;
        match content.template {
            Some(t) => doc.put(ROOT, "template", t.to_string())?,
            None => doc.put(ROOT, "template", ScalarValue::Null)?,
        }
        doc.put(ROOT, "title", "")?;
        doc.put(ROOT, "date", content.default_date.as_str())?;
        doc.put(ROOT, "content_type", ContentType::Markdown.code())?;
        doc.put(ROOT, "status", ScalarValue::Null)?;
        doc.put(ROOT, "category", ScalarValue::Null)?;
        doc.put(ROOT, "rating", 0)?;
        doc.put_object(ROOT, "body", ObjType::Text)?;
        for map in [
            "tags",
            "steps",
            "links",
            "comments",
            "fields",
            "attachments",
        ] {
            doc.put_object(ROOT, map, ObjType::Map)?;
        }
        let mut entity = Self { doc };
        let mut patch = content.patch.clone();
        if patch.title.as_deref().is_none_or(|t| t.trim().is_empty()) {
            patch.title = Some("Untitled".into());
        }
        entity.write_patch(&patch)?;
        entity.commit(meta);
        Ok(entity)
    }

    /// Loads a saved document.
    pub fn load(bytes: &[u8]) -> Result<Self, DocError> {
        let doc = AutoCommit::load(bytes)?;
        Ok(Self { doc })
    }

    /// Saves the whole document compactly.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// The current heads.
    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// Applies `patch`. When `base` is given and differs from the current heads, the patch is
    /// written on a fork at `base` (what the editor saw) and merged, so edits made meanwhile by
    /// others are kept: other paragraphs merge, and a field both changed keeps both values as a
    /// conflict. `fork_actor` must be an actor never used on this document before.
    /// Returns the hash of the new change, or `None` when the patch changed nothing.
    pub fn apply(
        &mut self,
        base: Option<&[ChangeHash]>,
        patch: &EntityPatch,
        meta: &CommitMeta,
        fork_actor: impl FnOnce() -> ActorId,
    ) -> Result<Option<ChangeHash>, DocError> {
        let current = self.doc.get_heads();
        match base {
            Some(base) if !same_heads(base, &current) => {
                let missing = self.doc.get_missing_deps(base);
                if !missing.is_empty() {
                    return Err(invalid("base_heads", "unknown version; reload the page"));
                }
                let mut fork = Self {
                    doc: self.doc.fork_at(base)?,
                };
                fork.doc.set_actor(fork_actor());
                fork.write_patch(patch)?;
                let Some(hash) = fork.commit(meta) else {
                    return Ok(None);
                };
                self.doc.merge(&mut fork.doc)?;
                Ok(Some(hash))
            }
            _ => {
                self.doc.set_actor(meta.actor.clone());
                self.write_patch(patch)?;
                Ok(self.commit(meta))
            }
        }
    }

    fn commit(&mut self, meta: &CommitMeta) -> Option<ChangeHash> {
        // Automerge's change time is in seconds.
        let options = CommitOptions::default()
            .with_message(meta.message.clone())
            .with_time(meta.time_ms.div_euclid(1000));
        self.doc.commit_with(options)
    }

    fn write_patch(&mut self, patch: &EntityPatch) -> Result<(), DocError> {
        let doc = &mut self.doc;
        if let Some(title) = &patch.title {
            let title = title.trim();
            if title.chars().count() > MAX_TITLE_CHARS {
                return Err(invalid(
                    "title",
                    format!("at most {MAX_TITLE_CHARS} characters"),
                ));
            }
            let title = if title.is_empty() { "Untitled" } else { title };
            if read_str(doc, &ROOT, "title").as_deref() != Some(title) {
                doc.put(ROOT, "title", title)?;
            }
        }
        if let Some(date) = &patch.date {
            if !crate::clock::is_valid_date(date) {
                return Err(invalid("date", "expected a date as YYYY-MM-DD"));
            }
            if read_str(doc, &ROOT, "date").as_deref() != Some(date.as_str()) {
                doc.put(ROOT, "date", date.as_str())?;
            }
        }
        if let Some(content_type) = patch.content_type
            && read_i64(doc, &ROOT, "content_type") != Some(content_type.code())
        {
            doc.put(ROOT, "content_type", content_type.code())?;
        }
        for (key, value) in [("status", patch.status), ("category", patch.category)] {
            if let Some(value) = value
                && read_i64(doc, &ROOT, key) != value
            {
                match value {
                    Some(v) => doc.put(ROOT, key, v)?,
                    None => doc.put(ROOT, key, ScalarValue::Null)?,
                }
            }
        }
        if let Some(rating) = patch.rating {
            if !(0..=5).contains(&rating) {
                return Err(invalid("rating", "expected a whole number from 0 to 5"));
            }
            if read_i64(doc, &ROOT, "rating") != Some(rating) {
                doc.put(ROOT, "rating", rating)?;
            }
        }
        if let Some(body) = &patch.body {
            if body.chars().count() > MAX_BODY_CHARS {
                return Err(invalid(
                    "body",
                    format!("at most {MAX_BODY_CHARS} characters; attach large data as a file"),
                ));
            }
            let body_obj = map_obj(doc, "body")?;
            let old = doc.text(&body_obj)?;
            let encoding = doc.text_encoding();
            for splice in line_splices(&old, body) {
                let prefix: String = old.chars().take(splice.start).collect();
                let deleted: String = old.chars().skip(splice.start).take(splice.delete).collect();
                let start = encoded_len(&prefix, encoding);
                let delete = isize::try_from(encoded_len(&deleted, encoding))
                    .map_err(|_| invalid("body", "too long"))?;
                doc.splice_text(&body_obj, start, delete, &splice.insert)?;
            }
        }
        if let Some(tags) = &patch.tags {
            let wanted: BTreeSet<String> = tags
                .iter()
                .map(|t| clean_tag(t))
                .collect::<Result<_, _>>()?;
            let tags_obj = map_obj(doc, "tags")?;
            let present: BTreeSet<String> = doc.keys(&tags_obj).collect();
            for gone in present.difference(&wanted) {
                doc.delete(&tags_obj, gone.as_str())?;
            }
            for new in wanted.difference(&present) {
                doc.put(&tags_obj, new.as_str(), true)?;
            }
        }
        for op in &patch.ops {
            self.write_op(op)?;
        }
        Ok(())
    }

    fn write_op(&mut self, op: &EntityOp) -> Result<(), DocError> {
        let doc = &mut self.doc;
        match op {
            EntityOp::AddTag(tag) => {
                let tag = clean_tag(tag)?;
                let tags = map_obj(doc, "tags")?;
                if doc.get(&tags, tag.as_str())?.is_none() {
                    doc.put(&tags, tag.as_str(), true)?;
                }
            }
            EntityOp::RemoveTag(tag) => {
                let tags = map_obj(doc, "tags")?;
                if doc.get(&tags, tag.as_str())?.is_none() {
                    return Err(DocError::NotFound("tag"));
                }
                doc.delete(&tags, tag.as_str())?;
            }
            EntityOp::AddStep { id, body, at_ms } => {
                let body = clean_note("body", body)?;
                let steps = map_obj(doc, "steps")?;
                let step = doc.put_object(&steps, id.as_str(), ObjType::Map)?;
                doc.put(&step, "body", body.as_str())?;
                // Sort key: creation time, then id; readable and stable across replicas.
                doc.put(&step, "pos", format!("{at_ms:015}-{id}"))?;
                doc.put(&step, "done", false)?;
                doc.put(&step, "done_by", ScalarValue::Null)?;
                doc.put(&step, "done_at", ScalarValue::Null)?;
                doc.put(&step, "created_at", ScalarValue::Timestamp(*at_ms))?;
            }
            EntityOp::EditStep { id, body } => {
                let body = clean_note("body", body)?;
                let step = child_obj(doc, "steps", id, "step")?;
                doc.put(&step, "body", body.as_str())?;
            }
            EntityOp::FinishStep {
                id,
                done,
                by,
                at_ms,
            } => {
                let step = child_obj(doc, "steps", id, "step")?;
                doc.put(&step, "done", *done)?;
                if *done {
                    doc.put(&step, "done_by", *by)?;
                    doc.put(&step, "done_at", ScalarValue::Timestamp(*at_ms))?;
                } else {
                    doc.put(&step, "done_by", ScalarValue::Null)?;
                    doc.put(&step, "done_at", ScalarValue::Null)?;
                }
            }
            EntityOp::DeleteStep { id } => {
                let steps = map_obj(doc, "steps")?;
                child_obj(doc, "steps", id, "step")?;
                doc.delete(&steps, id.as_str())?;
            }
            EntityOp::AddComment {
                id,
                author,
                body,
                at_ms,
            } => {
                let body = clean_note("comment", body)?;
                if body.is_empty() {
                    return Err(invalid("comment", "write something first"));
                }
                let comments = map_obj(doc, "comments")?;
                let comment = doc.put_object(&comments, id.as_str(), ObjType::Map)?;
                doc.put(&comment, "author", *author)?;
                doc.put(&comment, "created_at", ScalarValue::Timestamp(*at_ms))?;
                doc.put(&comment, "edited_at", ScalarValue::Null)?;
                doc.put(&comment, "body", body.as_str())?;
            }
            EntityOp::EditComment { id, body, at_ms } => {
                let body = clean_note("comment", body)?;
                let comment = child_obj(doc, "comments", id, "comment")?;
                doc.put(&comment, "body", body.as_str())?;
                doc.put(&comment, "edited_at", ScalarValue::Timestamp(*at_ms))?;
            }
            EntityOp::DeleteComment { id } => {
                let comments = map_obj(doc, "comments")?;
                child_obj(doc, "comments", id, "comment")?;
                doc.delete(&comments, id.as_str())?;
            }
            EntityOp::AddLink { target, at_ms } => {
                let own = read_str(doc, &ROOT, "id");
                if own.as_deref() == Some(target.to_string().as_str()) {
                    return Err(invalid("link", "an entry cannot link to itself"));
                }
                let links = map_obj(doc, "links")?;
                let key = target.to_string();
                if doc.get(&links, key.as_str())?.is_none() {
                    let link = doc.put_object(&links, key.as_str(), ObjType::Map)?;
                    doc.put(&link, "created_at", ScalarValue::Timestamp(*at_ms))?;
                }
            }
            EntityOp::RemoveLink { target } => {
                let links = map_obj(doc, "links")?;
                let key = target.to_string();
                if doc.get(&links, key.as_str())?.is_none() {
                    return Err(DocError::NotFound("link"));
                }
                doc.delete(&links, key.as_str())?;
            }
            EntityOp::AddAttachment {
                sha256,
                name,
                media_type,
                size,
                at_ms,
                by,
                comment,
                replaces,
            } => {
                check_sha256("sha256", sha256)?;
                if let Some(old) = replaces {
                    check_sha256("replaces", old)?;
                }
                let attachments = map_obj(doc, "attachments")?;
                let entry = match doc.get(&attachments, sha256.as_str())? {
                    Some((Value::Object(ObjType::Map), obj)) => obj,
                    _ => doc.put_object(&attachments, sha256.as_str(), ObjType::Map)?,
                };
                doc.put(&entry, "name", name.as_str())?;
                doc.put(&entry, "mime", media_type.as_str())?;
                doc.put(&entry, "size", *size)?;
                doc.put(&entry, "added_by", *by)?;
                doc.put(&entry, "added_at", ScalarValue::Timestamp(*at_ms))?;
                doc.put(&entry, "comment", comment.as_str())?;
                doc.put(&entry, "state", ATTACHMENT_NORMAL)?;
                match replaces {
                    Some(old) if old != sha256 => doc.put(&entry, "replaces", old.as_str())?,
                    _ => doc.put(&entry, "replaces", ScalarValue::Null)?,
                }
            }
            EntityOp::UpdateAttachment {
                sha256,
                name,
                comment,
                state,
            } => {
                check_sha256("sha256", sha256)?;
                let entry = child_obj(doc, "attachments", sha256, "attachment")?;
                if let Some(state) = state
                    && !(ATTACHMENT_NORMAL..=ATTACHMENT_DELETED).contains(state)
                {
                    return Err(invalid(
                        "state",
                        "expected 1 (normal), 2 (archived) or 3 (deleted)",
                    ));
                }
                // Only keys whose value changes are written, so an unchanged key never shadows
                // a concurrent edit of it made elsewhere.
                if let Some(name) = name
                    && read_str(doc, &entry, "name").as_deref() != Some(name.as_str())
                {
                    doc.put(&entry, "name", name.as_str())?;
                }
                if let Some(comment) = comment
                    && read_str(doc, &entry, "comment").as_deref() != Some(comment.as_str())
                {
                    doc.put(&entry, "comment", comment.as_str())?;
                }
                if let Some(state) = state
                    && read_i64(doc, &entry, "state") != Some(*state)
                {
                    doc.put(&entry, "state", *state)?;
                }
            }
            EntityOp::SetMetadata { metadata, require } => {
                write_metadata(doc, metadata, *require)?;
            }
            EntityOp::SetFieldValue { name, value } => {
                set_field_value(doc, name, value)?;
            }
            EntityOp::PutField(field) => {
                let field = field.clone().checked()?;
                let fields = map_obj(doc, "fields")?;
                write_field(doc, &fields, &field)?;
            }
            EntityOp::SetStock {
                unit,
                threshold_milli,
            } => {
                stock::set_stock(doc, unit.as_deref(), *threshold_milli)?;
            }
            EntityOp::RecordStock(event) => {
                stock::record_stock(doc, event)?;
            }
            EntityOp::RemoveField { name } => {
                let fields = map_obj(doc, "fields")?;
                if doc.get(&fields, name.as_str())?.is_none() {
                    return Err(DocError::NotFound("field"));
                }
                doc.delete(&fields, name.as_str())?;
            }
            EntityOp::ResolveConflict { field, value } => {
                let key = field.key();
                let key = key.as_ref();
                match field {
                    ConflictField::Title | ConflictField::Date => {
                        doc.put(ROOT, key, value.as_str())?
                    }
                    ConflictField::Status | ConflictField::Category | ConflictField::Rating => {
                        match value.trim() {
                            "" => doc.put(ROOT, key, ScalarValue::Null)?,
                            v => {
                                let n: i64 = v
                                    .parse()
                                    .map_err(|_| invalid("value", "expected a number"))?;
                                doc.put(ROOT, key, n)?;
                            }
                        }
                    }
                    ConflictField::Field(name) => resolve_field_conflict(doc, name, value)?,
                }
            }
        }
        Ok(())
    }

    /// Reads the current content.
    pub fn content(&self) -> Result<EntityContent, DocError> {
        read_content(&self.doc)
    }

    /// Reads the content as it was at `heads`.
    pub fn content_at(&mut self, heads: &[ChangeHash]) -> Result<EntityContent, DocError> {
        if !self.doc.get_missing_deps(heads).is_empty() {
            return Err(DocError::NotFound("version"));
        }
        let fork = self.doc.fork_at(heads)?;
        read_content(&fork)
    }

    /// Changes made after `heads` (all changes when `heads` is empty), in causal order.
    pub fn changes_since(&mut self, heads: &[ChangeHash]) -> Vec<ChangeInfo> {
        self.doc
            .get_changes(heads)
            .into_iter()
            .map(|mut change| ChangeInfo {
                hash: change.hash().to_string(),
                actor: change.actor_id().to_hex_string(),
                time_ms: change.timestamp().saturating_mul(1000),
                message: change.message().map(str::to_owned).unwrap_or_default(),
                deps: change.deps().iter().map(ToString::to_string).collect(),
                bytes: change.bytes().into_owned(),
            })
            .collect()
    }

    /// Adds changes received from elsewhere (a replica, or a backup).
    pub fn load_changes(&mut self, bytes: &[u8]) -> Result<(), DocError> {
        self.doc.load_incremental(bytes)?;
        Ok(())
    }

    /// The attachments referenced by the document, by hash.
    pub fn attachments(&self) -> Result<Vec<Attachment>, DocError> {
        read_attachments(&self.doc)
    }

    /// Direct access for the sync engine and tests.
    pub fn automerge(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }
}

/// Whether two sets of heads are the same set.
pub fn same_heads(a: &[ChangeHash], b: &[ChangeHash]) -> bool {
    let a: BTreeSet<_> = a.iter().collect();
    let b: BTreeSet<_> = b.iter().collect();
    a == b
}

/// Heads as the comma-separated hex list used in forms, URLs and SQL.
pub fn heads_to_string(heads: &[ChangeHash]) -> String {
    let mut hex: Vec<String> = heads.iter().map(ToString::to_string).collect();
    hex.sort();
    hex.join(",")
}

/// Parses [`heads_to_string`]'s format.
pub fn heads_from_string(s: &str) -> Result<Vec<ChangeHash>, DocError> {
    s.split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| {
            h.parse::<ChangeHash>()
                .map_err(|_| invalid("heads", "not a version hash"))
        })
        .collect()
}

fn encoded_len(s: &str, encoding: TextEncoding) -> usize {
    match encoding {
        TextEncoding::Utf8CodeUnit => s.len(),
        TextEncoding::Utf16CodeUnit => s.encode_utf16().count(),
        TextEncoding::UnicodeCodePoint | TextEncoding::GraphemeCluster => s.chars().count(),
    }
}

/// A tag as documents store it: trimmed, not empty, at most [`MAX_TAG_CHARS`], no `|`.
pub fn clean_tag(tag: &str) -> Result<String, DocError> {
    let tag = tag.trim();
    if tag.is_empty() {
        return Err(invalid("tags", "a tag cannot be empty"));
    }
    if tag.chars().count() > MAX_TAG_CHARS {
        return Err(invalid(
            "tags",
            format!("a tag has at most {MAX_TAG_CHARS} characters"),
        ));
    }
    if tag.contains('|') {
        return Err(invalid("tags", "a tag cannot contain '|'"));
    }
    Ok(tag.to_owned())
}

fn clean_note(field: &'static str, text: &str) -> Result<String, DocError> {
    let text = text.trim();
    if text.chars().count() > MAX_NOTE_CHARS {
        return Err(invalid(
            field,
            format!("at most {MAX_NOTE_CHARS} characters"),
        ));
    }
    Ok(text.to_owned())
}

fn map_obj<D: ReadDoc>(doc: &D, key: &'static str) -> Result<ObjId, DocError> {
    match doc.get(ROOT, key)? {
        Some((Value::Object(_), id)) => Ok(id),
        _ => Err(DocError::Damaged(format!("missing {key}"))),
    }
}

fn child_obj<D: ReadDoc>(
    doc: &D,
    parent: &'static str,
    id: &str,
    what: &'static str,
) -> Result<ObjId, DocError> {
    let parent = map_obj(doc, parent)?;
    match doc.get(&parent, id)? {
        Some((Value::Object(ObjType::Map), obj)) => Ok(obj),
        _ => Err(DocError::NotFound(what)),
    }
}

fn read_scalar<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> Option<ScalarValue> {
    match doc.get(obj, key).ok()? {
        Some((Value::Scalar(v), _)) => Some(v.into_owned()),
        _ => None,
    }
}

fn read_str<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> Option<String> {
    match read_scalar(doc, obj, key)? {
        ScalarValue::Str(s) => Some(s.to_string()),
        _ => None,
    }
}

fn read_i64<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> Option<i64> {
    match read_scalar(doc, obj, key)? {
        ScalarValue::Int(i) | ScalarValue::Timestamp(i) => Some(i),
        ScalarValue::Uint(u) => i64::try_from(u).ok(),
        _ => None,
    }
}

fn read_bool<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> bool {
    matches!(read_scalar(doc, obj, key), Some(ScalarValue::Boolean(true)))
}

fn scalar_text(value: &ScalarValue) -> String {
    match value {
        ScalarValue::Str(s) => s.to_string(),
        ScalarValue::Int(i) | ScalarValue::Timestamp(i) => i.to_string(),
        ScalarValue::Uint(u) => u.to_string(),
        ScalarValue::F64(f) => f.to_string(),
        ScalarValue::Boolean(b) => b.to_string(),
        _ => String::new(),
    }
}

/// State of a live attachment (`attachments[sha256].state`).
pub const ATTACHMENT_NORMAL: i64 = 1;
/// State of a deleted attachment (kept, never listed).
pub const ATTACHMENT_DELETED: i64 = 3;

/// One attachment as the document records it. `comment`, `state` and `replaces` are `None` in
/// entries written before those keys existed: the reader then keeps what it had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Attachment {
    /// SHA-256 of the content, hex: the blob's name.
    pub sha256: String,
    /// File name.
    pub name: String,
    /// Media type.
    pub mime: String,
    /// Bytes.
    pub size: i64,
    /// Who added it.
    pub added_by: i64,
    /// When, ms.
    pub added_at_ms: i64,
    /// Free comment.
    pub comment: Option<String>,
    /// 1 normal, 2 archived, 3 deleted.
    pub state: Option<i64>,
    /// SHA-256 of the version it replaces (`Some("")` is never produced).
    pub replaces: Option<String>,
}

fn check_sha256(field: &'static str, sha256: &str) -> Result<(), DocError> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(field, "expected a SHA-256 in hex"));
    }
    Ok(())
}

fn read_attachments<D: ReadDoc>(doc: &D) -> Result<Vec<Attachment>, DocError> {
    let attachments = map_obj(doc, "attachments")?;
    Ok(doc
        .keys(&attachments)
        .filter_map(|key| match doc.get(&attachments, key.as_str()).ok()?? {
            (Value::Object(ObjType::Map), obj) => Some(Attachment {
                name: read_str(doc, &obj, "name").unwrap_or_default(),
                mime: read_str(doc, &obj, "mime").unwrap_or_default(),
                size: read_i64(doc, &obj, "size").unwrap_or_default(),
                added_by: read_i64(doc, &obj, "added_by").unwrap_or_default(),
                added_at_ms: read_i64(doc, &obj, "added_at").unwrap_or_default(),
                comment: read_str(doc, &obj, "comment"),
                state: read_i64(doc, &obj, "state"),
                replaces: read_str(doc, &obj, "replaces"),
                sha256: key,
            }),
            _ => None,
        })
        .collect())
}

fn read_content<D: ReadDoc>(doc: &D) -> Result<EntityContent, DocError> {
    let damaged = |what: &str| DocError::Damaged(format!("missing or invalid {what}"));
    let id = read_str(doc, &ROOT, "id")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| damaged("id"))?;
    let kind = read_str(doc, &ROOT, "kind")
        .and_then(|s| EntityKind::parse(&s))
        .ok_or_else(|| damaged("kind"))?;
    let body_obj = map_obj(doc, "body")?;
    let tags_obj = map_obj(doc, "tags")?;
    let steps_obj = map_obj(doc, "steps")?;
    let links_obj = map_obj(doc, "links")?;
    let comments_obj = map_obj(doc, "comments")?;

    let mut steps: Vec<Step> = doc
        .keys(&steps_obj)
        .filter_map(|key| match doc.get(&steps_obj, key.as_str()).ok()?? {
            (Value::Object(ObjType::Map), obj) => Some(Step {
                body: read_str(doc, &obj, "body").unwrap_or_default(),
                pos: read_str(doc, &obj, "pos").unwrap_or_default(),
                done: read_bool(doc, &obj, "done"),
                done_by: read_i64(doc, &obj, "done_by"),
                done_at_ms: read_i64(doc, &obj, "done_at"),
                id: key,
            }),
            _ => None,
        })
        .collect();
    steps.sort_by(|a, b| a.pos.cmp(&b.pos).then_with(|| a.id.cmp(&b.id)));

    let mut comments: Vec<Comment> = doc
        .keys(&comments_obj)
        .filter_map(|key| match doc.get(&comments_obj, key.as_str()).ok()?? {
            (Value::Object(ObjType::Map), obj) => Some(Comment {
                author: read_i64(doc, &obj, "author").unwrap_or_default(),
                created_at_ms: read_i64(doc, &obj, "created_at").unwrap_or_default(),
                edited_at_ms: read_i64(doc, &obj, "edited_at"),
                body: read_str(doc, &obj, "body").unwrap_or_default(),
                id: key,
            }),
            _ => None,
        })
        .collect();
    comments.sort_by(|a, b| {
        a.created_at_ms
            .cmp(&b.created_at_ms)
            .then_with(|| a.id.cmp(&b.id))
    });

    let mut conflicts = Vec::new();
    for field in ConflictField::ALL {
        let all = doc.get_all(ROOT, &*field.key())?;
        if all.len() > 1 {
            let mut values: Vec<String> = all
                .iter()
                .map(|(v, _)| match v {
                    Value::Scalar(s) => scalar_text(s),
                    Value::Object(_) => String::new(),
                })
                .collect();
            values.sort();
            values.dedup();
            if values.len() > 1 {
                conflicts.push(Conflict { field, values });
            }
        }
    }
    conflicts.extend(field_conflicts(doc));

    Ok(EntityContent {
        id,
        kind,
        created_by: read_i64(doc, &ROOT, "created_by").unwrap_or_default(),
        created_at_ms: read_i64(doc, &ROOT, "created_at").unwrap_or_default(),
        template: read_str(doc, &ROOT, "template").and_then(|s| s.parse().ok()),
        title: read_str(doc, &ROOT, "title").unwrap_or_default(),
        date: read_str(doc, &ROOT, "date").unwrap_or_default(),
        body: doc.text(&body_obj)?,
        content_type: read_i64(doc, &ROOT, "content_type").unwrap_or(ContentType::Markdown.code()),
        status: read_i64(doc, &ROOT, "status"),
        category: read_i64(doc, &ROOT, "category"),
        rating: read_i64(doc, &ROOT, "rating").unwrap_or_default(),
        tags: doc.keys(&tags_obj).collect(),
        steps,
        links: doc
            .keys(&links_obj)
            .filter_map(|k| k.parse().ok())
            .collect(),
        comments,
        conflicts,
        metadata: read_metadata(doc),
        stock: stock::read_stock(doc)?,
    })
}

mod metadata;
mod stock;
use metadata::{
    field_conflicts, read_metadata, resolve_field_conflict, set_field_value, write_field,
    write_metadata,
};

#[cfg(test)]
mod tests;
