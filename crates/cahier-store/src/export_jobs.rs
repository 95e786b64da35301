//! Background `.eln` exports: a job row per request (migration 15), run by a task the web
//! layer spawns. The job resolves its scope through the access policy of the user who asked
//! (`access_sql::readable_by`), writes the archive entity by entity into `<data>/exports/`
//! (progress in the row after each entity) and records the file when done. Only the owner of
//! a job sees it or downloads its file. Every export file is written through the blob store's
//! [`crate::blobs::BlobStore::content_sink`]: on a field replica it is sealed with the
//! replica's key and decrypted only as it is streamed to its owner ([`Store::open_export_job_file`]);
//! the recorded size is the content's. A done job may carry a note (what a field replica had
//! to leave out).

use crate::eln_export::LeftOut;
use crate::{Result, Store, StoreError, access_sql, invalid};
use cahier_core::Subject;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::path::PathBuf;

/// What an export covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportScope {
    /// Experiments by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub experiments: Vec<i64>,
    /// Resources by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<i64>,
    /// Every experiment and resource this user owns (that the requester may read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<i64>,
    /// Every experiment and resource of this team (that the requester may read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<i64>,
    /// The experiments and resources a search finds (the list's `q`: words and `field:`
    /// filters), up to the list limit of 10,000 each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// One export job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportJob {
    /// Id.
    pub id: i64,
    /// Who asked.
    pub user_id: i64,
    /// What it covers.
    pub scope: ExportScope,
    /// `eln`, `zip`, `zipa`, `pdf` or `pdfa` ([`EXPORT_FORMATS`]).
    pub format: String,
    /// `queued`, `running`, `done` or `failed`.
    pub state: String,
    /// Entities to write.
    pub total: i64,
    /// Entities written.
    pub done: i64,
    /// Size of the file, once done.
    pub file_size: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
    /// For a finished job, what its file leaves out (attachment files a field replica could
    /// not fetch), in the language of whoever asked; `None` when it holds everything.
    pub note: Option<String>,
    /// Created, ms.
    pub created_at: i64,
    /// Finished, ms.
    pub finished_at: Option<i64>,
    #[serde(skip)]
    file_name: Option<String>,
}

/// The formats a background export writes: `.eln` (here), and, written by the web layer
/// through [`Store::begin_export_job`] … [`Store::finish_export_job`], eLabFTW's `zip` and
/// `zipa` (a folder per entry with its JSON, its PDF or PDF/A and its attachments) and one
/// archival PDF of the whole selection (`pdf`: PDF/A-2b, `pdfa`: PDF/A-3b with the proofs).
pub const EXPORT_FORMATS: [&str; 5] = ["eln", "zip", "zipa", "pdf", "pdfa"];

/// The file extension of a format's output.
pub fn export_extension(format: &str) -> &'static str {
    match format {
        "zip" | "zipa" => "zip",
        "pdf" | "pdfa" => "pdf",
        _ => "eln",
    }
}

const COLUMNS: &str = "id, user_id, scope, format, state, total, done, file_name, file_size, error, note, \
     created_at, finished_at";

fn from_row(row: &sqlx::sqlite::SqliteRow) -> ExportJob {
    let scope: String = row.get("scope");
    ExportJob {
        id: row.get("id"),
        user_id: row.get("user_id"),
        scope: serde_json::from_str(&scope).unwrap_or_default(),
        format: row.get("format"),
        state: row.get("state"),
        total: row.get("total"),
        done: row.get("done"),
        file_name: row.get("file_name"),
        file_size: row.get("file_size"),
        error: row.get("error"),
        note: row.get("note"),
        created_at: row.get("created_at"),
        finished_at: row.get("finished_at"),
    }
}

impl Store {
    /// Where finished exports are kept: `<data>/exports`.
    pub fn exports_dir(&self) -> Result<PathBuf> {
        let root = self.blob_store()?.root();
        Ok(root.parent().unwrap_or(root).join("exports"))
    }

    /// Records a job for `subject`; checks the scope now (ids readable, user or team named)
    /// so a bad request is refused at once. Run it with [`Store::run_export_job`].
    pub async fn create_export_job(&self, subject: &Subject, scope: &ExportScope) -> Result<i64> {
        self.create_export_job_as(subject, scope, "eln").await
    }

    /// [`Store::create_export_job`] in one of [`EXPORT_FORMATS`].
    pub async fn create_export_job_as(
        &self,
        subject: &Subject,
        scope: &ExportScope,
        format: &str,
    ) -> Result<i64> {
        if !EXPORT_FORMATS.contains(&format) {
            return Err(invalid(
                "format",
                format!("expected one of {}", EXPORT_FORMATS.join(", ")),
            ));
        }
        let ids = self.export_scope_ids(subject, scope).await?;
        if ids.is_empty() {
            return Err(invalid(
                "scope",
                "nothing to export: the scope holds no entry you may read",
            ));
        }
        let scope_json = serde_json::to_string(scope)
            .map_err(|e| invalid("scope", format!("cannot be stored: {e}")))?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO export_jobs (user_id, scope, format, total, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(subject.user_id)
        .bind(scope_json)
        .bind(format)
        .bind(i64::try_from(ids.len()).unwrap_or(i64::MAX))
        .bind(self.now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// The entity ids a scope covers, in a stable order, all readable by `subject`.
    pub async fn export_scope_ids(
        &self,
        subject: &Subject,
        scope: &ExportScope,
    ) -> Result<Vec<i64>> {
        let mut ids = Vec::new();
        for (list, kind) in [
            (&scope.experiments, cahier_core::EntityKind::Experiment),
            (&scope.items, cahier_core::EntityKind::Resource),
        ] {
            for id in list {
                self.entity_of_kind(subject, kind, *id).await?;
                if !ids.contains(id) {
                    ids.push(*id);
                }
            }
        }
        let readable = access_sql::readable_by(subject);
        let wide = |column: &'static str, value: i64| {
            let sql = format!(
                "SELECT e.id FROM entities e WHERE e.{column} = ? AND e.state IN (1, 2) \
                 AND e.kind IN ('experiment', 'resource') AND ({readable}) ORDER BY e.id"
            );
            (sql, value)
        };
        let mut queries = Vec::new();
        if let Some(user) = scope.user {
            queries.push(wide("owner_id", user));
        }
        if let Some(team) = scope.team {
            if !subject.is_member(team) && !subject.is_sysadmin {
                return Err(StoreError::NotFound("team"));
            }
            queries.push(wide("team_id", team));
        }
        for (sql, value) in queries {
            let found: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(value)
                .fetch_all(&self.pool)
                .await?;
            for id in found {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        if let Some(q) = scope.query.as_deref().filter(|q| !q.trim().is_empty()) {
            let (words, fields) = crate::field_filter::parse(q)?;
            for kind in [
                cahier_core::EntityKind::Experiment,
                cahier_core::EntityKind::Resource,
            ] {
                let mut query = crate::listing::ListQuery::new(kind);
                query.q = words.clone();
                query.fields = fields.clone();
                query.limit = crate::listing::MAX_LIMIT;
                for row in self.list_entities(subject, &query).await?.rows {
                    if !ids.contains(&row.id) {
                        ids.push(row.id);
                    }
                }
            }
        }
        Ok(ids)
    }

    /// Marks the jobs a stopped server left queued or running as failed (their task is gone);
    /// called at startup. Removes their partial files. Returns how many there were.
    pub async fn fail_interrupted_export_jobs(&self) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE export_jobs SET state = 'failed', error = 'interrupted by a server restart; start it again', \
             finished_at = ? WHERE state IN ('queued', 'running')",
        )
        .bind(self.now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if done > 0
            && let Ok(dir) = self.exports_dir()
            && let Ok(mut entries) = tokio::fs::read_dir(&dir).await
        {
            while let Ok(Some(entry)) = entries.next_entry().await {
                if entry.file_name().to_string_lossy().ends_with(".part") {
                    let _ = tokio::fs::remove_file(entry.path()).await;
                }
            }
        }
        Ok(done)
    }

    /// The jobs of `subject`, newest first.
    pub async fn export_jobs(&self, subject: &Subject) -> Result<Vec<ExportJob>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM export_jobs WHERE user_id = ? ORDER BY id DESC LIMIT 100"
        )))
        .bind(subject.user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// One job of `subject` (another user's is "not found").
    pub async fn export_job(&self, subject: &Subject, id: i64) -> Result<ExportJob> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM export_jobs WHERE id = ? AND user_id = ?"
        )))
        .bind(id)
        .bind(subject.user_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("export"))?;
        Ok(from_row(&row))
    }

    /// The finished file of a job of `subject`.
    pub async fn export_job_file(&self, subject: &Subject, id: i64) -> Result<PathBuf> {
        let job = self.export_job(subject, id).await?;
        match (job.state.as_str(), job.file_name) {
            ("done", Some(name)) => Ok(self.exports_dir()?.join(name)),
            _ => Err(StoreError::Conflict(
                "this export is not finished yet".into(),
            )),
        }
    }

    /// The finished file of a job of `subject`, opened for streaming (decrypted on a replica).
    pub async fn open_export_job_file(
        &self,
        subject: &Subject,
        id: i64,
    ) -> Result<crate::blobs::BlobReader> {
        let path = self.export_job_file(subject, id).await?;
        self.blob_store()?
            .open_content(&path)
            .await
            .map_err(|error| match error {
                crate::blobs::BlobError::NotFound => StoreError::NotFound("export file"),
                other => StoreError::Conflict(format!("reading the export failed: {other}")),
            })
    }

    /// Runs a queued job to its end, recording success or failure in its row (never panics,
    /// never leaves a half-written file named in the row).
    pub async fn run_export_job(&self, subject: &Subject, id: i64) -> Result<()> {
        self.run_export_job_leaving_out(subject, id, &LeftOut::default())
            .await
    }

    /// [`Store::run_export_job`] leaving out the attachment files of `left_out` (a field
    /// replica that could not fetch them): the archive names them in its note, and the done
    /// job's `note` is `left_out.summary`.
    pub async fn run_export_job_leaving_out(
        &self,
        subject: &Subject,
        id: i64,
        left_out: &LeftOut,
    ) -> Result<()> {
        let job = self.export_job(subject, id).await?;
        sqlx::query("UPDATE export_jobs SET state = 'running' WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        let outcome = self.write_export_job(subject, &job, left_out).await;
        let now = self.now_ms();
        match &outcome {
            Ok((name, size)) => {
                sqlx::query(
                    "UPDATE export_jobs SET state = 'done', done = total, file_name = ?, file_size = ?, \
                     note = ?, finished_at = ? WHERE id = ?",
                )
                .bind(name)
                .bind(*size)
                .bind(left_out.summary.as_deref())
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?;
            }
            Err(error) => {
                tracing::warn!(job_id = id, error = %error, "export job failed");
                sqlx::query(
                    "UPDATE export_jobs SET state = 'failed', error = ?, finished_at = ? WHERE id = ?",
                )
                .bind(error.to_string())
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?;
            }
        }
        outcome.map(|_| ())
    }

    /// Marks a job of `subject` running and returns it with the name its file will have and
    /// the temporary path to write it to (renamed by [`Store::finish_export_job`]).
    pub async fn begin_export_job(
        &self,
        subject: &Subject,
        id: i64,
    ) -> Result<(ExportJob, String, PathBuf)> {
        let job = self.export_job(subject, id).await?;
        sqlx::query("UPDATE export_jobs SET state = 'running' WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        let dir = self.exports_dir()?;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| StoreError::Conflict(format!("writing the export failed: {e}")))?;
        let name = format!(
            "export-{}-{}.{}",
            job.id,
            crate::random_hex(8),
            export_extension(&job.format)
        );
        let partial = dir.join(format!("{name}.part"));
        Ok((job, name, partial))
    }

    /// Records how many entities a running job has written.
    pub async fn export_job_progress(&self, id: i64, done: usize) -> Result<()> {
        sqlx::query("UPDATE export_jobs SET done = ? WHERE id = ?")
            .bind(i64::try_from(done).unwrap_or(i64::MAX))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends a job begun with [`Store::begin_export_job`]: on success its temporary file takes
    /// its final name and the job is done, with the note given (what the file leaves out, if
    /// anything); on failure the file is removed and the job failed.
    pub async fn finish_export_job(
        &self,
        id: i64,
        name: &str,
        outcome: std::result::Result<Option<String>, String>,
    ) -> Result<()> {
        let dir = self.exports_dir()?;
        let partial = dir.join(format!("{name}.part"));
        let note = outcome.as_ref().ok().cloned().flatten();
        let renamed = match outcome {
            Ok(_) => {
                let blobs = self.blob_store()?;
                let size = tokio::fs::metadata(&partial)
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|m| blobs.content_len(m.len()).map_err(|e| e.to_string()));
                match size {
                    Ok(size) => tokio::fs::rename(&partial, dir.join(name))
                        .await
                        .map(|()| size)
                        .map_err(|e| format!("writing the export failed: {e}")),
                    Err(e) => Err(format!("writing the export failed: {e}")),
                }
            }
            Err(error) => Err(error),
        };
        let now = self.now_ms();
        match renamed {
            Ok(size) => {
                sqlx::query(
                    "UPDATE export_jobs SET state = 'done', done = total, file_name = ?, file_size = ?, \
                     note = ?, finished_at = ? WHERE id = ?",
                )
                .bind(name)
                .bind(i64::try_from(size).unwrap_or(i64::MAX))
                .bind(note)
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?;
            }
            Err(error) => {
                let _ = tokio::fs::remove_file(&partial).await;
                tracing::warn!(job_id = id, error = %error, "export job failed");
                sqlx::query(
                    "UPDATE export_jobs SET state = 'failed', error = ?, finished_at = ? WHERE id = ?",
                )
                .bind(error)
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }

    async fn write_export_job(
        &self,
        subject: &Subject,
        job: &ExportJob,
        left_out: &LeftOut,
    ) -> Result<(String, i64)> {
        let ids = self.export_scope_ids(subject, &job.scope).await?;
        let dir = self.exports_dir()?;
        let io =
            |e: std::io::Error| StoreError::Conflict(format!("writing the export failed: {e}"));
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        let name = format!("export-{}-{}.eln", job.id, crate::random_hex(8));
        let partial = dir.join(format!("{name}.part"));
        // Written through the blob store: sealed with the replica's key on a field replica,
        // so the archive never lies in clear on the laptop's disk.
        let blobs = self.blob_store()?;
        let file = std::fs::File::create(&partial).map_err(io)?;
        let sink = blobs.content_sink(file).map_err(io)?;
        let pool = self.pool.clone();
        let job_id = job.id;
        // Progress goes to the row from a watcher, so the writer never waits on the database.
        let (progress_tx, mut progress_rx) = tokio::sync::watch::channel(0usize);
        let watcher = tokio::spawn(async move {
            while progress_rx.changed().await.is_ok() {
                let done = i64::try_from(*progress_rx.borrow_and_update()).unwrap_or(i64::MAX);
                let _ = sqlx::query("UPDATE export_jobs SET done = ? WHERE id = ?")
                    .bind(done)
                    .bind(job_id)
                    .execute(&pool)
                    .await;
            }
        });
        let written = self
            .export_eln_stream(subject, &ids, sink, "Cahier", left_out, move |n| {
                let _ = progress_tx.send(n);
            })
            .await;
        let _ = watcher.await;
        let file = match written.and_then(|sink| sink.finish().map_err(io)) {
            Ok(file) => file,
            Err(error) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(error);
            }
        };
        file.sync_all().map_err(io)?;
        drop(file);
        let stored = tokio::fs::metadata(&partial).await.map_err(io)?.len();
        let size = blobs
            .content_len(stored)
            .map_err(|e| StoreError::Conflict(format!("writing the export failed: {e}")))?;
        tokio::fs::rename(&partial, dir.join(&name))
            .await
            .map_err(io)?;
        Ok((name, i64::try_from(size).unwrap_or(i64::MAX)))
    }
}
