//! The browser harness: a chromedriver child process on a port it picks itself and a headless
//! Chromium session with a fresh profile ([`Browser`]), pointed at a Cahier server: the test
//! kit's in-process one ([`Ui`]) or any other base URL (a `cahier serve` process). Every wait
//! is bounded and polls; nothing sleeps for a fixed time.

use cahier_testkit::{TestApp, TestUser};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// How long any one condition may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);
/// How often conditions are checked.
const POLL: Duration = Duration::from_millis(100);

const INSTALL_HINT: &str = "browser tests need Debian's `chromium` and `chromium-driver` packages \
    (apt-get install chromium chromium-driver; CI installs them), or set CHROMIUM_BIN and \
    CHROMEDRIVER_BIN to their paths";

fn program(name: &str, var: &str, default: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var_os(var).unwrap_or_else(|| default.into()));
    assert!(
        path.is_file(),
        "{name} not found at {} (override with {var}): {INSTALL_HINT}",
        path.display()
    );
    path
}

/// A chromedriver child process; on drop it kills the browsers it started, then itself.
struct Chromedriver {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
    output: Arc<Mutex<String>>,
}

impl Chromedriver {
    fn start(program: &Path) -> Chromedriver {
        let profile = tempfile::Builder::new()
            .prefix("cahier-chromium-")
            .tempdir()
            .expect("temp dir for the Chromium profile");
        // `--port=0`: chromedriver picks a free port and prints it, so parallel tests never
        // race for one.
        let mut child = Command::new(program)
            .args(["--port=0", "--log-level=WARNING"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}: {INSTALL_HINT}", program.display()));
        let output = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let log = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|p| p.trim().trim_end_matches('.').parse::<u16>().ok())
                {
                    let _ = port_tx.send(port);
                }
                let mut log = log.lock().expect("log");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut stderr = child.stderr.take().expect("stderr");
        let log = output.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buffer) {
                log.lock()
                    .expect("log")
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        let mut driver = Chromedriver {
            child,
            url: String::new(),
            profile,
            output,
        };
        match port_rx.recv_timeout(WAIT) {
            Ok(port) => driver.url = format!("http://127.0.0.1:{port}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                "{} exited before reporting its port ({:?}): {INSTALL_HINT}; output:\n{}",
                program.display(),
                driver.child.wait(),
                driver.output()
            ),
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "{} did not report its port within {WAIT:?}; output:\n{}",
                program.display(),
                driver.output()
            ),
        }
        driver
    }

    fn output(&self) -> String {
        self.output.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until chromedriver answers `/status` with `ready: true`.
    async fn wait_ready(&mut self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(response) = http.get(format!("{}/status", self.url)).send().await
                && let Ok(status) = response.json::<Value>().await
                && status["value"]["ready"] == true
            {
                return;
            }
            if let Ok(Some(exit)) = self.child.try_wait() {
                panic!("chromedriver exited ({exit}); output:\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver at {} not ready within {WAIT:?}; output:\n{}",
                self.url,
                self.output()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Ids of the browser processes that use this driver's profile.
    fn browser_pids(&self) -> Vec<u32> {
        let flag = format!("--user-data-dir={}", self.profile.path().display());
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                    cmdline.split(|b| *b == 0).any(|arg| arg == flag.as_bytes())
                })
            })
            .collect()
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // A session that was closed has already quit its browser; after a failure, kill it by
        // id (only processes started with this test's own profile directory).
        for pid in self.browser_pids() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where screenshots go: `$CARGO_TARGET_DIR/screenshots`, else `<target>/screenshots` found
/// from the test binary's path (`<target>/debug/deps/browser-…`).
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::current_exe()
                .ok()?
                .ancestors()
                .nth(3)
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(std::env::temp_dir);
    target.join("screenshots")
}

/// A headless Chromium (and its chromedriver) pointed at one server's base URL.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Chromedriver,
    base: String,
}

impl Browser {
    /// Starts chromedriver and a browser with a fresh profile, for the server at `base`
    /// (`http://127.0.0.1:port`).
    pub async fn launch(base: &str) -> Browser {
        let chromium = program("Chromium", "CHROMIUM_BIN", "/usr/bin/chromium");
        let chromedriver = program("chromedriver", "CHROMEDRIVER_BIN", "/usr/bin/chromedriver");
        let mut driver = Chromedriver::start(&chromedriver);
        driver.wait_ready().await;
        let profile = driver.profile.path().display().to_string();
        let capabilities = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": { "pageLoad": 20_000, "script": 10_000, "implicit": 0 },
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--password-store=basic",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={profile}"),
                ],
                // Our users are French speakers: the browser asks for French, as theirs do.
                "prefs": { "intl.accept_languages": "fr-FR,fr" },
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("capabilities are an object")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = match ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
        {
            Ok(client) => client,
            Err(error) => panic!(
                "could not open a Chromium session ({error}); is {} a working Chromium? \
                 chromedriver output:\n{}",
                chromium.display(),
                driver.output()
            ),
        };
        Browser {
            client,
            driver,
            base: base.to_owned(),
        }
    }

    /// Ends the browser session and stops chromedriver.
    pub async fn finish(self) {
        let Browser { client, driver, .. } = self;
        let _ = client.close().await;
        drop(driver);
    }

    /// The absolute URL of `path` on the server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Opens `path` and waits for the page to load.
    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&self.url(path))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    /// The path of the current page (no query, no fragment).
    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("current URL")
            .path()
            .to_owned()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its result.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls the JavaScript expression `expr` until it is truthy; returns its value. Errors
    /// (a page being replaced) count as "not yet".
    pub async fn wait_js(&self, what: &str, expr: &str) -> Value {
        let script = format!("return ({expr});");
        let deadline = Instant::now() + WAIT;
        let mut last: String;
        loop {
            match self.client.execute(&script, vec![]).await {
                Ok(value) if truthy(&value) => return value,
                Ok(value) => last = format!("last value: {value}"),
                Err(error) => last = format!("last error: {error}"),
            }
            if Instant::now() >= deadline {
                let url = self
                    .client
                    .current_url()
                    .await
                    .map(|u| u.to_string())
                    .unwrap_or_default();
                panic!("timed out after {WAIT:?} waiting for {what} (`{expr}`) on {url}; {last}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for an element matching `css` and returns it.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) => return element,
                Err(error) if Instant::now() >= deadline => {
                    let url = self
                        .client
                        .current_url()
                        .await
                        .map(|u| u.to_string())
                        .unwrap_or_default();
                    panic!("no element `{css}` on {url} after {WAIT:?}: {error}")
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Waits until the current path matches `pattern` (a JavaScript regular expression).
    pub async fn wait_path(&self, pattern: &str) -> String {
        let expr = format!(
            "new RegExp({}).test(location.pathname) && document.readyState === 'complete' && location.pathname",
            json!(pattern)
        );
        self.wait_js(&format!("a page at {pattern}"), &expr)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click `{css}`: {e}"));
    }

    /// Types `text` into the element matching `css` (focusing it first, as a click would).
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into `{css}`: {e}"));
    }

    /// Presses keys one after the other on whatever has the focus, as a keyboard does.
    pub async fn press(&self, keys: &[char]) {
        let mut actions = KeyActions::new("keyboard".into());
        for &key in keys {
            actions = actions
                .then(KeyAction::Down { value: key })
                .then(KeyAction::Up { value: key });
        }
        self.client
            .perform_actions(actions)
            .await
            .unwrap_or_else(|e| panic!("press {keys:?}: {e}"));
    }

    /// Presses `key` while holding `modifier` (e.g. Ctrl+S).
    pub async fn chord(&self, modifier: char, key: char) {
        let actions = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: modifier })
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key })
            .then(KeyAction::Up { value: modifier });
        self.client
            .perform_actions(actions)
            .await
            .unwrap_or_else(|e| panic!("chord: {e}"));
    }

    /// Signs in through the login form and waits for the dashboard.
    pub async fn sign_in_as(&self, email: &str, password: &str) {
        self.goto("/login").await;
        self.type_into("#email", email).await;
        self.type_into("#password", password).await;
        self.click("main form[action='/login'] button[type=submit]")
            .await;
        self.wait_path("^/$").await;
        self.find("main h1").await;
    }

    /// Saves a PNG of the current page as `<target>/screenshots/<name>.png` (for people
    /// reviewing the UI; nothing asserts on pixels) and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("create screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        println!("screenshot: {}", path.display());
        path
    }
}

/// A Cahier server (the in-process test kit) and a headless Chromium driving it. Every
/// browser helper of [`Browser`] is available on it.
pub struct Ui {
    browser: Browser,
    /// The server.
    pub app: TestApp,
}

impl std::ops::Deref for Ui {
    type Target = Browser;
    fn deref(&self) -> &Browser {
        &self.browser
    }
}

impl Ui {
    /// Starts a server, chromedriver and a browser with a fresh profile.
    pub async fn launch() -> Ui {
        let app = TestApp::spawn().await;
        let browser = Browser::launch(&app.url).await;
        Ui { browser, app }
    }

    /// Ends the browser session and stops the server.
    pub async fn finish(self) {
        let Ui { browser, app } = self;
        browser.finish().await;
        app.stop().await;
    }

    /// Signs in through the login form and waits for the dashboard.
    pub async fn sign_in(&self, user: &TestUser) {
        self.browser.sign_in_as(&user.email, &user.password).await;
    }
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}
