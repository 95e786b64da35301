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
    // No authority here: the page says so and offers the common ones.
    assert!(page.contains("id=\"tsa-none\""), "{page}");
    for preset in [
        "zeitstempel.dfn.de",
        "timestamp.digicert.com",
        "timestamp.sectigo.com",
    ] {
        assert!(page.contains(preset), "{preset}");
    }
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
    app.store.set_sysadmin(root.id, true).await.unwrap();
    let page = app.browser(&root).await.page("/admin/audit").await;
    assert!(
        page.contains(&format!("<code id=\"tsa-url\">{}</code>", tsa.config().url)),
        "{page}"
    );

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

/// A field replica for `user` (registered through the real HTTP API), synced once.
async fn laptop(
    app: &TestApp,
    user: &cahier_testkit::TestUser,
    dir: &std::path::Path,
) -> (Store, HttpTransport) {
    let (transport, registered) = HttpTransport::register(
        &app.url,
        &TlsOptions::default(),
        &user.email,
        &user.password,
        "laptop",
    )
    .await
    .unwrap();
    let store = Store::open_sqlite(&dir.join("cahier.db"), Arc::new(cahier_core::SystemClock))
        .await
        .unwrap()
        .with_device(&registered.device)
        .with_encrypted_blobs(dir.join("blobs"), 1024 * 1024, [7; 32]);
    store.init_replica().await.unwrap();
    sync_once(&store, &transport).await.unwrap();
    (store, transport)
}

/// A lock refuses every change — from its owner, from the admin who locked it, from the UI,
/// the API and sync — and still lets a proof be added; only an unlock (audited) lifts it.
#[tokio::test]
async fn a_lock_refuses_every_change_from_ui_api_and_sync_but_not_a_timestamp() {
    let tsa = TestTsa::start().await;
    let app = TestApp::spawn_with_tsa(Some(tsa.config())).await;
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let admin_api = app.api(&app.api_key(&admin, true).await);
    let team_writes = json!({"base": 30, "teams": [], "teamgroups": [], "users": []});
    let id = api
        .create(
            "/experiments",
            json!({"title": "Locked", "body": "as locked", "canwrite": team_writes}),
        )
        .await;
    let path = format!("/experiments/{id}");
    let uuid = app
        .store
        .entity(&app.subject(&alice).await, id)
        .await
        .unwrap()
        .uuid;

    // Alice's laptop edits offline; meanwhile she (the owner) locks the entry.
    let dir = tempfile::tempdir().unwrap();
    let (field, transport) = laptop(&app, &alice, dir.path()).await;
    let local_subject = field.subject(alice.id).await.unwrap();
    let local = field
        .entity_by_uuid(&local_subject, &uuid)
        .await
        .unwrap()
        .id;
    field
        .update_entity(
            &local_subject,
            local,
            None,
            &cahier_core::EntityPatch {
                body: Some("written in the field".into()),
                ..Default::default()
            },
            "save",
        )
        .await
        .unwrap();
    assert_eq!(
        api.patch(&path, json!({"action": "lock"})).await.status(),
        200
    );

    // API: the owner who locked it and a team admin are refused alike.
    for client in [&api, &admin_api] {
        let refused = client.patch(&path, json!({"title": "changed"})).await;
        assert_eq!(refused.status(), 409);
        let body: serde_json::Value = refused.json().await.unwrap();
        assert!(
            body["description"].as_str().unwrap().contains("locked"),
            "{body}"
        );
    }
    // UI: no editor, a refused save, no Lock button but an Unlock one for the owner.
    let ui = app.browser(&alice).await;
    let page = ui.page(&path).await;
    assert!(!page.contains("id=\"entity-form\""), "{page}");
    assert!(
        page.contains(&format!("action=\"{path}/unlock\"")),
        "{page}"
    );
    assert!(page.contains("id=\"timestamp-button\""), "{page}");
    let saved = ui
        .post_form(&format!("{path}/save"), &[("title", "from the page")])
        .await;
    assert_eq!(saved.status(), 409);
    // Sync: the offline edit comes back as a rejected edit, kept on both sides.
    let report = sync_once(&field, &transport).await.unwrap();
    assert_eq!((report.pushed, report.rejected), (0, 1), "{report}");
    let rejected = field.rejected_edits().await.unwrap();
    assert!(rejected[0].reason.contains("locked"), "{rejected:?}");
    assert_eq!(app.store.quarantined(&uuid).await.unwrap(), 1);

    // A trusted timestamp of the locked version is still possible: it adds evidence only.
    let stamped = api.patch(&path, json!({"action": "timestamp"})).await;
    assert_eq!(stamped.status(), 200, "{}", stamped.text().await.unwrap());
    let now = api.json(&path).await;
    assert_eq!(
        (
            now["title"].as_str(),
            now["body"].as_str(),
            now["locked"].as_i64()
        ),
        (Some("Locked"), Some("as locked"), Some(1)),
        "{now}"
    );

    // The owner unlocks (audited); edits are accepted again.
    let unlocked = ui.post_form(&format!("{path}/unlock"), &[]).await;
    assert_eq!(unlocked.status(), 303);
    assert_eq!(
        api.patch(&path, json!({"title": "after the unlock"}))
            .await
            .status(),
        200
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
    assert_eq!(
        actions,
        [action::LOCK, action::TIMESTAMP, action::UNLOCK],
        "{actions:?}"
    );
    app.stop().await;
}

/// A replica cannot remove or rename a trusted timestamp's archive: the push is refused and
/// kept as a rejected edit, and the proof stays on the server.
#[tokio::test]
async fn a_replica_pushing_a_change_to_a_timestamp_archive_is_refused_and_kept() {
    let tsa = TestTsa::start().await;
    let app = TestApp::spawn_with_tsa(Some(tsa.config())).await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api.create("/experiments", json!({"title": "Proven"})).await;
    let stamped = api
        .patch(
            &format!("/experiments/{id}"),
            json!({"action": "timestamp"}),
        )
        .await;
    assert_eq!(stamped.status(), 200);
    let proof = app
        .store
        .timestamps(&app.subject(&alice).await, id)
        .await
        .unwrap()
        .remove(0);
    let uuid = app
        .store
        .entity(&app.subject(&alice).await, id)
        .await
        .unwrap()
        .uuid;

    let dir = tempfile::tempdir().unwrap();
    let (field, transport) = laptop(&app, &alice, dir.path()).await;
    let local_subject = field.subject(alice.id).await.unwrap();
    let local = field
        .entity_by_uuid(&local_subject, &uuid)
        .await
        .unwrap()
        .id;
    for (n, op) in [
        cahier_core::document::EntityOp::UpdateAttachment {
            sha256: proof.upload_sha256.clone(),
            name: None,
            comment: None,
            state: Some(3),
        },
        cahier_core::document::EntityOp::UpdateAttachment {
            sha256: proof.upload_sha256.clone(),
            name: Some("not-a-proof.zip".into()),
            comment: None,
            state: None,
        },
    ]
    .into_iter()
    .enumerate()
    {
        field
            .update_entity(
                &local_subject,
                local,
                None,
                &cahier_core::EntityPatch {
                    ops: vec![op],
                    ..Default::default()
                },
                "attachment",
            )
            .await
            .unwrap();
        let report = sync_once(&field, &transport).await.unwrap();
        assert_eq!((report.pushed, report.rejected), (0, 1), "{report}");
        let rejected = field.rejected_edits().await.unwrap();
        assert_eq!(rejected.len(), n + 1);
        assert!(
            rejected[n].reason.contains("proof of a trusted timestamp"),
            "{rejected:?}"
        );
        assert_eq!(app.store.quarantined(&uuid).await.unwrap(), n as i64 + 1);
    }
    // The archive is still listed, under its name, on the server.
    let uploads = api.json(&format!("/experiments/{id}/uploads")).await;
    let listed = uploads
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == proof.upload_id)
        .cloned()
        .unwrap();
    assert!(
        listed["real_name"]
            .as_str()
            .unwrap()
            .starts_with("timestamp-"),
        "{listed}"
    );
    app.stop().await;
}
