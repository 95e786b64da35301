//! Deferred projection (docs/SYNC.md, "Fast path"): an edit accepted by a push without
//! loading its document marks the entry's projection stale (`projection_stale`, in the
//! transaction that accepts it). The projector loads such documents, renders them and writes
//! their projection, only if the document is still at the heads it projected (compare and
//! set; otherwise the entry stays stale and is taken again). The server runs it in the
//! background, woken after each push ([`Store::run_projector`]); a read of one entry projects
//! that entry first when it is stale ([`Store::project_if_stale`]), so only lists and search
//! may lag, by the projector's delay.

use crate::projection::{self, Rows};
use crate::{Result, Store};
use cahier_core::EntityDoc;
use cahier_core::document::heads_to_string;
use std::time::Duration;

/// Stale entries projected per write transaction.
const BATCH: i64 = 64;

/// How long the background projector sleeps when nothing wakes it (it also drains what a
/// crash left stale at start).
const IDLE: Duration = Duration::from_secs(30);

/// How long pushes must have stopped waking the projector before it projects.
const QUIET: Duration = Duration::from_millis(300);

/// The longest the projector waits for pushes to quiet down.
const MAX_DELAY: Duration = Duration::from_secs(3);

/// One document projected outside the write transaction.
struct Projected {
    id: i64,
    heads: String,
    rows: Rows,
    /// The document saved whole, when smaller than the stored bytes (changes appended).
    compact: Option<Vec<u8>>,
    doc: EntityDoc,
}

/// Loads, reads and renders one stored document (CPU only). `None` when it cannot be loaded
/// or is not at `heads` (logged: the entry stays stale).
fn project_doc(id: i64, heads: String, bytes: &[u8]) -> Option<Projected> {
    let mut doc = match EntityDoc::load(bytes) {
        Ok(doc) => doc,
        Err(error) => {
            tracing::error!(entity = id, %error, "a stale entry's document does not load");
            return None;
        }
    };
    if heads_to_string(&doc.heads()) != heads {
        tracing::error!(entity = id, "a stale entry's document is not at its heads");
        return None;
    }
    let content = match doc.content() {
        Ok(content) => content,
        Err(error) => {
            tracing::error!(entity = id, %error, "a stale entry's content cannot be read");
            return None;
        }
    };
    let rendered = projection::render(&content);
    let rows = Rows::of(&content, &rendered);
    let saved = doc.save();
    let compact = (saved.len() < bytes.len()).then_some(saved);
    Some(Projected {
        id,
        heads,
        rows,
        compact,
        doc,
    })
}

impl Store {
    /// Projects every stale entry (those accepted by a push's fast path and not yet
    /// projected); returns how many were projected. What cannot be projected (a document that
    /// does not load) is logged and left stale.
    pub async fn project_stale(&self) -> Result<usize> {
        let mut total = 0;
        let mut after = i64::MIN;
        loop {
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT entity_id FROM projection_stale WHERE entity_id > ? ORDER BY entity_id LIMIT ?",
            )
            .bind(after)
            .bind(BATCH)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = ids.last() else {
                break;
            };
            after = *last;
            total += self.project_ids(&ids, true).await?;
        }
        Ok(total)
    }

    /// Projects entity `id` first if its projection is stale: every read of one entry goes
    /// through here, so it never shows an older version than its document.
    pub(crate) async fn project_if_stale(&self, id: i64) -> Result<()> {
        let stale: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM projection_stale WHERE entity_id = ?)",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        if stale {
            self.project_ids(&[id], false).await?;
        }
        Ok(())
    }

    /// [`Store::project_if_stale`] for entities named by UUID (a pull's documents).
    pub(crate) async fn project_uuids_if_stale(&self, uuids: &[&str]) -> Result<()> {
        for chunk in uuids.chunks(500) {
            let mut builder = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "SELECT s.entity_id FROM projection_stale s JOIN entities e ON e.id = s.entity_id \
                 WHERE e.uuid IN (",
            );
            let mut list = builder.separated(", ");
            for uuid in chunk {
                list.push_bind(*uuid);
            }
            builder.push(")");
            let ids: Vec<i64> = builder.build_query_scalar().fetch_all(&self.pool).await?;
            if !ids.is_empty() {
                self.project_ids(&ids, ids.len() > 1).await?;
            }
        }
        Ok(())
    }

    /// Projects these entities (stale ones; others are skipped) in one write transaction. The
    /// CPU part runs on blocking threads, split in two when `parallel` (both cores).
    async fn project_ids(&self, ids: &[i64], parallel: bool) -> Result<usize> {
        let mut builder = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT d.entity_id, d.heads, d.doc FROM entity_docs d JOIN projection_stale s \
             ON s.entity_id = d.entity_id WHERE d.entity_id IN (",
        );
        let mut list = builder.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        builder.push(")");
        let docs: Vec<(i64, String, Vec<u8>)> =
            builder.build_query_as().fetch_all(&self.pool).await?;
        if docs.is_empty() {
            return Ok(0);
        }
        let work = |part: Vec<(i64, String, Vec<u8>)>| {
            part.into_iter()
                .filter_map(|(id, heads, bytes)| project_doc(id, heads, &bytes))
                .collect::<Vec<_>>()
        };
        let projected = if parallel && docs.len() > 1 {
            let mut first = docs;
            let second = first.split_off(first.len() / 2);
            let a = tokio::task::spawn_blocking(move || work(first));
            let b = tokio::task::spawn_blocking(move || work(second));
            let (a, b) = (a.await, b.await);
            let mut all = a.unwrap_or_default();
            all.extend(b.unwrap_or_default());
            all
        } else {
            tokio::task::spawn_blocking(move || work(docs))
                .await
                .unwrap_or_default()
        };
        if projected.is_empty() {
            return Ok(0);
        }
        let mut written = Vec::with_capacity(projected.len());
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // The projection changes no document: the feed does not move for it.
        sqlx::query("INSERT OR IGNORE INTO sync_seq_quiet (id) VALUES (1)")
            .execute(&mut *tx)
            .await?;
        for p in projected {
            let current: Option<(String, i64, i64)> = sqlx::query_as(
                "SELECT d.heads, e.modified_at, e.lastchangeby FROM entity_docs d \
                 JOIN entities e ON e.id = d.entity_id WHERE d.entity_id = ?",
            )
            .bind(p.id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((heads, modified_at, changed_by)) = current else {
                continue;
            };
            if heads != p.heads {
                // Changed meanwhile: it stays stale, for the next round.
                continue;
            }
            projection::write_rows(&mut tx, p.id, &p.rows, &p.heads, modified_at, changed_by)
                .await?;
            if let Some(compact) = &p.compact {
                sqlx::query("UPDATE entity_docs SET doc = ? WHERE entity_id = ? AND heads = ?")
                    .bind(compact)
                    .bind(p.id)
                    .bind(&p.heads)
                    .execute(&mut *tx)
                    .await?;
            }
            written.push((p.id, p.heads, p.doc));
        }
        sqlx::query("DELETE FROM sync_seq_quiet")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let n = written.len();
        for (id, heads, doc) in written {
            self.cache_put(id, heads, doc);
        }
        Ok(n)
    }

    /// The server's background projector: drains stale entries at start (those a crash left)
    /// and once pushes quiet down after waking it. Runs until its task is aborted.
    ///
    /// A push of many documents commits (and wakes it) every 50 documents; projecting is
    /// ~10–15 ms of CPU per document, more than accepting it. So it waits until no push has
    /// woken it for [`QUIET`] (at most [`MAX_DELAY`] after the first wake): on a small
    /// machine it then does not take the CPU the rest of the push needs. Reads of one entry
    /// project it on demand meanwhile.
    pub async fn run_projector(self) {
        loop {
            match self.project_stale().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(projected = n, "stale entries projected"),
                Err(error) => tracing::warn!(%error, "projecting stale entries"),
            }
            if tokio::time::timeout(IDLE, self.stale_wake.notified())
                .await
                .is_ok()
            {
                let woken = tokio::time::Instant::now();
                while woken.elapsed() < MAX_DELAY
                    && tokio::time::timeout(QUIET, self.stale_wake.notified())
                        .await
                        .is_ok()
                {}
            }
        }
    }

    /// Pushes accepted without loading their document ([`crate::sync::SyncStats`]).
    pub fn sync_stats(&self) -> &crate::sync::SyncStats {
        &self.sync_stats
    }

    /// How many entries have a stale projection.
    pub async fn stale_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM projection_stale")
            .fetch_one(&self.pool)
            .await?)
    }
}

#[cfg(test)]
mod tests;
