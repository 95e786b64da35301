//! Signatures in the interface: the user's signing key (`/settings/signing-key`), an entry's
//! signatures with their check and downloads (`/{section}/{id}/signatures`), and signing a
//! version. Making keys, signing and checking are `cahier_trace::signature`'s; access is the
//! store's (reading an entry is enough to see and sign it).

use super::entities::entity_id;
use super::{PageCtx, UiError, UiResultExt, render, when};
use crate::AppState;
use crate::auth::SignedIn;
use crate::error::AppError;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cahier_core::signature::Meaning;
use serde::Deserialize;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/settings/signing-key",
            get(signing_key_page).post(create_signing_key),
        )
        .route("/{section}/{id}/signatures", get(signatures_page))
        .route("/{section}/{id}/sign", post(sign_entity))
        .route(
            "/{section}/{id}/signatures/{signature}/{file}",
            get(download),
        )
}

#[derive(Template)]
#[template(path = "signing_key.html")]
struct SigningKeyPage {
    p: PageCtx,
    key_id: Option<String>,
    public_key: String,
    created: String,
    error: Option<String>,
}

async fn render_key_page(
    state: &AppState,
    session: &SignedIn,
    error: Option<String>,
    notice: Option<&str>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let key = state.store.signing_key(session.user.id).await.ui(lang)?;
    let mut p = PageCtx::signed_in(state, session, lang.t("signkey.title").to_owned())
        .await
        .ui(lang)?;
    p.notice = notice.map(|key| lang.t(key).to_owned());
    Ok(render(&SigningKeyPage {
        p,
        key_id: key.as_ref().map(|k| k.key_id.clone()),
        public_key: key
            .as_ref()
            .map(|k| k.public_key.clone())
            .unwrap_or_default(),
        created: key.as_ref().map(|k| when(k.created_at)).unwrap_or_default(),
        error,
    }))
}

async fn signing_key_page(
    State(state): State<AppState>,
    session: SignedIn,
) -> Result<Response, UiError> {
    render_key_page(&state, &session, None, None).await
}

#[derive(Deserialize)]
struct KeyForm {
    passphrase: String,
    passphrase_again: String,
}

async fn create_signing_key(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<KeyForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    if form.passphrase != form.passphrase_again {
        let error = lang.t("signkey.mismatch").to_owned();
        return render_key_page(&state, &session, Some(error), None).await;
    }
    match cahier_trace::signature::create_signing_key(
        &state.store,
        session.user.id,
        &form.passphrase,
    )
    .await
    {
        Ok(_) => render_key_page(&state, &session, None, Some("signkey.created")).await,
        Err(error) => match AppError::from(error) {
            AppError::Invalid { field, .. } if field == "passphrase" => {
                let error = lang.t("signkey.too_short").to_owned();
                render_key_page(&state, &session, Some(error), None).await
            }
            other => Err(UiError(other, lang)),
        },
    }
}

struct SignatureView {
    id: i64,
    meaning: &'static str,
    signer: String,
    at: String,
    key_id: String,
    heads: String,
    valid: bool,
    problem: String,
}

struct MeaningChoice {
    code: i64,
    label: &'static str,
}

#[derive(Template)]
#[template(path = "signatures.html")]
struct SignaturesPage {
    p: PageCtx,
    section: String,
    id: i64,
    title: String,
    signatures: Vec<SignatureView>,
    meanings: Vec<MeaningChoice>,
    has_key: bool,
    error: Option<String>,
}

fn meaning_key(code: i64) -> &'static str {
    match Meaning::from_code(code) {
        Some(Meaning::Approval) => "meaning.approval",
        Some(Meaning::Disapproval) => "meaning.disapproval",
        Some(Meaning::Authorship) => "meaning.authorship",
        Some(Meaning::Responsibility) => "meaning.responsibility",
        Some(Meaning::Review) => "meaning.review",
        Some(Meaning::Safety) => "meaning.safety",
        Some(Meaning::Witness) => "meaning.witness",
        None => "meaning.unknown",
    }
}

async fn render_signatures(
    state: &AppState,
    session: &SignedIn,
    section: &str,
    id: &str,
    error: Option<String>,
    notice: Option<&str>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let row = entity_id(state, session, section, id).await.ui(lang)?;
    let rows = state
        .store
        .signatures(&session.subject, row.id)
        .await
        .ui(lang)?;
    let mut user_ids: Vec<i64> = rows.iter().map(|s| s.user_id).collect();
    user_ids.sort_unstable();
    user_ids.dedup();
    let users = state.store.users_by_ids(&user_ids).await.ui(lang)?;
    let signatures = rows
        .iter()
        .map(|s| {
            let check = cahier_trace::signature::check_signature(s);
            SignatureView {
                id: s.id,
                meaning: lang.t(meaning_key(s.meaning)),
                signer: users
                    .iter()
                    .find(|u| u.id == s.user_id)
                    .map(|u| u.fullname())
                    .unwrap_or_default(),
                at: when(s.created_at),
                key_id: s.key_id.clone(),
                heads: s.heads.clone(),
                valid: check.is_ok(),
                problem: check.err().unwrap_or_default(),
            }
        })
        .collect();
    let has_key = state
        .store
        .signing_key(session.user.id)
        .await
        .ui(lang)?
        .is_some();
    let mut p = PageCtx::signed_in(state, session, lang.t("signature.title").to_owned())
        .await
        .ui(lang)?;
    p.notice = notice.map(|key| lang.t(key).to_owned());
    Ok(render(&SignaturesPage {
        p,
        section: section.to_owned(),
        id: row.id,
        title: row.title.clone(),
        signatures,
        meanings: Meaning::ALL
            .into_iter()
            .map(|m| MeaningChoice {
                code: m.code(),
                label: lang.t(meaning_key(m.code())),
            })
            .collect(),
        has_key,
        error,
    }))
}

async fn signatures_page(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
) -> Result<Response, UiError> {
    render_signatures(&state, &session, &section, &id, None, None).await
}

#[derive(Deserialize)]
struct SignForm {
    meaning: String,
    passphrase: String,
}

async fn sign_entity(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
    Form(form): Form<SignForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let row = entity_id(&state, &session, &section, &id).await.ui(lang)?;
    let Some(meaning) = Meaning::parse(&form.meaning) else {
        let error = lang.t("signature.choose_meaning").to_owned();
        return render_signatures(&state, &session, &section, &id, Some(error), None).await;
    };
    let signed = cahier_trace::signature::sign_entity(
        &state.store,
        &session.subject,
        row.id,
        &form.passphrase,
        meaning,
    )
    .await;
    match signed.map_err(AppError::from) {
        Ok(_) => Ok(Redirect::to(&format!("/{section}/{}/signatures", row.id)).into_response()),
        Err(AppError::Invalid { field, .. }) if field == "passphrase" => {
            let error = lang.t("signature.wrong_passphrase").to_owned();
            render_signatures(&state, &session, &section, &id, Some(error), None).await
        }
        Err(AppError::Conflict(_)) => {
            let error = lang.t("signature.no_key").to_owned();
            render_signatures(&state, &session, &section, &id, Some(error), None).await
        }
        Err(other) => Err(UiError(other, lang)),
    }
}

async fn download(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id, signature, file)): Path<(String, String, i64, String)>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let row = entity_id(&state, &session, &section, &id).await.ui(lang)?;
    let stored = state
        .store
        .signature(&session.subject, row.id, signature)
        .await
        .ui(lang)?;
    let (bytes, media_type) = match file.as_str() {
        "export.json" => (stored.export, "application/json"),
        "export.json.minisig" => (stored.signature.into_bytes(), "text/plain; charset=utf-8"),
        "key.pub" => (stored.public_key.into_bytes(), "text/plain; charset=utf-8"),
        _ => return Err(UiError(AppError::NotFound("file".into()), lang)),
    };
    Ok((
        [
            (header::CONTENT_TYPE, media_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}
