//! A real, local RFC 3161 timestamping authority for tests: an HTTP responder on
//! `127.0.0.1:0` that answers each `application/timestamp-query` with `openssl ts -reply`,
//! signed by a TSA certificate (critical extendedKeyUsage timeStamping) under a root CA, all
//! made by `openssl` when the TSA starts (recipe: shared/reference/interop-trust.md §2.4).
//!
//! [`TestTsa::set_mode`] makes it misbehave (refuse, sign the wrong imprint or nonce, sign with
//! a certificate that is not for time-stamping or under an unknown root, answer garbage or too
//! late), so the checks of a client can be exercised one by one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the TSA answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsaMode {
    /// A correct, granted token.
    Good,
    /// `status rejection` without a token.
    Rejected,
    /// A token over another hash than the one asked for.
    WrongImprint,
    /// A token with another nonce than the one sent.
    WrongNonce,
    /// A token signed by a certificate whose only purpose is serverAuth.
    NotForTimestamping,
    /// A token from a TSA under a root the client does not trust.
    UnknownRoot,
    /// HTTP 200 with a body that is not DER.
    Garbage,
    /// No answer for 5 seconds.
    Slow,
}

const CNF: &str = r#"[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = placeholder
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ v3_tsa ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
[ v3_server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
[ tsa ]
default_tsa = tsa_config1
[ tsa_config1 ]
dir = DIR
serial = $dir/tsaserial
crypto_device = builtin
signer_cert = $dir/tsa.crt
certs = $dir/ca.crt
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1.1
digests = sha256, sha384, sha512
accuracy = secs:1
clock_precision_digits = 3
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"#;

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Makes a CA and a TSA certificate under it in `dir` (`ca.crt`, `tsa.crt`, `tsa.key`,
/// `tsa.cnf`).
fn make_pki(dir: &Path, name: &str) {
    std::fs::create_dir_all(dir).expect("pki dir");
    std::fs::write(
        dir.join("tsa.cnf"),
        CNF.replace("DIR", &dir.display().to_string()),
    )
    .expect("cnf");
    std::fs::write(dir.join("tsaserial"), "01\n").expect("serial");
    let ca_subject = format!("/C=FR/O=Cahier Test/CN={name} Root CA");
    let tsa_subject = format!("/C=FR/O=Cahier Test/CN={name} TSA");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            &ca_subject,
            "-config",
            "tsa.cnf",
            "-extensions",
            "v3_ca",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "tsa.key",
            "-out",
            "tsa.csr",
            "-subj",
            &tsa_subject,
            "-config",
            "tsa.cnf",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "tsa.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "tsa.crt",
            "-days",
            "1825",
            "-sha256",
            "-extfile",
            "tsa.cnf",
            "-extensions",
            "v3_tsa",
        ],
    );
    // A certificate under the same root that is not for time-stamping.
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/C=FR/O=Cahier Test/CN=Not a TSA",
            "-config",
            "tsa.cnf",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1825",
            "-sha256",
            "-extfile",
            "tsa.cnf",
            "-extensions",
            "v3_server",
        ],
    );
}

struct Inner {
    dir: PathBuf,
    mode: Mutex<TsaMode>,
    counter: Mutex<u64>,
    requests: Mutex<u64>,
}

/// A running local TSA.
pub struct TestTsa {
    /// The URL to POST queries to.
    pub url: String,
    /// PEM of the trusted root (`tsa_ca_file`).
    pub roots: PathBuf,
    inner: Arc<Inner>,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestTsa {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestTsa {
    /// Makes the keys and certificates and starts answering.
    pub async fn start() -> TestTsa {
        let dir = tempfile::tempdir().expect("tsa dir");
        let root = dir.path().to_path_buf();
        let (good, rogue) = (root.join("good"), root.join("rogue"));
        tokio::task::spawn_blocking(move || {
            make_pki(&good, "Cahier Test");
            make_pki(&rogue, "Rogue");
        })
        .await
        .expect("pki");
        let inner = Arc::new(Inner {
            dir: root.clone(),
            mode: Mutex::new(TsaMode::Good),
            counter: Mutex::new(0),
            requests: Mutex::new(0),
        });
        let app = axum::Router::new()
            .route("/", axum::routing::post(answer))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind tsa");
        let addr = listener.local_addr().expect("tsa addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestTsa {
            url: format!("http://{addr}/"),
            roots: root.join("good/ca.crt"),
            inner,
            _dir: dir,
            task,
        }
    }

    /// Changes how the TSA answers from now on.
    pub fn set_mode(&self, mode: TsaMode) {
        *self.inner.mode.lock().expect("mode") = mode;
    }

    /// How many queries it received.
    pub fn requests(&self) -> u64 {
        *self.inner.requests.lock().expect("requests")
    }

    /// The client configuration for this TSA (2 s timeout, SHA-256).
    pub fn config(&self) -> cahier_trace::TsaConfig {
        cahier_trace::TsaConfig {
            url: self.url.clone(),
            user: None,
            password: None,
            ca_file: self.roots.clone(),
            hash: cahier_trace::HashAlg::Sha256,
            timeout: Duration::from_secs(2),
        }
    }
}

fn der_wrap(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(body);
    out
}

/// The message imprint digest of a query: the OCTET STRING after the algorithm.
fn find_digest(query: &[u8]) -> Option<(usize, usize)> {
    (0..query.len().saturating_sub(2)).find_map(|i| {
        let len = usize::from(query[i + 1]);
        (query[i] == 0x04 && (len == 32 || len == 64) && i + 2 + len <= query.len())
            .then_some((i + 2, len))
    })
}

async fn answer(
    axum::extract::State(inner): axum::extract::State<Arc<Inner>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    *inner.requests.lock().expect("requests") += 1;
    let mode = *inner.mode.lock().expect("mode");
    let n = {
        let mut counter = inner.counter.lock().expect("counter");
        *counter += 1;
        *counter
    };
    let reply = |bytes: Vec<u8>| {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/timestamp-reply",
            )],
            bytes,
        )
            .into_response()
    };
    let mut query = body.to_vec();
    let work = inner.dir.join(format!("q{n}"));
    std::fs::create_dir_all(&work).expect("work dir");
    let run = |args: Vec<String>| {
        let work = work.clone();
        async move {
            let output = tokio::process::Command::new("openssl")
                .args(&args)
                .current_dir(&work)
                .output()
                .await
                .expect("openssl");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    };
    let good = inner.dir.join("good");
    let pki = |name: &str| good.join(name).display().to_string();
    match mode {
        TsaMode::Rejected => {
            let status = der_wrap(0x30, &[0x02, 0x01, 0x02]);
            return reply(der_wrap(0x30, &status));
        }
        TsaMode::Garbage => return reply(b"<html>this is not a token</html>".to_vec()),
        TsaMode::Slow => {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        TsaMode::WrongImprint => {
            if let Some((at, _)) = find_digest(&query) {
                query[at] ^= 0xFF;
            }
        }
        TsaMode::WrongNonce => {
            // The same imprint in a fresh query (openssl adds its own random nonce).
            let (at, len) = find_digest(&query).expect("digest");
            let digest: String = query[at..at + len]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let alg = if len == 32 { "-sha256" } else { "-sha512" };
            run(vec![
                "ts".into(),
                "-query".into(),
                "-digest".into(),
                digest,
                alg.into(),
                "-cert".into(),
                "-out".into(),
                "query.tsq".into(),
            ])
            .await;
            query = std::fs::read(work.join("query.tsq")).expect("query");
        }
        _ => {}
    }
    std::fs::write(work.join("query.tsq"), &query).expect("write query");
    let config_dir = if mode == TsaMode::UnknownRoot {
        inner.dir.join("rogue")
    } else {
        good.clone()
    };
    let key = config_dir.join("tsa.key").display().to_string();
    let signer = config_dir.join("tsa.crt").display().to_string();
    let config = config_dir.join("tsa.cnf").display().to_string();
    run(vec![
        "ts".into(),
        "-reply".into(),
        "-config".into(),
        config,
        "-queryfile".into(),
        "query.tsq".into(),
        "-inkey".into(),
        key,
        "-signer".into(),
        signer,
        "-out".into(),
        "resp.tsr".into(),
    ])
    .await;
    if mode == TsaMode::NotForTimestamping {
        // Re-sign the same TSTInfo with a certificate that is not for time-stamping.
        run(vec![
            "ts".into(),
            "-reply".into(),
            "-in".into(),
            "resp.tsr".into(),
            "-token_out".into(),
            "-out".into(),
            "token.der".into(),
        ])
        .await;
        run(vec![
            "cms".into(),
            "-verify".into(),
            "-noverify".into(),
            "-inform".into(),
            "DER".into(),
            "-in".into(),
            "token.der".into(),
            "-out".into(),
            "tst.der".into(),
        ])
        .await;
        run(vec![
            "cms".into(),
            "-sign".into(),
            "-binary".into(),
            "-nodetach".into(),
            "-outform".into(),
            "DER".into(),
            "-econtent_type".into(),
            "1.2.840.113549.1.9.16.1.4".into(),
            "-in".into(),
            "tst.der".into(),
            "-signer".into(),
            pki("server.crt"),
            "-inkey".into(),
            pki("server.key"),
            "-md".into(),
            "sha256".into(),
            "-nosmimecap".into(),
            "-out".into(),
            "bad.der".into(),
        ])
        .await;
        let token = std::fs::read(work.join("bad.der")).expect("token");
        let status = der_wrap(0x30, &[0x02, 0x01, 0x00]);
        return reply(der_wrap(0x30, &[status, token].concat()));
    }
    reply(std::fs::read(work.join("resp.tsr")).expect("response"))
}
