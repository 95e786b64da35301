//! The audit log for sysadmins (`/admin/audit`): entries newest first, filtered by action,
//! user, target and date range, fifty a page, with the state of the hash chain. Read-only;
//! entries are written by the store (`cahier_store::audit`). The same page holds the two
//! traceability settings: lock an entry when it is timestamped, or when it is signed.

use super::{PageCtx, UiError, UiResultExt, render, when};
use crate::AppState;
use crate::auth::SignedIn;
use crate::error::AppError;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cahier_store::audit::{AuditFilter, action};
use cahier_store::proof_lock::LockTrigger;
use serde::Deserialize;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/audit", get(audit_page))
        .route("/admin/audit/locking", post(set_locking))
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
    if !session.user.is_sysadmin {
        return Err(UiError(
            AppError::Forbidden(lang.t("admin.not_sysadmin").into()),
            lang,
        ));
    }
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
    /// Common authorities.
    tsa_presets: Vec<TsaView>,
}

/// An authority as the page shows it: `hash` and `roots` for the configured one, a note for
/// a preset.
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
    if !session.user.is_sysadmin {
        return Err(UiError(
            AppError::Forbidden(lang.t("admin.not_sysadmin").into()),
            lang,
        ));
    }
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
        tsa: state.tsa.as_ref().map(|tsa| TsaView {
            name: String::new(),
            url: tsa.url.clone(),
            hash: tsa.hash.name().to_owned(),
            roots: tsa.ca_file.display().to_string(),
        }),
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
