//! The replica's record of the files the lab holds (docs/SYNC.md, "Files known to be on the
//! server"): a push asks the lab about a file (`HEAD`) once, not at every push; the record is
//! forgotten when the lab is restored from an older backup, and a push refused because the lab
//! lost a file it was known to hold sends the file again and goes through. A lab server from
//! the test kit, a replica over real HTTP through the loopback fault proxy, which counts the
//! requests and can cut one.

use super::fault_proxy::{Fault, FaultProxy};
use super::sync_blobs::{Replica, empty_replica_at};
use super::sync_faults::{
    BLOB_PUT, PUSH, assert_converged, assert_lines, attach_on_replica, backup, blob_bytes,
    create_on_replica, edit_on_replica, pattern, replica_via, restore,
};
use super::uploads::{sha256, upload};
use cahier_store::replica_files::FilePolicy;
use cahier_sync::http::TlsOptions;
use cahier_sync::sync_once;
use cahier_testkit::{TestApp, TestUser};
use serde_json::json;

const BLOB_HEAD: &str = "HEAD /api/sync/v1/blobs/";

/// How many requests the proxy received from `from` on whose `"METHOD /path"` starts with
/// `prefix`.
fn count(proxy: &FaultProxy, from: usize, prefix: &str) -> usize {
    proxy.log()[from..]
        .iter()
        .filter(|r| r.key().starts_with(prefix))
        .count()
}

/// The names and bytes of an entry's files at the lab, by name.
async fn files_at_lab(
    lab: &cahier_store::Store,
    user: &TestUser,
    uuid: &str,
) -> Vec<(String, Vec<u8>)> {
    let subject = lab.subject(user.id).await.unwrap();
    let entity = lab.entity_by_uuid(&subject, uuid).await.unwrap();
    let mut files = Vec::new();
    for upload in lab.uploads(&subject, entity.id, false).await.unwrap() {
        let bytes = blob_bytes(lab, &upload.sha256).await;
        files.push((upload.real_name, bytes));
    }
    files.sort();
    files
}

#[tokio::test]
async fn a_second_push_of_an_entry_with_files_asks_no_head() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Optics", false).await;
    let lab = app.api(&app.api_key(&ada, true).await);
    // A file attached at the lab, which this replica will not download.
    let shared = lab
        .create("/experiments", json!({"title": "Calibration"}))
        .await;
    let lamp = pattern(50_000, 5);
    upload(
        &lab,
        &format!("/experiments/{shared}/uploads"),
        "lamp.bin",
        lamp.clone(),
    )
    .await;
    let proxy = FaultProxy::start(&app.url).await;
    let laptop = empty_replica_at(&proxy.url, &TlsOptions::default(), &ada)
        .await
        .unwrap();
    laptop
        .store
        .set_file_policy(&FilePolicy::Pinned)
        .await
        .unwrap();
    let first = laptop.sync().await;
    assert_eq!((first.added, first.files_received), (1, 0), "{first}");
    assert!(
        laptop
            .store
            .blobs_on_server(&[sha256(&lamp)])
            .await
            .unwrap()
            .contains(&sha256(&lamp)),
        "the lab listed the file in the entry it sent: it holds it"
    );

    // Offline: a new entry (kept on the laptop) with the lamp's bytes, which the user had,
    // and two new files.
    let field = create_on_replica(&laptop, &ada, "Field", "field 0\n").await;
    laptop.store.pin_entity(&field).await.unwrap();
    let spectrum = pattern(120_000, 7);
    let dark = pattern(80_000, 11);
    attach_on_replica(&laptop, &ada, &field, "lamp-copy.bin", &lamp).await;
    attach_on_replica(&laptop, &ada, &field, "spectrum.bin", &spectrum).await;
    attach_on_replica(&laptop, &ada, &field, "dark.bin", &dark).await;
    let mark = proxy.log().len();
    let report = laptop.sync().await;
    assert_eq!(
        (report.pushed, report.rejected, report.files_sent),
        (1, 0, 2),
        "{report}"
    );
    assert_eq!(
        count(&proxy, mark, BLOB_HEAD),
        2,
        "only the two files the lab was not known to hold are asked about"
    );
    assert_eq!(count(&proxy, mark, BLOB_PUT), 2);

    // Edited again and again: each push sends the edit and asks nothing about its files.
    for n in 1..=3 {
        edit_on_replica(&laptop, &ada, &field, &format!("field {n}")).await;
        let mark = proxy.log().len();
        let report = laptop.sync().await;
        assert_eq!(
            (report.pushed, report.rejected, report.files_sent),
            (1, 0, 0),
            "{report}"
        );
        assert_eq!(count(&proxy, mark, PUSH), 1);
        assert_eq!(
            count(&proxy, mark, BLOB_HEAD),
            0,
            "push {n} asked the lab about files it holds"
        );
    }
    assert_eq!(
        files_at_lab(&app.store, &ada, &field).await,
        vec![
            ("dark.bin".to_owned(), dark),
            ("lamp-copy.bin".to_owned(), lamp),
            ("spectrum.bin".to_owned(), spectrum),
        ]
    );
    assert_converged(&app.store, &laptop, &ada).await;
    assert_lines(&app.store, &laptop, &ada, &field, &["field 0", "field 3"]).await;
    app.stop().await;
}

#[tokio::test]
async fn after_the_lab_is_restored_from_an_older_backup_the_file_is_sent_again() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Optics", false).await;
    let lab = app.api(&app.api_key(&ada, true).await);
    let id = lab
        .create("/experiments", json!({"title": "Cores", "body": "lab 0\n"}))
        .await;
    let proxy = FaultProxy::start(&app.url).await;
    let laptop = replica_via(&proxy, &ada).await;
    let subject = app.store.subject(ada.id).await.unwrap();
    let uuid = app.store.entity(&subject, id).await.unwrap().uuid;
    let saved = tempfile::tempdir().unwrap();
    backup(app.dir.path(), saved.path()).await;

    // After the backup: a file attached on the laptop reaches the lab, then an edit (whose
    // push asks nothing about the file).
    let core = pattern(200_000, 3);
    attach_on_replica(&laptop, &ada, &uuid, "core.bin", &core).await;
    let report = laptop.sync().await;
    assert_eq!((report.pushed, report.files_sent), (1, 1), "{report}");
    edit_on_replica(&laptop, &ada, &uuid, "field 1").await;
    let mark = proxy.log().len();
    let report = laptop.sync().await;
    assert_eq!((report.pushed, report.files_sent), (1, 0), "{report}");
    assert_eq!(count(&proxy, mark, BLOB_HEAD), 0);

    // The lab is lost and restored from the backup, which has the entry but not the file.
    app.stop().await;
    let restored_dir = tempfile::tempdir().unwrap();
    let restored = restore(saved.path(), restored_dir.path()).await;
    proxy.set_upstream(&restored.url);
    assert!(
        !restored
            .store
            .blob_store()
            .unwrap()
            .exists(&sha256(&core))
            .await,
        "the premise: the backup predates the file"
    );

    // The replica forgets what the lab was known to hold: it asks, sends the file, then the
    // edits the lab lost, and nothing is refused on the way.
    let mark = proxy.log().len();
    let report = laptop.sync().await;
    assert_eq!((report.rejected, report.files_sent), (0, 1), "{report}");
    assert_eq!(count(&proxy, mark, BLOB_PUT), 1);
    assert_eq!(
        restored.store.quarantined(&uuid).await.unwrap(),
        0,
        "no push named a file the lab lacked"
    );
    assert_eq!(
        files_at_lab(&restored.store, &ada, &uuid).await,
        vec![("core.bin".to_owned(), core)]
    );
    assert_lines(&restored.store, &laptop, &ada, &uuid, &["lab 0", "field 1"]).await;
    // And the record is whole again: the next edit asks nothing.
    edit_on_replica(&laptop, &ada, &uuid, "field 2").await;
    let mark = proxy.log().len();
    let report = laptop.sync().await;
    assert_eq!((report.pushed, report.files_sent), (1, 0), "{report}");
    assert_eq!(count(&proxy, mark, BLOB_HEAD), 0);
    assert_converged(&restored.store, &laptop, &ada).await;
    restored.stop().await.unwrap();
}

/// Removes a file from the lab's disk, as a failing disk or a careless hand would (its rows
/// stay).
fn lose_at_lab(app: &TestApp, hash: &str) {
    let path = app.store.blob_store().unwrap().path_of(hash).unwrap();
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn a_push_refused_for_a_file_the_lab_lost_sends_it_and_goes_through() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Optics", false).await;
    let proxy = FaultProxy::start(&app.url).await;
    let laptop: Replica = replica_via(&proxy, &ada).await;
    let raw = pattern(200_000, 17);
    let hash = sha256(&raw);
    let first = create_on_replica(&laptop, &ada, "First", "").await;
    attach_on_replica(&laptop, &ada, &first, "raw.bin", &raw).await;
    let report = laptop.sync().await;
    assert_eq!((report.pushed, report.files_sent), (1, 1), "{report}");

    // The lab loses the file; the laptop, which recorded that the lab holds it, attaches it
    // to another entry. The push skips the file, the lab refuses the entry for lack of it: the
    // replica asks again, sends it and pushes the entry again, in the same sync.
    lose_at_lab(&app, &hash);
    let second = create_on_replica(&laptop, &ada, "Second", "").await;
    attach_on_replica(&laptop, &ada, &second, "raw-again.bin", &raw).await;
    let mark = proxy.log().len();
    let report = laptop.sync().await;
    assert_eq!(
        (report.pushed, report.rejected, report.files_sent),
        (1, 0, 1),
        "{report}"
    );
    assert_eq!(count(&proxy, mark, PUSH), 2, "refused once, then accepted");
    assert_eq!(app.store.quarantined(&second).await.unwrap(), 1);
    assert_eq!(
        files_at_lab(&app.store, &ada, &second).await,
        vec![("raw-again.bin".to_owned(), raw.clone())]
    );

    // Lost again, and this time the upload that would repair it is cut: the sync fails, the
    // entry waits (not rejected), and the lab is no longer thought to hold the file.
    lose_at_lab(&app, &hash);
    let third = create_on_replica(&laptop, &ada, "Third", "").await;
    attach_on_replica(&laptop, &ada, &third, "raw-third.bin", &raw).await;
    proxy.arm(Fault::CutRequest(BLOB_PUT, 100_000));
    let failed = sync_once(&laptop.store, &laptop.transport).await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(proxy.armed(), 0, "{:?}", proxy.fired());
    assert_eq!(laptop.store.pending_count().await.unwrap(), 1);
    assert!(laptop.store.rejected_edits().await.unwrap().is_empty());
    assert!(
        laptop
            .store
            .blobs_on_server(std::slice::from_ref(&hash))
            .await
            .unwrap()
            .is_empty(),
        "the refusal took the file out of the record"
    );
    // The next sync asks, sends the file first, then the entry.
    let mark = proxy.log().len();
    let report = laptop.sync().await;
    assert_eq!(
        (report.pushed, report.rejected, report.files_sent),
        (1, 0, 1),
        "{report}"
    );
    assert_eq!(
        count(&proxy, mark, PUSH),
        1,
        "the file went before the push"
    );
    assert_eq!(
        files_at_lab(&app.store, &ada, &third).await,
        vec![("raw-third.bin".to_owned(), raw)]
    );
    assert_converged(&app.store, &laptop, &ada).await;
    app.stop().await;
}
