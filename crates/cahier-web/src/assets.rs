//! Static assets (our stylesheet and script), compiled into the binary so a single file runs
//! Cahier. Served with a long cache lifetime; the URL changes with the content hash.

use crate::AppState;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// The stylesheet.
pub const APP_CSS: &str = include_str!("../static/app.css");
/// The script: autosave, preview, shortcuts, small enhancements. No framework, no build step.
pub const APP_JS: &str = include_str!("../static/app.js");
/// The booking calendar's script (drag on the week grid), loaded by calendar pages only.
pub const CALENDAR_JS: &str = include_str!("../static/calendar.js");

/// A short fingerprint of the assets, added to their URLs so a new release is never hidden
/// behind a cached old script or stylesheet.
pub fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        // FNV-1a: stable across builds and platforms, enough to tell versions apart.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in APP_CSS
            .bytes()
            .chain(APP_JS.bytes())
            .chain(CALENDAR_JS.bytes())
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{:x}", hash & 0xffff_ffff)
    })
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/static/app.css",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                        (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                    ],
                    APP_CSS,
                )
                    .into_response()
            }),
        )
        .route(
            "/static/calendar.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                    ],
                    CALENDAR_JS,
                )
                    .into_response()
            }),
        )
        .route(
            "/static/app.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                    ],
                    APP_JS,
                )
                    .into_response()
            }),
        )
}
