//! Partial field copies (issue #5): a replica keeps only the attachment files its policy
//! selects (`pinned`, `teams=…`, `all`), fetches the others when they are opened while the lab
//! server answers, says clearly that a file is not on the laptop when it does not, and drops
//! files it no longer selects — never one a local change still needs. A lab server from the
//! test kit, a replica with its own SQLite file and encrypted blob folder, served by the
//! production router, over real HTTP.

use super::sync_blobs::{Replica, empty_replica_at, file_bytes, serve_replica};
use super::uploads::{sha256, upload};
use cahier_store::replica_files::FilePolicy;
use cahier_sync::Transport;
use cahier_sync::http::TlsOptions;
use cahier_testkit::{Api, TestApp, TestUser};
use serde_json::{Value, json};

/// Registers a device for `user` and sets the file policy before the first copy, as
/// `cahier replica init --files …` does, then takes the first copy.
async fn replica_keeping(app: &TestApp, user: &TestUser, policy: &str) -> Replica {
    let laptop = empty_replica_at(&app.url, &TlsOptions::default(), user)
        .await
        .unwrap();
    laptop
        .store
        .replica_set("user_id", &laptop.user_id.to_string())
        .await
        .unwrap();
    laptop
        .store
        .import_reference(&laptop.transport.reference().await.unwrap())
        .await
        .unwrap();
    laptop
        .store
        .set_file_policy(&FilePolicy::parse(policy).unwrap())
        .await
        .unwrap();
    laptop.sync().await;
    laptop
}

/// Creates an experiment with one file at the lab; returns its id and the file's bytes.
async fn experiment_with_file(lab: &Api, title: &str, size: u32) -> (i64, Vec<u8>) {
    let id = lab.create("/experiments", json!({ "title": title })).await;
    let bytes: Vec<u8> = (0..size)
        .map(|i| (i.wrapping_mul(31).wrapping_add(size)) as u8)
        .collect();
    upload(
        lab,
        &format!("/experiments/{id}/uploads"),
        &format!("{title}.bin"),
        bytes.clone(),
    )
    .await;
    (id, bytes)
}

async fn holds(replica: &Replica, bytes: &[u8]) -> bool {
    replica
        .store
        .blob_store()
        .unwrap()
        .exists(&sha256(bytes))
        .await
}

/// The replica's id of the upload of `bytes` in an experiment.
async fn upload_id(local: &Api, id: i64, bytes: &[u8]) -> Value {
    let listed = local.json(&format!("/experiments/{id}/uploads")).await;
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["hash"] == sha256(bytes))
        .unwrap_or_else(|| panic!("no upload {} in {listed}", sha256(bytes)))["id"]
        .clone()
}

/// A cookie-keeping client for the replica's UI, with its CSRF token.
async fn ui_client(base: &str) -> (reqwest::Client, String) {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let html = client
        .get(format!("{base}/replica/files"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no csrf token in {html}"))
        .to_owned();
    (client, csrf)
}

#[tokio::test]
async fn a_pinned_copy_fetches_only_pinned_files_and_the_others_when_opened_online() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let lab = app.api(&app.api_key(&alice, true).await);
    let (kept, kept_bytes) = experiment_with_file(&lab, "Kept", 150_000).await;
    let (other, other_bytes) = experiment_with_file(&lab, "Other", 90_000).await;
    let (late, late_bytes) = experiment_with_file(&lab, "Late", 4_000).await;

    // The first copy holds every entry but none of their files: nothing is pinned yet.
    let laptop = replica_keeping(&app, &alice, "pinned").await;
    let (local_server, local) = serve_replica(&laptop).await;
    assert_eq!(
        local.json(&format!("/experiments/{other}")).await["title"],
        "Other",
        "documents always sync whole"
    );
    assert!(!holds(&laptop, &kept_bytes).await);

    // Pinning "available offline" in the UI, then syncing, fetches that entry's file only.
    let (ui, csrf) = ui_client(&local_server.url).await;
    let page = ui
        .get(format!("{}/experiments/{kept}", local_server.url))
        .header("accept-language", "fr")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Disponible hors ligne"), "{page}");
    assert!(
        page.contains("id=\"offline-toggle\" aria-pressed=\"false\""),
        "not pinned yet"
    );
    let pinned = ui
        .post(format!("{}/experiments/{kept}/offline", local_server.url))
        .form(&[("pin", "1"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(pinned.status(), 200, "redirected back to the entry");
    assert!(
        pinned
            .text()
            .await
            .unwrap()
            .contains("id=\"offline-toggle\" aria-pressed=\"true\"")
    );
    let report = laptop.sync().await;
    assert_eq!(
        (report.files_received, report.files_missing),
        (1, 0),
        "{report}"
    );
    assert!(holds(&laptop, &kept_bytes).await);
    assert!(!holds(&laptop, &other_bytes).await);
    let files_page = ui
        .get(format!("{}/replica/files", local_server.url))
        .header("accept-language", "en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(files_page.contains("id=\"files-held\">1<"), "{files_page}");
    assert!(
        files_page.contains("id=\"files-not-held\">2<"),
        "{files_page}"
    );
    assert!(
        files_page.contains(">Kept</a>"),
        "the pinned entry is listed"
    );
    let list = ui
        .get(format!("{}/experiments", local_server.url))
        .header("accept-language", "en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        list.matches("class=\"badge pinned\"").count(),
        1,
        "only the pinned entry is marked in the list: {list}"
    );

    // Opening a file the laptop lacks while the lab answers fetches it, verified and kept.
    let other_upload = upload_id(&local, other, &other_bytes).await;
    let (status, bytes) = file_bytes(
        &local,
        &format!("/experiments/{other}/uploads/{other_upload}"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(sha256(&bytes), sha256(&other_bytes));
    assert_eq!(bytes, other_bytes);
    assert!(holds(&laptop, &other_bytes).await, "kept for the next time");
    let again = laptop.sync().await;
    assert_eq!(
        again.files_dropped, 0,
        "a file just opened is not dropped: {again}"
    );

    // With the lab stopped, a file not on the laptop gets a clear answer, never a 500.
    let late_upload = upload_id(&local, late, &late_bytes).await;
    app.stop().await;
    let api_answer = local
        .client
        .get(format!(
            "{}/experiments/{late}/uploads/{late_upload}?format=binary",
            local.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(api_answer.status(), 404);
    let body: Value = api_answer.json().await.unwrap();
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("not on this laptop"),
        "{body}"
    );
    let sha = sha256(&late_bytes);
    let page = ui
        .get(format!(
            "{}/experiments/{late}/attachments/{sha}",
            local_server.url
        ))
        .header("accept-language", "fr")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Ce fichier n&#39;est pas sur cet ordinateur")
            || html.contains("Ce fichier n'est pas sur cet ordinateur"),
        "{html}"
    );
    // An image in a body or a thumbnail gets a picture saying so, not a broken image.
    let picture = ui
        .get(format!(
            "{}/experiments/{late}/attachments/{sha}?thumb=1",
            local_server.url
        ))
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    assert_eq!(picture.status(), 404);
    assert_eq!(picture.headers()["content-type"], "image/svg+xml");
    assert!(picture.text().await.unwrap().contains("Not on this laptop"));
    // Files already here are still served offline.
    let kept_upload = upload_id(&local, kept, &kept_bytes).await;
    let (status, bytes) = file_bytes(
        &local,
        &format!("/experiments/{kept}/uploads/{kept_upload}"),
    )
    .await;
    assert_eq!((status, bytes), (200, kept_bytes));
    local_server.stop().await.unwrap();
}

#[tokio::test]
async fn unpinning_drops_the_file_but_never_one_attached_offline_and_not_yet_pushed() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let lab = app.api(&app.api_key(&alice, true).await);
    let (id, lab_bytes) = experiment_with_file(&lab, "Cores", 70_000).await;
    let laptop = replica_keeping(&app, &alice, "pinned").await;
    let subject = laptop.store.subject(alice.id).await.unwrap();
    let uuid = laptop
        .store
        .entity_uuid_by_ref(&subject, &format!("experiments/{id}"))
        .await
        .unwrap();
    laptop.store.pin_entity(&uuid).await.unwrap();
    assert_eq!(laptop.sync().await.files_received, 1);
    assert!(holds(&laptop, &lab_bytes).await);

    // Offline: a file attached on the laptop, then the entry unpinned.
    let (local_server, local) = serve_replica(&laptop).await;
    let field_bytes = b"depth,core\n12,A\n".to_vec();
    upload(
        &local,
        &format!("/experiments/{id}/uploads"),
        "field.csv",
        field_bytes.clone(),
    )
    .await;
    laptop.store.unpin_entity(&uuid).await.unwrap();
    // The change attaching the field file is not pushed yet: neither file of the entry goes
    // (the lab's file is protected too, as the entry has a change waiting).
    assert_eq!(laptop.store.drop_unwanted_blobs().await.unwrap(), 0);
    assert!(
        holds(&laptop, &field_bytes).await,
        "never lose the user's own file"
    );
    assert!(holds(&laptop, &lab_bytes).await);

    // Once pushed and acknowledged, the lab holds the field file and the laptop may drop both.
    let report = laptop.sync().await;
    assert_eq!((report.files_sent, report.pushed), (1, 1), "{report}");
    assert_eq!(report.files_dropped, 2, "{report}");
    assert!(!holds(&laptop, &field_bytes).await);
    assert!(!holds(&laptop, &lab_bytes).await);
    let at_lab = upload_id(&lab, id, &field_bytes).await;
    let (status, bytes) = file_bytes(&lab, &format!("/experiments/{id}/uploads/{at_lab}")).await;
    assert_eq!((status, bytes), (200, field_bytes.clone()));
    // And it comes back when opened.
    let on_laptop = upload_id(&local, id, &field_bytes).await;
    let (status, bytes) =
        file_bytes(&local, &format!("/experiments/{id}/uploads/{on_laptop}")).await;
    assert_eq!((status, bytes), (200, field_bytes));
    local_server.stop().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn a_teams_copy_keeps_only_those_teams_files_and_all_fetches_everything() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let botany = app.team("Botany").await;
    app.store.add_member(botany, alice.id, false).await.unwrap();
    let ecology_lab = app.api(&app.api_key(&alice, true).await);
    let (_, key) = app
        .store
        .create_api_key(alice.id, botany, "botany", true)
        .await
        .unwrap();
    let botany_lab = app.api(&key);
    let (_, ecology_bytes) = experiment_with_file(&ecology_lab, "Transect", 50_000).await;
    let (_, botany_bytes) = experiment_with_file(&botany_lab, "Herbarium", 60_000).await;

    let laptop = replica_keeping(&app, &alice, "teams=Botany").await;
    assert!(holds(&laptop, &botany_bytes).await);
    assert!(!holds(&laptop, &ecology_bytes).await);

    // An unknown team is refused, naming the teams there are; the setting is unchanged.
    let refused = laptop
        .store
        .set_file_policy(&FilePolicy::parse("teams=Zoology").unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("Botany") && refused.contains("Zoology"),
        "{refused}"
    );

    // Switching teams fetches the new team's files and drops the old one's.
    laptop
        .store
        .set_file_policy(&FilePolicy::parse(&format!("teams={}", alice.team_id)).unwrap())
        .await
        .unwrap();
    assert_eq!(
        laptop.store.file_policy().await.unwrap(),
        FilePolicy::Teams(vec!["Ecology".into()]),
        "teams given by id are kept by name"
    );
    let report = laptop.sync().await;
    assert_eq!(
        (report.files_received, report.files_dropped),
        (1, 1),
        "{report}"
    );
    assert!(holds(&laptop, &ecology_bytes).await);
    assert!(!holds(&laptop, &botany_bytes).await);

    // Back to all: everything is fetched.
    laptop
        .store
        .set_file_policy(&FilePolicy::All)
        .await
        .unwrap();
    let report = laptop.sync().await;
    assert_eq!(report.files_received, 1, "{report}");
    assert!(holds(&laptop, &botany_bytes).await);
    assert!(holds(&laptop, &ecology_bytes).await);
    let counts = laptop.store.file_counts().await.unwrap();
    assert_eq!((counts.held, counts.not_held), (2, 0));
    app.stop().await;
}

/// The file drop race (docs/SYNC.md): the drop step reads what it keeps, then removes; a file
/// written in between — fetched on demand, or attached offline, whose fetch record or row is
/// not written yet — must survive it. The steps are interleaved by hand with store calls, in
/// the order that used to lose the file.
#[tokio::test]
async fn a_file_written_while_a_sync_drops_files_is_never_dropped_before_its_record() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let lab = app.api(&app.api_key(&alice, true).await);
    let (id, lab_bytes) = experiment_with_file(&lab, "Cores", 70_000).await;
    let laptop = replica_keeping(&app, &alice, "pinned").await;
    let blobs = laptop.store.blob_store().unwrap().clone();
    assert!(!holds(&laptop, &lab_bytes).await, "pinned: not held");

    // Fetched on demand while a sync runs: the bytes are named, then the drop step runs, then
    // the fetch is recorded.
    blobs.put_stream(&lab_bytes[..]).await.unwrap();
    assert_eq!(laptop.store.drop_unwanted_blobs().await.unwrap(), 0);
    assert!(holds(&laptop, &lab_bytes).await, "a fresh fetch survives");
    laptop
        .store
        .record_fetched(&sha256(&lab_bytes))
        .await
        .unwrap();
    assert_eq!(laptop.store.drop_unwanted_blobs().await.unwrap(), 0);
    assert!(holds(&laptop, &lab_bytes).await, "then its record keeps it");

    // Attached offline at the moment a sync drops the same (unselected) hash: the attach
    // finds the file present (and touches it), the drop step runs, then the row is written.
    let other = lab.create("/experiments", json!({"title": "Other"})).await;
    let shared = b"shared bytes, held and unselected".to_vec();
    upload(
        &lab,
        &format!("/experiments/{other}/uploads"),
        "s.bin",
        shared.clone(),
    )
    .await;
    laptop.sync().await;
    blobs.put_stream(&shared[..]).await.unwrap();
    assert_eq!(laptop.store.drop_unwanted_blobs().await.unwrap(), 0);
    let (local_server, local) = serve_replica(&laptop).await;
    upload(
        &local,
        &format!("/experiments/{id}/uploads"),
        "again.bin",
        shared.clone(),
    )
    .await;
    assert_eq!(laptop.store.drop_unwanted_blobs().await.unwrap(), 0);
    assert!(
        holds(&laptop, &shared).await,
        "the user's attachment keeps its bytes"
    );

    // Once the attachment is pushed and acknowledged, nothing protects the two files: the
    // next sync drops them (the fetch record is recent, so the lab's file stays).
    let report = laptop.sync().await;
    assert_eq!(report.pushed, 1, "{report}");
    assert!(!holds(&laptop, &shared).await, "{report}");
    assert!(holds(&laptop, &lab_bytes).await, "{report}");
    local_server.stop().await.unwrap();
    app.stop().await;
}
