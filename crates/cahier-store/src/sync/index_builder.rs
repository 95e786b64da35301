//! The background builder of the fast path's index (docs/SYNC.md, "Fast path"). Every server
//! write keeps an entry's index current ([`Store::index_write`]); entries written before
//! migration 26 (or whose index a concurrent write left behind) have none at their heads, and
//! their first push would rebuild it from the whole change log. The server builds those at
//! start, in the background, a small batch at a time: the logs are read without the write
//! lock, decoded on one blocking thread, and each index is stored only if the entry is still
//! at the heads it was built for (compare and set), in a short write transaction. A batch waits
//! until no push has run for a moment: pushes come first.

use super::fast_push::{build_index, save_index_at};
use crate::{Result, Store};
use std::time::Instant;

/// Entries indexed per batch (one short write transaction).
const BATCH: i64 = 16;

/// Passes over the entries at most: a pass retries what concurrent writes made it skip.
const PASSES: usize = 3;

/// How long pushes must have stopped before a batch starts: a push (a replica waiting) goes
/// first, the builder's CPU and write lock would only slow it down.
const PUSH_QUIET: std::time::Duration = std::time::Duration::from_millis(300);

impl Store {
    /// Builds the index of every entry that has none at its document's heads; returns how
    /// many were stored. After each batch it sleeps `rest` times the batch's duration, so
    /// that requests keep most of the machine.
    pub async fn build_missing_indexes(&self, rest: u32) -> Result<usize> {
        let mut total = 0;
        for _ in 0..PASSES {
            let (built, skipped) = self.index_pass(rest).await?;
            total += built;
            if skipped == 0 {
                break;
            }
        }
        Ok(total)
    }

    /// One pass in id order: stored and skipped (moved meanwhile) entries.
    async fn index_pass(&self, rest: u32) -> Result<(usize, usize)> {
        let (mut built, mut skipped) = (0, 0);
        let mut after = i64::MIN;
        loop {
            while let Some(since) = self.sync_stats.since_push()
                && since < PUSH_QUIET
            {
                tokio::time::sleep(PUSH_QUIET - since).await;
            }
            let started = Instant::now();
            let todo: Vec<(i64, String)> = sqlx::query_as(
                "SELECT d.entity_id, d.heads FROM entity_docs d \
                 LEFT JOIN entity_doc_index x ON x.entity_id = d.entity_id \
                 WHERE d.entity_id > ? AND (x.heads IS NULL OR x.heads != d.heads) \
                 ORDER BY d.entity_id LIMIT ?",
            )
            .bind(after)
            .bind(BATCH)
            .fetch_all(&self.pool)
            .await?;
            let Some((last, _)) = todo.last() else {
                break;
            };
            after = *last;
            let mut logs = Vec::with_capacity(todo.len());
            for (id, heads) in todo {
                let rows: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
                    "SELECT hash, deps, bytes FROM entity_changes WHERE entity_id = ?",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                logs.push((id, heads, rows));
            }
            let indexes = tokio::task::spawn_blocking(move || {
                logs.into_iter()
                    .map(|(id, heads, rows)| {
                        let index = build_index(&rows, &heads);
                        (id, heads, index)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            for (id, heads, index) in indexes {
                if save_index_at(&mut tx, id, &heads, index.as_ref()).await? {
                    built += 1;
                } else {
                    skipped += 1;
                }
            }
            tx.commit().await?;
            tokio::time::sleep(started.elapsed().saturating_mul(rest)).await;
        }
        Ok((built, skipped))
    }

    /// The server's background index builder ([`Store::build_missing_indexes`]), run once at
    /// start with a rest of three times its work (a quarter of one core at most).
    pub async fn run_index_builder(self) {
        match self.build_missing_indexes(3).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(indexed = n, "fast-path indexes built"),
            Err(error) => tracing::warn!(%error, "building fast-path indexes"),
        }
    }
}
