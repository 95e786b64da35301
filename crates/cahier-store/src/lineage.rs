//! What this process remembers of the database it writes to, and what it forgets when the
//! database is put back to an older state under it (docs/SYNC.md, "A restored server"): a
//! sysadmin may write a backup into the live file with SQLite's backup API while the server
//! runs, and nothing tells the process.
//!
//! What must not outlive such a restore is the process's Automerge actors (one per user, kept
//! in memory, [`Store::actor_for`](crate::Store)): Automerge numbers an actor's changes in a
//! document one after the other, so after a restore the next edit of a document with the same
//! actor would reuse the number of an edit the restore removed, which a replica may hold, and
//! the two could never be merged (`DuplicateSeqNumber`). Before each edit with a process actor,
//! in its write transaction, the database is checked to still hold the mark of the feed
//! sequence this process's last such edit left ([`crate::sync::history`]); when it does not,
//! the actors are forgotten (new ones are drawn) and so are the API keys' grants in memory.
//! The check runs under the write lock, so however many requests see the restore at once, one
//! forgets and the next ones find the mark of its edit. This module never decides access.

use crate::sync::history::Mark;
use crate::{Result, Store};
use sqlx::SqliteConnection;
use std::sync::Mutex;

/// The mark the last edit with a process actor left (`None` before the first).
#[derive(Debug, Default)]
pub(crate) struct Lineage {
    written: Mutex<Option<Mark>>,
}

impl Lineage {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Mark>> {
        match self.written.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl Store {
    /// Before an edit with a process actor, in its write transaction: forgets the actors and
    /// the grants in memory when the database lost this process's last such edit.
    pub(crate) async fn check_lineage(&self, conn: &mut SqliteConnection) -> Result<()> {
        let written = *self.lineage.lock();
        let Some(mark) = written else {
            return Ok(());
        };
        if mark.is_held(conn).await? {
            return Ok(());
        }
        tracing::warn!(
            %mark,
            "the database no longer holds this process's last edit (restored from a backup under the running server?); new Automerge actors from now on"
        );
        if let Ok(mut actors) = self.actors.lock() {
            actors.clear();
        }
        self.grants.forget_all();
        *self.lineage.lock() = None;
        Ok(())
    }

    /// At the end of an edit with a process actor, in its write transaction (so in order with
    /// every other): remembers the mark it leaves. Should the transaction not commit, the mark
    /// is not held and the next edit draws new actors, which is harmless.
    pub(crate) async fn note_lineage(&self, conn: &mut SqliteConnection) -> Result<()> {
        let mark = Mark::now(conn).await?;
        *self.lineage.lock() = mark;
        Ok(())
    }
}
