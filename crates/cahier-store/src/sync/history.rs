//! The identity of the server's history (docs/SYNC.md, "A restored server"): every process
//! that opens the database adds a row to `sync_history` (a random id, the feed sequence then).
//! A backup is a copy of the database file, rows included; a server restored from it adds its
//! own row, starting at the restored sequence. So a replica that names the history id it read
//! its checkpoint under learns whether the server still holds everything up to that
//! checkpoint: the id is unknown (the backup predates it) or a later row starts below the
//! checkpoint (the server went back to before it, then moved on). The sequence alone tells
//! only while it has not grown past the checkpoint again.

use crate::{Result, Store, random_hex};
use cahier_core::Subject;
use sqlx::SqlitePool;

/// Adds this process's row: called once per open, before anything else writes.
pub(crate) async fn open_history(pool: &SqlitePool, now_ms: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO sync_history (id, start_seq, opened_at) \
         SELECT ?, value, ? FROM sync_counter WHERE id = 1",
    )
    .bind(random_hex(16))
    .bind(now_ms)
    .execute(pool)
    .await?;
    Ok(())
}

impl Store {
    /// The id of the current history (the last process that opened the database).
    pub(crate) async fn current_history(&self) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM sync_history ORDER BY n DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Whether this database lost some of the history up to `since`, as seen under the
    /// history `id`: the id is unknown here, or a later history starts below `since`.
    pub(crate) async fn lost_history(&self, id: &str, since: i64) -> Result<bool> {
        let row: Option<i64> = sqlx::query_scalar("SELECT n FROM sync_history WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(n) = row else {
            return Ok(true);
        };
        let next: Option<i64> =
            sqlx::query_scalar("SELECT start_seq FROM sync_history WHERE n > ? ORDER BY n LIMIT 1")
                .bind(n)
                .fetch_optional(&self.pool)
                .await?;
        Ok(next.is_some_and(|start| since > start))
    }

    /// [`Store::feed`], also checking the history the replica read `since` under (`history`,
    /// absent on a first copy or from older replicas): the answer names the current history,
    /// and says `lost` when the server no longer holds everything up to `since`.
    pub async fn feed_in_history(
        &self,
        subject: &Subject,
        since: i64,
        limit: i64,
        history: Option<&str>,
    ) -> Result<crate::sync::proto::FeedResponse> {
        let lost = match history {
            Some(id) if since > 0 => Some(self.lost_history(id, since).await?),
            _ => None,
        };
        let mut feed = self.feed(subject, since, limit).await?;
        // Read after the sequence's end (inside `feed`): a history begun between the two reads
        // starts at or above that end, so naming it with this `next` is never a false alarm.
        feed.history = self.current_history().await?;
        feed.lost = lost.filter(|lost| *lost);
        Ok(feed)
    }
}
