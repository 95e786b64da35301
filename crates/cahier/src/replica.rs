//! The field replica commands: `replica init` registers this device with the lab instance and
//! takes the first copy; `replica sync` syncs once. The device credential lives in
//! `DIR/device.key`, readable by its owner only. The replica's database is encrypted at rest
//! (SQLCipher) with a key derived from a passphrase chosen at `init` (argon2id, salt in
//! `DIR/replica.salt`); every command asks for it, or reads `CAHIER_REPLICA_PASSPHRASE`.
//! Attachment files live in `DIR/blobs`, encrypted too (XChaCha20-Poly1305 STREAM, with a
//! key derived from the database key, see `blob_key`). The
//! server must be `https://` (or loopback); a lab CA given with `--ca-file` is kept in the
//! replica's database and is then the only one trusted. `replica init`'s first copy,
//! `replica sync` and `replica serve`'s background sync give up on a request when the server
//! sends nothing for 30 s (`cahier_sync::http::STALL_TIMEOUT`), or for
//! `CAHIER_REPLICA_STALL_SECS` seconds when set (1 to 3600: a link known to pause longer, or
//! tests).

use anyhow::{Context, bail};
use cahier_store::Store;
use cahier_store::replica_files::FilePolicy;
use cahier_sync::http::{HttpTransport, TlsOptions, check_server_url};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CREDENTIAL_FILE: &str = "device.key";
const SALT_FILE: &str = "replica.salt";
/// Folder of the replica's attachment files.
const BLOBS_DIR: &str = "blobs";
/// Replica setting holding the lab's CA certificates (PEM), if any.
const CA_KEY: &str = "ca_pem";
/// Environment variable scripts and tests use to pass the replica's passphrase.
pub const PASSPHRASE_ENV: &str = "CAHIER_REPLICA_PASSPHRASE";
/// Environment variable setting how many seconds a sync request may go without a byte from
/// the server before the network is taken as hanging (default 30).
pub const STALL_ENV: &str = "CAHIER_REPLICA_STALL_SECS";
/// Shortest accepted passphrase.
pub const MIN_PASSPHRASE_CHARS: usize = 8;

/// The replica's passphrase: from `CAHIER_REPLICA_PASSPHRASE`, else asked on the terminal.
fn passphrase(confirm: bool) -> anyhow::Result<String> {
    if let Ok(value) = std::env::var(PASSPHRASE_ENV) {
        return Ok(value);
    }
    let first = rpassword::prompt_password("Passphrase of this field copy: ")
        .with_context(|| format!("no terminal to ask the passphrase on; set {PASSPHRASE_ENV}"))?;
    if confirm {
        let again = rpassword::prompt_password("Same passphrase again: ")
            .context("reading the passphrase")?;
        anyhow::ensure!(first == again, "the two passphrases differ");
    }
    Ok(first)
}

/// Derives the database key from the passphrase (argon2id; the salt lives beside the database).
fn derive_key(passphrase: &str, salt: &[u8]) -> anyhow::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    argon2::Argon2::default()
        .hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .map_err(|e| anyhow::anyhow!("deriving the key: {e}"))?;
    Ok(key)
}

fn read_salt(data: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data.join(SALT_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    hex::decode(text.trim()).with_context(|| format!("{} is damaged", path.display()))
}

fn credential_path(data: &Path) -> PathBuf {
    data.join(CREDENTIAL_FILE)
}

/// Opens a replica's store, written as its device.
pub async fn open(data: &Path) -> anyhow::Result<Store> {
    open_with(data, &passphrase(false)?).await
}

/// Opens a replica's store with a given passphrase.
pub async fn open_with(data: &Path, passphrase: &str) -> anyhow::Result<Store> {
    let db = data.join("cahier.db");
    anyhow::ensure!(
        db.exists(),
        "{} is not a replica (run cahier replica init first)",
        data.display()
    );
    let key = derive_key(passphrase, &read_salt(data)?)?;
    let store = Store::open_encrypted(&db, Arc::new(cahier_core::SystemClock), &key)
        .await
        .map_err(|error| match error {
            cahier_store::StoreError::Forbidden(_) => anyhow::anyhow!(
                "wrong passphrase for the field copy in {}; nothing was changed",
                data.display()
            ),
            other => anyhow::Error::new(other).context(format!("opening {}", db.display())),
        })?;
    let device = store
        .replica_get("device")
        .await?
        .context("this data directory is not a replica")?;
    let store = with_blobs(store.with_device(&device), data, &key);
    // A replica made before its writes left the merging of the search index for later.
    store.defer_search_merges().await?;
    Ok(store)
}

/// The key of the replica's attachment files: derived from the database key (itself argon2id
/// of the passphrase) with a label, so the two keys differ and one passphrase opens both.
fn blob_key(database_key: &[u8; 32]) -> [u8; 32] {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(b"cahier replica attachment files v1\0");
    hasher.update(database_key);
    hasher.finalize().into()
}

fn with_blobs(store: Store, data: &Path, database_key: &[u8; 32]) -> Store {
    store
        .with_encrypted_blobs(
            data.join(BLOBS_DIR),
            crate::settings::DEFAULT_MAX_UPLOAD_MB.saturating_mul(1024 * 1024),
            blob_key(database_key),
        )
        // Only until the first sync: the reference records then bring the lab's zone (and
        // the user's own choice), which the replica uses from then on, whatever the laptop's.
        .with_default_zone(cahier_core::zone::Zone::system().unwrap_or_default())
}

/// The transport to the replica's server, with its stored TLS settings.
async fn transport(store: &Store, data: &Path) -> anyhow::Result<(String, HttpTransport)> {
    let server = store
        .replica_get("server")
        .await?
        .context("the replica does not know its server")?;
    let tls = match store.replica_get(CA_KEY).await? {
        Some(pem) => TlsOptions::with_ca_pem(pem.into_bytes())?,
        None => TlsOptions::default(),
    };
    let credential = std::fs::read_to_string(credential_path(data))
        .with_context(|| format!("reading {}", credential_path(data).display()))?;
    let transport =
        HttpTransport::new(&server, &tls, credential.trim())?.with_stall_timeout(stall_timeout()?);
    Ok((server, transport))
}

/// The sync's stall timeout: `CAHIER_REPLICA_STALL_SECS` when set, else 30 s.
fn stall_timeout() -> anyhow::Result<std::time::Duration> {
    let Ok(value) = std::env::var(STALL_ENV) else {
        return Ok(cahier_sync::http::STALL_TIMEOUT);
    };
    let seconds = value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|seconds| (1..=3600).contains(seconds))
        .with_context(|| {
            format!("{STALL_ENV}={value}: expected a whole number of seconds from 1 to 3600")
        })?;
    Ok(std::time::Duration::from_secs(seconds))
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Brings files the replica lacks from its server when the user opens them or an export
/// needs them (the web layer's on-demand fetch), through the sync engine's verified download.
/// Someone is waiting: a download gives up after
/// [`cahier_sync::http::INTERACTIVE_STALL_TIMEOUT`] without a byte, where the background sync
/// waits [`cahier_sync::http::STALL_TIMEOUT`] (same connections, same connect timeout).
#[derive(Debug)]
pub struct ServerFiles {
    store: Store,
    transport: HttpTransport,
}

impl ServerFiles {
    /// Fetches into `store`'s file store from the server behind `transport`.
    pub fn new(store: Store, transport: HttpTransport) -> Self {
        Self::with_stall_timeout(
            store,
            transport,
            cahier_sync::http::INTERACTIVE_STALL_TIMEOUT,
        )
    }

    /// [`ServerFiles::new`], giving up on a download after `stall` without a byte.
    pub fn with_stall_timeout(
        store: Store,
        transport: HttpTransport,
        stall: std::time::Duration,
    ) -> Self {
        Self {
            store,
            transport: transport.with_stall_timeout(stall),
        }
    }
}

impl cahier_web::FetchFile for ServerFiles {
    fn fetch<'a>(
        &'a self,
        sha256: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>> {
        Box::pin(async move {
            cahier_sync::fetch_file(&self.store, &self.transport, sha256)
                .await
                .map_err(|error| error.to_string())
        })
    }
}

/// Registers the device and takes the first full copy, keeping the files `files` selects
/// (`None`: all of them).
pub async fn init(
    server: &str,
    data: &Path,
    email: &str,
    password: &str,
    ca_file: Option<&Path>,
    files: Option<&str>,
) -> anyhow::Result<String> {
    let files = files.map(FilePolicy::parse).transpose()?;
    check_server_url(server)?;
    let tls = match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            TlsOptions::with_ca_pem(pem).with_context(|| format!("reading {}", path.display()))?
        }
        None => TlsOptions::default(),
    };
    if data.join("cahier.db").exists() {
        bail!(
            "{} already holds a Cahier database; choose an empty directory",
            data.display()
        );
    }
    let passphrase = passphrase(true)?;
    let (store, transport) = create(server, data, email, password, &tls, &passphrase).await?;
    if let Some(files) = files {
        // The teams are checked against the user's, which come with the reference records.
        let reference = cahier_sync::Transport::reference(&transport)
            .await
            .context("reading your teams")?;
        store.import_reference(&reference).await?;
        if let Err(error) = store.set_file_policy(&files).await {
            store.close().await;
            bail!(
                "{error}; the field copy in {dir} is registered but holds nothing yet: choose its files with `cahier replica files --data {dir} …`, then run `cahier replica sync --data {dir}`",
                dir = data.display()
            );
        }
    }
    let report = cahier_sync::sync_once(&store, &transport)
        .await
        .context("taking the first copy")?;
    store
        .finish_search_bulk()
        .await
        .context("merging the search index")?;
    store.close().await;
    Ok(format!("replica ready in {}: {report}", data.display()))
}

/// Registers the device and creates the replica's encrypted database and file store in
/// `data`, without syncing (`init` then takes the first copy; `cahier bench-sync` times it).
pub async fn create(
    server: &str,
    data: &Path,
    email: &str,
    password: &str,
    tls: &TlsOptions,
    passphrase: &str,
) -> anyhow::Result<(Store, HttpTransport)> {
    anyhow::ensure!(
        passphrase.chars().count() >= MIN_PASSPHRASE_CHARS,
        "the passphrase needs at least {MIN_PASSPHRASE_CHARS} characters: it protects the notebook if the laptop is lost"
    );
    let stall = stall_timeout()?;
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "field laptop".into());
    let (transport, registered) = HttpTransport::register(server, tls, email, password, &host)
        .await
        .with_context(|| format!("registering this device with {server}"))?;
    write_private(&credential_path(data), &registered.token)?;
    let salt: [u8; 16] = rand::random();
    write_private(&data.join(SALT_FILE), &hex::encode(salt))?;
    let key = derive_key(passphrase, &salt)?;
    let store = Store::open_encrypted(
        &data.join("cahier.db"),
        Arc::new(cahier_core::SystemClock),
        &key,
    )
    .await
    .context("creating the replica database")?
    .with_device(&registered.device);
    let store = with_blobs(store, data, &key);
    store.init_replica().await?;
    if let Some(pem) = &tls.ca_pem {
        store
            .replica_set(CA_KEY, &String::from_utf8_lossy(pem))
            .await?;
    }
    store
        .replica_set("server", server.trim_end_matches('/'))
        .await?;
    store.replica_set("device", &registered.device).await?;
    store
        .replica_set("user_id", &registered.user_id.to_string())
        .await?;
    Ok((store, transport.with_stall_timeout(stall)))
}

/// Syncs once; fails (non-zero exit) unless both sides agree afterwards.
pub async fn sync(data: &Path) -> anyhow::Result<String> {
    let store = open(data).await?;
    let (server, transport) = transport(&store, data).await?;
    let report = cahier_sync::sync_once(&store, &transport)
        .await
        .with_context(|| format!("syncing with {server}"))?;
    // After a first copy cut short and finished by this sync.
    store
        .finish_search_bulk()
        .await
        .context("merging the search index")?;
    store
        .merge_search_segments()
        .await
        .context("merging the search index")?;
    store.close().await;
    if report.waiting > 0 || report.rejected > 0 {
        bail!(
            "{report}; {} change set(s) refused by the server are kept as rejected edits",
            report.rejected
        );
    }
    if report.files_missing > 0 {
        bail!(
            "{report}; {} attachment file(s) could not be fetched and will be tried again",
            report.files_missing
        );
    }
    Ok(report.to_string())
}

/// A running background sync; stopped when the replica locks.
pub struct SyncTask(tokio::task::JoinHandle<()>);

impl SyncTask {
    /// Stops syncing.
    pub fn stop(self) {
        self.0.abort();
    }
}

/// The web state of an unlocked replica served at `url`, and its background sync.
pub async fn replica_parts(
    data: &Path,
    store: Store,
    url: &str,
) -> anyhow::Result<(cahier_web::AppState, SyncTask)> {
    let user_id: i64 = store
        .replica_get("user_id")
        .await?
        .and_then(|v| v.parse().ok())
        .context("the replica does not know its user")?;
    let (_, transport) = transport(&store, data).await?;
    let last_sync_ms = store
        .replica_get("last_sync_ms")
        .await?
        .and_then(|v| v.parse().ok());
    let handle = Arc::new(cahier_web::ReplicaHandle {
        user_id,
        status: std::sync::Mutex::new(cahier_web::ReplicaStatus {
            online: false,
            last_sync_ms,
            last_error: None,
        }),
        sync_now: tokio::sync::Notify::new(),
        fetcher: Some(Arc::new(ServerFiles::new(store.clone(), transport.clone()))),
    });
    let task = SyncTask(tokio::spawn(sync_loop(
        store.clone(),
        transport,
        handle.clone(),
    )));
    let state = cahier_web::AppState {
        store,
        config: Arc::new(cahier_web::WebConfig {
            // The links it shows (the calendar feeds, the API page) are this laptop's.
            public_url: url.to_owned(),
            max_body_bytes: 16 * 1024 * 1024,
            version: crate::VERSION.to_owned(),
        }),
        replica: Some(handle),
        tsa: Arc::new(cahier_web::TsaSlot::new(None, std::path::PathBuf::new())),
    };
    Ok((state, task))
}

/// Merges the search index's segments if entries changed since the last merge (`merged_at`,
/// the change counter then); whether it merged something.
async fn merge_search_segments(store: &Store, merged_at: &mut Option<i64>) -> bool {
    let counter = match store.change_counter().await {
        Ok(counter) if *merged_at != Some(counter) => counter,
        Ok(_) => return false,
        Err(error) => {
            tracing::warn!(%error, "reading the change counter failed");
            return false;
        }
    };
    match store.merge_search_segments().await {
        Ok(steps) => {
            *merged_at = Some(counter);
            steps > 0
        }
        Err(error) => {
            tracing::warn!(%error, "merging the search index failed; will retry");
            false
        }
    }
}

/// The passphrase from the environment, if given there (scripts and tests).
pub fn passphrase_from_env() -> Option<String> {
    std::env::var(PASSPHRASE_ENV).ok()
}

/// Syncs every minute while the server answers; after a failure waits 5 s, then doubles up to
/// 5 minutes. "Sync now" in the UI wakes it at once.
async fn sync_loop(store: Store, transport: HttpTransport, handle: Arc<cahier_web::ReplicaHandle>) {
    let mut delay = std::time::Duration::from_secs(60);
    let mut bodies_pending = true;
    // The change counter when the search index's segments were last merged.
    let mut merged_at = None;
    loop {
        let outcome = cahier_sync::sync_once(&store, &transport).await;
        let now = store.now_ms();
        if let Ok(mut status) = handle.status.lock() {
            match &outcome {
                Ok(report) => {
                    status.online = true;
                    status.last_sync_ms = Some(now);
                    status.last_error = None;
                    tracing::info!(%report, "synced");
                }
                Err(error) => {
                    status.online = false;
                    status.last_error = Some(error.to_string());
                    tracing::info!(%error, "sync failed; will retry");
                }
            }
        }
        // The rendered bodies a pull left out are stored once it is over (reads render them
        // meanwhile; docs/SYNC.md): after a sync that pulled entries, and once at start (a
        // previous run may have stopped before).
        if outcome.is_ok() {
            // After a first copy, the search index is merged once (docs/SYNC.md).
            if let Err(error) = store.finish_search_bulk().await {
                tracing::warn!(%error, "merging the search index failed; will retry");
            }
        }
        if let Ok(report) = &outcome {
            bodies_pending |= report.pulled > 0;
            if bodies_pending {
                match store.render_pending_html().await {
                    Ok(_) => bodies_pending = false,
                    Err(error) => {
                        tracing::warn!(%error, "storing rendered bodies failed; will retry");
                    }
                }
            }
        }
        // The replica's writes leave the search index's segments unmerged; they are merged
        // once a sync is over (docs/SYNC.md), also after a failed one when saves were made
        // offline meanwhile.
        let merged = merge_search_segments(&store, &mut merged_at).await;
        if let Ok(report) = &outcome {
            // Pull batches leave the write-ahead log to be checkpointed afterwards.
            if (report.pulled > 0 || merged)
                && let Err(error) = store.checkpoint_wal().await
            {
                tracing::warn!(%error, "checkpointing the database log failed");
            }
        }
        delay = match outcome {
            Ok(_) => std::time::Duration::from_secs(60),
            Err(_) if delay >= std::time::Duration::from_secs(60) => {
                std::time::Duration::from_secs(5)
            }
            Err(_) => (delay * 2).min(std::time::Duration::from_secs(300)),
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = handle.sync_now.notified() => {}
        }
    }
}

/// Creates a key for the replica's local API v2 and returns it.
pub async fn apikey(data: &Path) -> anyhow::Result<String> {
    let store = open(data).await?;
    let user_id: i64 = store
        .replica_get("user_id")
        .await?
        .and_then(|v| v.parse().ok())
        .context("the replica does not know its user")?;
    let user = store.user(user_id).await?;
    let team = user
        .current_team
        .context("the replica's user belongs to no team")?;
    let (_, key) = store
        .create_api_key(user_id, team, "replica scripts", true)
        .await?;
    store.close().await;
    Ok(key)
}

/// `replica files`: sets the file policy when `policy` is given, then prints it with how many
/// files are on the laptop and how many are not. The files follow at the next sync.
pub async fn files(data: &Path, policy: Option<&str>) -> anyhow::Result<String> {
    let store = open(data).await?;
    if let Some(policy) = policy {
        store.set_file_policy(&FilePolicy::parse(policy)?).await?;
    }
    let policy = store.file_policy().await?;
    let counts = store.file_counts().await?;
    let pinned = store.pinned_entries().await?.len();
    store.close().await;
    Ok(format!(
        "files: {policy}; {} on this laptop, {} not (fetched on demand or at the next sync); {pinned} entries pinned available offline",
        counts.held, counts.not_held
    ))
}

/// `replica pin` / `replica unpin`: marks entries (`experiments/12`, `resources/3` or a UUID)
/// available offline on this device, or not; their files follow at the next sync.
pub async fn pin(data: &Path, entries: &[String], pinned: bool) -> anyhow::Result<String> {
    anyhow::ensure!(
        !entries.is_empty(),
        "name at least one entry, e.g. experiments/12"
    );
    let store = open(data).await?;
    let user_id: i64 = store
        .replica_get("user_id")
        .await?
        .and_then(|v| v.parse().ok())
        .context("the replica does not know its user")?;
    let subject = store.subject(user_id).await?;
    let mut done = Vec::new();
    for entry in entries {
        let uuid = store
            .entity_uuid_by_ref(&subject, entry)
            .await
            .with_context(|| format!("finding {entry} on this field copy"))?;
        if pinned {
            store.pin_entity(&uuid).await?;
        } else {
            store.unpin_entity(&uuid).await?;
        }
        done.push(entry.as_str());
    }
    store.close().await;
    Ok(format!(
        "{} {}; run cahier replica sync to {} their files",
        if pinned { "pinned" } else { "unpinned" },
        done.join(", "),
        if pinned { "fetch" } else { "drop" }
    ))
}
