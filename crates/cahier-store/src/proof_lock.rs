//! "Lock on timestamp" and "lock on signature": instance settings a sysadmin toggles. When one
//! is on, recording that proof also locks the entity, in the proof's own transaction, so a
//! proven version cannot change afterwards without someone unlocking it (which the audit log
//! records). The lock is the signer's or stamper's, as if they had pressed Lock.

use crate::audit::{self, AuditEvent};
use crate::{Result, Store};
use sqlx::SqliteConnection;

/// Which proof locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockTrigger {
    /// A trusted timestamp.
    Timestamp,
    /// A signature.
    Signature,
}

impl LockTrigger {
    fn key(self) -> &'static str {
        match self {
            LockTrigger::Timestamp => "lock_on_timestamp",
            LockTrigger::Signature => "lock_on_signature",
        }
    }

    fn name(self) -> &'static str {
        match self {
            LockTrigger::Timestamp => "timestamp",
            LockTrigger::Signature => "signature",
        }
    }
}

async fn is_on(conn: &mut SqliteConnection, trigger: LockTrigger) -> Result<bool> {
    let value: Option<String> =
        sqlx::query_scalar("SELECT value FROM instance_settings WHERE key = ?")
            .bind(trigger.key())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(value.as_deref() == Some("1"))
}

/// Locks `entity_id` for `user_id` when `trigger` locks and the entity is not locked yet;
/// called inside the transaction that records the proof. Returns whether it locked.
pub(crate) async fn lock_after_proof(
    conn: &mut SqliteConnection,
    now: i64,
    entity_id: i64,
    user_id: i64,
    trigger: LockTrigger,
) -> Result<bool> {
    if !is_on(conn, trigger).await? {
        return Ok(false);
    }
    let locked = sqlx::query(
        "UPDATE entities SET locked_by = ?, locked_at = ? WHERE id = ? AND locked_by IS NULL",
    )
    .bind(user_id)
    .bind(now)
    .bind(entity_id)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if locked {
        audit::append(
            conn,
            now,
            &AuditEvent::new(Some(user_id), audit::action::LOCK, "entity", entity_id)
                .details(serde_json::json!({"after": trigger.name()})),
        )
        .await?;
    }
    Ok(locked)
}

impl Store {
    /// Whether recording this proof also locks the entity.
    pub async fn lock_on(&self, trigger: LockTrigger) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        is_on(&mut conn, trigger).await
    }

    /// Turns locking on this proof on or off (sysadmins: the caller checks), recorded in the
    /// audit log as `actor`'s admin action.
    pub async fn set_lock_on(&self, actor: i64, trigger: LockTrigger, on: bool) -> Result<()> {
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if is_on(&mut tx, trigger).await? == on {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO instance_settings (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(trigger.key())
        .bind(if on { "1" } else { "0" })
        .execute(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            now,
            &AuditEvent::new(Some(actor), audit::action::ADMIN, "instance", trigger.key())
                .details(serde_json::json!({"what": "settings.lock_on", "on": on})),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
