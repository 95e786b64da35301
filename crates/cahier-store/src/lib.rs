//! Cahier's storage: one [`Store`] over a SQLite database (PostgreSQL joins later behind the same
//! methods). It owns the SQL records, the saved Automerge document of every entity, the
//! projection of each document into rows, sessions, keys and throttling.
//!
//! Every read or write of an entity takes a [`Subject`](cahier_core::Subject) and asks the access
//! policy (`cahier_core::access` for one entity, [`access_sql`] for lists), so no caller can
//! forget it. Methods are the operations the product needs, not tables.

pub mod access_sql;
pub mod accounts;
pub mod audit;
pub mod backup;
pub mod blobs;
pub mod booking_requests;
pub mod bookings;
pub mod catalog;
mod deferred;
pub mod eln_export;
pub mod eln_import;
pub mod entities;
pub mod entity_sheet;
pub mod export_jobs;
pub mod extended;
pub mod field_filter;
mod fields;
pub mod grant_cache;
pub mod integrity;
mod lineage;
pub mod listing;
mod migrate;
mod projection;
pub mod proof_lock;
pub mod replica;
pub mod replica_files;
mod search_pending;
pub mod signatures;
pub mod stock;
pub mod sweep;
pub mod sync;
pub mod team_tags;
mod templates;
#[cfg(test)]
mod test_support;
pub mod thumbnails;
pub mod timestamps;
pub mod tsa_settings;
pub mod uploads;
pub mod zones;

use cahier_core::{Clock, EntityId};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use entities::{EntityRow, NewEntity};

/// Errors a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing does not exist, or the caller may not read it (indistinguishable on purpose).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller may read but not do this.
    #[error("{0}")]
    Forbidden(String),
    /// A value breaks a rule; `field` names it.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault, as named in forms and the API.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The request clashes with the current state (duplicate name, locked entity …).
    #[error("{0}")]
    Conflict(String),
    /// Too many attempts; try again later.
    #[error("too many failed attempts; try again in {minutes} minutes")]
    Throttled {
        /// Minutes until the next attempt is allowed.
        minutes: i64,
    },
    /// The database failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// A stored document could not be read or changed.
    #[error("document error")]
    Document(#[source] cahier_core::DocError),
}

impl From<cahier_core::DocError> for StoreError {
    fn from(error: cahier_core::DocError) -> Self {
        match error {
            cahier_core::DocError::Invalid { field, message } => StoreError::Invalid {
                field: field.to_owned(),
                message,
            },
            cahier_core::DocError::NotFound(what) => StoreError::NotFound(what),
            cahier_core::DocError::InvalidField { name, message } => StoreError::Invalid {
                field: name,
                message,
            },
            other => StoreError::Document(other),
        }
    }
}

/// A `Result` with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) fn invalid(field: &str, message: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Maps a unique-constraint violation to a conflict with `message`.
pub(crate) fn on_unique(error: sqlx::Error, message: &str) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(message.to_owned())
        }
        _ => StoreError::Database(error),
    }
}

/// The device name a lab instance writes its own changes as; changes with any other device
/// name were captured on a field replica (their device clock is recorded but never proven).
pub const SERVER_DEVICE: &str = "server";

/// The database and what goes with it.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: SqlitePool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) docs: Arc<Mutex<lru::LruCache<i64, entities::CachedDoc>>>,
    pub(crate) actors: Arc<Mutex<std::collections::HashMap<i64, automerge::ActorId>>>,
    /// Name of this device in actor provenance ([`SERVER_DEVICE`] on a lab instance).
    pub(crate) device: String,
    /// Where attachment files live; `None` until [`Store::with_blobs`] (uploads are refused).
    pub(crate) blobs: Option<blobs::BlobStore>,
    /// Match counts that choose a search's plan ([`listing::SearchLimits`]).
    pub(crate) search_limits: listing::SearchLimits,
    /// The instance's time zone when no sysadmin chose one ([`Store::with_default_zone`]).
    pub(crate) default_zone: cahier_core::zone::Zone,
    /// API keys' grants in memory, checked against `auth_epoch` ([`grant_cache`]).
    pub(crate) grants: Arc<grant_cache::GrantCache>,
    /// What pushes did ([`sync::SyncStats`]).
    pub(crate) sync_stats: Arc<sync::SyncStats>,
    /// Wakes the background projector ([`Store::run_projector`]) after a push commits.
    pub(crate) stale_wake: Arc<tokio::sync::Notify>,
    /// The mark of this process's last edit, to notice a restore under it ([`lineage`]).
    pub(crate) lineage: Arc<lineage::Lineage>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// How an encrypted database's pages are laid out (SQLCipher settings fixed when it is made,
/// needed to read it again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherLayout {
    /// SQLCipher 4's defaults: 4 KiB pages, HMAC-SHA512. Replicas made before session 8.
    Sqlcipher4Defaults,
    /// 16 KiB pages, HMAC-SHA256 (AES-256 as before). An entry's row (~5 KB of body) fits in a
    /// page instead of spilling onto overflow pages, each page carries one IV and MAC for four
    /// times the data, and SHA-256 has CPU instructions SHA-512 lacks: a first copy of 10,000
    /// entries writes with about a third less CPU and I/O (BENCHMARKS.md, session 8).
    Pages16kSha256,
}

impl CipherLayout {
    /// The layout of new databases.
    pub const CURRENT: CipherLayout = CipherLayout::Pages16kSha256;

    fn keyed(self, options: SqliteConnectOptions, key: &[u8; 32]) -> SqliteConnectOptions {
        // A raw key (no SQLCipher key derivation: ours is argon2id, done by the caller).
        // sqlx sends `key` and the cipher settings before any other pragma, as SQLCipher
        // requires.
        let options = options.pragma("key", format!("\"x'{}'\"", hex::encode(key)));
        match self {
            CipherLayout::Sqlcipher4Defaults => options,
            CipherLayout::Pages16kSha256 => options
                .pragma("cipher_page_size", "16384")
                .pragma("cipher_hmac_algorithm", "HMAC_SHA256"),
        }
    }

    /// The layout an existing database reads with under `key`; [`StoreError::Forbidden`] when
    /// none does (a wrong key, or not a Cahier database).
    async fn of(path: &Path, key: &[u8; 32]) -> Result<CipherLayout> {
        use sqlx::ConnectOptions;
        // One probe at a time: each lowers and restores SQLCipher's log level, which is one
        // for the whole process (see `read_quietly`).
        let _probing = PROBE.lock().await;
        for layout in [CipherLayout::CURRENT, CipherLayout::Sqlcipher4Defaults] {
            let options = layout.keyed(
                SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(false),
                key,
            );
            let read = match options.connect().await {
                Ok(mut conn) => {
                    let read = read_quietly(&mut conn).await;
                    let _ = sqlx::Connection::close(conn).await;
                    read
                }
                Err(error) => Err(error),
            };
            match read {
                Ok(_) => return Ok(layout),
                Err(sqlx::Error::Database(db)) if db.message().contains("not a database") => {}
                Err(error) => return Err(StoreError::Database(error)),
            }
        }
        Err(StoreError::Forbidden(
            "wrong passphrase, or not a Cahier database".into(),
        ))
    }
}

/// Serializes [`CipherLayout::of`]'s probes (their change of SQLCipher's log level).
static PROBE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// SQLCipher's log levels, as `PRAGMA cipher_log_level` names them.
const CIPHER_LOG_LEVELS: [&str; 6] = ["NONE", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"];

/// Reads the schema of a probed database with SQLCipher's own log silenced. A layout or key
/// that does not fit makes SQLCipher write `ERROR CORE … hmac check failed for pgno=1` and
/// two more lines to stderr (its log, at level WARN by default) before the read fails: a
/// probe of an older replica, or a wrong passphrase, looked like a failure though nothing was
/// wrong (the refusal says what is). The level is one for the whole process: it is lowered
/// for this read only and restored at once, so an error of a database opened in the right
/// layout (a damaged page) is still written.
async fn read_quietly(conn: &mut sqlx::SqliteConnection) -> std::result::Result<(), sqlx::Error> {
    let level: String = sqlx::query_scalar("PRAGMA cipher_log_level")
        .fetch_one(&mut *conn)
        .await?;
    // Back to SQLCipher's default if it names a level this code does not know.
    let level = CIPHER_LOG_LEVELS
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(&level))
        .unwrap_or("WARN");
    sqlx::query("PRAGMA cipher_log_level = NONE")
        .execute(&mut *conn)
        .await?;
    let read = sqlx::query("SELECT count(*) FROM sqlite_master")
        .execute(&mut *conn)
        .await
        .map(|_| ());
    let restored = sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA cipher_log_level = {level}"
    )))
    .execute(&mut *conn)
    .await
    .map(|_| ());
    read.and(restored)
}

/// How many loaded documents stay in memory.
const DOC_CACHE_ENTRIES: usize = 256;

/// SQLite's `wal_autocheckpoint` (its default): a commit that takes the write-ahead log past
/// this many pages copies it into the database file.
pub(crate) const WAL_AUTOCHECKPOINT: i64 = 1000;

/// How the SQLite database is opened (`cahier.toml`'s `db_connections` and `db_mmap_mib`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteTuning {
    /// Most connections open at once (each one is a thread of its own).
    pub connections: u32,
    /// Bytes of the file SQLite reads through a memory map (`mmap_size`) rather than
    /// `read` calls into its page cache, MiB; 0 turns the map off.
    pub mmap_mib: u64,
}

/// Measured on the 2-core machine of BENCHMARKS.md ("API v2 under 100 clients", session 6):
/// four connections (fewer threads handing work to two cores) and a map covering the whole
/// database (reads without a copy into SQLite's cache) took single `GET`s from 4,393 to
/// 4,969–5,313 req/s and a 5,000-row list from 490 to 454 ms at p90. The mapped pages are the
/// file's page cache, shared with the system and counted in the process's RSS; an encrypted
/// replica's database (SQLCipher) is never mapped.
impl Default for SqliteTuning {
    fn default() -> Self {
        Self {
            connections: 4,
            mmap_mib: 4096,
        }
    }
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and brings its schema up to date.
    pub async fn open_sqlite(path: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::open_with_key(path, clock, None, SqliteTuning::default()).await
    }

    /// [`Store::open_sqlite`] with another pool size or memory map than the defaults.
    pub async fn open_sqlite_tuned(
        path: &Path,
        clock: Arc<dyn Clock>,
        tuning: SqliteTuning,
    ) -> Result<Self> {
        Self::open_with_key(path, clock, None, tuning).await
    }

    /// Opens (creating if needed) a database encrypted with a 256-bit key (SQLCipher). A wrong
    /// key is refused with [`StoreError::Forbidden`] before anything is read or written. A new
    /// database takes the current [`CipherLayout`]; an existing one is opened in the layout it
    /// was made with (the current one is tried first, then the first one).
    pub async fn open_encrypted(
        path: &Path,
        clock: Arc<dyn Clock>,
        key: &[u8; 32],
    ) -> Result<Self> {
        let layout = if path.exists() {
            CipherLayout::of(path, key).await?
        } else {
            CipherLayout::CURRENT
        };
        Self::open_encrypted_as(path, clock, key, layout).await
    }

    /// [`Store::open_encrypted`] in a given layout (tests make databases of the first one).
    pub async fn open_encrypted_as(
        path: &Path,
        clock: Arc<dyn Clock>,
        key: &[u8; 32],
        layout: CipherLayout,
    ) -> Result<Self> {
        Self::open_with_key(path, clock, Some((key, layout)), SqliteTuning::default()).await
    }

    async fn open_with_key(
        path: &Path,
        clock: Arc<dyn Clock>,
        key: Option<(&[u8; 32], CipherLayout)>,
        tuning: SqliteTuning,
    ) -> Result<Self> {
        // SQLite's page cache, KiB (negative). An encrypted replica's database is never
        // mapped: every page read past this cache is read and decrypted again, and a pull
        // batch's pages (up to 1,000 entries, ~12 MiB) are all written at its commit rather
        // than some earlier when the cache overflows. The server's is mapped, and keeps the
        // smaller one per connection.
        let cache_size = if key.is_some() { "-32768" } else { "-8000" };
        let mut options = SqliteConnectOptions::new();
        if let Some((key, layout)) = key {
            options = layout.keyed(options, key);
        }
        let options = options
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged write survives power loss, not only a crash of the process.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", cache_size)
            .pragma("temp_store", "memory")
            .pragma(
                "mmap_size",
                tuning.mmap_mib.saturating_mul(1024 * 1024).to_string(),
            );
        let pool = SqlitePoolOptions::new()
            .max_connections(tuning.connections.max(1))
            .min_connections(1)
            .connect_with(options)
            .await
            .map_err(|error| match &error {
                sqlx::Error::Database(db) if db.message().contains("not a database") => {
                    StoreError::Forbidden("wrong passphrase, or not a Cahier database".into())
                }
                _ => StoreError::Database(error),
            })?;
        if key.is_some() {
            // Reading the schema fails with a wrong key: say so before anything else runs.
            if let Err(error) = sqlx::query("SELECT count(*) FROM sqlite_master")
                .execute(&pool)
                .await
            {
                pool.close().await;
                return Err(match &error {
                    sqlx::Error::Database(db) if db.message().contains("not a database") => {
                        StoreError::Forbidden("wrong passphrase, or not a Cahier database".into())
                    }
                    _ => StoreError::Database(error),
                });
            }
        }
        let not_a_database = |error: sqlx::Error| match &error {
            sqlx::Error::Database(db) if db.message().contains("not a database") => {
                StoreError::Forbidden("wrong passphrase, or not a Cahier database".into())
            }
            _ => StoreError::Database(error),
        };
        if let Some(newer) = migrate::newer_schema(&pool).await.map_err(not_a_database)? {
            pool.close().await;
            return Err(StoreError::Conflict(format!(
                "{} has schema version {newer}, written by a newer Cahier; this one knows up to {}: run the newer version (nothing was changed)",
                path.display(),
                migrate::latest_version()
            )));
        }
        migrate::run(&pool).await.map_err(not_a_database)?;
        // A new history of the feed sequence begins with each process (sync/history.rs).
        sync::history::open_history(&pool, clock.now_ms()).await?;
        let capacity =
            std::num::NonZeroUsize::new(DOC_CACHE_ENTRIES).unwrap_or(std::num::NonZeroUsize::MIN);
        Ok(Self {
            pool,
            clock,
            docs: Arc::new(Mutex::new(lru::LruCache::new(capacity))),
            actors: Arc::new(Mutex::new(std::collections::HashMap::new())),
            device: SERVER_DEVICE.to_owned(),
            blobs: None,
            search_limits: listing::SearchLimits::default(),
            default_zone: cahier_core::zone::Zone::utc(),
            grants: Arc::new(grant_cache::GrantCache::default()),
            sync_stats: Arc::new(sync::SyncStats::default()),
            stale_wake: Arc::new(tokio::sync::Notify::new()),
            lineage: Arc::new(lineage::Lineage::default()),
        })
    }

    /// Names the device this store writes as (a replica's device id; "server" by default).
    pub fn with_device(mut self, device: &str) -> Self {
        self.device = device.to_owned();
        self
    }

    /// Chooses search plans with other match counts than [`listing::SearchLimits::default`]
    /// (tests use small ones to reach every plan with few entries).
    pub fn with_search_limits(mut self, limits: listing::SearchLimits) -> Self {
        self.search_limits = limits;
        self
    }

    /// Keeps attachment files under `root`, accepting files up to `max_bytes`.
    pub fn with_blobs(mut self, root: impl Into<std::path::PathBuf>, max_bytes: u64) -> Self {
        self.blobs = Some(blobs::BlobStore::new(root, max_bytes));
        self
    }

    /// Keeps attachment files under `root`, encrypted at rest with `key` (a field replica).
    pub fn with_encrypted_blobs(
        mut self,
        root: impl Into<std::path::PathBuf>,
        max_bytes: u64,
        key: [u8; 32],
    ) -> Self {
        self.blobs = Some(blobs::BlobStore::new(root, max_bytes).encrypted(key));
        self
    }

    /// The blob store, if this store has one.
    pub fn blobs(&self) -> Option<&blobs::BlobStore> {
        self.blobs.as_ref()
    }

    /// The device this store writes as.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Whether this store is a field replica's (it writes as a device other than the
    /// server): bookings are then requests the lab server decides at sync.
    pub fn is_replica(&self) -> bool {
        self.device != SERVER_DEVICE
    }

    /// The clock this store stamps records with.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Closes the pool, flushing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Copies the write-ahead log into the database file as far as readers allow, without
    /// waiting for writers or blocking them (`wal_checkpoint(PASSIVE)`); returns the log's
    /// pages and how many are now in the database file. Pull batches leave this to be done
    /// after the sync (`replica serve` does) instead of in one of their commits.
    pub async fn checkpoint_wal(&self) -> Result<(i64, i64)> {
        let (_busy, log, done): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&self.pool)
            .await?;
        Ok((log, done))
    }

    /// Whether the database answers.
    pub async fn is_healthy(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// A fresh entity id made now.
    pub fn new_entity_id(&self) -> EntityId {
        EntityId::new(self.now_ms(), rand::random())
    }
}

/// A random token, hex-encoded, of `bytes` bytes.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut buf);
    hex::encode(buf)
}

/// SHA-256 of `s`, hex-encoded.
pub(crate) fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod cipher_layout_tests {
    use super::{CipherLayout, Store, StoreError};
    use std::sync::Arc;

    async fn page_size(store: &Store) -> i64 {
        // SQLCipher answers this pragma as text.
        let size: String = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&store.pool)
            .await
            .expect("page size");
        size.parse().expect("a number")
    }

    #[tokio::test]
    async fn new_databases_take_the_current_layout_and_older_ones_still_open() {
        let dir = tempfile::tempdir().expect("dir");
        let clock = Arc::new(cahier_core::SystemClock);
        let key = [7u8; 32];
        let wrong = [8u8; 32];

        // A replica made before session 8: SQLCipher's defaults.
        let old = dir.path().join("old.db");
        let store =
            Store::open_encrypted_as(&old, clock.clone(), &key, CipherLayout::Sqlcipher4Defaults)
                .await
                .expect("old layout");
        store.replica_set("kept", "yes").await.expect("write");
        store.close().await;
        let store = Store::open_encrypted(&old, clock.clone(), &key)
            .await
            .expect("reopened");
        assert_eq!(page_size(&store).await, 4096);
        assert_eq!(
            store.replica_get("kept").await.expect("read").as_deref(),
            Some("yes")
        );
        store.close().await;

        // A new one: 16 KiB pages, and still refused under another key.
        let new = dir.path().join("new.db");
        let store = Store::open_encrypted(&new, clock.clone(), &key)
            .await
            .expect("new");
        assert_eq!(page_size(&store).await, 16384);
        store.replica_set("kept", "too").await.expect("write");
        store.close().await;
        let store = Store::open_encrypted(&new, clock.clone(), &key)
            .await
            .expect("reopened");
        assert_eq!(
            store.replica_get("kept").await.expect("read").as_deref(),
            Some("too")
        );
        store.close().await;
        for path in [&old, &new] {
            match Store::open_encrypted(path, clock.clone(), &wrong).await {
                Err(StoreError::Forbidden(_)) => {}
                Err(other) => panic!("a wrong key gave {other}"),
                Ok(_) => panic!("a wrong key opened {}", path.display()),
            }
        }

        // The probes above silenced SQLCipher's log only while they read: its level is back
        // to the default, so a real error (a damaged page) is still written. (Read under the
        // probes' lock: the level is one for the process, and other tests probe too.)
        let store = Store::open_encrypted(&new, clock.clone(), &key)
            .await
            .expect("reopened");
        let _probing = super::PROBE.lock().await;
        let level: String = sqlx::query_scalar("PRAGMA cipher_log_level")
            .fetch_one(&store.pool)
            .await
            .expect("log level");
        assert_eq!(level, "WARN");
        store.close().await;
    }
}

#[cfg(test)]
mod schema_version_tests {
    use super::{Store, StoreError};
    use std::sync::Arc;

    /// A database written by a newer Cahier (a schema version this build does not know) is
    /// refused with what to do, and left as it was; an older build would otherwise write to it
    /// with an older idea of its tables.
    #[tokio::test]
    async fn a_database_of_a_newer_schema_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("cahier.db");
        let clock = Arc::new(cahier_core::SystemClock);
        let store = Store::open_sqlite(&path, clock.clone())
            .await
            .expect("open");
        let newer = crate::migrate::latest_version() + 1;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)")
            .bind(newer)
            .execute(&store.pool)
            .await
            .expect("newer");
        store.close().await;
        let before = std::fs::read(&path).expect("bytes");
        match Store::open_sqlite(&path, clock.clone()).await {
            Err(StoreError::Conflict(message)) => {
                assert!(
                    message.contains(&format!("schema version {newer}")),
                    "{message}"
                );
                assert!(message.contains("newer Cahier"), "{message}");
            }
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
        assert_eq!(
            std::fs::read(&path).expect("bytes"),
            before,
            "left as it was"
        );
    }
}
