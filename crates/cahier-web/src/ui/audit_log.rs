//! The audit log for sysadmins (`/admin/audit`): entries newest first, filtered by action,
//! user, target and date range, fifty a page, with the state of the hash chain. Read-only;
//! entries are written by the store (`cahier_store::audit`). The same page holds the two
//! traceability settings: lock an entry when it is timestamped, or when it is signed.

use super::{PageCtx, UiError, UiResultExt, render, when};
use crate::AppState;
use crate::TsaSource;
use crate::auth::SignedIn;
use crate::error::AppError;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cahier_store::audit::{AuditFilter, action};
use cahier_store::proof_lock::LockTrigger;
use cahier_store::tsa_settings::StoredTsa;
use serde::Deserialize;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/audit", get(audit_page))
        .route("/admin/audit/locking", post(set_locking))
        .route("/admin/audit/tsa", post(set_tsa))
}

/// The timestamping authority form. The password is write-only: blank keeps the stored one,
/// `clear_password` removes it. A blank `roots_pem` keeps the stored bundle.
#[derive(Default, Deserialize)]
struct TsaForm {
    /// A preset's name, or empty for the custom `url`.
    preset: Option<String>,
    url: Option<String>,
    hash: Option<String>,
    user: Option<String>,
    password: Option<String>,
    clear_password: Option<String>,
    roots_pem: Option<String>,
    /// `save`, `test` or `remove`.
    action: Option<String>,
}

async fn set_tsa(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<TsaForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    super::admin::require_sysadmin(&session)?;
    if state.tsa.source == TsaSource::Fixed {
        return Err(UiError(
            AppError::Conflict(lang.t("tsa.fixed").into()),
            lang,
        ));
    }
    let store = &state.store;
    let invalid = |field: &str, message: String| UiError(AppError::invalid(field, message), lang);
    let action = form.action.as_deref().unwrap_or("save");
    if action == "remove" {
        store
            .set_tsa_settings(session.user.id, None)
            .await
            .ui(lang)?;
        apply_stored(&state).await.ui(lang)?;
        return Ok(Redirect::to("/admin/audit#tsa").into_response());
    }
    let existing = store.tsa_settings().await.ui(lang)?;
    let url = match non_empty(&form.preset) {
        Some(name) => cahier_trace::TSA_PRESETS
            .iter()
            .find(|(preset, _, _)| *preset == name)
            .map(|(_, url, _)| (*url).to_owned())
            .ok_or_else(|| invalid("preset", lang.t("tsa.bad_preset").into()))?,
        None => non_empty(&form.url).unwrap_or_default(),
    };
    if !(url.starts_with("http://") || url.starts_with("https://"))
        || url.contains(char::is_whitespace)
    {
        return Err(invalid("url", lang.t("tsa.bad_url").into()));
    }
    let hash = non_empty(&form.hash).unwrap_or_else(|| "sha256".into());
    if cahier_trace::HashAlg::parse(&hash).is_none() {
        return Err(invalid("hash", lang.t("tsa.bad_hash").into()));
    }
    let user = non_empty(&form.user);
    let password = if form.clear_password.is_some() {
        None
    } else {
        form.password
            .clone()
            .filter(|p| !p.is_empty())
            .or_else(|| existing.as_ref().and_then(|e| e.password.clone()))
    };
    let roots_pem = match non_empty(&form.roots_pem) {
        Some(pem) => {
            cahier_trace::pem_certificates(&pem).map_err(|why| {
                invalid("roots_pem", format!("{} ({why})", lang.t("tsa.bad_roots")))
            })?;
            pem
        }
        None => existing
            .as_ref()
            .map(|e| e.roots_pem.clone())
            .filter(|pem| !pem.is_empty())
            .ok_or_else(|| invalid("roots_pem", lang.t("tsa.roots_required").into()))?,
    };
    let stored = StoredTsa {
        url,
        hash,
        user,
        password,
        roots_pem,
    };
    let config = state
        .tsa
        .config_of(&stored)
        .map_err(|error| UiError(AppError::Internal(error), lang))?;
    if action == "test" {
        return match cahier_trace::probe_tsa(&config, rand::random()).await {
            Ok(_) => Ok(Redirect::to("/admin/audit?tsa_test=ok#tsa").into_response()),
            Err(error) => Err(UiError(
                AppError::BadGateway(format!("{} {error}", lang.t("tsa.test_failed"))),
                lang,
            )),
        };
    }
    store
        .set_tsa_settings(session.user.id, Some(&stored))
        .await
        .ui(lang)?;
    apply_stored(&state).await.ui(lang)?;
    Ok(Redirect::to("/admin/audit#tsa").into_response())
}

/// Puts what the store now holds in force (read back, so the last committed change wins).
async fn apply_stored(state: &AppState) -> Result<(), AppError> {
    let stored = state.store.tsa_settings().await?;
    state.tsa.apply(stored.as_ref()).map_err(AppError::Internal)
}

#[derive(Debug, Default, Deserialize)]
struct LockingForm {
    lock_on_timestamp: Option<String>,
    lock_on_signature: Option<String>,
}

async fn set_locking(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<LockingForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    super::admin::require_sysadmin(&session)?;
    for (trigger, on) in [
        (LockTrigger::Timestamp, form.lock_on_timestamp.is_some()),
        (LockTrigger::Signature, form.lock_on_signature.is_some()),
    ] {
        state
            .store
            .set_lock_on(session.user.id, trigger, on)
            .await
            .ui(lang)?;
    }
    Ok(Redirect::to("/admin/audit").into_response())
}

#[derive(Debug, Default, Deserialize)]
struct AuditQuery {
    action: Option<String>,
    user: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    before: Option<i64>,
    /// `ok` after a successful test of the authority.
    tsa_test: Option<String>,
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

struct EntryView {
    seq: i64,
    at: String,
    actor: String,
    device: String,
    ip: String,
    action: String,
    target: String,
    details: String,
    hash: String,
}

struct ActionChoice {
    value: &'static str,
    selected: bool,
}

#[derive(Template)]
#[template(path = "audit_log.html")]
struct AuditPage {
    p: PageCtx,
    entries: Vec<EntryView>,
    actions: Vec<ActionChoice>,
    user: String,
    target_type: String,
    target_id: String,
    from: String,
    to: String,
    /// Link to the next (older) page, with the filters kept.
    next: Option<String>,
    chain_ok: bool,
    chain_checked: i64,
    /// Entries up to this seq were verified on an earlier load (not re-read now).
    chain_since: Option<i64>,
    chain_problems: Vec<String>,
    head: String,
    error: Option<String>,
    lock_on_timestamp: bool,
    lock_on_signature: bool,
    /// The configured authority (never its password).
    tsa: Option<TsaView>,
    /// The environment or cahier.toml set it (the form is read-only).
    tsa_fixed: bool,
    /// What the form starts with (the stored settings), never the password.
    tsa_form: TsaFormView,
    /// The last test succeeded.
    tsa_test_ok: bool,
    /// Common authorities.
    tsa_presets: Vec<TsaView>,
}

/// An authority as the page shows it: `hash` and `roots` for the configured one, a note for
/// a preset.
struct TsaFormView {
    url: String,
    preset: String,
    sha512: bool,
    user: String,
    has_password: bool,
    has_roots: bool,
    stored: bool,
}

struct TsaView {
    name: String,
    url: String,
    hash: String,
    roots: String,
}

async fn audit_page(
    State(state): State<AppState>,
    session: SignedIn,
    Query(query): Query<AuditQuery>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    super::admin::require_sysadmin(&session)?;
    let store = &state.store;
    let mut error = None;
    let user = non_empty(&query.user);
    // A user is named by e-mail or id; an unknown one matches nothing (and says so).
    let actor_id = match &user {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => match store.user_by_email(text).await {
                Ok(found) => Some(found.id),
                Err(_) => {
                    error = Some(lang.t("audit.unknown_user").to_owned());
                    Some(-1)
                }
            },
        },
    };
    let date = |value: &Option<String>, error: &mut Option<String>| -> Option<i64> {
        let text = non_empty(value)?;
        let ms = cahier_core::clock::date_start_ms(&text);
        if ms.is_none() {
            *error = Some(lang.t("audit.bad_date").to_owned());
        }
        ms
    };
    let from_ms = date(&query.from, &mut error);
    // "to" is inclusive: up to the end of that day.
    let to_ms = date(&query.to, &mut error).map(|ms| ms + 86_400_000);
    let action_filter = non_empty(&query.action).filter(|a| action::ALL.contains(&a.as_str()));
    let filter = AuditFilter {
        action: action_filter.clone(),
        actor_id,
        target_type: non_empty(&query.target_type),
        target_id: non_empty(&query.target_id),
        from_ms,
        to_ms,
        before_seq: query.before,
    };
    let (rows, more) = store.audit_entries(&filter).await.ui(lang)?;
    let mut ids: Vec<i64> = rows.iter().filter_map(|e| e.actor_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let users = store.users_by_ids(&ids).await.ui(lang)?;
    let next = match (more, rows.last()) {
        (true, Some(last)) => {
            let mut params = url_params(&query);
            params.push(("before", last.seq.to_string()));
            Some(format!("/admin/audit?{}", encode(&params)))
        }
        _ => None,
    };
    let entries = rows
        .into_iter()
        .map(|e| EntryView {
            seq: e.seq,
            at: when(e.at),
            actor: e
                .actor_id
                .map(|id| {
                    users
                        .iter()
                        .find(|u| u.id == id)
                        .map(|u| format!("{} <{}>", u.fullname(), u.email))
                        .unwrap_or_else(|| format!("#{id}"))
                })
                .unwrap_or_default(),
            device: e.device.unwrap_or_default(),
            ip: e.ip.unwrap_or_default(),
            action: e.action,
            target: format!("{} {}", e.target_type, e.target_id),
            details: e.details,
            hash: e.hash.get(..16).unwrap_or_default().to_owned(),
        })
        .collect();
    let chain = store.verify_audit_chain_since_checkpoint().await.ui(lang)?;
    let tsa_fixed = state.tsa.source == TsaSource::Fixed;
    let stored_tsa = store.tsa_settings().await.ui(lang)?;
    let p = PageCtx::signed_in(&state, &session, lang.t("audit.title").to_owned())
        .await
        .ui(lang)?;
    Ok(render(&AuditPage {
        p,
        entries,
        actions: action::ALL
            .iter()
            .map(|a| ActionChoice {
                value: a,
                selected: action_filter.as_deref() == Some(*a),
            })
            .collect(),
        user: user.unwrap_or_default(),
        target_type: non_empty(&query.target_type).unwrap_or_default(),
        target_id: non_empty(&query.target_id).unwrap_or_default(),
        from: non_empty(&query.from).unwrap_or_default(),
        to: non_empty(&query.to).unwrap_or_default(),
        next,
        chain_ok: chain.is_ok(),
        chain_checked: chain.checked,
        chain_since: chain.from_checkpoint,
        chain_problems: chain
            .broken
            .iter()
            .map(|(seq, reason)| format!("{seq}: {reason}"))
            .collect(),
        head: chain
            .head
            .map(|(seq, hash)| format!("{seq} · {hash}"))
            .unwrap_or_default(),
        error,
        lock_on_timestamp: store.lock_on(LockTrigger::Timestamp).await.ui(lang)?,
        lock_on_signature: store.lock_on(LockTrigger::Signature).await.ui(lang)?,
        tsa: state.tsa().map(|tsa| TsaView {
            name: String::new(),
            url: tsa.url.clone(),
            hash: tsa.hash.name().to_owned(),
            roots: if tsa_fixed {
                tsa.ca_file.display().to_string()
            } else {
                lang.t("tsa.roots_stored").to_owned()
            },
        }),
        tsa_fixed,
        tsa_form: TsaFormView {
            preset: stored_tsa
                .as_ref()
                .and_then(|s| {
                    cahier_trace::TSA_PRESETS
                        .iter()
                        .find(|(_, url, _)| *url == s.url)
                        .map(|(name, _, _)| (*name).to_owned())
                })
                .unwrap_or_default(),
            url: stored_tsa
                .as_ref()
                .map(|s| s.url.clone())
                .unwrap_or_default(),
            sha512: stored_tsa.as_ref().is_some_and(|s| s.hash == "sha512"),
            user: stored_tsa
                .as_ref()
                .and_then(|s| s.user.clone())
                .unwrap_or_default(),
            has_password: stored_tsa.as_ref().is_some_and(|s| s.password.is_some()),
            has_roots: stored_tsa.as_ref().is_some_and(|s| !s.roots_pem.is_empty()),
            stored: stored_tsa.is_some(),
        },
        tsa_test_ok: query.tsa_test.as_deref() == Some("ok"),
        tsa_presets: cahier_trace::TSA_PRESETS
            .iter()
            .map(|(name, url, note)| TsaView {
                name: (*name).to_owned(),
                url: (*url).to_owned(),
                hash: String::new(),
                roots: (*note).to_owned(),
            })
            .collect(),
    }))
}

fn url_params(query: &AuditQuery) -> Vec<(&'static str, String)> {
    [
        ("action", &query.action),
        ("user", &query.user),
        ("target_type", &query.target_type),
        ("target_id", &query.target_id),
        ("from", &query.from),
        ("to", &query.to),
    ]
    .into_iter()
    .filter_map(|(key, value)| non_empty(value).map(|v| (key, v)))
    .collect()
}

/// `application/x-www-form-urlencoded`, by hand: letters, digits and `-._~` as themselves.
fn encode(params: &[(&str, String)]) -> String {
    params
        .iter()
        .map(|(key, value)| {
            let mut out = format!("{key}=");
            for byte in value.bytes() {
                if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                    out.push(char::from(byte));
                } else {
                    out.push_str(&format!("%{byte:02X}"));
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join("&")
}
