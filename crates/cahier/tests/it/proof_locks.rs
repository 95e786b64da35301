//! "Lock on signature" and "lock on timestamp": a sysadmin turns them on, a proof then locks
//! the entry in the proof's transaction, and edits made offline on a field replica before the
//! lock reach the server as rejected edits (kept, not applied), each step in the audit log.

use cahier_store::Store;
use cahier_store::audit::{AuditFilter, action};
use cahier_sync::http::{HttpTransport, TlsOptions};
use cahier_sync::sync_once;
use cahier_testkit::TestApp;
use cahier_testkit::tsa::TestTsa;
use serde_json::json;
use std::sync::Arc;

const PASSPHRASE: &str = "a long lab passphrase";

#[tokio::test]
async fn a_signature_locks_the_entry_when_chosen_and_offline_edits_become_rejected_edits() {
    let app = TestApp::spawn().await;
    let root = app.user("root@lab.fr", "Ecology", true).await;
    app.store.set_sysadmin(root.id, true).await.unwrap();
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let team_writes = json!({"base": 30, "teams": [], "teamgroups": [], "users": []});
    let id = api
        .create(
            "/experiments",
            json!({"title": "Shared", "canwrite": team_writes}),
        )
        .await;
    let other = api
        .create("/experiments", json!({"title": "Not signed"}))
        .await;

    // Bob's laptop takes a copy, then he edits offline.
    let dir = tempfile::tempdir().unwrap();
    let (transport, registered) = HttpTransport::register(
        &app.url,
        &TlsOptions::default(),
        &bob.email,
        &bob.password,
        "laptop",
    )
    .await
    .unwrap();
    let laptop = Store::open_sqlite(
        &dir.path().join("cahier.db"),
        Arc::new(cahier_core::SystemClock),
    )
    .await
    .unwrap()
    .with_device(&registered.device)
    .with_encrypted_blobs(dir.path().join("blobs"), 1024 * 1024, [7; 32]);
    laptop.init_replica().await.unwrap();
    sync_once(&laptop, &transport).await.unwrap();
    let bob_subject = laptop.subject(bob.id).await.unwrap();
    laptop
        .update_entity(
            &bob_subject,
            id,
            None,
            &cahier_core::EntityPatch {
                body: Some("edited in the field after the signature".into()),
                ..Default::default()
            },
            "save",
        )
        .await
        .unwrap();

    // The sysadmin chooses to lock on signature; Alice signs.
    let ui = app.browser(&root).await;
    ui.page("/admin/audit").await;
    let saved = ui
        .post_form("/admin/audit/locking", &[("lock_on_signature", "1")])
        .await;
    assert_eq!(saved.status(), 303);
    let page = ui.page("/admin/audit").await;
    assert!(
        page.contains("id=\"lock-on-signature\" name=\"lock_on_signature\" value=\"1\" checked"),
        "{page}"
    );
    assert!(!page.contains("name=\"lock_on_timestamp\" value=\"1\" checked"));
    cahier_trace::signature::create_signing_key(&app.store, alice.id, PASSPHRASE)
        .await
        .unwrap();
    let signed = api
        .patch(
            &format!("/experiments/{id}"),
            json!({"action": "sign", "passphrase": PASSPHRASE, "meaning": 20}),
        )
        .await;
    assert_eq!(signed.status(), 200);
    let body: serde_json::Value = signed.json().await.unwrap();
    assert_eq!(body["locked"], 1, "{body}");
    assert_eq!(body["lockedby"], alice.id);
    assert_eq!(
        api.json(&format!("/experiments/{other}")).await["locked"],
        0
    );

    // Bob's offline edit is refused by the server and kept on both sides.
    let report = sync_once(&laptop, &transport).await.unwrap();
    assert_eq!((report.pushed, report.rejected), (0, 1), "{report}");
    let rejected = laptop.rejected_edits().await.unwrap();
    assert!(rejected[0].reason.contains("locked"), "{rejected:?}");
    let uuid = app
        .store
        .entity(&app.subject(&alice).await, id)
        .await
        .unwrap()
        .uuid;
    assert_eq!(app.store.quarantined(&uuid).await.unwrap(), 1);
    assert_ne!(
        api.json(&format!("/experiments/{id}")).await["body"],
        "edited in the field after the signature"
    );

    let (entries, _) = app
        .store
        .audit_entries(&AuditFilter {
            target_type: Some("entity".into()),
            target_id: Some(id.to_string()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = entries.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, [action::SIGN, action::LOCK], "{actions:?}");
    let (rejects, _) = app
        .store
        .audit_entries(&AuditFilter {
            action: Some(action::SYNC_REJECT.into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].target_id, uuid);
    assert_eq!(
        rejects[0].device.as_deref(),
        Some(registered.device.as_str())
    );
    app.stop().await;
}

#[tokio::test]
async fn a_timestamp_locks_the_entry_only_when_the_lab_chose_so() {
    let tsa = TestTsa::start().await;
    let app = TestApp::spawn_with_tsa(Some(tsa.config())).await;
    let root = app.user("root@lab.fr", "Ecology", true).await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let first = api.create("/experiments", json!({"title": "Before"})).await;
    let stamp = |id: i64| {
        let api = &api;
        async move {
            api.patch(
                &format!("/experiments/{id}"),
                json!({"action": "timestamp"}),
            )
            .await
        }
    };
    let stamped: serde_json::Value = stamp(first).await.json().await.unwrap();
    assert_eq!(stamped["locked"], 0, "{stamped}");

    app.store
        .set_lock_on(
            root.id,
            cahier_store::proof_lock::LockTrigger::Timestamp,
            true,
        )
        .await
        .unwrap();
    let second = api.create("/experiments", json!({"title": "After"})).await;
    let stamped: serde_json::Value = stamp(second).await.json().await.unwrap();
    assert_eq!(stamped["locked"], 1, "{stamped}");
    assert_eq!(stamped["lockedby"], alice.id);
    app.stop().await;
}
