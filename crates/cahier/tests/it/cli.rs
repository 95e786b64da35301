//! The `cahier` binary as an administrator runs it: accounts and API keys from the command line
//! on a data directory, then `cahier serve` on the same directory honouring them; and the
//! command line's refusals (non-zero exit, a message on stderr, nothing on stdout).

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cahier");

/// A `cahier` command with the environment cleared of settings that would redirect it.
fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).env("CAHIER_LOG", "warn");
    for variable in [
        "CAHIER_DATA",
        "CAHIER_CONFIG",
        "CAHIER_LISTEN",
        "CAHIER_PUBLIC_URL",
    ] {
        command.env_remove(variable);
    }
    command
}

/// Runs `cahier args…` to completion with `stdin` as its standard input.
fn cahier(args: &[&str], stdin: &str) -> Output {
    let mut child = command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The command may exit before reading (a refused flag): a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Runs a command that must succeed and returns its stdout.
fn succeed(args: &[&str], stdin: &str) -> String {
    let output = cahier(args, stdin);
    assert!(
        output.status.success(),
        "cahier {args:?} failed: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Runs a command that must fail and returns its stderr.
fn fail(args: &[&str], stdin: &str) -> String {
    let output = cahier(args, stdin);
    assert!(!output.status.success(), "cahier {args:?} should fail");
    assert_eq!(
        text(&output.stdout),
        "",
        "nothing on stdout when cahier {args:?} fails"
    );
    let stderr = text(&output.stderr);
    assert!(!stderr.trim().is_empty(), "a message on stderr");
    stderr
}

fn add_user(data: &str, email: &str, stdin: &str) -> Output {
    cahier(
        &[
            "user",
            "add",
            "--data",
            data,
            "--email",
            email,
            "--name",
            "Ada Lovelace",
            "--team",
            "Ecology",
            "--team-admin",
            "--password-stdin",
        ],
        stdin,
    )
}

/// `cahier serve` in the background, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `cahier serve` on a port the system picks and reads its URL from stdout.
    fn start(data: &str) -> Server {
        let mut child = command(&["serve", "--data", data, "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut server = Server {
            child,
            url: String::new(),
        };
        let (lines, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.url.is_empty() {
            let line = received
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("cahier serve prints the URL it is running at");
            if let Some(url) = line.split(" is running at ").nth(1) {
                server.url = url.trim().to_owned();
            }
        }
        assert!(
            server.url.starts_with("http://127.0.0.1:") && !server.url.ends_with(":0"),
            "{}",
            server.url
        );
        server
    }

    /// Polls `/healthz` until it answers 200, for a bounded time.
    async fn wait_healthy(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = client.get(format!("{}/healthz", self.url)).send().await
                && response.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "the server never became healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn is_api_key(key: &str) -> bool {
    key.split_once('-').is_some_and(|(id, secret)| {
        !id.is_empty()
            && id.chars().all(|c| c.is_ascii_digit())
            && secret.len() == 64
            && secret.chars().all(|c| c.is_ascii_hexdigit())
    })
}

#[tokio::test]
async fn users_and_keys_made_on_the_command_line_work_against_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let output = add_user(data, "ada@lab.fr", "analytical engine\n");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("ada@lab.fr"));

    let stdout = succeed(
        &[
            "apikey",
            "add",
            "--data",
            data,
            "--user",
            "ada@lab.fr",
            "--write",
        ],
        "",
    );
    let key = stdout.trim_end_matches('\n');
    assert_eq!(stdout, format!("{key}\n"), "only the key on stdout");
    assert!(is_api_key(key), "{key}");
    let read_only = succeed(
        &["apikey", "add", "--data", data, "--user", "ada@lab.fr"],
        "",
    );
    let read_only = read_only.trim();
    assert!(is_api_key(read_only) && read_only != key);

    let server = Server::start(data);
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    server.wait_healthy(&client).await;
    let api = format!("{}/api/v2", server.url);

    let response = client
        .get(format!("{api}/users/me"))
        .header("authorization", key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["email"], "ada@lab.fr");
    assert_eq!(me["firstname"], "Ada");
    assert_eq!(me["lastname"], "Lovelace");
    assert_eq!(me["is_sysadmin"], 0);
    assert_eq!(
        me["teams"],
        json!([{"id": me["team"], "name": "Ecology", "is_admin": 1}])
    );

    let response = client
        .post(format!("{api}/experiments"))
        .header("authorization", key)
        .json(&json!({"title": "From a script"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let response = client
        .post(format!("{api}/experiments"))
        .header("authorization", read_only)
        .json(&json!({"title": "Refused"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "a key without --write is read-only");
    let response = client
        .get(format!("{api}/experiments"))
        .header("authorization", read_only)
        .send()
        .await
        .unwrap();
    let list: Value = response.json().await.unwrap();
    assert_eq!(list[0]["title"], "From a script");

    // The password read from stdin (without its newline) signs in to the UI.
    let login = client
        .get(format!("{}/login", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = login
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let response = client
        .post(format!("{}/login", server.url))
        .form(&[
            ("email", "ada@lab.fr"),
            ("password", "analytical engine"),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let response = client
        .get(format!("{}/experiments", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("From a script"));
}

#[test]
fn adding_a_user_whose_email_exists_fails_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let first = add_user(data, "ada@lab.fr", "analytical engine\n");
    assert!(first.status.success(), "{}", text(&first.stderr));
    let output = add_user(data, "ada@lab.fr", "another password\n");
    assert!(!output.status.success());
    assert_eq!(text(&output.stdout), "");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(stderr.contains("ada@lab.fr"), "{stderr}");
}

#[test]
fn an_api_key_for_an_unknown_user_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let stderr = fail(
        &[
            "apikey",
            "add",
            "--data",
            data,
            "--user",
            "ghost@lab.fr",
            "--write",
        ],
        "",
    );
    assert!(
        stderr.contains("no user with the e-mail ghost@lab.fr"),
        "{stderr}"
    );
}

#[test]
fn an_api_key_for_a_user_without_a_team_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    succeed(
        &[
            "user",
            "add",
            "--data",
            data,
            "--email",
            "loner@lab.fr",
            "--name",
            "Lone Wolf",
            "--password-stdin",
        ],
        "long enough password\n",
    );
    let stderr = fail(
        &["apikey", "add", "--data", data, "--user", "loner@lab.fr"],
        "",
    );
    assert!(stderr.contains("belongs to no team"), "{stderr}");
    let stderr = fail(
        &[
            "apikey",
            "add",
            "--data",
            data,
            "--user",
            "loner@lab.fr",
            "--team",
            "Nowhere",
        ],
        "",
    );
    assert!(stderr.contains("no team named Nowhere"), "{stderr}");
}

#[test]
fn adding_a_user_without_password_stdin_is_refused_and_creates_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let stderr = fail(
        &[
            "user",
            "add",
            "--data",
            data,
            "--email",
            "ada@lab.fr",
            "--name",
            "Ada Lovelace",
            "--team",
            "Ecology",
        ],
        "analytical engine\n",
    );
    assert!(stderr.contains("--password-stdin"), "{stderr}");
    let stderr = fail(
        &["apikey", "add", "--data", data, "--user", "ada@lab.fr"],
        "",
    );
    assert!(stderr.contains("no user with the e-mail"), "{stderr}");
}

#[test]
fn adding_a_user_with_a_short_password_or_team_admin_without_team_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let output = add_user(data, "ada@lab.fr", "short\n");
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("password"), "{stderr}");
    let stderr = fail(
        &[
            "user",
            "add",
            "--data",
            data,
            "--email",
            "bob@lab.fr",
            "--name",
            "Bob",
            "--team-admin",
            "--password-stdin",
        ],
        "long enough password\n",
    );
    assert!(stderr.contains("--team"), "{stderr}");
    let stderr = fail(
        &["apikey", "add", "--data", data, "--user", "ada@lab.fr"],
        "",
    );
    assert!(stderr.contains("no user with the e-mail"), "{stderr}");
}
