//! The replica side of sync (docs/SYNC.md): importing the server's reference records, applying
//! pulled documents with their projection rows, listing local changes to push, recording the
//! server's answers, and removing what the user may no longer read — keeping any unpushed edit
//! of it as a rejected edit. A replica's database has the same schema as a server's.

use crate::entities::write_acl;
use crate::sync::proto::{NewEntityInfo, PullEntry, PushDoc, Reference, Snapshot, b64, unb64};
use crate::{Result, Store, StoreError, invalid, projection};
use cahier_core::EntityDoc;
use cahier_core::document::{heads_from_string, heads_to_string};
use cahier_core::markdown::{ContentType, index_text};
use sqlx::SqliteConnection;

pub mod checkpoint;
mod html;
mod known_blobs;
mod pull;
pub use pull::{PreparedPull, PullPart, WrittenParts};
#[cfg(test)]
mod push_tests;

/// Entities made on a replica get ids from here up, so they never collide with server ids.
pub const LOCAL_ID_START: i64 = 1_000_000_000;

/// Acknowledgements per multi-row statement of [`Store::record_accepted`] (four parameters
/// each).
const ACCEPTED_ROWS: usize = 1_000;

/// A local entity with its document heads, acknowledged heads, server id, last acknowledged
/// change row, last change row, and its stored document when the server does not have it.
type PendingRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<Vec<u8>>,
);

/// A local change row (`entity_changes`) not yet acknowledged.
struct LogRow {
    seq: i64,
    hash: String,
    deps: String,
    bytes: Vec<u8>,
}

/// Local changes of one entity waiting to be pushed.
#[derive(Debug, Clone)]
pub struct PendingPush {
    /// Local id.
    pub id: i64,
    /// What is sent.
    pub doc: PushDoc,
    /// The local heads being pushed (recorded as acknowledged once accepted).
    pub heads: String,
    /// The last local change row (`entity_changes.seq`) the push holds, recorded once
    /// accepted so the next push starts after it; `None` when unknown.
    pub log_seq: Option<i64>,
}

/// An accepted push, as recorded on the replica.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Local id.
    pub id: i64,
    /// The heads pushed.
    pub heads: String,
    /// The server's id.
    pub server_id: i64,
    /// [`PendingPush::log_seq`].
    pub log_seq: Option<i64>,
    /// The entity's feed sequence after the push, when the feed will list nothing but this
    /// push (see [`Store::echoes`]).
    pub echo_seq: Option<i64>,
}

/// Whether the change rows `log`, on top of the acknowledged heads, give exactly `heads`:
/// the heads of (acknowledged heads ∪ rows) that no row depends on. A local change the log
/// lacks would be a head (or a dependency of a row, which the server then asks the whole
/// document for), so the push is built from the log only when this holds.
fn log_covers(acked: &str, heads: &str, log: &[LogRow]) -> bool {
    let split = |s: &str| -> std::collections::BTreeSet<String> {
        s.split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut tips = split(acked);
    let mut deps = std::collections::HashSet::new();
    for change in log {
        tips.insert(change.hash.clone());
        deps.extend(split(&change.deps));
    }
    tips.retain(|h| !deps.contains(h));
    tips == split(heads)
}

/// What applying a pulled document did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A document new to this replica.
    Added,
    /// Server changes applied; nothing local was waiting.
    Updated,
    /// Server changes merged with local changes still waiting to be pushed.
    Merged,
}

/// A local change set the server refused, as shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct RejectedEdit {
    /// Id.
    pub id: i64,
    /// Entity.
    pub entity_uuid: String,
    /// Entity title when refused.
    pub title: String,
    /// The server's reason.
    pub reason: String,
    /// When, ms.
    pub created_at: i64,
    /// `pending`, or `resolved`.
    pub status: String,
}

/// Sets (`'1'`) or removes a `replica_state` key that marks something under way, in the
/// caller's transaction.
pub(crate) async fn set_state_flag(
    conn: &mut sqlx::SqliteConnection,
    key: &str,
    on: bool,
) -> Result<()> {
    if on {
        sqlx::query(
            "INSERT INTO replica_state (key, value) VALUES (?, '1') \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .execute(&mut *conn)
        .await?;
    } else {
        sqlx::query("DELETE FROM replica_state WHERE key = ?")
            .bind(key)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The `replica_state` key set while a category names a template the replica lacks
/// ([`Store::category_templates_pending`]).
const CATEGORY_TEMPLATES_PENDING: &str = "category_templates_pending";

impl Store {
    /// Reads a replica setting.
    pub async fn replica_get(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM replica_state WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Every replica setting at once (a handful of rows): a sync reads its checkpoints and
    /// digests in one query instead of one each.
    pub async fn replica_settings(&self) -> Result<std::collections::HashMap<String, String>> {
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT key, value FROM replica_state")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// Writes a replica setting.
    pub async fn replica_set(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO replica_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Prepares an empty database to be a replica: local entity ids start at [`LOCAL_ID_START`],
    /// and a `replica_state` row marks it one (the triggers that keep the set of entries with
    /// changes waiting, migration 33, work only there).
    pub async fn init_replica(&self) -> Result<()> {
        sqlx::query("INSERT OR IGNORE INTO replica_state (key, value) VALUES ('replica', '1')")
            .execute(&self.pool)
            .await?;
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sqlite_sequence WHERE name = 'entities'")
                .fetch_one(&self.pool)
                .await
                .unwrap_or(0);
        if n == 0 {
            sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES ('entities', ?)")
                .bind(LOCAL_ID_START)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Replaces the read-only copies of the server's records.
    pub async fn import_reference(&self, reference: &Reference) -> Result<()> {
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for (id, name) in &reference.teams {
            sqlx::query("INSERT INTO teams (id, name, created_at) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name")
                .bind(id)
                .bind(name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        for user in &reference.users {
            sqlx::query(
                "INSERT INTO users (id, email, firstname, lastname, is_sysadmin, created_at) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (id) DO UPDATE SET email = excluded.email, firstname = excluded.firstname, \
                 lastname = excluded.lastname, is_sysadmin = excluded.is_sysadmin",
            )
            .bind(user.id)
            .bind(&user.email)
            .bind(&user.firstname)
            .bind(&user.lastname)
            .bind(user.is_sysadmin)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM memberships WHERE user_id = ?")
            .bind(reference.user_id)
            .execute(&mut *tx)
            .await?;
        for (team, is_admin) in &reference.memberships {
            sqlx::query("INSERT INTO memberships (user_id, team_id, is_admin) VALUES (?, ?, ?)")
                .bind(reference.user_id)
                .bind(team)
                .bind(is_admin)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE users SET current_team = (SELECT team_id FROM memberships WHERE user_id = users.id LIMIT 1) WHERE id = ? AND (current_team IS NULL OR current_team NOT IN (SELECT team_id FROM memberships WHERE user_id = ?))")
            .bind(reference.user_id)
            .bind(reference.user_id)
            .execute(&mut *tx)
            .await?;
        for (id, team, name) in &reference.groups {
            sqlx::query("INSERT INTO team_groups (id, team_id, name) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name")
                .bind(id)
                .bind(team)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM group_members WHERE user_id = ?")
            .bind(reference.user_id)
            .execute(&mut *tx)
            .await?;
        for group in &reference.my_groups {
            sqlx::query("INSERT OR IGNORE INTO group_members (group_id, user_id) VALUES (?, ?)")
                .bind(group)
                .bind(reference.user_id)
                .execute(&mut *tx)
                .await?;
        }
        for (table, terms) in [
            ("statuses", &reference.statuses),
            ("categories", &reference.categories),
        ] {
            for t in terms {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {table} (id, team_id, family, title, color, is_default, ordering, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (id) DO UPDATE SET title = excluded.title, color = excluded.color, is_default = excluded.is_default, \
                     ordering = excluded.ordering, state = excluded.state"
                )))
                .bind(t.id)
                .bind(t.team_id)
                .bind(&t.family)
                .bind(&t.title)
                .bind(&t.color)
                .bind(t.is_default)
                .bind(t.ordering)
                .bind(t.state)
                .execute(&mut *tx)
                .await?;
            }
        }
        // The lab's zone and the user's own: times are shown and booking windows checked as
        // at the lab, not in whatever zone the laptop is set to. An unknown name (a newer zone
        // database at the lab) keeps the replica's own default.
        if let Some(zone) = reference
            .time_zone
            .as_deref()
            .and_then(cahier_core::zone::Zone::named)
        {
            sqlx::query(
                "INSERT INTO instance_settings (key, value) VALUES ('time_zone', ?) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(zone.name())
            .execute(&mut *tx)
            .await?;
        }
        // The user's own zone, as the lab has it — cleared there, cleared here — unless a
        // choice made here has not reached the lab yet (it is sent first at each sync). A
        // server that names no lab zone predates zones: the replica's choice is kept.
        let pending: Option<String> =
            sqlx::query_scalar("SELECT value FROM replica_state WHERE key = 'pending_preferences'")
                .fetch_optional(&mut *tx)
                .await?;
        if pending.is_none() && reference.time_zone.is_some() {
            let lab = match reference.user_time_zone.as_deref() {
                None => Some(None),
                // An unknown name (a newer zone database at the lab) keeps the replica's.
                Some(name) => cahier_core::zone::Zone::named(name).map(Some),
            };
            if let Some(zone) = lab {
                sqlx::query("UPDATE users SET time_zone = ? WHERE id = ?")
                    .bind(zone.as_ref().map(|z| z.name().to_owned()))
                    .bind(reference.user_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        // What a category gives a new resource. Pulled entries keep their server ids, so the
        // template is named by the same id here, once it has arrived (a later sync links it).
        let mut templates_missing = false;
        for t in &reference.categories {
            if let Some(template) = t.default_template_id {
                let here: bool =
                    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM entities WHERE id = ?)")
                        .bind(template)
                        .fetch_one(&mut *tx)
                        .await?;
                templates_missing |= !here;
            }
            sqlx::query(
                "UPDATE categories SET default_canread_base = ?, default_canwrite_base = ?, \
                 default_template_id = (SELECT id FROM entities WHERE id = ?) WHERE id = ?",
            )
            .bind(t.default_canread_base)
            .bind(t.default_canwrite_base)
            .bind(t.default_template_id)
            .bind(t.id)
            .execute(&mut *tx)
            .await?;
        }
        set_state_flag(&mut tx, CATEGORY_TEMPLATES_PENDING, templates_missing).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether a category names a default template the replica did not hold when the
    /// reference records were last imported: a pull that brings entries may bring it, and the
    /// records are then imported again to link it (`cahier_sync`).
    pub async fn category_templates_pending(&self) -> Result<bool> {
        Ok(self
            .replica_get(CATEGORY_TEMPLATES_PENDING)
            .await?
            .is_some())
    }

    /// Writes the server's projection rows and authoritative columns for a local entity.
    async fn write_snapshot(
        &self,
        conn: &mut SqliteConnection,
        local_id: i64,
        snapshot: &Snapshot,
        with_content: bool,
    ) -> Result<()> {
        let e = &snapshot.entity;
        sqlx::query(
            "UPDATE entities SET team_id = ?, owner_id = ?, locked_by = ?, locked_at = ?, state = ?, elabid = ?, \
             created_at = ?, modified_at = ?, lastchangeby = ? WHERE id = ?",
        )
        .bind(e.team_id)
        .bind(e.owner_id)
        .bind(e.locked_by)
        .bind(e.locked_at)
        .bind(e.state)
        .bind(&e.elabid)
        .bind(e.created_at)
        .bind(e.modified_at)
        .bind(e.lastchangeby)
        .bind(local_id)
        .execute(&mut *conn)
        .await?;
        write_acl(conn, local_id, &e.canread, &e.canwrite).await?;
        if !with_content {
            return Ok(());
        }
        sqlx::query(
            "UPDATE entities SET title = ?, date = ?, body = ?, body_html = ?, content_type = ?, status_id = ?, category_id = ?, \
             rating = ?, tags_text = ?, template_uuid = ?, metadata = ?, heads = ?, n_conflicts = ? WHERE id = ?",
        )
        .bind(&e.title)
        .bind(&e.date)
        .bind(&e.body)
        .bind(&e.body_html)
        .bind(e.content_type)
        .bind(e.status_id)
        .bind(e.category_id)
        .bind(e.rating)
        .bind(e.tags.join("|"))
        .bind(&e.template_uuid)
        .bind(&e.metadata)
        .bind(&e.heads)
        .bind(e.n_conflicts)
        .bind(local_id)
        .execute(&mut *conn)
        .await?;
        let fields = projection::field_rows_of_json(e.metadata.as_deref());
        let children = projection::Children {
            fields: &fields,
            tags: &e.tags,
            links: &snapshot.links,
            steps: &snapshot.steps,
            comments: &snapshot.comments,
            conflicts: &snapshot.conflicts,
        };
        projection::write_children(conn, local_id, &children).await?;
        let uploads: Vec<_> = snapshot.uploads.iter().map(|u| u.to_attachment()).collect();
        projection::write_uploads(conn, local_id, &uploads).await?;
        crate::stock::write_snapshot(conn, local_id, snapshot.stock.as_ref()).await?;
        let index_body = index_text(&e.body, ContentType::from_code(e.content_type));
        projection::write_fts(
            conn,
            local_id,
            &e.title,
            &index_body,
            &e.tags,
            &snapshot.comments,
        )
        .await?;
        Ok(())
    }

    /// Applies one pulled document: stores the server's bytes (a new document is stored as
    /// received, without loading it), merges with local changes if any, and updates the
    /// projection.
    pub async fn apply_pulled(&self, entry: &PullEntry) -> Result<Applied> {
        let mut applied = self.apply_pulled_batch(std::slice::from_ref(entry)).await?;
        applied
            .pop()
            .ok_or_else(|| invalid("changes", "nothing applied"))
    }

    /// The merge path of a pulled document (`pull.rs` writes the others): the entry has
    /// local changes not yet acknowledged, or the server sent it whole over the copy here (it
    /// lacked what the replica had). The document is loaded, the changes applied, and it is
    /// saved whole.
    async fn apply_merge(
        &self,
        tx: &mut SqliteConnection,
        entry: &PullEntry,
        id: i64,
        local_heads: &str,
        acked: Option<String>,
    ) -> Result<(Applied, (i64, String, EntityDoc))> {
        let bytes = unb64(&entry.changes).map_err(|_| invalid("changes", "not base64"))?;
        let pending = acked.as_deref() != Some(local_heads);
        let (_, mut doc) = self.load_doc(tx, id).await?;
        doc.load_changes(&bytes)?;
        let heads = heads_to_string(&doc.heads());
        let saved = doc.save();
        sqlx::query("UPDATE entity_docs SET doc = ?, heads = ? WHERE entity_id = ?")
            .bind(&saved)
            .bind(&heads)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if heads == entry.heads {
            self.write_snapshot(tx, id, &entry.snapshot, true).await?;
        } else {
            self.write_snapshot(tx, id, &entry.snapshot, false).await?;
            let content = doc.content()?;
            let rendered = projection::render(&content);
            let (modified, by): (i64, i64) =
                sqlx::query_as("SELECT modified_at, lastchangeby FROM entities WHERE id = ?")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
            projection::write(tx, id, &content, &rendered, &heads, modified, by).await?;
            projection::write_uploads(tx, id, &doc.attachments()?).await?;
        }
        // A whole document over the copy here (the server lacked what the replica had, e.g.
        // restored from a backup): its heads may no longer hold changes acknowledged before,
        // so which change rows are acknowledged is no longer known (`pushed_seq` NULL: the
        // next push loads the document).
        sqlx::query(
            "INSERT INTO replica_entities (entity_id, acked_heads, server_id, pushed_seq) \
             VALUES (?, ?, ?, CASE WHEN ? THEN NULL ELSE 0 END) \
             ON CONFLICT (entity_id) DO UPDATE SET acked_heads = excluded.acked_heads, server_id = excluded.server_id, appended = 0, \
             children = NULL, pushed_seq = CASE WHEN ? THEN NULL ELSE replica_entities.pushed_seq END",
        )
        .bind(id)
        .bind(&entry.heads)
        .bind(entry.id)
        .bind(entry.full)
        .bind(entry.full)
        .execute(&mut *tx)
        .await?;
        let outcome = if pending {
            Applied::Merged
        } else {
            Applied::Updated
        };
        Ok((outcome, (id, heads, doc)))
    }

    /// The heads this replica last had acknowledged for each entity it holds, by UUID.
    pub async fn acked_heads(&self) -> Result<std::collections::HashMap<String, String>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT e.uuid, r.acked_heads FROM entities e JOIN replica_entities r ON r.entity_id = e.id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// [`Store::acked_heads`] of these UUIDs only (a feed page): those the replica holds.
    pub async fn acked_heads_of(
        &self,
        uuids: &[&str],
    ) -> Result<std::collections::HashMap<String, String>> {
        let list = serde_json::to_string(uuids).map_err(|e| invalid("uuids", e.to_string()))?;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT e.uuid, r.acked_heads FROM entities e JOIN replica_entities r ON r.entity_id = e.id \
             WHERE e.uuid IN (SELECT value FROM json_each(?))",
        )
        .bind(list)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Local changes waiting to be pushed: (local id, the push, the heads being pushed).
    pub async fn pending_pushes(&self) -> Result<Vec<(i64, PushDoc, String)>> {
        Ok(self
            .pushes_to_send()
            .await?
            .into_iter()
            .map(|p| (p.id, p.doc, p.heads))
            .collect())
    }

    /// Local changes waiting to be pushed, without loading documents (issue #5): an entry the
    /// server knows sends its change rows after the last acknowledged one (`pushed_seq`), read
    /// from the log in the order they were made, when those rows on top of the acknowledged
    /// heads give exactly the document's heads ([`log_covers`]); an entry the server does not
    /// have yet sends its stored document as it is. Otherwise (`pushed_seq` unknown, or the
    /// log does not account for the heads) the document is loaded and `save_after(acked
    /// heads)` sent, as before.
    pub async fn pushes_to_send(&self) -> Result<Vec<PendingPush>> {
        // One read transaction: the heads, the rows and the log are one state.
        let mut tx = self.pool.begin().await?;
        // The pending ids first, from the set the triggers keep (migration 33), checked
        // against the heads, then only their rows: a sync with nothing to push reads no entry.
        let rows: Vec<PendingRow> = sqlx::query_as(
            "WITH p AS MATERIALIZED (SELECT d.entity_id AS id FROM replica_pending x \
               JOIN entity_docs d ON d.entity_id = x.entity_id \
               LEFT JOIN replica_entities r ON r.entity_id = d.entity_id \
               WHERE r.acked_heads IS NULL OR r.acked_heads != d.heads) \
             SELECT e.id, e.uuid, d.heads, r.acked_heads, r.server_id, \
               CASE WHEN r.entity_id IS NULL THEN NULL ELSE r.pushed_seq END, \
               (SELECT max(c.seq) FROM entity_changes c WHERE c.entity_id = e.id), \
               CASE WHEN r.server_id IS NULL THEN d.doc END \
             FROM p JOIN entities e ON e.id = p.id \
             JOIN entity_docs d ON d.entity_id = e.id LEFT JOIN replica_entities r ON r.entity_id = e.id",
        )
        .fetch_all(&mut *tx)
        .await?;
        // The change rows after the acknowledged one, for every entry where that is known.
        let from_log: Vec<i64> = rows
            .iter()
            .filter(|r| r.4.is_some() && r.5.is_some())
            .map(|r| r.0)
            .collect();
        let mut logs: std::collections::HashMap<i64, Vec<LogRow>> =
            std::collections::HashMap::new();
        if !from_log.is_empty() {
            let ids =
                serde_json::to_string(&from_log).map_err(|e| invalid("ids", e.to_string()))?;
            let changes: Vec<(i64, i64, String, String, Vec<u8>)> = sqlx::query_as(
                "SELECT c.entity_id, c.seq, c.hash, c.deps, c.bytes FROM entity_changes c \
                 JOIN replica_entities r ON r.entity_id = c.entity_id \
                 WHERE c.entity_id IN (SELECT value FROM json_each(?)) AND c.seq > r.pushed_seq \
                 ORDER BY c.entity_id, c.seq",
            )
            .bind(ids)
            .fetch_all(&mut *tx)
            .await?;
            for (entity, seq, hash, deps, bytes) in changes {
                logs.entry(entity).or_default().push(LogRow {
                    seq,
                    hash,
                    deps,
                    bytes,
                });
            }
        }
        let mut pushes = Vec::with_capacity(rows.len());
        for (id, uuid, heads, acked, server_id, pushed_seq, max_seq, stored) in rows {
            let acked = acked.unwrap_or_default();
            if server_id.is_none() {
                // New to the server: the stored document as it is (Automerge loads a saved
                // document followed by change chunks too), with its team and rules.
                let row = self
                    .fetch_row(&mut tx, id)
                    .await?
                    .ok_or(StoreError::NotFound("entity"))?;
                let bytes = stored.ok_or(StoreError::NotFound("entity"))?;
                pushes.push(PendingPush {
                    id,
                    doc: PushDoc {
                        uuid,
                        base: acked,
                        changes: b64(&bytes),
                        new: Some(NewEntityInfo {
                            team_id: row.team_id,
                            canread: row.canread,
                            canwrite: row.canwrite,
                        }),
                    },
                    heads,
                    log_seq: max_seq.or(Some(0)),
                });
                continue;
            }
            let log = logs.remove(&id).unwrap_or_default();
            if pushed_seq.is_some() && log_covers(&acked, &heads, &log) {
                let mut bytes = Vec::with_capacity(log.iter().map(|c| c.bytes.len()).sum());
                for change in &log {
                    bytes.extend_from_slice(&change.bytes);
                }
                let log_seq = log.last().map(|c| c.seq).or(pushed_seq);
                pushes.push(PendingPush {
                    id,
                    doc: PushDoc {
                        uuid,
                        base: acked,
                        changes: b64(&bytes),
                        new: None,
                    },
                    heads,
                    log_seq,
                });
                continue;
            }
            // The log cannot tell: load the document.
            let (loaded_heads, mut doc) = self.load_doc(&mut tx, id).await?;
            let base = heads_from_string(&acked)?;
            let changes = doc.automerge().save_after(&base);
            self.cache_put(id, loaded_heads, doc);
            pushes.push(PendingPush {
                id,
                doc: PushDoc {
                    uuid,
                    base: acked,
                    changes: b64(&changes),
                    new: None,
                },
                heads,
                log_seq: max_seq.or(Some(0)),
            });
        }
        tx.commit().await?;
        Ok(pushes)
    }

    /// What the server needs to create a local entity (its team and access rules).
    pub async fn new_entity_info(&self, local_id: i64) -> Result<NewEntityInfo> {
        let mut conn = self.pool.acquire().await?;
        let row = self
            .fetch_row(&mut conn, local_id)
            .await?
            .ok_or(StoreError::NotFound("entity"))?;
        Ok(NewEntityInfo {
            team_id: row.team_id,
            canread: row.canread,
            canwrite: row.canwrite,
        })
    }

    /// Number of entities with local changes waiting (of the set the triggers keep,
    /// migration 33, those whose heads are not acknowledged).
    pub async fn pending_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM replica_pending x JOIN entity_docs d ON d.entity_id = x.entity_id \
             LEFT JOIN replica_entities r ON r.entity_id = d.entity_id \
             WHERE r.acked_heads IS NULL OR r.acked_heads != d.heads",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Records that the server accepted `pushed_heads` of a local entity.
    pub async fn mark_accepted(
        &self,
        local_id: i64,
        pushed_heads: &str,
        server_id: i64,
    ) -> Result<()> {
        // Which change rows the push held is not known here: the next push loads the
        // document (`pushed_seq` NULL).
        sqlx::query(
            "INSERT INTO replica_entities (entity_id, acked_heads, server_id, pushed_seq) VALUES (?, ?, ?, NULL) \
             ON CONFLICT (entity_id) DO UPDATE SET acked_heads = excluded.acked_heads, server_id = excluded.server_id, \
             pushed_seq = NULL",
        )
        .bind(local_id)
        .bind(pushed_heads)
        .bind(server_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// [`Store::mark_accepted`] for all the acknowledgements of one push batch, in one
    /// transaction: `(local id, pushed heads, server id)`.
    pub async fn mark_accepted_batch(&self, accepted: &[(i64, String, i64)]) -> Result<()> {
        let accepted: Vec<Accepted> = accepted
            .iter()
            .map(|(id, heads, server_id)| Accepted {
                id: *id,
                heads: heads.clone(),
                server_id: *server_id,
                log_seq: None,
                echo_seq: None,
            })
            .collect();
        self.record_accepted(&accepted).await
    }

    /// Records the acknowledgements of one push batch in one transaction: the heads pushed,
    /// the server's id, the last change row pushed (the next push starts after it), and the
    /// feed sequence at which the feed will list nothing but this push ([`Store::echoes`]).
    pub async fn record_accepted(&self, accepted: &[Accepted]) -> Result<()> {
        self.record_accepted_marked(accepted, None).await
    }

    /// [`Store::record_accepted`], keeping in the same transaction the last mark of the
    /// server's history the push answers carried (`pushed`; docs/SYNC.md, "A restored
    /// server"): the replica names it until a feed read covers it, so it never holds an
    /// acknowledgement without the mark that lets the server say it lost it.
    pub async fn record_accepted_marked(
        &self,
        accepted: &[Accepted],
        pushed: Option<&str>,
    ) -> Result<()> {
        if accepted.is_empty() && pushed.is_none() {
            return Ok(());
        }
        // A few multi-row statements for the whole batch, not two per entry (a statement is a
        // round trip to SQLite's thread). Rows apply in order, as one by one.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(mark) = pushed {
            checkpoint::set(&mut tx, checkpoint::FEED_PUSHED, mark).await?;
        }
        for chunk in accepted.chunks(ACCEPTED_ROWS) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO replica_entities (entity_id, acked_heads, server_id, pushed_seq) ",
            );
            q.push_values(chunk, |mut row, a| {
                row.push_bind(a.id)
                    .push_bind(a.heads.clone())
                    .push_bind(a.server_id)
                    .push_bind(a.log_seq);
            });
            q.push(
                " ON CONFLICT (entity_id) DO UPDATE SET acked_heads = excluded.acked_heads, \
                 server_id = excluded.server_id, pushed_seq = excluded.pushed_seq",
            );
            q.build().execute(&mut *tx).await?;
            // An entry acknowledged twice keeps the last one's echo, as one by one.
            let last: std::collections::HashMap<i64, usize> =
                chunk.iter().enumerate().map(|(i, a)| (a.id, i)).collect();
            let chunk: Vec<&Accepted> = chunk
                .iter()
                .enumerate()
                .filter(|(i, a)| last.get(&a.id) == Some(i))
                .map(|(_, a)| a)
                .collect();
            let echoes: Vec<(i64, i64, &str)> = chunk
                .iter()
                .filter_map(|a| a.echo_seq.map(|seq| (a.id, seq, a.heads.as_str())))
                .collect();
            if !echoes.is_empty() {
                let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO replica_echo (entity_id, seq, heads) ",
                );
                q.push_values(&echoes, |mut row, (id, seq, heads)| {
                    row.push_bind(*id)
                        .push_bind(*seq)
                        .push_bind(heads.to_string());
                });
                q.push(" ON CONFLICT (entity_id) DO UPDATE SET seq = excluded.seq, heads = excluded.heads");
                q.build().execute(&mut *tx).await?;
            }
            let plain: Vec<i64> = chunk
                .iter()
                .filter(|a| a.echo_seq.is_none())
                .map(|a| a.id)
                .collect();
            if !plain.is_empty() {
                sqlx::query(
                    "DELETE FROM replica_echo WHERE entity_id IN (SELECT value FROM json_each(?))",
                )
                .bind(serde_json::to_string(&plain).map_err(|e| invalid("ids", e.to_string()))?)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The replica's own accepted pushes that the feed will list again, by UUID: the entity's
    /// feed sequence right after the push and the heads pushed. A feed item at exactly that
    /// sequence with those heads holds nothing the replica lacks (the push is only recorded
    /// here when the server had nothing newer than the replica's checkpoint before it).
    pub async fn echoes(&self) -> Result<std::collections::HashMap<String, (i64, String)>> {
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT e.uuid, x.seq, x.heads FROM replica_echo x JOIN entities e ON e.id = x.entity_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(uuid, seq, heads)| (uuid, (seq, heads)))
            .collect())
    }

    /// Forgets the recorded echoes (once the feed has been read).
    pub async fn clear_echoes(&self) -> Result<()> {
        sqlx::query("DELETE FROM replica_echo")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Keeps a refused local change set as a rejected edit, then removes the local changes:
    /// the entity is dropped locally so the next pull brings the server's version back (or
    /// nothing, if the server never had it). The bytes stay in `rejected_edits`.
    pub async fn record_rejection(
        &self,
        local_id: i64,
        push: &PushDoc,
        reason: &str,
    ) -> Result<()> {
        let bytes = unb64(&push.changes).map_err(|_| invalid("changes", "not base64"))?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let title: String = sqlx::query_scalar("SELECT title FROM entities WHERE id = ?")
            .bind(local_id)
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or_default();
        sqlx::query("INSERT INTO rejected_edits (entity_uuid, title, reason, bytes, base_heads, created_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&push.uuid)
            .bind(title)
            .bind(reason)
            .bind(&bytes)
            .bind(&push.base)
            .bind(self.now_ms())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM uploads WHERE entity_id = ?")
            .bind(local_id)
            .execute(&mut *tx)
            .await?;
        crate::booking_requests::forget_mirrored(&mut tx, local_id).await?;
        sqlx::query("DELETE FROM entities WHERE id = ?")
            .bind(local_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM entity_fts WHERE rowid = ?")
            .bind(local_id)
            .execute(&mut *tx)
            .await?;
        crate::search_pending::forget(&mut tx, local_id).await?;
        tx.commit().await?;
        if let Ok(mut cache) = self.docs.lock() {
            cache.pop(&local_id);
        }
        Ok(())
    }

    /// How many entities held locally the server knows (rows of `replica_entities` go with
    /// their entity).
    pub async fn synced_count(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM replica_entities WHERE server_id IS NOT NULL")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// UUIDs of the entities this replica holds as known to the server.
    pub async fn synced_uuids(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT e.uuid FROM entities e JOIN replica_entities r ON r.entity_id = e.id WHERE r.server_id IS NOT NULL")
            .fetch_all(&self.pool)
            .await?)
    }

    /// After the server went back to an older backup: of the entities this replica holds as
    /// known to the server, those the server's whole feed did not list (`seen` holds the UUIDs
    /// it listed) are made local again, to be pushed whole as new entries. An entry the user
    /// may in fact no longer read is then refused on push and kept as a rejected edit, never
    /// silently dropped. Returns how many.
    pub async fn forget_unseen(&self, seen: &std::collections::HashSet<String>) -> Result<usize> {
        let synced: Vec<(i64, String)> = sqlx::query_as(
            "SELECT e.id, e.uuid FROM entities e JOIN replica_entities r ON r.entity_id = e.id \
             WHERE r.server_id IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut forgotten = 0;
        for (id, uuid) in synced {
            if seen.contains(&uuid) {
                continue;
            }
            sqlx::query(
                "UPDATE replica_entities SET server_id = NULL, acked_heads = '', pushed_seq = NULL WHERE entity_id = ?",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            forgotten += 1;
        }
        // Their edits wait to be pushed again: the whole reading of the feed is over.
        checkpoint::end_rescan(&mut tx).await?;
        tx.commit().await?;
        Ok(forgotten)
    }

    /// Removes entities the user may no longer read; unpushed edits become rejected edits.
    pub async fn remove_revoked(&self, uuids: &[String]) -> Result<usize> {
        let mut removed = 0;
        // Only those held here (the feed lists what changed at the lab, held or not).
        let mut held: Vec<i64> = Vec::new();
        for chunk in uuids.chunks(500) {
            let mut builder =
                sqlx::QueryBuilder::<sqlx::Sqlite>::new("SELECT id FROM entities WHERE uuid IN (");
            let mut list = builder.separated(", ");
            for uuid in chunk {
                list.push_bind(uuid.clone());
            }
            builder.push(")");
            held.extend(
                builder
                    .build_query_scalar::<i64>()
                    .fetch_all(&self.pool)
                    .await?,
            );
        }
        if held.is_empty() {
            return Ok(0);
        }
        let pending: std::collections::HashMap<i64, (i64, PushDoc, String)> = self
            .pending_pushes()
            .await?
            .into_iter()
            .map(|p| (p.0, p))
            .collect();
        for id in held {
            // Each entry goes whole or not at all.
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            // The lab lets this device attach a file it did not send only while the user may
            // read an entry that holds it: with this one gone, its files are asked about again
            // before a push names them (a push refused for them would recover, at the cost of
            // a refusal at the lab).
            sqlx::query(
                "DELETE FROM replica_known_blobs WHERE sha256 IN \
                 (SELECT sha256 FROM uploads WHERE entity_id = ?)",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let keep = pending.get(&id);
            if keep.is_none() {
                sqlx::query("DELETE FROM uploads WHERE entity_id = ?")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                crate::booking_requests::forget_mirrored(&mut tx, id).await?;
                sqlx::query("DELETE FROM entities WHERE id = ?")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM entity_fts WHERE rowid = ?")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                crate::search_pending::forget(&mut tx, id).await?;
            }
            tx.commit().await?;
            match keep {
                Some((_, push, _)) => {
                    self.record_rejection(
                        id,
                        push,
                        "your access to this entry was removed on the server",
                    )
                    .await?;
                }
                None => {
                    if let Ok(mut cache) = self.docs.lock() {
                        cache.pop(&id);
                    }
                }
            }
            removed += 1;
        }
        Ok(removed)
    }

    /// Rejected edits, newest first.
    pub async fn rejected_edits(&self) -> Result<Vec<RejectedEdit>> {
        Ok(sqlx::query_as("SELECT id, entity_uuid, title, reason, created_at, status FROM rejected_edits ORDER BY id DESC")
            .fetch_all(&self.pool)
            .await?)
    }

    /// The current heads of an entity by UUID (tests and status pages).
    pub async fn heads_of(&self, uuid: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT d.heads FROM entities e JOIN entity_docs d ON d.entity_id = e.id WHERE e.uuid = ?")
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await?)
    }
}

impl Store {
    /// Hashes of the files the replica's file policy selects (`replica_files.rs`) but whose
    /// blob it lacks (not yet downloaded, or a download that failed: it is tried again at
    /// every sync).
    pub async fn missing_blobs(&self) -> Result<Vec<String>> {
        let hashes = self.wanted_blobs().await?;
        let Some(blobs) = self.blobs() else {
            return Ok(Vec::new());
        };
        let mut missing = Vec::new();
        for hash in hashes {
            if !blobs.exists(&hash).await {
                missing.push(hash);
            }
        }
        Ok(missing)
    }

    /// Hashes of the files that local entities reference and whose blob is here: what may
    /// have to be uploaded before pushing them.
    pub async fn blobs_of(&self, local_ids: &[i64]) -> Result<Vec<String>> {
        let Some(blobs) = self.blobs() else {
            return Ok(Vec::new());
        };
        let mut hashes = std::collections::BTreeSet::new();
        for id in local_ids {
            let rows: Vec<String> =
                sqlx::query_scalar("SELECT DISTINCT sha256 FROM uploads WHERE entity_id = ?")
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await?;
            for hash in rows {
                if blobs.exists(&hash).await {
                    hashes.insert(hash);
                }
            }
        }
        Ok(hashes.into_iter().collect())
    }

    /// The saved bytes of a local entity's document.
    pub async fn saved_document(&self, local_id: i64) -> Result<Vec<u8>> {
        sqlx::query_scalar("SELECT doc FROM entity_docs WHERE entity_id = ?")
            .bind(local_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("entity"))
    }
}
