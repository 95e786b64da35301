//! Trusted timestamps of the audit log's head ("anchors"): once a day the server asks the TSA
//! to stamp the head entry's hash, so the whole chain up to it is proven to have existed then;
//! rewriting the log afterwards would need a new token from the TSA for an older time. The
//! stamped bytes are the 64 lowercase hex characters of the head's hash (ASCII), so
//! `openssl ts -verify -data head.txt` checks one by hand. [`verify_anchors`] re-checks them
//! for `cahier verify`.

use crate::{HashAlg, TraceError, TsaConfig, post_query, rfc3161};
use cahier_store::Store;
use cahier_store::audit::NewAnchor;

/// One stored anchor that does not hold.
#[derive(Debug, Clone)]
pub struct BrokenAnchor {
    /// The anchor.
    pub anchor_id: i64,
    /// The audit entry it stamps.
    pub seq: i64,
    /// What failed.
    pub reason: String,
}

/// Stamps the current head of the audit log; `None` when the log is empty or its head is
/// already anchored. `nonce` comes from the caller's random source.
pub async fn anchor_audit_head(
    store: &Store,
    config: Option<&TsaConfig>,
    nonce: [u8; 8],
) -> Result<Option<i64>, TraceError> {
    let config = config.ok_or(TraceError::NotConfigured)?;
    let Some(head) = store.audit_head().await? else {
        return Ok(None);
    };
    if head.action == cahier_store::audit::action::ANCHOR {
        // Nothing happened since the last anchor: stamping again proves nothing new.
        return Ok(None);
    }
    let data = head.hash.as_bytes();
    let digest = config.hash.digest(data);
    let request = rfc3161::request(config.hash, &digest, nonce);
    let response = post_query(config, &request.der).await?;
    let token = rfc3161::check_response(&response, &request)?;
    let chain = rfc3161::to_pem(&token.certificates);
    let dir = tempfile::tempdir().map_err(|error| {
        TraceError::Internal(format!("creating a temporary directory: {error}"))
    })?;
    rfc3161::openssl_ts_verify(dir.path(), data, &response, &config.ca_file, Some(&chain)).await?;
    let id = store
        .record_audit_anchor(NewAnchor {
            seq: head.seq,
            head_hash: head.hash.clone(),
            hash_alg: config.hash.name().into(),
            gen_time_ms: token.gen_time_ms,
            tsa_name: token.tsa_name,
            token: response,
            chain: chain.into_bytes(),
        })
        .await?;
    tracing::info!(seq = head.seq, anchor = id, "audit log head timestamped");
    Ok(Some(id))
}

/// Re-checks every anchor: the entry it names still has the stamped hash, the token's imprint
/// is that hash, and the token verifies against its chain and `roots`.
pub async fn verify_anchors(
    store: &Store,
    roots: Option<&std::path::Path>,
) -> Result<(usize, Vec<BrokenAnchor>), TraceError> {
    let anchors = store.audit_anchors().await?;
    let mut broken = Vec::new();
    for anchor in &anchors {
        let entry = store.audit_entry(anchor.seq).await?;
        let result = async {
            let broken = |what: String| TraceError::Broken(what);
            match entry {
                Some(entry) if entry.hash == anchor.head_hash => {}
                Some(_) => {
                    return Err(broken(
                        "the audit entry no longer has the stamped hash".into(),
                    ));
                }
                None => return Err(broken("the stamped audit entry is missing".into())),
            }
            let roots = roots.ok_or_else(|| {
                broken("tsa_ca_file is not set, so the token's chain cannot be checked".into())
            })?;
            let alg = HashAlg::parse(&anchor.hash_alg)
                .ok_or_else(|| broken(format!("unknown hash algorithm {}", anchor.hash_alg)))?;
            let data = anchor.head_hash.as_bytes();
            rfc3161::check_stored_imprint(&anchor.token, alg, &alg.digest(data))
                .map_err(|error| broken(error.to_string()))?;
            let chain = String::from_utf8_lossy(&anchor.chain).into_owned();
            let dir = tempfile::tempdir().map_err(|error| {
                TraceError::Internal(format!("creating a temporary directory: {error}"))
            })?;
            rfc3161::openssl_ts_verify(dir.path(), data, &anchor.token, roots, Some(&chain))
                .await
                .map_err(|error| broken(error.to_string()))
        }
        .await;
        if let Err(error) = result {
            broken.push(BrokenAnchor {
                anchor_id: anchor.id,
                seq: anchor.seq,
                reason: error.to_string(),
            });
        }
    }
    Ok((anchors.len(), broken))
}
