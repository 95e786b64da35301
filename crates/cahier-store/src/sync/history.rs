//! Whether the server still holds what a replica saw of it (docs/SYNC.md, "A restored
//! server"). A backup is a copy of the database; a server restored from it has lost what was
//! written after, and its feed sequence, once it has grown past a replica's checkpoint again,
//! no longer shows it.
//!
//! Two marks tell. Every value the feed sequence takes gets a random stamp in the
//! transaction that moves it (`sync_stamps`, migration 35), so a mark `<seq>.<stamp>` is held
//! by exactly the databases whose history passed through that write: a backup taken before
//! lacks it, and the same value taken again after a restore gets another stamp. This is true
//! whatever the restore: a copy put back before a restart, or SQLite's backup API writing into
//! the file under the running server, which nothing in the process sees. The feed answers the
//! mark of the end of the sequence it read, in the same read transaction as its page, and a
//! push the mark of the end of the sequence in each of its transactions; a replica names them
//! back (`history`, `pushed`, `after`), and one lookup by key answers. Older replicas hold the
//! id of a process's history instead (migration 32: every process that opens the database
//! adds a row to `sync_history`, with the sequence then), checked as before: unknown, or a
//! later history starting below the checkpoint. That check misses a restore under a running
//! process, which starts no history; the first sync of such a replica against this server
//! gives it a mark.

use crate::{Result, Store, invalid, random_hex};
use cahier_core::Subject;
use sqlx::{SqliteConnection, SqlitePool};

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

/// A value of the feed sequence and its stamp, as `<seq>.<stamp, 16 hex digits>` on the wire.
/// The ids of `sync_history` are hex digits only, so the two never look alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    seq: i64,
    stamp: i64,
}

impl Mark {
    /// Parses a mark; `None` for anything else (an old history id, or garbage).
    fn parse(text: &str) -> Option<Self> {
        let (seq, stamp) = text.split_once('.')?;
        if stamp.len() != 16 || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            seq: seq.parse().ok()?,
            stamp: u64::from_str_radix(stamp, 16).ok()?.cast_signed(),
        })
    }

    /// A mark named in a request as `field`: 422 when it is not one.
    pub(crate) fn named(field: &str, text: &str) -> Result<Self> {
        Self::parse(text).ok_or_else(|| invalid(field, "not a mark of this server's history"))
    }

    /// The end of the sequence as `conn` sees it (in a write transaction: with what it wrote),
    /// stamped. `None` only before migration 35 stamped a value.
    pub(crate) async fn now(conn: &mut SqliteConnection) -> Result<Option<Self>> {
        // The first stamp at or above the end: a value moved past at once is stamped only at
        // the end of the move, by the same transaction.
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT seq, stamp FROM sync_stamps \
             WHERE seq >= (SELECT value FROM sync_counter WHERE id = 1) ORDER BY seq LIMIT 1",
        )
        .fetch_optional(&mut *conn)
        .await?;
        Ok(row.map(|(seq, stamp)| Self { seq, stamp }))
    }

    /// Whether the database `conn` reads holds this mark: its history passed through it.
    pub(crate) async fn is_held(&self, conn: &mut SqliteConnection) -> Result<bool> {
        let stamp: Option<i64> = sqlx::query_scalar("SELECT stamp FROM sync_stamps WHERE seq = ?")
            .bind(self.seq)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(stamp == Some(self.stamp))
    }
}

impl std::fmt::Display for Mark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:016x}", self.seq, self.stamp.cast_unsigned())
    }
}

/// What a replica names as the history its checkpoint was read under.
enum Named<'a> {
    /// A mark (servers from migration 35 on).
    Mark(Mark),
    /// The id of a process's history (servers of sessions 8 to 10).
    Process(&'a str),
}

/// The id of the current process history (the last process that opened the database).
async fn current_history(conn: &mut SqliteConnection) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM sync_history ORDER BY n DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// Whether this database lost some of the history up to `since`, as seen under the process
/// history `id` (named by replicas of servers from before migration 35): the id is unknown
/// here, or a later history starts below `since`.
async fn lost_process_history(conn: &mut SqliteConnection, id: &str, since: i64) -> Result<bool> {
    let row: Option<i64> = sqlx::query_scalar("SELECT n FROM sync_history WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(n) = row else {
        return Ok(true);
    };
    let next: Option<i64> =
        sqlx::query_scalar("SELECT start_seq FROM sync_history WHERE n > ? ORDER BY n LIMIT 1")
            .bind(n)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(next.is_some_and(|start| since > start))
}

impl Store {
    /// [`Store::feed`], also checking what the replica saw of the server: the history it
    /// read `since` under (`history`, absent on a first copy or from older replicas) and the
    /// mark of its last acknowledged push not yet covered by a feed read (`pushed`). The
    /// answer carries the mark of the end of the sequence it read, and says `lost` when the
    /// server no longer holds either. One read transaction: the checks, the page and the mark
    /// see the same database, whatever a restore does meanwhile.
    pub async fn feed_in_history(
        &self,
        subject: &Subject,
        since: i64,
        limit: i64,
        history: Option<&str>,
        pushed: Option<&str>,
    ) -> Result<crate::sync::proto::FeedResponse> {
        // A mark-shaped history that is not one, or a `pushed` that is not a mark, is a
        // request error; any other history is an old process id (unknown: lost).
        let history = match history {
            Some(text) if text.contains('.') => Some(Named::Mark(Mark::named("history", text)?)),
            Some(id) => Some(Named::Process(id)),
            None => None,
        };
        let pushed = pushed.map(|text| Mark::named("pushed", text)).transpose()?;
        let mut tx = self.pool.begin().await?;
        let mut lost = false;
        match history {
            // A mark below `since` (an older replica reading its second page names the mark of
            // the sync's start) answers for what it covers.
            Some(Named::Mark(mark)) if since > 0 => lost |= !mark.is_held(&mut tx).await?,
            Some(Named::Process(id)) if since > 0 => {
                lost |= lost_process_history(&mut tx, id, since).await?;
            }
            _ => {}
        }
        if let Some(mark) = pushed {
            lost |= !mark.is_held(&mut tx).await?;
        }
        let mut feed = self.feed_on(&mut tx, subject, since, limit).await?;
        feed.history = match Mark::now(&mut tx).await? {
            Some(mark) => Some(mark.to_string()),
            None => current_history(&mut tx).await?,
        };
        tx.commit().await?;
        feed.lost = lost.then_some(true);
        Ok(feed)
    }
}

#[cfg(test)]
mod tests;
