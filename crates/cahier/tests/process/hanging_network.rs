//! A field replica behind a network that stops answering (it accepts connections and then
//! forwards nothing, as a captive portal or a dying link does): the real binary, a real lab
//! server process, a loopback TCP relay between them. `replica sync` gives up after the stall
//! timeout (`CAHIER_REPLICA_STALL_SECS`, 2 s here) saying so; `replica serve`'s background sync
//! shows offline with the reason, keeps the work done meanwhile, and once the network is back
//! its next attempt syncs it, once.

use super::{BIN, PASSPHRASE, Proc, add_ada, cli, free_port, serve, wait_healthy, write_key};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const STALL_SECS: &str = "2";

/// A loopback TCP relay to `upstream` that can be made to hang: from then on it forwards
/// nothing, on open connections as on new ones, and closes nothing.
struct Relay {
    url: String,
    hang: Arc<AtomicBool>,
}

impl Relay {
    async fn start(upstream: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hang = Arc::new(AtomicBool::new(false));
        let hanging = hang.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let hang = hanging.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let (client_in, client_out) = client.into_split();
                    if hang.load(Ordering::SeqCst) {
                        swallow(client_in, client_out).await;
                        return;
                    }
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (server_in, server_out) = server.into_split();
                    tokio::join!(
                        relay(client_in, server_out, hang.clone()),
                        relay(server_in, client_out, hang)
                    );
                });
            }
        });
        Relay { url, hang }
    }

    fn hang(&self, hang: bool) {
        self.hang.store(hang, Ordering::SeqCst);
    }
}

/// Forwards `from` to `to` until told to hang, then swallows.
async fn relay(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, hang: Arc<AtomicBool>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if hang.load(Ordering::SeqCst) {
            swallow(from, to).await;
            return;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Reads and drops whatever comes, and keeps the other way open and silent for a long while
/// (closing it would tell the peer something).
async fn swallow(mut from: OwnedReadHalf, to: OwnedWriteHalf) {
    let mut buffer = vec![0u8; 16 * 1024];
    while matches!(from.read(&mut buffer).await, Ok(n) if n > 0) {}
    tokio::time::sleep(Duration::from_secs(600)).await;
    drop(to);
}

/// Runs `cahier` with the short stall timeout; whether it succeeded, its stdout and stderr.
fn cli_stalling(args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .env("CAHIER_REPLICA_PASSPHRASE", PASSPHRASE)
        .env("CAHIER_REPLICA_STALL_SECS", STALL_SECS)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"").unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn page(client: &reqwest::Client, url: &str) -> String {
    client
        .get(url)
        .header("Accept-Language", "en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Titles of the lab's experiments matching `q`.
async fn titles(client: &reqwest::Client, base: &str, key: &str, q: &str) -> Vec<String> {
    let list: serde_json::Value = client
        .get(format!("{base}/api/v2/experiments"))
        .query(&[("q", q)])
        .header("Authorization", key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|row| row["title"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_a_network_that_hangs_goes_offline_within_the_stall_and_catches_up_after()
{
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lab").to_str().unwrap().to_owned();
    let replica = dir.path().join("laptop").to_str().unwrap().to_owned();
    add_ada(&data);
    let key = write_key(&data);
    let client = reqwest::Client::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve(&data, port);
    wait_healthy(&client, &base).await;
    let relay = Relay::start(format!("127.0.0.1:{port}")).await;
    // The child processes are waited for on this thread; the relay runs on the other.
    tokio::task::block_in_place(|| {
        cli(
            &[
                "replica",
                "init",
                "--server",
                &relay.url,
                "--data",
                &replica,
                "--email",
                "ada@lab.fr",
                "--password-stdin",
            ],
            "long enough password\n",
        )
    });

    // The network hangs: `replica sync` gives up after the stall, saying why.
    relay.hang(true);
    let started = Instant::now();
    let (ok, out, err) =
        tokio::task::block_in_place(|| cli_stalling(&["replica", "sync", "--data", &replica]));
    let waited = started.elapsed();
    assert!(!ok, "{out}");
    assert!(
        err.contains(
            "cannot reach the server: the server sent nothing for 2 s (the network seems to hang)"
        ),
        "{err}"
    );
    assert!(waited < Duration::from_secs(30), "gave up after {waited:?}");
    // A value that is not a number of seconds is refused, naming the variable.
    let output = tokio::task::block_in_place(|| {
        Command::new(BIN)
            .env("CAHIER_REPLICA_PASSPHRASE", PASSPHRASE)
            .env("CAHIER_REPLICA_STALL_SECS", "soon")
            .args(["replica", "sync", "--data", &replica])
            .output()
            .unwrap()
    });
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("CAHIER_REPLICA_STALL_SECS=soon"), "{err}");

    // `replica serve`: its background sync shows offline with the reason.
    let local_port = free_port();
    let local = format!("http://127.0.0.1:{local_port}");
    let mut laptop = Proc(
        Command::new(BIN)
            .env("CAHIER_REPLICA_PASSPHRASE", PASSPHRASE)
            .env("CAHIER_REPLICA_STALL_SECS", STALL_SECS)
            .args([
                "replica",
                "serve",
                "--data",
                &replica,
                "--listen",
                &format!("127.0.0.1:{local_port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_healthy(&client, &local).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let html = page(&client, &format!("{local}/experiments")).await;
        if html.contains("the server sent nothing for 2 s (the network seems to hang)") {
            assert!(html.contains("class=\"replica-bar offline\""), "{html}");
            break;
        }
        assert!(Instant::now() < deadline, "never shown offline: {html}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Work goes on on the laptop meanwhile.
    let local_key = tokio::task::block_in_place(|| {
        cli(&["replica", "apikey", "--data", &replica], "")
            .trim()
            .to_owned()
    });
    let created = client
        .post(format!("{local}/api/v2/experiments"))
        .header("Authorization", &local_key)
        .json(&serde_json::json!({"title": "Written while the link hung"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    // The network comes back: the background sync's next attempt (it backs off from 5 s)
    // brings the entry to the lab, once, and the banner shows online.
    relay.hang(false);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let html = page(&client, &format!("{local}/experiments")).await;
        let at_lab = titles(&client, &base, &key, "hung").await;
        if !html.contains("replica-bar offline") && !at_lab.is_empty() {
            assert_eq!(at_lab, ["Written while the link hung"]);
            assert!(html.contains("id=\"replica-waiting\">0 "), "{html}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not synced after the network came back: {at_lab:?} {html}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    laptop.kill().unwrap();
    laptop.wait().unwrap();

    // And `replica sync` agrees, nothing left waiting.
    let (ok, out, err) =
        tokio::task::block_in_place(|| cli_stalling(&["replica", "sync", "--data", &replica]));
    assert!(ok, "{err}");
    assert!(out.contains("waiting 0"), "{out}");
    assert_eq!(
        titles(&client, &base, &key, "hung").await,
        ["Written while the link hung"]
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
