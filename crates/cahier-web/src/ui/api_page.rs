//! The API page: what scripts can do, from the same OpenAPI document the API serves, with how
//! to get a key and a first request to copy.

use super::{PageCtx, UiResultExt, render};
use crate::AppState;
use crate::auth::SignedIn;
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/api-docs", get(api_page))
}

struct Operation {
    method: String,
    path: String,
    summary: String,
}

struct Section {
    name: String,
    operations: Vec<Operation>,
}

#[derive(Template)]
#[template(path = "api.html")]
struct ApiPage {
    p: PageCtx,
    base_url: String,
    sections: Vec<Section>,
}

async fn api_page(
    State(state): State<AppState>,
    session: SignedIn,
) -> Result<Response, super::UiError> {
    let lang = session.lang;
    let p = PageCtx::signed_in(&state, &session, lang.t("api.title").to_owned())
        .await
        .ui(lang)?;
    let document = crate::api::openapi::document(&state.config.version);
    let mut sections: Vec<Section> = Vec::new();
    if let Some(paths) = document["paths"].as_object() {
        for (path, methods) in paths {
            let Some(methods) = methods.as_object() else {
                continue;
            };
            for (method, op) in methods {
                let tag = op["tags"][0].as_str().unwrap_or("api").to_owned();
                let operation = Operation {
                    method: method.to_uppercase(),
                    path: path.clone(),
                    summary: op["summary"].as_str().unwrap_or_default().to_owned(),
                };
                match sections.iter_mut().find(|s| s.name == tag) {
                    Some(section) => section.operations.push(operation),
                    None => sections.push(Section {
                        name: tag,
                        operations: vec![operation],
                    }),
                }
            }
        }
    }
    let base_url = format!("{}/api/v2", state.config.public_url.trim_end_matches('/'));
    Ok(render(&ApiPage {
        p,
        base_url,
        sections,
    }))
}
