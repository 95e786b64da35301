//! Applying a pull batch on a replica in a few statements (issue #5, docs/SYNC.md). Entries new
//! to the replica, and pulled edits of entries without local changes ("fast-forward"), are
//! written together: one multi-row statement per table for the whole batch (the row of
//! `entities` complete in one write, children, acknowledgements; the full-text rows are left
//! for after the sync, `search_pending`), the document stored as received (new) or with the
//! pulled change bytes appended (fast-forward: no document is loaded, merged or saved).
//! Entries with local changes, or that the server sent whole over an existing copy, take the
//! merge path one by one. While the batch runs, the
//! `sync_seq` triggers are quiet (migration 24): a replica serves no feed, and each trigger
//! would rewrite the whole row once more.

use super::Applied;
use crate::projection::{self, FieldRow};
use crate::sync::proto::{PullEntry, unb64};
use crate::{Result, Store, invalid};
use cahier_core::EntityDoc;
use sha2::{Digest, Sha256};
use sqlx::query_builder::Separated;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use std::collections::{HashMap, HashSet};

/// Bytes of appended changes past which a fast-forwarded document is saved whole again.
const COMPACT_AFTER: i64 = 64 * 1024;
/// Pages of write-ahead log past which a pull batch's commit checkpoints it (SQLite's
/// default, kept by every other write, is [`crate::WAL_AUTOCHECKPOINT`]): 256 MiB with a
/// replica's 16 KiB pages, so a first copy of a large lab still checkpoints along the way.
const PULL_AUTOCHECKPOINT: i64 = 16_384;
/// Rows per multi-row statement (well under SQLite's limit of bound values).
const ROWS: usize = 40;

/// Times of the steps of a pull batch's transaction (debug log, `CAHIER_LOG=cahier_store=debug`).
struct Laps(std::time::Instant, Vec<(&'static str, f64)>);

impl Laps {
    fn start() -> Self {
        Self(std::time::Instant::now(), Vec::new())
    }
    fn mark(&mut self, step: &'static str) {
        let now = std::time::Instant::now();
        self.1
            .push((step, now.duration_since(self.0).as_secs_f64() * 1000.0));
        self.0 = now;
    }
}

/// What the replica holds of a pulled entry.
struct Local {
    id: i64,
    heads: String,
    acked: Option<String>,
    appended: i64,
    /// [`children_key`] of the child rows the last pull wrote, and the heads then.
    children: Option<Vec<u8>>,
}

/// A pulled entry written by the bulk path, with what is computed before the transaction.
struct Bulk<'a> {
    entry: &'a PullEntry,
    /// The local id (the server's for a new entry).
    id: i64,
    /// `None` for a new entry; the local state for a fast-forward.
    local: Option<Local>,
    prepared: Prepared,
    /// Whether its child rows are the ones already here (written by the last pull, at the
    /// heads the entry still has): they are then left as they are.
    same_children: bool,
}

/// What the replica holds of each pulled UUID: id, UUID, heads, acknowledged heads, bytes
/// appended since the last whole save, children key.
type LocalRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<Vec<u8>>,
);

/// The CPU part of a bulk entry (decoding, the search texts, the digest of its child rows).
struct Prepared {
    bytes: Vec<u8>,
    /// Metadata field rows.
    fields: Vec<FieldRow>,
    /// SHA-256 of everything the entry's child rows are written from; `None` if it cannot be
    /// computed (the rows are then always written).
    children: Option<[u8; 32]>,
}

/// Computes [`Prepared`] for an entry.
fn prepare(entry: &PullEntry) -> Result<Prepared> {
    let bytes = unb64(&entry.changes).map_err(|_| invalid("changes", "not base64"))?;
    let s = &entry.snapshot;
    let e = &s.entity;
    let fields = projection::field_rows_of_json(e.metadata.as_deref());
    // Exactly what `write_bulk` makes child rows of (the fields come from the metadata).
    let children = serde_json::to_vec(&(
        (&e.canread, &e.canwrite, &e.tags, &e.metadata),
        (&s.links, &s.steps, &s.comments, &s.conflicts),
    ))
    .ok()
    .map(|json| Sha256::digest(&json).into());
    Ok(Prepared {
        bytes,
        fields,
        children,
    })
}

/// The key under which an entry's child rows are known to be written: the digest of what they
/// are written from, bound to the entry's heads then (a local edit changes the heads, so rows
/// it rewrote never pass for the pulled ones).
fn children_key(heads: &str, children: &[u8; 32]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(heads.as_bytes());
    hasher.update([0]);
    hasher.update(children);
    hasher.finalize().to_vec()
}

/// The CPU part of applying a pull batch (decoding the documents, the search texts), computed
/// before the batch is written, apart from the database: `cahier_sync` computes it for the next
/// batch on another thread while the previous one is written. One item per entry, in order.
pub struct PreparedPull(Vec<Option<Result<Prepared>>>);

impl PreparedPull {
    /// Computes what [`Store::apply_prepared_batch`] writes of each entry (entries that turn out
    /// to take the merge path, with local changes, do not use it).
    pub fn of(entries: &[PullEntry]) -> Self {
        Self(entries.iter().map(|entry| Some(prepare(entry))).collect())
    }

    fn take(&mut self, index: usize, entry: &PullEntry) -> Result<Prepared> {
        match self.0.get_mut(index).and_then(Option::take) {
            Some(prepared) => prepared,
            None => prepare(entry),
        }
    }
}

/// A part of a pull answer, as the replica's sync hands it on while the answer arrives
/// ([`Store::apply_pulled_parts`]).
pub enum PullPart {
    /// Entries as they arrived, with their CPU part ([`PreparedPull::of`] of the same).
    Entries(Vec<PullEntry>, PreparedPull),
    /// The server's answer ended whole: what was written of it may be committed.
    End,
}

/// What [`Store::apply_pulled_parts`] wrote in one transaction.
#[derive(Debug, Default)]
pub struct WrittenParts {
    /// How each entry was applied, in the order received.
    pub applied: Vec<Applied>,
    /// The UUID of the last entry written, if any.
    pub last: Option<String>,
    /// Whether the answer's end was reached ([`PullPart::End`]).
    pub ended: bool,
}

/// A JSON array of values, for `IN (SELECT value FROM json_each(?))`.
fn json_list<T: serde::Serialize>(values: &[T]) -> Result<String> {
    serde_json::to_string(values).map_err(|e| invalid("changes", e.to_string()))
}

impl Store {
    /// Applies pulled documents in one transaction (one commit, one sync to disk, for a
    /// whole pull batch): all of them or none.
    pub async fn apply_pulled_batch(&self, entries: &[PullEntry]) -> Result<Vec<Applied>> {
        self.apply_prepared_batch(entries, PreparedPull(Vec::new()))
            .await
    }

    /// [`Store::apply_pulled_batch`] with the CPU part computed beforehand
    /// ([`PreparedPull::of`] of the same entries; what it lacks is computed here).
    pub async fn apply_prepared_batch(
        &self,
        entries: &[PullEntry],
        prepared: PreparedPull,
    ) -> Result<Vec<Applied>> {
        let (sender, mut parts) = tokio::sync::mpsc::channel(2);
        let sent = sender
            .send(PullPart::Entries(entries.to_vec(), prepared))
            .await
            .is_ok()
            && sender.send(PullPart::End).await.is_ok();
        drop(sender);
        if !sent {
            return Err(invalid("changes", "the batch could not be handed on"));
        }
        Ok(self
            .apply_pulled_parts(&mut parts, std::time::Duration::MAX)
            .await?
            .applied)
    }

    /// Writes the parts of a pull answer as they arrive, in one transaction: committed at the
    /// answer's end, or once it has been open `hold` and no part is waiting (so a slow link
    /// never keeps other writers out for long; call again for the rest). Every part received
    /// is written whole or not at all; parts that stop before the end, the sender gone
    /// without [`PullPart::End`], are rolled back with an error.
    pub async fn apply_pulled_parts(
        &self,
        parts: &mut tokio::sync::mpsc::Receiver<PullPart>,
        hold: std::time::Duration,
    ) -> Result<WrittenParts> {
        // Nothing is locked while the first part is awaited.
        let first = match parts.recv().await {
            Some(PullPart::End) => {
                return Ok(WrittenParts {
                    ended: true,
                    ..WrittenParts::default()
                });
            }
            Some(part) => part,
            None => return Err(cut_short()),
        };
        // What a pull writes is on the server: its batches are committed without waiting for
        // the disk (`synchronous = NORMAL`). A power cut can then lose the last batches, but
        // never a part of one, and the feed checkpoint goes with them (written by the same
        // sync after the batch), so the next sync pulls them again; edits made here keep
        // being committed with `FULL`, which also makes every earlier batch durable.
        //
        // Nor do they wait for a checkpoint of the write-ahead log (copying it into the
        // database file, with two `fsync`s): SQLite would run one in the commit that takes the
        // log past 1,000 pages, about once per pull of 500 edits (40-50 ms of it). Their
        // commits leave it to a larger bound ([`PULL_AUTOCHECKPOINT`]), and `replica serve`
        // checkpoints after a sync that pulled ([`Store::checkpoint_wal`]).
        let mut conn = self.pool.acquire().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = {PULL_AUTOCHECKPOINT}"
        )))
        .execute(&mut *conn)
        .await?;
        let written = self.write_pull_parts(&mut conn, first, parts, hold).await;
        let restored = sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = {}",
            crate::WAL_AUTOCHECKPOINT
        )))
        .execute(&mut *conn)
        .await;
        if restored.is_err() {
            // Never back in the pool with the weaker settings.
            conn.close_on_drop();
        }
        drop(conn);
        let (written, loaded, forget) = written?;
        restored?;
        if let Ok(mut cache) = self.docs.lock() {
            for id in forget {
                cache.pop(&id);
            }
        }
        for (id, heads, doc) in loaded {
            self.cache_put(id, heads, doc);
        }
        Ok(written)
    }

    /// The transaction of [`Store::apply_pulled_parts`]: what it wrote, the documents it
    /// loaded (for the cache) and those the cache must forget.
    async fn write_pull_parts(
        &self,
        conn: &mut SqliteConnection,
        first: PullPart,
        parts: &mut tokio::sync::mpsc::Receiver<PullPart>,
        hold: std::time::Duration,
    ) -> Result<(WrittenParts, Vec<(i64, String, EntityDoc)>, Vec<i64>)> {
        let mut laps = Laps::start();
        let opened = std::time::Instant::now();
        let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
        laps.mark("begin");
        let quiet = self.is_replica();
        if quiet {
            sqlx::query("INSERT OR IGNORE INTO sync_seq_quiet (id) VALUES (1)")
                .execute(&mut *tx)
                .await?;
        }
        let mut written = WrittenParts::default();
        let mut loaded = Vec::new();
        let mut forget = Vec::new();
        let mut listed = HashSet::new();
        let mut next = Some(first);
        loop {
            let part = match next.take() {
                Some(part) => part,
                None => {
                    // The next part if one is waiting; else wait for one only while the
                    // transaction has not been open `hold`.
                    match parts.try_recv() {
                        Ok(part) => part,
                        Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                            return Err(cut_short());
                        }
                        Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                            let left = hold.saturating_sub(opened.elapsed());
                            if left.is_zero() {
                                break;
                            }
                            match tokio::time::timeout(left, parts.recv()).await {
                                Ok(Some(part)) => part,
                                Ok(None) => return Err(cut_short()),
                                Err(_) => break,
                            }
                        }
                    }
                }
            };
            let (entries, mut prepared) = match part {
                PullPart::End => {
                    written.ended = true;
                    break;
                }
                PullPart::Entries(entries, prepared) => (entries, prepared),
            };
            // The same UUID twice in a part (never sent by a server, but harmless): each run
            // holds distinct UUIDs and sees what the previous ones wrote.
            let mut start = 0;
            while start < entries.len() {
                let mut seen = HashSet::new();
                let mut end = start;
                while end < entries.len() && seen.insert(entries[end].uuid.as_str()) {
                    end += 1;
                }
                self.apply_part(
                    &mut tx,
                    (&entries, start..end, &mut prepared),
                    &mut written.applied,
                    &mut loaded,
                    &mut forget,
                    &mut laps,
                )
                .await?;
                start = end;
            }
            // The lab lists only files it holds: a push need not ask about these.
            listed.extend(
                entries
                    .iter()
                    .flat_map(|entry| entry.snapshot.uploads.iter().map(|u| u.sha256.clone())),
            );
            if let Some(last) = entries.last() {
                written.last = Some(last.uuid.clone());
            }
        }
        if !listed.is_empty() {
            let listed: Vec<String> = listed.into_iter().collect();
            super::known_blobs::record_listed(&mut tx, &listed).await?;
        }
        if quiet {
            sqlx::query("DELETE FROM sync_seq_quiet")
                .execute(&mut *tx)
                .await?;
            // Still a change counter for the search index's tidying (`change_counter`).
            sqlx::query("UPDATE sync_counter SET value = value + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
        }
        laps.mark("end");
        tx.commit().await?;
        laps.mark("commit");
        tracing::debug!(
            entries = written.applied.len(),
            ended = written.ended,
            laps = ?laps.1,
            "pull batch written"
        );
        Ok((written, loaded, forget))
    }

    async fn apply_part(
        &self,
        tx: &mut SqliteConnection,
        (all, range, prepared): (&[PullEntry], std::ops::Range<usize>, &mut PreparedPull),
        applied: &mut Vec<Applied>,
        loaded: &mut Vec<(i64, String, EntityDoc)>,
        forget: &mut Vec<i64>,
        laps: &mut Laps,
    ) -> Result<()> {
        let first = range.start;
        let entries = &all[range];
        let uuids: Vec<&str> = entries.iter().map(|e| e.uuid.as_str()).collect();
        let rows: Vec<LocalRow> = sqlx::query_as(
            "SELECT e.id, e.uuid, d.heads, r.acked_heads, r.appended, r.children FROM entities e \
             JOIN entity_docs d ON d.entity_id = e.id LEFT JOIN replica_entities r ON r.entity_id = e.id \
             WHERE e.uuid IN (SELECT value FROM json_each(?))",
        )
        .bind(json_list(&uuids)?)
        .fetch_all(&mut *tx)
        .await?;
        let mut locals: HashMap<String, Local> = rows
            .into_iter()
            .map(|(id, uuid, heads, acked, appended, children)| {
                let appended = appended.unwrap_or(0);
                (
                    uuid,
                    Local {
                        id,
                        heads,
                        acked,
                        appended,
                        children,
                    },
                )
            })
            .collect();
        laps.mark("locals");
        let mut bulk = Vec::new();
        for (index, entry) in (first..).zip(entries) {
            let local = locals.remove(&entry.uuid);
            let fast = match &local {
                None => {
                    if !entry.full {
                        return Err(invalid("changes", "a new document must come whole"));
                    }
                    true
                }
                Some(l) => !entry.full && l.acked.as_deref() == Some(l.heads.as_str()),
            };
            if !fast {
                let Some(l) = local else {
                    return Err(invalid("changes", "a new document must come whole"));
                };
                let (outcome, doc) = self.apply_merge(tx, entry, l.id, &l.heads, l.acked).await?;
                applied.push(outcome);
                loaded.push(doc);
                continue;
            }
            let prepared = prepared.take(index, entry)?;
            applied.push(if local.is_some() {
                Applied::Updated
            } else {
                Applied::Added
            });
            let same_children = match (&local, &prepared.children) {
                (Some(l), Some(digest)) => {
                    l.children.as_deref() == Some(children_key(&l.heads, digest).as_slice())
                }
                _ => false,
            };
            bulk.push(Bulk {
                entry,
                id: local.as_ref().map_or(entry.id, |l| l.id),
                local,
                prepared,
                same_children,
            });
        }
        if !bulk.is_empty() {
            laps.mark("merges");
            write_bulk(tx, &bulk, laps).await?;
            forget.extend(bulk.iter().filter(|b| b.local.is_some()).map(|b| b.id));
        }
        Ok(())
    }
}

/// The error of a pull answer whose parts stopped before its end.
fn cut_short() -> crate::StoreError {
    invalid("changes", "the pull answer stopped before its end")
}

/// Writes the bulk entries of a part: rows, documents, children, full-text rows,
/// acknowledgements.
async fn write_bulk(tx: &mut SqliteConnection, bulk: &[Bulk<'_>], laps: &mut Laps) -> Result<()> {
    let seq: i64 = sqlx::query_scalar("SELECT value + 1 FROM sync_counter WHERE id = 1")
        .fetch_one(&mut *tx)
        .await?;
    // 1. The rows of `entities`: a new entry's inserted whole (upsert on the id), a
    // fast-forwarded one's updated in place.
    let (new, updated): (Vec<&Bulk<'_>>, Vec<&Bulk<'_>>) =
        bulk.iter().partition(|b| b.local.is_none());
    insert_rows(tx, &new, seq).await?;
    update_rows(tx, &updated).await?;

    laps.mark("rows");
    // 2. Documents: a new one as received; a fast-forward appends the pulled changes.
    for chunk in new.chunks(ROWS) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO entity_docs (entity_id, heads, doc) ");
        q.push_values(chunk, |mut row, b| {
            row.push_bind(b.id)
                .push_bind(b.entry.heads.clone())
                .push_bind(b.prepared.bytes.clone());
        });
        q.build().execute(&mut *tx).await?;
    }
    let mut appended = HashMap::new();
    let mut appends = Vec::new();
    for b in bulk {
        let Some(local) = &b.local else { continue };
        if b.prepared.bytes.is_empty() {
            // Nothing new in the document (access, lock or state changed).
            appended.insert(b.id, local.appended);
            continue;
        }
        let grown = local
            .appended
            .saturating_add(i64::try_from(b.prepared.bytes.len()).unwrap_or(i64::MAX));
        if grown > COMPACT_AFTER {
            // Saved whole again once the appended part has grown past the bound.
            let stored: Vec<u8> =
                sqlx::query_scalar("SELECT doc FROM entity_docs WHERE entity_id = ?")
                    .bind(b.id)
                    .fetch_one(&mut *tx)
                    .await?;
            let mut doc = EntityDoc::load(&stored)?;
            doc.load_changes(&b.prepared.bytes)?;
            sqlx::query("UPDATE entity_docs SET heads = ?, doc = ? WHERE entity_id = ?")
                .bind(&b.entry.heads)
                .bind(doc.save())
                .bind(b.id)
                .execute(&mut *tx)
                .await?;
            appended.insert(b.id, 0);
        } else {
            appends.push(b);
            appended.insert(b.id, grown);
        }
    }
    for chunk in appends.chunks(ROWS) {
        // `||` makes text of the two blobs' bytes; the cast gives back a blob, same bytes.
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("WITH v (id, heads, bytes) AS (");
        q.push_values(chunk, |mut row, b| {
            row.push_bind(b.id)
                .push_bind(b.entry.heads.clone())
                .push_bind(b.prepared.bytes.clone());
        });
        q.push(
            ") UPDATE entity_docs SET heads = v.heads, doc = CAST(doc || v.bytes AS BLOB) \
             FROM v WHERE entity_docs.entity_id = v.id",
        );
        q.build().execute(&mut *tx).await?;
    }

    laps.mark("docs");
    // 3. Old child rows of fast-forwarded entries go, unless they are the pulled ones; then
    // the rows of everyone else in bulk.
    let rewritten: Vec<i64> = bulk
        .iter()
        .filter(|b| b.local.is_some() && !b.same_children)
        .map(|b| b.id)
        .collect();
    if !rewritten.is_empty() {
        let ids = json_list(&rewritten)?;
        for table in [
            "entity_acl",
            "entity_tags",
            "entity_links",
            "entity_steps",
            "entity_comments",
            "entity_conflicts",
            "entity_fields",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE entity_id IN (SELECT value FROM json_each(?))"
            )))
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        }
    }
    laps.mark("child delete");
    let mut acl = Vec::new();
    let mut tags = Vec::new();
    let mut links = Vec::new();
    let mut steps = Vec::new();
    let mut comments = Vec::new();
    let mut fields = Vec::new();
    let mut conflicts = Vec::new();
    for b in bulk.iter().filter(|b| !b.same_children) {
        let s = &b.entry.snapshot;
        let e = &s.entity;
        for (mode, rule) in [("r", &e.canread), ("w", &e.canwrite)] {
            for (grantee, ids) in [
                ("t", &rule.teams),
                ("g", &rule.teamgroups),
                ("u", &rule.users),
            ] {
                acl.extend(ids.iter().map(|id| (b.id, mode, grantee, *id)));
            }
        }
        tags.extend(e.tags.iter().map(|t| (b.id, t)));
        links.extend(s.links.iter().map(|l| (b.id, l)));
        steps.extend(s.steps.iter().map(|st| (b.id, st)));
        comments.extend(s.comments.iter().map(|c| (b.id, c)));
        fields.extend(b.prepared.fields.iter().map(|f| (b.id, f)));
        conflicts.extend(s.conflicts.iter().map(|c| (b.id, c)));
    }
    for chunk in acl.chunks(ROWS) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT OR IGNORE INTO entity_acl (entity_id, mode, grantee, ref_id) ",
        );
        q.push_values(chunk, |mut row, (id, mode, grantee, ref_id)| {
            row.push_bind(*id)
                .push_bind(*mode)
                .push_bind(*grantee)
                .push_bind(*ref_id);
        });
        q.build().execute(&mut *tx).await?;
    }
    for chunk in tags.chunks(ROWS) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO entity_tags (entity_id, tag) ");
        q.push_values(chunk, |mut row, (id, tag)| {
            row.push_bind(*id).push_bind((*tag).clone());
        });
        q.build().execute(&mut *tx).await?;
    }
    for chunk in links.chunks(ROWS) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO entity_links (entity_id, target_uuid) ");
        q.push_values(chunk, |mut row, (id, target)| {
            row.push_bind(*id).push_bind((*target).clone());
        });
        q.build().execute(&mut *tx).await?;
    }
    for chunk in steps.chunks(ROWS) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO entity_steps (entity_id, step_id, ordering, body, done, done_by, done_at) ",
        );
        q.push_values(chunk, |mut row, (id, step)| {
            row.push_bind(*id)
                .push_bind(step.step_id.clone())
                .push_bind(step.ordering)
                .push_bind(step.body.clone())
                .push_bind(step.done)
                .push_bind(step.done_by)
                .push_bind(step.done_at);
        });
        q.build().execute(&mut *tx).await?;
    }
    for chunk in comments.chunks(ROWS) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO entity_comments (entity_id, comment_id, author, created_at, edited_at, body) ",
        );
        q.push_values(chunk, |mut row, (id, c)| {
            row.push_bind(*id)
                .push_bind(c.comment_id.clone())
                .push_bind(c.author)
                .push_bind(c.created_at)
                .push_bind(c.edited_at)
                .push_bind(c.body.clone());
        });
        q.build().execute(&mut *tx).await?;
    }
    for chunk in fields.chunks(ROWS) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO entity_fields (entity_id, name, type, value_text, value_num) ",
        );
        q.push_values(chunk, |mut row, (id, f)| {
            row.push_bind(*id)
                .push_bind(f.name.clone())
                .push_bind(f.field_type.clone())
                .push_bind(f.value_text.clone())
                .push_bind(f.value_num);
        });
        q.build().execute(&mut *tx).await?;
    }
    for chunk in conflicts.chunks(ROWS) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO entity_conflicts (entity_id, field, values_json) ");
        q.push_values(chunk, |mut row, (id, (field, values))| {
            row.push_bind(*id)
                .push_bind(field.clone())
                .push_bind(values.clone());
        });
        q.build().execute(&mut *tx).await?;
    }

    laps.mark("children");
    // 4. Files and stock events: only entries that have some (one statement per row).
    for b in bulk {
        let s = &b.entry.snapshot;
        if !s.uploads.is_empty() {
            let uploads: Vec<_> = s.uploads.iter().map(|u| u.to_attachment()).collect();
            projection::write_uploads(tx, b.id, &uploads).await?;
        }
        if s.stock.as_ref().is_some_and(|st| !st.events.is_empty()) {
            crate::stock::write_snapshot_events(tx, b.id, s.stock.as_ref()).await?;
        }
    }

    laps.mark("files");
    // 5. The search index: written once the sync is over, or before a search
    // (`search_pending`).
    let ids: Vec<i64> = bulk.iter().map(|b| b.id).collect();
    crate::search_pending::note(tx, &ids).await?;
    laps.mark("search");
    // 6. What the server acknowledged.
    for chunk in bulk.chunks(ROWS) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO replica_entities (entity_id, acked_heads, server_id, appended, children) ",
        );
        q.push_values(chunk, |mut row, b| {
            row.push_bind(b.id)
                .push_bind(b.entry.heads.clone())
                .push_bind(b.entry.id)
                .push_bind(appended.get(&b.id).copied().unwrap_or(0))
                .push_bind(
                    b.prepared
                        .children
                        .as_ref()
                        .map(|digest| children_key(&b.entry.heads, digest)),
                );
        });
        q.push(
            " ON CONFLICT (entity_id) DO UPDATE SET acked_heads = excluded.acked_heads, \
             server_id = excluded.server_id, appended = excluded.appended, \
             children = excluded.children",
        );
        q.build().execute(&mut *tx).await?;
    }
    laps.mark("acks");
    Ok(())
}

/// A value of an indexed column of `entities`.
#[derive(Debug, Clone, PartialEq)]
enum Indexed {
    Int(Option<i64>),
    Text(String),
}

/// The columns of `entities` that an index holds (or a partial index's condition reads). An
/// `UPDATE` rewrites the entries of every index holding a column of its `SET` list, whether or
/// not the value changes, so a fast-forward sets these only when they change (a body edit:
/// `modified_at`, two indexes instead of eleven).
const INDEXED: [&str; 12] = [
    "team_id",
    "owner_id",
    "canread_base",
    "canwrite_base",
    "state",
    "modified_at",
    "date",
    "title",
    "status_id",
    "category_id",
    "stock_quantity",
    "stock_threshold",
];

/// The columns of `entities` a fast-forward always sets (in no index).
const PLAIN: [&str; 15] = [
    "locked_by",
    "locked_at",
    "elabid",
    "created_at",
    "lastchangeby",
    "body",
    "body_html",
    "content_type",
    "rating",
    "tags_text",
    "template_uuid",
    "metadata",
    "heads",
    "n_conflicts",
    "stock_unit",
];

/// The pulled values of [`INDEXED`], in its order.
fn indexed_values(b: &Bulk<'_>) -> [Indexed; 12] {
    let e = &b.entry.snapshot.entity;
    let stock = b.entry.snapshot.stock.as_ref();
    [
        Indexed::Int(Some(e.team_id)),
        Indexed::Int(Some(e.owner_id)),
        Indexed::Int(Some(e.canread.base.code())),
        Indexed::Int(Some(e.canwrite.base.code())),
        Indexed::Int(Some(e.state)),
        Indexed::Int(Some(e.modified_at)),
        Indexed::Text(e.date.clone()),
        Indexed::Text(e.title.clone()),
        Indexed::Int(e.status_id),
        Indexed::Int(e.category_id),
        Indexed::Int(stock.map(|s| s.quantity_milli)),
        Indexed::Int(stock.and_then(|s| s.threshold_milli)),
    ]
}

/// Updates the rows of `entities` of fast-forwarded entries: the plain columns, and those of
/// [`INDEXED`] whose value changed; entries changing the same indexed columns share
/// multi-row statements.
async fn update_rows(tx: &mut SqliteConnection, updated: &[&Bulk<'_>]) -> Result<()> {
    if updated.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = updated.iter().map(|b| b.id).collect();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id, {} FROM entities WHERE id IN (SELECT value FROM json_each(?))",
        INDEXED.join(", ")
    )))
    .bind(json_list(&ids)?)
    .fetch_all(&mut *tx)
    .await?;
    let mut current: HashMap<i64, [Indexed; 12]> = HashMap::with_capacity(rows.len());
    for row in rows {
        use sqlx::Row;
        let int = |i: usize| row.try_get::<Option<i64>, _>(i).map(Indexed::Int);
        let text = |i: usize| row.try_get::<String, _>(i).map(Indexed::Text);
        current.insert(
            row.try_get(0)?,
            [
                int(1)?,
                int(2)?,
                int(3)?,
                int(4)?,
                int(5)?,
                int(6)?,
                text(7)?,
                text(8)?,
                int(9)?,
                int(10)?,
                int(11)?,
                int(12)?,
            ],
        );
    }
    // Entries grouped by the set of indexed columns they change (a bit per column).
    let mut groups: HashMap<u16, Vec<(&Bulk<'_>, [Indexed; 12])>> = HashMap::new();
    for b in updated {
        let values = indexed_values(b);
        let mask = match current.get(&b.id) {
            Some(old) => old
                .iter()
                .zip(&values)
                .enumerate()
                .filter(|(_, (old, new))| old != new)
                .fold(0u16, |mask, (i, _)| mask | (1 << i)),
            // Not found (never, the row was read in this transaction): every column.
            None => (1u16 << INDEXED.len()) - 1,
        };
        groups.entry(mask).or_default().push((b, values));
    }
    for (mask, entries) in groups {
        let changed: Vec<usize> = (0..INDEXED.len())
            .filter(|i| mask & (1 << i) != 0)
            .collect();
        let mut columns: Vec<&str> = PLAIN.to_vec();
        columns.extend(changed.iter().map(|&i| INDEXED[i]));
        let set = columns
            .iter()
            .map(|c| format!("{c} = v.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        for chunk in entries.chunks(ROWS) {
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new(format!("WITH v (id, {}) AS (", columns.join(", ")));
            q.push_values(chunk, |mut row, (b, values)| {
                row.push_bind(b.id);
                push_plain(&mut row, b);
                for &i in &changed {
                    push_indexed(&mut row, values[i].clone());
                }
            });
            q.push(format!(
                ") UPDATE entities SET {set} FROM v WHERE entities.id = v.id"
            ));
            q.build().execute(&mut *tx).await?;
        }
    }
    Ok(())
}

/// Inserts the rows of `entities` of entries new to the replica (updated in place should the
/// id be taken).
async fn insert_rows(tx: &mut SqliteConnection, new: &[&Bulk<'_>], seq: i64) -> Result<()> {
    let columns: Vec<&str> = PLAIN.iter().chain(&INDEXED).copied().collect();
    let upsert = columns
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    for chunk in new.chunks(ROWS) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "INSERT INTO entities (id, uuid, kind, sync_seq, {}) ",
            columns.join(", ")
        ));
        q.push_values(chunk, |mut row, b| {
            row.push_bind(b.id)
                .push_bind(b.entry.uuid.clone())
                .push_bind(b.entry.snapshot.entity.kind.as_str())
                .push_bind(seq);
            push_plain(&mut row, b);
            for value in indexed_values(b) {
                push_indexed(&mut row, value);
            }
        });
        q.push(format!(" ON CONFLICT (id) DO UPDATE SET {upsert}"));
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// Binds the values of [`PLAIN`], in its order.
fn push_plain(row: &mut Separated<'_, Sqlite, &'static str>, b: &Bulk<'_>) {
    let e = &b.entry.snapshot.entity;
    let stock = b.entry.snapshot.stock.as_ref();
    row.push_bind(e.locked_by)
        .push_bind(e.locked_at)
        .push_bind(e.elabid.clone())
        .push_bind(e.created_at)
        .push_bind(e.lastchangeby)
        .push_bind(e.body.clone())
        .push_bind(e.body_html.clone())
        .push_bind(e.content_type)
        .push_bind(e.rating)
        .push_bind(e.tags.join("|"))
        .push_bind(e.template_uuid.clone())
        .push_bind(e.metadata.clone())
        .push_bind(b.entry.heads.clone())
        .push_bind(e.n_conflicts)
        .push_bind(stock.map(|s| s.unit.clone()));
}

/// Binds one value of [`INDEXED`].
fn push_indexed(row: &mut Separated<'_, Sqlite, &'static str>, value: Indexed) {
    match value {
        Indexed::Int(v) => row.push_bind(v),
        Indexed::Text(v) => row.push_bind(v),
    };
}

#[cfg(test)]
mod tests;
