//! Cahier's HTTP face: the web UI (server-rendered askama pages with a little plain JavaScript)
//! and the eLabFTW-compatible REST API v2. Handlers are thin: they authenticate, call one store
//! method (which applies the access policy), and render HTML or JSON.

pub mod api;
pub mod assets;
mod audit_trail;
pub mod auth;
pub mod error;
pub mod i18n;
mod offline_files;
pub mod sync_api;
pub mod ui;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use cahier_store::Store;
use std::sync::Arc;

/// Settings the web layer needs.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The URL users reach this instance at (used for links and for the cookies' Secure flag).
    pub public_url: String,
    /// Largest accepted request body for forms and JSON, bytes.
    pub max_body_bytes: usize,
    /// Software version reported by `/api/v2/info`.
    pub version: String,
}

impl WebConfig {
    /// Whether cookies must be marked Secure (the public URL is https).
    pub fn is_https(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

/// Shared state of every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Storage, with the access policy.
    pub store: Store,
    /// Web settings.
    pub config: Arc<WebConfig>,
    /// Set when this process serves a field replica.
    pub replica: Option<Arc<ReplicaHandle>>,
    /// The timestamping authority: read per request, swapped when a sysadmin changes it.
    pub tsa: Arc<TsaSlot>,
}

impl AppState {
    /// The timestamping authority now in force, if any.
    pub fn tsa(&self) -> Option<Arc<cahier_trace::TsaConfig>> {
        self.tsa.current()
    }
}

/// Where the timestamping authority comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsaSource {
    /// The environment or `cahier.toml`: it overrides the stored settings, and the admin page
    /// shows it read-only.
    Fixed,
    /// The settings a sysadmin stored on the admin page (or none).
    Stored,
}

/// The authority in force, swappable without a restart.
#[derive(Debug)]
pub struct TsaSlot {
    current: std::sync::RwLock<Option<Arc<cahier_trace::TsaConfig>>>,
    /// Whether the environment or the config file set it.
    pub source: TsaSource,
    /// Where stored root bundles are written (`<data>/tsa`), one file per content.
    pub roots_dir: std::path::PathBuf,
}

impl TsaSlot {
    /// A slot holding `fixed` (from the environment or config file) when it is set; otherwise
    /// empty until [`TsaSlot::apply`] loads the stored settings.
    pub fn new(fixed: Option<cahier_trace::TsaConfig>, roots_dir: std::path::PathBuf) -> Self {
        Self {
            source: if fixed.is_some() {
                TsaSource::Fixed
            } else {
                TsaSource::Stored
            },
            current: std::sync::RwLock::new(fixed.map(Arc::new)),
            roots_dir,
        }
    }

    /// The authority in force.
    pub fn current(&self) -> Option<Arc<cahier_trace::TsaConfig>> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Builds the client configuration of stored settings: writes the root bundle to
    /// `roots_dir` (named by its hash, so a verification in flight keeps its file).
    pub fn config_of(
        &self,
        stored: &cahier_store::tsa_settings::StoredTsa,
    ) -> Result<cahier_trace::TsaConfig, String> {
        let hash = cahier_trace::HashAlg::parse(&stored.hash)
            .ok_or_else(|| format!("hash must be sha256 or sha512 (got {})", stored.hash))?;
        std::fs::create_dir_all(&self.roots_dir)
            .map_err(|error| format!("creating {}: {error}", self.roots_dir.display()))?;
        let digest = cahier_trace::HashAlg::Sha256.digest(stored.roots_pem.as_bytes());
        let ca_file = self.roots_dir.join(format!(
            "roots-{}.pem",
            hex::encode(digest.get(..16).unwrap_or_default())
        ));
        if !ca_file.exists() {
            std::fs::write(&ca_file, stored.roots_pem.as_bytes())
                .map_err(|error| format!("writing {}: {error}", ca_file.display()))?;
        }
        Ok(cahier_trace::TsaConfig {
            url: stored.url.clone(),
            user: stored.user.clone(),
            password: stored.password.clone().map(cahier_trace::Secret),
            ca_file,
            hash,
            timeout: std::time::Duration::from_secs(30),
        })
    }

    /// Puts the stored settings (or none) in force, unless the environment or the config
    /// file set the authority (then nothing changes).
    pub fn apply(
        &self,
        stored: Option<&cahier_store::tsa_settings::StoredTsa>,
    ) -> Result<(), String> {
        if self.source == TsaSource::Fixed {
            return Ok(());
        }
        let config = stored.map(|s| self.config_of(s)).transpose()?;
        match self.current.write() {
            Ok(mut guard) => *guard = config.map(Arc::new),
            Err(poisoned) => *poisoned.into_inner() = config.map(Arc::new),
        }
        Ok(())
    }
}

/// What the web layer knows of the field replica it serves.
#[derive(Debug)]
pub struct ReplicaHandle {
    /// The replica's user (every visitor is signed in as them).
    pub user_id: i64,
    /// Where sync stands, updated by the background sync task.
    pub status: std::sync::Mutex<ReplicaStatus>,
    /// Wakes the background sync (after a local change, or on "sync now").
    pub sync_now: tokio::sync::Notify,
    /// Fetches a file the replica does not hold from the lab server, when the user opens it;
    /// `None` when there is no server to ask.
    pub fetcher: Option<Arc<dyn FetchFile>>,
}

/// Brings one attachment file from the lab server into a replica's file store, verified
/// against its hash and stored encrypted like the others (implemented by the binary over the
/// sync transport).
pub trait FetchFile: Send + Sync + std::fmt::Debug {
    /// Fetches the file named `sha256`: `Ok(true)` once it is here, `Ok(false)` when the
    /// server has no such file for this device, `Err` (a message) when the server cannot be
    /// reached.
    fn fetch<'a>(
        &'a self,
        sha256: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>>;
}

/// Where sync stands, for the banner every replica page shows.
#[derive(Debug, Clone, Default)]
pub struct ReplicaStatus {
    /// Whether the last attempt reached the server.
    pub online: bool,
    /// Last successful sync, ms.
    pub last_sync_ms: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// The whole application: UI, API, health check, static assets.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    Router::new()
        .merge(ui::routes())
        .nest("/api/v2", api::routes(&state.config.version))
        .nest("/api/sync/v1", sync_api::routes())
        .route("/healthz", axum::routing::get(healthz))
        .merge(assets::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::csrf_guard,
        ))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn healthz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if state.store.is_healthy().await {
        (axum::http::StatusCode::OK, "ok").into_response()
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "database unavailable",
        )
            .into_response()
    }
}

/// Headers that keep pages from being framed, sniffed or made to run foreign scripts.
async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // A handler may set a stricter policy (attachments are served in a sandbox).
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; \
             object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
        ));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
