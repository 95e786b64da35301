//! Attachments of entities: the `uploads` rows (name, comment, size, type, state, which one a
//! new version replaces) over content-addressed blobs ([`crate::blobs`]). The entity's document
//! is the source of truth (`attachments[sha256]`, so renames, comments, archiving and new
//! versions sync and merge like any edit); the rows are its projection, written by
//! `projection::write_uploads` in the change's transaction. The blob is written first,
//! so a crash leaves at most an unreferenced blob.

use crate::blobs::{BlobError, BlobStore, VerifyReport};
use crate::{Result, Store, StoreError, invalid};
use cahier_core::Subject;
use cahier_core::document::{EntityOp, EntityPatch};
use sqlx::Row;

/// States of an upload (eLabFTW's State).
pub mod state {
    /// Listed.
    pub const NORMAL: i64 = 1;
    /// Kept, hidden by default (a replaced version).
    pub const ARCHIVED: i64 = 2;
    /// Soft-deleted.
    pub const DELETED: i64 = 3;
}

/// Longest accepted file name, in characters.
pub const MAX_NAME_CHARS: usize = 255;
/// Longest accepted comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 10_000;

/// One attachment version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRow {
    /// Id (API v2 `subid`).
    pub id: i64,
    /// The entity it belongs to.
    pub entity_id: i64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// File name as uploaded (or renamed).
    pub real_name: String,
    /// Free comment.
    pub comment: String,
    /// Bytes.
    pub size: i64,
    /// Media type it is served with.
    pub media_type: String,
    /// Uploader.
    pub user_id: i64,
    /// When, ms.
    pub created_at: i64,
    /// 1 normal, 2 archived, 3 deleted.
    pub state: i64,
    /// The version this one replaced.
    pub replaces_id: Option<i64>,
}

/// A stored file to attach: what [`crate::blobs::BlobWriter::finish`] returned, with its name.
#[derive(Debug, Clone)]
pub struct NewUpload {
    /// SHA-256 of the stored blob.
    pub sha256: String,
    /// Its size, bytes.
    pub size: u64,
    /// File name.
    pub real_name: String,
    /// Comment.
    pub comment: String,
    /// Media type.
    pub media_type: String,
}

/// An attached upload, with the entity's heads before and after the change that references it
/// (an editor whose base was `heads_before` may move its base to `heads`).
#[derive(Debug, Clone)]
pub struct Attached {
    /// The new upload.
    pub upload: UploadRow,
    /// The entity's heads the change was written on.
    pub heads_before: String,
    /// The entity's heads after it.
    pub heads: String,
}

/// Changes to an upload's record.
#[derive(Debug, Clone, Default)]
pub struct UploadPatch {
    /// New file name.
    pub real_name: Option<String>,
    /// New comment.
    pub comment: Option<String>,
    /// New state (1 normal, 2 archived, 3 deleted).
    pub state: Option<i64>,
}

const COLUMNS: &str = "id, entity_id, sha256, real_name, comment, size, media_type, user_id, \
                       created_at, state, replaces_id";

fn from_row(row: &sqlx::sqlite::SqliteRow) -> UploadRow {
    UploadRow {
        id: row.get("id"),
        entity_id: row.get("entity_id"),
        sha256: row.get("sha256"),
        real_name: row.get("real_name"),
        comment: row.get("comment"),
        size: row.get("size"),
        media_type: row.get("media_type"),
        user_id: row.get("user_id"),
        created_at: row.get("created_at"),
        state: row.get("state"),
        replaces_id: row.get("replaces_id"),
    }
}

fn clean_name(name: &str) -> Result<String> {
    // Keep only the last path component a browser may send, and no control characters.
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim().to_owned();
    if cleaned.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(
            "real_name",
            format!("at most {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "file".to_owned()
    } else {
        cleaned
    })
}

fn clean_comment(comment: &str) -> Result<String> {
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(invalid(
            "comment",
            format!("at most {MAX_COMMENT_CHARS} characters"),
        ));
    }
    Ok(comment.trim().to_owned())
}

impl Store {
    /// The blob store, or an error saying uploads are not configured.
    pub fn blob_store(&self) -> Result<&BlobStore> {
        self.blobs
            .as_ref()
            .ok_or_else(|| StoreError::Conflict("this instance has no file storage".into()))
    }

    /// Attaches a stored blob to an entity the subject may write: the upload row and the
    /// document's reference in one transaction. `replaces` names the version it supersedes
    /// (archived in the same transaction).
    pub async fn attach(
        &self,
        subject: &Subject,
        entity_id: i64,
        upload: NewUpload,
        replaces: Option<i64>,
    ) -> Result<Attached> {
        self.writable(subject, entity_id).await?;
        let real_name = clean_name(&upload.real_name)?;
        let mut comment = clean_comment(&upload.comment)?;
        let mut replaced = None;
        if let Some(old) = replaces {
            self.refuse_if_proof(old).await?;
            let old = self.upload(subject, entity_id, old).await?;
            if old.state == state::DELETED {
                return Err(StoreError::NotFound("upload"));
            }
            if comment.is_empty() {
                comment.clone_from(&old.comment);
            }
            replaced = Some(old.sha256);
        }
        let blobs = self.blob_store()?;
        if !blobs.exists(&upload.sha256).await {
            return Err(StoreError::NotFound("blob"));
        }
        let size = i64::try_from(upload.size).map_err(|_| invalid("file", "too large"))?;
        let mut ops = vec![EntityOp::AddAttachment {
            sha256: upload.sha256.clone(),
            name: real_name,
            media_type: upload.media_type,
            size,
            at_ms: self.now_ms(),
            by: subject.user_id,
            comment,
            replaces: replaced.clone(),
        }];
        // The replaced version is archived in the same change (unless it is the same content).
        if let Some(old) = replaced.filter(|old| *old != upload.sha256) {
            ops.push(EntityOp::UpdateAttachment {
                sha256: old,
                name: None,
                comment: None,
                state: Some(state::ARCHIVED),
            });
        }
        let patch = EntityPatch {
            ops,
            ..Default::default()
        };
        let (outcome, heads_before) = self
            .update_entity_with(subject, entity_id, None, &patch, "attach", None)
            .await?;
        Ok(Attached {
            upload: self
                .upload_by_hash_any_state(entity_id, &upload.sha256)
                .await?,
            heads_before,
            heads: outcome.heads,
        })
    }

    /// A trusted timestamp's proof archive is immutable: no rename, new version or deletion.
    async fn refuse_if_proof(&self, upload_id: i64) -> Result<()> {
        let is_proof: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM entity_timestamps WHERE upload_id = ?)",
        )
        .bind(upload_id)
        .fetch_one(&self.pool)
        .await?;
        if is_proof {
            return Err(StoreError::Conflict(
                "this file is the proof of a trusted timestamp: it cannot be renamed, replaced or deleted".into(),
            ));
        }
        Ok(())
    }

    /// The row of an entity's upload with this content, whatever its state.
    async fn upload_by_hash_any_state(&self, entity_id: i64, sha256: &str) -> Result<UploadRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM uploads WHERE entity_id = ? AND sha256 = ? ORDER BY id LIMIT 1"
        )))
        .bind(entity_id)
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(from_row)
            .ok_or(StoreError::NotFound("upload"))
    }

    /// The uploads of an entity the subject may read, newest first; deleted ones never,
    /// archived ones only when asked.
    pub async fn uploads(
        &self,
        subject: &Subject,
        entity_id: i64,
        with_archived: bool,
    ) -> Result<Vec<UploadRow>> {
        self.entity(subject, entity_id).await?;
        let max_state = if with_archived {
            state::ARCHIVED
        } else {
            state::NORMAL
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM uploads WHERE entity_id = ? AND state <= ? ORDER BY id DESC"
        )))
        .bind(entity_id)
        .bind(max_state)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// One upload of an entity the subject may read (deleted ones too: the API shows state 3).
    pub async fn upload(&self, subject: &Subject, entity_id: i64, id: i64) -> Result<UploadRow> {
        self.entity(subject, entity_id).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM uploads WHERE id = ? AND entity_id = ?"
        )))
        .bind(id)
        .bind(entity_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(from_row)
            .ok_or(StoreError::NotFound("upload"))
    }

    /// The newest live upload of an entity with this content (images in the body link by hash).
    pub async fn upload_by_hash(
        &self,
        subject: &Subject,
        entity_id: i64,
        sha256: &str,
    ) -> Result<UploadRow> {
        self.entity(subject, entity_id).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM uploads WHERE entity_id = ? AND sha256 = ? AND state < 3 \
             ORDER BY state, id DESC LIMIT 1"
        )))
        .bind(entity_id)
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(from_row)
            .ok_or(StoreError::NotFound("upload"))
    }

    /// Renames, re-comments, archives, restores or deletes (softly) an upload.
    pub async fn update_upload(
        &self,
        subject: &Subject,
        entity_id: i64,
        id: i64,
        patch: &UploadPatch,
    ) -> Result<UploadRow> {
        self.writable(subject, entity_id).await?;
        let current = self.upload(subject, entity_id, id).await?;
        self.refuse_if_proof(id).await?;
        let real_name = match &patch.real_name {
            Some(name) => clean_name(name)?,
            None => current.real_name,
        };
        let comment = match &patch.comment {
            Some(comment) => clean_comment(comment)?,
            None => current.comment,
        };
        let new_state = patch.state.unwrap_or(current.state);
        if !(state::NORMAL..=state::DELETED).contains(&new_state) {
            return Err(invalid(
                "state",
                "expected 1 (normal), 2 (archived) or 3 (deleted)",
            ));
        }
        let patch = EntityPatch {
            ops: vec![EntityOp::UpdateAttachment {
                sha256: current.sha256.clone(),
                name: Some(real_name),
                comment: Some(comment),
                state: Some(new_state),
            }],
            ..Default::default()
        };
        self.update_entity_with(subject, entity_id, None, &patch, "attachment", None)
            .await?;
        self.upload(subject, entity_id, id).await
    }

    /// Checks every blob against its hash, and that every referenced blob exists.
    pub async fn verify_blobs(&self) -> Result<VerifyReport> {
        let hashes: Vec<String> = sqlx::query_scalar("SELECT DISTINCT sha256 FROM uploads")
            .fetch_all(&self.pool)
            .await?;
        self.blob_store()?
            .verify(hashes)
            .await
            .map_err(|error| match error {
                BlobError::Io(io) => StoreError::Conflict(format!("reading the blobs: {io}")),
                other => StoreError::Conflict(other.to_string()),
            })
    }
}
