//! Cahier's startup: settings from defaults, `cahier.toml`, `CAHIER_*` variables and flags (in
//! that order of precedence), opening the store, and serving. The binary and the test kit both
//! start Cahier through [`start`], so tests run the production path.

pub mod backup;
pub mod bench;
pub mod bench_exchange;
pub mod bench_sync;
pub mod data_lock;
pub mod replica;
pub mod replica_gate;
pub mod seed;
pub mod settings;

use anyhow::Context;
use cahier_core::SystemClock;
use cahier_store::Store;
use cahier_web::{AppState, WebConfig};
use settings::Settings;
use std::net::SocketAddr;
use std::sync::Arc;

/// The version reported by the API and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The setup link to print on an empty instance.
    pub setup_url: Option<String>,
    /// The base URL.
    pub url: String,
    /// Store handle (tests use it to seed data).
    pub store: Store,
    /// The data folder's lock, held shared while serving ([`data_lock`]); released once the
    /// database is closed.
    data_lock: Option<data_lock::DataLock>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting requests, finishes those in flight and closes the database.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.task.await.context("server task")?.context("server")?;
        self.store.close().await;
        drop(self.data_lock);
        Ok(())
    }

    /// Waits until the server stops (Ctrl-C or SIGTERM).
    pub async fn wait(self) -> anyhow::Result<()> {
        let shutdown = self.shutdown;
        let store = self.store;
        let data_lock = self.data_lock;
        tokio::select! {
            result = self.task => { result.context("server task")?.context("server")?; }
            () = shutdown_signal() => { let _ = shutdown.send(()); }
        }
        store.close().await;
        drop(data_lock);
        Ok(())
    }
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = terminate => {} }
}

/// Opens the store of a data directory (creating it), with migrations applied.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&settings.data)
        .with_context(|| format!("creating the data directory {}", settings.data.display()))?;
    let db = settings.data.join("cahier.db");
    let store = Store::open_sqlite_tuned(&db, Arc::new(SystemClock), settings.sqlite)
        .await
        .with_context(|| format!("opening the database {}", db.display()))?;
    Ok(store
        .with_blobs(
            settings.data.join("blobs"),
            settings.max_upload_mb.saturating_mul(1024 * 1024),
        )
        .with_default_zone(settings.time_zone.clone()))
}

/// Opens the store, binds the listen address and starts serving, holding the data folder's
/// lock shared until the server stops (so `cahier restore` is refused meanwhile).
pub async fn start(settings: &Settings) -> anyhow::Result<Running> {
    let lock = data_lock::DataLock::shared(&settings.data)?;
    let store = open_store(settings).await?;
    let mut running = serve_store(settings, store, None).await?;
    running.data_lock = Some(lock);
    Ok(running)
}

/// [`open_store`] for an admin command on a lab's folder, holding its lock shared while the
/// command runs (a restore is refused meanwhile, and the command during a restore).
pub async fn open_lab(settings: &Settings) -> anyhow::Result<(data_lock::DataLock, Store)> {
    let lock = data_lock::DataLock::shared(&settings.data)?;
    let store = open_store(settings).await?;
    Ok((lock, store))
}

/// How often the server looks whether the search index needs tidying.
const TIDY_EVERY: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// Index pages rewritten per step of tidying (a few ms of write lock each).
const TIDY_PAGES: i64 = 200;

/// Keeps the full-text index merged ([`Store::tidy_search_index`]): every quarter of an hour,
/// if entries changed, in small steps with pauses so that writers keep going. At 100,000
/// entries a full merge rewrites about 85 MB in 1.7 s of work.
async fn tidy_search_index(store: Store) {
    let mut tidied_at = None;
    loop {
        tokio::time::sleep(TIDY_EVERY).await;
        let Ok(counter) = store.change_counter().await else {
            continue;
        };
        if tidied_at == Some(counter) {
            continue;
        }
        loop {
            match store.tidy_search_index(TIDY_PAGES).await {
                Ok(true) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                Ok(false) => break,
                Err(error) => {
                    tracing::warn!(%error, "tidying the search index failed");
                    break;
                }
            }
        }
        tidied_at = Some(counter);
    }
}

/// How often the server removes orphan attachment files, and how old they must be.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Removes orphan attachment files once a day ([`Store::sweep_orphans`]), the first time an
/// hour after start so that starting is not slowed.
async fn sweep_orphans(store: Store) {
    if store.blobs().is_none() {
        return;
    }
    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    loop {
        match store.sweep_orphans(SWEEP_EVERY, false).await {
            Ok(report) if !report.removed.is_empty() || report.removed_temporary > 0 => {
                tracing::info!(
                    files = report.removed.len(),
                    bytes = report.freed_bytes,
                    temporary = report.removed_temporary,
                    "removed orphan attachment files"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "the orphan sweep failed"),
        }
        tokio::time::sleep(SWEEP_EVERY).await;
    }
}

/// How often the anchor task looks whether an anchor is due (and retries after a failure).
const ANCHOR_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Timestamps the head of the audit log with the TSA every `hours` hours
/// ([`cahier_trace::anchor_audit_head`]); a failure is logged and retried an hour later.
async fn anchor_audit_log(store: Store, tsa: Option<Arc<cahier_web::TsaSlot>>, hours: u64) {
    let Some(slot) = tsa else { return };
    if hours == 0 {
        return;
    }
    let every_ms = i64::try_from(hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX);
    loop {
        let due = match store.last_audit_anchor_at().await {
            Ok(Some(at)) => store.now_ms().saturating_sub(at) >= every_ms,
            Ok(None) => true,
            Err(error) => {
                tracing::warn!(%error, "reading the last audit anchor failed");
                false
            }
        };
        // The authority in force now (a sysadmin may have set or changed it since).
        let tsa = slot.current();
        if due && let Some(tsa) = tsa {
            match cahier_trace::anchor_audit_head(&store, Some(&tsa), rand::random()).await {
                Ok(Some(anchor)) => tracing::info!(anchor, "audit log anchored by the TSA"),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "timestamping the audit log failed"),
            }
        }
        tokio::time::sleep(ANCHOR_CHECK_EVERY).await;
    }
}

/// Serves an open store: a lab instance (`replica` is `None`) or a field replica.
pub async fn serve_store(
    settings: &Settings,
    store: Store,
    replica: Option<Arc<cahier_web::ReplicaHandle>>,
) -> anyhow::Result<Running> {
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    let url = settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let setup_url = if replica.is_some() {
        None
    } else {
        store
            .issue_setup_token()
            .await
            .context("creating the setup link")?
            .map(|token| format!("{}/setup?token={token}", url.trim_end_matches('/')))
    };
    // The environment and cahier.toml override what a sysadmin stored on the admin page.
    let tsa = Arc::new(cahier_web::TsaSlot::new(
        settings.tsa.clone(),
        settings.data.join("tsa"),
    ));
    if replica.is_none() && tsa.source == cahier_web::TsaSource::Stored {
        match store.tsa_settings().await {
            Ok(stored) => {
                if let Err(error) = tsa.apply(stored.as_ref()) {
                    tracing::warn!(%error, "the stored timestamping authority cannot be used");
                }
            }
            Err(error) => tracing::warn!(%error, "reading the stored timestamping authority"),
        }
    }
    let state = AppState {
        store: store.clone(),
        config: Arc::new(WebConfig {
            public_url: url.clone(),
            max_body_bytes: settings.max_body_mb.saturating_mul(1024 * 1024),
            version: VERSION.to_owned(),
        }),
        replica,
        tsa: tsa.clone(),
    };
    let is_replica = state.replica.is_some();
    let app = cahier_web::router(state);
    if let Err(error) = store.fail_interrupted_export_jobs().await {
        tracing::warn!(%error, "marking interrupted exports as failed");
    }
    let tidy = tokio::spawn(tidy_search_index(store.clone()));
    let sweep = tokio::spawn(sweep_orphans(store.clone()));
    // Projects what pushes accepted without loading documents (and what a crash left stale).
    let projector = (!is_replica).then(|| tokio::spawn(store.clone().run_projector()));
    // Builds, at low priority, the fast path's index of entries that have none (from before
    // migration 26): their first push then decodes no whole change log.
    let indexer = (!is_replica).then(|| tokio::spawn(store.clone().run_index_builder()));
    // Only a lab instance anchors its log; a replica's actions are the server's to record.
    let anchor = tokio::spawn(anchor_audit_log(
        store.clone(),
        Some(tsa).filter(|_| !is_replica),
        settings.audit_anchor_hours,
    ));
    let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown_rx.await;
            })
            .await;
        tidy.abort();
        sweep.abort();
        anchor.abort();
        if let Some(indexer) = indexer {
            indexer.abort();
        }
        if let Some(projector) = projector {
            projector.abort();
        }
        served
    });
    Ok(Running {
        addr,
        setup_url,
        url,
        store,
        data_lock: None,
        shutdown,
        task,
    })
}
