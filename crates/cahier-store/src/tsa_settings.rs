//! The timestamping authority a sysadmin sets on the admin page, kept in `instance_settings`
//! (key `tsa`, JSON). The environment and the config file override it (the caller decides);
//! every change is recorded in the audit log (`tsa.configure`) in the same transaction, with
//! the URL and hash but never the password.

use crate::audit::{self, AuditEvent};
use crate::{Result, Store};
use serde::{Deserialize, Serialize};
use sha2::Digest;

const KEY: &str = "tsa";

/// The stored authority.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTsa {
    /// Where to POST queries (http:// or https://).
    pub url: String,
    /// `sha256` or `sha512`.
    pub hash: String,
    /// Basic-auth user.
    pub user: Option<String>,
    /// Basic-auth password (never shown, logged nor audited).
    pub password: Option<String>,
    /// PEM bundle of the trusted roots.
    pub roots_pem: String,
}

impl std::fmt::Debug for StoredTsa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTsa")
            .field("url", &self.url)
            .field("hash", &self.hash)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The authority set on the admin page, if any.
    pub async fn tsa_settings(&self) -> Result<Option<StoredTsa>> {
        let value: Option<String> =
            sqlx::query_scalar("SELECT value FROM instance_settings WHERE key = ?")
                .bind(KEY)
                .fetch_optional(&self.pool)
                .await?;
        // An unreadable value counts as none (the page then offers to set it again).
        Ok(value.and_then(|v| serde_json::from_str(&v).ok()))
    }

    /// Stores (or, with `None`, removes) the authority, recorded in the audit log as `actor`'s
    /// `tsa.configure` in the same transaction. The caller checks the values and that `actor`
    /// is a sysadmin.
    pub async fn set_tsa_settings(&self, actor: i64, tsa: Option<&StoredTsa>) -> Result<()> {
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let details = match tsa {
            Some(tsa) => {
                let value =
                    serde_json::to_string(tsa).map_err(|error| crate::StoreError::Invalid {
                        field: "tsa".into(),
                        message: error.to_string(),
                    })?;
                sqlx::query(
                    "INSERT INTO instance_settings (key, value) VALUES (?, ?) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(KEY)
                .bind(value)
                .execute(&mut *tx)
                .await?;
                serde_json::json!({
                    "url": tsa.url,
                    "hash": tsa.hash,
                    "user": tsa.user,
                    "password": tsa.password.is_some(),
                    "roots_sha256": hex::encode(sha2::Sha256::digest(tsa.roots_pem.as_bytes())),
                })
            }
            None => {
                sqlx::query("DELETE FROM instance_settings WHERE key = ?")
                    .bind(KEY)
                    .execute(&mut *tx)
                    .await?;
                serde_json::json!({"removed": true})
            }
        };
        audit::append(
            &mut tx,
            now,
            &AuditEvent::new(Some(actor), audit::action::TSA_CONFIGURE, "instance", KEY)
                .details(details),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
