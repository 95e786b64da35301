//! The replica's record of the files the lab is known to hold (`replica_known_blobs`,
//! migration 34; docs/SYNC.md, "Files known to be on the server"), so that a push asks the lab
//! about a file (`HEAD /blobs/{sha256}`) once, not at every push of every entry that references
//! it. What the lab answered, sent or listed is recorded here; the sync engine (`cahier_sync`)
//! forgets it when the lab may have lost files. This module only keeps the record: it never
//! decides that a file may be skipped on its own.

use crate::{Result, Store, invalid};
use sqlx::SqliteConnection;
use std::collections::HashSet;

/// Hashes per statement (a JSON list bound once, well under any limit).
const CHUNK: usize = 5_000;

fn json_list(hashes: &[String]) -> Result<String> {
    serde_json::to_string(hashes).map_err(|e| invalid("sha256", e.to_string()))
}

/// Records, inside a pull's transaction, the files the lab listed in the `uploads` rows of the
/// entries it sent: it lists only files it holds.
pub(super) async fn record_listed(conn: &mut SqliteConnection, hashes: &[String]) -> Result<()> {
    for chunk in hashes.chunks(CHUNK) {
        sqlx::query(
            "INSERT OR IGNORE INTO replica_known_blobs (sha256) SELECT value FROM json_each(?)",
        )
        .bind(json_list(chunk)?)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl Store {
    /// Of these hashes, those the lab is known to hold.
    pub async fn blobs_on_server(&self, hashes: &[String]) -> Result<HashSet<String>> {
        let mut known = HashSet::new();
        for chunk in hashes.chunks(CHUNK) {
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT sha256 FROM replica_known_blobs \
                 WHERE sha256 IN (SELECT value FROM json_each(?))",
            )
            .bind(json_list(chunk)?)
            .fetch_all(&self.pool)
            .await?;
            known.extend(rows);
        }
        Ok(known)
    }

    /// Records that the lab holds these files (it answered so, took them, or sent them).
    pub async fn record_blobs_on_server(&self, hashes: &[String]) -> Result<()> {
        if hashes.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await?;
        record_listed(&mut conn, hashes).await
    }

    /// Forgets that the lab holds these files: the next push asks again.
    pub async fn forget_blobs_on_server(&self, hashes: &[String]) -> Result<()> {
        for chunk in hashes.chunks(CHUNK) {
            sqlx::query(
                "DELETE FROM replica_known_blobs WHERE sha256 IN (SELECT value FROM json_each(?))",
            )
            .bind(json_list(chunk)?)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }
}

/// Forgets every file the lab was known to hold (it was restored from an older backup), in
/// the transaction that starts reading its whole feed again ([`Store::begin_rescan`]).
pub(super) async fn forget_all(conn: &mut SqliteConnection) -> Result<()> {
    sqlx::query("DELETE FROM replica_known_blobs")
        .execute(&mut *conn)
        .await?;
    Ok(())
}
