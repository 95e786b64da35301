//! The HTTP transport: `/api/sync/v1` on the lab instance, authenticated by the device
//! credential. HTTPS (rustls, Mozilla's roots or the lab's own CA); plain HTTP only to a
//! loopback address, since it would carry the notebook and the credential in clear.
//!
//! Timeouts: connecting (TCP and TLS) gives up after [`CONNECT_TIMEOUT`]; a request then has
//! 5 minutes in all (a file transfer more, by its size). Within that, every request gives up
//! when the server sends nothing for the transport's stall timeout ([`STALL_TIMEOUT`] in a
//! background sync, [`INTERACTIVE_STALL_TIMEOUT`] when a user waits for a file, opened or
//! needed by an export), so a network that hangs rather than refusing (a captive portal, a
//! dying link, a firewall dropping packets) is seen as unreachable within about that time,
//! while a large transfer over a slow link is never cut off as long as bytes keep moving:
//! - the answer's headers must come within the stall timeout plus the time a slow but alive
//!   link ([`SLOW_LINK_BYTES_PER_SEC`]) takes to send the request's body (a JSON body is
//!   serialized first, so its length is known);
//! - then each chunk of the answer's body must come within the stall timeout (JSON answers
//!   are read chunk by chunk, then decoded; so are file downloads);
//! - a file upload, whose body is a stream read from disk, gives up when the connection has
//!   not taken a chunk for the stall timeout (the stream's polls are timed), and when the
//!   answer's headers do not come within the stall timeout after its last chunk was taken,
//!   plus the time a slow link takes to send what may still wait in the connection's buffers
//!   (the file, at most [`IN_FLIGHT_BOUND`]).
//!
//! Such a stall is [`SyncError::Unreachable`]: "the server sent nothing for N s (the network
//! seems to hang)", N being how long it waited.

use crate::{PullSink, SyncError, Transport};
use cahier_store::blobs::BlobStore;
use cahier_store::sync::proto::{
    BookingAnswer, BookingRequests, FeedResponse, Preferences, PreferencesAnswer, PullDoc,
    PullEntry, PushDoc, PushResult, Reference, RegisterRequest, RegisterResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// How long connecting to the server (TCP and the TLS handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request of a background sync may go without the server sending anything.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a file download may go without receiving a byte while a user waits for it.
pub const INTERACTIVE_STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The speed of a slow but alive link: a request body of N bytes may take N / this many
/// seconds to send before the stall timeout starts counting for the answer's headers.
pub const SLOW_LINK_BYTES_PER_SEC: u64 = 16 * 1024;
/// At most this much of a file upload is counted as possibly still waiting in the
/// connection's buffers once its last chunk was taken. The kernel's send buffer grows with
/// the congestion window: on a slow link it stays well under this unless the round trip
/// itself takes many seconds.
pub const IN_FLIGHT_BOUND: u64 = 1024 * 1024;

/// A connection to a lab instance for one device.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    base: String,
    credential: String,
    /// How long a request may go without the server sending anything
    /// ([`HttpTransport::with_stall_timeout`]).
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

/// The time a slow but alive link ([`SLOW_LINK_BYTES_PER_SEC`]) takes to send `bytes`, in
/// whole seconds (rounded up).
fn sending_time(bytes: u64) -> Duration {
    Duration::from_secs(bytes.div_ceil(SLOW_LINK_BYTES_PER_SEC))
}

/// A request body in JSON, serialized before the request goes out (its length sets how long
/// the answer may take: [`send`]).
fn json_body(body: &impl Serialize) -> Result<Vec<u8>, SyncError> {
    serde_json::to_vec(body).map_err(|e| SyncError::Protocol(format!("encoding the request: {e}")))
}

/// Sends a request with its JSON body, if any, and waits for the answer's headers: the stall
/// timeout, plus the time a slow link takes to send the body.
async fn send(
    request: reqwest::RequestBuilder,
    body: Option<Vec<u8>>,
    stall: Duration,
) -> Result<reqwest::Response, SyncError> {
    let length = body.as_ref().map_or(0, Vec::len);
    let wait = stall + sending_time(u64::try_from(length).unwrap_or(u64::MAX));
    let request = match body {
        Some(body) => request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body),
        None => request,
    };
    tokio::time::timeout(wait, request.send())
        .await
        .map_err(|_| stalled(wait))?
        .map_err(|e| unreachable(&e))
}

/// The whole body of an answer, each chunk within the stall timeout.
async fn read_body(mut response: reqwest::Response, stall: Duration) -> Result<Vec<u8>, SyncError> {
    let mut body = Vec::new();
    while let Some(chunk) = tokio::time::timeout(stall, response.chunk())
        .await
        .map_err(|_| stalled(stall))?
        .map_err(|e| unreachable(&e))?
    {
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The body of a successful answer; an error status is [`SyncError::Refused`] (401, 403) or
/// [`SyncError::Protocol`], with the server's message.
async fn checked_body(response: reqwest::Response, stall: Duration) -> Result<Vec<u8>, SyncError> {
    let status = response.status();
    if status.is_success() {
        return read_body(response, stall).await;
    }
    let text = read_body(response, stall)
        .await
        .map(|body| String::from_utf8_lossy(&body).into_owned())
        .unwrap_or_default();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(SyncError::Refused(describe(&text)));
    }
    Err(SyncError::Protocol(format!(
        "{status}: {}",
        describe(&text)
    )))
}

/// A JSON answer, read within the stall timeout ([`checked_body`]), then decoded.
async fn answer<T: DeserializeOwned>(
    response: reqwest::Response,
    stall: Duration,
) -> Result<T, SyncError> {
    let body = checked_body(response, stall).await?;
    serde_json::from_slice(&body).map_err(|e| SyncError::Protocol(e.to_string()))
}

/// Like [`answer`] for requests whose success has no body worth reading.
async fn answer_empty(response: reqwest::Response, stall: Duration) -> Result<(), SyncError> {
    checked_body(response, stall).await.map(drop)
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
        let response = send(
            client.post(format!("{base}/devices")),
            Some(json_body(&request)?),
            STALL_TIMEOUT,
        )
        .await?;
        let registered: RegisterResponse = answer(response, STALL_TIMEOUT).await?;
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

    /// The same transport (sharing its connections) whose requests give up after `stall`
    /// without a byte from the server (see the module's documentation):
    /// [`INTERACTIVE_STALL_TIMEOUT`] for a user who waits for a file.
    #[must_use]
    pub fn with_stall_timeout(mut self, stall: Duration) -> Self {
        self.stall = stall;
        self
    }

    /// How long a request may go without a byte from the server.
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

    /// Sends a request of this device, with its JSON body if any, and waits for the answer's
    /// headers ([`send`]): every request but the file transfers goes through here.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        body: Option<&impl Serialize>,
    ) -> Result<reqwest::Response, SyncError> {
        let body = body.map(json_body).transpose()?;
        send(self.auth(request), body, self.stall).await
    }

    /// [`HttpTransport::send`], then the JSON answer ([`answer`]).
    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        body: Option<&impl Serialize>,
    ) -> Result<T, SyncError> {
        let response = self.send(request, body).await?;
        answer(response, self.stall).await
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}/{path}", self.base))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(format!("{}/{path}", self.base))
    }
}

/// No request body.
const NO_BODY: Option<&()> = None;

impl Transport for HttpTransport {
    async fn reference(&self) -> Result<Reference, SyncError> {
        self.call(self.get("reference"), NO_BODY).await
    }

    async fn reference_if_changed(
        &self,
        held: Option<&str>,
    ) -> Result<Option<Reference>, SyncError> {
        let mut request = self.get("reference");
        if let Some(held) = held {
            request = request.header(reqwest::header::IF_NONE_MATCH, format!("\"{held}\""));
        }
        let response = self.send(request, NO_BODY).await?;
        if response.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        // The version travels in the body too (`Reference::version`).
        answer(response, self.stall).await.map(Some)
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
        self.call(self.post("push"), Some(&body)).await
    }

    async fn feed(&self, since: i64, limit: i64) -> Result<FeedResponse, SyncError> {
        self.call(
            self.get(&format!("feed?since={since}&limit={limit}")),
            NO_BODY,
        )
        .await
    }

    async fn pull(&self, docs: Vec<PullDoc>) -> Result<Vec<PullEntry>, SyncError> {
        self.call(
            self.post("pull"),
            Some(&serde_json::json!({ "docs": docs })),
        )
        .await
    }

    async fn pull_parts(&self, docs: Vec<PullDoc>, sink: &PullSink) -> Result<(), SyncError> {
        let response = self
            .send(
                self.post("pull"),
                Some(&serde_json::json!({ "docs": docs })),
            )
            .await?;
        if !response.status().is_success() {
            // An error status: its message, as for any request.
            checked_body(response, self.stall).await?;
            return Err(SyncError::Protocol("the pull was refused".into()));
        }
        // Each chunk within the stall timeout; the entries of every complete line handed on.
        let mut response = response;
        let mut lines = EntryLines::default();
        while let Some(chunk) = tokio::time::timeout(self.stall, response.chunk())
            .await
            .map_err(|_| stalled(self.stall))?
            .map_err(|e| unreachable(&e))?
        {
            let entries = lines.feed(&chunk)?;
            if !sink.send(entries).await {
                return Ok(());
            }
        }
        sink.send(lines.finish()?).await;
        Ok(())
    }

    async fn revoked(&self, uuids: Vec<String>) -> Result<Vec<String>, SyncError> {
        let answer: serde_json::Value = self
            .call(
                self.post("check"),
                Some(&serde_json::json!({ "uuids": uuids })),
            )
            .await?;
        serde_json::from_value(answer.get("revoked").cloned().unwrap_or_default())
            .map_err(|e| SyncError::Protocol(e.to_string()))
    }

    async fn bookings(&self, body: BookingRequests) -> Result<Option<BookingAnswer>, SyncError> {
        let response = self.send(self.post("bookings"), Some(&body)).await?;
        // A lab server older than booking requests: they wait on the device.
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        answer(response, self.stall).await.map(Some)
    }

    async fn feed_in_history(
        &self,
        since: i64,
        limit: i64,
        history: Option<&str>,
        pushed: Option<&str>,
    ) -> Result<FeedResponse, SyncError> {
        let mut request = self
            .get("feed")
            .query(&[("since", since), ("limit", limit)]);
        if let Some(history) = history {
            request = request.query(&[("history", history)]);
        }
        if let Some(pushed) = pushed {
            request = request.query(&[("pushed", pushed)]);
        }
        self.call(request, NO_BODY).await
    }

    async fn preferences(&self, preferences: Preferences) -> Result<bool, SyncError> {
        let response = self
            .send(self.post("preferences"), Some(&preferences))
            .await?;
        // A lab server older than this: the choice waits on the device.
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        let _: PreferencesAnswer = answer(response, self.stall).await?;
        Ok(true)
    }

    async fn has_blob(&self, sha256: &str) -> Result<bool, SyncError> {
        let response = self
            .send(self.client.head(self.blob_url(sha256)?), NO_BODY)
            .await?;
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
        let progress = Arc::new(Mutex::new(Sending {
            last: Instant::now(),
            reading: false,
            taken: 0,
            ended: size == 0,
        }));
        // Read (and decrypt) from disk as the request goes out: memory stays flat whatever
        // the file size. Each poll of the stream is noted: the connection took what it had.
        let noted = progress.clone();
        let stream =
            futures_util::stream::unfold((reader, noted), move |(mut reader, noted)| async move {
                note(&noted, |sending| sending.reading = true);
                match reader.next_chunk().await {
                    Ok(Some(chunk)) => {
                        let length = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
                        note(&noted, |sending| {
                            sending.reading = false;
                            sending.taken = sending.taken.saturating_add(length);
                            sending.ended = sending.taken >= size;
                        });
                        Some((Ok(chunk), (reader, noted)))
                    }
                    Ok(None) => {
                        note(&noted, |sending| {
                            sending.reading = false;
                            sending.ended = true;
                        });
                        None
                    }
                    Err(error) => {
                        note(&noted, |sending| sending.reading = false);
                        Some((Err(std::io::Error::other(error)), (reader, noted)))
                    }
                }
            });
        let request = self
            .auth(self.client.put(self.blob_url(sha256)?))
            .timeout(file_timeout(size))
            .header(reqwest::header::CONTENT_LENGTH, size)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream))
            .send();
        // What may still wait in the connection's buffers once the last chunk was taken.
        let tail = sending_time(size.min(IN_FLIGHT_BOUND));
        let response = watch_upload(request, &progress, self.stall, tail).await?;
        answer_empty(response, self.stall).await
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

/// Where a file upload stands, noted by its body stream as the connection takes it.
#[derive(Debug)]
struct Sending {
    /// When the stream was last polled, or last handed a chunk.
    last: Instant,
    /// The stream is reading from disk (the connection waits for it, not the reverse).
    reading: bool,
    /// Bytes handed to the connection.
    taken: u64,
    /// The whole file was handed to the connection.
    ended: bool,
}

fn note(progress: &Mutex<Sending>, change: impl FnOnce(&mut Sending)) {
    let mut sending = progress.lock().unwrap_or_else(PoisonError::into_inner);
    sending.last = Instant::now();
    change(&mut sending);
}

/// Waits for the answer's headers to a file upload: gives up when the connection has not
/// taken a chunk for `stall`, or, once it took the last one, when nothing came for `stall`
/// plus `tail` (the time a slow link takes to send what may still be buffered).
async fn watch_upload(
    request: impl Future<Output = Result<reqwest::Response, reqwest::Error>>,
    progress: &Mutex<Sending>,
    stall: Duration,
    tail: Duration,
) -> Result<reqwest::Response, SyncError> {
    tokio::pin!(request);
    loop {
        let (last, reading, ended) = {
            let sending = progress.lock().unwrap_or_else(PoisonError::into_inner);
            (sending.last, sending.reading, sending.ended)
        };
        let limit = if ended { stall + tail } else { stall };
        // While the file is read from disk, the network is not to blame: look again later.
        let deadline = if reading {
            Instant::now() + stall
        } else {
            last + limit
        };
        if !reading && Instant::now() >= deadline {
            return Err(stalled(limit));
        }
        tokio::select! {
            biased;
            response = &mut request => return response.map_err(|e| unreachable(&e)),
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Reads a pull answer as it arrives: a JSON array with one entry per line, as a lab server
/// streams it (docs/SYNC.md, "A streamed pull"), or a whole array on one line (servers before
/// session 12).
#[derive(Default)]
struct EntryLines {
    pending: Vec<u8>,
    opened: bool,
    closed: bool,
}

impl EntryLines {
    /// The entries of the lines this chunk completes.
    fn feed(&mut self, chunk: &[u8]) -> Result<Vec<PullEntry>, SyncError> {
        self.pending.extend_from_slice(chunk);
        let Some(last_newline) = self.pending.iter().rposition(|b| *b == b'\n') else {
            return Ok(Vec::new());
        };
        let rest = self.pending.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut self.pending, rest);
        let mut entries = Vec::new();
        for line in complete.split(|b| *b == b'\n') {
            self.line(line, &mut entries)?;
        }
        Ok(entries)
    }

    /// The entries of the last line; an error if the array never closed.
    fn finish(mut self) -> Result<Vec<PullEntry>, SyncError> {
        let last = std::mem::take(&mut self.pending);
        let mut entries = Vec::new();
        self.line(&last, &mut entries)?;
        if !self.closed {
            return Err(SyncError::Protocol(
                "the pull answer ended before its end".into(),
            ));
        }
        Ok(entries)
    }

    fn line(&mut self, line: &[u8], entries: &mut Vec<PullEntry>) -> Result<(), SyncError> {
        let line = line.trim_ascii();
        let line = line.strip_suffix(b",").unwrap_or(line);
        let malformed = |e: serde_json::Error| SyncError::Protocol(format!("a pull entry: {e}"));
        match line {
            b"" => {}
            b"[" if !self.opened => self.opened = true,
            b"]" if self.opened && !self.closed => self.closed = true,
            [b'[', ..] if !self.opened => {
                // A whole array at once.
                entries.extend(serde_json::from_slice::<Vec<PullEntry>>(line).map_err(malformed)?);
                self.opened = true;
                self.closed = true;
            }
            [b'{', ..] if self.opened && !self.closed => {
                entries.push(serde_json::from_slice(line).map_err(malformed)?);
            }
            _ => {
                return Err(SyncError::Protocol(
                    "the pull answer is not an array of entries".into(),
                ));
            }
        }
        Ok(())
    }
}

/// The error of a request during which the server sent nothing for `stall`.
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
