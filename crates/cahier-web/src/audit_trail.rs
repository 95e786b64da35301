//! Records exports in the audit log, from the handlers that make them (an export writes nothing
//! to the database, so its entry has a transaction of its own; a failure to record is logged
//! loudly). Every other action — administrators' changes to users, teams and groups (the
//! store's `*_by` methods take the acting user), entity, sign-in, key, device and sync
//! actions — is recorded by the store itself, inside the action's transaction.

use cahier_store::Store;
use cahier_store::audit::{AuditEvent, action};
use serde_json::Value;

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
