//! The fast path of a push, many documents at a time (issue #5: 500 pushed edits in ≤ 0.3 s;
//! docs/SYNC.md, "Fast path of a push"). Each statement is a round trip to SQLite's worker
//! thread: the per-document path spent ~15 of them on every document. Here a run of pushed
//! edits is read in a few set queries (rows and access lists, heads and indexes, known change
//! hashes, actors), decided in memory by the same checks ([`super::check_pushable`], [`plan`])
//! and written with multi-row statements.
//!
//! What this module must not do: decide anything the per-document path
//! ([`Store::push_doc`]) would decide otherwise. A document it cannot decide alone (not
//! changes, an entity the server lacks or the pusher may not change, an index to rebuild,
//! changes for the full path, an actor bound to someone else) ends the run: the run before it
//! is written, the document goes through [`Store::push_doc`], and the rest of the chunk is
//! read again after it. The results, rows, feed sequences and audit chain are those of pushing
//! the documents one by one, in order.

use super::fast_push::{DocIndex, Plan, index_info, parse_changes, plan, to_append};
use super::proto::{PushDoc, PushResult, PushStatus};
use super::{Accepted, PushContext, check_pushable};
use crate::entities::EntityRow;
use crate::{Result, Store, invalid};
use cahier_core::document::ChangeInfo;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use std::collections::{HashMap, HashSet};

/// Rows per multi-row statement: at most 10 parameters each, well under SQLite's limit of
/// 32,766 per statement.
const ROWS: usize = 500;

/// A JSON array of values, for `IN (SELECT value FROM json_each(?))`.
fn json_list<T: serde::Serialize>(values: &[T]) -> Result<String> {
    serde_json::to_string(values).map_err(|e| invalid("docs", e.to_string()))
}

/// What the documents of a run need to be decided, read at once.
struct Window {
    /// Row (with its access lists) and feed sequence, by UUID.
    rows: HashMap<String, (EntityRow, i64)>,
    /// Document heads and the stored index (its heads and info), by entity id.
    docs: HashMap<i64, (String, Option<(String, String)>)>,
    /// Change hashes held, by entity id.
    known: HashMap<i64, HashSet<String>>,
}

/// A pushed document the fast path accepts.
struct Fast<'a> {
    uuid: &'a str,
    id: i64,
    /// The entity's feed sequence before the push.
    prev_seq: i64,
    /// The document's heads before the push.
    heads: String,
    /// What to write; no new change for a replay.
    plan: Plan<'a>,
}

/// Whether `bytes` start like Automerge change chunks (the whole document of a new entry, or
/// of a retry after `need_full`, does not: it goes the per-document path without a read).
fn looks_like_changes(bytes: &[u8]) -> bool {
    bytes.len() > 8 && bytes[..4] == [0x85, 0x6f, 0x4a, 0x83] && matches!(bytes[8], 1 | 2)
}

impl Store {
    /// The documents of a chunk of a push (see [`Store::push`]), in order, on `tx`, until
    /// `per_document` of them went the per-document path; returns how many were done (their
    /// results are appended to `results`). `bytes` are the decoded change sets (`None`: too
    /// large).
    pub(super) async fn push_chunk(
        &self,
        tx: &mut SqliteConnection,
        context: &mut PushContext<'_>,
        (chunk, bytes): (&[PushDoc], &[Option<Vec<u8>>]),
        per_document: usize,
        results: &mut Vec<PushResult>,
    ) -> Result<usize> {
        let mut pos = 0;
        let mut slow = 0;
        while pos < chunk.len() && slow < per_document {
            // A run: the documents from `pos` that may be fast, each UUID once (a document
            // pushed twice is read again after the first is written).
            let mut uuids = HashSet::new();
            let mut end = pos;
            while end < chunk.len()
                && bytes[end].as_deref().is_some_and(looks_like_changes)
                && uuids.insert(chunk[end].uuid.as_str())
            {
                end += 1;
            }
            if end == pos {
                results.push(
                    self.push_doc(tx, context, &chunk[pos], bytes[pos].as_deref())
                        .await?,
                );
                pos += 1;
                slow += 1;
                continue;
            }
            let window = read_window(tx, &chunk[pos..end]).await?;
            let mut fast = Vec::with_capacity(end - pos);
            for (doc, bytes) in chunk[pos..end].iter().zip(&bytes[pos..end]) {
                let Some(decided) = decide(&window, context, doc, bytes.as_deref()) else {
                    break;
                };
                fast.push(decided);
            }
            let new_actors = self.bind_run(tx, context, &mut fast).await?;
            let stop = pos + fast.len();
            self.write_run(tx, context, fast, &new_actors, results)
                .await?;
            if stop < end {
                results.push(
                    self.push_doc(tx, context, &chunk[stop], bytes[stop].as_deref())
                        .await?,
                );
                pos = stop + 1;
                slow += 1;
            } else {
                pos = end;
            }
        }
        Ok(pos)
    }

    /// The actors of a run's changes: those already bound to the pusher, or new (returned, to
    /// insert). The run ends before the first document with an actor bound to someone else
    /// (the per-document path refuses it); the actors of the documents kept count as bound
    /// for the rest of the request.
    async fn bind_run(
        &self,
        tx: &mut SqliteConnection,
        context: &mut PushContext<'_>,
        fast: &mut Vec<Fast<'_>>,
    ) -> Result<Vec<String>> {
        let mut wanted: Vec<&str> = fast
            .iter()
            .flat_map(|f| f.plan.actors.iter())
            .filter(|a| !context.actors.0.contains(*a))
            .map(String::as_str)
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let bindings: HashMap<String, i64> = if wanted.is_empty() {
            HashMap::new()
        } else {
            sqlx::query_as(
                "SELECT actor, user_id FROM actors WHERE actor IN (SELECT value FROM json_each(?))",
            )
            .bind(json_list(&wanted)?)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect()
        };
        let user = context.subject.user_id;
        let mut new = Vec::new();
        for (i, f) in fast.iter().enumerate() {
            let foreign = f.plan.actors.iter().any(|a| {
                !context.actors.0.contains(a) && bindings.get(a).is_some_and(|u| *u != user)
            });
            if foreign {
                fast.truncate(i);
                break;
            }
            for actor in &f.plan.actors {
                if context.actors.0.insert(actor.clone()) && !bindings.contains_key(actor) {
                    new.push(actor.clone());
                }
            }
        }
        Ok(new)
    }

    /// Writes a run of fast documents, in order, with multi-row statements, and appends their
    /// results.
    async fn write_run(
        &self,
        tx: &mut SqliteConnection,
        context: &PushContext<'_>,
        fast: Vec<Fast<'_>>,
        new_actors: &[String],
        results: &mut Vec<PushResult>,
    ) -> Result<()> {
        let (now, subject, device) = (context.now, context.subject, context.device);
        for chunk in new_actors.chunks(ROWS) {
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT INTO actors (actor, user_id, device, first_seen) ");
            let seen = self.now_ms();
            q.push_values(chunk, |mut row, actor| {
                row.push_bind(actor.clone())
                    .push_bind(subject.user_id)
                    .push_bind(device.uuid.clone())
                    .push_bind(seen);
            });
            q.build().execute(&mut *tx).await?;
        }
        // The documents with new changes, in order: what each appends, its rows of
        // `entity_changes`, its heads and index after.
        struct Changed {
            id: i64,
            appended: Vec<u8>,
            changes: Vec<ChangeInfo>,
            heads: String,
            index: DocIndex,
        }
        let mut changed = Vec::new();
        let mut answers = Vec::with_capacity(fast.len());
        for f in fast {
            if f.plan.new.is_empty() {
                // Every change is here already: accepted again, nothing written.
                answers.push((f.uuid, f.id, f.prev_seq, Err(f.heads)));
                continue;
            }
            let (appended, changes) = to_append(f.plan.new);
            answers.push((f.uuid, f.id, f.prev_seq, Ok(changed.len())));
            changed.push(Changed {
                id: f.id,
                appended,
                changes,
                heads: f.plan.heads,
                index: f.plan.index,
            });
        }
        let mut seqs = Vec::new();
        if !changed.is_empty() {
            // Automerge loads a saved document followed by change chunks; whoever next loads
            // and saves it (the projector) stores it compact again.
            for chunk in changed.chunks(ROWS) {
                let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                    "UPDATE entity_docs SET heads = v.column2, doc = CAST(doc || v.column3 AS BLOB) FROM (",
                );
                q.push_values(chunk, |mut row, c| {
                    row.push_bind(c.id)
                        .push_bind(c.heads.clone())
                        .push_bind(c.appended.clone());
                });
                q.push(") AS v WHERE entity_docs.entity_id = v.column1");
                q.build().execute(&mut *tx).await?;
            }
            let received = self.now_ms();
            let rows: Vec<(i64, &ChangeInfo)> = changed
                .iter()
                .flat_map(|c| c.changes.iter().map(move |change| (c.id, change)))
                .collect();
            for chunk in rows.chunks(ROWS) {
                let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                    "INSERT OR IGNORE INTO entity_changes (entity_id, hash, actor, user_id, device, \
                     time_ms, received_at, message, deps, bytes) ",
                );
                q.push_values(chunk, |mut row, (id, change)| {
                    row.push_bind(*id)
                        .push_bind(change.hash.clone())
                        .push_bind(change.actor.clone())
                        .push_bind(subject.user_id)
                        .push_bind(device.uuid.clone())
                        .push_bind(change.time_ms)
                        .push_bind(received)
                        .push_bind(change.message.clone())
                        .push_bind(change.deps.join(","))
                        .push_bind(change.bytes.clone());
                });
                q.build().execute(&mut *tx).await?;
            }
            // The feed sequences, one per document in order, as the trigger of migration 24
            // would take them one by one (it does not fire: `sync_seq` changes).
            let n = i64::try_from(changed.len()).map_err(|e| invalid("docs", e.to_string()))?;
            let last: i64 = sqlx::query_scalar(
                "UPDATE sync_counter SET value = value + ? WHERE id = 1 RETURNING value",
            )
            .bind(n)
            .fetch_one(&mut *tx)
            .await?;
            seqs = (last - n + 1..=last).collect();
            for (chunk, seqs) in changed.chunks(ROWS).zip(seqs.chunks(ROWS)) {
                let mut q: QueryBuilder<Sqlite> =
                    QueryBuilder::new("UPDATE entities SET modified_at = ");
                q.push_bind(now)
                    .push(", lastchangeby = ")
                    .push_bind(subject.user_id)
                    .push(", heads = v.column2, sync_seq = v.column3 FROM (");
                q.push_values(chunk.iter().zip(seqs), |mut row, (c, seq)| {
                    row.push_bind(c.id)
                        .push_bind(c.heads.clone())
                        .push_bind(*seq);
                });
                q.push(") AS v WHERE entities.id = v.column1");
                q.build().execute(&mut *tx).await?;
            }
            for chunk in changed.chunks(ROWS) {
                let mut q: QueryBuilder<Sqlite> =
                    QueryBuilder::new("INSERT INTO projection_stale (entity_id, heads, since) ");
                q.push_values(chunk, |mut row, c| {
                    row.push_bind(c.id)
                        .push_bind(c.heads.clone())
                        .push_bind(now);
                });
                q.push(" ON CONFLICT (entity_id) DO UPDATE SET heads = excluded.heads");
                q.build().execute(&mut *tx).await?;
                let mut q: QueryBuilder<Sqlite> =
                    QueryBuilder::new("INSERT INTO entity_doc_index (entity_id, heads, info) ");
                q.push_values(chunk, |mut row, c| {
                    row.push_bind(c.id)
                        .push_bind(c.heads.clone())
                        .push_bind(index_info(Some(&c.index)));
                });
                q.push(
                    " ON CONFLICT (entity_id) DO UPDATE SET heads = excluded.heads, info = excluded.info",
                );
                q.build().execute(&mut *tx).await?;
            }
        }
        let mut events = Vec::with_capacity(changed.len());
        for (uuid, id, prev_seq, at) in answers {
            let result = match at {
                // A replay: the document's heads and sequence, unchanged.
                Err(heads) => PushResult {
                    status: PushStatus::Accepted,
                    id: Some(id),
                    heads,
                    prev_seq: Some(prev_seq),
                    seq: Some(prev_seq),
                    ..PushResult::empty(uuid)
                },
                Ok(i) => {
                    let c = &changed[i];
                    let accepted = Accepted {
                        uuid,
                        id,
                        heads: &c.heads,
                        changes: c.changes.len(),
                        created: false,
                    };
                    events.push(accepted.event(subject, device));
                    PushResult {
                        prev_seq: Some(prev_seq),
                        seq: seqs.get(i).copied(),
                        ..accepted.result()
                    }
                }
            };
            self.sync_stats.count_fast();
            self.sync_stats.count_bulk();
            results.push(result);
        }
        crate::audit::append_all(tx, now, &events).await?;
        Ok(())
    }
}

/// Reads what deciding `docs` needs (each UUID once): five statements for the whole run.
async fn read_window(tx: &mut SqliteConnection, docs: &[PushDoc]) -> Result<Window> {
    let uuids: Vec<&str> = docs.iter().map(|d| d.uuid.as_str()).collect();
    let rows = crate::entities::rows_by_uuid(tx, &uuids, false).await?;
    let ids: Vec<i64> = rows.values().map(|(row, _)| row.id).collect();
    if ids.is_empty() {
        return Ok(Window {
            rows,
            docs: HashMap::new(),
            known: HashMap::new(),
        });
    }
    let list = json_list(&ids)?;
    let found: Vec<(i64, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT d.entity_id, d.heads, x.heads, x.info FROM entity_docs d \
         LEFT JOIN entity_doc_index x ON x.entity_id = d.entity_id \
         WHERE d.entity_id IN (SELECT value FROM json_each(?))",
    )
    .bind(&list)
    .fetch_all(&mut *tx)
    .await?;
    let docs = found
        .into_iter()
        .map(|(id, heads, at, info)| (id, (heads, at.zip(info))))
        .collect();
    let hashes: Vec<(i64, String)> = sqlx::query_as(
        "SELECT entity_id, hash FROM entity_changes WHERE entity_id IN (SELECT value FROM json_each(?))",
    )
    .bind(&list)
    .fetch_all(&mut *tx)
    .await?;
    let mut known: HashMap<i64, HashSet<String>> = HashMap::new();
    for (id, hash) in hashes {
        known.entry(id).or_default().insert(hash);
    }
    Ok(Window { rows, docs, known })
}

/// Whether the fast path accepts `doc` as the per-document path would, from `window`: an
/// existing entity the pusher may change (the same policy check), whose index is current at
/// its heads, with changes [`plan`] accepts. `None`: the per-document path decides.
fn decide<'a>(
    window: &Window,
    context: &PushContext<'_>,
    doc: &'a PushDoc,
    bytes: Option<&'a [u8]>,
) -> Option<Fast<'a>> {
    let (row, prev_seq) = window.rows.get(&doc.uuid)?;
    check_pushable(row, context.subject).ok()?;
    let (heads, stored) = window.docs.get(&row.id)?;
    // An index to rebuild (or none at these heads): the per-document path rebuilds it.
    let (at, info) = stored.as_ref()?;
    if at != heads {
        return None;
    }
    let index: DocIndex = serde_json::from_str(info).ok()?;
    let parsed = parse_changes(bytes?)?;
    let empty = HashSet::new();
    let known = window.known.get(&row.id).unwrap_or(&empty);
    let plan = plan(parsed, heads, known, index).ok()?;
    Some(Fast {
        uuid: &doc.uuid,
        id: row.id,
        prev_seq: *prev_seq,
        heads: heads.clone(),
        plan,
    })
}

#[cfg(test)]
mod tests;
