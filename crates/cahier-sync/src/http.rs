//! The HTTP transport: `/api/sync/v1` on the lab instance, authenticated by the device
//! credential. Plain HTTP on loopback or HTTPS (rustls) elsewhere.

use crate::{SyncError, Transport};
use cahier_store::sync::proto::{
    FeedResponse, PullDoc, PullEntry, PushDoc, PushResult, Reference, RegisterRequest,
    RegisterResponse,
};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// A connection to a lab instance for one device.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    base: String,
    credential: String,
}

fn client() -> Result<reqwest::Client, SyncError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(300))
        .build()
        .map_err(|e| SyncError::Unreachable(e.to_string()))
}

async fn answer<T: DeserializeOwned>(
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, SyncError> {
    let response = response.map_err(|e| SyncError::Unreachable(e.to_string()))?;
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
        email: &str,
        password: &str,
        name: &str,
    ) -> Result<(Self, RegisterResponse), SyncError> {
        let client = client()?;
        let base = format!("{}/api/sync/v1", server.trim_end_matches('/'));
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
        };
        Ok((transport, registered))
    }

    /// A transport for an already registered device.
    pub fn new(server: &str, credential: &str) -> Result<Self, SyncError> {
        Ok(Self {
            client: client()?,
            base: format!("{}/api/sync/v1", server.trim_end_matches('/')),
            credential: credential.into(),
        })
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

    async fn push(&self, docs: Vec<PushDoc>) -> Result<Vec<PushResult>, SyncError> {
        answer(
            self.auth(self.client.post(format!("{}/push", self.base)))
                .json(&serde_json::json!({ "docs": docs }))
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
}
