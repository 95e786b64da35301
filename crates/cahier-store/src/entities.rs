//! Entities: creating them, reading their projection, changing their content (through their
//! Automerge document, re-projected in the same transaction), their access rules, lock and
//! state, and reading their history. Every method takes the acting [`Subject`] and applies the
//! access policy: an entity the subject may not read is reported as not found.

use crate::catalog::{Family, Vocabulary};
use crate::{Result, Store, StoreError, invalid, projection};
use automerge::{ActorId, ChangeHash};
use cahier_core::access::Grant;
use cahier_core::document::{
    CommitMeta, EntityContent, EntityOp, NewContent, heads_from_string, heads_to_string,
};
use cahier_core::{
    AccessRule, BaseLevel, EntityAccess, EntityDoc, EntityId, EntityKind, EntityPatch, Subject,
};
use serde::{Deserialize, Serialize};
use sqlx::{Row, SqliteConnection};
use std::collections::HashMap;

/// Entity states, with eLabFTW's codes.
pub mod state {
    /// Normal.
    pub const NORMAL: i64 = 1;
    /// Archived.
    pub const ARCHIVED: i64 = 2;
    /// Deleted (soft; can be restored).
    pub const DELETED: i64 = 3;
}

/// A loaded document kept in memory with the heads it was loaded at.
#[derive(Debug)]
pub(crate) struct CachedDoc {
    heads: String,
    doc: EntityDoc,
}

/// Input for a new entity.
#[derive(Debug, Clone)]
pub struct NewEntity {
    /// Kind.
    pub kind: EntityKind,
    /// Owning team; the creator must belong to it.
    pub team_id: i64,
    /// Read rule; defaults to the creator's settings.
    pub canread: Option<AccessRule>,
    /// Write rule; defaults to the creator's settings.
    pub canwrite: Option<AccessRule>,
    /// Initial content.
    pub patch: EntityPatch,
    /// Template or source entity it was copied from.
    pub template: Option<EntityId>,
}

/// A new entity checked and built, not yet written ([`Store::prepare_entity`]).
pub(crate) struct PreparedEntity {
    /// Everything the insert writes.
    pub(crate) record: PreparedRecord,
    /// The live document, put in the cache after the insert; `None` once forgotten.
    pub(crate) doc: Option<EntityDoc>,
}

impl PreparedEntity {
    /// Drops the live document (its saved bytes stay): an Automerge document in memory takes
    /// far more room than saved, and an import holding thousands would grow with their number.
    pub(crate) fn forget_doc(&mut self) {
        self.doc = None;
    }
}

/// What inserting a prepared entity writes, every CPU-costly part (document, save, changes,
/// projection rows, rendered HTML) already computed. Serialisable: an import writes each to
/// a temporary file as it prepares it and reads them back one at a time in its transaction
/// (`eln_import/spill.rs`). Only ever read back by the process that wrote it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PreparedRecord {
    pub(crate) id: EntityId,
    kind: EntityKind,
    team_id: i64,
    canread: AccessRule,
    canwrite: AccessRule,
    #[serde(with = "base64_bytes")]
    actor: Vec<u8>,
    now: i64,
    pub(crate) heads: String,
    #[serde(with = "base64_bytes")]
    bytes: Vec<u8>,
    changes: Vec<PreparedChange>,
    rows: projection::Rows,
    elabid: String,
    attachments: Vec<cahier_core::document::Attachment>,
}

impl PreparedRecord {
    /// The kind it will have.
    pub(crate) fn kind(&self) -> EntityKind {
        self.kind
    }
}

/// Bytes as base64 text in a serialised [`PreparedRecord`] (a JSON array of numbers would
/// take four times the room on disk).
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    pub(super) fn serialize<S: serde::Serializer>(
        bytes: &[u8],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text: std::borrow::Cow<'de, str> = serde::Deserialize::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// A change of a prepared entity ([`cahier_core::document::ChangeInfo`], serialisable).
#[derive(Debug, Serialize, Deserialize)]
struct PreparedChange {
    hash: String,
    actor: String,
    time_ms: i64,
    message: String,
    deps: Vec<String>,
    #[serde(with = "base64_bytes")]
    bytes: Vec<u8>,
}

/// The projection row of an entity, with its authoritative columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRow {
    /// Integer id (API v2).
    pub id: i64,
    /// UUIDv7.
    pub uuid: String,
    /// Kind.
    pub kind: EntityKind,
    /// Owning team.
    pub team_id: i64,
    /// Owner.
    pub owner_id: i64,
    /// Read rule.
    pub canread: AccessRule,
    /// Write rule.
    pub canwrite: AccessRule,
    /// Who locked it.
    pub locked_by: Option<i64>,
    /// When it was locked, ms.
    pub locked_at: Option<i64>,
    /// 1 normal, 2 archived, 3 deleted.
    pub state: i64,
    /// eLabFTW-style unique reference.
    pub elabid: String,
    /// Created, ms.
    pub created_at: i64,
    /// Last change, ms.
    pub modified_at: i64,
    /// Author of the last change.
    pub lastchangeby: i64,
    /// Title.
    pub title: String,
    /// Date.
    pub date: String,
    /// Body source.
    pub body: String,
    /// Body rendered and sanitised.
    pub body_html: String,
    /// 1 HTML, 2 Markdown.
    pub content_type: i64,
    /// Status id.
    pub status_id: Option<i64>,
    /// Category id.
    pub category_id: Option<i64>,
    /// Rating.
    pub rating: i64,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Template it came from.
    pub template_uuid: Option<String>,
    /// eLabFTW `metadata` JSON.
    pub metadata: Option<String>,
    /// Current heads (comma-separated hex).
    pub heads: String,
    /// Number of fields in conflict.
    pub n_conflicts: i64,
}

impl EntityRow {
    /// What the access policy needs.
    pub fn access(&self) -> EntityAccess {
        EntityAccess {
            owner_id: self.owner_id,
            team_id: self.team_id,
            canread: self.canread.clone(),
            canwrite: self.canwrite.clone(),
            locked_by: self.locked_by,
        }
    }
}

/// A step as projected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct StepRow {
    /// Stable id.
    pub step_id: String,
    /// Position.
    pub ordering: i64,
    /// Text.
    pub body: String,
    /// Ticked.
    pub done: bool,
    /// Who ticked it.
    pub done_by: Option<i64>,
    /// When, ms.
    pub done_at: Option<i64>,
}

/// A comment as projected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct CommentRow {
    /// Stable id.
    pub comment_id: String,
    /// Author.
    pub author: i64,
    /// Written, ms.
    pub created_at: i64,
    /// Edited, ms.
    pub edited_at: Option<i64>,
    /// Text.
    pub body: String,
}

/// A linked entity the subject may read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LinkRow {
    /// Integer id.
    pub id: i64,
    /// UUID.
    pub uuid: String,
    /// Kind (stored name).
    pub kind: String,
    /// Title.
    pub title: String,
    /// State.
    pub state: i64,
}

/// A field with concurrent values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictRow {
    /// Field key.
    pub field: String,
    /// Every value.
    pub values: Vec<String>,
}

/// One version in an entity's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct VersionRow {
    /// Global sequence number.
    pub seq: i64,
    /// Change hash (hex).
    pub hash: String,
    /// Author.
    pub user_id: i64,
    /// Device that wrote it.
    pub device: String,
    /// Writer's clock, ms (not trusted).
    pub time_ms: i64,
    /// Server's receive time, ms.
    pub received_at: i64,
    /// What the change was.
    pub message: String,
}

/// The result of a content change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateOutcome {
    /// Heads after the change (comma-separated hex).
    pub heads: String,
    /// Heads of the change just written, to use as the base of the next edit.
    pub base: String,
    /// Whether anything changed.
    pub changed: bool,
    /// Whether other people's edits were merged in (the editor should reload to see them).
    pub merged: bool,
}

pub(crate) const ENTITY_COLUMNS: &str = "e.id, e.uuid, e.kind, e.team_id, e.owner_id, e.canread_base, e.canwrite_base, \
    e.locked_by, e.locked_at, e.state, e.elabid, e.created_at, e.modified_at, e.lastchangeby, e.title, e.date, \
    e.body, e.body_html, e.content_type, e.status_id, e.category_id, e.rating, e.tags_text, e.template_uuid, \
    e.metadata, e.heads, e.n_conflicts";

fn rule_from(base: i64) -> AccessRule {
    AccessRule::base(BaseLevel::from_code(base).unwrap_or(BaseLevel::OwnerOnly))
}

/// The rendered body of a row. A replica's first copy stores it empty (the server does not
/// ship it, docs/SYNC.md) and [`Store::render_pending_html`] fills it in later; until then it
/// is rendered here from the body, which is what the stored value would be.
fn html_of(row: &sqlx::sqlite::SqliteRow, render: bool) -> Result<String> {
    let html: String = row.try_get("body_html")?;
    if !html.is_empty() || !render {
        return Ok(html);
    }
    let body: &str = row.try_get("body")?;
    if body.is_empty() {
        return Ok(html);
    }
    let content_type: i64 = row.try_get("content_type")?;
    Ok(cahier_core::markdown::render_body(
        body,
        cahier_core::markdown::ContentType::from_code(content_type),
    ))
}

pub(crate) fn row_from_sql(row: &sqlx::sqlite::SqliteRow) -> Result<EntityRow> {
    row_from_sql_with(row, true)
}

/// [`row_from_sql`]; with `render` false, an empty `body_html` stays empty (rows read only to
/// check a write, whose projection renders the body anyway: a replica's first copy stores it
/// empty, and rendering it on each such read cost a save on a replica ~1 ms, twice).
fn row_from_sql_with(row: &sqlx::sqlite::SqliteRow, render: bool) -> Result<EntityRow> {
    let kind: String = row.try_get("kind")?;
    let tags_text: String = row.try_get("tags_text")?;
    Ok(EntityRow {
        id: row.try_get("id")?,
        uuid: row.try_get("uuid")?,
        kind: EntityKind::parse(&kind)
            .ok_or_else(|| invalid("kind", "unknown entity kind in database"))?,
        team_id: row.try_get("team_id")?,
        owner_id: row.try_get("owner_id")?,
        canread: rule_from(row.try_get("canread_base")?),
        canwrite: rule_from(row.try_get("canwrite_base")?),
        locked_by: row.try_get("locked_by")?,
        locked_at: row.try_get("locked_at")?,
        state: row.try_get("state")?,
        elabid: row.try_get("elabid")?,
        created_at: row.try_get("created_at")?,
        modified_at: row.try_get("modified_at")?,
        lastchangeby: row.try_get("lastchangeby")?,
        title: row.try_get("title")?,
        date: row.try_get("date")?,
        body_html: html_of(row, render)?,
        body: row.try_get("body")?,
        content_type: row.try_get("content_type")?,
        status_id: row.try_get("status_id")?,
        category_id: row.try_get("category_id")?,
        rating: row.try_get("rating")?,
        tags: if tags_text.is_empty() {
            Vec::new()
        } else {
            tags_text.split('|').map(str::to_owned).collect()
        },
        template_uuid: row.try_get("template_uuid")?,
        metadata: row.try_get("metadata")?,
        heads: row.try_get("heads")?,
        n_conflicts: row.try_get("n_conflicts")?,
    })
}

/// A JSON array of values, for `IN (SELECT value FROM json_each(?))`.
pub(crate) fn json_list<T: Serialize>(values: &[T]) -> Result<String> {
    serde_json::to_string(values).map_err(|e| invalid("ids", e.to_string()))
}

pub(crate) async fn load_acl(conn: &mut SqliteConnection, row: &mut EntityRow) -> Result<()> {
    let grants: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT mode, grantee, ref_id FROM entity_acl WHERE entity_id = ? ORDER BY ref_id",
    )
    .bind(row.id)
    .fetch_all(&mut *conn)
    .await?;
    apply_grants(row, grants);
    Ok(())
}

/// Puts an entity's access list (mode, grantee, id; ordered by id) into its rules.
pub(crate) fn apply_grants(row: &mut EntityRow, grants: Vec<(String, String, i64)>) {
    for (mode, grantee, ref_id) in grants {
        let rule = if mode == "w" {
            &mut row.canwrite
        } else {
            &mut row.canread
        };
        match grantee.as_str() {
            "t" => rule.teams.push(ref_id),
            "g" => rule.teamgroups.push(ref_id),
            _ => rule.users.push(ref_id),
        }
    }
}

pub(crate) async fn write_acl(
    conn: &mut SqliteConnection,
    entity_id: i64,
    canread: &AccessRule,
    canwrite: &AccessRule,
) -> Result<()> {
    crate::projection::forget_pulled_children(&mut *conn, entity_id).await?;
    sqlx::query("DELETE FROM entity_acl WHERE entity_id = ?")
        .bind(entity_id)
        .execute(&mut *conn)
        .await?;
    for (mode, rule) in [("r", canread), ("w", canwrite)] {
        for (grantee, ids) in [
            ("t", &rule.teams),
            ("g", &rule.teamgroups),
            ("u", &rule.users),
        ] {
            for id in ids {
                sqlx::query("INSERT OR IGNORE INTO entity_acl (entity_id, mode, grantee, ref_id) VALUES (?, ?, ?, ?)")
                    .bind(entity_id)
                    .bind(mode)
                    .bind(grantee)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    sqlx::query("UPDATE entities SET canread_base = ?, canwrite_base = ? WHERE id = ?")
        .bind(canread.base.code())
        .bind(canwrite.base.code())
        .bind(entity_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// The actor this process writes with for `user_id`, registered on first use.
    /// Called in the edit's write transaction, which must end with [`Store::note_lineage`]:
    /// actors drawn before a restore under this process are not used after it ([`lineage`]).
    ///
    /// [`lineage`]: crate::lineage
    async fn actor_for(&self, conn: &mut SqliteConnection, user_id: i64) -> Result<ActorId> {
        self.check_lineage(conn).await?;
        let actor = self.process_actor(user_id)?;
        self.register_actor(conn, &actor, user_id).await?;
        Ok(actor)
    }

    /// The actor this process writes with for `user_id` (not yet registered).
    fn process_actor(&self, user_id: i64) -> Result<ActorId> {
        let existing = self
            .actors
            .lock()
            .map_err(|_| poisoned())?
            .get(&user_id)
            .cloned();
        let actor = match existing {
            Some(actor) => actor,
            None => {
                let actor = ActorId::from(rand::random::<[u8; 16]>());
                self.actors
                    .lock()
                    .map_err(|_| poisoned())?
                    .insert(user_id, actor.clone());
                actor
            }
        };
        Ok(actor)
    }

    pub(crate) async fn register_actor(
        &self,
        conn: &mut SqliteConnection,
        actor: &ActorId,
        user_id: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT OR IGNORE INTO actors (actor, user_id, device, first_seen) VALUES (?, ?, ?, ?)",
        )
        .bind(actor.to_hex_string())
        .bind(user_id)
        .bind(&self.device)
        .bind(self.now_ms())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Stores every change of `doc` after `since` (the heads it was written on, and as
    /// stored), with provenance, and keeps the fast path's index current up to `heads`.
    async fn record_changes(
        &self,
        conn: &mut SqliteConnection,
        entity_id: i64,
        doc: &mut EntityDoc,
        (since, since_str): (&[ChangeHash], &str),
        heads: &str,
        user_id: i64,
    ) -> Result<()> {
        let changes = doc.changes_since(since);
        self.index_write(conn, entity_id, since_str, heads, &changes)
            .await?;
        self.insert_changes(conn, entity_id, changes, user_id).await
    }

    pub(crate) async fn insert_changes(
        &self,
        conn: &mut SqliteConnection,
        entity_id: i64,
        changes: Vec<cahier_core::document::ChangeInfo>,
        user_id: i64,
    ) -> Result<()> {
        let device = self.device.clone();
        self.insert_changes_from(conn, entity_id, changes, user_id, &device)
            .await
    }

    /// Appends changes with their provenance: the user and device they came from.
    pub(crate) async fn insert_changes_from(
        &self,
        conn: &mut SqliteConnection,
        entity_id: i64,
        changes: Vec<cahier_core::document::ChangeInfo>,
        user_id: i64,
        device: &str,
    ) -> Result<()> {
        let now = self.now_ms();
        for change in changes {
            sqlx::query(
                "INSERT OR IGNORE INTO entity_changes (entity_id, hash, actor, user_id, device, time_ms, received_at, \
                 message, deps, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(entity_id)
            .bind(&change.hash)
            .bind(&change.actor)
            .bind(user_id)
            .bind(device)
            .bind(change.time_ms)
            .bind(now)
            .bind(&change.message)
            .bind(change.deps.join(","))
            .bind(&change.bytes)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    async fn check_terms(&self, kind: EntityKind, team_id: i64, patch: &EntityPatch) -> Result<()> {
        let family = Family::of(kind);
        if let Some(Some(status)) = patch.status {
            self.check_term(Vocabulary::Status, status, team_id, family)
                .await?;
        }
        if let Some(Some(category)) = patch.category {
            self.check_term(Vocabulary::Category, category, team_id, family)
                .await?;
        }
        Ok(())
    }

    async fn check_rule(&self, field: &str, rule: &AccessRule) -> Result<()> {
        for (what, ids, table) in [
            ("teams", &rule.teams, "teams"),
            ("teamgroups", &rule.teamgroups, "team_groups"),
            ("users", &rule.users, "users"),
        ] {
            for id in ids {
                let found: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT 1 FROM {table} WHERE id = ?"
                )))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                if found.is_none() {
                    return Err(invalid(field, format!("{what}: {id} does not exist")));
                }
            }
        }
        Ok(())
    }

    /// Creates an entity owned by `subject` and returns its integer id.
    pub async fn create_entity(&self, subject: &Subject, new: NewEntity) -> Result<i64> {
        let prepared = self
            .prepare_entity(subject, new, self.new_entity_id(), "create")
            .await?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let entity_id = self
            .insert_prepared(&mut tx, subject, &prepared.record)
            .await?;
        tx.commit().await?;
        if let Some(doc) = prepared.doc {
            self.cache_put(entity_id, prepared.record.heads, doc);
        }
        Ok(entity_id)
    }

    /// Checks a new entity and builds its document (no write): the first half of
    /// [`Store::create_entity`], shared with the .eln import, which inserts many in one
    /// transaction. `id` is the entity's UUID, chosen by the caller so that links between
    /// entities created together can be written before they exist.
    pub(crate) async fn prepare_entity(
        &self,
        subject: &Subject,
        new: NewEntity,
        id: EntityId,
        message: &str,
    ) -> Result<PreparedEntity> {
        if !subject.is_member(new.team_id) {
            return Err(invalid(
                "team",
                "you can only create entries in a team you belong to",
            ));
        }
        let user = self.user(subject.user_id).await?;
        self.check_field_links(subject, None, &new.patch).await?;
        let mut patch = new.patch;
        if patch.status.is_none() && matches!(new.kind, EntityKind::Experiment) {
            patch.status = Some(
                self.default_term(Vocabulary::Status, new.team_id, Family::of(new.kind))
                    .await?,
            );
        }
        if patch.category.is_none()
            && let Some(default) = self
                .default_term(Vocabulary::Category, new.team_id, Family::of(new.kind))
                .await?
        {
            patch.category = Some(Some(default));
        }
        // A resource always sits in one of its team's resource categories (eLabFTW files
        // resources by category; lists, filters and the category's defaults rely on it).
        if new.kind == EntityKind::Resource && !matches!(patch.category, Some(Some(_))) {
            return Err(invalid(
                "category",
                "required: choose one of the team's resource categories (the team has no default one; a team admin creates them)",
            ));
        }
        self.check_terms(new.kind, new.team_id, &patch).await?;
        // Rules not given come from the resource's category, else the author's defaults.
        let category_defaults = match (new.kind, patch.category) {
            (EntityKind::Resource, Some(Some(category))) => {
                self.category_defaults(category).await?
            }
            _ => crate::catalog::CategoryDefaults::default(),
        };
        let (default_read, default_write) = if cahier_core::template::is_template(new.kind) {
            cahier_core::template::default_rules(subject, new.team_id)
        } else {
            (
                category_defaults
                    .canread
                    .map_or_else(|| rule_from(user.default_read_base), AccessRule::base),
                category_defaults
                    .canwrite
                    .map_or_else(|| rule_from(user.default_write_base), AccessRule::base),
            )
        };
        let canread = new.canread.unwrap_or(default_read).normalized();
        let canwrite = new.canwrite.unwrap_or(default_write).normalized();
        self.check_rule("canread", &canread).await?;
        self.check_rule("canwrite", &canwrite).await?;
        if cahier_core::template::is_template(new.kind) {
            cahier_core::template::check_rules(subject, new.team_id, &canread, &canwrite)
                .map_err(|m| StoreError::Forbidden(m.into()))?;
        }

        let now = self.now_ms();
        // The document, its save and its projection are built before taking the write lock:
        // creating an Automerge document costs milliseconds, and writers wait on that lock.
        let actor = self.process_actor(subject.user_id)?;
        let content = NewContent {
            id,
            kind: new.kind,
            created_by: subject.user_id,
            created_at_ms: now,
            template: new.template,
            patch,
            default_date: cahier_core::clock::format_date(now),
        };
        let meta = CommitMeta {
            actor: actor.clone(),
            time_ms: now,
            message: message.into(),
        };
        let mut doc = EntityDoc::create(&content, &meta)?;
        let heads = heads_to_string(&doc.heads());
        let bytes = doc.save();
        let changes = doc
            .changes_since(&[])
            .into_iter()
            .map(|c| PreparedChange {
                hash: c.hash,
                actor: c.actor,
                time_ms: c.time_ms,
                message: c.message,
                deps: c.deps,
                bytes: c.bytes,
            })
            .collect();
        let content = doc.content()?;
        let rows = projection::Rows::of(&content, &projection::render(&content));
        let attachments = doc.attachments()?;
        let elabid = format!(
            "{}-{}",
            cahier_core::clock::format_date(now).replace('-', ""),
            crate::random_hex(10)
        );
        Ok(PreparedEntity {
            record: PreparedRecord {
                id,
                kind: new.kind,
                team_id: new.team_id,
                canread,
                canwrite,
                actor: actor.to_bytes().to_vec(),
                now,
                heads,
                bytes,
                changes,
                rows,
                elabid,
                attachments,
            },
            doc: Some(doc),
        })
    }

    /// Writes a prepared entity inside `tx` (the second half of [`Store::create_entity`]);
    /// returns its integer id. The caller commits, then puts the document in the cache.
    pub(crate) async fn insert_prepared(
        &self,
        tx: &mut SqliteConnection,
        subject: &Subject,
        prepared: &PreparedRecord,
    ) -> Result<i64> {
        let PreparedRecord {
            id,
            kind,
            team_id,
            canread,
            canwrite,
            actor,
            now,
            heads,
            bytes,
            changes,
            rows,
            elabid,
            attachments,
        } = prepared;
        let now = *now;
        let changes: Vec<_> = changes
            .iter()
            .map(|c| cahier_core::document::ChangeInfo {
                hash: c.hash.clone(),
                actor: c.actor.clone(),
                time_ms: c.time_ms,
                message: c.message.clone(),
                deps: c.deps.clone(),
                bytes: c.bytes.clone(),
            })
            .collect();
        self.register_actor(&mut *tx, &ActorId::from(actor.as_slice()), subject.user_id)
            .await?;
        let entity_id: i64 = sqlx::query_scalar(
            "INSERT INTO entities (uuid, kind, team_id, owner_id, canread_base, canwrite_base, elabid, created_at, \
             modified_at, lastchangeby, title, date, body, body_html, content_type, heads) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', '', '', '', 2, ?) RETURNING id",
        )
        .bind(id.to_string())
        .bind(kind.as_str())
        .bind(*team_id)
        .bind(subject.user_id)
        .bind(canread.base.code())
        .bind(canwrite.base.code())
        .bind(elabid)
        .bind(now)
        .bind(now)
        .bind(subject.user_id)
        .bind(heads)
        .fetch_one(&mut *tx)
        .await?;
        write_acl(&mut *tx, entity_id, canread, canwrite).await?;
        sqlx::query("INSERT INTO entity_docs (entity_id, doc, heads) VALUES (?, ?, ?)")
            .bind(entity_id)
            .bind(bytes)
            .bind(heads)
            .execute(&mut *tx)
            .await?;
        self.index_write(&mut *tx, entity_id, "", heads, &changes)
            .await?;
        self.insert_changes(&mut *tx, entity_id, changes, subject.user_id)
            .await?;
        projection::write_rows(&mut *tx, entity_id, rows, heads, now, subject.user_id).await?;
        if !attachments.is_empty() {
            projection::write_uploads(&mut *tx, entity_id, attachments).await?;
        }
        Ok(entity_id)
    }

    pub(crate) async fn fetch_row(
        &self,
        conn: &mut SqliteConnection,
        id: i64,
    ) -> Result<Option<EntityRow>> {
        self.fetch_row_with(conn, id, true).await
    }

    /// [`Store::fetch_row`]; `render` false leaves an empty `body_html` empty (see
    /// [`row_from_sql_with`]).
    async fn fetch_row_with(
        &self,
        conn: &mut SqliteConnection,
        id: i64,
        render: bool,
    ) -> Result<Option<EntityRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENTITY_COLUMNS} FROM entities e WHERE e.id = ?"
        )))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            None => Ok(None),
            Some(row) => {
                let mut entity = row_from_sql_with(&row, render)?;
                load_acl(conn, &mut entity).await?;
                Ok(Some(entity))
            }
        }
    }

    /// An entity the subject may read. Deleted entities are visible only to readers who may
    /// restore them (deleting never widens who reads). Anything else is "not found".
    pub async fn entity(&self, subject: &Subject, id: i64) -> Result<EntityRow> {
        self.entity_with(subject, id, true).await
    }

    /// [`Store::entity`]; `render` false leaves an empty `body_html` empty (a row read to
    /// check a write).
    async fn entity_with(&self, subject: &Subject, id: i64, render: bool) -> Result<EntityRow> {
        // A pushed edit may not be projected yet (deferred.rs): one entry is always fresh.
        self.project_if_stale(id).await?;
        let mut conn = self.pool.acquire().await?;
        let row = self
            .fetch_row_with(&mut conn, id, render)
            .await?
            .ok_or(StoreError::NotFound("entity"))?;
        let access = row.access();
        let visible = if row.state == state::DELETED {
            access.may_admin(subject) && access.may_read(subject)
        } else {
            access.may_read(subject)
        };
        if visible {
            Ok(row)
        } else {
            Err(StoreError::NotFound("entity"))
        }
    }

    /// Like [`Store::entity`], also checking the kind (an experiment id under `/items` is not found).
    pub async fn entity_of_kind(
        &self,
        subject: &Subject,
        kind: EntityKind,
        id: i64,
    ) -> Result<EntityRow> {
        let row = self.entity(subject, id).await?;
        if row.kind == kind {
            Ok(row)
        } else {
            Err(StoreError::NotFound("entity"))
        }
    }

    /// An entity by UUID, if the subject may read it.
    pub async fn entity_by_uuid(&self, subject: &Subject, uuid: &str) -> Result<EntityRow> {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM entities WHERE uuid = ?")
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await?;
        self.entity(subject, id.ok_or(StoreError::NotFound("entity"))?)
            .await
    }

    /// Why the subject may read and write an entity (for the access panel).
    pub fn explain_access(row: &EntityRow, subject: &Subject) -> (Vec<Grant>, Vec<Grant>) {
        let access = row.access();
        let write = if access.may_write(subject) {
            access.grants(&access.canwrite, subject)
        } else {
            Vec::new()
        };
        (access.read_grants(subject), write)
    }

    fn cache_take(&self, id: i64) -> Option<CachedDoc> {
        self.docs.lock().ok()?.pop(&id)
    }

    pub(crate) fn cache_put(&self, id: i64, heads: String, doc: EntityDoc) {
        if let Ok(mut cache) = self.docs.lock() {
            cache.put(id, CachedDoc { heads, doc });
        }
    }

    pub(crate) async fn load_doc(
        &self,
        conn: &mut SqliteConnection,
        id: i64,
    ) -> Result<(String, EntityDoc)> {
        // The bytes are only read when the cached document (if any) is not at the stored heads
        // (`heads` comes before `doc` in the row, so comparing it reads no document page).
        let cached = self.cache_take(id);
        // NULL when nothing is cached: `heads = NULL` is never true, so the bytes come.
        let cached_heads = cached.as_ref().map(|c| c.heads.as_str());
        let (heads, bytes): (String, Option<Vec<u8>>) = sqlx::query_as(
            "SELECT heads, CASE WHEN heads = ? THEN NULL ELSE doc END FROM entity_docs WHERE entity_id = ?",
        )
        .bind(cached_heads)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound("entity"))?;
        match (cached, bytes) {
            (Some(cached), None) if cached.heads == heads => Ok((heads, cached.doc)),
            (_, Some(bytes)) => Ok((heads, EntityDoc::load(&bytes)?)),
            (_, None) => Err(StoreError::NotFound("entity")),
        }
    }

    /// Changes an entity's content. `base` is the version the editor started from (see
    /// [`EntityDoc::apply`]); `None` applies to the current version.
    pub async fn update_entity(
        &self,
        subject: &Subject,
        id: i64,
        base: Option<&str>,
        patch: &EntityPatch,
        message: &str,
    ) -> Result<UpdateOutcome> {
        Ok(self
            .update_entity_with(subject, id, base, patch, message, None)
            .await?
            .0)
    }

    /// [`Store::update_entity`], also returning the heads the change was written on.
    pub(crate) async fn update_entity_with(
        &self,
        subject: &Subject,
        id: i64,
        base: Option<&str>,
        patch: &EntityPatch,
        message: &str,
        proof: Option<&crate::timestamps::NewTimestamp>,
    ) -> Result<(UpdateOutcome, String)> {
        // Rows read for the checks only: their rendered body is never used (the projection
        // below renders the new one).
        let row = self.entity_with(subject, id, false).await?;
        let own_comments = self.own_comments(id, subject.user_id, patch).await?;
        let check = |row: &EntityRow| match proof {
            Some(_) => check_may_attach_proof(row, subject, patch),
            None => check_may_apply(row, subject, patch, &own_comments),
        };
        check(&row)?;
        // A filed resource stays filed (one made offline without a category may stay so).
        if row.kind == EntityKind::Resource
            && row.category_id.is_some()
            && patch.category == Some(None)
        {
            return Err(invalid(
                "category",
                "a resource keeps a category; choose another one instead of none",
            ));
        }
        self.check_terms(row.kind, row.team_id, patch).await?;
        self.check_field_links(subject, Some(id), patch).await?;
        let base = base.map(heads_from_string).transpose()?;
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Re-check under the write lock: a lock or state change may have landed meanwhile.
        let fresh = self
            .fetch_row_with(&mut tx, id, false)
            .await?
            .ok_or(StoreError::NotFound("entity"))?;
        check(&fresh)?;
        let actor = self.actor_for(&mut tx, subject.user_id).await?;
        // Registered below only if the patch is written on a fork (a base older than the
        // document): most saves need none, and a row per save was written before.
        let fork_actor = ActorId::from(rand::random::<[u8; 16]>());
        let forked = std::cell::Cell::new(false);
        let (old_heads, mut doc) = self.load_doc(&mut tx, id).await?;
        let old = heads_from_string(&old_heads)?;
        let meta = CommitMeta {
            actor,
            time_ms: now,
            message: message.to_owned(),
        };
        let outcome = doc.apply(base.as_deref(), patch, &meta, || {
            forked.set(true);
            fork_actor.clone()
        });
        let hash = match outcome {
            Ok(hash) => hash,
            Err(error) => {
                // The document may hold a half-applied transaction: drop it, reload next time.
                return Err(error.into());
            }
        };
        let Some(hash) = hash else {
            tx.rollback().await?;
            if proof.is_some() {
                self.cache_put(id, old_heads, doc);
                return Err(StoreError::Conflict(
                    "this proof archive is already attached".into(),
                ));
            }
            self.cache_put(id, old_heads.clone(), doc);
            return Ok((
                UpdateOutcome {
                    heads: old_heads.clone(),
                    base: old_heads.clone(),
                    changed: false,
                    merged: false,
                },
                old_heads,
            ));
        };
        if forked.get() {
            self.register_actor(&mut tx, &fork_actor, subject.user_id)
                .await?;
        }
        let new_heads = doc.heads();
        let heads = heads_to_string(&new_heads);
        let merged = new_heads.len() > 1 || !new_heads.contains(&hash);
        let bytes = doc.save();
        sqlx::query("UPDATE entity_docs SET doc = ?, heads = ? WHERE entity_id = ?")
            .bind(&bytes)
            .bind(&heads)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        self.record_changes(
            &mut tx,
            id,
            &mut doc,
            (&old, &old_heads),
            &heads,
            subject.user_id,
        )
        .await?;
        let content = doc.content()?;
        let rendered = projection::render(&content);
        projection::write(
            &mut tx,
            id,
            &content,
            &rendered,
            &heads,
            now,
            subject.user_id,
        )
        .await?;
        let touches_attachments = patch.ops.iter().any(|op| {
            matches!(
                op,
                EntityOp::AddAttachment { .. } | EntityOp::UpdateAttachment { .. }
            )
        });
        if touches_attachments {
            projection::write_uploads(&mut tx, id, &doc.attachments()?).await?;
        }
        if let Some(proof) = proof {
            crate::timestamps::record_in(&mut tx, now, subject.user_id, id, patch, proof).await?;
        }
        self.note_lineage(&mut tx).await?;
        tx.commit().await?;
        self.cache_put(id, heads.clone(), doc);
        Ok((
            UpdateOutcome {
                heads,
                base: hash.to_string(),
                changed: true,
                merged,
            },
            old_heads,
        ))
    }

    /// The entity, if the subject may change its content now.
    pub async fn writable(&self, subject: &Subject, id: i64) -> Result<EntityRow> {
        let row = self.entity(subject, id).await?;
        check_writable(&row, subject)?;
        Ok(row)
    }

    /// Replaces an entity's access rules (owner and team admins only).
    pub async fn set_access(
        &self,
        subject: &Subject,
        id: i64,
        canread: AccessRule,
        canwrite: AccessRule,
    ) -> Result<EntityRow> {
        let row = self.entity(subject, id).await?;
        if !row.access().may_admin(subject) {
            return Err(StoreError::Forbidden(
                "only the owner or a team admin can change who has access".into(),
            ));
        }
        let (canread, canwrite) = (canread.normalized(), canwrite.normalized());
        self.check_rule("canread", &canread).await?;
        self.check_rule("canwrite", &canwrite).await?;
        if cahier_core::template::is_template(row.kind) {
            cahier_core::template::check_rules(subject, row.team_id, &canread, &canwrite)
                .map_err(|m| StoreError::Forbidden(m.into()))?;
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        write_acl(&mut tx, id, &canread, &canwrite).await?;
        crate::audit::append(
            &mut tx,
            self.now_ms(),
            &crate::audit::AuditEvent::new(
                Some(subject.user_id),
                crate::audit::action::ACCESS,
                "entity",
                id,
            )
            .details(serde_json::json!({
                "canread": &canread,
                "canwrite": &canwrite,
            })),
        )
        .await?;
        tx.commit().await?;
        self.entity(subject, id).await
    }

    /// Moves an entity to a state: delete (soft), restore, archive, unarchive.
    pub async fn set_state(&self, subject: &Subject, id: i64, new_state: i64) -> Result<EntityRow> {
        let row = self.entity(subject, id).await?;
        let access = row.access();
        let allowed = match new_state {
            state::DELETED => access.may_admin(subject) || access.may_write(subject),
            _ => access.may_admin(subject),
        };
        if !allowed {
            return Err(StoreError::Forbidden(
                "you cannot change the state of this entry".into(),
            ));
        }
        if row.locked_by.is_some() && new_state == state::DELETED {
            return Err(StoreError::Conflict(
                "this entry is locked; unlock it before deleting it".into(),
            ));
        }
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "UPDATE entities SET state = ?, modified_at = ?, lastchangeby = ? WHERE id = ?",
        )
        .bind(new_state)
        .bind(now)
        .bind(subject.user_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let action = if new_state == state::DELETED {
            crate::audit::action::DELETE
        } else {
            crate::audit::action::STATE
        };
        crate::audit::append(
            &mut tx,
            now,
            &crate::audit::AuditEvent::new(Some(subject.user_id), action, "entity", id)
                .details(serde_json::json!({"from": row.state, "state": new_state})),
        )
        .await?;
        tx.commit().await?;
        self.entity(subject, id).await
    }

    /// Gives an entry to another person (eLabFTW's `updateowner`), optionally moving it to
    /// another team: team admins of the entry's team (and of the target team when it moves)
    /// and sysadmins may; the new owner must belong to the target team; a locked entry does
    /// not move. Audited in the same transaction.
    pub async fn transfer_entity(
        &self,
        subject: &Subject,
        id: i64,
        new_owner: i64,
        new_team: Option<i64>,
    ) -> Result<EntityRow> {
        let row = self.entity(subject, id).await?;
        let team = new_team.unwrap_or(row.team_id);
        let admin_of = |team_id: i64| subject.is_sysadmin || subject.is_team_admin(team_id);
        if !admin_of(row.team_id) {
            return Err(StoreError::Forbidden(
                "only an admin of this entry's team (or a sysadmin) can give it to someone else"
                    .into(),
            ));
        }
        if !admin_of(team) {
            return Err(StoreError::Forbidden(
                "you can only move an entry to a team you are an admin of".into(),
            ));
        }
        if row.locked_by.is_some() {
            return Err(locked_error());
        }
        if row.state == state::DELETED {
            return Err(StoreError::Conflict(
                "this entry is deleted; restore it before giving it to someone else".into(),
            ));
        }
        if (new_owner, team) == (row.owner_id, row.team_id) {
            return Ok(row);
        }
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let member: Option<i64> = sqlx::query_scalar(
            "SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.user_id = ? AND m.team_id = ?",
        )
        .bind(new_owner)
        .bind(team)
        .fetch_optional(&mut *tx)
        .await?;
        if member.is_none() {
            return Err(invalid(
                "userid",
                format!("user {new_owner} is not a member of team {team}"),
            ));
        }
        sqlx::query(
            "UPDATE entities SET owner_id = ?, team_id = ?, modified_at = ?, lastchangeby = ? \
             WHERE id = ?",
        )
        .bind(new_owner)
        .bind(team)
        .bind(now)
        .bind(subject.user_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        crate::audit::append(
            &mut tx,
            now,
            &crate::audit::AuditEvent::new(
                Some(subject.user_id),
                crate::audit::action::OWNER,
                "entity",
                id,
            )
            .details(serde_json::json!({
                "from_owner": row.owner_id,
                "owner": new_owner,
                "from_team": row.team_id,
                "team": team,
            })),
        )
        .await?;
        tx.commit().await?;
        self.entity(subject, id).await
    }

    /// Locks or unlocks an entity. Its owner and team admins may lock; the person who locked
    /// it, its owner and team admins may unlock (`cahier_core::access`).
    pub async fn set_lock(&self, subject: &Subject, id: i64, lock: bool) -> Result<EntityRow> {
        let row = self.entity(subject, id).await?;
        let access = row.access();
        match (lock, row.locked_by) {
            (true, Some(_)) | (false, None) => return Ok(row),
            (true, None) if !access.may_lock(subject) => {
                return Err(StoreError::Forbidden(
                    "only the owner of this entry or a team admin can lock it".into(),
                ));
            }
            (false, Some(_)) if !access.may_unlock(subject) => {
                return Err(StoreError::Forbidden(
                    "only the person who locked it, its owner or a team admin can unlock it".into(),
                ));
            }
            _ => {}
        }
        let (by, at) = if lock {
            (Some(subject.user_id), Some(self.now_ms()))
        } else {
            (None, None)
        };
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("UPDATE entities SET locked_by = ?, locked_at = ? WHERE id = ?")
            .bind(by)
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let action = if lock {
            crate::audit::action::LOCK
        } else {
            crate::audit::action::UNLOCK
        };
        crate::audit::append(
            &mut tx,
            self.now_ms(),
            &crate::audit::AuditEvent::new(Some(subject.user_id), action, "entity", id)
                .details(serde_json::json!({"locked_by": row.locked_by})),
        )
        .await?;
        tx.commit().await?;
        self.entity(subject, id).await
    }

    /// Copies an entity into a new one owned by the subject: title gets " I" (as eLabFTW),
    /// body, tags, steps (unticked), links, status and category are copied.
    pub async fn duplicate_entity(&self, subject: &Subject, id: i64) -> Result<i64> {
        let row = self.entity(subject, id).await?;
        let content = self.content(subject, id).await?;
        let team_id = if subject.is_member(row.team_id) {
            row.team_id
        } else {
            let user = self.user(subject.user_id).await?;
            user.current_team
                .ok_or_else(|| invalid("team", "join a team first"))?
        };
        let now = self.now_ms();
        let mut ops = Vec::new();
        for (n, step) in content.steps.iter().enumerate() {
            ops.push(cahier_core::document::EntityOp::AddStep {
                id: crate::random_hex(8),
                body: step.body.clone(),
                at_ms: now + i64::try_from(n).unwrap_or_default(),
            });
        }
        for target in &content.links {
            ops.push(cahier_core::document::EntityOp::AddLink {
                target: *target,
                at_ms: now,
            });
        }
        if !content.metadata.is_empty() {
            ops.push(cahier_core::document::EntityOp::SetMetadata {
                metadata: content.metadata.for_copy(),
                require: false,
            });
        }
        let same_team = team_id == row.team_id;
        let patch = EntityPatch {
            title: Some(format!("{} I", content.title)),
            body: Some(content.body.clone()),
            content_type: Some(cahier_core::markdown::ContentType::from_code(
                content.content_type,
            )),
            status: same_team.then_some(content.status),
            category: same_team.then_some(content.category),
            tags: Some(content.tags.clone()),
            ops,
            ..Default::default()
        };
        let id = EntityId::from_str_opt(&row.uuid);
        self.create_entity(
            subject,
            NewEntity {
                kind: row.kind,
                team_id,
                canread: None,
                canwrite: None,
                patch,
                template: id,
            },
        )
        .await
    }

    /// The current content read from the document (for duplication and exports of one entity).
    pub async fn content(&self, subject: &Subject, id: i64) -> Result<EntityContent> {
        self.entity(subject, id).await?;
        let mut conn = self.pool.acquire().await?;
        let (heads, doc) = self.load_doc(&mut conn, id).await?;
        let content = doc.content()?;
        self.cache_put(id, heads, doc);
        Ok(content)
    }

    /// The content as it was at a version (change hash, or comma-separated heads).
    pub async fn content_at(
        &self,
        subject: &Subject,
        id: i64,
        heads: &str,
    ) -> Result<EntityContent> {
        self.entity(subject, id).await?;
        let heads = heads_from_string(heads)?;
        if heads.is_empty() {
            return Err(StoreError::NotFound("version"));
        }
        let mut conn = self.pool.acquire().await?;
        let (current, mut doc) = self.load_doc(&mut conn, id).await?;
        let content = doc.content_at(&heads);
        self.cache_put(id, current, doc);
        Ok(content?)
    }

    /// The versions of an entity, oldest first.
    pub async fn history(&self, subject: &Subject, id: i64) -> Result<Vec<VersionRow>> {
        self.entity(subject, id).await?;
        Ok(sqlx::query_as(
            "SELECT seq, hash, user_id, device, time_ms, received_at, message FROM entity_changes \
             WHERE entity_id = ? ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Steps of an entity (caller has checked read access).
    pub async fn steps(&self, id: i64) -> Result<Vec<StepRow>> {
        Ok(sqlx::query_as(
            "SELECT step_id, ordering, body, done, done_by, done_at FROM entity_steps WHERE entity_id = ? ORDER BY ordering",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Comments of an entity, oldest first (caller has checked read access).
    pub async fn comments(&self, id: i64) -> Result<Vec<CommentRow>> {
        Ok(sqlx::query_as(
            "SELECT comment_id, author, created_at, edited_at, body FROM entity_comments WHERE entity_id = ? \
             ORDER BY created_at, comment_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Fields in conflict (caller has checked read access).
    pub async fn conflicts(&self, id: i64) -> Result<Vec<ConflictRow>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT field, values_json FROM entity_conflicts WHERE entity_id = ?")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(field, values)| ConflictRow {
                field,
                values: serde_json::from_str(&values).unwrap_or_default(),
            })
            .collect())
    }

    /// Entities this one links to, that the subject may read.
    pub async fn links(&self, subject: &Subject, id: i64) -> Result<Vec<LinkRow>> {
        let sql = format!(
            "SELECT e.id, e.uuid, e.kind, e.title, e.state FROM entity_links l JOIN entities e ON e.uuid = l.target_uuid \
             WHERE l.entity_id = ? AND e.state != 3 AND {} ORDER BY e.title",
            crate::access_sql::readable_by(subject)
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Ids of the comments that `patch` edits or deletes and that `user_id` wrote.
    async fn own_comments(
        &self,
        id: i64,
        user_id: i64,
        patch: &EntityPatch,
    ) -> Result<Vec<String>> {
        let mut own = Vec::new();
        for op in &patch.ops {
            if let cahier_core::document::EntityOp::EditComment { id: comment, .. }
            | cahier_core::document::EntityOp::DeleteComment { id: comment } = op
            {
                let author: Option<i64> = sqlx::query_scalar(
                    "SELECT author FROM entity_comments WHERE entity_id = ? AND comment_id = ?",
                )
                .bind(id)
                .bind(comment)
                .fetch_optional(&self.pool)
                .await?;
                if author == Some(user_id) {
                    own.push(comment.clone());
                }
            }
        }
        Ok(own)
    }

    /// Unfinished steps of live entities of `kind` the subject may read: those the subject owns,
    /// or with `team`, every readable entity of that team (API `GET /unfinished_steps`). Rows
    /// are (entity id, entity title, step id, step body), by entity then step order.
    pub async fn open_steps(
        &self,
        subject: &Subject,
        kind: EntityKind,
        team: Option<i64>,
    ) -> Result<Vec<(i64, String, String, String)>> {
        let scope = match team {
            Some(team_id) => format!("e.team_id = {team_id}"),
            None => format!("e.owner_id = {}", subject.user_id),
        };
        let sql = format!(
            "SELECT e.id, e.title, s.step_id, s.body FROM entity_steps s JOIN entities e ON e.id = s.entity_id \
             WHERE NOT s.done AND e.state = 1 AND e.kind = ? AND {scope} AND {} \
             ORDER BY e.id DESC, s.ordering",
            crate::access_sql::readable_by(subject)
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(kind.as_str())
            .fetch_all(&self.pool)
            .await?)
    }

    /// Entities that link to this one, that the subject may read.
    pub async fn backlinks(&self, subject: &Subject, uuid: &str) -> Result<Vec<LinkRow>> {
        let sql = format!(
            "SELECT e.id, e.uuid, e.kind, e.title, e.state FROM entity_links l JOIN entities e ON e.id = l.entity_id \
             WHERE l.target_uuid = ? AND e.state != 3 AND {} ORDER BY e.title",
            crate::access_sql::readable_by(subject)
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(uuid)
            .fetch_all(&self.pool)
            .await?)
    }
}

/// Whether `subject` may apply `patch`: adding comments, and editing or deleting one's own
/// comments (`own_comments`), needs read access only (as in eLabFTW, anyone who may read may
/// comment, also on a locked entry); every other change needs write access.
fn check_may_apply(
    row: &EntityRow,
    subject: &Subject,
    patch: &EntityPatch,
    own_comments: &[String],
) -> Result<()> {
    use cahier_core::document::EntityOp;
    let only_new_comments = !patch.ops.is_empty()
        && patch.ops.iter().all(|op| match op {
            EntityOp::AddComment { author, .. } => *author == subject.user_id,
            EntityOp::EditComment { id, .. } | EntityOp::DeleteComment { id } => {
                own_comments.contains(id)
            }
            _ => false,
        })
        && *patch
            == EntityPatch {
                ops: patch.ops.clone(),
                ..Default::default()
            };
    if !only_new_comments {
        return check_writable(row, subject);
    }
    if !row.access().may_read(subject) {
        return Err(StoreError::NotFound("entity"));
    }
    if row.state == state::DELETED {
        return Err(StoreError::Conflict(
            "this entry is deleted; restore it to comment on it".into(),
        ));
    }
    Ok(())
}

/// Whether `subject` may attach a trusted timestamp's archive (`patch` adds that one file and
/// nothing else): a write grant on an entry that is not deleted. A lock does not stop a proof:
/// it adds evidence about the locked version and changes nothing of its content.
fn check_may_attach_proof(row: &EntityRow, subject: &Subject, patch: &EntityPatch) -> Result<()> {
    use cahier_core::document::EntityOp;
    let one_new_file = matches!(
        patch.ops.as_slice(),
        [EntityOp::AddAttachment { replaces: None, .. }]
    ) && *patch
        == EntityPatch {
            ops: patch.ops.clone(),
            ..Default::default()
        };
    if !one_new_file {
        return Err(invalid(
            "patch",
            "a proof adds its archive and nothing else",
        ));
    }
    check_may_stamp(row, subject)
}

/// Whether `subject` may timestamp `row`: a write grant, not deleted (a lock does not matter).
pub(crate) fn check_may_stamp(row: &EntityRow, subject: &Subject) -> Result<()> {
    let access = row.access();
    if !access.may_read(subject) {
        return Err(StoreError::NotFound("entity"));
    }
    if row.state == state::DELETED {
        return Err(StoreError::Conflict(
            "this entry is deleted; restore it to timestamp it".into(),
        ));
    }
    if !access.has_write_grant(subject) {
        return Err(StoreError::Forbidden(
            "only people who may write this entry may timestamp it".into(),
        ));
    }
    Ok(())
}

pub(crate) fn check_writable(row: &EntityRow, subject: &Subject) -> Result<()> {
    let access = row.access();
    if row.state == state::DELETED {
        return Err(StoreError::Conflict(
            "this entry is deleted; restore it to edit it".into(),
        ));
    }
    if access.is_locked() && access.has_write_grant(subject) {
        return Err(locked_error());
    }
    if !access.may_write(subject) {
        return Err(StoreError::Forbidden(
            "you may read this entry but not change it".into(),
        ));
    }
    Ok(())
}

/// What a change to a locked entry gets: no change lands while the lock holds, whoever asks.
pub(crate) fn locked_error() -> StoreError {
    StoreError::Conflict(
        "this entry is locked: no change is accepted until the person who locked it, its owner or a team admin unlocks it".into(),
    )
}

fn poisoned() -> StoreError {
    StoreError::Conflict("internal lock poisoned".into())
}

/// Parsing helper kept here so callers need not import `FromStr`.
trait FromStrOpt: Sized {
    fn from_str_opt(s: &str) -> Option<Self>;
}

impl FromStrOpt for EntityId {
    fn from_str_opt(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// The rows of these UUIDs with their access lists, as [`Store::fetch_row`] reads one
/// (`render` false leaves an empty `body_html` empty, see [`row_from_sql_with`]), each with
/// its feed sequence, by UUID; two statements for any number of them. UUIDs the store does
/// not hold are absent.
pub(crate) async fn rows_by_uuid(
    conn: &mut SqliteConnection,
    uuids: &[&str],
    render: bool,
) -> Result<HashMap<String, (EntityRow, i64)>> {
    if uuids.is_empty() {
        return Ok(HashMap::new());
    }
    let found = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ENTITY_COLUMNS}, e.sync_seq FROM entities e \
         WHERE e.uuid IN (SELECT value FROM json_each(?))"
    )))
    .bind(json_list(uuids)?)
    .fetch_all(&mut *conn)
    .await?;
    let mut rows: HashMap<i64, (EntityRow, i64)> = HashMap::with_capacity(found.len());
    for row in &found {
        let seq: i64 = row.try_get("sync_seq")?;
        let entity = row_from_sql_with(row, render)?;
        rows.insert(entity.id, (entity, seq));
    }
    let ids: Vec<i64> = rows.keys().copied().collect();
    let grants: Vec<(i64, String, String, i64)> = sqlx::query_as(
        "SELECT entity_id, mode, grantee, ref_id FROM entity_acl \
         WHERE entity_id IN (SELECT value FROM json_each(?)) ORDER BY entity_id, ref_id",
    )
    .bind(json_list(&ids)?)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_entity: HashMap<i64, Vec<(String, String, i64)>> = HashMap::new();
    for (id, mode, grantee, ref_id) in grants {
        by_entity
            .entry(id)
            .or_default()
            .push((mode, grantee, ref_id));
    }
    let mut by_uuid = HashMap::with_capacity(rows.len());
    for (id, (mut row, seq)) in rows {
        apply_grants(&mut row, by_entity.remove(&id).unwrap_or_default());
        by_uuid.insert(row.uuid.clone(), (row, seq));
    }
    Ok(by_uuid)
}
