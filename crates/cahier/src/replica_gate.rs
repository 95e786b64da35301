//! The lock in front of a field replica's web server. The replica's database is encrypted; the
//! server starts locked (unless the passphrase is in `CAHIER_REPLICA_PASSPHRASE`), shows an
//! unlock page, and after `lock_after` without a request it closes the database, stops syncing
//! and locks again. While locked, pages redirect to `/unlock` and the API answers 423.

use crate::replica::{SyncTask, open_with, replica_parts};
use axum::Router;
use axum::extract::{Form, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use cahier_store::Store;
use cahier_web::i18n::Lang;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::RwLock;
use tower::ServiceExt;

struct Unlocked {
    router: Router,
    store: Store,
    sync: SyncTask,
}

/// The replica's lock and, when unlocked, its application.
pub struct Gate {
    data: PathBuf,
    /// Where the replica is served (`http://127.0.0.1:8181`), for the links it shows.
    url: String,
    lock_after: Duration,
    started: Instant,
    last_request_ms: AtomicI64,
    inner: RwLock<Option<Unlocked>>,
}

impl Gate {
    fn touch(&self) {
        let ms = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.last_request_ms.store(ms, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let now = self.started.elapsed().as_millis();
        let last = u128::try_from(self.last_request_ms.load(Ordering::Relaxed)).unwrap_or(0);
        Duration::from_millis(u64::try_from(now.saturating_sub(last)).unwrap_or(u64::MAX))
    }

    /// Opens the database with `passphrase` and starts the application and its sync.
    pub async fn unlock(&self, passphrase: &str) -> anyhow::Result<()> {
        let mut inner = self.inner.write().await;
        if inner.is_some() {
            return Ok(());
        }
        let store = open_with(&self.data, passphrase).await?;
        let (state, sync) = replica_parts(&self.data, store.clone(), &self.url).await?;
        *inner = Some(Unlocked {
            router: cahier_web::router(state),
            store,
            sync,
        });
        self.touch();
        tracing::info!("field copy unlocked");
        Ok(())
    }

    /// Closes the database and stops syncing.
    pub async fn lock(&self) {
        if let Some(unlocked) = self.inner.write().await.take() {
            unlocked.sync.stop();
            unlocked.store.close().await;
            tracing::info!("field copy locked");
        }
    }
}

async fn dispatch(State(gate): State<Arc<Gate>>, request: Request) -> Response {
    // A calendar application fetches its feed every few minutes on its own: that is not the
    // user at the laptop, so it neither keeps the copy unlocked nor is sent to the unlock page.
    let is_feed = request.uri().path().starts_with("/ical/");
    if !is_feed {
        gate.touch();
    }
    let router = gate.inner.read().await.as_ref().map(|u| u.router.clone());
    match router {
        Some(router) => match router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        None if is_feed => (
            StatusCode::LOCKED,
            "this field copy is locked: its calendar feeds answer again once it is unlocked in the browser at /unlock",
        )
            .into_response(),
        None if request.uri().path().starts_with("/api/") => (
            StatusCode::LOCKED,
            axum::Json(serde_json::json!({
                "code": 423,
                "message": "Locked",
                "description": "this field copy is locked; unlock it in the browser at /unlock",
            })),
        )
            .into_response(),
        None => Redirect::to("/unlock").into_response(),
    }
}

async fn unlock_page(State(gate): State<Arc<Gate>>, headers: HeaderMap) -> Response {
    if gate.inner.read().await.is_some() {
        return Redirect::to("/").into_response();
    }
    cahier_web::ui::unlock_page(Lang::from_headers(&headers, None), false)
}

#[derive(serde::Deserialize)]
struct UnlockForm {
    passphrase: String,
}

/// Only forms from this very page: a foreign page must not even try passphrases here.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        host,
    ) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin.split("://").nth(1) == Some(host),
        (Some(_), None) => false,
    }
}

async fn unlock_submit(
    State(gate): State<Arc<Gate>>,
    headers: HeaderMap,
    Form(form): Form<UnlockForm>,
) -> Response {
    let lang = Lang::from_headers(&headers, None);
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-site request refused").into_response();
    }
    match gate.unlock(&form.passphrase).await {
        Ok(()) => Redirect::to("/").into_response(),
        Err(error) => {
            tracing::info!(error = %error, "unlock refused");
            cahier_web::ui::unlock_page(lang, true)
        }
    }
}

/// A running replica server.
pub struct GateRunning {
    /// Base URL.
    pub url: String,
    gate: Arc<Gate>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl GateRunning {
    /// Serves until Ctrl-C or SIGTERM, then locks (closing the database).
    pub async fn wait(self) -> anyhow::Result<()> {
        tokio::select! {
            result = self.task => { result??; }
            () = crate::shutdown_signal() => {}
        }
        self.gate.lock().await;
        Ok(())
    }
}

/// Starts the replica's server on `listen`, locked unless `passphrase` is given.
pub async fn serve(
    data: PathBuf,
    listen: &str,
    lock_after: Duration,
    passphrase: Option<String>,
) -> anyhow::Result<GateRunning> {
    anyhow::ensure!(
        data.join("cahier.db").exists(),
        "{} is not a replica (run cahier replica init first)",
        data.display()
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {listen}: {e}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let gate = Arc::new(Gate {
        data,
        url: url.clone(),
        lock_after,
        started: Instant::now(),
        last_request_ms: AtomicI64::new(0),
        inner: RwLock::new(None),
    });
    if let Some(passphrase) = passphrase {
        gate.unlock(&passphrase).await?;
    }
    let app = Router::new()
        .route("/unlock", get(unlock_page).post(unlock_submit))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(dispatch)
        .with_state(gate.clone());
    let watcher = gate.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500).min(watcher.lock_after)).await;
            if watcher.idle() >= watcher.lock_after && watcher.inner.read().await.is_some() {
                watcher.lock().await;
            }
        }
    });
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(GateRunning { url, gate, task })
}
