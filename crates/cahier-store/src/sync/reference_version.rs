//! The version of a replica's reference records (`GET /reference`), so that a sync with
//! nothing to do is answered "unchanged" without building them (issue #5: a sync with nothing
//! to do costs a few ms). It must never say "unchanged" when a record the replica would receive
//! has changed: it is made of the `reference_version` counter, which triggers on every table
//! the records are read from move (migration 29), the feed's `sync_counter`, which every write
//! to an entry moves (owners and readable entries decide which users are listed), the user,
//! the startup time zone, and a random token of this process (a server restored from a backup
//! restarts, and its counters may then reach again values a replica saw before the restore).
//! A restore under the running server (SQLite's backup API into the live file) keeps the
//! process, so the two counters' stamps are part of it too (migration 35): each move of a
//! counter draws a new random stamp, and values reached again after a restore carry others.
//! It must not read the records themselves: a few single-row reads, whatever the lab's size.

use crate::{Result, Store, random_hex};
use cahier_core::Subject;
use std::sync::OnceLock;

/// A random token of this process, part of every version it gives.
fn process_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| random_hex(8))
}

impl Store {
    /// The version of the reference records `subject`'s replica would receive now. Read before
    /// the records: a change made while they are built gives a newer version next time.
    pub async fn reference_version(&self, subject: &Subject) -> Result<String> {
        let (references, reference_stamp, entries, entry_stamp): (i64, i64, i64, Option<i64>) =
            sqlx::query_as(
                "SELECT r.value, r.stamp, c.value, \
                 (SELECT stamp FROM sync_stamps WHERE seq = c.value) \
                 FROM reference_version r, sync_counter c WHERE r.id = 1 AND c.id = 1",
            )
            .fetch_one(&self.pool)
            .await?;
        Ok(format!(
            "{}.{}.{references}-{:x}.{entries}-{:x}.{}",
            process_token(),
            subject.user_id,
            reference_stamp.cast_unsigned(),
            entry_stamp.unwrap_or(0).cast_unsigned(),
            self.default_zone.name()
        ))
    }

    /// The reference records for `subject` with their version, or `None` when `held` is
    /// that version already (the replica holds them).
    pub async fn reference_if_changed(
        &self,
        subject: &Subject,
        held: Option<&str>,
    ) -> Result<Option<super::proto::Reference>> {
        let version = self.reference_version(subject).await?;
        if held == Some(version.as_str()) {
            return Ok(None);
        }
        let mut reference = self.reference(subject).await?;
        reference.version = Some(version);
        Ok(Some(reference))
    }
}
