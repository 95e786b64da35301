//! Signatures with a meaning: a user makes a minisign key (secret key encrypted with their
//! passphrase), signs entry versions from the API and the UI, the page lists and checks them,
//! the downloads verify with Debian's real `minisign -V`, and `cahier verify` names a signature
//! whose signed bytes changed in the database.

use cahier_testkit::TestApp;
use serde_json::json;

const PASSPHRASE: &str = "a long lab passphrase";

#[tokio::test]
async fn a_signed_version_downloads_as_files_that_minisign_verifies() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let browser = app.browser(&alice).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api
        .create(
            "/experiments",
            json!({"title": "Signed", "body": "12.5 mg weighed"}),
        )
        .await;

    // No key yet: signing says what to do, and nothing is stored.
    let refused = api
        .patch(
            &format!("/experiments/{id}"),
            json!({"action": "sign", "passphrase": PASSPHRASE, "meaning": 40}),
        )
        .await;
    assert_eq!(refused.status(), 409);

    // A too short passphrase, then two that differ, are refused in the user's language.
    let page = browser
        .post_form(
            "/settings/signing-key",
            &[("passphrase", "short"), ("passphrase_again", "short")],
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("signkey-error"), "{page}");
    let made = browser
        .post_form(
            "/settings/signing-key",
            &[("passphrase", PASSPHRASE), ("passphrase_again", PASSPHRASE)],
        )
        .await;
    assert_eq!(made.status(), 200);
    let page = made.text().await.unwrap();
    assert!(page.contains("id=\"public-key\""), "{page}");
    let key = app.store.signing_key(alice.id).await.unwrap().unwrap();
    assert!(key.secret_key.contains("cahier secret key"));
    assert!(!key.secret_key.contains(PASSPHRASE));
    assert!(page.contains(key.public_key.lines().nth(1).unwrap()));

    // Wrong passphrase, unknown meaning: 422, nothing stored.
    for (body, field) in [
        (
            json!({"action": "sign", "passphrase": "not the passphrase", "meaning": 40}),
            "passphrase",
        ),
        (
            json!({"action": "sign", "passphrase": PASSPHRASE, "meaning": 12}),
            "meaning",
        ),
    ] {
        let response = api.patch(&format!("/experiments/{id}"), body).await;
        assert_eq!(response.status(), 422);
        let error: serde_json::Value = response.json().await.unwrap();
        assert!(
            error["description"]
                .as_str()
                .unwrap_or_default()
                .contains(field)
                || error["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(field),
            "{error}"
        );
    }
    assert!(
        app.store
            .signatures(&app.subject(&alice).await, id)
            .await
            .unwrap()
            .is_empty()
    );

    // Review through the API, authorship through the UI.
    let signed = api
        .patch(
            &format!("/experiments/{id}"),
            json!({"action": "sign", "passphrase": PASSPHRASE, "meaning": 40}),
        )
        .await;
    assert_eq!(signed.status(), 200);
    let wrong = browser
        .post_form(
            &format!("/experiments/{id}/sign"),
            &[("meaning", "20"), ("passphrase", "nope nope nope")],
        )
        .await;
    assert_eq!(wrong.status(), 200);
    assert!(wrong.text().await.unwrap().contains("sign-error"));
    let signed = browser
        .post_form(
            &format!("/experiments/{id}/sign"),
            &[("meaning", "20"), ("passphrase", PASSPHRASE)],
        )
        .await;
    assert_eq!(signed.status(), 303);

    let page = browser
        .get(&format!("/experiments/{id}/signatures"))
        .await
        .text()
        .await
        .unwrap();
    let signatures = app
        .store
        .signatures(&app.subject(&alice).await, id)
        .await
        .unwrap();
    assert_eq!(signatures.len(), 2);
    assert_eq!(page.matches("class=\"badge ok\"").count(), 2, "{page}");
    assert!(
        page.contains("Relecture") || page.contains("Review"),
        "{page}"
    );

    // Download the three files and let the real minisign check them.
    let dir = tempfile::tempdir().unwrap();
    for file in ["export.json", "export.json.minisig", "key.pub"] {
        let response = browser
            .get(&format!(
                "/experiments/{id}/signatures/{}/{file}",
                signatures[0].id
            ))
            .await;
        assert_eq!(response.status(), 200, "{file}");
        std::fs::write(dir.path().join(file), response.bytes().await.unwrap()).unwrap();
    }
    let export = std::fs::read_to_string(dir.path().join("export.json")).unwrap();
    assert!(export.contains("12.5 mg weighed"), "{export}");
    let minisign = std::process::Command::new("/usr/bin/minisign")
        .current_dir(dir.path())
        .args([
            "-V",
            "-p",
            "key.pub",
            "-m",
            "export.json",
            "-x",
            "export.json.minisig",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&minisign.stdout).into_owned();
    assert!(
        minisign.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&minisign.stderr)
    );
    assert!(out.contains("\"meaning\":\"review\""), "{out}");
    assert!(out.contains("alice@lab.fr"), "{out}");

    // One changed byte of the export makes minisign refuse it.
    let mut bytes = std::fs::read(dir.path().join("export.json")).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(dir.path().join("export.json"), bytes).unwrap();
    let refused = std::process::Command::new("/usr/bin/minisign")
        .current_dir(dir.path())
        .args([
            "-V",
            "-p",
            "key.pub",
            "-m",
            "export.json",
            "-x",
            "export.json.minisig",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());

    // Both signatures are in the audit log.
    let (entries, _) = app
        .store
        .audit_entries(&cahier_store::audit::AuditFilter {
            action: Some(cahier_store::audit::action::SIGN.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(entries.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn verify_names_a_signature_whose_signed_bytes_changed() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api.create("/experiments", json!({"title": "Tamper"})).await;
    cahier_trace::signature::create_signing_key(&app.store, alice.id, PASSPHRASE)
        .await
        .unwrap();
    let signed = api
        .patch(
            &format!("/experiments/{id}"),
            json!({"action": "sign", "passphrase": PASSPHRASE, "meaning": "approval"}),
        )
        .await;
    assert_eq!(signed.status(), 200);
    let first = app.store.all_signature_ids().await.unwrap()[0];
    let signature = app.store.signature_for_check(first).await.unwrap();
    let data = app.dir.path().to_path_buf();
    let verify = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_cahier"))
            .args(["verify", "--data", data.to_str().unwrap()])
            .env("CAHIER_LOG", "warn")
            .env_remove("CAHIER_CONFIG")
            .env_remove("CAHIER_TSA_URL")
            .output()
            .unwrap()
    };
    let ok = verify();
    let stdout = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(ok.status.success(), "{stdout}");
    assert!(
        stdout.contains("1 signatures checked, 0 broken"),
        "{stdout}"
    );

    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        app.dir.path().join("cahier.db").display()
    ))
    .await
    .unwrap();
    let mut export = signature.export.clone();
    let middle = export.len() / 2;
    export[middle] ^= 0x01;
    sqlx::query("UPDATE entity_signatures SET export = ? WHERE id = ?")
        .bind(&export)
        .bind(signature.id)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let bad = verify();
    let stdout = String::from_utf8_lossy(&bad.stdout).into_owned();
    assert!(!bad.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "signature broken: entity {id} signature {}: the signature does not verify",
            signature.id
        )),
        "{stdout}"
    );
    app.stop().await;
}

/// Makes `browser`'s user a signing key with [`PASSPHRASE`] and signs entry `id` with
/// `meaning` through the API.
pub(super) async fn sign_with_a_new_key(
    browser: &cahier_testkit::Browser,
    api: &cahier_testkit::Api,
    id: i64,
    meaning: i64,
) {
    let made = browser
        .post_form(
            "/settings/signing-key",
            &[("passphrase", PASSPHRASE), ("passphrase_again", PASSPHRASE)],
        )
        .await;
    assert_eq!(made.status(), 200);
    let signed = api
        .patch(
            &format!("/experiments/{id}"),
            json!({"action": "sign", "passphrase": PASSPHRASE, "meaning": meaning}),
        )
        .await;
    assert_eq!(signed.status(), 200);
}

/// Checks a signature with Debian's `minisign -V`; fails the test with minisign's words.
pub(super) fn minisign_verifies(
    key: &std::path::Path,
    message: &std::path::Path,
    signature: &std::path::Path,
) {
    let output = std::process::Command::new("minisign")
        .arg("-V")
        .arg("-p")
        .arg(key)
        .arg("-m")
        .arg(message)
        .arg("-x")
        .arg(signature)
        .output()
        .expect("minisign must be installed");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A signed entry's `.eln` export carries its signatures with the signed bytes, so the
/// signature verifies with `minisign -V` from the archive alone.
#[tokio::test]
async fn an_eln_export_carries_signatures_that_minisign_verifies() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let browser = app.browser(&alice).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api
        .create("/experiments", json!({"title": "Signed and exported"}))
        .await;
    sign_with_a_new_key(&browser, &api, id, 10).await;

    let archive = api
        .get(&format!("/experiments/{id}?format=eln"))
        .await
        .bytes()
        .await
        .unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive.to_vec())).unwrap();
    let name = (0..zip.len())
        .map(|i| zip.by_index(i).unwrap().name().unwrap().into_owned())
        .find(|n| n.ends_with("/ro-crate-metadata.json"))
        .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut zip.by_name(&name).unwrap(), &mut text).unwrap();
    let crate_json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let dataset = crate_json["@graph"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "Signed and exported")
        .unwrap();
    let signatures: serde_json::Value =
        serde_json::from_str(dataset["cahier:signatures"].as_str().unwrap()).unwrap();
    let signature = &signatures[0];
    assert_eq!(signature["meaning"], 10);
    assert_eq!(signature["signer"], alice.id);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("export.json"),
        signature["export"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("export.json.minisig"),
        signature["minisig"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("key.pub"),
        signature["public_key"].as_str().unwrap(),
    )
    .unwrap();
    minisign_verifies(
        &dir.path().join("key.pub"),
        &dir.path().join("export.json"),
        &dir.path().join("export.json.minisig"),
    );
    app.stop().await;
}
