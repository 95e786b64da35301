//! The rows a pull batch ships, read in a few set queries for the whole batch (issue #5: the
//! initial copy). One statement per table for up to a batch of entries, instead of ten small
//! queries per entry: a first copy of 10,000 entries was 100,000 statements on the server.

use super::proto::{Snapshot, SnapshotUpload};
use crate::Result;
use crate::entities::{CommentRow, EntityRow, StepRow};
use cahier_core::Subject;
use sqlx::{FromRow, Row, SqliteConnection};
use std::collections::HashMap;

/// A JSON array of values, for `IN (SELECT value FROM json_each(?))`.
fn json_list<T: serde::Serialize>(values: &[T]) -> Result<String> {
    serde_json::to_string(values).map_err(|e| crate::invalid("docs", e.to_string()))
}

/// The rows of these UUIDs that `subject` may read, by UUID, with their access lists (the
/// same policy as one entry's page: [`crate::entities::EntityRow::access`]).
pub(super) async fn readable_rows(
    conn: &mut SqliteConnection,
    subject: &Subject,
    uuids: &[&str],
) -> Result<HashMap<String, EntityRow>> {
    let rows = crate::entities::rows_by_uuid(conn, uuids, true).await?;
    Ok(rows
        .into_iter()
        .filter(|(_, (row, _))| row.access().may_read(subject))
        .map(|(uuid, (row, _))| (uuid, row))
        .collect())
}

/// The saved documents of these entities, by id.
pub(super) async fn saved_docs(
    conn: &mut SqliteConnection,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<u8>>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let docs: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT entity_id, doc FROM entity_docs WHERE entity_id IN (SELECT value FROM json_each(?))",
    )
    .bind(json_list(ids)?)
    .fetch_all(&mut *conn)
    .await?;
    Ok(docs.into_iter().collect())
}

/// The child rows of a batch of entities, by entity id; [`Children::snapshot`] assembles one
/// entry's [`Snapshot`] from them.
#[derive(Default)]
pub(super) struct Children {
    steps: HashMap<i64, Vec<StepRow>>,
    comments: HashMap<i64, Vec<CommentRow>>,
    links: HashMap<i64, Vec<String>>,
    conflicts: HashMap<i64, Vec<(String, String)>>,
    uploads: HashMap<i64, Vec<SnapshotUpload>>,
    stock: HashMap<i64, super::proto::SnapshotStock>,
}

/// Rows of `sql` (selecting `entity_id` and the columns of `T`, bound to the JSON id list)
/// grouped by entity, in the order the query gives.
async fn grouped<T>(
    conn: &mut SqliteConnection,
    sql: &'static str,
    ids: &str,
) -> Result<HashMap<i64, Vec<T>>>
where
    T: for<'r> FromRow<'r, sqlx::sqlite::SqliteRow>,
{
    let rows = sqlx::query(sql).bind(ids).fetch_all(&mut *conn).await?;
    let mut out: HashMap<i64, Vec<T>> = HashMap::new();
    for row in &rows {
        let id: i64 = row.try_get("entity_id")?;
        out.entry(id).or_default().push(T::from_row(row)?);
    }
    Ok(out)
}

impl Children {
    /// Reads the child rows of `ids`: one statement per table.
    pub(super) async fn load(conn: &mut SqliteConnection, ids: &[i64]) -> Result<Self> {
        if ids.is_empty() {
            return Ok(Self::default());
        }
        let list = json_list(ids)?;
        let steps = grouped(
            conn,
            "SELECT entity_id, step_id, ordering, body, done, done_by, done_at FROM entity_steps \
             WHERE entity_id IN (SELECT value FROM json_each(?)) ORDER BY entity_id, ordering",
            &list,
        )
        .await?;
        let comments = grouped(
            conn,
            "SELECT entity_id, comment_id, author, created_at, edited_at, body FROM entity_comments \
             WHERE entity_id IN (SELECT value FROM json_each(?)) ORDER BY entity_id, created_at",
            &list,
        )
        .await?;
        let uploads = grouped(
            conn,
            "SELECT u.entity_id, u.sha256, u.real_name, u.comment, u.size, u.media_type, u.user_id, \
             u.created_at, u.state, r.sha256 AS replaces FROM uploads u \
             LEFT JOIN uploads r ON r.id = u.replaces_id \
             WHERE u.entity_id IN (SELECT value FROM json_each(?)) ORDER BY u.entity_id, u.id",
            &list,
        )
        .await?;
        let mut links: HashMap<i64, Vec<String>> = HashMap::new();
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT entity_id, target_uuid FROM entity_links \
             WHERE entity_id IN (SELECT value FROM json_each(?)) ORDER BY entity_id, target_uuid",
        )
        .bind(&list)
        .fetch_all(&mut *conn)
        .await?;
        for (id, target) in rows {
            links.entry(id).or_default().push(target);
        }
        let mut conflicts: HashMap<i64, Vec<(String, String)>> = HashMap::new();
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT entity_id, field, values_json FROM entity_conflicts \
             WHERE entity_id IN (SELECT value FROM json_each(?)) ORDER BY entity_id, field",
        )
        .bind(&list)
        .fetch_all(&mut *conn)
        .await?;
        for (id, field, values) in rows {
            conflicts.entry(id).or_default().push((field, values));
        }
        // Stock: only the few entities that track it, one by one.
        let stocked: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM entities WHERE id IN (SELECT value FROM json_each(?)) \
             AND stock_unit IS NOT NULL",
        )
        .bind(&list)
        .fetch_all(&mut *conn)
        .await?;
        let mut stock = HashMap::new();
        for id in stocked {
            if let Some(s) = crate::stock::snapshot(conn, id).await? {
                stock.insert(id, s);
            }
        }
        Ok(Self {
            steps,
            comments,
            links,
            conflicts,
            uploads,
            stock,
        })
    }

    /// One entry's snapshot (children cloned: the same UUID may be asked twice).
    pub(super) fn snapshot(&self, entity: EntityRow) -> Snapshot {
        let id = entity.id;
        Snapshot {
            steps: self.steps.get(&id).cloned().unwrap_or_default(),
            comments: self.comments.get(&id).cloned().unwrap_or_default(),
            links: self.links.get(&id).cloned().unwrap_or_default(),
            conflicts: self.conflicts.get(&id).cloned().unwrap_or_default(),
            uploads: self.uploads.get(&id).cloned().unwrap_or_default(),
            stock: self.stock.get(&id).cloned(),
            entity,
        }
    }
}
