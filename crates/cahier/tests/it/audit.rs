//! The hash-chained audit log: actions from the UI, the API and the admin pages land in one
//! chain that `cahier verify` checks, with the documents' stored changes; changing one byte of
//! an entry, of a stored change or of an anchor's token in the data directory makes `cahier
//! verify` fail and name it. Anchors are real tokens from the openssl test authority.

use cahier_store::audit::{AuditFilter, action};
use cahier_testkit::TestApp;
use cahier_testkit::tsa::TestTsa;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Runs the real `cahier verify` on `data` (with `roots` for token chains).
fn verify(data: &Path, roots: Option<&PathBuf>) -> (bool, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_cahier"));
    command
        .args(["verify", "--data", data.to_str().unwrap()])
        .env("CAHIER_LOG", "warn")
        .env_remove("CAHIER_CONFIG")
        .env_remove("CAHIER_TSA_URL");
    if let Some(roots) = roots {
        command.arg("--tsa-ca-file").arg(roots);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (output.status.success(), format!("{stdout}\n{stderr}"))
}

async fn open_db(app: &TestApp) -> sqlx::SqlitePool {
    let path = app.dir.path().join("cahier.db");
    sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

async fn actions(app: &TestApp) -> Vec<String> {
    let (entries, _) = app
        .store
        .audit_entries(&AuditFilter::default())
        .await
        .unwrap();
    entries.into_iter().rev().map(|e| e.action).collect()
}

#[tokio::test]
async fn actions_from_ui_api_and_admin_pages_form_one_verified_chain() {
    let app = TestApp::spawn().await;
    let admin = app.user("root@lab.fr", "Ecology", true).await;
    app.store.set_sysadmin(admin.id, true).await.unwrap();
    let alice = app.user("alice@lab.fr", "Ecology", false).await;

    // A failed sign-in, then a good one (the UI).
    let stranger = app.anonymous_browser();
    let refused = stranger
        .post_form(
            "/login",
            &[("email", "alice@lab.fr"), ("password", "not her password")],
        )
        .await;
    assert_eq!(refused.status(), 401);
    let browser = app.browser(&alice).await;

    // Entity actions through the API.
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api
        .create("/experiments", json!({"title": "Audited"}))
        .await;
    for body in [
        json!({"action": "lock"}),
        json!({"action": "lock"}),
        json!({"canread": {"base": 40, "teams": [], "teamgroups": [], "users": []}}),
    ] {
        assert_eq!(
            api.patch(&format!("/experiments/{id}"), body)
                .await
                .status(),
            200
        );
    }
    assert_eq!(
        api.delete(&format!("/experiments/{id}")).await.status(),
        204
    );
    let restored = api
        .patch(&format!("/experiments/{id}"), json!({"action": "restore"}))
        .await;
    assert_eq!(restored.status(), 200);

    // An admin action in the UI, and signing out.
    let root = app.browser(&admin).await;
    let created = root
        .post_form("/admin/teams", &[("name", "Genetics")])
        .await;
    assert_eq!(created.status(), 303);
    let out = browser.post_form("/logout", &[]).await;
    assert_eq!(out.status(), 303);

    let recorded = actions(&app).await;
    let expected = [
        action::SIGN_IN_FAILED,
        action::SIGN_IN,
        action::KEY_CREATE,
        action::LOCK,
        action::UNLOCK,
        action::ACCESS,
        action::DELETE,
        action::STATE,
        action::SIGN_IN,
        action::ADMIN,
        action::SIGN_OUT,
    ];
    assert_eq!(recorded, expected, "{recorded:?}");

    let (entries, more) = app
        .store
        .audit_entries(&AuditFilter {
            target_type: Some("entity".into()),
            target_id: Some(id.to_string()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(!more);
    assert_eq!(entries.len(), 5);
    assert!(entries.iter().all(|e| e.actor_id == Some(alice.id)));
    let access = entries.iter().find(|e| e.action == action::ACCESS).unwrap();
    assert!(access.details.contains("\"base\":40"), "{}", access.details);
    let (failed, _) = app
        .store
        .audit_entries(&AuditFilter {
            action: Some(action::SIGN_IN_FAILED.into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(failed[0].actor_id, Some(alice.id));
    // No proxy in front: the server knows no client address to record.
    assert_eq!(failed[0].ip, None);
    assert!(!failed[0].details.contains("not her password"));
    let (admin_entries, _) = app
        .store
        .audit_entries(&AuditFilter {
            actor_id: Some(admin.id),
            action: Some(action::ADMIN.into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(
        admin_entries[0]
            .details
            .contains("\"what\":\"team.create\"")
    );

    let chain = app.store.verify_audit_chain().await.unwrap();
    assert!(chain.is_ok(), "{chain:?}");
    assert_eq!(chain.checked, expected.len() as i64);
    assert_eq!(
        chain.head.as_ref().map(|h| h.0),
        Some(expected.len() as i64)
    );

    let (ok, report) = verify(app.dir.path(), None);
    assert!(ok, "{report}");
    assert!(
        report.contains(&format!(
            "{} audit entries checked, 0 broken",
            expected.len()
        )),
        "{report}"
    );
    assert!(report.contains("checked, 0 broken"), "{report}");
    assert!(report.contains("1 documents and"), "{report}");
    app.stop().await;
}

#[tokio::test]
async fn verify_names_the_audit_entry_whose_row_changed_by_one_byte() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api.create("/experiments", json!({"title": "Row"})).await;
    for _ in 0..3 {
        api.patch(&format!("/experiments/{id}"), json!({"action": "lock"}))
            .await;
    }
    let (ok, report) = verify(app.dir.path(), None);
    assert!(ok, "{report}");
    assert!(
        report.contains("4 audit entries checked, 0 broken"),
        "{report}"
    );

    // One byte of entry 2's details (entry 1 is the key): `"locked_by":1` becomes `"locked_by":2`-like garbage.
    let db = open_db(&app).await;
    let details: String = sqlx::query_scalar("SELECT details FROM audit_log WHERE seq = 2")
        .fetch_one(&db)
        .await
        .unwrap();
    let mut bytes = details.into_bytes();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'9' { b'8' } else { b'9' };
    sqlx::query("UPDATE audit_log SET details = ? WHERE seq = 2")
        .bind(String::from_utf8(bytes).unwrap())
        .execute(&db)
        .await
        .unwrap();
    let (ok, report) = verify(app.dir.path(), None);
    assert!(!ok, "{report}");
    assert!(
        report.contains("audit entry broken: 2: its content does not match its hash"),
        "{report}"
    );
    assert!(
        report.contains("4 audit entries checked, 1 broken"),
        "{report}"
    );

    // Removing an entry (and so hiding an action) is named too.
    sqlx::query("DELETE FROM audit_log WHERE seq = 2")
        .execute(&db)
        .await
        .unwrap();
    let (ok, report) = verify(app.dir.path(), None);
    assert!(!ok);
    assert!(
        report.contains("audit entry broken: 3: expected entry 2 here"),
        "{report}"
    );
    db.close().await;
    app.stop().await;
}

#[tokio::test]
async fn verify_names_the_stored_change_and_document_changed_by_one_byte() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api
        .create("/experiments", json!({"title": "Changes"}))
        .await;
    let other = api
        .create("/experiments", json!({"title": "Untouched"}))
        .await;
    let edited = api
        .patch(
            &format!("/experiments/{id}"),
            json!({"body": "first measurement: 12.5 mg"}),
        )
        .await;
    assert_eq!(edited.status(), 200);
    let (ok, report) = verify(app.dir.path(), None);
    assert!(ok, "{report}");
    assert!(report.contains("2 documents and"), "{report}");

    let db = open_db(&app).await;
    let (seq, bytes): (i64, Vec<u8>) = sqlx::query_as(
        "SELECT seq, bytes FROM entity_changes WHERE entity_id = ? ORDER BY seq DESC LIMIT 1",
    )
    .bind(id)
    .fetch_one(&db)
    .await
    .unwrap();
    let mut bytes = bytes;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    sqlx::query("UPDATE entity_changes SET bytes = ? WHERE seq = ?")
        .bind(&bytes)
        .bind(seq)
        .execute(&db)
        .await
        .unwrap();
    let (ok, report) = verify(app.dir.path(), None);
    assert!(!ok, "{report}");
    assert!(
        report.contains(&format!("document broken: entity {id} change {seq}:")),
        "{report}"
    );
    assert!(
        !report.contains(&format!("document broken: entity {other}")),
        "{report}"
    );

    // The saved document of the other entry, one byte changed.
    let (doc,): (Vec<u8>,) = sqlx::query_as("SELECT doc FROM entity_docs WHERE entity_id = ?")
        .bind(other)
        .fetch_one(&db)
        .await
        .unwrap();
    let mut doc = doc;
    let middle = doc.len() / 2;
    doc[middle] ^= 0x01;
    sqlx::query("UPDATE entity_docs SET doc = ? WHERE entity_id = ?")
        .bind(&doc)
        .bind(other)
        .execute(&db)
        .await
        .unwrap();
    let (ok, report) = verify(app.dir.path(), None);
    assert!(!ok);
    assert!(
        report.contains(&format!(
            "document broken: entity {other}: the saved document"
        )),
        "{report}"
    );
    db.close().await;
    app.stop().await;
}

#[tokio::test]
async fn the_chain_head_is_anchored_by_the_tsa_and_a_changed_token_byte_is_named() {
    let tsa = TestTsa::start().await;
    let config = tsa.config();
    let app = TestApp::spawn_with_tsa(Some(config.clone())).await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api
        .create("/experiments", json!({"title": "Anchored"}))
        .await;
    api.patch(&format!("/experiments/{id}"), json!({"action": "lock"}))
        .await;
    let head = app.store.audit_head().await.unwrap().unwrap();

    let anchor = cahier_trace::anchor_audit_head(&app.store, Some(&config), rand::random())
        .await
        .unwrap()
        .expect("an anchor");
    // Nothing new since: no second anchor.
    assert_eq!(
        cahier_trace::anchor_audit_head(&app.store, Some(&config), rand::random())
            .await
            .unwrap(),
        None
    );
    let anchors = app.store.audit_anchors().await.unwrap();
    assert_eq!(anchors.len(), 1);
    assert_eq!((anchors[0].id, anchors[0].seq), (anchor, head.seq));
    assert_eq!(anchors[0].head_hash, head.hash);
    assert_eq!(actions(&app).await.last().unwrap(), action::ANCHOR);

    // The token holds by hand, too: openssl checks it over the head's hash.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("head.txt"), &head.hash).unwrap();
    std::fs::write(dir.path().join("token.tsr"), &anchors[0].token).unwrap();
    std::fs::write(dir.path().join("chain.pem"), &anchors[0].chain).unwrap();
    let openssl = std::process::Command::new("openssl")
        .current_dir(dir.path())
        .args([
            "ts",
            "-verify",
            "-data",
            "head.txt",
            "-in",
            "token.tsr",
            "-untrusted",
            "chain.pem",
            "-CAfile",
        ])
        .arg(&tsa.roots)
        .output()
        .unwrap();
    assert!(
        openssl.status.success(),
        "{}",
        String::from_utf8_lossy(&openssl.stderr)
    );

    let (ok, report) = verify(app.dir.path(), Some(&tsa.roots));
    assert!(ok, "{report}");
    assert!(
        report.contains("1 audit anchors checked, 0 broken"),
        "{report}"
    );

    let db = open_db(&app).await;
    // Change one digit of the stamped time inside the signed TSTInfo. (A byte picked by
    // position alone, such as the middle one, may fall in the root certificate the token
    // carries, a copy openssl does not use when the root comes from -CAfile: the test was
    // flaky that way.)
    let mut token = anchors[0].token.clone();
    let time = token
        .windows(4)
        .position(|w| w[0] == 0x18 && (15..=23).contains(&w[1]) && &w[2..] == b"20")
        .expect("the token's GeneralizedTime");
    // "YYYYMMDDhhmmss": flip the low bit of the last seconds digit, still a digit.
    token[time + 2 + 13] ^= 0x01;
    assert!(token[time + 2 + 13].is_ascii_digit());
    sqlx::query("UPDATE audit_anchors SET token = ? WHERE id = ?")
        .bind(&token)
        .bind(anchor)
        .execute(&db)
        .await
        .unwrap();
    let (ok, report) = verify(app.dir.path(), Some(&tsa.roots));
    assert!(!ok, "{report}");
    assert!(
        report.contains(&format!(
            "audit anchor broken: {anchor} (entry {}):",
            head.seq
        )),
        "{report}"
    );
    db.close().await;
    app.stop().await;
}

#[tokio::test]
async fn sysadmins_browse_and_filter_the_log_page_by_page_and_see_a_broken_chain() {
    let app = TestApp::spawn().await;
    let root = app.user("root@lab.fr", "Ecology", true).await;
    app.store.set_sysadmin(root.id, true).await.unwrap();
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api.create("/experiments", json!({"title": "Busy"})).await;
    // 60 lock and unlock entries: more than one page.
    for _ in 0..60 {
        api.patch(&format!("/experiments/{id}"), json!({"action": "lock"}))
            .await;
    }
    let alice_ui = app.browser(&alice).await;
    assert_eq!(alice_ui.get("/admin/audit").await.status(), 403);

    let ui = app.browser(&root).await;
    let page = ui.page("/admin/audit").await;
    assert!(page.contains("id=\"chain-status\""), "{page}");
    assert!(
        page.contains("class=\"notice\" id=\"chain-status\""),
        "{page}"
    );
    assert_eq!(page.matches("class=\"audit-entry\"").count(), 50);
    // Newest first: root's sign-in is on top (after alice's key and 60 locks and unlocks).
    assert!(page.contains("<td>63</td>"), "{page}");
    let next = page
        .split("href=\"")
        .filter_map(|s| s.split('"').next())
        .find(|href| href.starts_with("/admin/audit?"))
        .unwrap()
        .replace("&amp;", "&");
    let older = ui.page(&next).await;
    assert_eq!(older.matches("class=\"audit-entry\"").count(), 13);
    assert!(older.contains("<td>1</td>"));

    let locks = ui
        .page("/admin/audit?action=entity.lock&user=alice%40lab.fr")
        .await;
    assert_eq!(locks.matches("class=\"audit-entry\"").count(), 30);
    assert!(!locks.contains("entity.unlock</code>"));
    let mine = ui
        .page(&format!(
            "/admin/audit?target_type=entity&target_id={id}&action=entity.unlock"
        ))
        .await;
    assert_eq!(mine.matches("class=\"audit-entry\"").count(), 30);
    let future = ui.page("/admin/audit?from=2999-01-01").await;
    assert_eq!(future.matches("class=\"audit-entry\"").count(), 0);
    let bad = ui.page("/admin/audit?from=someday").await;
    assert!(bad.contains("id=\"filter-error\""), "{bad}");
    let nobody = ui.page("/admin/audit?user=nobody%40lab.fr").await;
    assert_eq!(nobody.matches("class=\"audit-entry\"").count(), 0);

    // The page checks only what was written since its last verified entry: a change to an
    // entry verified earlier is for the full check, `cahier verify`, which names it.
    let db = open_db(&app).await;
    sqlx::query("UPDATE audit_log SET actor_id = actor_id + 1 WHERE seq = 7")
        .execute(&db)
        .await
        .unwrap();
    let page = ui.page("/admin/audit").await;
    assert!(
        page.contains("class=\"notice\" id=\"chain-status\""),
        "{page}"
    );
    assert!(page.contains("id=\"chain-checkpoint\""), "{page}");
    let (ok, report) = verify(app.dir.path(), None);
    assert!(!ok, "{report}");
    assert!(report.contains("audit entry broken: 7: "), "{report}");

    // An entry written after the checkpoint and then changed shows on the page.
    api.patch(&format!("/experiments/{id}"), json!({"action": "lock"}))
        .await;
    let head = app.store.audit_head().await.unwrap().unwrap().seq;
    sqlx::query("UPDATE audit_log SET at = at + 1 WHERE seq = ?")
        .bind(head)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let broken = ui.page("/admin/audit").await;
    assert!(
        broken.contains("role=\"alert\" id=\"chain-status\""),
        "{broken}"
    );
    assert!(broken.contains(&format!("<li>{head}: ")), "{broken}");
    // A broken chain does not move the checkpoint: the next load still says so.
    let again = ui.page("/admin/audit").await;
    assert!(again.contains(&format!("<li>{head}: ")), "{again}");
    app.stop().await;
}

/// Keys, passwords and exports leave entries too; the key's secret never does.
#[tokio::test]
async fn keys_passwords_and_exports_are_in_the_log() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let key = app.api_key(&alice, true).await;
    let api = app.api(&key);
    let id = api
        .create("/experiments", json!({"title": "Export me"}))
        .await;
    let eln = api.get(&format!("/experiments/{id}?format=eln")).await;
    assert_eq!(eln.status(), 200);
    let _ = eln.bytes().await.unwrap();
    let csv = api.get("/experiments?format=csv").await;
    assert_eq!(csv.status(), 200);
    app.store
        .change_password(alice.id, &alice.password, "a brand new long password")
        .await
        .unwrap();
    let key_id: i64 = key.split('-').next().unwrap().parse().unwrap();
    app.store.delete_api_key(alice.id, key_id).await.unwrap();

    let recorded = actions(&app).await;
    assert_eq!(
        recorded,
        [
            action::KEY_CREATE,
            action::EXPORT,
            action::EXPORT,
            action::PASSWORD,
            action::KEY_DELETE,
        ],
        "{recorded:?}"
    );
    let (entries, _) = app
        .store
        .audit_entries(&AuditFilter::default())
        .await
        .unwrap();
    let secret = key.split('-').nth(1).unwrap();
    assert!(entries.iter().all(|e| !e.details.contains(secret)));
    assert!(entries.iter().all(|e| e.actor_id == Some(alice.id)));
    let chain = app.store.verify_audit_chain().await.unwrap();
    assert!(chain.is_ok(), "{chain:?}");
    app.stop().await;
}

/// The `what` of every admin entry, oldest first, with its actor.
async fn admin_whats(app: &TestApp) -> Vec<(String, Option<i64>, String)> {
    let (entries, _) = app
        .store
        .audit_entries(&AuditFilter {
            action: Some(action::ADMIN.into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    entries
        .into_iter()
        .rev()
        .map(|e| {
            let details: serde_json::Value = serde_json::from_str(&e.details).unwrap();
            (
                details["what"].as_str().unwrap_or_default().to_owned(),
                e.actor_id,
                format!("{} {}", e.target_type, e.target_id),
            )
        })
        .collect()
}

/// Every administrator's change to users, teams and groups, from the UI and the API, is in the
/// log with who made it, written by the store in the change's own transaction; a refused change
/// leaves no entry.
#[tokio::test]
async fn admin_changes_are_logged_with_their_actor_and_a_refused_one_leaves_no_entry() {
    let app = TestApp::spawn().await;
    let root = app.user("root@lab.fr", "Ecology", true).await;
    app.store.set_sysadmin(root.id, true).await.unwrap();
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    assert!(admin_whats(&app).await.is_empty(), "fixtures log nothing");
    let ui = app.browser(&root).await;
    let ok = |r: reqwest::Response| {
        assert_eq!(r.status(), 303, "{r:?}");
    };
    let ecology = root.team_id;

    // Sysadmin pages.
    ok(ui.post_form("/admin/teams", &[("name", "Genetics")]).await);
    let genetics = app.store.team_by_name("Genetics").await.unwrap().id;
    ok(ui
        .post_form(
            &format!("/admin/teams/{genetics}/rename"),
            &[("name", "Genomics")],
        )
        .await);
    ok(ui
        .post_form(
            "/admin/users",
            &[
                ("email", "bob@lab.fr"),
                ("firstname", "Bob"),
                ("lastname", "Martin"),
                ("password", "a long enough password"),
                ("team", &genetics.to_string()),
            ],
        )
        .await);
    let bob = app.store.user_by_email("bob@lab.fr").await.unwrap().id;
    assert_eq!(app.store.teams_of(bob).await.unwrap()[0].id, genetics);
    for what in ["archive", "unarchive", "sysadmin"] {
        ok(ui
            .post_form(&format!("/admin/users/{bob}/{what}"), &[])
            .await);
    }
    assert!(app.store.user(bob).await.unwrap().is_sysadmin);
    ok(ui
        .post_form(
            &format!("/admin/users/{bob}/teams"),
            &[("team", &ecology.to_string())],
        )
        .await);

    // Team admin pages (root is Ecology's admin).
    ok(ui
        .post_form(
            &format!("/team/members/{alice_id}/admin", alice_id = alice.id),
            &[],
        )
        .await);
    ok(ui
        .post_form(&format!("/team/members/{bob}/remove"), &[])
        .await);
    ok(ui
        .post_form("/team/groups", &[("name", "Field crew")])
        .await);
    let group = app.store.groups(ecology).await.unwrap()[0].id;
    ok(ui
        .post_form(
            &format!("/team/groups/{group}/members"),
            &[("email", "alice@lab.fr")],
        )
        .await);
    ok(ui
        .post_form(
            &format!("/team/groups/{group}/members/{}/remove", alice.id),
            &[],
        )
        .await);
    ok(ui
        .post_form(&format!("/team/groups/{group}/delete"), &[])
        .await);

    // The API: a sysadmin creates a user in a team.
    let api = app.api(&app.api_key(&root, true).await);
    let carol = api
        .create(
            "/users",
            json!({"firstname": "Carol", "lastname": "Petit", "email": "carol@lab.fr"}),
        )
        .await;

    let expected = [
        (
            "team.create".to_owned(),
            Some(root.id),
            format!("team {genetics}"),
        ),
        (
            "team.rename".into(),
            Some(root.id),
            format!("team {genetics}"),
        ),
        ("user.create".into(), Some(root.id), format!("user {bob}")),
        ("user.archive".into(), Some(root.id), format!("user {bob}")),
        (
            "user.unarchive".into(),
            Some(root.id),
            format!("user {bob}"),
        ),
        ("user.sysadmin".into(), Some(root.id), format!("user {bob}")),
        (
            "team.add_member".into(),
            Some(root.id),
            format!("user {bob}"),
        ),
        (
            "team.set_admin".into(),
            Some(root.id),
            format!("user {}", alice.id),
        ),
        (
            "team.remove_member".into(),
            Some(root.id),
            format!("user {bob}"),
        ),
        (
            "group.create".into(),
            Some(root.id),
            format!("group {group}"),
        ),
        (
            "group.add_member".into(),
            Some(root.id),
            format!("user {}", alice.id),
        ),
        (
            "group.remove_member".into(),
            Some(root.id),
            format!("user {}", alice.id),
        ),
        (
            "group.delete".into(),
            Some(root.id),
            format!("group {group}"),
        ),
        ("user.create".into(), Some(root.id), format!("user {carol}")),
    ];
    assert_eq!(admin_whats(&app).await, expected);

    // Refused changes: a taken team name, a taken e-mail, the last admin removed. No entry.
    let before = app.store.audit_head().await.unwrap().unwrap().seq;
    let taken = ui.post_form("/admin/teams", &[("name", "Genomics")]).await;
    assert!(taken.status().is_client_error(), "{taken:?}");
    let taken = api
        .post(
            "/users",
            json!({"firstname": "Bob", "lastname": "Again", "email": "bob@lab.fr"}),
        )
        .await;
    assert!(taken.status().is_client_error(), "{taken:?}");
    let lone = app.store.remove_member_by(root.id, genetics, carol).await;
    assert!(lone.is_err(), "carol is not in Genomics");
    assert!(
        app.store
            .rename_team_by(root.id, 999_999, "Nowhere")
            .await
            .is_err()
    );
    assert_eq!(app.store.audit_head().await.unwrap().unwrap().seq, before);
    assert_eq!(admin_whats(&app).await.len(), expected.len());
    let chain = app.store.verify_audit_chain().await.unwrap();
    assert!(chain.is_ok(), "{chain:?}");
    app.stop().await;
}
