//! Everything the API's single-entity `GET` shows, read in one statement: the entity row and
//! its access list, the owner's and status's and category's names, steps, comments with their
//! authors' names, links and backlinks the subject may read, and trusted timestamps.
//!
//! Each sqlx statement is a round trip to the connection's worker thread; at eleven
//! statements they were most of a `GET`'s cost (BENCHMARKS.md, issue #7). The parts come back
//! as JSON arrays (`json_group_array`) in columns of the entity's row. The access policy is
//! asked exactly as [`Store::entity`] asks it; parts of an entity the subject may not read are
//! dropped unread.

use crate::catalog::Term;
use crate::entities::{
    CommentRow, ENTITY_COLUMNS, EntityRow, LinkRow, StepRow, apply_grants, row_from_sql, state,
};
use crate::timestamps::TimestampRow;
use crate::{Result, Store, StoreError};
use cahier_core::{EntityKind, Subject};
use sqlx::Row;

/// An entity with what its full view shows ([`Store::entity_sheet`]).
#[derive(Debug, Clone)]
pub struct EntitySheet {
    /// The row, with its access list.
    pub row: EntityRow,
    /// The owner's full name ("" if the account is gone).
    pub owner_name: String,
    /// Its status, if any.
    pub status: Option<Term>,
    /// Its category, if any.
    pub category: Option<Term>,
    /// Steps, in order.
    pub steps: Vec<StepRow>,
    /// Comments, oldest first, with their author's full name (`None` if the account is gone).
    pub comments: Vec<(CommentRow, Option<String>)>,
    /// Entities it links to that the subject may read, by title.
    pub links: Vec<LinkRow>,
    /// Entities that link to it that the subject may read, by title.
    pub backlinks: Vec<LinkRow>,
    /// Its trusted timestamps, newest first.
    pub timestamps: Vec<TimestampRow>,
}

/// "First Last", as [`crate::accounts::User::fullname`] writes it.
fn fullname(first: &str, last: &str) -> String {
    format!("{first} {last}").trim().to_owned()
}

type TermJson = (i64, i64, String, String, i64, i64);
type StepJson = (String, i64, String, i64, Option<i64>, Option<i64>);
type CommentJson = (
    String,
    i64,
    i64,
    Option<i64>,
    String,
    Option<String>,
    Option<String>,
);
type LinkJson = (i64, String, String, String, i64);
type StampJson = (
    i64,
    i64,
    String,
    String,
    String,
    i64,
    String,
    i64,
    String,
    i64,
);

fn parse<T: serde::de::DeserializeOwned>(part: &str, json: Option<&str>) -> Result<Option<T>> {
    json.map(|json| {
        serde_json::from_str(json).map_err(|error| {
            tracing::error!(%error, part, "an entity part read as JSON did not parse");
            StoreError::Database(sqlx::Error::Decode(Box::new(error)))
        })
    })
    .transpose()
}

fn term((id, team_id, title, color, is_default, ordering): TermJson) -> Term {
    Term {
        id,
        team_id,
        title,
        color,
        is_default: is_default != 0,
        ordering,
    }
}

fn link((id, uuid, kind, title, state): LinkJson) -> LinkRow {
    LinkRow {
        id,
        uuid,
        kind,
        title,
        state,
    }
}

impl Store {
    /// The entity `id` of `kind` with everything its full view shows, if `subject` may read
    /// it (as [`Store::entity_of_kind`] decides; anything else is "not found").
    ///
    /// `unconfirmed_epoch`: the `auth_epoch` a cached grant was read at
    /// ([`crate::grant_cache::Check::Deferred`]). The epoch is read in this same statement;
    /// if it moved, `Ok(None)` is returned before the policy is asked: authenticate again and
    /// call again. With `None` the answer is always `Some` or an error.
    pub async fn entity_sheet(
        &self,
        subject: &Subject,
        kind: EntityKind,
        id: i64,
        unconfirmed_epoch: Option<i64>,
    ) -> Result<Option<EntitySheet>> {
        // One entry: never older than its document (deferred.rs).
        self.project_if_stale(id).await?;
        let readable = crate::access_sql::readable_by(subject);
        // The outer entity is `e`; the link subqueries name their own entities `e` too (the
        // policy's SQL is written over `e`), which hides the outer one, so they take the id
        // as a parameter. The epoch comes from `auth_epoch`, joined first so a missing entity
        // still reports it.
        let sql = format!(
            "SELECT {ENTITY_COLUMNS}, a.value AS auth_epoch, \
             (SELECT json_group_array(json_array(mode, grantee, ref_id) ORDER BY ref_id) \
                FROM entity_acl WHERE entity_id = e.id) AS acl_json, \
             (SELECT json_array(firstname, lastname) FROM users WHERE id = e.owner_id) AS owner_json, \
             (SELECT json_array(id, team_id, title, color, is_default, ordering) \
                FROM statuses WHERE id = e.status_id) AS status_json, \
             (SELECT json_array(id, team_id, title, color, is_default, ordering) \
                FROM categories WHERE id = e.category_id) AS category_json, \
             (SELECT json_group_array(json_array(step_id, ordering, body, done, done_by, done_at) \
                ORDER BY ordering) FROM entity_steps WHERE entity_id = e.id) AS steps_json, \
             (SELECT json_group_array(json_array(c.comment_id, c.author, c.created_at, c.edited_at, \
                c.body, u.firstname, u.lastname) ORDER BY c.created_at, c.comment_id) \
                FROM entity_comments c LEFT JOIN users u ON u.id = c.author \
                WHERE c.entity_id = e.id) AS comments_json, \
             (SELECT json_group_array(json_array(e.id, e.uuid, e.kind, e.title, e.state) ORDER BY e.title) \
                FROM entity_links l JOIN entities e ON e.uuid = l.target_uuid \
                WHERE l.entity_id = ? AND e.state != 3 AND {readable}) AS links_json, \
             (SELECT json_group_array(json_array(e.id, e.uuid, e.kind, e.title, e.state) ORDER BY e.title) \
                FROM entity_links l JOIN entities e ON e.id = l.entity_id \
                WHERE l.target_uuid = (SELECT x.uuid FROM entities x WHERE x.id = ?) \
                AND e.state != 3 AND {readable}) AS backlinks_json, \
             (SELECT json_group_array(json_array(t.id, t.entity_id, t.heads, t.export_sha256, \
                t.hash_alg, t.gen_time_ms, t.tsa_name, t.upload_id, u.sha256, t.user_id) ORDER BY t.id DESC) \
                FROM entity_timestamps t JOIN uploads u ON u.id = t.upload_id \
                WHERE t.entity_id = e.id) AS stamps_json \
             FROM auth_epoch a LEFT JOIN entities e ON e.id = ? WHERE a.id = 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(id)
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        let epoch: i64 = row.try_get("auth_epoch")?;
        self.grants.observe(epoch);
        if unconfirmed_epoch.is_some_and(|seen| seen != epoch) {
            return Ok(None);
        }
        if row.try_get::<Option<i64>, _>("id")?.is_none() {
            return Err(StoreError::NotFound("entity"));
        }
        let mut entity = row_from_sql(&row)?;
        let grants: Vec<(String, String, i64)> =
            parse("acl", row.try_get("acl_json")?)?.unwrap_or_default();
        apply_grants(&mut entity, grants);
        let access = entity.access();
        let visible = if entity.state == state::DELETED {
            access.may_admin(subject) && access.may_read(subject)
        } else {
            access.may_read(subject)
        };
        if !visible || entity.kind != kind {
            return Err(StoreError::NotFound("entity"));
        }
        let owner: Option<(String, String)> = parse("owner", row.try_get("owner_json")?)?;
        let status: Option<TermJson> = parse("status", row.try_get("status_json")?)?;
        let category: Option<TermJson> = parse("category", row.try_get("category_json")?)?;
        let steps: Vec<StepJson> = parse("steps", row.try_get("steps_json")?)?.unwrap_or_default();
        let comments: Vec<CommentJson> =
            parse("comments", row.try_get("comments_json")?)?.unwrap_or_default();
        let links: Vec<LinkJson> = parse("links", row.try_get("links_json")?)?.unwrap_or_default();
        let backlinks: Vec<LinkJson> =
            parse("backlinks", row.try_get("backlinks_json")?)?.unwrap_or_default();
        let stamps: Vec<StampJson> =
            parse("timestamps", row.try_get("stamps_json")?)?.unwrap_or_default();
        Ok(Some(EntitySheet {
            owner_name: owner
                .map(|(first, last)| fullname(&first, &last))
                .unwrap_or_default(),
            status: status.map(term),
            category: category.map(term),
            steps: steps
                .into_iter()
                .map(
                    |(step_id, ordering, body, done, done_by, done_at)| StepRow {
                        step_id,
                        ordering,
                        body,
                        done: done != 0,
                        done_by,
                        done_at,
                    },
                )
                .collect(),
            comments: comments
                .into_iter()
                .map(
                    |(comment_id, author, created_at, edited_at, body, first, last)| {
                        let name = first.map(|first| fullname(&first, &last.unwrap_or_default()));
                        (
                            CommentRow {
                                comment_id,
                                author,
                                created_at,
                                edited_at,
                                body,
                            },
                            name,
                        )
                    },
                )
                .collect(),
            links: links.into_iter().map(link).collect(),
            backlinks: backlinks.into_iter().map(link).collect(),
            timestamps: stamps
                .into_iter()
                .map(
                    |(
                        id,
                        entity_id,
                        heads,
                        export_sha256,
                        hash_alg,
                        gen_time_ms,
                        tsa_name,
                        upload_id,
                        upload_sha256,
                        user_id,
                    )| TimestampRow {
                        id,
                        entity_id,
                        heads,
                        export_sha256,
                        hash_alg,
                        gen_time_ms,
                        tsa_name,
                        upload_id,
                        upload_sha256,
                        user_id,
                    },
                )
                .collect(),
            row: entity,
        }))
    }
}
