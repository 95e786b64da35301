//! `cahier backup` and `cahier restore` as a lab's sysadmin runs them: the real binary, a real
//! server process. A backup taken while the lab keeps accepting entries and files is restored
//! into the stopped lab's folder, which then serves what the backup held and passes
//! `cahier verify`; a restore is refused while the server runs, and for a backup that is
//! missing, cut short, incomplete, changed or newer than the binary, leaving the lab as it was.

use super::{Proc, add_ada, cli, cli_status, free_port, serve, wait_healthy, write_key};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Bytes of a test file, different for each seed.
fn content(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed * 7919) % 251) as u8)
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Creates an experiment through API v2; its id.
async fn create(client: &reqwest::Client, base: &str, key: &str, title: &str) -> Option<i64> {
    let response = client
        .post(format!("{base}/api/v2/experiments"))
        .header("Authorization", key)
        .json(&serde_json::json!({"title": title, "body": format!("{title}\n")}))
        .send()
        .await
        .ok()?;
    if response.status() != 201 {
        return None;
    }
    response.headers()["location"]
        .to_str()
        .ok()?
        .rsplit('/')
        .next()?
        .parse()
        .ok()
}

/// Attaches `bytes` to an experiment; whether the lab took it.
async fn attach(client: &reqwest::Client, base: &str, key: &str, id: i64, bytes: &[u8]) -> bool {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(format!("data-{id}.bin")),
    );
    client
        .post(format!("{base}/api/v2/experiments/{id}/uploads"))
        .header("Authorization", key)
        .multipart(form)
        .send()
        .await
        .is_ok_and(|response| response.status() == 201)
}

/// The files attached to an experiment, as the lab serves them; `None` if it does not exist.
async fn files_of(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    id: i64,
) -> Option<Vec<Vec<u8>>> {
    let list = client
        .get(format!("{base}/api/v2/experiments/{id}/uploads"))
        .header("Authorization", key)
        .send()
        .await
        .unwrap();
    if list.status() == 404 {
        return None;
    }
    assert_eq!(list.status(), 200);
    let list: serde_json::Value = list.json().await.unwrap();
    let mut files = Vec::new();
    for upload in list.as_array().unwrap() {
        let bytes = client
            .get(format!(
                "{base}/api/v2/experiments/{id}/uploads/{}?format=binary",
                upload["id"]
            ))
            .header("Authorization", key)
            .send()
            .await
            .unwrap();
        assert_eq!(bytes.status(), 200);
        files.push(bytes.bytes().await.unwrap().to_vec());
    }
    Some(files)
}

fn manifest(backup: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(backup.join("cahier-backup.json")).unwrap())
        .unwrap()
}

/// The names in a folder, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_lab_backed_up_while_it_writes_is_restored_into_its_folder_whole_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lab").to_str().unwrap().to_owned();
    let dest = dir.path().join("backups").join("monday");
    let dest_arg = dest.to_str().unwrap().to_owned();
    add_ada(&data);
    let key = write_key(&data);
    let client = reqwest::Client::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve(&data, port);
    wait_healthy(&client, &base).await;

    // Before the backup: five entries with a file each.
    let mut before = Vec::new();
    for n in 0..5u32 {
        let id = create(&client, &base, &key, &format!("Before {n}"))
            .await
            .unwrap();
        let bytes = content(40_000 + n as usize * 1000, n);
        assert!(attach(&client, &base, &key, id, &bytes).await);
        before.push((id, bytes));
    }

    // The lab keeps taking entries and files while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, base, key, stop) = (client.clone(), base.clone(), key.clone(), stop.clone());
        tokio::spawn(async move {
            let mut written = Vec::new();
            let mut n = 100u32;
            while !stop.load(Ordering::SeqCst) {
                let Some(id) = create(&client, &base, &key, &format!("During {n}")).await else {
                    break;
                };
                let bytes = content(20_000, n);
                assert!(attach(&client, &base, &key, id, &bytes).await);
                written.push((id, bytes));
                n += 1;
            }
            written
        })
    };
    let backup = {
        let (data, dest) = (data.clone(), dest_arg.clone());
        tokio::task::spawn_blocking(move || {
            cli_status(&["backup", "--data", &data, "--to", &dest], "")
        })
    };
    let (ok, out, err) = backup.await.unwrap();
    stop.store(true, Ordering::SeqCst);
    let during = writer.await.unwrap();
    assert!(ok, "cahier backup failed: {err}");
    assert!(out.contains("backup complete"), "{out}");
    assert!(err.contains("database: copied and checked"), "{err}");
    assert!(err.contains("copied and verified"), "{err}");
    assert!(!during.is_empty(), "the lab wrote during the backup");

    // Complete, under its final name only, with its manifest.
    assert_eq!(names(dest.parent().unwrap()), ["monday"]);
    let manifest = manifest(&dest);
    assert_eq!(
        manifest["schema_version"],
        cahier_store::backup::latest_schema_version()
    );
    let mark = manifest["history_mark"].as_str().unwrap();
    let (seq, stamp) = mark.split_once('.').unwrap();
    assert!(seq.parse::<u64>().is_ok() && stamp.len() == 16, "{mark}");
    let entities = manifest["counts"]["entities"].as_i64().unwrap();
    assert!(entities >= 5, "{manifest}");
    assert!(manifest["files"]["count"].as_u64().unwrap() >= 5);
    assert_eq!(manifest["missing_files"], serde_json::json!([]));
    let db = std::fs::read(dest.join("cahier.db")).unwrap();
    assert_eq!(manifest["database"]["sha256"], sha256(&db));

    // After the backup: one more entry, which the restore takes away.
    let after = create(&client, &base, &key, "After").await.unwrap();
    assert!(attach(&client, &base, &key, after, &content(10_000, 999)).await);

    // Refused while the server runs; the lab goes on.
    let (ok, _, err) = cli_status(&["restore", "--from", &dest_arg, "--data", &data], "");
    assert!(!ok);
    assert!(err.contains("stop the server first"), "{err}");
    assert!(files_of(&client, &base, &key, after).await.is_some());
    // A backup folder is never written over.
    let (ok, _, err) = cli_status(&["backup", "--data", &data, "--to", &dest_arg], "");
    assert!(!ok);
    assert!(err.contains("not an empty folder"), "{err}");

    // The server dies (SIGKILL: its write-ahead log stays behind), then the restore.
    server.kill().unwrap();
    server.wait().unwrap();
    let lab = Path::new(&data);
    let (ok, out, err) = cli_status(&["restore", "--from", &dest_arg, "--data", &data], "");
    assert!(ok, "cahier restore failed: {err}");
    assert!(out.contains("the replaced database is kept as"), "{out}");
    assert!(out.contains("field replicas: at its next sync"), "{out}");
    let kept: Vec<String> = names(lab)
        .into_iter()
        .filter(|name| name.starts_with("cahier.db"))
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(kept[0], "cahier.db");
    assert!(kept[1].starts_with("cahier.db.replaced-"), "{kept:?}");
    assert!(!kept[1].ends_with("-wal"), "{kept:?}");

    let verified = cli(&["verify", "--data", &data], "");
    assert!(verified.contains("0 missing, 0 corrupted"), "{verified}");
    assert!(
        verified.contains("audit entries checked, 0 broken"),
        "{verified}"
    );
    assert!(verified.contains("changes checked, 0 broken"), "{verified}");

    // The restored lab serves what the backup held, files byte for byte, and nothing after.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _server: Proc = serve(&data, port);
    wait_healthy(&client, &base).await;
    for (id, bytes) in &before {
        let files = files_of(&client, &base, &key, *id).await.unwrap();
        assert_eq!(files, std::slice::from_ref(bytes), "entry {id}");
    }
    let mut restored_during = 0;
    for (id, bytes) in &during {
        if let Some(files) = files_of(&client, &base, &key, *id).await {
            restored_during += 1;
            // Taken between the entry and its file, an entry may come back without it.
            assert!(
                files.is_empty() || files == std::slice::from_ref(bytes),
                "entry {id}"
            );
        }
    }
    assert_eq!(5 + restored_during, entities, "{manifest}");
    assert!(files_of(&client, &base, &key, after).await.is_none());
}

#[tokio::test]
async fn a_restore_is_refused_for_a_missing_cut_incomplete_changed_or_newer_backup() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lab").to_str().unwrap().to_owned();
    add_ada(&data);
    let key = write_key(&data);
    let client = reqwest::Client::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve(&data, port);
    wait_healthy(&client, &base).await;
    let id = create(&client, &base, &key, "Soil").await.unwrap();
    let file = content(30_000, 1);
    assert!(attach(&client, &base, &key, id, &file).await);
    server.kill().unwrap();
    server.wait().unwrap();

    // A backup of a stopped lab works as well.
    let good = dir.path().join("good");
    cli(
        &["backup", "--data", &data, "--to", good.to_str().unwrap()],
        "",
    );
    let lab = Path::new(&data);
    let lab_db = std::fs::read(lab.join("cahier.db")).unwrap();
    let variant = |name: &str, change: &dyn Fn(&Path)| {
        let target = dir.path().join(name);
        copy_tree(&good, &target);
        change(&target);
        target.to_str().unwrap().to_owned()
    };
    let refused = |from: &str, expected: &str| {
        let (ok, _, err) = cli_status(&["restore", "--from", from, "--data", &data], "");
        assert!(!ok, "restoring {from} should fail");
        assert!(err.contains(expected), "{from}: {err}");
        // Nothing happened to the lab.
        assert_eq!(std::fs::read(lab.join("cahier.db")).unwrap(), lab_db);
        assert!(
            names(lab)
                .iter()
                .all(|name| !name.contains("replaced") && !name.contains("restoring")),
            "{:?}",
            names(lab)
        );
    };

    refused(
        dir.path().join("nowhere").to_str().unwrap(),
        "there is no backup at",
    );
    let cut = variant("cut", &|backup| {
        std::fs::remove_file(backup.join("cahier-backup.json")).unwrap();
    });
    refused(&cut, "it is not a complete backup");
    let lacking = variant("lacking", &|backup| {
        std::fs::remove_file(
            backup
                .join("blobs")
                .join(&sha256(&file)[..2])
                .join(sha256(&file)),
        )
        .unwrap();
    });
    refused(&lacking, "the backup is incomplete: 1 attachment files");
    let changed = variant("changed", &|backup| {
        let mut manifest = manifest(backup);
        manifest["database"]["sha256"] = serde_json::json!("0".repeat(64));
        std::fs::write(
            backup.join("cahier-backup.json"),
            serde_json::to_string(&manifest).unwrap(),
        )
        .unwrap();
    });
    refused(&changed, "does not match its manifest");
    let newer = variant("newer", &|backup| {
        let mut manifest = manifest(backup);
        manifest["schema_version"] = serde_json::json!(9999);
        std::fs::write(
            backup.join("cahier-backup.json"),
            serde_json::to_string(&manifest).unwrap(),
        )
        .unwrap();
    });
    refused(&newer, "newer than this Cahier's");

    // Backups go to a new folder outside the lab's.
    let inside = lab.join("backup");
    let (ok, _, err) = cli_status(
        &["backup", "--data", &data, "--to", inside.to_str().unwrap()],
        "",
    );
    assert!(!ok);
    assert!(err.contains("inside the data directory"), "{err}");

    // Into a new folder (another machine): the lab comes back whole there.
    let elsewhere = dir.path().join("new-machine").join("lab");
    let elsewhere_arg = elsewhere.to_str().unwrap().to_owned();
    let out = cli(
        &[
            "restore",
            "--from",
            good.to_str().unwrap(),
            "--data",
            &elsewhere_arg,
        ],
        "",
    );
    assert!(out.contains("there was no database to replace"), "{out}");
    assert!(
        out.contains("1 attachment files (1 copied, 0 already there)"),
        "{out}"
    );
    let verified = cli(&["verify", "--data", &elsewhere_arg], "");
    assert!(
        verified.contains("1 files checked, 0 missing, 0 corrupted"),
        "{verified}"
    );

    // The good one restores, discarding the replaced database when asked.
    let out = cli(
        &[
            "restore",
            "--from",
            good.to_str().unwrap(),
            "--data",
            &data,
            "--discard-current",
        ],
        "",
    );
    assert!(out.contains("the replaced database was removed"), "{out}");
    assert!(
        names(lab)
            .iter()
            .all(|name| !name.starts_with("cahier.db") || name == "cahier.db"),
        "{:?}",
        names(lab)
    );
    let verified = cli(&["verify", "--data", &data], "");
    assert!(
        verified.contains("1 files checked, 0 missing, 0 corrupted"),
        "{verified}"
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
