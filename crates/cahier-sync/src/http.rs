//! The HTTP transport: `/api/sync/v1` on the lab instance, authenticated by the device
//! credential. HTTPS (rustls, Mozilla's roots or the lab's own CA); plain HTTP only to a
//! loopback address, since it would carry the notebook and the credential in clear.
//!
//! Timeouts: connecting (TCP and TLS) gives up after [`CONNECT_TIMEOUT`]; a request then has
//! 5 minutes in all (a file transfer more, by its size). A file download also gives up when
//! the server sends nothing for the transport's stall timeout (the answer's headers, then
//! each chunk): [`STALL_TIMEOUT`] in a background sync, [`INTERACTIVE_STALL_TIMEOUT`] when a
//! user waits for the file (opened, or needed by an export), so a network that hangs rather
//! than refusing is seen as unreachable within seconds, while a large file over a slow link
//! is never cut off as long as bytes keep coming.

use crate::{SyncError, Transport};
use cahier_store::blobs::BlobStore;
use cahier_store::sync::proto::{
    BookingAnswer, BookingRequests, FeedResponse, Preferences, PreferencesAnswer, PullDoc,
    PullEntry, PushDoc, PushResult, Reference, RegisterRequest, RegisterResponse,
};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// How long connecting to the server (TCP and the TLS handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a file download of a background sync may go without receiving a byte.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a file download may go without receiving a byte while a user waits for it.
pub const INTERACTIVE_STALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to a lab instance for one device.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    base: String,
    credential: String,
    /// How long a file download may go without a byte ([`HttpTransport::with_stall_timeout`]).
    stall: Duration,
}

/// How to trust the server's certificate.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// The lab's CA certificates (PEM). When given, only these are trusted.
    pub ca_pem: Option<Vec<u8>>,
}

impl TlsOptions {
    /// Checks a PEM bundle holds at least one certificate.
    pub fn with_ca_pem(pem: Vec<u8>) -> Result<Self, SyncError> {
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| SyncError::Config(format!("the CA file is not PEM certificates: {e}")))?;
        if certificates.is_empty() {
            return Err(SyncError::Config(
                "the CA file holds no certificate (expected -----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        Ok(Self { ca_pem: Some(pem) })
    }
}

/// Checks the server address: `https://`, or `http://` to a loopback host only.
pub fn check_server_url(server: &str) -> Result<reqwest::Url, SyncError> {
    let url = reqwest::Url::parse(server.trim()).map_err(|e| {
        SyncError::Config(format!(
            "{server} is not a server address ({e}); expected https://host[:port]"
        ))
    })?;
    match url.scheme() {
        "https" => Ok(url),
        "http" => {
            let host = url.host_str().unwrap_or_default();
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(url)
            } else {
                let rest = server.trim().strip_prefix("http://").unwrap_or(server);
                Err(SyncError::Config(format!(
                    "refusing plain http to {server}: the notebook and the device credential would travel unencrypted; \
                     use https://{rest} (and --ca-file with the lab's CA certificate if it has its own)"
                )))
            }
        }
        other => Err(SyncError::Config(format!(
            "{server}: unsupported scheme {other}; expected https://"
        ))),
    }
}

fn client(tls: &TlsOptions) -> Result<reqwest::Client, SyncError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(Duration::from_secs(300))
        .use_rustls_tls();
    if let Some(pem) = &tls.ca_pem {
        builder = builder.tls_built_in_root_certs(false);
        for certificate in reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| SyncError::Config(format!("the CA file is not PEM certificates: {e}")))?
        {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|e| SyncError::Config(format!("setting up HTTPS: {e}")))
}

/// A transport error with its causes, so "certificate not trusted" is not hidden behind
/// "error sending request".
fn unreachable(error: &reqwest::Error) -> SyncError {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    let mut untrusted = false;
    while let Some(cause) = source {
        let text = cause.to_string();
        untrusted |= text.contains("certificate") || text.contains("UnknownIssuer");
        message.push_str(": ");
        message.push_str(&text);
        source = cause.source();
    }
    if untrusted {
        SyncError::Untrusted(message)
    } else {
        SyncError::Unreachable(message)
    }
}

async fn answer<T: DeserializeOwned>(
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, SyncError> {
    let response = response.map_err(|e| unreachable(&e))?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        let text = response.text().await.unwrap_or_default();
        return Err(SyncError::Refused(describe(&text)));
    }
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(SyncError::Protocol(format!(
            "{status}: {}",
            describe(&text)
        )));
    }
    response
        .json()
        .await
        .map_err(|e| SyncError::Protocol(e.to_string()))
}

fn describe(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("description")
                .and_then(|d| d.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| body.chars().take(200).collect())
}

impl HttpTransport {
    /// Registers this device for the user; returns the transport and the server's answer.
    pub async fn register(
        server: &str,
        tls: &TlsOptions,
        email: &str,
        password: &str,
        name: &str,
    ) -> Result<(Self, RegisterResponse), SyncError> {
        check_server_url(server)?;
        let client = client(tls)?;
        let base = format!("{}/api/sync/v1", server.trim().trim_end_matches('/'));
        let request = RegisterRequest {
            email: email.into(),
            password: password.into(),
            name: name.into(),
        };
        let registered: RegisterResponse = answer(
            client
                .post(format!("{base}/devices"))
                .json(&request)
                .send()
                .await,
        )
        .await?;
        let transport = Self {
            client,
            base,
            credential: registered.token.clone(),
            stall: STALL_TIMEOUT,
        };
        Ok((transport, registered))
    }

    /// A transport for an already registered device.
    pub fn new(server: &str, tls: &TlsOptions, credential: &str) -> Result<Self, SyncError> {
        check_server_url(server)?;
        Ok(Self {
            client: client(tls)?,
            base: format!("{}/api/sync/v1", server.trim().trim_end_matches('/')),
            credential: credential.into(),
            stall: STALL_TIMEOUT,
        })
    }

    /// The same transport (sharing its connections) whose file downloads give up after
    /// `stall` without a byte: [`INTERACTIVE_STALL_TIMEOUT`] for a user who waits.
    #[must_use]
    pub fn with_stall_timeout(mut self, stall: Duration) -> Self {
        self.stall = stall;
        self
    }

    /// How long a file download may go without a byte.
    pub fn stall_timeout(&self) -> Duration {
        self.stall
    }

    fn blob_url(&self, sha256: &str) -> Result<String, SyncError> {
        if !cahier_store::blobs::is_hash(sha256) {
            return Err(SyncError::Protocol(format!("{sha256} is not a SHA-256")));
        }
        Ok(format!("{}/blobs/{sha256}", self.base))
    }

    fn auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.header(
            reqwest::header::AUTHORIZATION,
            format!("Device {}", self.credential),
        )
    }
}

impl Transport for HttpTransport {
    async fn reference(&self) -> Result<Reference, SyncError> {
        answer(
            self.auth(self.client.get(format!("{}/reference", self.base)))
                .send()
                .await,
        )
        .await
    }

    async fn reference_if_changed(
        &self,
        held: Option<&str>,
    ) -> Result<Option<Reference>, SyncError> {
        let mut request = self.auth(self.client.get(format!("{}/reference", self.base)));
        if let Some(held) = held {
            request = request.header(reqwest::header::IF_NONE_MATCH, format!("\"{held}\""));
        }
        let response = request.send().await;
        if let Ok(answered) = &response
            && answered.status() == reqwest::StatusCode::NOT_MODIFIED
        {
            return Ok(None);
        }
        // The version travels in the body too (`Reference::version`).
        answer(response).await.map(Some)
    }

    async fn push(&self, docs: Vec<PushDoc>) -> Result<Vec<PushResult>, SyncError> {
        self.push_after(docs, None).await
    }

    async fn push_after(
        &self,
        docs: Vec<PushDoc>,
        after: Option<&str>,
    ) -> Result<Vec<PushResult>, SyncError> {
        // Older servers ignore `after` (and answer no marks).
        let body = match after {
            Some(after) => serde_json::json!({ "docs": docs, "after": after }),
            None => serde_json::json!({ "docs": docs }),
        };
        answer(
            self.auth(self.client.post(format!("{}/push", self.base)))
                .json(&body)
                .send()
                .await,
        )
        .await
    }

    async fn feed(&self, since: i64, limit: i64) -> Result<FeedResponse, SyncError> {
        answer(
            self.auth(
                self.client
                    .get(format!("{}/feed?since={since}&limit={limit}", self.base)),
            )
            .send()
            .await,
        )
        .await
    }

    async fn pull(&self, docs: Vec<PullDoc>) -> Result<Vec<PullEntry>, SyncError> {
        answer(
            self.auth(self.client.post(format!("{}/pull", self.base)))
                .json(&serde_json::json!({ "docs": docs }))
                .send()
                .await,
        )
        .await
    }

    async fn revoked(&self, uuids: Vec<String>) -> Result<Vec<String>, SyncError> {
        let answer: serde_json::Value = answer(
            self.auth(self.client.post(format!("{}/check", self.base)))
                .json(&serde_json::json!({ "uuids": uuids }))
                .send()
                .await,
        )
        .await?;
        serde_json::from_value(answer.get("revoked").cloned().unwrap_or_default())
            .map_err(|e| SyncError::Protocol(e.to_string()))
    }

    async fn bookings(&self, body: BookingRequests) -> Result<Option<BookingAnswer>, SyncError> {
        let response = self
            .auth(self.client.post(format!("{}/bookings", self.base)))
            .json(&body)
            .send()
            .await;
        // A lab server older than booking requests: they wait on the device.
        if let Ok(answered) = &response
            && answered.status() == reqwest::StatusCode::NOT_FOUND
        {
            return Ok(None);
        }
        answer(response).await.map(Some)
    }

    async fn feed_in_history(
        &self,
        since: i64,
        limit: i64,
        history: Option<&str>,
        pushed: Option<&str>,
    ) -> Result<FeedResponse, SyncError> {
        let mut request = self
            .client
            .get(format!("{}/feed", self.base))
            .query(&[("since", since), ("limit", limit)]);
        if let Some(history) = history {
            request = request.query(&[("history", history)]);
        }
        if let Some(pushed) = pushed {
            request = request.query(&[("pushed", pushed)]);
        }
        answer(self.auth(request).send().await).await
    }

    async fn preferences(&self, preferences: Preferences) -> Result<bool, SyncError> {
        let response = self
            .auth(self.client.post(format!("{}/preferences", self.base)))
            .json(&preferences)
            .send()
            .await;
        // A lab server older than this: the choice waits on the device.
        if let Ok(answered) = &response
            && answered.status() == reqwest::StatusCode::NOT_FOUND
        {
            return Ok(false);
        }
        let _: PreferencesAnswer = answer(response).await?;
        Ok(true)
    }

    async fn has_blob(&self, sha256: &str) -> Result<bool, SyncError> {
        let response = self
            .auth(self.client.head(self.blob_url(sha256)?))
            .send()
            .await
            .map_err(|e| unreachable(&e))?;
        match response.status() {
            reqwest::StatusCode::OK => Ok(true),
            reqwest::StatusCode::NOT_FOUND => Ok(false),
            reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => Err(
                SyncError::Refused("this device is unknown or has been revoked".into()),
            ),
            status => Err(SyncError::Protocol(format!("{status} asking for a file"))),
        }
    }

    async fn upload_blob(&self, sha256: &str, blobs: &BlobStore) -> Result<(), SyncError> {
        let size = blobs.size(sha256).await?;
        let reader = blobs.open(sha256).await?;
        // Read (and decrypt) from disk as the request goes out: memory stays flat whatever
        // the file size.
        let stream = futures_util::stream::unfold(reader, |mut reader| async move {
            match reader.next_chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), reader)),
                Ok(None) => None,
                Err(error) => Some((Err(std::io::Error::other(error)), reader)),
            }
        });
        let response = self
            .auth(self.client.put(self.blob_url(sha256)?))
            .timeout(file_timeout(size))
            .header(reqwest::header::CONTENT_LENGTH, size)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await;
        answer_empty(response).await
    }

    async fn download_blob(&self, sha256: &str, blobs: &BlobStore) -> Result<bool, SyncError> {
        let stall = self.stall;
        // The whole transfer keeps the size-based cap; a network that hangs is caught by the
        // stall timeout first, on the answer's headers and on every chunk.
        let request = self
            .auth(self.client.get(self.blob_url(sha256)?))
            .timeout(file_timeout(blobs.max_bytes()))
            .send();
        let mut response = tokio::time::timeout(stall, request)
            .await
            .map_err(|_| stalled(stall))?
            .map_err(|e| unreachable(&e))?;
        match response.status() {
            reqwest::StatusCode::NOT_FOUND => return Ok(false),
            reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
                return Err(SyncError::Refused(
                    "this device is unknown or has been revoked".into(),
                ));
            }
            status if !status.is_success() => {
                return Err(SyncError::Protocol(format!("{status} downloading a file")));
            }
            _ => {}
        }
        // The network chunks go through a channel to one blocking thread that hashes,
        // encrypts and writes them, so receiving and writing overlap. Dropping the writer on
        // any error below removes the partial file.
        let writer = blobs.writer().await?;
        let (chunks, received) = tokio::sync::mpsc::channel(DOWNLOAD_QUEUE);
        let receive = async move {
            while let Some(chunk) = tokio::time::timeout(stall, response.chunk())
                .await
                .map_err(|_| stalled(stall))?
                .map_err(|e| unreachable(&e))?
            {
                if chunks.send(chunk).await.is_err() {
                    // The writer stopped (its error is reported below).
                    break;
                }
            }
            Ok::<(), SyncError>(())
        };
        let (receive, written) = tokio::join!(receive, writer.write_from(received));
        let writer = written?;
        receive?;
        writer.finish_expecting(sha256).await?;
        Ok(true)
    }
}

/// The error of a download during which the server sent nothing for `stall`.
fn stalled(stall: Duration) -> SyncError {
    SyncError::Unreachable(format!(
        "the server sent nothing for {} s (the network seems to hang)",
        stall.as_secs_f32()
    ))
}

/// Network chunks waiting for the writer of a download (a few MiB at most).
const DOWNLOAD_QUEUE: usize = 64;

/// How long a file transfer may take: the usual 5 minutes, plus one second per 64 KiB (a
/// 2 GiB file over a slow field connection must not be cut off).
fn file_timeout(size: u64) -> Duration {
    Duration::from_secs(300_u64.saturating_add(size / 65_536))
}

/// Like [`answer`] for requests whose success has no body.
async fn answer_empty(
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<(), SyncError> {
    let response = response.map_err(|e| unreachable(&e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(SyncError::Refused(describe(&text)));
    }
    Err(SyncError::Protocol(format!(
        "{status}: {}",
        describe(&text)
    )))
}
