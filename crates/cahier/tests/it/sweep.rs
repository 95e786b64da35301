//! The orphan sweep removes files nothing refers to, never one an entry uses or one an upload
//! is writing.

use cahier_testkit::TestApp;
use std::time::Duration;

/// Makes a file look `by` older than it is.
fn age(path: &std::path::Path, by: Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    let modified = file.metadata().unwrap().modified().unwrap();
    file.set_modified(modified - by).unwrap();
}

#[tokio::test]
async fn the_sweep_removes_old_orphans_only() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let key = app.api_key(&alice, true).await;
    let api = app.api(&key);
    let id = api
        .create("/experiments", serde_json::json!({"title": "Plot"}))
        .await;
    // An attached file.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"kept: attached".to_vec()).file_name("kept.txt"),
    );
    let response = reqwest::Client::new()
        .post(format!("{}/api/v2/experiments/{id}/uploads", app.url))
        .header("Authorization", &key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let blobs = app.store.blobs().unwrap().clone();
    let attached = sha256_hex(b"kept: attached");
    // Two orphans (as a crash between file and row leaves them) and a temporary file.
    let mut writer = blobs.writer().await.unwrap();
    writer.write(b"old orphan").await.unwrap();
    let (old_orphan, _) = writer.finish().await.unwrap();
    let mut writer = blobs.writer().await.unwrap();
    writer.write(b"fresh orphan").await.unwrap();
    let (fresh_orphan, _) = writer.finish().await.unwrap();
    let tmp = blobs.root().join("tmp").join("upload-interrupted");
    std::fs::create_dir_all(tmp.parent().unwrap()).unwrap();
    std::fs::write(&tmp, b"half").unwrap();
    let two_days = Duration::from_secs(48 * 3600);
    for hash in [&attached, &old_orphan] {
        age(&blobs.path_of(hash).unwrap(), two_days);
    }
    age(&tmp, two_days);

    // The command line, as a sysadmin runs it on the data directory.
    let sweep = |dry_run: bool| {
        let data = app.dir.path().to_str().unwrap().to_owned();
        let mut args = vec!["sweep", "--data", data.as_str()];
        if dry_run {
            args.push("--dry-run");
        }
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_cahier"))
            .args(&args)
            .env("CAHIER_LOG", "warn")
            .env_remove("CAHIER_CONFIG")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let listed = sweep(true);
    assert!(
        listed.contains(&format!("would remove: {old_orphan}")) && !listed.contains(&fresh_orphan),
        "{listed}"
    );

    let day = Duration::from_secs(24 * 3600);
    let dry = app.store.sweep_orphans(day, true).await.unwrap();
    assert_eq!(dry.removed, vec![old_orphan.clone()]);
    assert!(blobs.exists(&old_orphan).await, "a dry run removes nothing");

    let report = app.store.sweep_orphans(day, false).await.unwrap();
    assert_eq!(report.removed, vec![old_orphan.clone()]);
    assert_eq!(report.removed_temporary, 1);
    assert_eq!(report.checked, 3);
    assert!(!blobs.exists(&old_orphan).await);
    assert!(blobs.exists(&attached).await, "an attached file stays");
    assert!(
        blobs.exists(&fresh_orphan).await,
        "a file an upload may be writing stays"
    );
    assert!(!tmp.exists());
    assert!(
        sweep(false).contains("2 files checked, 0 removed"),
        "nothing left to remove"
    );

    // Storing bytes that are already there makes them fresh again, so an orphan being
    // attached anew is not swept from under the upload.
    age(&blobs.path_of(&fresh_orphan).unwrap(), two_days);
    let mut writer = blobs.writer().await.unwrap();
    writer.write(b"fresh orphan").await.unwrap();
    writer.finish().await.unwrap();
    let report = app.store.sweep_orphans(day, false).await.unwrap();
    assert!(report.removed.is_empty(), "{report:?}");

    // The download still works after the sweep.
    let list = api.json(&format!("/experiments/{id}/uploads")).await;
    let upload = list[0]["id"].as_i64().unwrap();
    let bytes = api
        .get(&format!("/experiments/{id}/uploads/{upload}?format=binary"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"kept: attached");
    app.stop().await;
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex_encode(&sha2::Sha256::digest(bytes))
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A file a device uploaded for a push keeps its place for 30 days while the device is
/// trusted, then goes (with its record) if nothing attached it; a revoked device's goes at
/// once.
#[tokio::test]
async fn files_uploaded_by_a_device_and_never_attached_go_after_30_days_or_on_revocation() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let blobs = app.store.blobs().unwrap().clone();
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        app.dir.path().join("cahier.db").display()
    ))
    .await
    .unwrap();
    let now = app.store.now_ms();
    for (id, revoked) in [(1_i64, None), (2, Some(now))] {
        sqlx::query(
            "INSERT INTO devices (id, uuid, user_id, name, secret_hash, created_at, revoked_at) \
             VALUES (?, ?, ?, 'laptop', 'x', ?, ?)",
        )
        .bind(id)
        .bind(format!("device-{id}"))
        .bind(alice.id)
        .bind(now)
        .bind(revoked)
        .execute(&db)
        .await
        .unwrap();
    }
    let day_ms = 24 * 3600 * 1000;
    let mut uploaded = Vec::new();
    for (device, content, age_days) in [
        (1, &b"sent yesterday"[..], 1),
        (1, &b"sent 31 days ago"[..], 31),
        (2, &b"sent by a revoked laptop"[..], 1),
    ] {
        let mut writer = blobs.writer().await.unwrap();
        writer.write(content).await.unwrap();
        let (hash, _) = writer.finish().await.unwrap();
        age(
            &blobs.path_of(&hash).unwrap(),
            Duration::from_secs(48 * 3600),
        );
        sqlx::query("INSERT INTO device_blobs (device_id, sha256, received_at) VALUES (?, ?, ?)")
            .bind(device)
            .bind(&hash)
            .bind(now - age_days * day_ms)
            .execute(&db)
            .await
            .unwrap();
        uploaded.push(hash);
    }
    let day = Duration::from_secs(24 * 3600);
    let dry = app.store.sweep_orphans(day, true).await.unwrap();
    let mut gone = vec![uploaded[1].clone(), uploaded[2].clone()];
    gone.sort();
    assert_eq!(dry.removed, gone);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM device_blobs")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(rows, 3, "a dry run removes no record");

    let report = app.store.sweep_orphans(day, false).await.unwrap();
    assert_eq!(report.removed, gone);
    assert!(blobs.exists(&uploaded[0]).await, "a recent upload stays");
    for hash in &gone {
        assert!(!blobs.exists(hash).await);
    }
    let left: Vec<String> = sqlx::query_scalar("SELECT sha256 FROM device_blobs")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(
        left,
        vec![uploaded[0].clone()],
        "records go with their files"
    );
    db.close().await;
    app.stop().await;
}
