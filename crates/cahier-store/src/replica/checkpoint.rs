//! The replica's feed checkpoint and what it knows of the server's history (docs/SYNC.md, "A
//! restored server"), in `replica_state`: the checkpoint (`feed_since`), the mark of the
//! server's history it was read under (`feed_history`), the mark of the last acknowledged push
//! that no feed read covered yet (`feed_pushed`), and whether a whole reading of the feed after
//! a restore is under way (`feed_rescan`). Whatever moves together is written in one
//! transaction, so a sync cut anywhere leaves a state the next sync checks as it should. This
//! module only keeps these values; the sync engine decides when they move.

use crate::{Result, Store};
use sqlx::SqliteConnection;

/// The feed checkpoint: the server's sequence up to which everything was pulled.
pub const FEED_SINCE: &str = "feed_since";
/// What the server answered as its history when the checkpoint was read.
pub const FEED_HISTORY: &str = "feed_history";
/// The mark the last acknowledged push carried, until a feed read covers it.
pub const FEED_PUSHED: &str = "feed_pushed";
/// Set while the feed is read whole again after the server turned out restored: a sync cut
/// before the end starts that reading again rather than following the checkpoint it reached.
pub const FEED_RESCAN: &str = "feed_rescan";

pub(crate) async fn set(conn: &mut SqliteConnection, key: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO replica_state (key, value) VALUES (?, ?) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Ends a whole reading of the feed (in the transaction that made the entries the server
/// did not list local again).
pub(crate) async fn end_rescan(conn: &mut SqliteConnection) -> Result<()> {
    sqlx::query("DELETE FROM replica_state WHERE key = ?")
        .bind(FEED_RESCAN)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// Moves the checkpoint to `since`, read under `history` (kept as it was when `None`: an
    /// older server), in one transaction; and forgets the push mark `covered` if it is still
    /// the one kept: the page that moved the checkpoint was read in the same state as the
    /// server's check that it held that mark, and `history` marks that state, so checking
    /// `history` from now on checks the push too.
    pub async fn reach_checkpoint(
        &self,
        since: i64,
        history: Option<&str>,
        covered: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(history) = history {
            set(&mut tx, FEED_HISTORY, history).await?;
        }
        set(&mut tx, FEED_SINCE, &since.to_string()).await?;
        if let Some(mark) = covered {
            sqlx::query("DELETE FROM replica_state WHERE key = ? AND value = ?")
                .bind(FEED_PUSHED)
                .bind(mark)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Starts reading the server's whole feed again, once it turned out restored from an
    /// older backup: in one transaction, marks the reading as under way (until
    /// [`Store::forget_unseen`]), forgets which files the server was known to hold (they may be
    /// gone with the rest, so each is asked about again before a push names it) and the
    /// push mark it lost, and takes the checkpoint back to 0.
    pub async fn begin_rescan(&self) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        set(&mut tx, FEED_RESCAN, "1").await?;
        super::known_blobs::forget_all(&mut tx).await?;
        sqlx::query("DELETE FROM replica_state WHERE key IN (?, ?)")
            .bind(FEED_PUSHED)
            .bind(FEED_HISTORY)
            .execute(&mut *tx)
            .await?;
        set(&mut tx, FEED_SINCE, "0").await?;
        tx.commit().await?;
        Ok(())
    }
}
