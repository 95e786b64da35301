//! Legal traceability: trusted timestamps (RFC 3161) of entity versions.
//!
//! [`stamp_entity`] takes the canonical export of an entity's current version
//! (`cahier_core::trace`), hashes it, asks the configured TSA for a token, checks the answer
//! ([`rfc3161`]), and only then stores the proof: a ZIP (`export.json`, `token.tsr`,
//! `chain.pem`) attached to the entity like any upload, and a row in `entity_timestamps`.
//! [`verify_stored`] re-checks every stored proof (`cahier verify`). Nothing here decides who
//! may stamp: the store's access policy does.

pub mod anchor;
pub mod archive;
pub mod der;
pub mod rfc3161;
pub mod signature;

pub use anchor::{BrokenAnchor, anchor_audit_head, verify_anchors};
use cahier_core::Subject;
use cahier_store::timestamps::{NewTimestamp, TimestampRow};
use cahier_store::uploads::NewUpload;
use cahier_store::{Store, StoreError};
use sha2::Digest;
use std::path::PathBuf;
use std::time::Duration;

/// Hash of the stamped export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashAlg {
    /// SHA-256 (default).
    #[default]
    Sha256,
    /// SHA-512.
    Sha512,
}

impl HashAlg {
    /// Parses `sha256` or `sha512`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// DER content of the algorithm's OID.
    pub fn oid(self) -> &'static [u8] {
        match self {
            Self::Sha256 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01],
            Self::Sha512 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03],
        }
    }

    /// Hashes `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

/// A password that never appears in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where to get timestamps and which roots to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsaConfig {
    /// The TSA's URL (HTTP POST of `application/timestamp-query`).
    pub url: String,
    /// Basic-auth user, when the TSA wants one.
    pub user: Option<String>,
    /// Basic-auth password.
    pub password: Option<Secret>,
    /// PEM bundle of the trusted TSA roots.
    pub ca_file: PathBuf,
    /// Hash of the export.
    pub hash: HashAlg,
    /// Longest wait for the TSA.
    pub timeout: Duration,
}

/// Why stamping or verifying failed.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// No TSA is configured (the action is unavailable; the message says how to set one).
    #[error(
        "no timestamping authority is configured: a sysadmin sets one on the audit page (Administration → Audit log), or set tsa_url and tsa_ca_file in cahier.toml (or CAHIER_TSA_URL and CAHIER_TSA_CA_FILE)"
    )]
    NotConfigured,
    /// The TSA could not be reached or its answer failed a check. Nothing was stored; the user
    /// may retry.
    #[error("{0}")]
    BadAnswer(String),
    /// A stored proof does not hold (verification).
    #[error("{0}")]
    Broken(String),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Our side failed (temporary files, running openssl).
    #[error("{0}")]
    Internal(String),
}

/// Common timestamping authorities, offered to administrators as presets: `(name, URL, note)`.
/// Their roots are the authority's published CA certificates (`tsa_ca_file`).
pub const TSA_PRESETS: &[(&str, &str, &str)] = &[
    (
        "DFN",
        "https://zeitstempel.dfn.de",
        "free for DFN members (German research network)",
    ),
    (
        "DigiCert",
        "http://timestamp.digicert.com",
        "free, no account; eLabFTW's default",
    ),
    (
        "Sectigo",
        "http://timestamp.sectigo.com",
        "free, rate-limited",
    ),
    (
        "Universign",
        "https://ws.universign.eu/tsa",
        "paid; basic auth (tsa_user, tsa_password_file); use the URL of your contract",
    ),
];

/// A new proof.
#[derive(Debug, Clone)]
pub struct Stamped {
    /// Its record.
    pub timestamp: TimestampRow,
}

/// Stamps the current version of an entity the subject may write. `nonce` comes from the
/// caller's random source.
pub async fn stamp_entity(
    store: &Store,
    config: Option<&TsaConfig>,
    subject: &Subject,
    entity_id: i64,
    nonce: [u8; 8],
) -> Result<Stamped, TraceError> {
    let config = config.ok_or(TraceError::NotConfigured)?;
    let export = store.timestamp_export(subject, entity_id).await?;
    let digest = config.hash.digest(&export.bytes);
    let request = rfc3161::request(config.hash, &digest, nonce);
    let response = post_query(config, &request.der).await?;
    let token = rfc3161::check_response(&response, &request)?;
    let chain = rfc3161::to_pem(&token.certificates);
    let dir = tempfile::tempdir().map_err(|error| {
        TraceError::Internal(format!("creating a temporary directory: {error}"))
    })?;
    rfc3161::openssl_ts_verify(
        dir.path(),
        &export.bytes,
        &response,
        &config.ca_file,
        Some(&chain),
    )
    .await?;
    let zip = archive::build(&export.bytes, &response, &chain)?;
    let blobs = store.blob_store()?;
    let stored = async {
        let mut writer = blobs.writer().await?;
        writer.write(&zip).await?;
        writer.finish().await
    }
    .await
    .map_err(|error| TraceError::Internal(format!("storing the proof archive: {error}")))?;
    let when =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(token.gen_time_ms) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(time::macros::format_description!(
                    "[year][month][day]-[hour][minute][second]"
                ))
                .ok()
            })
            .unwrap_or_default();
    let timestamp = store
        .attach_timestamp(
            subject,
            entity_id,
            NewUpload {
                sha256: stored.0,
                size: stored.1,
                real_name: format!("timestamp-{when}.zip"),
                comment: format!(
                    "RFC 3161 timestamp by {} of version {}",
                    token.tsa_name, export.heads
                ),
                media_type: "application/zip".into(),
            },
            NewTimestamp {
                heads: export.heads,
                export_sha256: hex::encode(sha2::Sha256::digest(&export.bytes)),
                hash_alg: config.hash.name().into(),
                gen_time_ms: token.gen_time_ms,
                tsa_name: token.tsa_name,
            },
        )
        .await?;
    tracing::info!(
        entity_id,
        upload_id = timestamp.upload_id,
        tsa = %timestamp.tsa_name,
        "entity version timestamped"
    );
    Ok(Stamped { timestamp })
}

/// Largest TSA answer read (real tokens are a few KiB).
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

async fn post_query(config: &TsaConfig, der: &[u8]) -> Result<Vec<u8>, TraceError> {
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .build()
        .map_err(|error| TraceError::Internal(format!("building the HTTP client: {error}")))?;
    let mut request = client
        .post(&config.url)
        .header("content-type", "application/timestamp-query")
        .body(der.to_vec());
    if let Some(user) = &config.user {
        request = request.basic_auth(user, config.password.as_ref().map(|p| p.0.clone()));
    }
    // The error's text names the URL but never the credentials.
    let response = request.send().await.map_err(|error| {
        TraceError::BadAnswer(if error.is_timeout() {
            format!(
                "the TSA at {} did not answer in time; try again later",
                config.url
            )
        } else {
            format!(
                "the TSA at {} could not be reached; try again later",
                config.url
            )
        })
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(TraceError::BadAnswer(format!(
            "the TSA at {} answered HTTP {status}",
            config.url
        )));
    }
    let body = response.bytes().await.map_err(|error| {
        TraceError::BadAnswer(if error.is_timeout() {
            format!(
                "the TSA at {} did not answer in time; try again later",
                config.url
            )
        } else {
            format!("reading the TSA's answer failed: {error}")
        })
    })?;
    if body.len() > MAX_ANSWER_BYTES {
        return Err(TraceError::BadAnswer(
            "the TSA's answer is too large".into(),
        ));
    }
    Ok(body.to_vec())
}

/// One stored proof that does not hold.
#[derive(Debug, Clone)]
pub struct BrokenProof {
    /// The entity.
    pub entity_id: i64,
    /// The archive upload.
    pub upload_id: i64,
    /// What is wrong.
    pub reason: String,
}

/// Re-checks every stored proof: the archive exists and opens, its export hashes to the
/// recorded value and to the token's imprint, and the token verifies against the stored chain
/// and `roots`. Returns how many were checked and those that failed.
pub async fn verify_stored(
    store: &Store,
    roots: Option<&std::path::Path>,
) -> Result<(usize, Vec<BrokenProof>), TraceError> {
    let stamps = store.all_timestamps().await?;
    let mut broken = Vec::new();
    for stamp in &stamps {
        if let Err(error) = verify_one(store, roots, stamp).await {
            broken.push(BrokenProof {
                entity_id: stamp.entity_id,
                upload_id: stamp.upload_id,
                reason: error.to_string(),
            });
        }
    }
    Ok((stamps.len(), broken))
}

async fn verify_one(
    store: &Store,
    roots: Option<&std::path::Path>,
    stamp: &TimestampRow,
) -> Result<(), TraceError> {
    let roots = roots.ok_or_else(|| {
        TraceError::Broken("tsa_ca_file is not set, so the token's chain cannot be checked".into())
    })?;
    let blobs = store.blob_store()?;
    let broken = |what: String| TraceError::Broken(what);
    let mut reader = blobs
        .open(&stamp.upload_sha256)
        .await
        .map_err(|error| broken(format!("the proof archive is missing: {error}")))?;
    let mut zip = Vec::new();
    while let Some(chunk) = reader
        .next_chunk()
        .await
        .map_err(|error| broken(format!("reading the proof archive: {error}")))?
    {
        zip.extend_from_slice(&chunk);
    }
    if hex::encode(sha2::Sha256::digest(&zip)) != stamp.upload_sha256 {
        return Err(broken(
            "the proof archive's bytes do not match its hash".into(),
        ));
    }
    let files = archive::open(&zip).map_err(|error| broken(error.to_string()))?;
    if hex::encode(sha2::Sha256::digest(&files.export)) != stamp.export_sha256 {
        return Err(broken("export.json is not the stamped export".into()));
    }
    let alg = HashAlg::parse(&stamp.hash_alg)
        .ok_or_else(|| broken(format!("unknown hash algorithm {}", stamp.hash_alg)))?;
    rfc3161::check_stored_imprint(&files.token, alg, &alg.digest(&files.export))
        .map_err(|error| broken(error.to_string()))?;
    let dir = tempfile::tempdir().map_err(|error| {
        TraceError::Internal(format!("creating a temporary directory: {error}"))
    })?;
    rfc3161::openssl_ts_verify(
        dir.path(),
        &files.export,
        &files.token,
        roots,
        Some(&files.chain),
    )
    .await
    .map_err(|error| broken(error.to_string()))
}

/// The fixed data the "test" action of the admin page has stamped (nothing is stored).
pub const PROBE: &[u8] = b"Cahier: timestamping authority probe";

/// Asks the TSA for a token over [`PROBE`] and checks it as a real stamp would (answer, nonce,
/// imprint, chain to the trusted roots). Returns the token's time, ms. Nothing is stored.
pub async fn probe_tsa(config: &TsaConfig, nonce: [u8; 8]) -> Result<i64, TraceError> {
    let digest = config.hash.digest(PROBE);
    let request = rfc3161::request(config.hash, &digest, nonce);
    let response = post_query(config, &request.der).await?;
    let token = rfc3161::check_response(&response, &request)?;
    let chain = rfc3161::to_pem(&token.certificates);
    let dir = tempfile::tempdir().map_err(|error| {
        TraceError::Internal(format!("creating a temporary directory: {error}"))
    })?;
    rfc3161::openssl_ts_verify(dir.path(), PROBE, &response, &config.ca_file, Some(&chain)).await?;
    Ok(token.gen_time_ms)
}

/// Checks that `pem` holds at least one X.509 certificate (each `CERTIFICATE` block must decode
/// as base64 to a DER `Certificate`: a sequence of the signed part, the algorithm and the
/// signature). Returns how many it holds, or why it is refused.
pub fn pem_certificates(pem: &str) -> Result<usize, String> {
    use base64::Engine as _;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut count = 0;
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let end = after
            .find(END)
            .ok_or_else(|| format!("certificate {} has no END line", count + 1))?;
        let text: String = after[..end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|_| format!("certificate {} is not valid base64", count + 1))?;
        let is_certificate = der::expect(&der, der::tag::SEQUENCE)
            .ok()
            .filter(|(_, trailing)| trailing.is_empty())
            .and_then(|(outer, _)| der::children(outer.body).ok())
            .is_some_and(|parts| {
                parts.len() == 3
                    && parts[0].tag == der::tag::SEQUENCE
                    && parts[1].tag == der::tag::SEQUENCE
                    && parts[2].tag == 0x03
            });
        if !is_certificate {
            return Err(format!(
                "certificate {} is not an X.509 certificate",
                count + 1
            ));
        }
        count += 1;
        rest = &after[end + END.len()..];
    }
    if count == 0 {
        return Err(
            "no certificate found: paste the authority's root certificates in PEM (-----BEGIN CERTIFICATE----- …)"
                .into(),
        );
    }
    Ok(count)
}
