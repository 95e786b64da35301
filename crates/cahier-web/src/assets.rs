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

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/static/app.css",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                        (header::CACHE_CONTROL, "public, max-age=3600"),
                    ],
                    APP_CSS,
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
                        (header::CACHE_CONTROL, "public, max-age=3600"),
                    ],
                    APP_JS,
                )
                    .into_response()
            }),
        )
}
