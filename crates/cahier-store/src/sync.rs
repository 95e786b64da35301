//! The server side of sync with field replicas (docs/SYNC.md): devices, the change feed, pull
//! of documents with their projection, and push with validation and quarantine. Every
//! request acts for the device's user and goes through the same access policy as the UI.

mod bulk_push;
mod changes_after;
pub(crate) mod fast_push;
pub(crate) mod history;
mod index_builder;
pub mod proto;
mod reference_version;
mod snapshots;

pub use fast_push::SyncStats;

use crate::audit::{self, AuditEvent};
use crate::{Result, Store, StoreError, invalid, projection, random_hex, sha256_hex};
use cahier_core::document::{Attachment, EntityContent, heads_from_string, heads_to_string};
use cahier_core::{EntityDoc, EntityKind, Subject};
use proto::{FeedItem, FeedResponse, PullEntry, PushDoc, PushResult, PushStatus};
use sqlx::SqliteConnection;
use subtle::ConstantTimeEq;

/// Largest change set accepted in one push for one document.
pub const MAX_PUSH_BYTES: usize = 8 * 1024 * 1024;

/// Documents of a push committed together (see [`Store::push`]), on the per-document path.
const PUSH_COMMIT_EVERY: usize = 50;

/// Documents of a push committed together at most when they go in bulk (a few ms of work
/// each, not the ~14 ms of the full path): a replica's whole request (`cahier_sync::BATCH`).
const PUSH_BULK_COMMIT_EVERY: usize = 200;

/// How stale a device's `last_seen` may get before a request rewrites it, ms.
const LAST_SEEN_STEP_MS: i64 = 60_000;
/// At most this many unreadable entities listed with a page of the feed (36 bytes each).
const MAX_UNREADABLE: i64 = 5_000;

/// Id, user, secret hash, revoked, user archived, last seen.
type DeviceAuthRow = Option<(i64, i64, String, Option<i64>, bool, Option<i64>)>;

/// A registered, unrevoked device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Row id.
    pub id: i64,
    /// Public id (in credentials and provenance).
    pub uuid: String,
    /// Owner.
    pub user_id: i64,
}

/// A device as listed to its user or an admin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct DeviceInfo {
    /// Row id.
    pub id: i64,
    /// Public id.
    pub uuid: String,
    /// Owner.
    pub user_id: i64,
    /// Name given at registration.
    pub name: String,
    /// Registered, ms.
    pub created_at: i64,
    /// Last request, ms.
    pub last_seen: Option<i64>,
    /// Revoked, ms.
    pub revoked_at: Option<i64>,
}

impl Store {
    /// Registers a device for the user whose e-mail and password are given; returns the device
    /// and its secret credential `<uuid>.<secret>` (shown once).
    pub async fn register_device(
        &self,
        email: &str,
        password: &str,
        name: &str,
        client: &str,
    ) -> Result<(Device, String)> {
        let user = self.verify_login(email, password, client).await?;
        let uuid = uuid::Uuid::new_v4().to_string();
        let secret = random_hex(32);
        let name = if name.trim().is_empty() {
            "field replica"
        } else {
            name.trim()
        };
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO devices (uuid, user_id, name, secret_hash, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&uuid)
        .bind(user.id)
        .bind(name)
        .bind(sha256_hex(&secret))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        crate::audit::append(
            &mut tx,
            now,
            &AuditEvent::new(Some(user.id), audit::action::DEVICE_REGISTER, "device", id)
                .device(&uuid)
                .ip(Some(client))
                .details(serde_json::json!({"name": name})),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(user_id = user.id, device = %uuid, "device registered");
        Ok((
            Device {
                id,
                uuid: uuid.clone(),
                user_id: user.id,
            },
            format!("{uuid}.{secret}"),
        ))
    }

    /// Checks a device credential; revoked devices and archived users are refused.
    pub async fn authenticate_device(&self, credential: &str) -> Result<Option<Device>> {
        let Some((uuid, secret)) = credential.trim().split_once('.') else {
            return Ok(None);
        };
        let row: DeviceAuthRow = sqlx::query_as(
            "SELECT d.id, d.user_id, d.secret_hash, d.revoked_at, u.is_archived, d.last_seen FROM devices d \
             JOIN users u ON u.id = d.user_id WHERE d.uuid = ?",
        )
        .bind(uuid)
        .fetch_optional(&self.pool)
        .await?;
        let Some((id, user_id, hash, revoked, archived, last_seen)) = row else {
            return Ok(None);
        };
        if revoked.is_some()
            || archived
            || !bool::from(sha256_hex(secret).as_bytes().ct_eq(hash.as_bytes()))
        {
            return Ok(None);
        }
        // `last_seen` says when the device last synced, to the minute: it is not rewritten
        // (a write and an fsync) by each of a sync's requests.
        let now = self.now_ms();
        if last_seen.is_none_or(|seen| now - seen >= LAST_SEEN_STEP_MS || now < seen) {
            sqlx::query("UPDATE devices SET last_seen = ? WHERE id = ?")
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(Device {
            id,
            uuid: uuid.to_owned(),
            user_id,
        }))
    }

    /// A user's devices (all of them, for sysadmins: `user_id = None`).
    pub async fn devices(&self, user_id: Option<i64>) -> Result<Vec<DeviceInfo>> {
        Ok(sqlx::query_as(
            "SELECT id, uuid, user_id, name, created_at, last_seen, revoked_at FROM devices \
             WHERE (? IS NULL OR user_id = ?) ORDER BY created_at DESC",
        )
        .bind(user_id)
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes a device: its next request is refused. Its owner or a sysadmin may do it.
    pub async fn revoke_device(&self, subject: &Subject, device_id: i64) -> Result<()> {
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let n = sqlx::query(
            "UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL AND (user_id = ? OR ?)",
        )
        .bind(now)
        .bind(device_id)
        .bind(subject.user_id)
        .bind(subject.is_sysadmin)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("device"));
        }
        crate::audit::append(
            &mut tx,
            now,
            &AuditEvent::new(
                Some(subject.user_id),
                audit::action::DEVICE_REVOKE,
                "device",
                device_id,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Entities the subject may read that changed after `since`, in sequence order.
    ///
    /// `next` is the checkpoint to ask from next time. When the page is not full it is the end
    /// of the whole sequence, read before the page so that an event committed meanwhile is not
    /// skipped; it is lower than `since` when the server's sequence went back (the server was
    /// restored from a backup older than what the replica saw), which the replica detects.
    pub async fn feed(&self, subject: &Subject, since: i64, limit: i64) -> Result<FeedResponse> {
        let mut conn = self.pool.acquire().await?;
        self.feed_on(&mut conn, subject, since, limit).await
    }

    /// [`Store::feed`] on `conn` (in a read transaction, every read sees the same state).
    pub(crate) async fn feed_on(
        &self,
        conn: &mut SqliteConnection,
        subject: &Subject,
        since: i64,
        limit: i64,
    ) -> Result<FeedResponse> {
        let limit = limit.clamp(1, 10_000);
        let top: i64 = sqlx::query_scalar("SELECT value FROM sync_counter WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?;
        let sql = format!(
            "SELECT e.uuid, e.sync_seq, e.heads FROM entities e WHERE e.sync_seq > ? AND {} \
             ORDER BY e.sync_seq LIMIT ?",
            crate::access_sql::readable_by(subject)
        );
        let rows: Vec<(String, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(since)
            .bind(limit + 1)
            .fetch_all(&mut *conn)
            .await?;
        let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
        let items: Vec<FeedItem> = rows
            .into_iter()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|(uuid, seq, heads)| FeedItem { uuid, seq, heads })
            .collect();
        // When the page is not full, the checkpoint moves to the end of the whole sequence, so
        // events the subject may not see are not asked about again.
        let next = if more {
            items.last().map_or(since, |i| i.seq)
        } else {
            top.max(items.last().map_or(top, |i| i.seq))
        };
        let unreadable = unreadable_between(conn, subject, since, next).await?;
        Ok(FeedResponse {
            items,
            next,
            more,
            unreadable,
            history: None,
            lost: None,
        })
    }

    /// Of these entity UUIDs, those the subject may no longer read (or that no longer exist).
    pub async fn revoked(&self, subject: &Subject, uuids: &[String]) -> Result<Vec<String>> {
        let mut revoked = Vec::new();
        for chunk in uuids.chunks(500) {
            let mut builder = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "SELECT e.uuid FROM entities e WHERE e.uuid IN (",
            );
            let mut list = builder.separated(", ");
            for uuid in chunk {
                list.push_bind(uuid.clone());
            }
            builder
                .push(") AND ")
                .push(crate::access_sql::readable_by(subject));
            let readable: std::collections::HashSet<String> = builder
                .build_query_scalar::<String>()
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .collect();
            revoked.extend(chunk.iter().filter(|u| !readable.contains(*u)).cloned());
        }
        Ok(revoked)
    }

    /// For each requested document: its changes after the replica's heads (the saved document
    /// when it has none), current heads and projection rows. Unreadable ones are skipped.
    pub async fn pull(&self, subject: &Subject, docs: &[proto::PullDoc]) -> Result<Vec<PullEntry>> {
        // Projection rows ship with each document: fresh, even for an edit just pushed.
        let uuids: Vec<&str> = docs.iter().map(|d| d.uuid.as_str()).collect();
        self.project_uuids_if_stale(&uuids).await?;
        let mut conn = self.pool.acquire().await?;
        // The batch's rows, access lists, whole documents and child rows in a few set queries
        // (`snapshots`), then each entry's changes.
        let uuids: Vec<&str> = docs.iter().map(|d| d.uuid.as_str()).collect();
        let rows = snapshots::readable_rows(&mut conn, subject, &uuids).await?;
        let mut whole_ids = Vec::new();
        for request in docs {
            if let Some(row) = rows.get(&request.uuid)
                && request.have != row.heads
                && heads_from_string(&request.have)?.is_empty()
            {
                whole_ids.push(row.id);
            }
        }
        let mut whole = snapshots::saved_docs(&mut conn, &whole_ids).await?;
        let ids: Vec<i64> = rows.values().map(|r| r.id).collect();
        let children = snapshots::Children::load(&mut conn, &ids).await?;
        // The change log's answers for the edits asked, in two statements for the batch.
        let mut logged: Vec<(usize, (i64, &str, &str))> = Vec::new();
        for (i, request) in docs.iter().enumerate() {
            if let Some(row) = rows.get(&request.uuid)
                && request.have != row.heads
                && !request.have.trim().is_empty()
            {
                logged.push((i, (row.id, request.have.as_str(), row.heads.as_str())));
            }
        }
        let answers = changes_after::changes_after_many(
            &mut conn,
            &logged.iter().map(|(_, r)| *r).collect::<Vec<_>>(),
        )
        .await?;
        let mut from_log: std::collections::HashMap<usize, Vec<u8>> = logged
            .iter()
            .zip(answers)
            .filter_map(|((i, _), answer)| answer.map(|bytes| (*i, bytes)))
            .collect();
        let mut entries = Vec::with_capacity(docs.len());
        for (i, request) in docs.iter().enumerate() {
            let Some(row) = rows.get(&request.uuid).cloned() else {
                continue;
            };
            let have = heads_from_string(&request.have)?;
            let (bytes, full) = if request.have == row.heads {
                // Nothing new in the document (the entry may have changed access, lock or
                // state): answer without loading it.
                (Vec::new(), false)
            } else if have.is_empty() {
                // The stored bytes as they are: a first copy never loads documents.
                let bytes: Vec<u8> = match whole.remove(&row.id) {
                    Some(bytes) => bytes,
                    // The same UUID asked twice in one request.
                    None => {
                        sqlx::query_scalar("SELECT doc FROM entity_docs WHERE entity_id = ?")
                            .bind(row.id)
                            .fetch_one(&mut *conn)
                            .await?
                    }
                };
                (bytes, true)
            } else if let Some(bytes) = from_log.remove(&i) {
                // From the change log, without loading the document.
                (bytes, false)
            } else {
                let (heads, mut doc) = self.load_doc(&mut conn, row.id).await?;
                let known = doc.automerge().get_missing_deps(&have).is_empty();
                let result = if known {
                    (doc.automerge().save_after(&have), false)
                } else {
                    (doc.save(), true)
                };
                self.cache_put(row.id, heads, doc);
                result
            };
            let id = row.id;
            let heads = row.heads.clone();
            let mut snapshot = children.snapshot(row);
            if request.lazy_html {
                // The replica renders it from the body itself (docs/SYNC.md).
                snapshot.entity.body_html = String::new();
            }
            entries.push(PullEntry {
                uuid: request.uuid.clone(),
                id,
                heads,
                full,
                changes: proto::b64(&bytes),
                snapshot,
            });
        }
        Ok(entries)
    }

    /// Accepts or refuses each pushed document's changes. A refusal keeps the bytes in
    /// quarantine with the reason.
    ///
    /// Documents are committed together (one commit, one `fsync`): up to
    /// [`PUSH_BULK_COMMIT_EVERY`] per transaction, of which at most [`PUSH_COMMIT_EVERY`] on
    /// the per-document path. Fast-path edits are decided from a few reads for many documents
    /// at once
    /// and written with multi-row statements ([`bulk_push`]); every other document goes
    /// through [`Store::push_doc`], in its place, inside its own savepoint: a refused
    /// document rolls back to its savepoint and is quarantined, the others are committed
    /// together. Either way the results, the database and the audit chain are those of
    /// pushing the documents one by one, in order. A database failure rolls the current
    /// transaction back; the replica, having no answer, pushes the same documents again (a
    /// push is idempotent: those already committed are accepted again without change).
    pub async fn push(
        &self,
        subject: &Subject,
        device: &Device,
        docs: Vec<PushDoc>,
    ) -> Result<Vec<PushResult>> {
        self.push_with(subject, device, &docs, true, None).await
    }

    /// [`Store::push`], after the replica's last push whose acknowledgement no feed read has
    /// covered yet (`after`, the mark its answer carried; docs/SYNC.md, "A restored server").
    /// Each accepted document's answer carries the mark of the end of the sequence in the
    /// transaction that accepted it, issued only while the server holds `after` (checked in
    /// that transaction, and each transaction's mark in the next one's): so the last mark a
    /// replica received is held only if every one before it is. Once one is not, the rest of
    /// the request is answered without marks, and the replica keeps naming the one the
    /// server lost until the feed tells it so. `after` that is not a mark is refused (422).
    pub async fn push_after(
        &self,
        subject: &Subject,
        device: &Device,
        docs: Vec<PushDoc>,
        after: Option<&str>,
    ) -> Result<Vec<PushResult>> {
        let after = after
            .map(|text| history::Mark::named("after", text))
            .transpose()?;
        self.push_with(subject, device, &docs, true, after).await
    }

    /// [`Store::push`] with every document on the per-document path (what the bulk path
    /// must match, for tests).
    #[cfg(test)]
    pub(crate) async fn push_one_by_one(
        &self,
        subject: &Subject,
        device: &Device,
        docs: Vec<PushDoc>,
    ) -> Result<Vec<PushResult>> {
        self.push_with(subject, device, &docs, false, None).await
    }

    async fn push_with(
        &self,
        subject: &Subject,
        device: &Device,
        docs: &[PushDoc],
        bulk: bool,
        after: Option<history::Mark>,
    ) -> Result<Vec<PushResult>> {
        let now = self.now_ms();
        let mut chain = after.map_or(Chain::Start, Chain::Held);
        let mut results = Vec::with_capacity(docs.len());
        let mut actors = BoundActors::default();
        self.sync_stats.mark_push();
        let size = if bulk {
            PUSH_BULK_COMMIT_EVERY
        } else {
            PUSH_COMMIT_EVERY
        };
        for chunk in docs.chunks(size) {
            // The bytes first: a request with one undecodable document is refused whole.
            let bytes = chunk
                .iter()
                .map(|doc| match proto::unb64(&doc.changes) {
                    Ok(bytes) if bytes.len() <= MAX_PUSH_BYTES => Ok(Some(bytes)),
                    Ok(_) => Ok(None),
                    Err(_) => Err(invalid("changes", "not base64")),
                })
                .collect::<Result<Vec<_>>>()?;
            let mut done = 0;
            while done < chunk.len() {
                let mut cached = Vec::new();
                let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                let first = results.len();
                if let Chain::Held(mark) = chain
                    && !mark.is_held(&mut tx).await?
                {
                    chain = Chain::Broken;
                }
                let mut context = PushContext {
                    now,
                    subject,
                    device,
                    actors: &mut actors,
                    cached: &mut cached,
                };
                if bulk {
                    // Up to `PUSH_COMMIT_EVERY` documents on the per-document path per
                    // transaction, however many in bulk.
                    done += self
                        .push_chunk(
                            &mut tx,
                            &mut context,
                            (&chunk[done..], &bytes[done..]),
                            PUSH_COMMIT_EVERY,
                            &mut results,
                        )
                        .await?;
                } else {
                    for (doc, bytes) in chunk.iter().zip(&bytes) {
                        let result = self
                            .push_doc(&mut tx, &mut context, doc, bytes.as_deref())
                            .await?;
                        results.push(result);
                    }
                    done = chunk.len();
                }
                mark_accepted(&mut tx, &mut results[first..], &mut chain).await?;
                // Other writers wait while a push holds the write lock: it is let go after
                // each transaction, so a large push never nears their busy timeout.
                tx.commit().await?;
                self.sync_stats.mark_push();
                self.stale_wake.notify_one();
                for (id, heads, doc) in cached {
                    self.cache_put(id, heads, doc);
                }
            }
        }
        Ok(results)
    }

    /// One document of a push on the per-document path, on `tx` (see [`Store::push`]);
    /// `bytes` is `None` for a change set over [`MAX_PUSH_BYTES`].
    pub(super) async fn push_doc(
        &self,
        tx: &mut SqliteConnection,
        context: &mut PushContext<'_>,
        doc: &PushDoc,
        bytes: Option<&[u8]>,
    ) -> Result<PushResult> {
        let (now, subject, device) = (context.now, context.subject, context.device);
        let uuid = &doc.uuid;
        let Some(bytes) = bytes else {
            return Ok(PushResult::rejected(
                uuid,
                "change set too large".into(),
                None,
            ));
        };
        // The entity's id and feed sequence before the push, read under the write lock.
        let existing: Option<(i64, i64)> =
            sqlx::query_as("SELECT id, sync_seq FROM entities WHERE uuid = ?")
                .bind(uuid)
                .fetch_optional(&mut *tx)
                .await?;
        let prev_seq = existing.map(|(_, seq)| seq);
        sqlx::query("SAVEPOINT push_doc").execute(&mut *tx).await?;
        let mut bound = Vec::new();
        let outcome = self
            .push_one(
                tx,
                now,
                subject,
                device,
                (doc, existing.map(|(id, _)| id)),
                bytes,
                (&*context.actors, &mut bound),
            )
            .await;
        let result = match outcome {
            Ok(Pushed::Keep(result, cache)) => {
                sqlx::query("RELEASE push_doc").execute(&mut *tx).await?;
                context.actors.0.extend(bound);
                context.cached.extend(cache);
                result
            }
            Ok(Pushed::Undo(result, cache)) => {
                sqlx::query("ROLLBACK TO push_doc")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("RELEASE push_doc").execute(&mut *tx).await?;
                context.cached.extend(cache);
                result
            }
            Err(StoreError::Database(error)) => return Err(StoreError::Database(error)),
            Err(error) => {
                sqlx::query("ROLLBACK TO push_doc")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("RELEASE push_doc").execute(&mut *tx).await?;
                let reason = error.to_string();
                let quarantine =
                    quarantine(tx, now, subject, device, uuid, &doc.base, bytes, &reason).await?;
                tracing::info!(device = %device.uuid, entity = %uuid, %reason, "push rejected");
                PushResult::rejected(uuid, reason, Some(quarantine))
            }
        };
        if result.status != PushStatus::Accepted {
            return Ok(result);
        }
        // The entity's sequence before and after, read under the write lock: the replica then
        // knows whether the feed will list anything but this push. The fast path knows the
        // one after (it set it).
        let seq = match result.seq {
            Some(seq) => Some(seq),
            None => entity_seq(tx, uuid).await?,
        };
        Ok(PushResult {
            prev_seq,
            seq,
            ..result
        })
    }

    /// Binds new actors to this user and device; refuses an actor bound to someone else.
    /// Actors in `known` were checked earlier in the same request; those newly checked or
    /// bound are added to `bound`.
    async fn bind_actors(
        &self,
        conn: &mut SqliteConnection,
        actors: &[String],
        subject: &Subject,
        device: &Device,
        (known, newly): (&BoundActors, &mut Vec<String>),
    ) -> Result<()> {
        for actor in actors.iter().filter(|a| !known.0.contains(*a)) {
            let bound: Option<i64> =
                sqlx::query_scalar("SELECT user_id FROM actors WHERE actor = ?")
                    .bind(actor)
                    .fetch_optional(&mut *conn)
                    .await?;
            match bound {
                Some(user) if user != subject.user_id => {
                    return Err(StoreError::Forbidden(format!(
                        "actor {actor} belongs to another user"
                    )));
                }
                Some(_) => {}
                None => {
                    sqlx::query("INSERT INTO actors (actor, user_id, device, first_seen) VALUES (?, ?, ?, ?)")
                        .bind(actor)
                        .bind(subject.user_id)
                        .bind(&device.uuid)
                        .bind(self.now_ms())
                        .execute(&mut *conn)
                        .await?;
                }
            }
            newly.push(actor.clone());
        }
        Ok(())
    }

    /// One document of a push, on `tx` inside its savepoint (see [`Store::push`]).
    #[expect(
        clippy::too_many_arguments,
        reason = "the request's context, all needed"
    )]
    async fn push_one(
        &self,
        tx: &mut SqliteConnection,
        now: i64,
        subject: &Subject,
        device: &Device,
        (push, existing): (&PushDoc, Option<i64>),
        bytes: &[u8],
        known: (&BoundActors, &mut Vec<String>),
    ) -> Result<Pushed> {
        let mut before_attachments = Vec::new();
        let (entity_id, before, mut doc, old_heads) = match existing {
            Some(id) => {
                let row = self
                    .fetch_row(tx, id)
                    .await?
                    .ok_or(StoreError::NotFound("entity"))?;
                check_pushable(&row, subject)?;
                if let Some(pushed) = self
                    .push_fast(
                        tx,
                        now,
                        subject,
                        device,
                        push,
                        bytes,
                        id,
                        (known.0, &mut *known.1),
                    )
                    .await?
                {
                    return Ok(pushed);
                }
                let (heads, doc) = self.load_doc(tx, id).await?;
                let before = doc.content()?;
                before_attachments = doc.attachments()?;
                (Some((id, row)), before, doc, heads)
            }
            None => {
                let Some(new) = &push.new else {
                    return Ok(Pushed::Undo(
                        PushResult {
                            status: PushStatus::NeedFull,
                            ..PushResult::empty(&push.uuid)
                        },
                        None,
                    ));
                };
                let doc = EntityDoc::load(bytes)
                    .map_err(|_| invalid("changes", "not an Automerge document"))?;
                let content = doc.content()?;
                check_new(&content, &push.uuid, new, subject)?;
                (None, content, doc, String::new())
            }
        };
        let old = heads_from_string(&old_heads)?;
        if entity_id.is_some() {
            doc.load_changes(bytes)
                .map_err(|_| invalid("changes", "not Automerge changes"))?;
            if !doc.automerge().get_missing_deps(&[]).is_empty() {
                // The server lacks what these changes build on (e.g. restored from a backup).
                return Ok(Pushed::Undo(
                    PushResult {
                        status: PushStatus::NeedFull,
                        ..PushResult::empty(&push.uuid)
                    },
                    None,
                ));
            }
        }
        let changes = doc.changes_since(&old);
        let actors: Vec<String> = {
            let mut a: Vec<String> = changes.iter().map(|c| c.actor.clone()).collect();
            a.sort();
            a.dedup();
            a
        };
        self.bind_actors(tx, &actors, subject, device, known)
            .await?;
        let after = doc.content()?;
        crate::fields::check_changed_fields(&before.metadata, &after.metadata)?;
        crate::stock::check_pushed(before.stock.as_ref(), after.stock.as_ref(), subject.user_id)?;
        if after.id != before.id
            || after.kind != before.kind
            || after.created_by != before.created_by
            || after.created_at_ms != before.created_at_ms
        {
            return Err(invalid(
                "changes",
                "the id, kind, author or creation time of an entry cannot change",
            ));
        }
        let attachments = doc.attachments()?;
        if let Some((id, _)) = &entity_id {
            check_proofs_kept(tx, *id, &before_attachments, &attachments).await?;
        }
        self.check_new_attachments(&before_attachments, &attachments, subject, device)
            .await?;
        let heads = heads_to_string(&doc.heads());
        let created = entity_id.is_none();
        let id = match entity_id {
            Some((id, _)) => {
                if changes.is_empty() {
                    return Ok(Pushed::Undo(
                        PushResult {
                            status: PushStatus::Accepted,
                            id: Some(id),
                            heads: heads.clone(),
                            ..PushResult::empty(&push.uuid)
                        },
                        Some((id, old_heads, doc)),
                    ));
                }
                let saved = doc.save();
                sqlx::query("UPDATE entity_docs SET doc = ?, heads = ? WHERE entity_id = ?")
                    .bind(&saved)
                    .bind(&heads)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                id
            }
            None => {
                let new = push.new.as_ref().ok_or_else(|| invalid("new", "missing"))?;
                let canread = new.canread.clone().normalized();
                let canwrite = new.canwrite.clone().normalized();
                let elabid = format!(
                    "{}-{}",
                    cahier_core::clock::format_date(now).replace('-', ""),
                    random_hex(10)
                );
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO entities (uuid, kind, team_id, owner_id, canread_base, canwrite_base, elabid, created_at, \
                     modified_at, lastchangeby, title, date, body, body_html, content_type, heads) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', '', '', '', 2, ?) RETURNING id",
                )
                .bind(&push.uuid)
                .bind(after.kind.as_str())
                .bind(new.team_id)
                .bind(subject.user_id)
                .bind(canread.base.code())
                .bind(canwrite.base.code())
                .bind(elabid)
                .bind(now)
                .bind(now)
                .bind(subject.user_id)
                .bind(&heads)
                .fetch_one(&mut *tx)
                .await?;
                crate::entities::write_acl(tx, id, &canread, &canwrite).await?;
                let saved = doc.save();
                sqlx::query("INSERT INTO entity_docs (entity_id, doc, heads) VALUES (?, ?, ?)")
                    .bind(id)
                    .bind(&saved)
                    .bind(&heads)
                    .execute(&mut *tx)
                    .await?;
                id
            }
        };
        let n_changes = changes.len();
        self.index_write(tx, id, &old_heads, &heads, &changes)
            .await?;
        self.insert_changes_from(tx, id, changes, subject.user_id, &device.uuid)
            .await?;
        let result = Accepted {
            uuid: &push.uuid,
            id,
            heads: &heads,
            changes: n_changes,
            created,
        }
        .record(tx, now, subject, device)
        .await?;
        let rendered = projection::render(&after);
        projection::write(tx, id, &after, &rendered, &heads, now, subject.user_id).await?;
        if attachments != before_attachments {
            projection::write_uploads(tx, id, &attachments).await?;
        }
        Ok(Pushed::Keep(result, Some((id, heads, doc))))
    }
}

/// Whether `subject` may push changes to the existing entity `row` (the access policy of
/// [`crate::entities::EntityRow::access`]); the refusal otherwise. Both paths of a push ask
/// this, before anything else about the entity.
pub(super) fn check_pushable(row: &crate::entities::EntityRow, subject: &Subject) -> Result<()> {
    let access = row.access();
    if !access.may_read(subject) {
        return Err(StoreError::Forbidden(
            "you may no longer read this entry".into(),
        ));
    }
    if row.state == crate::entities::state::DELETED {
        return Err(StoreError::Conflict(
            "this entry was deleted on the server".into(),
        ));
    }
    if access.is_locked() && access.has_write_grant(subject) {
        return Err(StoreError::Conflict(
            "this entry was locked on the server: no change is accepted until it is unlocked"
                .into(),
        ));
    }
    if !access.may_write(subject) {
        return Err(StoreError::Forbidden(
            "you may no longer change this entry".into(),
        ));
    }
    Ok(())
}

/// A pushed document accepted with new changes, by either path.
struct Accepted<'a> {
    uuid: &'a str,
    id: i64,
    /// The entity's heads after the changes.
    heads: &'a str,
    /// How many changes were new.
    changes: usize,
    /// Whether the push created the entity.
    created: bool,
}

impl Accepted<'_> {
    /// Audits the accepted push on `conn` (inside the push's transaction) and returns the
    /// answer for the replica.
    async fn record(
        self,
        conn: &mut SqliteConnection,
        now: i64,
        subject: &Subject,
        device: &Device,
    ) -> Result<PushResult> {
        crate::audit::append(conn, now, &self.event(subject, device)).await?;
        Ok(self.result())
    }

    /// The audit entry of the accepted push.
    fn event(&self, subject: &Subject, device: &Device) -> AuditEvent {
        AuditEvent::new(
            Some(subject.user_id),
            audit::action::SYNC_ACCEPT,
            "entity",
            self.id,
        )
        .device(&device.uuid)
        .details(serde_json::json!({
            "uuid": self.uuid,
            "heads": self.heads,
            "changes": self.changes,
            "created": self.created,
        }))
    }

    /// The answer for the replica (without the sequences).
    fn result(&self) -> PushResult {
        PushResult {
            status: PushStatus::Accepted,
            id: Some(self.id),
            heads: self.heads.to_owned(),
            ..PushResult::empty(self.uuid)
        }
    }
}

/// An entity's feed sequence, by UUID (`None` when the server does not hold it).
async fn entity_seq(conn: &mut SqliteConnection, uuid: &str) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT sync_seq FROM entities WHERE uuid = ?")
            .bind(uuid)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// Keeps a refused change set with the reason, and audits the refusal, on `conn` (inside the
/// push's transaction).
#[expect(clippy::too_many_arguments, reason = "one refusal's facts, all needed")]
async fn quarantine(
    conn: &mut SqliteConnection,
    now: i64,
    subject: &Subject,
    device: &Device,
    uuid: &str,
    base: &str,
    bytes: &[u8],
    reason: &str,
) -> Result<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO quarantine (entity_uuid, user_id, device_id, received_at, base_heads, bytes, reason) \
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(uuid)
    .bind(subject.user_id)
    .bind(device.id)
    .bind(now)
    .bind(base)
    .bind(bytes)
    .bind(reason)
    .fetch_one(&mut *conn)
    .await?;
    crate::audit::append(
        conn,
        now,
        &AuditEvent::new(
            Some(subject.user_id),
            audit::action::SYNC_REJECT,
            "entity",
            uuid,
        )
        .device(&device.uuid)
        .details(serde_json::json!({"quarantine": id, "reason": reason, "base": base})),
    )
    .await?;
    Ok(id)
}

/// Actors already bound to the pushing user in this request (checked once per request).
#[derive(Default)]
struct BoundActors(std::collections::HashSet<String>);

/// What every document of one push shares: the request's time, who pushes from where, the
/// actors bound so far, and the documents loaded (cached once their transaction commits).
pub(super) struct PushContext<'a> {
    now: i64,
    subject: &'a Subject,
    device: &'a Device,
    actors: &'a mut BoundActors,
    cached: &'a mut Vec<(i64, String, EntityDoc)>,
}

/// What one pushed document did inside its savepoint: keep its writes, or undo them (nothing
/// to change, or the server lacks what the changes build on). Either way, the document
/// loaded, to cache once the request commits.
enum Pushed {
    Keep(PushResult, Option<(i64, String, EntityDoc)>),
    Undo(PushResult, Option<(i64, String, EntityDoc)>),
}

impl Store {
    /// Attachments a push adds must be the pusher's, and their files must be here and known to
    /// the device: uploaded by it, or readable by its user elsewhere. Knowing a hash is not
    /// enough to attach (and then download) a file one may not read.
    async fn check_new_attachments(
        &self,
        before: &[Attachment],
        after: &[Attachment],
        subject: &Subject,
        device: &Device,
    ) -> Result<()> {
        let known: std::collections::HashSet<&str> =
            before.iter().map(|a| a.sha256.as_str()).collect();
        for attachment in after.iter().filter(|a| !known.contains(a.sha256.as_str())) {
            if attachment.added_by != subject.user_id {
                return Err(StoreError::Forbidden(format!(
                    "the file {} must be attached by the pushing user",
                    attachment.name
                )));
            }
            if !self.blob_store()?.exists(&attachment.sha256).await
                || !self
                    .blob_known_to(subject, device, &attachment.sha256)
                    .await?
            {
                return Err(invalid(
                    "attachments",
                    format!(
                        "the file {} ({}) was not uploaded to the server by this device; sync again to send it",
                        attachment.name, attachment.sha256
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Records that `device` uploaded the whole file `sha256` (see [`Store::blob_known_to`]).
    pub async fn record_device_blob(&self, device: &Device, sha256: &str) -> Result<()> {
        sqlx::query(
            "INSERT OR IGNORE INTO device_blobs (device_id, sha256, received_at) VALUES (?, ?, ?)",
        )
        .bind(device.id)
        .bind(sha256)
        .bind(self.now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether the device may know of the file `sha256`: it uploaded it, or its user may read
    /// an entity that references it.
    pub async fn blob_known_to(
        &self,
        subject: &Subject,
        device: &Device,
        sha256: &str,
    ) -> Result<bool> {
        let uploaded: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM device_blobs WHERE device_id = ? AND sha256 = ?)",
        )
        .bind(device.id)
        .bind(sha256)
        .fetch_one(&self.pool)
        .await?;
        Ok(uploaded || self.blob_readable(subject, sha256).await?)
    }

    /// Whether the subject may download the blob `sha256`: some entity they may read
    /// references it. Unreadable and unknown blobs look the same to the caller.
    pub async fn blob_readable(&self, subject: &Subject, sha256: &str) -> Result<bool> {
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM uploads u JOIN entities e ON e.id = u.entity_id \
             WHERE u.sha256 = ? AND {})",
            crate::access_sql::readable_by(subject)
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(sha256)
            .fetch_one(&self.pool)
            .await?)
    }
}

/// A trusted timestamp's archive is immutable: pushed changes may not remove, rename, comment,
/// archive or delete it (the push is then refused and quarantined, like any refused edit).
async fn check_proofs_kept(
    conn: &mut SqliteConnection,
    entity_id: i64,
    before: &[Attachment],
    after: &[Attachment],
) -> Result<()> {
    let proofs: Vec<String> = sqlx::query_scalar(
        "SELECT u.sha256 FROM entity_timestamps t JOIN uploads u ON u.id = t.upload_id \
         WHERE t.entity_id = ?",
    )
    .bind(entity_id)
    .fetch_all(&mut *conn)
    .await?;
    for sha256 in proofs {
        let find = |list: &[Attachment]| list.iter().find(|a| a.sha256 == sha256).cloned();
        if find(before) != find(after) {
            return Err(StoreError::Conflict(format!(
                "the file {sha256} is the proof of a trusted timestamp: it cannot be renamed, replaced or deleted"
            )));
        }
    }
    Ok(())
}

fn check_new(
    content: &EntityContent,
    uuid: &str,
    new: &proto::NewEntityInfo,
    subject: &Subject,
) -> Result<()> {
    if content.id.to_string() != uuid {
        return Err(invalid("uuid", "the document's id does not match"));
    }
    if content.created_by != subject.user_id {
        return Err(StoreError::Forbidden(
            "a new entry must be created by the pushing user".into(),
        ));
    }
    if !subject.is_member(new.team_id) {
        return Err(StoreError::Forbidden(
            "you can only create entries in a team you belong to".into(),
        ));
    }
    if content.kind != EntityKind::Experiment && content.kind != EntityKind::Resource {
        return Err(invalid(
            "kind",
            "only experiments and resources can be created on a replica",
        ));
    }
    Ok(())
}

impl Store {
    /// The records a replica of `subject`'s notebook needs (docs/SYNC.md, `GET /reference`).
    pub async fn reference(&self, subject: &Subject) -> Result<proto::Reference> {
        // The owners and uploaders of readable entries: for each distinct owner (uploader),
        // whether one readable entry is theirs, from the index of migration 25, stopping at the
        // first; never a scan of the entries' rows.
        let readable = crate::access_sql::readable_by(subject);
        let users = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, email, firstname, lastname, is_sysadmin FROM users WHERE id = ?1 \
             OR id IN (SELECT m2.user_id FROM memberships m1 JOIN memberships m2 ON m2.team_id = m1.team_id WHERE m1.user_id = ?1) \
             OR id IN (SELECT o.owner_id FROM (SELECT DISTINCT owner_id FROM entities) o WHERE EXISTS \
               (SELECT 1 FROM entities e INDEXED BY entities_read_by_owner WHERE e.owner_id = o.owner_id AND {readable})) \
             OR id IN (SELECT o.user_id FROM (SELECT DISTINCT user_id FROM uploads) o WHERE EXISTS \
               (SELECT 1 FROM uploads u INDEXED BY uploads_by_user JOIN entities e ON e.id = u.entity_id \
                WHERE u.user_id = o.user_id AND {readable}))"
        )))
        .bind(subject.user_id)
        .fetch_all(&self.pool)
        .await?;
        let teams = sqlx::query_as("SELECT id, name FROM teams ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let memberships = subject
            .teams
            .iter()
            .map(|m| (m.team_id, m.is_admin))
            .collect();
        let groups = sqlx::query_as(
            "SELECT id, team_id, name FROM team_groups WHERE team_id IN (SELECT team_id FROM memberships WHERE user_id = ?1) \
             OR id IN (SELECT group_id FROM group_members WHERE user_id = ?1)",
        )
        .bind(subject.user_id)
        .fetch_all(&self.pool)
        .await?;
        // Categories also carry what they give a new resource (migration 0009), so that one
        // made offline gets the same rules and template as on the server.
        let terms = |table: &'static str, extra: &'static str| {
            sqlx::query_as::<_, proto::RefTerm>(sqlx::AssertSqlSafe(format!(
                "SELECT id, team_id, family, title, color, is_default, ordering, state{extra} FROM {table} \
                 WHERE team_id IN (SELECT team_id FROM memberships WHERE user_id = ?)"
            )))
            .bind(subject.user_id)
            .fetch_all(&self.pool)
        };
        Ok(proto::Reference {
            user_id: subject.user_id,
            users,
            teams,
            memberships,
            groups,
            my_groups: subject.groups.clone(),
            statuses: terms("statuses", "").await?,
            categories: terms(
                "categories",
                ", default_canread_base, default_canwrite_base, default_template_id",
            )
            .await?,
            time_zone: Some(self.instance_zone().await?.name().to_owned()),
            user_time_zone: sqlx::query_scalar("SELECT time_zone FROM users WHERE id = ?")
                .bind(subject.user_id)
                .fetch_optional(&self.pool)
                .await?
                .flatten(),
            version: None,
        })
    }
}

impl Store {
    /// How many refused change sets are kept for an entity.
    pub async fn quarantined(&self, uuid: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM quarantine WHERE entity_uuid = ?")
                .bind(uuid)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

/// Entities whose sequence is in `(since, next]` that the subject may not read: whatever
/// withdraws a right on an entry moves its sequence, so a replica that removes these (and
/// checks everything it holds only when its user's teams, roles or groups change) holds
/// nothing it may no longer read. `None` on a first copy (nothing held yet; the range is
/// the whole lab) and beyond [`MAX_UNREADABLE`] entries (the replica then asks `/check`).
async fn unreadable_between(
    conn: &mut SqliteConnection,
    subject: &Subject,
    since: i64,
    next: i64,
) -> Result<Option<Vec<String>>> {
    if since <= 0 || next <= since {
        return Ok(if since > 0 { Some(Vec::new()) } else { None });
    }
    let sql = format!(
        "SELECT e.uuid FROM entities e WHERE e.sync_seq > ? AND e.sync_seq <= ? \
         AND NOT COALESCE(({}), 0) LIMIT ?",
        crate::access_sql::readable_by(subject)
    );
    let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(since)
        .bind(next)
        .bind(MAX_UNREADABLE + 1)
        .fetch_all(&mut *conn)
        .await?;
    Ok((i64::try_from(rows.len()).unwrap_or(i64::MAX) <= MAX_UNREADABLE).then_some(rows))
}

/// The marks a push gives, one transaction after another ([`Store::push_after`]).
#[derive(Debug, Clone, Copy)]
enum Chain {
    /// The replica named none: every mark since its last feed read is in this request.
    Start,
    /// The last mark issued (or named by the replica), held in the last transaction.
    Held(history::Mark),
    /// A mark was no longer held: the rest of the request gets none.
    Broken,
}

/// Gives the documents one transaction of a push accepted the mark of the end of the sequence
/// in that transaction, unless the chain is broken.
async fn mark_accepted(
    tx: &mut SqliteConnection,
    results: &mut [PushResult],
    chain: &mut Chain,
) -> Result<()> {
    let accepted = |r: &PushResult| r.status == PushStatus::Accepted;
    if matches!(chain, Chain::Broken) || !results.iter().any(accepted) {
        return Ok(());
    }
    let Some(mark) = history::Mark::now(tx).await? else {
        return Ok(());
    };
    let text = mark.to_string();
    for result in results.iter_mut().filter(|r| accepted(r)) {
        result.history = Some(text.clone());
    }
    *chain = Chain::Held(mark);
    Ok(())
}
