//! Signing keys and signatures of entity versions: the records only. Making keys, signing and
//! checking are `cahier-trace`'s job; this module stores what it produced, asks the access
//! policy (a signer must be able to read the entity) and records each step in the audit log.

use crate::audit::{self, AuditEvent};
use crate::timestamps::VersionExport;
use crate::{Result, Store, StoreError};
use cahier_core::Subject;

/// A user's signing key, as minisign writes it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SigningKey {
    /// The owner.
    pub user_id: i64,
    /// minisign key id (upper-case hex).
    pub key_id: String,
    /// The public key file.
    pub public_key: String,
    /// The secret key file, encrypted with the owner's passphrase.
    pub secret_key: String,
    /// Made, ms.
    pub created_at: i64,
}

/// A signature to store.
#[derive(Debug, Clone)]
pub struct NewSignature {
    /// The signed version.
    pub heads: String,
    /// eLabFTW's meaning code.
    pub meaning: i64,
    /// The key that signed.
    pub key_id: String,
    /// Its public key file.
    pub public_key: String,
    /// The signed bytes.
    pub export: Vec<u8>,
    /// The `.minisig` file.
    pub signature: String,
}

/// A stored signature.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SignatureRow {
    /// Id.
    pub id: i64,
    /// The entity.
    pub entity_id: i64,
    /// The signed version.
    pub heads: String,
    /// Meaning code.
    pub meaning: i64,
    /// The signer.
    pub user_id: i64,
    /// The key that signed.
    pub key_id: String,
    /// Its public key file.
    pub public_key: String,
    /// The signed bytes.
    pub export: Vec<u8>,
    /// The `.minisig` file.
    pub signature: String,
    /// When, ms (server time).
    pub created_at: i64,
}

const SELECT: &str = "SELECT id, entity_id, heads, meaning, user_id, key_id, public_key, export, \
     signature, created_at FROM entity_signatures";

impl Store {
    /// The user's signing key, if they made one.
    pub async fn signing_key(&self, user_id: i64) -> Result<Option<SigningKey>> {
        Ok(sqlx::query_as::<_, SigningKey>(
            "SELECT user_id, key_id, public_key, secret_key, created_at FROM signing_keys \
             WHERE user_id = ?",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Stores (or replaces) the user's signing key. Earlier signatures keep the public key
    /// they were made with.
    pub async fn set_signing_key(
        &self,
        user_id: i64,
        key_id: &str,
        public_key: &str,
        secret_key: &str,
    ) -> Result<()> {
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO signing_keys (user_id, key_id, public_key, secret_key, created_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET key_id = excluded.key_id, \
             public_key = excluded.public_key, secret_key = excluded.secret_key, \
             created_at = excluded.created_at",
        )
        .bind(user_id)
        .bind(key_id)
        .bind(public_key)
        .bind(secret_key)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            now,
            &AuditEvent::new(Some(user_id), audit::action::SIGN_KEY, "user", user_id)
                .details(serde_json::json!({"key_id": key_id})),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The canonical export of the current version of an entity the subject may read (reading
    /// is enough to sign, as in eLabFTW: a reviewer need not be a writer).
    pub async fn signing_export(&self, subject: &Subject, id: i64) -> Result<VersionExport> {
        let row = self.entity(subject, id).await?;
        self.version_export(&row).await
    }

    /// Stores a signature made by the subject, with its audit entry, in one transaction.
    pub async fn record_signature(
        &self,
        subject: &Subject,
        entity_id: i64,
        new: NewSignature,
    ) -> Result<SignatureRow> {
        self.entity(subject, entity_id).await?;
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO entity_signatures (entity_id, heads, meaning, user_id, key_id, \
             public_key, export, signature, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             RETURNING id",
        )
        .bind(entity_id)
        .bind(&new.heads)
        .bind(new.meaning)
        .bind(subject.user_id)
        .bind(&new.key_id)
        .bind(&new.public_key)
        .bind(&new.export)
        .bind(&new.signature)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            now,
            &AuditEvent::new(
                Some(subject.user_id),
                audit::action::SIGN,
                "entity",
                entity_id,
            )
            .details(serde_json::json!({
                "signature": id,
                "meaning": new.meaning,
                "heads": new.heads,
                "key_id": new.key_id,
            })),
        )
        .await?;
        crate::proof_lock::lock_after_proof(
            &mut tx,
            now,
            entity_id,
            subject.user_id,
            crate::proof_lock::LockTrigger::Signature,
        )
        .await?;
        tx.commit().await?;
        self.signature(subject, entity_id, id).await
    }

    /// The signatures of an entity the subject may read, oldest first.
    pub async fn signatures(&self, subject: &Subject, entity_id: i64) -> Result<Vec<SignatureRow>> {
        self.entity(subject, entity_id).await?;
        Ok(
            sqlx::query_as::<_, SignatureRow>(sqlx::AssertSqlSafe(format!(
                "{SELECT} WHERE entity_id = ? ORDER BY id"
            )))
            .bind(entity_id)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    /// One signature of an entity the subject may read.
    pub async fn signature(
        &self,
        subject: &Subject,
        entity_id: i64,
        id: i64,
    ) -> Result<SignatureRow> {
        self.entity(subject, entity_id).await?;
        sqlx::query_as::<_, SignatureRow>(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE entity_id = ? AND id = ?"
        )))
        .bind(entity_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("signature"))
    }

    /// The ids of every signature on this instance, oldest first (for `cahier verify`, which
    /// then reads them one at a time with [`Store::signature_for_check`], so a large instance's
    /// signed exports are never all in memory at once).
    pub async fn all_signature_ids(&self) -> Result<Vec<i64>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM entity_signatures ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// One signature by id, with no subject (for `cahier verify`, an administrator's command
    /// run on the data directory).
    pub async fn signature_for_check(&self, id: i64) -> Result<SignatureRow> {
        sqlx::query_as::<_, SignatureRow>(sqlx::AssertSqlSafe(format!("{SELECT} WHERE id = ?")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("signature"))
    }
}
