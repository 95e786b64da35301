//! Test helpers: [`TestApp::spawn`] runs the production startup ([`cahier::start`]) on
//! `127.0.0.1:0` over a temporary data directory; helpers create users and keys and give HTTP
//! clients for the API (key in `Authorization`) and for the UI (cookie jar and CSRF token).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

pub mod python;
pub mod tsa;

use cahier_core::Subject;
use cahier_store::Store;
use cahier_store::accounts::NewUser;

/// A running Cahier server for one test.
pub struct TestApp {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// The store, to seed data or inspect rows directly.
    pub store: Store,
    /// The temporary data directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// The setup link printed on start (the instance starts empty).
    pub setup_url: Option<String>,
    running: Option<cahier::Running>,
}

/// A user created for a test.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// Id.
    pub id: i64,
    /// E-mail.
    pub email: String,
    /// Password in clear.
    pub password: String,
    /// Team id.
    pub team_id: i64,
}

impl TestApp {
    /// Starts a server on a fresh data directory.
    pub async fn spawn() -> TestApp {
        Self::spawn_with_tsa(None).await
    }

    /// Starts a server that asks `tsa` for trusted timestamps.
    pub async fn spawn_with_tsa(tsa: Option<cahier_trace::TsaConfig>) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = cahier::settings::Settings {
            data: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".into(),
            public_url: None,
            max_body_mb: 4,
            // Above the body limit (uploads are not held to it), small enough to cross quickly.
            max_upload_mb: 6,
            tsa,
            audit_anchor_hours: 24,
            sqlite: Default::default(),
            time_zone: cahier_core::zone::Zone::utc(),
        };
        let running = cahier::start(&settings).await.expect("start cahier");
        TestApp {
            url: running.url.clone(),
            store: running.store.clone(),
            setup_url: running.setup_url.clone(),
            dir,
            running: Some(running),
        }
    }

    /// Stops the server gracefully.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await.expect("stop");
        }
    }

    /// Stops the server gracefully and hands over its data directory (removed when the
    /// handle is dropped), for tests that work on the stopped lab's folder.
    pub async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        if let Some(running) = self.running.take() {
            running.stop().await.expect("stop");
        }
        self.dir
    }

    /// Creates a user in `team` (created if missing), admin of it or not.
    pub async fn user(&self, email: &str, team: &str, team_admin: bool) -> TestUser {
        let password = "correct horse battery".to_owned();
        let id = self
            .store
            .create_user(NewUser {
                email: email.into(),
                firstname: email.split('@').next().unwrap_or("user").into(),
                lastname: "Test".into(),
                password: Some(password.clone()),
                is_sysadmin: false,
            })
            .await
            .expect("create user");
        let team_id = self.team(team).await;
        self.store
            .add_member(team_id, id, team_admin)
            .await
            .expect("add member");
        TestUser {
            id,
            email: email.into(),
            password,
            team_id,
        }
    }

    /// The id of a team, created if missing.
    pub async fn team(&self, name: &str) -> i64 {
        match self.store.team_by_name(name).await {
            Ok(team) => team.id,
            Err(_) => self.store.create_team(name).await.expect("create team"),
        }
    }

    /// The policy subject of a user.
    pub async fn subject(&self, user: &TestUser) -> Subject {
        self.store.subject(user.id).await.expect("subject")
    }

    /// A new API key for `user` in their team.
    pub async fn api_key(&self, user: &TestUser, can_write: bool) -> String {
        self.store
            .create_api_key(user.id, user.team_id, "test", can_write)
            .await
            .expect("api key")
            .1
    }

    /// An API client that sends `key` in `Authorization`.
    pub fn api(&self, key: &str) -> Api {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, key.parse().expect("header"));
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Api {
            client,
            base: format!("{}/api/v2", self.url),
        }
    }

    /// A browser-like client (cookie jar, no redirects followed) signed in as `user`.
    pub async fn browser(&self, user: &TestUser) -> Browser {
        let browser = self.anonymous_browser();
        let response = browser
            .post_form(
                "/login",
                &[("email", &user.email), ("password", &user.password)],
            )
            .await;
        assert_eq!(response.status(), 303, "sign-in should redirect");
        browser
    }

    /// A browser-like client that is not signed in.
    pub fn anonymous_browser(&self) -> Browser {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Browser {
            client,
            base: self.url.clone(),
            csrf: std::sync::Mutex::new(None),
        }
    }
}

/// An API v2 client.
pub struct Api {
    /// The underlying client (Authorization header set).
    pub client: reqwest::Client,
    /// `<url>/api/v2`.
    pub base: String,
}

impl Api {
    /// GET `path` (relative to `/api/v2`).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request")
    }
    /// POST JSON.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("request")
    }
    /// PATCH JSON.
    pub async fn patch(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .patch(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("request")
    }
    /// DELETE.
    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request")
    }
    /// POST JSON and return the new id from `Location` (asserting 201).
    pub async fn create(&self, path: &str, body: serde_json::Value) -> i64 {
        let response = self.post(path, body).await;
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap_or("").to_owned());
        assert_eq!(
            status,
            201,
            "create {path}: {}",
            response.text().await.unwrap_or_default()
        );
        location
            .expect("Location header")
            .rsplit('/')
            .next()
            .expect("id")
            .parse()
            .expect("integer id")
    }
    /// GET and parse JSON, asserting 200.
    pub async fn json(&self, path: &str) -> serde_json::Value {
        let response = self.get(path).await;
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).expect("json")
    }
}

/// A browser-like client for the UI.
pub struct Browser {
    /// The underlying client (cookie jar).
    pub client: reqwest::Client,
    /// Base URL.
    pub base: String,
    csrf: std::sync::Mutex<Option<String>>,
}

impl Browser {
    /// A browser-like client for another server (a field replica's UI, which signs every
    /// visitor in as its user).
    pub fn at(base: &str) -> Browser {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Browser {
            client,
            base: base.trim_end_matches('/').to_owned(),
            csrf: std::sync::Mutex::new(None),
        }
    }

    /// GET a page.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request")
    }

    /// GET a page and return its HTML, asserting 200.
    pub async fn page(&self, path: &str) -> String {
        let response = self.get(path).await;
        let status = response.status();
        let html = response.text().await.expect("body");
        assert_eq!(status, 200, "GET {path}: {html}");
        self.remember_csrf(&html);
        html
    }

    fn remember_csrf(&self, html: &str) {
        if let Some(token) = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
        {
            *self.csrf.lock().expect("lock") = Some(token.to_owned());
        }
    }

    /// The CSRF token (fetched from a page if not known yet).
    pub async fn csrf(&self) -> String {
        if let Some(token) = self.csrf.lock().expect("lock").clone() {
            return token;
        }
        let html = self.get("/login").await.text().await.expect("body");
        self.remember_csrf(&html);
        self.csrf
            .lock()
            .expect("lock")
            .clone()
            .expect("csrf token in page")
    }

    /// POST a form with the CSRF token added.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let csrf = self.csrf().await;
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf", &csrf));
        self.client
            .post(format!("{}{path}", self.base))
            .form(&form)
            .send()
            .await
            .expect("request")
    }

    /// POST a form without the CSRF token (to test the refusal).
    pub async fn post_form_without_csrf(
        &self,
        path: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .form(fields)
            .send()
            .await
            .expect("request")
    }
}

/// Where the redirect of a response points (path part).
pub fn location(response: &reqwest::Response) -> String {
    let location = response
        .headers()
        .get("location")
        .expect("Location")
        .to_str()
        .expect("text")
        .to_owned();
    match location.find("://") {
        Some(i) => location[i + 3..]
            .find('/')
            .map(|j| location[i + 3 + j..].to_owned())
            .unwrap_or_default(),
        None => location,
    }
}
