//! Records administrators' actions (users, teams, memberships) in the audit log, from the UI
//! and API handlers that perform them. The store methods behind these actions take no actor,
//! so the entry is written right after the action succeeds, in its own transaction; a failure
//! to record is logged loudly. Entity, sign-in, device and sync actions are recorded by the
//! store itself, inside the action's transaction.

use cahier_store::Store;
use cahier_store::audit::{AuditEvent, action};
use serde_json::Value;

/// Records that `actor` did `what` (e.g. `user.create`) to `target_type` `target_id`.
pub(crate) async fn admin_action(
    store: &Store,
    actor: i64,
    what: &str,
    target_type: &'static str,
    target_id: impl ToString,
    mut details: Value,
) {
    if let Value::Object(map) = &mut details {
        map.insert("what".into(), Value::String(what.to_owned()));
    } else {
        details = serde_json::json!({"what": what});
    }
    let event =
        AuditEvent::new(Some(actor), action::ADMIN, target_type, target_id).details(details);
    if let Err(error) = store.audit(event).await {
        tracing::error!(%error, what, "could not record an admin action in the audit log");
    }
}

/// Records that `actor` exported `target_type` `target_id` (entries as `.eln`, a list as CSV,
/// a background export job), once the export is made.
pub(crate) async fn exported(
    store: &Store,
    actor: i64,
    target_type: &'static str,
    target_id: impl ToString,
    details: Value,
) {
    let event =
        AuditEvent::new(Some(actor), action::EXPORT, target_type, target_id).details(details);
    if let Err(error) = store.audit(event).await {
        tracing::error!(%error, "could not record an export in the audit log");
    }
}
