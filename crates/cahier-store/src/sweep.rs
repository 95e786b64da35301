//! The orphan sweep: removes blob files nothing refers to, and temporary files left by
//! interrupted uploads. A blob is written before any row refers to it (blobs.rs), so a crash or
//! an upload abandoned between the two leaves an orphan file; this is what takes it away.
//!
//! A file is kept if any `uploads` row (whatever its state: archived and deleted versions stay
//! downloadable or restorable) or any `device_blobs` row (a replica uploaded it and will push
//! the document that attaches it) names it, or if it changed within the grace period: an
//! upload in progress has written its blob but not yet its row, and storing bytes that are
//! already present refreshes the file's time (blobs.rs), so an orphan being attached again is
//! never taken from under the upload. Thumbnails of files that are gone go too.
//!
//! A `device_blobs` row keeps its file for [`DEVICE_UPLOAD_KEPT`] after the upload, and only
//! while its device is not revoked: a file a replica sent for a push that was refused or
//! abandoned does not stay forever. A replica whose push comes later anyway is told the file
//! is missing, sends it again and pushes once more, in the same sync (docs/SYNC.md, "Files
//! known to be on the server"). The rows of a removed file go with it.

use crate::blobs::is_hash;
use crate::{Result, Store, StoreError};
use std::time::{Duration, SystemTime};

/// How long a file uploaded by a device, and attached to nothing yet, is kept for the push
/// that will attach it: 30 days.
pub const DEVICE_UPLOAD_KEPT: Duration = Duration::from_secs(30 * 24 * 3600);

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Blob files looked at.
    pub checked: u64,
    /// Hashes of the removed blobs (or those that would be removed, in a dry run).
    pub removed: Vec<String>,
    /// Bytes freed.
    pub freed_bytes: u64,
    /// Temporary files of interrupted uploads removed.
    pub removed_temporary: u64,
}

fn io(error: std::io::Error) -> StoreError {
    StoreError::Conflict(format!("sweeping the file store: {error}"))
}

impl Store {
    /// Removes blobs that nothing refers to and that have not changed for `grace` (see the
    /// module documentation); with `dry_run`, only reports them.
    pub async fn sweep_orphans(&self, grace: Duration, dry_run: bool) -> Result<SweepReport> {
        let blobs = self.blob_store()?;
        let root = blobs.root().to_path_buf();
        #[expect(
            clippy::disallowed_methods,
            reason = "files' times come from the system clock, so ages are measured with it"
        )]
        let now = SystemTime::now();
        let is_old = |meta: &std::fs::Metadata| {
            meta.modified()
                .ok()
                .and_then(|at| now.duration_since(at).ok())
                .is_some_and(|age| age >= grace)
        };
        let mut report = SweepReport::default();

        if let Ok(mut temporary) = tokio::fs::read_dir(root.join("tmp")).await {
            while let Some(entry) = temporary.next_entry().await.map_err(io)? {
                let meta = entry.metadata().await.map_err(io)?;
                if meta.is_file() && is_old(&meta) {
                    if !dry_run {
                        tokio::fs::remove_file(entry.path()).await.map_err(io)?;
                    }
                    report.removed_temporary += 1;
                }
            }
        }

        // Thumbnails (a cache) whose file is gone.
        if let Ok(mut thumbs) = tokio::fs::read_dir(root.join("thumbs")).await {
            while let Some(entry) = thumbs.next_entry().await.map_err(io)? {
                let name = entry.file_name().to_string_lossy().into_owned();
                let source = name.split('.').next().unwrap_or_default();
                if is_hash(source) && !blobs.exists(source).await && !dry_run {
                    tokio::fs::remove_file(entry.path()).await.map_err(io)?;
                }
            }
        }

        let stored = blobs
            .stored()
            .await
            .map_err(|e| StoreError::Conflict(format!("sweeping the file store: {e}")))?;
        for (hash, path) in stored {
            report.checked += 1;
            let meta = match tokio::fs::metadata(&path).await {
                Ok(meta) => meta,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(io(error)),
            };
            if !is_old(&meta) || self.blob_is_referenced(&hash).await? {
                continue;
            }
            if !dry_run {
                // The rows that no longer keep it first: a crash between the two leaves an
                // orphan file for the next sweep, never a row naming a removed file.
                sqlx::query("DELETE FROM device_blobs WHERE sha256 = ?")
                    .bind(&hash)
                    .execute(&self.pool)
                    .await?;
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(error) => return Err(io(error)),
                }
                tracing::info!(sha256 = %hash, bytes = meta.len(), "removed an orphan file");
            }
            report.freed_bytes += meta.len();
            report.removed.push(hash);
        }
        report.removed.sort();
        Ok(report)
    }

    async fn blob_is_referenced(&self, hash: &str) -> Result<bool> {
        let kept_ms = i64::try_from(DEVICE_UPLOAD_KEPT.as_millis()).unwrap_or(i64::MAX);
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM uploads WHERE sha256 = ?1) \
                 OR EXISTS (SELECT 1 FROM device_blobs b JOIN devices d ON d.id = b.device_id \
                            WHERE b.sha256 = ?1 AND d.revoked_at IS NULL AND b.received_at >= ?2)",
        )
        .bind(hash)
        .bind(self.now_ms().saturating_sub(kept_ms))
        .fetch_one(&self.pool)
        .await?)
    }
}
