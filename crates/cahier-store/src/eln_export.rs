//! Exporting entities as an `.eln` archive. Every entity is read through the access policy
//! (`Store::entity`, `Store::content`, `Store::uploads`, `Store::links`): an entity the subject
//! may not read is "not found", a link to one is left out. Entities are written one after the
//! other, their metadata nodes go to a temporary file as each entity is done and attachments
//! stream from the blob store in chunks, so memory stays flat whatever the size of the export
//! (the writer keeps only the ids of people and categories; the store a set of the exported
//! ids, to point links between exported entries at their Datasets).
//!
//! A field replica that could not fetch some attachment files passes them as [`LeftOut`]: the
//! archive then holds the others and a [`MISSING_FILES_NOTE`] naming those, with why. What is
//! missing and why is the caller's to find out; this module only writes it down.

use crate::catalog::Vocabulary;
use crate::{Result, Store, StoreError};
use cahier_core::Subject;
use cahier_eln::ElnWriter;
use cahier_eln::writer::{
    ExportComment, ExportEntity, ExportField, ExportFile, ExportLink, ExportPerson, ExportStep,
};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::io::{Seek, Write};

/// RFC 3339 (UTC) of milliseconds since the epoch.
pub fn rfc3339(ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The name of the note an export carries when it had to leave attachment files out (at the
/// top of an `.eln`, in an entry's folder of eLabFTW's ZIP).
pub const MISSING_FILES_NOTE: &str = "MISSING-FILES.txt";

/// Attachment files an export leaves out, and what it says about them: a field replica that
/// does not hold them and could not fetch them from the lab server. Empty on a lab server,
/// where every file is held (one that cannot be read fails the export, as before).
#[derive(Debug, Clone, Default)]
pub struct LeftOut {
    /// Why each file left out is missing, by SHA-256, in the reader's language.
    pub reasons: HashMap<String, String>,
    /// The first lines of the note listing them (what happened, what to do), in the reader's
    /// language.
    pub heading: String,
    /// What the export job says once done (its note), `None` when nothing is left out.
    pub summary: Option<String>,
}

impl LeftOut {
    /// Whether the export leaves nothing out.
    pub fn is_empty(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// The text of a [`MISSING_FILES_NOTE`]: `heading`, then one line per file left out.
pub fn missing_files_note(heading: &str, lines: &[String]) -> String {
    let mut text = heading.trim_end().to_owned();
    text.push_str("\n\n");
    for line in lines {
        text.push_str("- ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// One line of a [`MISSING_FILES_NOTE`]: where the file belonged, its name, hash, size and why
/// it is missing.
pub fn missing_file_line(entry: &str, name: &str, sha256: &str, size: u64, reason: &str) -> String {
    format!("{entry} — {name} ({size} B, SHA-256 {sha256}): {reason}")
}

fn eln_error(error: cahier_eln::ElnError) -> StoreError {
    StoreError::Conflict(format!("writing the export failed: {error}"))
}

impl Store {
    async fn export_person(
        &self,
        cache: &mut HashMap<i64, ExportPerson>,
        user_id: i64,
    ) -> Result<ExportPerson> {
        if let Some(person) = cache.get(&user_id) {
            return Ok(person.clone());
        }
        let person = match self.user(user_id).await {
            Ok(user) => ExportPerson {
                key: user_id.to_string(),
                name: user.fullname(),
                email: Some(user.email),
            },
            Err(StoreError::NotFound(_)) => ExportPerson {
                key: user_id.to_string(),
                name: format!("user {user_id}"),
                email: None,
            },
            Err(other) => return Err(other),
        };
        cache.insert(user_id, person.clone());
        Ok(person)
    }

    /// Everything the export says about one entity (no file contents).
    async fn export_entity(
        &self,
        subject: &Subject,
        id: i64,
        people: &mut HashMap<i64, ExportPerson>,
        exported: &HashSet<i64>,
    ) -> Result<ExportEntity> {
        let row = self.entity(subject, id).await?;
        let content = self.content(subject, id).await?;
        let author = self.export_person(people, row.owner_id).await?;
        let category = match content.category {
            Some(category) => self.term(Vocabulary::Category, category).await.ok(),
            None => None,
        };
        let status = match content.status {
            Some(status) => self.term(Vocabulary::Status, status).await.ok(),
            None => None,
        };
        let mut comments = Vec::new();
        for comment in &content.comments {
            comments.push(ExportComment {
                author: self.export_person(people, comment.author).await?,
                created_at: rfc3339(comment.created_at_ms),
                body: comment.body.clone(),
            });
        }
        let links = self
            .links(subject, id)
            .await?
            .into_iter()
            .map(|l| ExportLink {
                kind: exported.contains(&l.id).then_some(l.kind),
                uuid: l.uuid,
            })
            .collect();
        // Every saved version with its provenance. `device_time` is the writing device's own
        // clock (a field replica's, for content captured offline): recorded, never proven;
        // `received_at` is when the server received it.
        let history = self
            .history(subject, id)
            .await?
            .into_iter()
            .map(|v| {
                json!({"hash": v.hash, "author": v.user_id, "device": v.device,
                       "captured_offline": v.device != crate::SERVER_DEVICE,
                       "device_time": rfc3339(v.time_ms), "device_time_proven": false,
                       "received_at": rfc3339(v.received_at)})
            })
            .collect();
        let timestamps = self
            .timestamps(subject, id)
            .await?
            .into_iter()
            .map(|t| {
                json!({"heads": t.heads, "export_sha256": t.export_sha256, "hash_alg": t.hash_alg,
                       "gen_time": rfc3339(t.gen_time_ms), "tsa": t.tsa_name,
                       "proof_sha256": t.upload_sha256})
            })
            .collect();
        let signatures = self
            .signatures(subject, id)
            .await?
            .into_iter()
            .map(|s| {
                json!({"heads": s.heads, "meaning": s.meaning, "signer": s.user_id,
                       "key_id": s.key_id, "public_key": s.public_key, "minisig": s.signature,
                       "export": String::from_utf8_lossy(&s.export),
                       "signed_at": rfc3339(s.created_at)})
            })
            .collect();
        let files = self
            .uploads(subject, id, true)
            .await?
            .into_iter()
            .rev()
            .map(|u| ExportFile {
                sha256: u.sha256,
                name: u.real_name,
                media_type: u.media_type,
                size: u64::try_from(u.size).unwrap_or_default(),
                created_at: rfc3339(u.created_at),
                comment: u.comment,
                state: u.state,
            })
            .collect();
        Ok(ExportEntity {
            uuid: row.uuid.clone(),
            kind: row.kind.as_str().to_owned(),
            title: content.title.clone(),
            body: content.body.clone(),
            body_is_html: content.content_type == 1,
            date: content.date.clone(),
            created_at: rfc3339(row.created_at),
            modified_at: rfc3339(row.modified_at),
            author,
            tags: content.tags.clone(),
            category: category.as_ref().map(|t| t.title.clone()),
            category_color: category.map(|t| t.color),
            status: status.map(|t| t.title),
            steps: content
                .steps
                .iter()
                .map(|s| ExportStep {
                    body: s.body.clone(),
                    done: s.done,
                    done_at: s.done_at_ms.map(rfc3339),
                })
                .collect(),
            comments,
            links,
            metadata_json: content.metadata.to_json_string(),
            fields: content
                .metadata
                .fields
                .iter()
                .map(|f| ExportField {
                    name: f.name.clone(),
                    value: f.display_value(),
                    unit: Some(f.unit().to_owned()).filter(|u| !u.is_empty()),
                    kind: f.field_type().to_owned(),
                })
                .collect(),
            rating: content.rating,
            heads: row.heads.clone(),
            elabid: row.elabid.clone(),
            history,
            timestamps,
            signatures,
            files,
        })
    }

    /// Writes the entities `ids` (in that order) as an `.eln` archive into `sink`, calling
    /// `progress` with the number of entities written after each one. Any id the subject may
    /// not read fails the export with "not found".
    pub async fn export_eln<W: Write + Seek + Send>(
        &self,
        subject: &Subject,
        ids: &[i64],
        sink: W,
        publisher: &str,
        progress: impl FnMut(usize) + Send,
    ) -> Result<W> {
        let now = self.now_ms();
        let scratch = self.eln_scratch();
        let writer = ElnWriter::new_with(sink, &eln_root(now), &rfc3339(now), publisher, &*scratch)
            .map_err(eln_error)?;
        self.write_eln(subject, ids, writer, &LeftOut::default(), progress)
            .await
    }

    /// [`Store::export_eln`] into a sink that cannot seek, such as a file of user content
    /// ([`crate::blobs::BlobStore::content_sink`], sealed on a field replica): each file of
    /// the archive is followed by a data descriptor. The files of `left_out` are not in the
    /// archive: a [`MISSING_FILES_NOTE`] at its top (listed in the root's `hasPart`, so no
    /// importer takes it for an entry's attachment) names them and says why. Returns the
    /// sink, not yet finished.
    pub async fn export_eln_stream<S: Write + Send>(
        &self,
        subject: &Subject,
        ids: &[i64],
        sink: S,
        publisher: &str,
        left_out: &LeftOut,
        progress: impl FnMut(usize) + Send,
    ) -> Result<S> {
        let now = self.now_ms();
        let scratch = self.eln_scratch();
        let writer =
            ElnWriter::new_stream_with(sink, &eln_root(now), &rfc3339(now), publisher, &*scratch)
                .map_err(eln_error)?;
        let written = self
            .write_eln(subject, ids, writer, left_out, progress)
            .await?;
        Ok(written.into_inner())
    }

    async fn write_eln<W: Write + Seek + Send>(
        &self,
        subject: &Subject,
        ids: &[i64],
        mut writer: ElnWriter<W>,
        left_out: &LeftOut,
        mut progress: impl FnMut(usize) + Send,
    ) -> Result<W> {
        let mut people = HashMap::new();
        let exported: HashSet<i64> = ids.iter().copied().collect();
        let mut missing = Vec::new();
        for (n, id) in ids.iter().enumerate() {
            let entity = self
                .export_entity(subject, *id, &mut people, &exported)
                .await?;
            writer.begin_entity(&entity).map_err(eln_error)?;
            for file in &entity.files {
                if let Some(reason) = left_out.reasons.get(&file.sha256) {
                    missing.push(missing_file_line(
                        &entity.title,
                        &file.name,
                        &file.sha256,
                        file.size,
                        reason,
                    ));
                    continue;
                }
                writer.start_file(file).map_err(eln_error)?;
                let blobs = self.blob_store()?;
                let mut reader = blobs.open(&file.sha256).await.map_err(|error| {
                    StoreError::Conflict(format!(
                        "reading the attachment {} of entry {id} failed: {error}",
                        file.name
                    ))
                })?;
                while let Some(chunk) = reader.next_chunk().await.map_err(|error| {
                    StoreError::Conflict(format!(
                        "reading the attachment {} of entry {id} failed: {error}",
                        file.name
                    ))
                })? {
                    writer.write_chunk(&chunk).map_err(eln_error)?;
                }
            }
            progress(n + 1);
        }
        if !missing.is_empty() {
            let note = missing_files_note(&left_out.heading, &missing);
            writer
                .add_root_text(MISSING_FILES_NOTE, &left_out.heading, &note)
                .map_err(eln_error)?;
        }
        writer.finish().map_err(eln_error)
    }
}

/// The top folder of an archive written at `now` (ms).
fn eln_root(now: i64) -> String {
    format!(
        "cahier-export-{}",
        cahier_core::clock::format_date(now).replace('-', "")
    )
}
