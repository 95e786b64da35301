//! Signatures of entity versions in minisign's format (Ed25519 over BLAKE2b-512, "ED"), so
//! Debian's `minisign -V` checks them without Cahier. Each user has one key pair made on the
//! server; the secret key is kept encrypted with the user's passphrase (minisign's scrypt box)
//! and is only decrypted in memory while signing. The signed bytes are the canonical export
//! (the same as for timestamps); the trusted comment holds the meaning, the signer and the
//! server's time, as canonical JSON on one line. Access is the store's business.

use crate::TraceError;
use cahier_core::Subject;
use cahier_core::signature::Meaning;
use cahier_core::trace::canonical_json;
use cahier_store::signatures::{NewSignature, SignatureRow, SigningKey};
use cahier_store::{Store, StoreError};
use minisign::{PublicKeyBox, SecretKeyBox, SignatureBox};
use std::io::Cursor;

/// Shortest passphrase accepted for a new key.
pub const MIN_PASSPHRASE_CHARS: usize = 8;

fn invalid(field: &str, message: impl Into<String>) -> TraceError {
    TraceError::Store(StoreError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    })
}

fn internal(what: &str, error: impl std::fmt::Display) -> TraceError {
    TraceError::Internal(format!("{what}: {error}"))
}

/// minisign's key id as it prints it: the 8 bytes read little-endian, upper-case hex.
fn key_id(keynum: &[u8]) -> String {
    let mut bytes = [0u8; 8];
    for (to, from) in bytes.iter_mut().zip(keynum) {
        *to = *from;
    }
    format!("{:016X}", u64::from_le_bytes(bytes))
}

/// Makes (or replaces) the user's key pair, its secret key encrypted with `passphrase`.
/// Returns the stored key (the public key is what others use to check).
pub async fn create_signing_key(
    store: &Store,
    user_id: i64,
    passphrase: &str,
) -> Result<SigningKey, TraceError> {
    if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(invalid(
            "passphrase",
            format!("use at least {MIN_PASSPHRASE_CHARS} characters"),
        ));
    }
    let passphrase = passphrase.to_owned();
    // scrypt takes a moment and 32 MiB: off the async threads.
    let (id, public, secret) = tokio::task::spawn_blocking(move || {
        let pair = minisign::KeyPair::generate_encrypted_keypair(Some(passphrase))
            .map_err(|e| internal("making the key pair", e))?;
        let id = key_id(pair.pk.keynum());
        let public_box = pair
            .pk
            .to_box()
            .map_err(|e| internal("writing the public key", e))?;
        let secret = pair
            .sk
            .to_box(Some(&format!("cahier secret key {id}")))
            .map_err(|e| internal("writing the secret key", e))?
            .into_string();
        Ok::<_, TraceError>((id, public_box.into_string(), secret))
    })
    .await
    .map_err(|e| internal("making the key pair", e))??;
    store
        .set_signing_key(user_id, &id, &public, &secret)
        .await?;
    store
        .signing_key(user_id)
        .await?
        .ok_or(TraceError::Store(StoreError::NotFound("signing key")))
}

/// What the signer states, signed with the export (the trusted comment).
fn trusted_comment(
    signer: &cahier_store::accounts::User,
    meaning: Meaning,
    entity_id: i64,
    now_ms: i64,
) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let value = serde_json::json!({
        "created_at": at,
        "created_by": format!("Cahier {}", env!("CARGO_PKG_VERSION")),
        "email": signer.email,
        "entity_id": entity_id,
        "firstname": signer.firstname,
        "lastname": signer.lastname,
        "meaning": meaning.name(),
        "meaning_code": meaning.code(),
    });
    String::from_utf8_lossy(&canonical_json(&value)).into_owned()
}

/// Signs the current version of an entity the subject may read, with their key unlocked by
/// `passphrase`, and stores the signature.
pub async fn sign_entity(
    store: &Store,
    subject: &Subject,
    entity_id: i64,
    passphrase: &str,
    meaning: Meaning,
) -> Result<SignatureRow, TraceError> {
    let key = store.signing_key(subject.user_id).await?.ok_or_else(|| {
        TraceError::Store(StoreError::Conflict(
            "you have no signing key yet: make one in your settings first".into(),
        ))
    })?;
    let export = store.signing_export(subject, entity_id).await?;
    let signer = store.user(subject.user_id).await?;
    let comment = trusted_comment(&signer, meaning, entity_id, store.now_ms());
    let untrusted = format!("cahier signature from key {}", key.key_id);
    let passphrase = passphrase.to_owned();
    let secret = key.secret_key.clone();
    let public = key.public_key.clone();
    let bytes = export.bytes.clone();
    let signature = tokio::task::spawn_blocking(move || {
        let secret_key = SecretKeyBox::from_string(&secret)
            .and_then(|b| b.into_secret_key(Some(passphrase)))
            .map_err(|_| invalid("passphrase", "wrong passphrase for your signing key"))?;
        let public_key = PublicKeyBox::from_string(&public)
            .and_then(|b| b.into_public_key())
            .map_err(|e| internal("reading your public key", e))?;
        minisign::sign(
            Some(&public_key),
            &secret_key,
            Cursor::new(&bytes),
            Some(&comment),
            Some(&untrusted),
        )
        .map(|sig| sig.into_string())
        .map_err(|e| internal("signing", e))
    })
    .await
    .map_err(|e| internal("signing", e))??;
    let row = store
        .record_signature(
            subject,
            entity_id,
            NewSignature {
                heads: export.heads,
                meaning: meaning.code(),
                key_id: key.key_id,
                public_key: key.public_key,
                export: export.bytes,
                signature,
            },
        )
        .await?;
    tracing::info!(
        entity_id,
        signature = row.id,
        meaning = meaning.name(),
        "entity version signed"
    );
    Ok(row)
}

/// Checks one stored signature: the `.minisig` verifies over the stored export with the stored
/// public key, and its trusted comment names the stored meaning. Returns the trusted comment.
pub fn check_signature(row: &SignatureRow) -> Result<String, String> {
    let public = PublicKeyBox::from_string(&row.public_key)
        .and_then(|b| b.into_public_key())
        .map_err(|e| format!("the public key does not read: {e}"))?;
    let signature = SignatureBox::from_string(&row.signature)
        .map_err(|e| format!("the signature does not read: {e}"))?;
    if !signature.is_prehashed() {
        return Err("not a prehashed (ED) minisign signature".into());
    }
    minisign::verify(
        &public,
        &signature,
        Cursor::new(&row.export),
        true,
        false,
        false,
    )
    .map_err(|e| format!("the signature does not verify: {e}"))?;
    let comment = signature
        .trusted_comment()
        .map_err(|e| format!("no trusted comment: {e}"))?;
    let stated: serde_json::Value = serde_json::from_str(&comment)
        .map_err(|_| "the trusted comment is not Cahier's JSON".to_owned())?;
    if stated
        .get("meaning_code")
        .and_then(serde_json::Value::as_i64)
        != Some(row.meaning)
    {
        return Err("the signed meaning differs from the recorded one".into());
    }
    if stated.get("entity_id").and_then(serde_json::Value::as_i64) != Some(row.entity_id) {
        return Err("the signed entry differs from the recorded one".into());
    }
    Ok(comment)
}

/// One stored signature that does not hold.
#[derive(Debug, Clone)]
pub struct BrokenSignature {
    /// The entity.
    pub entity_id: i64,
    /// The signature.
    pub signature_id: i64,
    /// What failed.
    pub reason: String,
}

/// Re-checks every stored signature (`cahier verify`), reading them one at a time. Returns
/// how many were checked.
pub async fn verify_signatures(store: &Store) -> Result<(usize, Vec<BrokenSignature>), TraceError> {
    let ids = store.all_signature_ids().await?;
    let mut broken = Vec::new();
    for id in &ids {
        let row = store.signature_for_check(*id).await?;
        if let Err(reason) = check_signature(&row) {
            broken.push(BrokenSignature {
                entity_id: row.entity_id,
                signature_id: row.id,
                reason,
            });
        }
    }
    Ok((ids.len(), broken))
}
