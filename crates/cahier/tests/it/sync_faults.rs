//! Sync through a misbehaving network and a server that lost its recent past: a loopback fault
//! proxy between the replica and the lab duplicates, holds back (reorders), replays and cuts
//! requests and answers, including mid-file; a lab restored from a backup older than the
//! replica's last acknowledgement. After recovery both sides hold identical heads for every
//! entry, every edit made anywhere, and every file with its bytes.

use super::fault_proxy::{Fault, FaultProxy};
use super::sync_blobs::{Replica, replica_at};
use super::uploads::{blob_files, form, sha256};
use cahier_core::{EntityKind, EntityPatch};
use cahier_sync::http::TlsOptions;
use cahier_sync::sync_once;
use cahier_testkit::{TestApp, TestUser};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

pub(super) const PUSH: &str = "POST /api/sync/v1/push";
const PULL: &str = "POST /api/sync/v1/pull";
const FEED: &str = "GET /api/sync/v1/feed";
pub(super) const BLOB_PUT: &str = "PUT /api/sync/v1/blobs/";
const BLOB_GET: &str = "GET /api/sync/v1/blobs/";

pub(super) async fn replica_via(proxy: &FaultProxy, user: &TestUser) -> Replica {
    replica_at(&proxy.url, &TlsOptions::default(), user)
        .await
        .unwrap()
        .0
}

/// Appends a line to an entry's body on the replica (a local edit, as the UI makes it).
pub(super) async fn edit_on_replica(laptop: &Replica, user: &TestUser, uuid: &str, line: &str) {
    let subject = laptop.store.subject(user.id).await.unwrap();
    let row = laptop.store.entity_by_uuid(&subject, uuid).await.unwrap();
    let patch = EntityPatch {
        body: Some(format!("{}{line}\n", row.body)),
        ..Default::default()
    };
    laptop
        .store
        .update_entity(&subject, row.id, None, &patch, "save")
        .await
        .unwrap();
}

/// Appends a line to an entry's body at the lab, through API v2.
pub(super) async fn edit_at_lab(lab: &cahier_testkit::Api, id: i64, line: &str) {
    let body = lab.json(&format!("/experiments/{id}")).await["body"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = lab
        .patch(
            &format!("/experiments/{id}"),
            json!({"body": format!("{body}{line}\n")}),
        )
        .await;
    assert_eq!(response.status(), 200);
}

pub(super) async fn create_on_replica(
    laptop: &Replica,
    user: &TestUser,
    title: &str,
    body: &str,
) -> String {
    let subject = laptop.store.subject(user.id).await.unwrap();
    let new = cahier_store::NewEntity {
        kind: EntityKind::Experiment,
        team_id: user.team_id,
        canread: None,
        canwrite: None,
        patch: EntityPatch {
            title: Some(title.into()),
            body: Some(body.into()),
            ..Default::default()
        },
        template: None,
    };
    let id = laptop.store.create_entity(&subject, new).await.unwrap();
    laptop.store.entity(&subject, id).await.unwrap().uuid
}

/// Heads of every entry the user may read, by UUID, on the lab and on the replica.
async fn heads(
    lab: &cahier_store::Store,
    laptop: &Replica,
    user: &TestUser,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let subject = lab.subject(user.id).await.unwrap();
    let feed = lab.feed(&subject, 0, 10_000).await.unwrap();
    let at_lab: BTreeMap<String, String> = feed
        .items
        .into_iter()
        .map(|item| (item.uuid, item.heads))
        .collect();
    let mut on_laptop = BTreeMap::new();
    for uuid in laptop.store.synced_uuids().await.unwrap() {
        let heads = laptop.store.heads_of(&uuid).await.unwrap().unwrap();
        on_laptop.insert(uuid, heads);
    }
    (at_lab, on_laptop)
}

pub(super) async fn assert_converged(lab: &cahier_store::Store, laptop: &Replica, user: &TestUser) {
    let (at_lab, on_laptop) = heads(lab, laptop, user).await;
    assert_eq!(
        at_lab, on_laptop,
        "both sides hold the same entries and heads"
    );
    assert_eq!(laptop.store.pending_count().await.unwrap(), 0);
    assert!(laptop.store.rejected_edits().await.unwrap().is_empty());
}

/// The body of an entry, on the lab's store and on the replica's.
async fn bodies(
    lab: &cahier_store::Store,
    laptop: &Replica,
    user: &TestUser,
    uuid: &str,
) -> (String, String) {
    let subject = lab.subject(user.id).await.unwrap();
    let at_lab = lab.entity_by_uuid(&subject, uuid).await.unwrap().body;
    let subject = laptop.store.subject(user.id).await.unwrap();
    let on_laptop = laptop
        .store
        .entity_by_uuid(&subject, uuid)
        .await
        .unwrap()
        .body;
    (at_lab, on_laptop)
}

pub(super) async fn assert_lines(
    lab: &cahier_store::Store,
    laptop: &Replica,
    user: &TestUser,
    uuid: &str,
    lines: &[&str],
) {
    let (at_lab, on_laptop) = bodies(lab, laptop, user, uuid).await;
    assert_eq!(at_lab, on_laptop);
    for line in lines {
        assert_eq!(
            at_lab.lines().filter(|l| l == line).count(),
            1,
            "{line:?} once in {at_lab:?}"
        );
    }
}

pub(super) async fn blob_bytes(store: &cahier_store::Store, hash: &str) -> Vec<u8> {
    let mut reader = store.blob_store().unwrap().open(hash).await.unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = reader.next_chunk().await.unwrap() {
        bytes.extend_from_slice(&chunk);
    }
    bytes
}

/// Attaches `content` to an entry on the replica, as its API does offline.
pub(super) async fn attach_on_replica(
    laptop: &Replica,
    user: &TestUser,
    uuid: &str,
    name: &str,
    content: &[u8],
) {
    let subject = laptop.store.subject(user.id).await.unwrap();
    let id = laptop
        .store
        .entity_by_uuid(&subject, uuid)
        .await
        .unwrap()
        .id;
    let (hash, size) = laptop
        .store
        .blob_store()
        .unwrap()
        .put_stream(content)
        .await
        .unwrap();
    laptop
        .store
        .attach(
            &subject,
            id,
            cahier_store::uploads::NewUpload {
                sha256: hash,
                size,
                real_name: name.into(),
                comment: String::new(),
                media_type: "application/octet-stream".into(),
            },
            None,
        )
        .await
        .unwrap();
}

pub(super) fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(seed) >> 3) as u8 ^ (i % 251) as u8)
        .collect()
}

#[tokio::test]
async fn duplicated_held_back_and_replayed_requests_converge_and_lose_nothing() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Optics", false).await;
    let lab = app.api(&app.api_key(&ada, true).await);
    let shared = lab
        .create(
            "/experiments",
            json!({"title": "Shared", "body": "lab 0\n"}),
        )
        .await;
    let proxy = FaultProxy::start(&app.url).await;
    let laptop = replica_via(&proxy, &ada).await;
    let subject = app.store.subject(ada.id).await.unwrap();
    let shared_uuid = app.store.entity(&subject, shared).await.unwrap().uuid;

    // Offline: a new entry and an edit, while the lab edits the same entry.
    let field = create_on_replica(&laptop, &ada, "Field", "field 0\n").await;
    edit_on_replica(&laptop, &ada, &shared_uuid, "field 1").await;
    edit_at_lab(&lab, shared, "lab 1").await;

    // Every push and pull reaches the server twice.
    proxy.arm(Fault::Duplicate(PUSH));
    proxy.arm(Fault::Duplicate(PULL));
    let report = laptop.sync().await;
    assert_eq!((report.pushed, report.rejected), (2, 0), "{report}");
    assert_eq!(proxy.armed(), 0, "{:?}", proxy.fired());
    assert_converged(&app.store, &laptop, &ada).await;
    assert_lines(
        &app.store,
        &laptop,
        &ada,
        &shared_uuid,
        &["lab 0", "lab 1", "field 1"],
    )
    .await;
    assert_lines(&app.store, &laptop, &ada, &field, &["field 0"]).await;

    // A push held back (the replica sees a gateway error) reaches the server only after a
    // later push with newer edits, and after a lab edit.
    edit_on_replica(&laptop, &ada, &shared_uuid, "field 2").await;
    proxy.arm(Fault::Hold(PUSH));
    let failed = sync_once(&laptop.store, &laptop.transport).await;
    assert!(failed.is_err(), "{failed:?}");
    edit_on_replica(&laptop, &ada, &shared_uuid, "field 3").await;
    edit_on_replica(&laptop, &ada, &field, "field 4").await;
    let report = laptop.sync().await;
    assert_eq!((report.pushed, report.rejected), (2, 0), "{report}");
    edit_at_lab(&lab, shared, "lab 2").await;
    assert_eq!(
        proxy.release_held().await,
        vec![200],
        "the late push is accepted"
    );
    laptop.sync().await;
    assert_converged(&app.store, &laptop, &ada).await;
    let all = ["lab 0", "lab 1", "field 1", "field 2", "field 3", "lab 2"];
    assert_lines(&app.store, &laptop, &ada, &shared_uuid, &all).await;
    assert_lines(&app.store, &laptop, &ada, &field, &["field 0", "field 4"]).await;

    // Every request the replica ever sent, replayed in order, changes nothing.
    let (before, _) = heads(&app.store, &laptop, &ada).await;
    let log = proxy.log();
    let pushes = log.iter().filter(|r| r.key() == PUSH).count();
    assert!(pushes >= 3, "{pushes} pushes recorded");
    for request in &log {
        let (status, body) = proxy.replay(request).await;
        assert!(
            status == 200 || status == 201,
            "{} replayed: {status} {}",
            request.key(),
            String::from_utf8_lossy(&body)
        );
    }
    let (after, _) = heads(&app.store, &laptop, &ada).await;
    assert_eq!(before, after, "replays change no entry");
    let report = laptop.sync().await;
    assert_eq!(
        (report.pushed, report.added, report.merged),
        (0, 0, 0),
        "{report}"
    );
    assert_converged(&app.store, &laptop, &ada).await;
    assert_lines(&app.store, &laptop, &ada, &shared_uuid, &all).await;
    let quarantined = app.store.quarantined(&shared_uuid).await.unwrap();
    assert_eq!(quarantined, 0, "nothing was refused");
    app.stop().await;
}

#[tokio::test]
async fn a_connection_cut_in_the_middle_of_a_file_or_an_answer_loses_nothing() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Optics", false).await;
    let lab = app.api(&app.api_key(&ada, true).await);
    let id = lab
        .create(
            "/experiments",
            json!({"title": "Spectra", "body": "lab 0\n"}),
        )
        .await;
    let proxy = FaultProxy::start(&app.url).await;
    let laptop = replica_via(&proxy, &ada).await;
    let subject = app.store.subject(ada.id).await.unwrap();
    let uuid = app.store.entity(&subject, id).await.unwrap().uuid;

    // Up: the connection breaks halfway through a 3 MB file.
    let up = pattern(3 * 1024 * 1024, 7);
    attach_on_replica(&laptop, &ada, &uuid, "spectrum.raw", &up).await;
    proxy.arm(Fault::CutRequest(BLOB_PUT, 1_500_000));
    let failed = sync_once(&laptop.store, &laptop.transport).await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(proxy.fired().len(), 1);
    assert!(!app.store.blob_store().unwrap().exists(&sha256(&up)).await);
    // The lab removes its partial file when it sees the body end early, which may be after
    // the replica has seen the connection break (a race a loaded machine shows).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while blob_files(app.dir.path()).1 != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no partial file at the lab"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let report = laptop.sync().await;
    assert_eq!((report.files_sent, report.pushed), (1, 1), "{report}");
    assert_eq!(blob_bytes(&app.store, &sha256(&up)).await, up);

    // Down: the answer breaks halfway through a 3 MB file attached at the lab.
    let down = pattern(3 * 1024 * 1024, 13);
    let response = lab
        .client
        .post(format!("{}/experiments/{id}/uploads", lab.base))
        .multipart(form("reference.raw", down.clone(), None))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    proxy.arm(Fault::CutResponse(BLOB_GET, 1_500_000));
    let report = laptop.sync().await;
    assert_eq!(
        (report.files_received, report.files_missing),
        (0, 1),
        "{report}"
    );
    assert!(
        !laptop
            .store
            .blob_store()
            .unwrap()
            .exists(&sha256(&down))
            .await
    );
    assert_eq!(
        blob_files(laptop.dir.path()).1,
        0,
        "no partial file on the laptop"
    );
    let report = laptop.sync().await;
    assert_eq!(
        (report.files_received, report.files_missing),
        (1, 0),
        "{report}"
    );
    assert_eq!(blob_bytes(&laptop.store, &sha256(&down)).await, down);

    // The answers to a push and to a pull break off: the server had accepted the push, the
    // replica does not know it and sends it again; the pull is asked again.
    edit_on_replica(&laptop, &ada, &uuid, "field 1").await;
    proxy.arm(Fault::CutResponse(PUSH, 20));
    assert!(sync_once(&laptop.store, &laptop.transport).await.is_err());
    edit_at_lab(&lab, id, "lab 1").await;
    proxy.arm(Fault::CutResponse(PULL, 100));
    assert!(sync_once(&laptop.store, &laptop.transport).await.is_err());
    let report = laptop.sync().await;
    assert_eq!(report.rejected, 0, "{report}");
    assert_eq!(proxy.armed(), 0);
    laptop.sync().await;
    assert_converged(&app.store, &laptop, &ada).await;
    assert_lines(
        &app.store,
        &laptop,
        &ada,
        &uuid,
        &["lab 0", "field 1", "lab 1"],
    )
    .await;
    let uploads = lab.json(&format!("/experiments/{id}/uploads")).await;
    assert_eq!(uploads.as_array().unwrap().len(), 2, "{uploads}");
    app.stop().await;
}

/// Copies a lab's data directory as a backup would: the database with `VACUUM INTO` (a
/// consistent copy of a live database), the other files as they are.
pub(super) async fn backup(data: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    copy_dir(data, to, true);
    use sqlx::Executor as _;
    let mut connection = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        data.join("cahier.db").display()
    ))
    .await
    .unwrap();
    let target = to.join("cahier.db");
    connection
        .execute(sqlx::AssertSqlSafe(format!(
            "VACUUM INTO '{}'",
            target.display()
        )))
        .await
        .unwrap();
}

pub(super) fn copy_dir(from: &Path, to: &Path, top: bool) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if top && name.starts_with("cahier.db") {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target, false);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_lab_restored_from_an_older_backup_gets_back_what_the_replica_had_pushed() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Optics", false).await;
    let lab = app.api(&app.api_key(&ada, true).await);
    let id = lab
        .create(
            "/experiments",
            json!({"title": "Before", "body": "lab 0\n"}),
        )
        .await;
    let proxy = FaultProxy::start(&app.url).await;
    let laptop = replica_via(&proxy, &ada).await;
    let subject = app.store.subject(ada.id).await.unwrap();
    let uuid = app.store.entity(&subject, id).await.unwrap().uuid;
    let saved = tempfile::tempdir().unwrap();
    backup(app.dir.path(), saved.path()).await;

    // After the backup: the replica creates an entry with a file and edits the old one; the
    // lab acknowledges all of it.
    let field = create_on_replica(&laptop, &ada, "After", "field 0\n").await;
    let file = pattern(200_000, 3);
    attach_on_replica(&laptop, &ada, &field, "after.bin", &file).await;
    edit_on_replica(&laptop, &ada, &uuid, "field 1").await;
    let report = laptop.sync().await;
    assert_eq!((report.pushed, report.files_sent), (2, 1), "{report}");
    edit_on_replica(&laptop, &ada, &field, "field 2").await;
    let report = laptop.sync().await;
    assert_eq!(report.pushed, 1, "{report}");

    // The lab is lost and restored from the backup, at the same address; someone edits there.
    app.stop().await;
    let restored_dir = tempfile::tempdir().unwrap();
    let restored = restore(saved.path(), restored_dir.path()).await;
    proxy.set_upstream(&restored.url);
    let subject = restored.store.subject(ada.id).await.unwrap();
    assert!(
        restored
            .store
            .entity_by_uuid(&subject, &field)
            .await
            .is_err(),
        "the backup predates the new entry"
    );
    let patch = EntityPatch {
        body: Some("lab 0\nlab 1\n".into()),
        ..Default::default()
    };
    restored
        .store
        .update_entity(&subject, id, None, &patch, "save")
        .await
        .unwrap();

    // The replica notices the lab went back and sends again what it lacks.
    sends_back_what_the_lab_lost(&laptop).await;
    assert_converged(&restored.store, &laptop, &ada).await;
    assert_lines(
        &restored.store,
        &laptop,
        &ada,
        &uuid,
        &["lab 0", "field 1", "lab 1"],
    )
    .await;
    assert_lines(
        &restored.store,
        &laptop,
        &ada,
        &field,
        &["field 0", "field 2"],
    )
    .await;
    assert_eq!(blob_bytes(&restored.store, &sha256(&file)).await, file);
    let at_lab = restored
        .store
        .entity_by_uuid(&subject, &field)
        .await
        .unwrap();
    let uploads = restored
        .store
        .uploads(&subject, at_lab.id, false)
        .await
        .unwrap();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].real_name, "after.bin");
    restored.stop().await.unwrap();
}

/// The same loss, but the restored lab writes enough before the replica syncs that its
/// sequence passes the replica's checkpoint again: the sequence alone no longer shows the
/// loss; the identity of the lab's history does (docs/SYNC.md, "A restored server").
#[tokio::test]
async fn a_restored_lab_whose_sequence_passed_the_checkpoint_again_is_detected() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Optics", false).await;
    let lab = app.api(&app.api_key(&ada, true).await);
    let id = lab
        .create(
            "/experiments",
            json!({"title": "Before", "body": "lab 0\n"}),
        )
        .await;
    let proxy = FaultProxy::start(&app.url).await;
    let laptop = replica_via(&proxy, &ada).await;
    let subject = app.store.subject(ada.id).await.unwrap();
    let uuid = app.store.entity(&subject, id).await.unwrap().uuid;
    let saved = tempfile::tempdir().unwrap();
    backup(app.dir.path(), saved.path()).await;

    // After the backup: an entry made on the replica and an edit, both acknowledged.
    let field = create_on_replica(&laptop, &ada, "After", "field 0\n").await;
    edit_on_replica(&laptop, &ada, &uuid, "field 1").await;
    let report = laptop.sync().await;
    assert_eq!(report.pushed, 2, "{report}");
    let checkpoint: i64 = laptop
        .store
        .replica_get("feed_since")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();

    // Restored from the backup; the lab then writes more than it lost.
    app.stop().await;
    let restored_dir = tempfile::tempdir().unwrap();
    let restored = restore(saved.path(), restored_dir.path()).await;
    proxy.set_upstream(&restored.url);
    let subject = restored.store.subject(ada.id).await.unwrap();
    let mut body = "lab 0\n".to_owned();
    for n in 1..=6 {
        body.push_str(&format!("lab {n}\n"));
        let patch = EntityPatch {
            body: Some(body.clone()),
            ..Default::default()
        };
        restored
            .store
            .update_entity(&subject, id, None, &patch, "save")
            .await
            .unwrap();
    }
    assert_sequence_passed(&restored.store, &subject, checkpoint).await;

    // The replica notices all the same and sends again what the lab lost.
    sends_back_what_the_lab_lost(&laptop).await;
    assert_converged(&restored.store, &laptop, &ada).await;
    assert_lines(
        &restored.store,
        &laptop,
        &ada,
        &uuid,
        &["lab 0", "field 1", "lab 1", "lab 6"],
    )
    .await;
    assert_lines(&restored.store, &laptop, &ada, &field, &["field 0"]).await;

    // A plain restart of the lab (same data, a new history) is no loss: nothing moves.
    restored.stop().await.unwrap();
    let again = cahier::start(&lab_settings(restored_dir.path()))
        .await
        .unwrap();
    proxy.set_upstream(&again.url);
    let report = laptop.sync().await;
    assert_eq!(
        (report.pushed, report.pulled, report.restored),
        (0, 0, 0),
        "{report}"
    );
    again.stop().await.unwrap();
}

/// The same loss, with the commands a lab's sysadmin runs (docs/SYNC.md, "Backing up and
/// restoring a lab"): `cahier backup` while the lab serves, `cahier restore` into the stopped
/// lab's own folder (refused while it serves). The restored lab then writes past the
/// replica's checkpoint, so only the marks the backup kept show the loss; the replica sends
/// again the entry it made (with its file) and its edit.
#[tokio::test]
async fn a_replica_synced_after_cahier_backup_sends_its_work_again_to_the_lab_cahier_restore_put_back()
 {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Optics", false).await;
    let lab = app.api(&app.api_key(&ada, true).await);
    let id = lab
        .create(
            "/experiments",
            json!({"title": "Before", "body": "lab 0\n"}),
        )
        .await;
    let proxy = FaultProxy::start(&app.url).await;
    let laptop = replica_via(&proxy, &ada).await;
    let subject = app.store.subject(ada.id).await.unwrap();
    let uuid = app.store.entity(&subject, id).await.unwrap().uuid;
    let saved = tempfile::tempdir().unwrap();
    let backup = cahier::backup::BackupOptions {
        data: app.dir.path().to_path_buf(),
        to: saved.path().join("monday"),
        link: false,
    };
    let made = cahier::backup::backup(&backup, app.store.now_ms(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(made.manifest.counts.entities, 1);

    // After the backup: an entry with a file made on the replica, an edit, both acknowledged.
    let field = create_on_replica(&laptop, &ada, "After", "field 0\n").await;
    let file = pattern(150_000, 5);
    attach_on_replica(&laptop, &ada, &field, "after.bin", &file).await;
    edit_on_replica(&laptop, &ada, &uuid, "field 1").await;
    let report = laptop.sync().await;
    assert_eq!((report.pushed, report.files_sent), (2, 1), "{report}");
    let checkpoint: i64 = laptop
        .store
        .replica_get("feed_since")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();

    // Refused while the lab serves; then the lab stops and its folder is restored.
    let restore = cahier::backup::RestoreOptions {
        from: backup.to.clone(),
        data: backup.data.clone(),
        discard_current: false,
    };
    let refused = cahier::backup::restore(&restore, app.store.now_ms(), &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("stop the server first"),
        "{refused:#}"
    );
    let now = app.store.now_ms();
    let data = app.stop_keeping_data().await;
    let done = cahier::backup::restore(&restore, now, &mut |_| {})
        .await
        .unwrap();
    assert!(done.kept_aside.is_some(), "{done}");
    let restored = cahier::start(&lab_settings(data.path())).await.unwrap();
    proxy.set_upstream(&restored.url);
    let subject = restored.store.subject(ada.id).await.unwrap();
    assert!(
        restored
            .store
            .entity_by_uuid(&subject, &field)
            .await
            .is_err(),
        "the backup predates the new entry"
    );
    let mut body = "lab 0\n".to_owned();
    for n in 1..=6 {
        body.push_str(&format!("lab {n}\n"));
        let patch = EntityPatch {
            body: Some(body.clone()),
            ..Default::default()
        };
        restored
            .store
            .update_entity(&subject, id, None, &patch, "save")
            .await
            .unwrap();
    }
    assert_sequence_passed(&restored.store, &subject, checkpoint).await;

    sends_back_what_the_lab_lost(&laptop).await;
    assert_converged(&restored.store, &laptop, &ada).await;
    assert_lines(
        &restored.store,
        &laptop,
        &ada,
        &uuid,
        &["lab 0", "field 1", "lab 6"],
    )
    .await;
    assert_lines(&restored.store, &laptop, &ada, &field, &["field 0"]).await;
    assert_eq!(blob_bytes(&restored.store, &sha256(&file)).await, file);
    for uuid in [&uuid, &field] {
        assert_eq!(restored.store.quarantined(uuid).await.unwrap(), 0);
    }
    restored.stop().await.unwrap();
}

/// A restore under the running lab: SQLite's backup API writes the backup into the live
/// database file (`sqlite3 cahier.db ".restore …"`), with no restart, so no new history of the
/// lab's process begins; the lab then writes past the replica's checkpoint. The stamps of the
/// feed sequence show the loss all the same (docs/SYNC.md, "A restored server").
#[tokio::test]
async fn a_lab_restored_under_the_running_server_is_detected() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Optics", false).await;
    let lab = app.api(&app.api_key(&ada, true).await);
    let id = lab
        .create(
            "/experiments",
            json!({"title": "Before", "body": "lab 0\n"}),
        )
        .await;
    let proxy = FaultProxy::start(&app.url).await;
    let laptop = replica_via(&proxy, &ada).await;
    let subject = app.store.subject(ada.id).await.unwrap();
    let uuid = app.store.entity(&subject, id).await.unwrap().uuid;
    let saved = tempfile::tempdir().unwrap();
    backup(app.dir.path(), saved.path()).await;

    // After the backup: an entry made on the replica, an edit on each side, all synced.
    let field = create_on_replica(&laptop, &ada, "After", "field 0\n").await;
    edit_on_replica(&laptop, &ada, &uuid, "field 1").await;
    edit_at_lab(&lab, id, "lab 1").await;
    let report = laptop.sync().await;
    assert_eq!((report.pushed, report.pulled), (2, 2), "{report}");
    let checkpoint: i64 = laptop
        .store
        .replica_get("feed_since")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();

    // The backup goes back into the live file; the lab runs on and writes more than it lost.
    restore_live(
        &app.dir.path().join("cahier.db"),
        &saved.path().join("cahier.db"),
    );
    assert!(
        app.store.entity_by_uuid(&subject, &field).await.is_err(),
        "the running lab serves the backup"
    );
    for n in 2..=7 {
        edit_at_lab(&lab, id, &format!("lab {n}")).await;
    }
    assert_sequence_passed(&app.store, &subject, checkpoint).await;

    // The replica notices and sends again what the lab lost: its entry, its edit, and the
    // lab's own edit it had pulled.
    sends_back_what_the_lab_lost(&laptop).await;
    assert_converged(&app.store, &laptop, &ada).await;
    assert_lines(
        &app.store,
        &laptop,
        &ada,
        &uuid,
        &["lab 0", "field 1", "lab 1", "lab 2", "lab 7"],
    )
    .await;
    assert_lines(&app.store, &laptop, &ada, &field, &["field 0"]).await;
    app.stop().await;
}

/// A push the lab acknowledged, in a sync cut before it read the feed: the replica's checkpoint
/// stays below the push. The lab is then restored from a backup taken after that checkpoint
/// and before the push, so neither its sequence nor its history shows the loss; the mark the
/// push's answer carried does (docs/SYNC.md, "A restored server").
#[tokio::test]
async fn a_push_acknowledged_after_the_backup_in_a_sync_cut_before_the_feed_is_sent_again() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Optics", false).await;
    let lab = app.api(&app.api_key(&ada, true).await);
    let id = lab
        .create(
            "/experiments",
            json!({"title": "Before", "body": "lab 0\n"}),
        )
        .await;
    let proxy = FaultProxy::start(&app.url).await;
    let laptop = replica_via(&proxy, &ada).await;
    let subject = app.store.subject(ada.id).await.unwrap();
    let uuid = app.store.entity(&subject, id).await.unwrap().uuid;
    let checkpoint = laptop.store.replica_get("feed_since").await.unwrap();
    let saved = tempfile::tempdir().unwrap();
    backup(app.dir.path(), saved.path()).await;

    // After the backup: an edit and a new entry, pushed and acknowledged; the feed request
    // that follows never gets an answer.
    edit_on_replica(&laptop, &ada, &uuid, "field 1").await;
    let field = create_on_replica(&laptop, &ada, "After", "field 0\n").await;
    proxy.arm(Fault::Hold(FEED));
    let cut = sync_once(&laptop.store, &laptop.transport).await;
    assert!(cut.is_err(), "{cut:?}");
    assert_eq!(proxy.armed(), 0, "{:?}", proxy.fired());
    assert_eq!(
        laptop.store.pending_count().await.unwrap(),
        0,
        "acknowledged"
    );
    assert_eq!(
        laptop.store.replica_get("feed_since").await.unwrap(),
        checkpoint,
        "the checkpoint did not move"
    );

    // The lab is lost and restored from the backup, at the same address.
    app.stop().await;
    let restored_dir = tempfile::tempdir().unwrap();
    let restored = restore(saved.path(), restored_dir.path()).await;
    proxy.set_upstream(&restored.url);
    let subject = restored.store.subject(ada.id).await.unwrap();
    assert!(
        restored
            .store
            .entity_by_uuid(&subject, &field)
            .await
            .is_err(),
        "the backup predates the push"
    );

    sends_back_what_the_lab_lost(&laptop).await;
    assert_converged(&restored.store, &laptop, &ada).await;
    assert_lines(&restored.store, &laptop, &ada, &uuid, &["lab 0", "field 1"]).await;
    assert_lines(&restored.store, &laptop, &ada, &field, &["field 0"]).await;
    restored.stop().await.unwrap();
}

/// The two syncs after the lab was restored: the first notices it and sends again what the
/// lab lost, refusing nothing; the second has nothing left to do.
async fn sends_back_what_the_lab_lost(laptop: &Replica) {
    let report = laptop.sync().await;
    assert_eq!(report.rejected, 0, "{report}");
    assert_eq!(report.restored, 1, "{report}");
    let report = laptop.sync().await;
    assert_eq!(
        (
            report.pushed,
            report.merged,
            report.waiting,
            report.restored
        ),
        (0, 0, 0, 0),
        "{report}"
    );
}

/// The premise of a restore test: the restored lab's sequence has grown past the replica's
/// checkpoint again.
async fn assert_sequence_passed(
    lab: &cahier_store::Store,
    subject: &cahier_core::Subject,
    checkpoint: i64,
) {
    let top = lab.feed(subject, 0, 10_000).await.unwrap().next;
    assert!(
        top > checkpoint,
        "the premise: the lab's sequence ({top}) passed the replica's checkpoint ({checkpoint})"
    );
}

/// Writes the database `backup` into the live database file `db` with SQLite's backup API, as
/// the `sqlite3` shell's `.restore` does: the server using `db` keeps running and reads the
/// restored content from its next transaction on.
fn restore_live(db: &Path, backup: &Path) {
    let output = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(format!(".restore '{}'", backup.display()))
        .output()
        .expect("the sqlite3 shell (Debian package sqlite3) runs this test's restore");
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "sqlite3 .restore: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts a lab on a copy of the backup in `saved` (as after losing the lab's data), on a new
/// data directory kept in `dir`.
pub(crate) async fn restore(saved: &std::path::Path, dir: &std::path::Path) -> cahier::Running {
    copy_dir(saved, dir, false);
    cahier::start(&lab_settings(dir)).await.unwrap()
}

/// The settings of a test lab on the data directory `dir`.
fn lab_settings(dir: &std::path::Path) -> cahier::settings::Settings {
    cahier::settings::Settings {
        data: dir.to_path_buf(),
        listen: "127.0.0.1:0".into(),
        public_url: None,
        max_body_mb: 4,
        max_upload_mb: 6,
        tsa: None,
        audit_anchor_hours: 0,
        sqlite: Default::default(),
        time_zone: cahier_core::zone::Zone::utc(),
    }
}
