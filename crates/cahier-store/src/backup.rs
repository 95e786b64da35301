//! The database side of `cahier backup` and `cahier restore` (the binary copies the files and
//! writes the manifest). Three operations on database *files*, none through a [`crate::Store`]:
//! opening a store runs migrations and starts a history of the feed sequence
//! (`sync/history.rs`), and none of that may happen to a live lab being copied, to a copy
//! being checked, or to a database about to be put aside.
//!
//! - [`snapshot`]: `VACUUM INTO` a new file, a consistent copy of a live database taken in
//!   one read transaction while the server goes on writing (SQLite's own, so no second SQLite
//!   library and no `unsafe`). The copy is a single file in rollback-journal mode.
//! - [`inspect`]: what a copy holds (schema version, the mark of its history, counts, the
//!   attachment files it names), read through SQLite's `immutable` mode, which writes nothing
//!   beside the file (a backup may sit on read-only media) and takes no lock.
//! - [`settle_current`]: whether another process has a database open, asked of SQLite
//!   itself: leaving WAL mode needs every other connection closed. That refuses a restore
//!   under any process that holds the database, whatever its version; and the database put
//!   aside is then one self-contained file (its write-ahead log copied in).
//!
//! It must not decide anything about the files on disk or the manifest: the binary does.

use crate::{Result, StoreError, migrate};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use std::path::Path;
use std::time::Duration;

/// The newest schema version this build knows (its last migration). A database of a newer
/// one was written by a newer Cahier.
pub fn latest_schema_version() -> i64 {
    migrate::latest_version()
}

/// What a database copy holds ([`inspect`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The last migration applied to it.
    pub schema_version: i64,
    /// The mark of the end of its feed sequence (`<seq>.<stamp>`, docs/SYNC.md, "Marks"): a
    /// replica that synced after the copy was made holds a later one, which a lab restored from
    /// this copy does not hold. `None` before migration 35.
    pub history_mark: Option<String>,
    /// Entities of every kind (experiments, resources, templates; deleted ones too).
    pub entities: i64,
    /// Stored changes of their documents.
    pub changes: i64,
    /// Accounts.
    pub users: i64,
    /// Attachment records (`uploads` rows, every version and state).
    pub attachments: i64,
    /// Entries of the audit log.
    pub audit_entries: i64,
    /// SHA-256 of every attachment file the database names, sorted, once each: what
    /// `cahier verify` expects in the blob store.
    pub files: Vec<String>,
    /// Finished background exports: the file name under `exports/` and its size.
    pub exports: Vec<(String, i64)>,
}

fn database_error(path: &Path, error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.message().contains("not a database") => {
            StoreError::Forbidden(format!(
                "{} is not a Cahier lab database (a field replica's is encrypted: back up the lab instead)",
                path.display()
            ))
        }
        _ => StoreError::Database(error),
    }
}

/// Writes a consistent copy of the database at `live` to the new file `into` and syncs it to
/// disk. `live` may be in use by a running server: the copy is read in one read transaction
/// (SQLite's `VACUUM INTO`), so it holds every transaction committed before it began and
/// nothing of the later ones, and writers are never blocked.
pub async fn snapshot(live: &Path, into: &Path) -> Result<()> {
    if !live.is_file() {
        return Err(StoreError::NotFound("database"));
    }
    let mut conn = SqliteConnectOptions::new()
        .filename(live)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|error| database_error(live, error))?;
    let target = into.to_string_lossy().into_owned();
    let copied = sqlx::query("VACUUM INTO ?")
        .bind(target)
        .execute(&mut conn)
        .await
        .map_err(|error| database_error(live, error));
    let _ = conn.close().await;
    copied?;
    // SQLite writes the copy without syncing it; the caller names it complete later.
    let file = into.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(file)?.sync_all())
        .await
        .map_err(|error| StoreError::Conflict(format!("syncing the copy: {error}")))?
        .map_err(|error| StoreError::Conflict(format!("syncing the copy: {error}")))?;
    Ok(())
}

async fn open_immutable(path: &Path) -> Result<SqliteConnection> {
    if !path.is_file() {
        return Err(StoreError::NotFound("database"));
    }
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(true)
        .connect()
        .await
        .map_err(|error| database_error(path, error))
}

/// Reads what the database copy at `path` holds, after checking its pages
/// (`PRAGMA quick_check`). Writes nothing, not even beside the file.
pub async fn inspect(path: &Path) -> Result<Snapshot> {
    let mut conn = open_immutable(path).await?;
    let read = read_snapshot(&mut conn, path).await;
    let _ = conn.close().await;
    read
}

async fn read_snapshot(conn: &mut SqliteConnection, path: &Path) -> Result<Snapshot> {
    let problems: Vec<String> = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_all(&mut *conn)
        .await
        .map_err(|error| database_error(path, error))?;
    if problems.iter().any(|line| line != "ok") {
        return Err(StoreError::Conflict(format!(
            "{} is damaged: {}",
            path.display(),
            problems.join("; ")
        )));
    }
    let has_schema: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
    )
    .fetch_one(&mut *conn)
    .await?;
    if has_schema == 0 {
        return Err(StoreError::Forbidden(format!(
            "{} is not a Cahier database (it has no schema_migrations table)",
            path.display()
        )));
    }
    let schema_version: i64 =
        sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM schema_migrations")
            .fetch_one(&mut *conn)
            .await?;
    let history_mark = if schema_version >= 35 {
        crate::sync::history::Mark::now(conn)
            .await?
            .map(|mark| mark.to_string())
    } else {
        None
    };
    let exports = if schema_version >= 15 {
        sqlx::query_as(
            "SELECT file_name, coalesce(file_size, 0) FROM export_jobs \
             WHERE state = 'done' AND file_name IS NOT NULL ORDER BY id",
        )
        .fetch_all(&mut *conn)
        .await?
    } else {
        Vec::new()
    };
    Ok(Snapshot {
        schema_version,
        history_mark,
        entities: count(conn, "entities").await?,
        changes: count(conn, "entity_changes").await?,
        users: count(conn, "users").await?,
        attachments: count(conn, "uploads").await?,
        audit_entries: if schema_version >= 13 {
            count(conn, "audit_log").await?
        } else {
            0
        },
        files: sqlx::query_scalar("SELECT DISTINCT sha256 FROM uploads ORDER BY sha256")
            .fetch_all(&mut *conn)
            .await?,
        exports,
    })
}

/// The rows of `table` (a name from this file, never from input).
async fn count(conn: &mut SqliteConnection, table: &'static str) -> Result<i64> {
    Ok(
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(conn)
            .await?,
    )
}

/// The database a restore is about to replace, as [`settle_current`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Current {
    /// There is none.
    Absent,
    /// No other process has it open, and it is now one file: its write-ahead log, if any,
    /// was copied into it and removed (it is in rollback-journal mode; a server reopening it
    /// goes back to WAL).
    Settled,
    /// Another process has it open (a server, a command, the `sqlite3` shell).
    InUse,
    /// SQLite cannot read it (damaged, or not a database): nothing can tell whether a process
    /// holds it, and its write-ahead log, if any, was left as it is.
    Unreadable(String),
}

/// Whether a process other than this one has the database at `path` open, asked of SQLite:
/// a database leaves WAL mode only once every other connection is closed, and this asks it
/// to without waiting. When none is, the database is left as one file ([`Current::Settled`]).
pub async fn settle_current(path: &Path) -> Result<Current> {
    if !path.exists() {
        return Ok(Current::Absent);
    }
    let connected = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(Duration::ZERO)
        .connect()
        .await;
    let mut conn = match connected {
        Ok(conn) => conn,
        Err(error) => return Ok(classify(error)),
    };
    let settled = sqlx::query_scalar::<_, String>("PRAGMA journal_mode = DELETE")
        .fetch_one(&mut conn)
        .await;
    let _ = conn.close().await;
    Ok(match settled {
        Ok(mode) if mode.eq_ignore_ascii_case("delete") => Current::Settled,
        // SQLite answers the mode it kept when it could not change it.
        Ok(_) => Current::InUse,
        Err(error) => classify(error),
    })
}

fn classify(error: sqlx::Error) -> Current {
    match &error {
        sqlx::Error::Database(db)
            if db.message().contains("locked") || db.message().contains("busy") =>
        {
            Current::InUse
        }
        _ => Current::Unreadable(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cahier_core::SystemClock;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_snapshot_of_a_database_in_use_reads_back_and_the_original_is_seen_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("cahier.db");
        let store = crate::Store::open_sqlite(&live, Arc::new(SystemClock))
            .await
            .unwrap();
        let user = store
            .create_user(crate::accounts::NewUser {
                email: "ada@lab.fr".into(),
                firstname: "Ada".into(),
                lastname: "Lovelace".into(),
                password: None,
                is_sysadmin: false,
            })
            .await
            .unwrap();
        assert!(user > 0);

        let copy = dir.path().join("copy.db");
        snapshot(&live, &copy).await.unwrap();
        let facts = inspect(&copy).await.unwrap();
        assert_eq!(facts.schema_version, latest_schema_version());
        assert_eq!(facts.users, 1);
        assert_eq!(facts.entities, 0);
        let mark = facts.history_mark.unwrap();
        assert!(mark.contains('.'), "{mark}");
        // Reading the copy wrote nothing beside it.
        let beside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("copy.db"))
            .collect();
        assert_eq!(beside, ["copy.db"]);

        // The server's pool holds the live database: a restore must not take it.
        assert_eq!(settle_current(&live).await.unwrap(), Current::InUse);
        store.close().await;
        assert_eq!(settle_current(&live).await.unwrap(), Current::Settled);
        assert!(!dir.path().join("cahier.db-wal").exists());
        assert_eq!(inspect(&live).await.unwrap().users, 1);
        assert_eq!(
            settle_current(&dir.path().join("none.db")).await.unwrap(),
            Current::Absent
        );
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_database_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cahier.db");
        std::fs::write(&path, vec![7u8; 8192]).unwrap();
        let error = inspect(&path).await.unwrap_err();
        assert!(
            error.to_string().contains("not a Cahier lab database"),
            "{error}"
        );
        assert!(matches!(
            settle_current(&path).await.unwrap(),
            Current::Unreadable(_)
        ));
        let error = snapshot(&path, &dir.path().join("copy.db"))
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("not a Cahier lab database"),
            "{error}"
        );
    }
}
