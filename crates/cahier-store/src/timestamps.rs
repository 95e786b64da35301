//! Trusted timestamps of entity versions: the canonical export a proof covers, and the record
//! of each proof (`entity_timestamps`). The proof archive itself is an ordinary attachment
//! ([`crate::uploads`]); talking to the TSA and checking its answer is `cahier-trace`'s job.

use crate::{Result, Store, StoreError};
use cahier_core::Subject;
use cahier_core::trace::{ExportContext, canonical_json, export_value};
use sqlx::Row;

/// The exact bytes to stamp, and the version they were read at.
#[derive(Debug, Clone)]
pub struct VersionExport {
    /// The document's heads (comma-separated hex).
    pub heads: String,
    /// Canonical JSON ([`cahier_core::trace`]).
    pub bytes: Vec<u8>,
}

/// A proof to record with its archive ([`Store::attach_timestamp`]).
#[derive(Debug, Clone)]
pub struct NewTimestamp {
    /// The stamped version.
    pub heads: String,
    /// SHA-256 of the export, hex.
    pub export_sha256: String,
    /// `sha256` or `sha512`: the imprint's algorithm.
    pub hash_alg: String,
    /// The token's genTime, ms.
    pub gen_time_ms: i64,
    /// The TSA's name.
    pub tsa_name: String,
}

/// One recorded proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampRow {
    /// Id.
    pub id: i64,
    /// The entity.
    pub entity_id: i64,
    /// The stamped version.
    pub heads: String,
    /// SHA-256 of the export, hex.
    pub export_sha256: String,
    /// Imprint algorithm.
    pub hash_alg: String,
    /// The token's genTime, ms.
    pub gen_time_ms: i64,
    /// The TSA's name.
    pub tsa_name: String,
    /// The archive upload.
    pub upload_id: i64,
    /// The archive's blob (SHA-256 hex).
    pub upload_sha256: String,
    /// Who asked for it.
    pub user_id: i64,
}

const SELECT: &str = "SELECT t.id, t.entity_id, t.heads, t.export_sha256, t.hash_alg, \
     t.gen_time_ms, t.tsa_name, t.upload_id, u.sha256 AS upload_sha256, t.user_id \
     FROM entity_timestamps t JOIN uploads u ON u.id = t.upload_id";

fn from_row(row: &sqlx::sqlite::SqliteRow) -> TimestampRow {
    TimestampRow {
        id: row.get("id"),
        entity_id: row.get("entity_id"),
        heads: row.get("heads"),
        export_sha256: row.get("export_sha256"),
        hash_alg: row.get("hash_alg"),
        gen_time_ms: row.get("gen_time_ms"),
        tsa_name: row.get("tsa_name"),
        upload_id: row.get("upload_id"),
        upload_sha256: row.get("upload_sha256"),
        user_id: row.get("user_id"),
    }
}

impl Store {
    /// Which of `ids` have at least one trusted timestamp (for list rows; the caller has already
    /// read the rows through the access policy).
    pub async fn timestamped_among(&self, ids: &[i64]) -> Result<std::collections::HashSet<i64>> {
        if ids.is_empty() {
            return Ok(std::collections::HashSet::new());
        }
        let mut builder: sqlx::QueryBuilder<sqlx::Sqlite> = sqlx::QueryBuilder::new(
            "SELECT DISTINCT entity_id FROM entity_timestamps WHERE entity_id IN (",
        );
        let mut list = builder.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        builder.push(")");
        let found: Vec<i64> = builder.build_query_scalar().fetch_all(&self.pool).await?;
        Ok(found.into_iter().collect())
    }

    /// The canonical export of the current version of an entity the subject may write (only
    /// writers may stamp: a stamp adds an attachment; a locked entry may be stamped).
    pub async fn timestamp_export(&self, subject: &Subject, id: i64) -> Result<VersionExport> {
        let row = self.entity(subject, id).await?;
        crate::entities::check_may_stamp(&row, subject)?;
        self.version_export(&row).await
    }

    /// The canonical export of the current version of `row` (access already checked).
    pub(crate) async fn version_export(&self, row: &crate::EntityRow) -> Result<VersionExport> {
        let id = row.id;
        let mut conn = self.pool.acquire().await?;
        let (heads, doc) = self.load_doc(&mut conn, id).await?;
        let content = doc.content()?;
        let attachments = doc.attachments()?;
        self.cache_put(id, heads.clone(), doc);
        let mut head_list: Vec<String> = heads
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        head_list.sort();
        let value = export_value(
            &content,
            &ExportContext {
                entity_id: id,
                owner_id: row.owner_id,
                heads: &head_list,
                attachments: &attachments,
            },
        );
        Ok(VersionExport {
            heads,
            bytes: canonical_json(&value),
        })
    }

    /// Attaches a proof's archive (a blob already stored) and records the proof, its audit
    /// entry and, when the lab chose so, the lock, all in the one transaction of the change
    /// that references the archive: a failure leaves no attachment and no record (the blob,
    /// unreferenced, is swept later). Allowed on a locked entry (it changes no content).
    pub async fn attach_timestamp(
        &self,
        subject: &Subject,
        entity_id: i64,
        archive: crate::uploads::NewUpload,
        new: NewTimestamp,
    ) -> Result<TimestampRow> {
        let blobs = self.blob_store()?;
        if !blobs.exists(&archive.sha256).await {
            return Err(StoreError::NotFound("blob"));
        }
        let size = i64::try_from(archive.size).map_err(|_| crate::invalid("file", "too large"))?;
        let patch = cahier_core::document::EntityPatch {
            ops: vec![cahier_core::document::EntityOp::AddAttachment {
                sha256: archive.sha256.clone(),
                name: archive.real_name,
                media_type: archive.media_type,
                size,
                at_ms: self.now_ms(),
                by: subject.user_id,
                comment: archive.comment,
                replaces: None,
            }],
            ..Default::default()
        };
        self.update_entity_with(subject, entity_id, None, &patch, "timestamp", Some(&new))
            .await?;
        let upload = self
            .upload_by_hash(subject, entity_id, &archive.sha256)
            .await?;
        self.timestamps(subject, entity_id)
            .await?
            .into_iter()
            .find(|t| t.upload_id == upload.id)
            .ok_or(StoreError::NotFound("timestamp"))
    }

    /// The proofs of an entity the subject may read, newest first.
    pub async fn timestamps(&self, subject: &Subject, entity_id: i64) -> Result<Vec<TimestampRow>> {
        let row = self.entity(subject, entity_id).await?;
        self.timestamps_of(&row).await
    }

    /// The proofs of an entity already read through the access policy ([`Store::entity`] and
    /// its kin are the only way to an [`crate::EntityRow`]), newest first. Saves reading the
    /// entity a second time when the caller holds it (the API's single-entity GET).
    pub async fn timestamps_of(&self, row: &crate::EntityRow) -> Result<Vec<TimestampRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE t.entity_id = ? ORDER BY t.id DESC"
        )))
        .bind(row.id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// Every proof on this instance, oldest first (for `cahier verify`, an administrator's
    /// command run on the data directory; no subject).
    pub async fn all_timestamps(&self) -> Result<Vec<TimestampRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY t.id")))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(from_row).collect())
    }
}

/// Records a proof inside the transaction that attached its archive (`patch`, one
/// `AddAttachment`): the `entity_timestamps` row, the audit entry and the lock on timestamp.
pub(crate) async fn record_in(
    conn: &mut sqlx::SqliteConnection,
    now: i64,
    user_id: i64,
    entity_id: i64,
    patch: &cahier_core::document::EntityPatch,
    new: &NewTimestamp,
) -> Result<()> {
    let Some(cahier_core::document::EntityOp::AddAttachment { sha256, .. }) = patch.ops.first()
    else {
        return Err(crate::invalid("patch", "a proof adds its archive"));
    };
    let upload_id: i64 = sqlx::query_scalar(
        "SELECT id FROM uploads WHERE entity_id = ? AND sha256 = ? ORDER BY id DESC LIMIT 1",
    )
    .bind(entity_id)
    .bind(sha256)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound("upload"))?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO entity_timestamps (entity_id, heads, export_sha256, hash_alg, \
         gen_time_ms, tsa_name, upload_id, user_id, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(entity_id)
    .bind(&new.heads)
    .bind(&new.export_sha256)
    .bind(&new.hash_alg)
    .bind(new.gen_time_ms)
    .bind(&new.tsa_name)
    .bind(upload_id)
    .bind(user_id)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    crate::audit::append(
        conn,
        now,
        &crate::audit::AuditEvent::new(
            Some(user_id),
            crate::audit::action::TIMESTAMP,
            "entity",
            entity_id,
        )
        .details(serde_json::json!({
            "timestamp": id,
            "heads": new.heads,
            "export_sha256": new.export_sha256,
            "gen_time_ms": new.gen_time_ms,
            "tsa": new.tsa_name,
            "upload": upload_id,
        })),
    )
    .await?;
    crate::proof_lock::lock_after_proof(
        conn,
        now,
        entity_id,
        user_id,
        crate::proof_lock::LockTrigger::Timestamp,
    )
    .await?;
    Ok(())
}
