//! Full-text rows written after a pull rather than inside it (issue #5, docs/SYNC.md "The
//! search index after a pull").
//!
//! Tokenizing an entry's 5 KB body for the search index was a fifth of a replica's pull: about
//! 15 ms of every batch of 300 edits, on the one thread that writes, with the index's pages
//! at commit besides. A pull batch now only notes its entries in `search_pending` (migration
//! 40); their rows are written once the sync is over, with the merging of the index's
//! segments ([`Store::merge_search_segments`]), and before any search
//! ([`Store::search_current`]), so a search never answers from an outdated row.

use crate::entities::json_list;
use crate::{Result, Store};
use cahier_core::markdown::{ContentType, index_text};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use std::collections::HashMap;

/// Entries whose rows are written per transaction: a search waiting for them waits for one
/// part at most, the rest follow in the background.
const PART: i64 = 1000;
/// Rows per multi-row statement.
const ROWS: usize = 40;

/// Notes that these entries' full-text rows are to be written again from their rows of
/// `entities` (in the caller's transaction).
pub(crate) async fn note(conn: &mut SqliteConnection, ids: &[i64]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("INSERT OR IGNORE INTO search_pending (entity_id) SELECT value FROM json_each(?)")
        .bind(json_list(ids)?)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Forgets a removed entry's note (in the caller's transaction).
pub(crate) async fn forget(conn: &mut SqliteConnection, id: i64) -> Result<()> {
    sqlx::query("DELETE FROM search_pending WHERE entity_id = ?")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Writes the full-text rows of `ids` from their rows of `entities` and `entity_comments`
/// (replacing any they have); ids without a row of `entities` lose theirs. What the
/// projection writes for one entry ([`crate::projection::write_fts`]), for many at once.
pub(crate) async fn reindex(conn: &mut SqliteConnection, ids: &[i64]) -> Result<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    let list = json_list(ids)?;
    let rows: Vec<(i64, String, String, i64, String)> = sqlx::query_as(
        "SELECT id, title, body, content_type, tags_text FROM entities \
         WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
    )
    .bind(&list)
    .fetch_all(&mut *conn)
    .await?;
    let comments: Vec<(i64, String, i64, i64, Option<i64>, String)> = sqlx::query_as(
        "SELECT entity_id, comment_id, author, created_at, edited_at, body FROM entity_comments \
         WHERE entity_id IN (SELECT value FROM json_each(?)) ORDER BY entity_id, created_at, comment_id",
    )
    .bind(&list)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_entity: HashMap<i64, Vec<crate::entities::CommentRow>> = HashMap::new();
    for (entity_id, comment_id, author, created_at, edited_at, body) in comments {
        by_entity
            .entry(entity_id)
            .or_default()
            .push(crate::entities::CommentRow {
                comment_id,
                author,
                created_at,
                edited_at,
                body,
            });
    }
    let texts: Vec<(i64, String, String, String, String)> = rows
        .into_iter()
        .map(|(id, title, body, content_type, tags_text)| {
            let tags: Vec<String> = tags_text
                .split('|')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
            let index_body = index_text(&body, ContentType::from_code(content_type));
            let comments = by_entity.remove(&id).unwrap_or_default();
            let (tags, comments) =
                crate::projection::fts_texts(&title, &index_body, &tags, &comments);
            (id, title, index_body, tags, comments)
        })
        .collect();
    sqlx::query("DELETE FROM entity_fts WHERE rowid IN (SELECT value FROM json_each(?))")
        .bind(&list)
        .execute(&mut *conn)
        .await?;
    for chunk in texts.chunks(ROWS) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO entity_fts (rowid, title, body, tags, comments) ");
        q.push_values(chunk, |mut row, (id, title, body, tags, comments)| {
            row.push_bind(*id)
                .push_bind(title.clone())
                .push_bind(body.clone())
                .push_bind(tags.clone())
                .push_bind(comments.clone());
        });
        q.build().execute(&mut *conn).await?;
    }
    Ok(texts.len())
}

impl Store {
    /// Writes the full-text rows that pulls left for later (all of them, in parts of
    /// [`PART`] entries, each in its own short write transaction); how many entries.
    pub async fn index_pending_search(&self) -> Result<usize> {
        let mut written = 0;
        loop {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT entity_id FROM search_pending ORDER BY entity_id LIMIT ?",
            )
            .bind(PART)
            .fetch_all(&mut *tx)
            .await?;
            if ids.is_empty() {
                tx.commit().await?;
                return Ok(written);
            }
            reindex(&mut tx, &ids).await?;
            sqlx::query(
                "DELETE FROM search_pending WHERE entity_id IN (SELECT value FROM json_each(?))",
            )
            .bind(json_list(&ids)?)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            written += ids.len();
        }
    }

    /// Makes the search index current before a search: writes the rows pulls left for later,
    /// if any (a read of an empty table otherwise: a lab server never has any).
    pub(crate) async fn search_current(&self) -> Result<()> {
        let pending: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM search_pending)")
            .fetch_one(&self.pool)
            .await?;
        if pending {
            self.index_pending_search().await?;
        }
        Ok(())
    }

    /// How many entries wait for their full-text rows (tests, `bench-sync`).
    pub async fn pending_search_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM search_pending")
            .fetch_one(&self.pool)
            .await?)
    }
}
