//! Tests that run the real `cahier` binary as a separate process: crash durability, the field
//! replica end to end (with attachments and over HTTPS), backup and restore.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod backup;
mod cipher_log;
mod hanging_network;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cahier");
/// The field copy's passphrase, given to every child process.
const PASSPHRASE: &str = "field passphrase";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cli(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(BIN)
        .env("CAHIER_REPLICA_PASSPHRASE", PASSPHRASE)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "cahier {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A child process killed when dropped, so a failing test leaves no server behind.
struct Proc(Child);

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cahier user add` of Ada Lovelace (ada@lab.fr, team Ecology) in the lab at `data`.
fn add_ada(data: &str) {
    cli(
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
            "--password-stdin",
        ],
        "long enough password\n",
    );
}

/// A read-write API key of Ada's from `cahier apikey add`.
fn write_key(data: &str) -> String {
    cli(
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
    )
    .trim()
    .to_owned()
}

fn serve(data: &str, port: u16) -> Proc {
    Command::new(BIN)
        .env("CAHIER_REPLICA_PASSPHRASE", PASSPHRASE)
        .args([
            "serve",
            "--data",
            data,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Proc)
        .unwrap()
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await
            && response.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "server did not become healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_dash_nine() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    add_ada(&data);
    let key = write_key(&data);
    let client = reqwest::Client::new();

    let mut acknowledged: Vec<(i64, String)> = Vec::new();
    for round in 0..3 {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut server = serve(&data, port);
        wait_healthy(&client, &base).await;
        // Several writers at once, then kill -9 while they are still writing.
        let mut writers = Vec::new();
        for writer in 0..4 {
            let client = client.clone();
            let base = base.clone();
            let key = key.clone();
            writers.push(tokio::spawn(async move {
                let mut done = Vec::new();
                for n in 0..1000 {
                    let title = format!("round {round} writer {writer} entry {n}");
                    let response = client
                        .post(format!("{base}/api/v2/experiments"))
                        .header("Authorization", &key)
                        .json(&serde_json::json!({"title": title, "body": "line one\nline two\n"}))
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status() == 201 => {
                            let id = r.headers()["location"]
                                .to_str()
                                .unwrap()
                                .rsplit('/')
                                .next()
                                .unwrap()
                                .parse::<i64>()
                                .unwrap();
                            done.push((id, title));
                        }
                        _ => break,
                    }
                }
                done
            }));
        }
        tokio::time::sleep(Duration::from_millis(300 + 200 * round as u64)).await;
        server.kill().unwrap(); // SIGKILL: no shutdown, no flush.
        server.wait().unwrap();
        for writer in writers {
            acknowledged.extend(writer.await.unwrap());
        }
    }
    assert!(
        acknowledged.len() > 10,
        "the writers should have been acknowledged a few times"
    );

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve(&data, port);
    wait_healthy(&client, &base).await;
    for (id, title) in &acknowledged {
        let response = client
            .get(format!("{base}/api/v2/experiments/{id}"))
            .header("Authorization", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "acknowledged experiment {id} was lost"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["title"], title.as_str());
        assert_eq!(body["body"], "line one\nline two\n");
    }
    // Nothing half-written: every entity that exists reads back whole.
    let list: serde_json::Value = client
        .get(format!("{base}/api/v2/experiments?limit=10000"))
        .header("Authorization", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for row in list.as_array().unwrap() {
        assert_eq!(
            row["body"], "line one\nline two\n",
            "entity {} is incomplete",
            row["id"]
        );
        assert!(row["title"].as_str().unwrap().starts_with("round "));
    }
    server.kill().unwrap();
    server.wait().unwrap();
}

fn cli_status(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .env("CAHIER_REPLICA_PASSPHRASE", PASSPHRASE)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_replica_takes_a_copy_edits_offline_and_syncs_back() {
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
    let created = client
        .post(format!("{base}/api/v2/experiments"))
        .header("Authorization", &key)
        .json(&serde_json::json!({"title": "Transect 4", "body": "Intro\n\nMethods\n"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id: i64 = created.headers()["location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // A file attached at the lab travels with the first copy.
    let photo: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    let attached = client
        .post(format!("{base}/api/v2/experiments/{id}/uploads"))
        .header("Authorization", &key)
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(photo.clone()).file_name("transect.jpg"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(attached.status(), 201);

    let (ok, out, err) = cli_status(
        &[
            "replica",
            "init",
            "--server",
            &base,
            "--data",
            &replica,
            "--email",
            "ada@lab.fr",
            "--password-stdin",
        ],
        "wrong password\n",
    );
    assert!(!ok, "a wrong password must be refused: {out}");
    assert!(err.contains("wrong e-mail or password"), "{err}");
    std::fs::remove_dir_all(&replica).ok();
    let out = cli(
        &[
            "replica",
            "init",
            "--server",
            &base,
            "--data",
            &replica,
            "--email",
            "ada@lab.fr",
            "--password-stdin",
        ],
        "long enough password\n",
    );
    assert!(out.contains("1 new"), "{out}");
    assert!(out.contains("received 1, missing 0"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(format!("{replica}/device.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the device credential must be private");
    }

    // Offline on the laptop: edit the copied experiment and create a new one linking to it.
    {
        let store = cahier::replica::open_with(std::path::Path::new(&replica), PASSPHRASE)
            .await
            .unwrap();
        let subject = store.subject(1).await.unwrap();
        let copy = store.entity(&subject, id).await.unwrap();
        let patch = cahier_core::EntityPatch {
            body: Some("Intro\n\nMethods\n\nField notes from the laptop\n".into()),
            ..Default::default()
        };
        store
            .update_entity(&subject, id, None, &patch, "save")
            .await
            .unwrap();
        let new = cahier_store::NewEntity {
            kind: cahier_core::EntityKind::Experiment,
            team_id: copy.team_id,
            canread: None,
            canwrite: None,
            patch: cahier_core::EntityPatch {
                title: Some("Made offline".into()),
                ops: vec![cahier_core::document::EntityOp::AddLink {
                    target: copy.uuid.parse().unwrap(),
                    at_ms: 1,
                }],
                ..Default::default()
            },
            template: None,
        };
        store.create_entity(&subject, new).await.unwrap();
        store.close().await;
    }
    // Meanwhile on the server, someone edits another paragraph of the same experiment.
    let patched = client
        .patch(format!("{base}/api/v2/experiments/{id}"))
        .header("Authorization", &key)
        .json(&serde_json::json!({"body": "Intro written at the lab\n\nMethods\n"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);

    let out = cli(&["replica", "sync", "--data", &replica], "");
    assert!(out.contains("pushed 2"), "{out}");
    assert!(out.contains("waiting 0"), "{out}");
    let merged: serde_json::Value = client
        .get(format!("{base}/api/v2/experiments/{id}"))
        .header("Authorization", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        merged["body"],
        "Intro written at the lab\n\nMethods\n\nField notes from the laptop\n"
    );
    let list: serde_json::Value = client
        .get(format!("{base}/api/v2/experiments?q=offline"))
        .header("Authorization", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let made = &list.as_array().unwrap()[0];
    let made: serde_json::Value = client
        .get(format!("{base}/api/v2/experiments/{}", made["id"]))
        .header("Authorization", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        made["experiments_links"][0]["entityid"], id,
        "a link made offline survives sync"
    );

    // A second sync with nothing to do agrees at once; the laptop has the merged text too.
    let out = cli(&["replica", "sync", "--data", &replica], "");
    assert!(out.contains("pushed 0"), "{out}");
    let store = cahier::replica::open_with(std::path::Path::new(&replica), PASSPHRASE)
        .await
        .unwrap();
    let subject = store.subject(1).await.unwrap();
    assert_eq!(
        store.entity(&subject, id).await.unwrap().body,
        "Intro written at the lab\n\nMethods\n\nField notes from the laptop\n"
    );
    store.close().await;

    // The replica serves the same UI, signed in as its user, with the sync banner.
    let replica_port = free_port();
    let mut laptop = Proc(
        Command::new(BIN)
            .env("CAHIER_REPLICA_PASSPHRASE", PASSPHRASE)
            .args([
                "replica",
                "serve",
                "--data",
                &replica,
                "--listen",
                &format!("127.0.0.1:{replica_port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let local = format!("http://127.0.0.1:{replica_port}");
    wait_healthy(&client, &local).await;
    let page = client
        .get(format!("{local}/experiments"))
        .header("Accept-Language", "en")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("id=\"replica-status\""),
        "the replica shows where sync stands"
    );
    assert!(html.contains("Field copy"), "{html}");
    assert!(
        html.contains("Transect 4") && html.contains("Made offline"),
        "the copy lists both entries"
    );
    let local_key = cli(&["replica", "apikey", "--data", &replica], "")
        .trim()
        .to_owned();
    let local_api = client
        .get(format!("{local}/api/v2/experiments/{id}"))
        .header("Authorization", &local_key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        local_api.status(),
        200,
        "scripts on the laptop use the same API"
    );
    // The lab's file is served by the laptop, byte for byte.
    let uploads: serde_json::Value = client
        .get(format!("{local}/api/v2/experiments/{id}/uploads"))
        .header("Authorization", &local_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let local_photo = client
        .get(format!(
            "{local}/api/v2/experiments/{id}/uploads/{}?format=binary",
            uploads[0]["id"]
        ))
        .header("Authorization", &local_key)
        .send()
        .await
        .unwrap();
    assert_eq!(local_photo.status(), 200);
    assert_eq!(local_photo.bytes().await.unwrap().to_vec(), photo);
    let photo_hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&photo))
    };
    let on_disk =
        std::fs::read(format!("{replica}/blobs/{}/{photo_hash}", &photo_hash[..2])).unwrap();
    assert!(
        !on_disk.windows(64).any(|w| w == &photo[5000..5064]),
        "the laptop keeps files encrypted at rest"
    );
    // A file attached on the laptop, through its API, reaches the lab at the next sync.
    let notes = b"wind 3 bft, overcast".to_vec();
    let attached = client
        .post(format!("{local}/api/v2/experiments/{id}/uploads"))
        .header("Authorization", &local_key)
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(notes.clone()).file_name("weather.txt"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(attached.status(), 201);
    laptop.kill().unwrap();
    laptop.wait().unwrap();
    let out = cli(&["replica", "sync", "--data", &replica], "");
    assert!(
        out.contains("pushed 1") && out.contains("files sent 1"),
        "{out}"
    );
    assert!(
        out.contains("booking requests sent 0 (confirmed 0, refused 0, waiting 0)"),
        "replica sync tells what became of booking requests: {out}"
    );
    let at_lab: serde_json::Value = client
        .get(format!("{base}/api/v2/experiments/{id}/uploads"))
        .header("Authorization", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let weather = at_lab
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["real_name"] == "weather.txt")
        .expect("the laptop's file is listed at the lab");
    let lab_notes = client
        .get(format!(
            "{base}/api/v2/experiments/{id}/uploads/{}?format=binary",
            weather["id"]
        ))
        .header("Authorization", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(lab_notes.bytes().await.unwrap().to_vec(), notes);

    // Revoking the device on the server stops its sync at once.
    {
        let store = cahier_store::Store::open_sqlite(
            &std::path::Path::new(&data).join("cahier.db"),
            std::sync::Arc::new(cahier_core::SystemClock),
        )
        .await
        .unwrap();
        let subject = store.subject(1).await.unwrap();
        let device = store.devices(Some(1)).await.unwrap().remove(0);
        store.revoke_device(&subject, device.id).await.unwrap();
        store.close().await;
    }
    let mut wrong = Command::new(BIN)
        .env("CAHIER_REPLICA_PASSPHRASE", "not the passphrase")
        .args(["replica", "sync", "--data", &replica])
        .output()
        .unwrap();
    assert!(
        !wrong.status.success(),
        "a wrong passphrase must be refused"
    );
    let message = String::from_utf8(std::mem::take(&mut wrong.stderr)).unwrap();
    assert!(message.contains("wrong passphrase"), "{message}");
    assert!(
        !message.contains("ERROR"),
        "SQLCipher's own lines: {message}"
    );
    let (ok, _, err) = cli_status(&["replica", "sync", "--data", &replica], "");
    assert!(!ok, "a revoked device must not sync");
    assert!(err.contains("refused this device"), "{err}");

    server.kill().unwrap();
    server.wait().unwrap();
    let (ok, _, err) = cli_status(&["replica", "sync", "--data", &replica], "");
    assert!(!ok, "sync with the server down must fail");
    assert!(err.contains("cannot reach the server"), "{err}");
}

#[tokio::test]
async fn killing_a_replica_mid_sync_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lab").to_str().unwrap().to_owned();
    let replica = dir.path().join("laptop").to_str().unwrap().to_owned();
    add_ada(&data);
    let client = reqwest::Client::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve(&data, port);
    wait_healthy(&client, &base).await;
    cli(
        &[
            "replica",
            "init",
            "--server",
            &base,
            "--data",
            &replica,
            "--email",
            "ada@lab.fr",
            "--password-stdin",
        ],
        "long enough password\n",
    );
    let path = std::path::Path::new(&replica);
    let mut tokens: Vec<(String, String)> = Vec::new();
    for trial in 0..8u64 {
        // Offline work: new entries and edits of earlier ones.
        {
            let store = cahier::replica::open_with(path, PASSPHRASE).await.unwrap();
            let subject = store.subject(1).await.unwrap();
            let team = store.user(1).await.unwrap().current_team.unwrap();
            for n in 0..15 {
                let token = format!("trial-{trial}-entry-{n}");
                let new = cahier_store::NewEntity {
                    kind: cahier_core::EntityKind::Experiment,
                    team_id: team,
                    canread: None,
                    canwrite: None,
                    patch: cahier_core::EntityPatch {
                        title: Some(token.clone()),
                        body: Some(format!("{token}\n")),
                        ..Default::default()
                    },
                    template: None,
                };
                let id = store.create_entity(&subject, new).await.unwrap();
                tokens.push((store.entity(&subject, id).await.unwrap().uuid, token));
            }
            let first: Vec<String> = tokens
                .iter()
                .take(5)
                .map(|(uuid, _)| uuid.clone())
                .collect();
            for uuid in &first {
                let row = store.entity_by_uuid(&subject, uuid).await.unwrap();
                let token = format!("trial-{trial}-edit-{}", row.id);
                let patch = cahier_core::EntityPatch {
                    body: Some(format!("{}{token}\n", row.body)),
                    ..Default::default()
                };
                store
                    .update_entity(&subject, row.id, None, &patch, "save")
                    .await
                    .unwrap();
                tokens.push((uuid.clone(), token));
            }
            store.close().await;
        }
        // Sync, killed with SIGKILL somewhere in the middle.
        let mut child = Command::new(BIN)
            .env("CAHIER_REPLICA_PASSPHRASE", PASSPHRASE)
            .args(["replica", "sync", "--data", &replica])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20 + (trial * 37) % 400)).await;
        let _ = child.kill();
        child.wait().unwrap();
        // Every few trials the server dies too, mid-sync.
        if trial % 3 == 2 {
            let mut child = Command::new(BIN)
                .env("CAHIER_REPLICA_PASSPHRASE", PASSPHRASE)
                .args(["replica", "sync", "--data", &replica])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            tokio::time::sleep(Duration::from_millis(30 + trial * 11)).await;
            server.kill().unwrap();
            server.wait().unwrap();
            child.wait().unwrap();
            server = serve(&data, port);
            wait_healthy(&client, &base).await;
        }
    }
    // Recovery: a full sync must succeed and both sides must agree on everything.
    let out = cli(&["replica", "sync", "--data", &replica], "");
    assert!(out.contains("waiting 0"), "{out}");
    let laptop = cahier::replica::open_with(path, PASSPHRASE).await.unwrap();
    let subject = laptop.subject(1).await.unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    let lab = cahier_store::Store::open_sqlite(
        &std::path::Path::new(&data).join("cahier.db"),
        std::sync::Arc::new(cahier_core::SystemClock),
    )
    .await
    .unwrap();
    for (uuid, token) in &tokens {
        let here = laptop.entity_by_uuid(&subject, uuid).await.unwrap();
        let there = lab.entity_by_uuid(&subject, uuid).await.unwrap();
        assert_eq!(here.heads, there.heads, "{uuid} differs after recovery");
        assert!(
            there.body.contains(token.as_str()) || there.title == *token,
            "{token} was lost"
        );
    }
    let entries = lab
        .list_entities(
            &subject,
            &cahier_store::listing::ListQuery {
                limit: 10_000,
                ..cahier_store::listing::ListQuery::new(cahier_core::EntityKind::Experiment)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        entries.rows.len(),
        8 * 15,
        "no entry duplicated or missing on the server"
    );
}

#[tokio::test]
async fn a_locked_field_copy_asks_for_its_passphrase_and_locks_again_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lab").to_str().unwrap().to_owned();
    let replica = dir.path().join("laptop").to_str().unwrap().to_owned();
    add_ada(&data);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve(&data, port);
    wait_healthy(&client, &base).await;
    cli(
        &[
            "replica",
            "init",
            "--server",
            &base,
            "--data",
            &replica,
            "--email",
            "ada@lab.fr",
            "--password-stdin",
        ],
        "long enough password\n",
    );
    let local_port = free_port();
    let local = format!("http://127.0.0.1:{local_port}");
    // No passphrase in the environment: the copy starts locked.
    let mut laptop = Proc(
        Command::new(BIN)
            .env_remove("CAHIER_REPLICA_PASSPHRASE")
            .args([
                "replica",
                "serve",
                "--data",
                &replica,
                "--listen",
                &format!("127.0.0.1:{local_port}"),
                "--lock-after",
                "2",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_healthy(&client, &local).await;
    let locked = client
        .get(format!("{local}/experiments"))
        .send()
        .await
        .unwrap();
    assert_eq!(locked.status(), 303);
    assert_eq!(locked.headers()["location"], "/unlock");
    let api = client
        .get(format!("{local}/api/v2/experiments"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 423, "the local API says the copy is locked");
    // So do its calendar feeds, rather than sending a calendar application to the unlock page.
    let feed = format!("{local}/ical/{}/mine.ics", "0".repeat(48));
    let locked_feed = client.get(&feed).send().await.unwrap();
    assert_eq!(locked_feed.status(), 423);

    let wrong = client
        .post(format!("{local}/unlock"))
        .form(&[("passphrase", "nope nope nope")])
        .header("Accept-Language", "en")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let body = wrong.text().await.unwrap();
    assert!(body.contains("Wrong passphrase"), "{body}");
    let right = client
        .post(format!("{local}/unlock"))
        .form(&[("passphrase", PASSPHRASE)])
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 303);
    let page = client
        .get(format!("{local}/experiments"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "unlocked: the notebook is served");
    let unknown = client.get(&feed).send().await.unwrap();
    assert_eq!(unknown.status(), 404, "unlocked: an unknown feed token");

    // Idle for longer than --lock-after: locked again, though a calendar application kept
    // fetching a feed meanwhile (that is not the user at the laptop).
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        client.get(&feed).send().await.unwrap();
    }
    assert_eq!(client.get(&feed).send().await.unwrap().status(), 423);
    let relocked = client
        .get(format!("{local}/experiments"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        relocked.status(),
        303,
        "the copy locks again after the idle time"
    );
    laptop.kill().unwrap();
    laptop.wait().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
}

/// A TLS front on 127.0.0.1 for `backend` (`127.0.0.1:port`), as a lab's reverse proxy.
async fn tls_front(backend: String, leaf_der: Vec<u8>, key_der: Vec<u8>) -> u16 {
    use tokio_rustls::rustls;
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![rustls::pki_types::CertificateDer::from(leaf_der)],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let backend = backend.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(&backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

/// A CA and a certificate it signed for 127.0.0.1: (CA PEM, leaf DER, leaf key DER).
fn lab_certificates(name: &str) -> (String, Vec<u8>, Vec<u8>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    (ca.pem(), leaf.der().to_vec(), leaf_key.serialize_der())
}

// Two workers: the CLI runs blocking on one while the TLS front serves on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_init_and_sync_go_over_https_with_the_lab_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lab").to_str().unwrap().to_owned();
    add_ada(&data);
    let client = reqwest::Client::new();
    let port = free_port();
    let _server = serve(&data, port);
    wait_healthy(&client, &format!("http://127.0.0.1:{port}")).await;
    let (ca_pem, leaf, key) = lab_certificates("Lab CA");
    let https = format!(
        "https://127.0.0.1:{}",
        tls_front(format!("127.0.0.1:{port}"), leaf, key).await
    );
    let ca_file = dir.path().join("lab-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let (other_ca, _, _) = lab_certificates("Other CA");
    let other_ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, other_ca).unwrap();
    let init = |replica: &str, server: &str, ca: Option<&std::path::Path>| {
        let mut args = vec![
            "replica".to_owned(),
            "init".into(),
            "--server".into(),
            server.into(),
            "--data".into(),
            replica.into(),
            "--email".into(),
            "ada@lab.fr".into(),
            "--password-stdin".into(),
        ];
        if let Some(ca) = ca {
            args.extend(["--ca-file".to_owned(), ca.to_str().unwrap().to_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli_status(&args, "long enough password\n")
    };

    let wrong = dir.path().join("wrong").to_str().unwrap().to_owned();
    let (ok, _, err) = init(&wrong, &https, Some(&other_ca_file));
    assert!(!ok, "a certificate from another CA must be refused");
    assert!(
        err.contains("not trusted") && err.contains("--ca-file"),
        "{err}"
    );
    let (ok, _, err) = init(&wrong, "http://cahier.lab.example", None);
    assert!(!ok, "plain http to another host must be refused");
    assert!(
        err.contains("unencrypted") && err.contains("https://cahier.lab.example"),
        "{err}"
    );

    let laptop = dir.path().join("laptop").to_str().unwrap().to_owned();
    let (ok, out, err) = init(&laptop, &https, Some(&ca_file));
    assert!(ok, "init over https with the lab's CA: {err}");
    assert!(out.contains("replica ready"), "{out}");
    // The CA is kept by the replica: later syncs need no flag.
    let out = cli(&["replica", "sync", "--data", &laptop], "");
    assert!(out.contains("waiting 0"), "{out}");
}

/// `replica init --files pinned`, `replica files`, `replica pin` and `replica sync` with the
/// real binary: the first copy takes no file, pinning then syncing fetches the entry's file,
/// and bad settings are refused with a message saying what to write.
#[tokio::test]
async fn a_field_copy_keeps_only_pinned_files_set_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lab").to_str().unwrap().to_owned();
    let replica = dir.path().join("laptop").to_str().unwrap().to_owned();
    add_ada(&data);
    let key = write_key(&data);
    let client = reqwest::Client::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _server = serve(&data, port);
    wait_healthy(&client, &base).await;
    let created = client
        .post(format!("{base}/api/v2/experiments"))
        .header("Authorization", &key)
        .json(&serde_json::json!({"title": "Quadrat 2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.headers()["location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let attached = client
        .post(format!("{base}/api/v2/experiments/{id}/uploads"))
        .header("Authorization", &key)
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(vec![7u8; 20_000]).file_name("quadrat.jpg"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(attached.status(), 201);

    let init = |files: &'static str| {
        let replica = replica.clone();
        let base = base.clone();
        move || {
            cli_status(
                &[
                    "replica",
                    "init",
                    "--server",
                    &base,
                    "--data",
                    &replica,
                    "--email",
                    "ada@lab.fr",
                    "--password-stdin",
                    "--files",
                    files,
                ],
                "long enough password\n",
            )
        }
    };
    let (ok, _, err) = init("some")();
    assert!(!ok);
    assert!(err.contains("use all, pinned or teams="), "{err}");
    assert!(
        !std::path::Path::new(&replica).join("cahier.db").exists(),
        "a bad --files is refused before anything is made"
    );
    let (ok, out, err) = init("pinned")();
    assert!(ok, "{err}");
    assert!(out.contains("1 new"), "{out}");
    assert!(out.contains("received 0, missing 0"), "{out}");

    let out = cli(&["replica", "files", "--data", &replica], "");
    assert!(
        out.contains("files: pinned; 0 on this laptop, 1 not"),
        "{out}"
    );
    let out = cli(
        &[
            "replica",
            "pin",
            "--data",
            &replica,
            &format!("experiments/{id}"),
        ],
        "",
    );
    assert!(out.contains(&format!("pinned experiments/{id}")), "{out}");
    let out = cli(&["replica", "sync", "--data", &replica], "");
    assert!(out.contains("received 1, missing 0"), "{out}");
    let out = cli(&["replica", "files", "--data", &replica], "");
    assert!(out.contains("1 on this laptop, 0 not"), "{out}");
    assert!(out.contains("1 entries pinned"), "{out}");

    let (ok, _, err) = cli_status(
        &["replica", "files", "--data", &replica, "teams=Zoology"],
        "",
    );
    assert!(!ok);
    assert!(
        err.contains("no team `Zoology`") && err.contains("Ecology"),
        "{err}"
    );
    let (ok, _, err) = cli_status(
        &["replica", "pin", "--data", &replica, "experiments/999"],
        "",
    );
    assert!(!ok);
    assert!(err.contains("experiments/999"), "{err}");
    let out = cli(
        &[
            "replica",
            "unpin",
            "--data",
            &replica,
            &format!("experiments/{id}"),
        ],
        "",
    );
    assert!(out.contains("unpinned"), "{out}");
    let out = cli(&["replica", "sync", "--data", &replica], "");
    assert!(out.contains("dropped 1"), "{out}");
}

/// `cahier apikey list` shows a user's keys without the secrets; `cahier apikey revoke` stops a
/// key at once, and refuses an unknown id with a message and a non-zero exit.
#[tokio::test]
async fn a_sysadmin_lists_and_revokes_api_keys_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    add_ada(&data);
    let key = cli(
        &[
            "apikey",
            "add",
            "--data",
            &data,
            "--user",
            "ada@lab.fr",
            "--name",
            "field script",
        ],
        "",
    )
    .trim()
    .to_owned();
    let listed = cli(
        &["apikey", "list", "--data", &data, "--user", "ada@lab.fr"],
        "",
    );
    let line = listed
        .lines()
        .find(|l| l.ends_with("field script"))
        .unwrap_or_else(|| panic!("the key is listed: {listed}"));
    assert!(
        line.contains("read-only") && line.contains("last used never"),
        "{line}"
    );
    assert!(!listed.contains(&key), "the secret is never printed");
    let id = line.split('\t').next().unwrap().to_owned();

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _server = serve(&data, port);
    let client = reqwest::Client::new();
    wait_healthy(&client, &base).await;
    let status = |key: String| {
        let client = client.clone();
        let url = format!("{base}/api/v2/experiments");
        async move {
            client
                .get(url)
                .header("Authorization", key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(key.clone()).await, 200);

    let revoked = cli(
        &[
            "apikey",
            "revoke",
            "--data",
            &data,
            "--user",
            "ada@lab.fr",
            "--id",
            &id,
        ],
        "",
    );
    assert!(
        revoked.contains(&format!("API key {id} of ada@lab.fr revoked")),
        "{revoked}"
    );
    assert_eq!(status(key).await, 401, "a revoked key is refused at once");

    let again = Command::new(BIN)
        .args([
            "apikey",
            "revoke",
            "--data",
            &data,
            "--user",
            "ada@lab.fr",
            "--id",
            &id,
        ])
        .output()
        .unwrap();
    assert!(!again.status.success());
    let message = String::from_utf8_lossy(&again.stderr);
    assert!(
        message.contains(&format!("has no API key with id {id}")),
        "{message}"
    );
}
