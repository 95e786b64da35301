//! Importing an `.eln` archive: every Dataset of the root's `hasPart` becomes an experiment or
//! resource of the importer, created through the same path as the UI and API (document,
//! projection, change log), all of them in ONE transaction: an import either creates every
//! entity or none.
//!
//! Memory does not grow with the number of entries beyond a small index. The archive's graph
//! is indexed, not held ([`cahier_eln::graph`]): each Dataset is parsed when its turn comes.
//! Each entry is then prepared (document, save, projection rows, rendered HTML) OUTSIDE the
//! SQLite write lock and appended to a temporary file ([`spill`]); only once every entry is
//! prepared does the import take the write lock, for one short transaction that reads the
//! prepared entries back one at a time and inserts them. Other writers of a live instance
//! wait for that insert phase only, never for the archive's reading, hashing or documents.
//! What stays in memory per entry: its source `@id` and new UUID (links between entries of
//! the archive) and the report's line (title, kind, count of files).
//!
//! Attachment bytes are written to the blob store first (verified against the declared
//! SHA-256: a mismatch refuses that file and the report says so). If the transaction then
//! fails, those blobs are referenced by nothing and the orphan sweep removes them after its
//! grace period (`sweep.rs`), exactly like an interrupted upload.
//!
//! What the archive says that Cahier has no place for (authors, original dates, unknown
//! properties, unmatched status or category names, links to entities not in the archive) is
//! kept in the entity's metadata under `eln_import`, never dropped.

use crate::blobs::{BlobError, BlobStore, ContentSource};
use crate::catalog::{Family, Vocabulary};
use crate::entities::NewEntity;
use crate::{Result, Store, StoreError, invalid};
use cahier_core::document::{EntityOp, MAX_BODY_CHARS, MAX_NOTE_CHARS, MAX_TAG_CHARS};
use cahier_core::fields::{Field, Metadata};
use cahier_core::markdown::ContentType;
use cahier_core::{EntityId, EntityKind, EntityPatch, Subject};
use cahier_eln::model::ImportedDataset;
use cahier_eln::{Crate, ElnArchive, ElnError, Limits, PlainScratch, Scratch};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod spill;

/// Where and as what the archive's entries are created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// The team that will own the entries; the importer must belong to it.
    pub team_id: i64,
    /// Create every entry as this kind; `None` follows the archive (`genre`, Cahier's kind),
    /// experiments otherwise.
    pub kind: Option<EntityKind>,
    /// Put every entry in this category; `None` matches the archive's category by name.
    pub category_id: Option<i64>,
}

/// One entry the archive holds, as it will be created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedEntry {
    /// Title.
    pub title: String,
    /// Kind it will have.
    pub kind: EntityKind,
    /// Tags.
    pub tags: Vec<String>,
    /// Files to attach (before hash checks).
    pub n_files: usize,
    /// Steps.
    pub n_steps: usize,
    /// Comments.
    pub n_comments: usize,
    /// Category name in the archive.
    pub category: Option<String>,
    /// Original authors.
    pub authors: Vec<String>,
}

/// What an archive would create, before anything is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportPreview {
    /// The archive's top folder.
    pub root: String,
    /// Who published it, if said.
    pub publisher: Option<String>,
    /// Whether it carries a minisign signature of its metadata (not verified).
    pub is_signed: bool,
    /// The entries.
    pub entries: Vec<PlannedEntry>,
    /// Things that will not be imported as such, explained.
    pub notes: Vec<String>,
}

/// One created entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportedEntity {
    /// Integer id.
    pub id: i64,
    /// Kind.
    pub kind: EntityKind,
    /// Title.
    pub title: String,
    /// Files attached.
    pub n_files: usize,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Created entities, in archive order.
    pub created: Vec<ImportedEntity>,
    /// Files refused (hash mismatch, too large), with why.
    pub refused_files: Vec<String>,
    /// Everything else worth knowing (missing or remote files, unresolved links …).
    pub notes: Vec<String>,
}

/// SHA-256 hex check.
fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A media type as declared, when it looks like one.
fn media_type(declared: Option<&str>) -> String {
    match declared.map(str::trim) {
        Some(t)
            if t.len() <= 100
                && t.split_once('/').is_some_and(|(a, b)| {
                    !a.is_empty()
                        && !b.is_empty()
                        && t.bytes().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, b'/' | b'.' | b'+' | b'-')
                        })
                }) =>
        {
            t.to_ascii_lowercase()
        }
        _ => "application/octet-stream".to_owned(),
    }
}

/// Milliseconds of an RFC 3339 date (or one without time zone, read as UTC).
fn parse_ms(value: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let value = value.trim();
    if let Ok(t) = time::OffsetDateTime::parse(value, &Rfc3339) {
        return i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok();
    }
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    let t = time::PrimitiveDateTime::parse(value, &format).ok()?;
    i64::try_from(t.assume_utc().unix_timestamp_nanos() / 1_000_000).ok()
}

fn kind_of(dataset: &ImportedDataset, options: &ImportOptions) -> EntityKind {
    if let Some(kind) = options.kind {
        return kind;
    }
    if let Some(kind) = dataset.cahier.kind.as_deref().and_then(EntityKind::parse) {
        return kind;
    }
    match dataset
        .genre
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("resource" | "item" | "items" | "sample") => EntityKind::Resource,
        _ => EntityKind::Experiment,
    }
}

fn refused_message(error: ElnError) -> StoreError {
    match error {
        ElnError::Io(error) => StoreError::Conflict(format!("reading the archive failed: {error}")),
        other => invalid("file", other.to_string()),
    }
}

/// An `io::Write` that hands each chunk to the async side (the blob writer).
struct ChannelWriter(tokio::sync::mpsc::Sender<Vec<u8>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(buf.to_vec())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "import stopped"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

type Archive = ElnArchive<ContentSource<std::fs::File>>;

/// Opens the archive at `path` off the async threads: a user's file as it is, or, with
/// `received`, an archive written through that store's [`BlobStore::content_sink`] (sealed on
/// a field replica). The copy of its metadata that the graph index points into is a file of
/// `scratch`.
async fn open_archive(
    path: &Path,
    limits: Limits,
    scratch: Arc<dyn Scratch>,
    received: Option<BlobStore>,
) -> Result<Archive> {
    let path: PathBuf = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        let source = match &received {
            Some(blobs) => blobs.content_source(file)?,
            None => ContentSource::Plain(file),
        };
        ElnArchive::open_with(source, limits, &*scratch)
    })
    .await
    .map_err(|_| StoreError::Conflict("reading the archive was interrupted".into()))?
    .map_err(refused_message)
}

/// The outcome of copying one file into the blob store.
enum Copied {
    Stored { sha256: String, size: u64 },
    Refused(String),
}

/// Copies `entry` of the archive into the blob store, checking `expected` when given. Returns
/// the archive back (it lives on a blocking thread while it is read).
async fn copy_to_blob(
    blobs: &BlobStore,
    mut archive: Archive,
    entry: String,
    expected: Option<String>,
    label: &str,
) -> Result<(Archive, Copied)> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let reading = tokio::task::spawn_blocking(move || {
        let mut sink = ChannelWriter(sender);
        let result = archive.copy(&entry, &mut sink);
        (archive, result)
    });
    let mut writer = blobs.writer().await.map_err(blob_error)?;
    let mut failure: Option<BlobError> = None;
    while let Some(chunk) = receiver.recv().await {
        if let Err(error) = writer.write(&chunk).await {
            failure = Some(error);
            break;
        }
    }
    drop(receiver);
    let (archive, read) = reading
        .await
        .map_err(|_| StoreError::Conflict("reading the archive was interrupted".into()))?;
    if let Some(error) = failure {
        return match error {
            BlobError::TooLarge { limit } => Ok((
                archive,
                Copied::Refused(format!(
                    "{label}: larger than the {limit} bytes a file may have here; file refused"
                )),
            )),
            other => Err(blob_error(other)),
        };
    }
    match read {
        Ok(_) => {}
        Err(ElnError::Refused(message)) => {
            return Ok((archive, Copied::Refused(format!("{message}; file refused"))));
        }
        Err(other) => return Err(refused_message(other)),
    }
    let finished = match &expected {
        Some(hash) => writer.finish_expecting(hash).await,
        None => writer.finish().await,
    };
    match finished {
        Ok((sha256, size)) => Ok((archive, Copied::Stored { sha256, size })),
        Err(BlobError::HashMismatch { .. }) => Ok((
            archive,
            Copied::Refused(format!(
                "{label}: its content does not match the SHA-256 the archive declares; file refused"
            )),
        )),
        Err(other) => Err(blob_error(other)),
    }
}

fn blob_error(error: BlobError) -> StoreError {
    StoreError::Conflict(format!("storing an attachment failed: {error}"))
}

impl Store {
    fn import_limits(&self) -> Limits {
        let mut limits = Limits::default();
        if let Some(blobs) = &self.blobs {
            limits.max_entry_bytes = limits.max_entry_bytes.min(blobs.max_bytes());
        }
        limits
    }

    /// What importing the archive at `path` (a user's file) would create; writes nothing.
    pub async fn preview_eln(
        &self,
        subject: &Subject,
        path: &Path,
        options: &ImportOptions,
    ) -> Result<ImportPreview> {
        self.preview_eln_at(subject, path, false, options).await
    }

    /// [`Store::preview_eln`] of an archive received over HTTP and written through the blob
    /// store's [`BlobStore::content_sink`] (sealed on a field replica).
    pub async fn preview_received_eln(
        &self,
        subject: &Subject,
        path: &Path,
        options: &ImportOptions,
    ) -> Result<ImportPreview> {
        self.preview_eln_at(subject, path, true, options).await
    }

    async fn preview_eln_at(
        &self,
        subject: &Subject,
        path: &Path,
        received: bool,
        options: &ImportOptions,
    ) -> Result<ImportPreview> {
        self.check_import_options(subject, options).await?;
        let archive = open_archive(
            path,
            self.import_limits(),
            self.eln_scratch(),
            self.received_from(received)?,
        )
        .await?;
        let krate = archive.krate();
        let mut notes = dangling_notes(krate);
        let mut entries = Vec::new();
        for id in krate.dataset_ids() {
            let Some(d) = krate.dataset(id).map_err(refused_message)? else {
                continue;
            };
            notes.extend(nested_notes(&d));
            for file in &d.files {
                if archive.resolve(&file.id).is_none() {
                    notes.push(missing_note(&d.title, &file.id));
                }
            }
            entries.push(PlannedEntry {
                title: truncate(&d.title, cahier_core::document::MAX_TITLE_CHARS),
                kind: kind_of(&d, options),
                tags: d.keywords.clone(),
                n_files: d.files.len(),
                n_steps: d.steps.len(),
                n_comments: d.comments.len(),
                category: d.category.clone(),
                authors: d.authors.iter().map(|a| a.name.clone()).collect(),
            });
        }
        Ok(ImportPreview {
            root: archive.root().to_owned(),
            publisher: krate.publisher.clone(),
            is_signed: archive.is_signed(),
            entries,
            notes,
        })
    }

    /// Where the `.eln` reader, writer and an import keep their scratch files: the blob
    /// store's (its `tmp/` folder on the data disk, sealed on a field replica), else anonymous
    /// files of the system's temporary folder.
    pub(crate) fn eln_scratch(&self) -> Arc<dyn Scratch> {
        match &self.blobs {
            Some(blobs) => Arc::new(blobs.scratch()),
            None => Arc::new(PlainScratch::system()),
        }
    }

    /// The store a received archive was written through, when `received`.
    fn received_from(&self, received: bool) -> Result<Option<BlobStore>> {
        Ok(if received {
            Some(self.blob_store()?.clone())
        } else {
            None
        })
    }

    async fn check_import_options(&self, subject: &Subject, options: &ImportOptions) -> Result<()> {
        if !subject.is_member(options.team_id) {
            return Err(invalid(
                "team",
                "you can only import into a team you belong to",
            ));
        }
        if let Some(category) = options.category_id {
            let term = self.term(Vocabulary::Category, category).await?;
            if term.team_id != options.team_id {
                return Err(invalid("category", "not a category of the chosen team"));
            }
        }
        Ok(())
    }

    /// Imports the archive at `path` (a user's file) for `subject`: every entry or none (see
    /// the module doc).
    pub async fn import_eln(
        &self,
        subject: &Subject,
        path: &Path,
        options: &ImportOptions,
    ) -> Result<ImportReport> {
        self.import_eln_at(subject, path, false, options).await
    }

    /// [`Store::import_eln`] of an archive received over HTTP and written through the blob
    /// store's [`BlobStore::content_sink`] (sealed on a field replica).
    pub async fn import_received_eln(
        &self,
        subject: &Subject,
        path: &Path,
        options: &ImportOptions,
    ) -> Result<ImportReport> {
        self.import_eln_at(subject, path, true, options).await
    }

    async fn import_eln_at(
        &self,
        subject: &Subject,
        path: &Path,
        received: bool,
        options: &ImportOptions,
    ) -> Result<ImportReport> {
        self.check_import_options(subject, options).await?;
        let blobs = self.blob_store()?.clone();
        let scratch = self.eln_scratch();
        let mut archive = open_archive(
            path,
            self.import_limits(),
            scratch.clone(),
            self.received_from(received)?,
        )
        .await?;
        let ids: HashMap<String, EntityId> = archive
            .krate()
            .dataset_ids()
            .map(|id| (id.to_owned(), self.new_entity_id()))
            .collect();
        if ids.is_empty() {
            return Err(invalid(
                "file",
                "the archive lists no Dataset in its root hasPart: nothing to import",
            ));
        }
        let importer = self.user(subject.user_id).await?;
        let publisher = archive.krate().publisher.clone();
        let mut notes = dangling_notes(archive.krate());
        let mut refused_files = Vec::new();
        let now = self.now_ms();
        // Prepared entries go to disk; memory keeps their report lines only.
        let mut spill = spill::SpillWriter::create(&*scratch)?;
        let mut lines: Vec<(String, usize)> = Vec::new();
        let n_parts = archive.krate().root_parts.len();
        for part in 0..n_parts {
            let Some(dataset) = archive
                .krate()
                .root_parts
                .get(part)
                .map(|id| archive.krate().dataset(id))
                .transpose()
                .map_err(refused_message)?
                .flatten()
            else {
                continue;
            };
            let dataset = &dataset;
            notes.extend(nested_notes(dataset));
            let kind = kind_of(dataset, options);
            let family = Family::of(kind);
            let mut provenance = Map::new();
            provenance.insert("source_id".into(), json!(dataset.id));
            if let Some(publisher) = &publisher {
                provenance.insert("publisher".into(), json!(publisher));
            }
            if !dataset.authors.is_empty() {
                provenance.insert("authors".into(), json!(dataset.authors));
            }
            for (key, value) in [
                ("dateCreated", &dataset.date_created),
                ("dateModified", &dataset.date_modified),
                ("genre", &dataset.genre),
            ] {
                if let Some(value) = value {
                    provenance.insert(key.into(), json!(value));
                }
            }
            if let Some(uuid) = &dataset.cahier.uuid {
                provenance.insert("cahier_uuid".into(), json!(uuid));
            }
            if let Some(heads) = &dataset.cahier.heads {
                provenance.insert("cahier_heads".into(), json!(heads));
            }
            let category = match options.category_id {
                Some(id) => Some(Some(id)),
                None => {
                    let terms = self
                        .terms(Vocabulary::Category, options.team_id, family)
                        .await?;
                    let matched = dataset.category.as_ref().and_then(|name| {
                        terms
                            .iter()
                            .find(|t| t.title.eq_ignore_ascii_case(name.trim()))
                    });
                    if let (None, Some(name)) = (matched, &dataset.category) {
                        provenance.insert("category".into(), json!(name));
                    }
                    match matched {
                        Some(term) => Some(Some(term.id)),
                        // A resource needs a category: the default one, else the first.
                        None if kind == EntityKind::Resource => {
                            let fallback = terms
                                .iter()
                                .find(|t| t.is_default)
                                .or_else(|| terms.first());
                            match fallback {
                                Some(term) => Some(Some(term.id)),
                                None => {
                                    return Err(invalid(
                                        "category",
                                        "the team has no resource category to put imported resources in; a team admin creates one first",
                                    ));
                                }
                            }
                        }
                        None => None,
                    }
                }
            };
            let status = match &dataset.status {
                Some(name) => {
                    let terms = self
                        .terms(Vocabulary::Status, options.team_id, family)
                        .await?;
                    match terms
                        .iter()
                        .find(|t| t.title.eq_ignore_ascii_case(name.trim()))
                    {
                        Some(term) => Some(Some(term.id)),
                        None => {
                            provenance.insert("status".into(), json!(name));
                            None
                        }
                    }
                }
                None => None,
            };
            let mut ops = Vec::new();
            for step in &dataset.steps {
                let id = crate::random_hex(8);
                ops.push(EntityOp::AddStep {
                    id: id.clone(),
                    body: truncate(&step.body, MAX_NOTE_CHARS),
                    at_ms: now,
                });
                if step.done {
                    ops.push(EntityOp::FinishStep {
                        id,
                        done: true,
                        by: subject.user_id,
                        at_ms: step.done_at.as_deref().and_then(parse_ms).unwrap_or(now),
                    });
                }
            }
            for comment in &dataset.comments {
                let body = match &comment.author {
                    Some(author)
                        if author
                            .email
                            .as_deref()
                            .is_none_or(|e| !e.eq_ignore_ascii_case(&importer.email)) =>
                    {
                        format!("[{}] {}", author.name, comment.body)
                    }
                    _ => comment.body.clone(),
                };
                ops.push(EntityOp::AddComment {
                    id: crate::random_hex(8),
                    author: subject.user_id,
                    body: truncate(&body, MAX_NOTE_CHARS),
                    at_ms: comment.date.as_deref().and_then(parse_ms).unwrap_or(now),
                });
            }
            let mut unresolved = Vec::new();
            for mention in &dataset.mentions {
                if let Some(target) = ids.get(mention) {
                    ops.push(EntityOp::AddLink {
                        target: *target,
                        at_ms: now,
                    });
                } else if let Some(uuid) = mention.strip_prefix("urn:uuid:")
                    && let Ok(row) = self.entity_by_uuid(subject, uuid).await
                    && let Ok(target) = row.uuid.parse::<EntityId>()
                {
                    ops.push(EntityOp::AddLink { target, at_ms: now });
                } else {
                    unresolved.push(mention.clone());
                }
            }
            if !unresolved.is_empty() {
                notes.push(format!(
                    "{}: {} link(s) to entries not in the archive were kept as text in its metadata",
                    dataset.title,
                    unresolved.len()
                ));
                provenance.insert("unresolved_links".into(), json!(unresolved));
            }
            let mut metadata = self
                .imported_metadata(subject, dataset, &mut provenance, &mut notes)
                .await;
            if !dataset.extra.is_empty() {
                provenance.insert("properties".into(), Value::Object(dataset.extra.clone()));
            }
            if !dataset.nested.is_empty() {
                provenance.insert("nested_datasets".into(), json!(dataset.nested));
            }
            metadata
                .extra
                .insert("eln_import".into(), Value::Object(provenance));
            ops.push(EntityOp::SetMetadata {
                metadata,
                require: false,
            });
            let mut n_files = 0;
            for file in &dataset.files {
                let Some(entry) = archive.resolve(&file.id) else {
                    notes.push(missing_note(&dataset.title, &file.id));
                    continue;
                };
                let expected = file.sha256.clone().filter(|h| is_sha256(h));
                if file.sha256.is_some() && expected.is_none() {
                    notes.push(format!(
                        "{}: {}: the declared SHA-256 is not one; the file was stored without that check",
                        dataset.title, file.name
                    ));
                }
                let label = format!("{}: {}", dataset.title, file.name);
                let (back, copied) = copy_to_blob(&blobs, archive, entry, expected, &label).await?;
                archive = back;
                match copied {
                    Copied::Refused(message) => refused_files.push(message),
                    Copied::Stored { sha256, size } => {
                        n_files += 1;
                        ops.push(EntityOp::AddAttachment {
                            sha256: sha256.clone(),
                            name: truncate(&file.name, crate::uploads::MAX_NAME_CHARS),
                            media_type: media_type(file.media_type.as_deref()),
                            size: i64::try_from(size).unwrap_or(i64::MAX),
                            at_ms: now,
                            by: subject.user_id,
                            comment: truncate(
                                file.description.as_deref().unwrap_or_default(),
                                crate::uploads::MAX_COMMENT_CHARS,
                            ),
                            replaces: None,
                        });
                        if let Some(state @ 2) = file.state {
                            ops.push(EntityOp::UpdateAttachment {
                                sha256,
                                name: None,
                                comment: None,
                                state: Some(state),
                            });
                        }
                    }
                }
            }
            let title = truncate(&dataset.title, cahier_core::document::MAX_TITLE_CHARS);
            let body = if dataset.body.chars().count() > MAX_BODY_CHARS {
                notes.push(format!(
                    "{title}: the text was longer than {MAX_BODY_CHARS} characters and was cut"
                ));
                truncate(&dataset.body, MAX_BODY_CHARS)
            } else {
                dataset.body.clone()
            };
            let mut tags: Vec<String> = Vec::new();
            for tag in &dataset.keywords {
                let tag = truncate(tag, MAX_TAG_CHARS);
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
            let patch = EntityPatch {
                title: Some(title.clone()),
                date: dataset
                    .date
                    .clone()
                    .filter(|d| cahier_core::clock::is_valid_date(d)),
                body: Some(body),
                content_type: Some(if dataset.body_is_html {
                    ContentType::Html
                } else {
                    ContentType::Markdown
                }),
                status,
                category,
                rating: dataset.cahier.rating.filter(|r| (0..=5).contains(r)),
                tags: Some(tags),
                ops,
            };
            let new = NewEntity {
                kind,
                team_id: options.team_id,
                canread: None,
                canwrite: None,
                patch,
                template: None,
            };
            let id = ids
                .get(&dataset.id)
                .copied()
                .unwrap_or_else(|| self.new_entity_id());
            let mut entity = self
                .prepare_entity(subject, new, id, "import")
                .await
                .map_err(|error| match error {
                    StoreError::Invalid { field, message } => invalid(
                        "file",
                        format!("{title}: {field}: {message}; nothing was imported"),
                    ),
                    other => other,
                })?;
            // The live document is dropped and the rest goes to disk: memory stays flat.
            entity.forget_doc();
            spill.push(&entity.record)?;
            lines.push((title, n_files));
        }
        drop(archive);
        // The insert phase: the only part that holds SQLite's write lock. Records come back
        // from disk one at a time; any failure rolls the whole import back (the transaction
        // is dropped uncommitted) and dropping the spill removes its file.
        let n_prepared = spill.len();
        let mut records = spill.into_reader()?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut created = Vec::with_capacity(n_prepared);
        for (title, n_files) in lines {
            let record = records.next_record()?.ok_or_else(|| {
                StoreError::Conflict("the import's prepared entries are incomplete".into())
            })?;
            let id = self.insert_prepared(&mut tx, subject, &record).await?;
            created.push(ImportedEntity {
                id,
                kind: record.kind(),
                title,
                n_files,
            });
        }
        tx.commit().await?;
        drop(records);
        tracing::info!(
            user_id = subject.user_id,
            team_id = options.team_id,
            n_entities = created.len(),
            n_refused = refused_files.len(),
            "imported an .eln archive"
        );
        Ok(ImportReport {
            created,
            refused_files,
            notes,
        })
    }

    /// The fields of an imported entry: eLabFTW's own metadata when present and valid, else one
    /// text field per PropertyValue. Link fields keep only targets the importer may read.
    async fn imported_metadata(
        &self,
        subject: &Subject,
        dataset: &ImportedDataset,
        provenance: &mut Map<String, Value>,
        notes: &mut Vec<String>,
    ) -> Metadata {
        let parsed = match &dataset.elabftw_metadata {
            Some(raw) => match Metadata::from_json(&Value::String(raw.clone())) {
                Ok(metadata) => Some(metadata),
                Err(error) => {
                    notes.push(format!(
                        "{}: its eLabFTW fields could not be read ({}: {}); kept as text in its metadata",
                        dataset.title, error.name, error.message
                    ));
                    provenance.insert("elabftw_metadata".into(), json!(raw));
                    None
                }
            },
            None => None,
        };
        let mut metadata = match parsed {
            Some(metadata) => metadata,
            None => {
                let mut fields = Map::new();
                for property in &dataset.properties {
                    let mut name = truncate(property.name.trim(), 200);
                    if name.is_empty() {
                        continue;
                    }
                    let mut n = 2;
                    while fields.contains_key(&name) {
                        name = format!("{} ({n})", truncate(property.name.trim(), 190));
                        n += 1;
                    }
                    let mut field = json!({"type": "text", "value": property.value});
                    if let Some(unit) = &property.unit {
                        field["description"] = json!(format!("unit: {unit}"));
                    }
                    fields.insert(name, field);
                }
                if fields.is_empty() {
                    Metadata::default()
                } else {
                    match Metadata::from_json(&json!({ "extra_fields": fields })) {
                        Ok(metadata) => metadata,
                        Err(error) => {
                            notes.push(format!(
                                "{}: its properties could not be made fields ({}: {}); kept as text in its metadata",
                                dataset.title, error.name, error.message
                            ));
                            provenance.insert("fields".into(), Value::Object(fields));
                            Metadata::default()
                        }
                    }
                }
            }
        };
        let mut checked: Vec<Field> = Vec::new();
        for mut field in std::mem::take(&mut metadata.fields) {
            if field.link_targets().is_some()
                && (dataset.cahier.uuid.is_none()
                    || self.check_links_of(subject, &field).await.is_err())
            {
                // Integer ids of another instance would point at the wrong entries here.
                let original = field.value().clone();
                field.props.insert("value".into(), json!(""));
                if !original.is_null() && original != json!("") {
                    let links = provenance.entry("link_fields").or_insert_with(|| json!({}));
                    links[&field.name] = original;
                }
            }
            checked.push(field);
        }
        metadata.fields = checked;
        metadata
    }
}

fn missing_note(title: &str, id: &str) -> String {
    if cahier_eln::reader::is_remote(id) {
        format!("{title}: {id} is a remote file; it was not fetched")
    } else {
        format!("{title}: {id} is listed in the metadata but not in the archive")
    }
}

/// Notes on root parts listed but not described.
fn dangling_notes(krate: &Crate) -> Vec<String> {
    krate
        .dangling_parts()
        .into_iter()
        .map(|id| format!("{id} is listed in the archive's contents but not described; skipped"))
        .collect()
}

/// Notes on a dataset's sub-folders that are not entities of their own.
fn nested_notes(dataset: &ImportedDataset) -> Vec<String> {
    dataset
        .nested
        .iter()
        .map(|nested| {
            format!(
                "{}: {nested} is a sub-folder not listed at the archive's root; kept as a reference in its metadata",
                dataset.title
            )
        })
        .collect()
}
