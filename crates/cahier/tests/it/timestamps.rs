//! Trusted timestamps (RFC 3161) against a real local TSA (`openssl ts -reply` behind HTTP):
//! stamping through the API and the UI, the proof archive checked by the real
//! `openssl ts -verify`, re-stamping after an edit, every bad answer refused with nothing
//! stored, and `cahier verify` naming a tampered proof.

use cahier_testkit::TestApp;
use cahier_testkit::tsa::{TestTsa, TsaMode};
use serde_json::{Value, json};
use std::path::Path;

async fn stamp(api: &cahier_testkit::Api, id: i64) -> reqwest::Response {
    api.patch(
        &format!("/experiments/{id}"),
        json!({"action": "timestamp"}),
    )
    .await
}

/// Downloads an upload, unzips it into `dir`, and runs the real `openssl ts -verify` there.
async fn download_and_verify(
    api: &cahier_testkit::Api,
    id: i64,
    upload_id: i64,
    dir: &Path,
    roots: &Path,
) -> Value {
    let response = api
        .get(&format!(
            "/experiments/{id}/uploads/{upload_id}?format=binary"
        ))
        .await;
    assert_eq!(response.status(), 200);
    let zip = response.bytes().await.unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("proof.zip"), &zip).unwrap();
    let unzip = std::process::Command::new("unzip")
        .args(["-o", "-q", "proof.zip"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(unzip.status.success(), "{unzip:?}");
    for name in ["export.json", "token.tsr", "chain.pem"] {
        assert!(dir.join(name).exists(), "{name} missing from the archive");
    }
    let verified = std::process::Command::new("openssl")
        .args([
            "ts",
            "-verify",
            "-data",
            "export.json",
            "-in",
            "token.tsr",
            "-CAfile",
        ])
        .arg(roots)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        verified.status.success()
            && String::from_utf8_lossy(&verified.stdout).contains("Verification: OK"),
        "{verified:?}"
    );
    serde_json::from_slice(&std::fs::read(dir.join("export.json")).unwrap()).unwrap()
}

#[tokio::test]
async fn an_api_timestamp_is_a_proof_openssl_verifies_and_each_edit_can_be_stamped_again() {
    let tsa = TestTsa::start().await;
    let app = TestApp::spawn_with_tsa(Some(tsa.config())).await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api
        .create(
            "/experiments",
            json!({"title": "Soil pH", "body": "first body", "tags": ["soil"]}),
        )
        .await;
    let response = stamp(&api, id).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let entity: Value = response.json().await.unwrap();
    assert_eq!(entity["timestamped"], 1);
    assert_eq!(entity["timestamps"].as_array().unwrap().len(), 1);
    let first = entity["timestamps"][0].clone();
    assert_eq!(first["tsa_name"], "Cahier Test TSA");
    assert_eq!(first["hash_alg"], "sha256");
    // List rows say it too (eLabFTW's download-timestamps script filters on it), and the
    // advanced query finds it.
    let other = api
        .create("/experiments", json!({"title": "Not stamped"}))
        .await;
    let list = api.json("/experiments").await;
    let row = |id: i64| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(row(id)["timestamped"], 1);
    assert_eq!(row(other)["timestamped"], 0);
    let stamped = api.json("/experiments?extended=timestamped%3Ayes").await;
    assert_eq!(stamped.as_array().unwrap().len(), 1);
    assert_eq!(stamped[0]["id"], id);

    let uploads = api.json(&format!("/experiments/{id}/uploads")).await;
    let proof = uploads
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == first["upload_id"])
        .expect("the proof is listed among the uploads");
    assert!(
        proof["real_name"].as_str().unwrap().ends_with(".zip"),
        "{proof}"
    );

    let work = tempfile::tempdir().unwrap();
    let export = download_and_verify(
        &api,
        id,
        first["upload_id"].as_i64().unwrap(),
        &work.path().join("one"),
        &tsa.roots,
    )
    .await;
    assert_eq!(export["content"]["title"], "Soil pH");
    assert_eq!(export["content"]["body"], "first body");
    assert_eq!(export["content"]["tags"], json!(["soil"]));
    assert_eq!(
        export["heads"].as_array().unwrap().len(),
        first["heads"].as_str().unwrap().split(',').count()
    );
    // The exact stamped bytes are canonical: re-serialising them canonically changes nothing.
    let raw = std::fs::read(work.path().join("one/export.json")).unwrap();
    assert_eq!(cahier_core::trace::canonical_json(&export), raw);
    assert_eq!(
        super::uploads::sha256(&raw),
        first["export_sha256"].as_str().unwrap()
    );

    // The proof is immutable: no rename, no deletion.
    let proof_path = format!("/experiments/{id}/uploads/{}", first["upload_id"]);
    let response = api.patch(&proof_path, json!({"real_name": "x.zip"})).await;
    assert_eq!(response.status(), 409);
    assert_eq!(api.delete(&proof_path).await.status(), 409);

    // Edit, then stamp again: two proofs, each bound to its version.
    let response = api
        .patch(
            &format!("/experiments/{id}"),
            json!({"body": "second body"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let entity: Value = stamp(&api, id).await.json().await.unwrap();
    let stamps = entity["timestamps"].as_array().unwrap().clone();
    assert_eq!(stamps.len(), 2);
    assert_ne!(stamps[0]["heads"], stamps[1]["heads"]);
    let second = download_and_verify(
        &api,
        id,
        stamps[0]["upload_id"].as_i64().unwrap(),
        &work.path().join("two"),
        &tsa.roots,
    )
    .await;
    assert_eq!(second["content"]["body"], "second body");
    // The first proof is among the attachments the second one covers.
    let first_zip_hash = app
        .store
        .all_timestamps()
        .await
        .unwrap()
        .first()
        .unwrap()
        .upload_sha256
        .clone();
    assert!(
        second["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["sha256"] == first_zip_hash.as_str()),
        "{second}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_timestamp_button_stamps_and_the_page_shows_the_proof() {
    let tsa = TestTsa::start().await;
    let app = TestApp::spawn_with_tsa(Some(tsa.config())).await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api
        .create("/experiments", json!({"title": "From the page"}))
        .await;
    let browser = app.browser(&alice).await;
    let page = browser.page(&format!("/experiments/{id}")).await;
    assert!(page.contains("id=\"timestamp-button\""), "button missing");
    let response = browser
        .post_form(&format!("/experiments/{id}/timestamp"), &[])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        cahier_testkit::location(&response),
        format!("/experiments/{id}#timestamps")
    );
    let page = browser.page(&format!("/experiments/{id}")).await;
    // The browser asks for French by default: "Horodaté le … par …".
    assert!(
        page.contains("Horodaté le") || page.contains("Timestamped on"),
        "{page}"
    );
    assert!(page.contains("Cahier Test TSA"));
    let stamps = app.store.all_timestamps().await.unwrap();
    assert_eq!(stamps.len(), 1);
    assert!(page.contains(&format!(
        "/experiments/{id}/attachments/{}",
        stamps[0].upload_sha256
    )));

    // Without the CSRF token nothing happens.
    let response = browser
        .post_form_without_csrf(&format!("/experiments/{id}/timestamp"), &[])
        .await;
    assert!(response.status().is_client_error());
    assert_eq!(app.store.all_timestamps().await.unwrap().len(), 1);

    // A reader may not stamp.
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let bob_api = app.api(&app.api_key(&bob, true).await);
    let status = stamp(&bob_api, id).await.status();
    assert!(status == 403 || status == 404, "{status}");
    assert_eq!(app.store.all_timestamps().await.unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn every_bad_tsa_answer_is_refused_with_nothing_stored_and_a_retry_works() {
    let tsa = TestTsa::start().await;
    let app = TestApp::spawn_with_tsa(Some(tsa.config())).await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api
        .create("/experiments", json!({"title": "Bad TSA"}))
        .await;
    let cases = [
        (TsaMode::Rejected, "refused the request"),
        (TsaMode::WrongImprint, "message imprint"),
        (TsaMode::WrongNonce, "nonce"),
        (TsaMode::NotForTimestamping, "not for time-stamping"),
        (TsaMode::UnknownRoot, "trusted TSA roots"),
        (TsaMode::Garbage, "not a valid time-stamp response"),
        (TsaMode::Slow, "did not answer in time"),
    ];
    for (mode, expected) in cases {
        tsa.set_mode(mode);
        let response = stamp(&api, id).await;
        assert_eq!(response.status(), 502, "{mode:?}");
        let body: Value = response.json().await.unwrap();
        let message = body["description"].as_str().unwrap();
        assert!(
            message.contains(expected) && message.contains("nothing was stored"),
            "{mode:?}: {message}"
        );
        let uploads = api.json(&format!("/experiments/{id}/uploads")).await;
        assert_eq!(uploads, json!([]), "{mode:?} left an upload");
        assert!(app.store.all_timestamps().await.unwrap().is_empty());
    }
    tsa.set_mode(TsaMode::Good);
    assert_eq!(stamp(&api, id).await.status(), 200);
    assert_eq!(app.store.all_timestamps().await.unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn without_a_tsa_the_action_says_how_to_configure_one() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api.create("/experiments", json!({"title": "No TSA"})).await;
    let response = stamp(&api, id).await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    let message = body["description"].as_str().unwrap();
    assert!(
        message.contains("tsa_url") && message.contains("CAHIER_TSA_URL"),
        "{message}"
    );
    app.stop().await;
}

#[tokio::test]
async fn verify_checks_every_proof_and_names_a_tampered_one() {
    let tsa = TestTsa::start().await;
    let app = TestApp::spawn_with_tsa(Some(tsa.config())).await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api.create("/experiments", json!({"title": "Tamper"})).await;
    assert_eq!(stamp(&api, id).await.status(), 200);
    let stamps = app.store.all_timestamps().await.unwrap();
    let proof = stamps[0].clone();
    let data = app.dir.path().to_path_buf();
    let roots = tsa.roots.clone();
    let verify = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_cahier"))
            .args(["verify", "--data", data.to_str().unwrap(), "--tsa-ca-file"])
            .arg(&roots)
            .env("CAHIER_LOG", "warn")
            .env_remove("CAHIER_CONFIG")
            .env_remove("CAHIER_TSA_URL")
            .output()
            .unwrap()
    };
    let ok = verify();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains("1 trusted timestamps checked, 0 broken"),
        "{stdout}"
    );

    let path = data
        .join("blobs")
        .join(&proof.upload_sha256[..2])
        .join(&proof.upload_sha256);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() / 2;
    bytes[last] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let bad = verify();
    assert!(!bad.status.success());
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(
        stdout.contains(&format!(
            "timestamp broken: entity {id} upload {}",
            proof.upload_id
        )),
        "{stdout}"
    );
    app.stop().await;
}

/// With `tsa_hash = "sha512"` the request's imprint is SHA-512 and the archive still verifies
/// with the real `openssl ts -verify`; `cahier verify` checks it too.
#[tokio::test]
async fn a_sha512_timestamp_verifies_with_openssl() {
    let tsa = TestTsa::start().await;
    let mut config = tsa.config();
    config.hash = cahier_trace::HashAlg::Sha512;
    let app = TestApp::spawn_with_tsa(Some(config)).await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api
        .create("/experiments", json!({"title": "Long hash"}))
        .await;
    let response = stamp(&api, id).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let entity: Value = response.json().await.unwrap();
    assert_eq!(entity["timestamps"][0]["hash_alg"], "sha512");
    let upload_id = entity["timestamps"][0]["upload_id"].as_i64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let export = download_and_verify(&api, id, upload_id, dir.path(), &tsa.roots).await;
    assert_eq!(export["content"]["title"], "Long hash");
    let token = std::process::Command::new("openssl")
        .args(["ts", "-reply", "-in", "token.tsr", "-text"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&token.stdout);
    assert!(text.contains("sha512"), "{text}");
    app.stop().await;
}

async fn post_tsa(
    ui: &cahier_testkit::Browser,
    fields: Vec<(&'static str, String)>,
) -> reqwest::Response {
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ui.post_form("/admin/audit/tsa", &pairs).await
}

#[tokio::test]
async fn a_sysadmin_sets_the_tsa_on_the_admin_page_and_it_applies_at_once() {
    let tsa = TestTsa::start().await;
    let roots_pem = std::fs::read_to_string(&tsa.roots).unwrap();
    // No TSA at start: neither in the environment nor in cahier.toml.
    let app = TestApp::spawn().await;
    let root = app.user("root@lab.fr", "Ecology", true).await;
    app.store.set_sysadmin(root.id, true).await.unwrap();
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api
        .create("/experiments", json!({"title": "Set TSA"}))
        .await;
    assert_eq!(stamp(&api, id).await.status(), 409);

    // A non-sysadmin is refused, and nothing is stored.
    let alice_ui = app.browser(&alice).await;
    let fields = |pem: &str, action: &'static str| {
        vec![
            ("preset", String::new()),
            ("url", tsa.url.clone()),
            ("hash", "sha256".to_owned()),
            ("user", "lab".to_owned()),
            ("password", "hunter2-secret".to_owned()),
            ("roots_pem", pem.to_owned()),
            ("action", action.to_owned()),
        ]
    };
    let refused = post_tsa(&alice_ui, fields(&roots_pem, "save")).await;
    assert_eq!(refused.status(), 403);
    assert!(app.store.tsa_settings().await.unwrap().is_none());

    let ui = app.browser(&root).await;
    // Without the CSRF token: refused.
    let no_csrf = ui
        .post_form_without_csrf("/admin/audit/tsa", &[("url", tsa.url.as_str())])
        .await;
    assert!(no_csrf.status().is_client_error(), "{}", no_csrf.status());

    // A bundle that is not a certificate: a clear error, nothing stored.
    let bad = post_tsa(
        &ui,
        fields(
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
            "save",
        ),
    )
    .await;
    assert_eq!(bad.status(), 422);
    let text = bad.text().await.unwrap();
    assert!(text.contains("X.509"), "{text}");
    let none = post_tsa(&ui, fields("just some text", "save")).await;
    assert_eq!(none.status(), 422);
    assert!(none.text().await.unwrap().contains("PEM"));
    assert!(app.store.tsa_settings().await.unwrap().is_none());
    assert_eq!(stamp(&api, id).await.status(), 409);

    // The test action asks the TSA and stores nothing.
    let tested = post_tsa(&ui, fields(&roots_pem, "test")).await;
    assert_eq!(tested.status(), 303, "{}", tested.text().await.unwrap());
    assert!(cahier_testkit::location(&tested).starts_with("/admin/audit?tsa_test=ok"));
    assert_eq!(tsa.requests(), 1);
    assert!(app.store.tsa_settings().await.unwrap().is_none());
    let page = ui.page("/admin/audit?tsa_test=ok").await;
    assert!(page.contains("id=\"tsa-test-ok\""), "{page}");
    // A failing TSA: the precise error.
    tsa.set_mode(TsaMode::UnknownRoot);
    let failed = post_tsa(&ui, fields(&roots_pem, "test")).await;
    assert_eq!(failed.status(), 502);
    assert!(app.store.tsa_settings().await.unwrap().is_none());
    tsa.set_mode(TsaMode::Good);

    // Saved: in force at once, no restart.
    let saved = post_tsa(&ui, fields(&roots_pem, "save")).await;
    assert_eq!(saved.status(), 303, "{}", saved.text().await.unwrap());
    let stored = app.store.tsa_settings().await.unwrap().unwrap();
    assert_eq!(stored.url, tsa.url);
    assert_eq!(stored.password.as_deref(), Some("hunter2-secret"));
    let response = stamp(&api, id).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let entity: Value = response.json().await.unwrap();
    assert_eq!(entity["timestamped"], 1);
    let work = tempfile::tempdir().unwrap();
    let export = download_and_verify(
        &api,
        id,
        entity["timestamps"][0]["upload_id"].as_i64().unwrap(),
        work.path(),
        &tsa.roots,
    )
    .await;
    assert_eq!(export["content"]["title"], "Set TSA");
    let (checked, broken) = cahier_trace::verify_stored(&app.store, Some(&tsa.roots))
        .await
        .unwrap();
    assert_eq!((checked, broken.len()), (1, 0));

    // The page shows the authority, never the password; blank keeps it.
    let page = ui.page("/admin/audit").await;
    assert!(page.contains(&tsa.url), "{page}");
    assert!(
        !page.contains("hunter2"),
        "the password leaked into the page"
    );
    let mut keep = fields("", "save");
    keep.retain(|(k, _)| *k != "password");
    keep.push(("hash", "sha512".to_owned()));
    keep.retain(|(k, v)| !(*k == "hash" && v == "sha256"));
    let kept = post_tsa(&ui, keep).await;
    assert_eq!(kept.status(), 303, "{}", kept.text().await.unwrap());
    let stored = app.store.tsa_settings().await.unwrap().unwrap();
    assert_eq!(stored.hash, "sha512");
    assert_eq!(stored.password.as_deref(), Some("hunter2-secret"));
    assert_eq!(stored.roots_pem.trim(), roots_pem.trim());
    let mut clear = fields("", "save");
    clear.retain(|(k, _)| *k != "password");
    clear.push(("clear_password", "1".to_owned()));
    assert_eq!(post_tsa(&ui, clear).await.status(), 303);
    assert_eq!(
        app.store.tsa_settings().await.unwrap().unwrap().password,
        None
    );

    // Each change is in the audit log, with the URL and hash, never the password.
    let (entries, _) = app
        .store
        .audit_entries(&cahier_store::audit::AuditFilter {
            action: Some("tsa.configure".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(entries.len(), 3);
    for entry in &entries {
        assert_eq!(entry.actor_id, Some(root.id));
        assert!(entry.details.contains(&tsa.url), "{}", entry.details);
        assert!(!entry.details.contains("hunter2"), "{}", entry.details);
    }
    assert!(entries[0].details.contains("sha256") || entries[0].details.contains("sha512"));
    let page = ui.page("/admin/audit?action=tsa.configure").await;
    assert!(!page.contains("hunter2"));

    // Removed: timestamps are unavailable again.
    assert_eq!(
        post_tsa(&ui, vec![("action", "remove".to_owned())])
            .await
            .status(),
        303
    );
    assert!(app.store.tsa_settings().await.unwrap().is_none());
    assert_eq!(stamp(&api, id).await.status(), 409);
    app.stop().await;
}

#[tokio::test]
async fn a_tsa_from_the_config_makes_the_admin_form_read_only() {
    let tsa = TestTsa::start().await;
    let app = TestApp::spawn_with_tsa(Some(tsa.config())).await;
    let root = app.user("root@lab.fr", "Ecology", true).await;
    app.store.set_sysadmin(root.id, true).await.unwrap();
    let ui = app.browser(&root).await;
    let page = ui.page("/admin/audit").await;
    assert!(page.contains("id=\"tsa-fixed\""), "{page}");
    assert!(page.contains("<fieldset disabled>"), "{page}");
    let refused = ui
        .post_form(
            "/admin/audit/tsa",
            &[("url", "http://example.org/"), ("action", "save")],
        )
        .await;
    assert_eq!(refused.status(), 409);
    assert!(app.store.tsa_settings().await.unwrap().is_none());
    app.stop().await;
}
