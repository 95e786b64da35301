//! Attachments over real HTTP: API v2 uploads in eLabFTW's shapes (multipart in, JSON and
//! bytes out, Range, replace, soft delete), the blob store on disk (dedup, nothing left by a
//! refused or aborted upload), safe serving of active content, access checks, the UI form
//! without JavaScript, and `cahier verify`.

use cahier_testkit::{Api, TestApp};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

pub(super) fn form(name: &str, bytes: Vec<u8>, comment: Option<&str>) -> Form {
    let mut form = Form::new().part("file", Part::bytes(bytes).file_name(name.to_owned()));
    if let Some(comment) = comment {
        form = form.text("comment", comment.to_owned());
    }
    form
}

async fn post_file(api: &Api, path: &str, name: &str, bytes: Vec<u8>) -> reqwest::Response {
    api.client
        .post(format!("{}{path}", api.base))
        .multipart(form(name, bytes, None))
        .send()
        .await
        .unwrap()
}

/// Uploads and returns the new upload's id from `Location` (asserting 201).
pub(super) async fn upload(api: &Api, path: &str, name: &str, bytes: Vec<u8>) -> i64 {
    let response = post_file(api, path, name, bytes).await;
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(status, 201, "{}", response.text().await.unwrap());
    let location = location.expect("Location");
    assert!(location.contains("/uploads/"), "{location}");
    location.rsplit('/').next().unwrap().parse().unwrap()
}

async fn bytes(api: &Api, path: &str, range: Option<&str>) -> reqwest::Response {
    let mut request = api.client.get(format!("{}{path}", api.base));
    if let Some(range) = range {
        request = request.header("range", range);
    }
    request.send().await.unwrap()
}

/// Blob files on disk (not counting temporary files), and temporary files.
pub(super) fn blob_files(data: &Path) -> (Vec<String>, usize) {
    let root = data.join("blobs");
    let mut blobs = Vec::new();
    let mut tmp = 0;
    let Ok(dirs) = std::fs::read_dir(&root) else {
        return (blobs, 0);
    };
    for dir in dirs {
        let dir = dir.unwrap();
        let name = dir.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(dir.path()).unwrap() {
            if name == "tmp" {
                tmp += 1;
            } else {
                blobs.push(file.unwrap().file_name().to_string_lossy().into_owned());
            }
        }
    }
    (blobs, tmp)
}

pub(super) fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test]
async fn upload_list_download_range_patch_replace_and_delete() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api.create("/experiments", json!({"title": "Soil"})).await;
    let base = format!("/experiments/{id}/uploads");
    let content: Vec<u8> = (0..100u8).collect();

    let response = api
        .client
        .post(format!("{}{base}", api.base))
        .multipart(form("data é.bin", content.clone(), Some("raw counts")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let first: i64 = location.rsplit('/').next().unwrap().parse().unwrap();

    let list = api.json(&base).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    let one = &list[0];
    assert_eq!(one["id"], first);
    assert_eq!(one["real_name"], "data é.bin");
    assert_eq!(one["comment"], "raw counts");
    assert_eq!(one["filesize"], 100);
    assert_eq!(one["hash"], sha256(&content));
    assert_eq!(one["hash_algorithm"], "sha256");
    assert_eq!(one["userid"], alice.id);
    assert_eq!(one["state"], 1);
    assert_eq!(api.json(&format!("{base}/{first}")).await, *one);

    let full = bytes(&api, &format!("{base}/{first}?format=binary"), None).await;
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert_eq!(full.headers()["content-type"], "application/octet-stream");
    let disposition = full.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert!(
        disposition.contains("filename*=UTF-8''data%20%C3%A9%2Ebin"),
        "{disposition}"
    );
    assert_eq!(full.bytes().await.unwrap().to_vec(), content);

    let part = bytes(
        &api,
        &format!("{base}/{first}?format=binary"),
        Some("bytes=10-19"),
    )
    .await;
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 10-19/100");
    assert_eq!(
        part.bytes().await.unwrap().to_vec(),
        content[10..20].to_vec()
    );
    let tail = bytes(
        &api,
        &format!("{base}/{first}?format=binary"),
        Some("bytes=-5"),
    )
    .await;
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap().to_vec(), content[95..].to_vec());
    let bad = bytes(
        &api,
        &format!("{base}/{first}?format=binary"),
        Some("bytes=100-"),
    )
    .await;
    assert_eq!(bad.status(), 416);
    assert_eq!(bad.headers()["content-range"], "bytes */100");

    let patched = api
        .patch(
            &format!("{base}/{first}"),
            json!({"real_name": "counts.bin", "comment": "plot 4"}),
        )
        .await;
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["real_name"], "counts.bin");
    assert_eq!(patched["comment"], "plot 4");

    // Replace: a new version; the old one is archived and stays downloadable.
    let second = upload(
        &api,
        &format!("{base}/{first}"),
        "counts.bin",
        b"v2".to_vec(),
    )
    .await;
    assert_ne!(second, first);
    let live = api.json(&base).await;
    assert_eq!(live.as_array().unwrap().len(), 1);
    assert_eq!(live[0]["id"], second);
    assert_eq!(live[0]["replaces_id"], first);
    assert_eq!(live[0]["comment"], "plot 4", "the old comment is kept");
    let all = api.json(&format!("{base}?state=1,2")).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(api.json(&format!("{base}/{first}")).await["state"], 2);
    let old = bytes(&api, &format!("{base}/{first}?format=binary"), None).await;
    assert_eq!(old.bytes().await.unwrap().to_vec(), content);
    let new = bytes(&api, &format!("{base}/{second}?format=binary"), None).await;
    assert_eq!(new.bytes().await.unwrap().as_ref(), b"v2");

    let rows = app
        .store
        .uploads(&app.subject(&alice).await, id, true)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);

    assert_eq!(api.delete(&format!("{base}/{second}")).await.status(), 204);
    assert!(api.json(&base).await.as_array().unwrap().is_empty());
    assert_eq!(api.json(&format!("{base}/{second}")).await["state"], 3);
    let gone = bytes(&api, &format!("{base}/{second}?format=binary"), None).await;
    assert_eq!(gone.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn same_bytes_are_stored_once_and_refused_or_aborted_uploads_leave_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let key = app.api_key(&alice, true).await;
    let api = app.api(&key);
    let one = api.create("/experiments", json!({"title": "One"})).await;
    let two = api.create("/experiments", json!({"title": "Two"})).await;

    let content = b"same bytes twice".to_vec();
    upload(
        &api,
        &format!("/experiments/{one}/uploads"),
        "a.txt",
        content.clone(),
    )
    .await;
    upload(
        &api,
        &format!("/experiments/{two}/uploads"),
        "b.txt",
        content.clone(),
    )
    .await;
    let (blobs, tmp) = blob_files(app.dir.path());
    assert_eq!(blobs, vec![sha256(&content)]);
    assert_eq!(tmp, 0);

    // Larger than the 4 MiB form and JSON limit of the test kit: uploads are not held to it.
    let large: Vec<u8> = (0..5 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let sub = upload(
        &api,
        &format!("/experiments/{two}/uploads"),
        "large.bin",
        large.clone(),
    )
    .await;
    let back = bytes(
        &api,
        &format!("/experiments/{two}/uploads/{sub}?format=binary"),
        None,
    )
    .await;
    assert_eq!(back.bytes().await.unwrap().to_vec(), large);

    // Over the upload limit (6 MiB in the test kit): 413 with a message, no row, no file.
    let big = vec![7u8; 6 * 1024 * 1024 + 10];
    let response = post_file(&api, &format!("/experiments/{one}/uploads"), "big.bin", big).await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["description"].as_str().unwrap().contains("6.0 MiB"),
        "{body}"
    );
    assert_eq!(
        api.json(&format!("/experiments/{one}/uploads"))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (blobs, tmp) = blob_files(app.dir.path());
    assert_eq!((blobs.len(), tmp), (2, 0));

    // Aborted: half a body, then the client goes away.
    {
        use tokio::io::AsyncWriteExt;
        let addr = app.url.trim_start_matches("http://").to_owned();
        let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /api/v2/experiments/{two}/uploads HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {key}\r\n\
             Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 200000\r\n\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"half.bin\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(&vec![1u8; 100_000]).await.unwrap();
        socket.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(socket);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (blobs, tmp) = blob_files(app.dir.path());
        if blobs.len() == 2 && tmp == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: {blobs:?}, {tmp} temporary"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        api.json(&format!("/experiments/{two}/uploads"))
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn active_content_is_a_sandboxed_download_and_images_are_inline() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api.create("/experiments", json!({"title": "Svg"})).await;
    let base = format!("/experiments/{id}/uploads");
    let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>".to_vec();
    for (name, content) in [
        ("evil.svg", svg.clone()),
        ("page.html", b"<script>alert(1)</script>".to_vec()),
        ("data.xml", b"<a/>".to_vec()),
        ("noext", b"??".to_vec()),
    ] {
        let sub = upload(&api, &base, name, content).await;
        let response = bytes(&api, &format!("{base}/{sub}?format=binary"), None).await;
        let h = response.headers();
        assert!(
            h["content-disposition"]
                .to_str()
                .unwrap()
                .starts_with("attachment"),
            "{name}: {h:?}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("sandbox"), "{name}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    let png = upload(&api, &base, "plot.png", b"\x89PNG\r\n\x1a\n".to_vec()).await;
    let response = bytes(&api, &format!("{base}/{png}?format=binary"), None).await;
    assert_eq!(response.headers()["content-type"], "image/png");
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline")
    );
    app.stop().await;
}

#[tokio::test]
async fn read_only_keys_get_403_and_other_teams_404() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Physics", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api.create("/experiments", json!({"title": "Mine"})).await;
    let base = format!("/experiments/{id}/uploads");
    let sub = upload(&api, &base, "a.txt", b"a".to_vec()).await;

    let read_only = app.api(&app.api_key(&alice, false).await);
    let response = post_file(&read_only, &base, "b.txt", b"b".to_vec()).await;
    assert_eq!(response.status(), 403);
    assert_eq!(read_only.json(&base).await.as_array().unwrap().len(), 1);
    assert_eq!(
        read_only.delete(&format!("{base}/{sub}")).await.status(),
        403
    );

    let foreign = app.api(&app.api_key(&bob, true).await);
    assert_eq!(foreign.get(&base).await.status(), 404);
    assert_eq!(
        foreign
            .get(&format!("{base}/{sub}?format=binary"))
            .await
            .status(),
        404
    );
    assert_eq!(
        post_file(&foreign, &base, "c.txt", b"c".to_vec())
            .await
            .status(),
        404
    );
    let (blobs, _) = blob_files(app.dir.path());
    assert_eq!(blobs.len(), 1, "a refused upload stores nothing");
    // An upload id under another entity is not found either.
    let other = api.create("/experiments", json!({"title": "Other"})).await;
    assert_eq!(
        api.get(&format!("/experiments/{other}/uploads/{sub}"))
            .await
            .status(),
        404
    );
    app.stop().await;
}

#[tokio::test]
async fn the_page_uploads_without_javascript_and_serves_images_by_hash() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api.create("/experiments", json!({"title": "Page"})).await;
    let browser = app.browser(&alice).await;
    let page = browser.page(&format!("/experiments/{id}")).await;
    assert!(page.contains("id=\"attachments\""));
    assert!(page.contains("enctype=\"multipart/form-data\""));
    let csrf = browser.csrf().await;

    let png = b"\x89PNG\r\n\x1a\nnot really".to_vec();
    let files = Form::new()
        .part("file", Part::bytes(png.clone()).file_name("gel.png"))
        .part(
            "file",
            Part::bytes(b"x,y\n1,2\n".to_vec()).file_name("table.csv"),
        )
        .text("comment", "from the form");
    let response = browser
        .client
        .post(format!(
            "{}/experiments/{id}/attachments?csrf={csrf}",
            browser.base
        ))
        .multipart(files)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        cahier_testkit::location(&response),
        format!("/experiments/{id}#attachments")
    );
    let page = browser.page(&format!("/experiments/{id}")).await;
    assert!(
        page.contains("gel.png") && page.contains("table.csv"),
        "{page}"
    );
    assert!(page.contains(&sha256(&png)[..12]));

    let image = browser
        .get(&format!("/experiments/{id}/attachments/{}", sha256(&png)))
        .await;
    assert_eq!(image.status(), 200);
    assert_eq!(image.headers()["content-type"], "image/png");
    assert_eq!(image.bytes().await.unwrap().to_vec(), png);

    // Without the token: refused, nothing stored.
    let response = browser
        .client
        .post(format!("{}/experiments/{id}/attachments", browser.base))
        .multipart(form("c.txt", b"c".to_vec(), None))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        api.json(&format!("/experiments/{id}/uploads"))
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn verify_names_a_corrupted_blob_and_fails() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api.create("/experiments", json!({"title": "Verify"})).await;
    let content = b"precious data".to_vec();
    upload(
        &api,
        &format!("/experiments/{id}/uploads"),
        "a.txt",
        content.clone(),
    )
    .await;
    upload(
        &api,
        &format!("/experiments/{id}/uploads"),
        "b.txt",
        b"other".to_vec(),
    )
    .await;
    let data = app.dir.path().to_path_buf();
    let verify = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_cahier"))
            .args(["verify", "--data", data.to_str().unwrap()])
            .env("CAHIER_LOG", "warn")
            .env_remove("CAHIER_CONFIG")
            .output()
            .unwrap()
    };
    let ok = verify();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("2 files checked"));

    let hash = sha256(&content);
    let path = data.join("blobs").join(&hash[..2]).join(&hash);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[3] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let bad = verify();
    assert!(!bad.status.success());
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(stdout.contains(&format!("corrupted: {hash}")), "{stdout}");
    app.stop().await;
}

/// Images get a small thumbnail for the page; other files, undecodable images and readers
/// without access get none.
#[tokio::test]
async fn images_get_thumbnails_under_the_page_access_check() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Chemistry", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api.create("/experiments", json!({"title": "Photos"})).await;
    let uploads = format!("/experiments/{id}/uploads");

    let mut png = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_fn(1000, 500, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    })
    .write_to(&mut png, image::ImageFormat::Png)
    .unwrap();
    let png = png.into_inner();
    upload(&api, &uploads, "plot.png", png.clone()).await;
    upload(&api, &uploads, "notes.txt", b"not an image".to_vec()).await;
    upload(
        &api,
        &uploads,
        "broken.png",
        b"\x89PNG\r\n\x1a\nbroken".to_vec(),
    )
    .await;

    let browser = app.browser(&alice).await;
    let page = browser.page(&format!("/experiments/{id}")).await;
    let hash = sha256(&png);
    let thumb_url = format!("/experiments/{id}/attachments/{hash}?thumb=1");
    assert!(page.contains(&thumb_url.replace('&', "&amp;")), "{page}");
    for round in 0..2 {
        // Made, then served from the cache.
        let response = browser.get(&thumb_url).await;
        assert_eq!(response.status(), 200, "round {round}");
        assert_eq!(response.headers()["content-type"], "image/jpeg");
        let bytes = response.bytes().await.unwrap();
        assert!(bytes.len() < 32 * 1024, "small: {} bytes", bytes.len());
        let thumb = image::load_from_memory(&bytes).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (256, 128));
    }
    for name in ["notes.txt", "broken.png"] {
        let content: &[u8] = if name == "notes.txt" {
            b"not an image"
        } else {
            b"\x89PNG\r\n\x1a\nbroken"
        };
        let url = format!("/experiments/{id}/attachments/{}?thumb=1", sha256(content));
        assert_eq!(browser.get(&url).await.status(), 404, "{name}");
    }
    let stranger = app.browser(&bob).await;
    assert_eq!(stranger.get(&thumb_url).await.status(), 404);
    app.stop().await;
}

/// An attachment is the stored file first (content-addressed), then the document's reference
/// and the upload row in one transaction: when that transaction fails (here the real database
/// refuses the row) or is refused (the entry was locked in between), there is no row and no
/// document change, and the file, referenced by nothing, is removed by the sweep.
#[tokio::test]
async fn a_failed_or_refused_attach_leaves_no_row_nor_change_and_the_file_is_swept() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api.create("/experiments", json!({"title": "Atomic"})).await;
    let subject = app.subject(&alice).await;
    let blobs = app.store.blobs().unwrap().clone();
    let heads_before = app.store.entity(&subject, id).await.unwrap().heads;
    let store_file = |bytes: &'static [u8]| {
        let blobs = blobs.clone();
        async move {
            let mut writer = blobs.writer().await.unwrap();
            writer.write(bytes).await.unwrap();
            writer.finish().await.unwrap()
        }
    };
    let new_upload = |(sha256, size): (String, u64)| cahier_store::uploads::NewUpload {
        sha256,
        size,
        real_name: "data.csv".into(),
        comment: String::new(),
        media_type: "text/csv".into(),
    };

    // The database refuses the row (a trigger put in the real file, as a full disk would).
    let stored = store_file(b"rows refused").await;
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        app.dir.path().join("cahier.db").display()
    ))
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_uploads BEFORE INSERT ON uploads \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    )
    .execute(&db)
    .await
    .unwrap();
    let failed = app
        .store
        .attach(&subject, id, new_upload(stored.clone()), None)
        .await;
    assert!(failed.is_err(), "{failed:?}");
    sqlx::query("DROP TRIGGER refuse_uploads")
        .execute(&db)
        .await
        .unwrap();

    // The entry is locked after the file is stored: the attach is refused.
    let refused_file = store_file(b"lock came first").await;
    assert_eq!(
        api.patch(&format!("/experiments/{id}"), json!({"action": "lock"}))
            .await
            .status(),
        200
    );
    let refused = app
        .store
        .attach(&subject, id, new_upload(refused_file.clone()), None)
        .await;
    assert!(
        matches!(refused, Err(cahier_store::StoreError::Conflict(ref m)) if m.contains("locked")),
        "{refused:?}"
    );

    let row = app.store.entity(&subject, id).await.unwrap();
    assert_eq!(row.heads, heads_before, "no document change landed");
    assert!(
        api.json(&format!("/experiments/{id}/uploads"))
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM uploads")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    db.close().await;
    // Both files are orphans; once older than the grace period the sweep removes them.
    for (hash, _) in [&stored, &refused_file] {
        let path = blobs.path_of(hash).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        let modified = file.metadata().unwrap().modified().unwrap();
        file.set_modified(modified - Duration::from_secs(48 * 3600))
            .unwrap();
    }
    let report = app
        .store
        .sweep_orphans(Duration::from_secs(24 * 3600), false)
        .await
        .unwrap();
    let mut removed = report.removed.clone();
    removed.sort();
    let mut expected = vec![stored.0.clone(), refused_file.0.clone()];
    expected.sort();
    assert_eq!(removed, expected);
    assert!(blob_files(app.dir.path()).0.is_empty());
    app.stop().await;
}
