//! Embedded migrations: each runs once, in order, inside a transaction. Never edit one that has
//! shipped; add the next number instead (STYLE.md §4).

use sqlx::{SqliteConnection, SqlitePool};

/// One migration: SQL, or a step that needs Rust (it computes what SQL cannot).
enum Step {
    Sql(&'static str),
    /// Rewrites every row of the full-text index from the projection (`projection::write_fts`
    /// decides what is indexed), then merges the index into one segment.
    RebuildSearchIndex,
}

const SQLITE: &[(i64, Step)] = &[
    (
        1,
        Step::Sql(include_str!("../migrations/sqlite/0001_foundation.sql")),
    ),
    (
        2,
        Step::Sql(include_str!("../migrations/sqlite/0002_list_index.sql")),
    ),
    (
        3,
        Step::Sql(include_str!("../migrations/sqlite/0003_sync.sql")),
    ),
    // Hyphenated words indexed as single terms (cahier_core::search_terms).
    (4, Step::RebuildSearchIndex),
    (
        5,
        Step::Sql(include_str!("../migrations/sqlite/0005_uploads.sql")),
    ),
    (
        6,
        Step::Sql(include_str!(
            "../migrations/sqlite/0006_fields_templates.sql"
        )),
    ),
    (
        7,
        Step::Sql(include_str!("../migrations/sqlite/0007_device_blobs.sql")),
    ),
    (
        8,
        Step::Sql(include_str!("../migrations/sqlite/0008_timestamps.sql")),
    ),
    (
        9,
        Step::Sql(include_str!(
            "../migrations/sqlite/0009_category_defaults.sql"
        )),
    ),
    (
        10,
        Step::Sql(include_str!("../migrations/sqlite/0010_field_index.sql")),
    ),
    (
        11,
        Step::Sql(include_str!("../migrations/sqlite/0011_stock.sql")),
    ),
    (
        12,
        Step::Sql(include_str!("../migrations/sqlite/0012_bookings.sql")),
    ),
    (
        13,
        Step::Sql(include_str!("../migrations/sqlite/0013_audit_log.sql")),
    ),
    (
        14,
        Step::Sql(include_str!("../migrations/sqlite/0014_signatures.sql")),
    ),
    (
        15,
        Step::Sql(include_str!("../migrations/sqlite/0015_export_jobs.sql")),
    ),
    (
        16,
        Step::Sql(include_str!(
            "../migrations/sqlite/0016_time_zones_canbook.sql"
        )),
    ),
    (
        17,
        Step::Sql(include_str!("../migrations/sqlite/0017_auth_epoch.sql")),
    ),
    (
        18,
        Step::Sql(include_str!("../migrations/sqlite/0018_replica_pins.sql")),
    ),
    (
        19,
        Step::Sql(include_str!(
            "../migrations/sqlite/0019_booking_requests.sql"
        )),
    ),
    (
        21,
        Step::Sql(include_str!("../migrations/sqlite/0021_team_tags.sql")),
    ),
    (
        22,
        Step::Sql(include_str!(
            "../migrations/sqlite/0022_doc_heads_first.sql"
        )),
    ),
    (
        23,
        Step::Sql(include_str!(
            "../migrations/sqlite/0023_doc_heads_index.sql"
        )),
    ),
    (
        24,
        Step::Sql(include_str!("../migrations/sqlite/0024_quiet_pull.sql")),
    ),
    (
        25,
        Step::Sql(include_str!(
            "../migrations/sqlite/0025_reference_owners.sql"
        )),
    ),
    (
        26,
        Step::Sql(include_str!(
            "../migrations/sqlite/0026_deferred_projection.sql"
        )),
    ),
    (
        27,
        Step::Sql(include_str!(
            "../migrations/sqlite/0027_replica_push_log.sql"
        )),
    ),
    (
        29,
        Step::Sql(include_str!(
            "../migrations/sqlite/0029_reference_version.sql"
        )),
    ),
    (
        31,
        Step::Sql(include_str!(
            "../migrations/sqlite/0031_booking_changes.sql"
        )),
    ),
    (
        32,
        Step::Sql(include_str!("../migrations/sqlite/0032_history_prefs.sql")),
    ),
    (
        33,
        Step::Sql(include_str!(
            "../migrations/sqlite/0033_replica_pending.sql"
        )),
    ),
    (
        34,
        Step::Sql(include_str!(
            "../migrations/sqlite/0034_replica_known_blobs.sql"
        )),
    ),
    (
        35,
        Step::Sql(include_str!("../migrations/sqlite/0035_sync_stamps.sql")),
    ),
    (
        36,
        Step::Sql(include_str!(
            "../migrations/sqlite/0036_export_job_note.sql"
        )),
    ),
    (
        38,
        Step::Sql(include_str!(
            "../migrations/sqlite/0038_replica_children_key.sql"
        )),
    ),
    (
        40,
        Step::Sql(include_str!("../migrations/sqlite/0040_search_pending.sql")),
    ),
    (
        41,
        Step::Sql(include_str!(
            "../migrations/sqlite/0041_category_templates_pending.sql"
        )),
    ),
];

/// The version of the last migration: the schema this build writes.
pub(crate) fn latest_version() -> i64 {
    SQLITE.last().map_or(0, |(version, _)| *version)
}

async fn rebuild_search_index(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    // In batches, so memory stays flat whatever the number of entries.
    let mut after = i64::MIN;
    loop {
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM entities WHERE id > ? ORDER BY id LIMIT 500")
                .bind(after)
                .fetch_all(&mut *conn)
                .await?;
        let Some(last) = ids.last() else { break };
        after = *last;
        crate::search_pending::reindex(conn, &ids)
            .await
            .map_err(|e| match e {
                crate::StoreError::Database(e) => e,
                other => sqlx::Error::Protocol(other.to_string()),
            })?;
    }
    sqlx::query("INSERT INTO entity_fts (entity_fts) VALUES ('optimize')")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The database's schema version when it is newer than this build's (written by a newer
/// Cahier), which this build must not open: it would write with an older idea of the tables.
pub(crate) async fn newer_schema(pool: &SqlitePool) -> Result<Option<i64>, sqlx::Error> {
    let exists: bool = sqlx::query_scalar(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
    )
    .fetch_one(pool)
    .await?;
    if !exists {
        return Ok(None);
    }
    let newest: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM schema_migrations")
        .fetch_one(pool)
        .await?;
    Ok(newest.filter(|v| *v > latest_version()))
}

pub(crate) async fn run(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .execute(pool)
    .await?;
    for (version, step) in SQLITE {
        let version = *version;
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let done: Option<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
        if done.is_none() {
            match step {
                Step::Sql(sql) => {
                    sqlx::raw_sql(*sql).execute(&mut *tx).await?;
                }
                Step::RebuildSearchIndex => rebuild_search_index(&mut tx).await?,
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, strftime('%s','now') * 1000)")
                .bind(version)
                .execute(&mut *tx)
                .await?;
            tracing::info!(version, "applied migration");
        }
        tx.commit().await?;
    }
    Ok(())
}
