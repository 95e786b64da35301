//! A loopback HTTP proxy that misbehaves on request, put between a field replica and its lab
//! server: it can deliver a request twice, hold one back and deliver it after later ones,
//! replay any earlier request, cut a request or response body after N bytes, go silent after
//! delivering a request (before the answer's headers or after N bytes of its body, as a network
//! that hangs), or trickle an answer out slowly. Everything it forwarded is recorded, so a test
//! can replay it later. The upstream can be switched (a server restored from a backup at the
//! same address).

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to do to the next request whose `"METHOD /path"` starts with the given prefix.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Deliver it twice to the server; the client gets the second answer.
    Duplicate(&'static str),
    /// Keep it back (the client gets 502, as from a gateway that timed out); delivered by
    /// [`FaultProxy::release_held`], after whatever came since.
    Hold(&'static str),
    /// Deliver it, then cut the answer's body after N bytes (headers already sent).
    CutResponse(&'static str, usize),
    /// Deliver only the first N bytes of its body, then break the connection to the server;
    /// the client gets 502.
    CutRequest(&'static str, usize),
    /// Deliver it, then send the client nothing at all (no status, no headers), the
    /// connection left open: a network that stopped answering.
    Hang(&'static str),
    /// Deliver it, then send the answer's headers and its first N bytes, and nothing more,
    /// the connection left open.
    HangAfter(&'static str, usize),
    /// Deliver it, then send the answer's body in pieces of N bytes, each after the pause: a
    /// slow but alive link.
    Trickle(&'static str, usize, Duration),
}

impl Fault {
    fn prefix(&self) -> &'static str {
        match self {
            Fault::Duplicate(p) | Fault::Hold(p) => p,
            Fault::CutResponse(p, _) | Fault::CutRequest(p, _) => p,
            Fault::Hang(p) | Fault::HangAfter(p, _) | Fault::Trickle(p, ..) => p,
        }
    }
}

/// One request as the client sent it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.uri.path())
    }
}

#[derive(Default)]
struct Inner {
    upstream: String,
    faults: Vec<Fault>,
    log: Vec<Recorded>,
    held: Vec<Recorded>,
    /// Faults that fired, in order (`"Duplicate POST /api/sync/v1/push"`).
    fired: Vec<String>,
    /// Most feed items per page the server is asked for (`limit` of `GET /feed` lowered).
    feed_limit: Option<u32>,
}

/// The running proxy.
#[derive(Clone)]
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`, to give the replica as its server.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    client: reqwest::Client,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> FaultProxy {
        let inner = Arc::new(Mutex::new(Inner {
            upstream: upstream.trim_end_matches('/').to_owned(),
            ..Default::default()
        }));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let proxy = FaultProxy { url, inner, client };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(proxy.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        proxy
    }

    /// Arms a fault for the next matching request (each fires once, in order of arming).
    pub fn arm(&self, fault: Fault) {
        self.inner.lock().unwrap().faults.push(fault);
    }

    /// Faults still armed (not yet met by a matching request).
    pub fn armed(&self) -> usize {
        self.inner.lock().unwrap().faults.len()
    }

    /// Faults that fired so far.
    pub fn fired(&self) -> Vec<String> {
        self.inner.lock().unwrap().fired.clone()
    }

    /// Sends the next requests to another server.
    pub fn set_upstream(&self, upstream: &str) {
        self.inner.lock().unwrap().upstream = upstream.trim_end_matches('/').to_owned();
    }

    /// Asks the server for at most `limit` feed items per page (many pages from few entries).
    pub fn cap_feed_pages(&self, limit: u32) {
        self.inner.lock().unwrap().feed_limit = Some(limit);
    }

    /// Every request received so far, in order.
    pub fn log(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().log.clone()
    }

    /// Delivers the held requests now, oldest first; returns the server's statuses.
    pub async fn release_held(&self) -> Vec<u16> {
        let held = std::mem::take(&mut self.inner.lock().unwrap().held);
        let mut statuses = Vec::new();
        for request in held {
            let (status, _, _) = self.forward(&request).await;
            statuses.push(status.as_u16());
        }
        statuses
    }

    /// Sends an earlier request to the server again; returns its status and body.
    pub async fn replay(&self, request: &Recorded) -> (u16, Bytes) {
        let (status, _, body) = self.forward(request).await;
        (status.as_u16(), body)
    }

    fn upstream_request(&self, request: &Recorded) -> reqwest::RequestBuilder {
        let (upstream, feed_limit) = {
            let inner = self.inner.lock().unwrap();
            (inner.upstream.clone(), inner.feed_limit)
        };
        let mut path = request
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        if let (Some(cap), Some(query)) = (feed_limit, request.uri.query())
            && request.uri.path().ends_with("/feed")
        {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.strip_prefix("limit=") {
                    Some(limit) => {
                        format!("limit={}", limit.parse::<u32>().unwrap().min(cap))
                    }
                    None => pair.to_owned(),
                })
                .collect();
            path = format!("{}?{}", request.uri.path(), query.join("&"));
        }
        let mut builder = self
            .client
            .request(request.method.clone(), format!("{upstream}{path}"));
        for (name, value) in &request.headers {
            if !matches!(
                name.as_str(),
                "host" | "content-length" | "transfer-encoding" | "connection"
            ) {
                builder = builder.header(name, value);
            }
        }
        builder
    }

    async fn forward(&self, request: &Recorded) -> (StatusCode, HeaderMap, Bytes) {
        let response = self
            .upstream_request(request)
            .body(request.body.clone())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap();
        (status, headers, body)
    }

    fn take_fault(&self, request: &Recorded) -> Option<Fault> {
        let key = request.key();
        let mut inner = self.inner.lock().unwrap();
        inner.log.push(request.clone());
        let index = inner
            .faults
            .iter()
            .position(|f| key.starts_with(f.prefix()))?;
        let fault = inner.faults.remove(index);
        let name = match &fault {
            Fault::Duplicate(_) => "Duplicate",
            Fault::Hold(_) => "Hold",
            Fault::CutResponse(..) => "CutResponse",
            Fault::CutRequest(..) => "CutRequest",
            Fault::Hang(_) => "Hang",
            Fault::HangAfter(..) => "HangAfter",
            Fault::Trickle(..) => "Trickle",
        };
        inner.fired.push(format!("{name} {key}"));
        if let Fault::Hold(_) = fault {
            inner.held.push(request.clone());
        }
        Some(fault)
    }
}

fn gateway_error() -> Response {
    (
        StatusCode::BAD_GATEWAY,
        "the fault proxy broke this request",
    )
        .into_response()
}

fn answer(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in &headers {
        if !matches!(name.as_str(), "transfer-encoding" | "connection") {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}

async fn handle(State(proxy): State<FaultProxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let recorded = Recorded {
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        body,
    };
    match proxy.take_fault(&recorded) {
        None => {
            let (status, headers, body) = proxy.forward(&recorded).await;
            answer(status, headers, Body::from(body))
        }
        Some(Fault::Duplicate(_)) => {
            let _ = proxy.forward(&recorded).await;
            let (status, headers, body) = proxy.forward(&recorded).await;
            answer(status, headers, Body::from(body))
        }
        Some(Fault::Hold(_)) => gateway_error(),
        Some(Fault::CutResponse(_, n)) => {
            let (status, headers, body) = proxy.forward(&recorded).await;
            assert!(n < body.len(), "cut at {n} of a {}-byte answer", body.len());
            // The headers (with the full Content-Length) and N bytes go out, then the
            // connection breaks.
            let part = body.slice(..n);
            let stream = futures_util::stream::iter(vec![
                Ok::<Bytes, std::io::Error>(part),
                Err(std::io::Error::other("cut by the fault proxy")),
            ]);
            answer(status, headers, Body::from_stream(stream))
        }
        Some(Fault::CutRequest(_, n)) => {
            assert!(
                n < recorded.body.len(),
                "cut at {n} of a {}-byte body",
                recorded.body.len()
            );
            let part = recorded.body.slice(..n);
            let stream = futures_util::stream::iter(vec![
                Ok::<Bytes, std::io::Error>(part),
                Err(std::io::Error::other("cut by the fault proxy")),
            ]);
            // The full length is announced and only N bytes follow: the server sees a body
            // that stops midway.
            let result = proxy
                .upstream_request(&recorded)
                .header("content-length", recorded.body.len())
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await;
            assert!(
                result.is_err(),
                "the server answered a cut request: {result:?}"
            );
            gateway_error()
        }
        Some(Fault::Hang(_)) => {
            let _ = proxy.forward(&recorded).await;
            // Nothing goes back, ever: the client has to give up.
            std::future::pending().await
        }
        Some(Fault::HangAfter(_, n)) => {
            let (status, headers, body) = proxy.forward(&recorded).await;
            assert!(
                n < body.len(),
                "hang at {n} of a {}-byte answer",
                body.len()
            );
            let part = body.slice(..n);
            let stream = futures_util::stream::iter(vec![Ok::<Bytes, std::io::Error>(part)])
                .chain(futures_util::stream::pending());
            answer(status, headers, Body::from_stream(stream))
        }
        Some(Fault::Trickle(_, piece, pause)) => {
            let (status, headers, body) = proxy.forward(&recorded).await;
            let pieces: Vec<Bytes> = body.chunks(piece).map(Bytes::copy_from_slice).collect();
            let stream = futures_util::stream::iter(pieces).then(move |chunk| async move {
                tokio::time::sleep(pause).await;
                Ok::<Bytes, std::io::Error>(chunk)
            });
            answer(status, headers, Body::from_stream(stream))
        }
    }
}
