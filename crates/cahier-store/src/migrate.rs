//! Embedded migrations: each runs once, in order, inside a transaction. Never edit one that has
//! shipped; add the next number instead (STYLE.md §4).

use sqlx::SqlitePool;

const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_foundation.sql")),
    (2, include_str!("../migrations/sqlite/0002_list_index.sql")),
    (3, include_str!("../migrations/sqlite/0003_sync.sql")),
    (5, include_str!("../migrations/sqlite/0005_uploads.sql")),
    (
        7,
        include_str!("../migrations/sqlite/0007_device_blobs.sql"),
    ),
];

pub(crate) async fn run(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .execute(pool)
    .await?;
    for &(version, sql) in SQLITE {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let done: Option<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
        if done.is_none() {
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
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
