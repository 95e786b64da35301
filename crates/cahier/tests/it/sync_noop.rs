//! A sync with nothing to do (issue #5): the server answers `GET /reference` "unchanged"
//! (304) without building the records while the replica holds their current version, and
//! every kind of reference record changed at the lab still reaches the replica at the next
//! sync. Real lab server, real replica (its own SQLite file), production transport.

use super::sync_blobs::{Replica, replica};
use cahier_store::catalog::{Family, Vocabulary};
use cahier_testkit::TestApp;

/// What `GET /reference` answers to the version the replica holds.
async fn reference_status(app: &TestApp, laptop: &Replica) -> u16 {
    let version = laptop
        .store
        .replica_get("reference_version")
        .await
        .unwrap()
        .expect("the replica records the version of its reference records");
    assert!(!version.is_empty());
    reqwest::Client::new()
        .get(format!("{}/api/sync/v1/reference", app.url))
        .header("Authorization", format!("Device {}", laptop.token))
        .header("If-None-Match", format!("\"{version}\""))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Syncs with nothing to do: nothing moves, and the server says the records are unchanged.
async fn assert_quiet(app: &TestApp, laptop: &Replica, after: &str) {
    let report = laptop.sync().await;
    assert_eq!(
        report,
        cahier_sync::SyncReport::default(),
        "after {after}: a sync with nothing to do moves nothing"
    );
    assert_eq!(
        reference_status(app, laptop).await,
        304,
        "after {after}: the replica holds the current reference records"
    );
}

#[tokio::test]
async fn a_sync_with_nothing_to_do_is_answered_unchanged_and_every_reference_change_still_arrives()
{
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", true).await;
    let sysadmin = app.user("root@lab.fr", "Admins", false).await;
    app.store.set_sysadmin(sysadmin.id, true).await.unwrap();
    let (laptop, _) = replica(&app, &ada).await;
    assert_quiet(&app, &laptop, "the first copy").await;

    // A version the server never gave, or none at all: the records come whole.
    let full = reqwest::Client::new()
        .get(format!("{}/api/sync/v1/reference", app.url))
        .header("Authorization", format!("Device {}", laptop.token))
        .header("If-None-Match", "\"not-a-version\"")
        .send()
        .await
        .unwrap();
    assert_eq!(full.status().as_u16(), 200);
    let etag = full.headers().get("etag").cloned().expect("an ETag");
    let body: serde_json::Value = full.json().await.unwrap();
    assert_eq!(
        etag.to_str().unwrap(),
        format!("\"{}\"", body["version"].as_str().unwrap()),
        "the ETag is the version in the body"
    );

    // A team renamed.
    app.store
        .rename_team(ada.team_id, "Field ecology")
        .await
        .unwrap();
    assert_eq!(reference_status(&app, &laptop).await, 200);
    laptop.sync().await;
    assert_eq!(
        laptop.store.team_by_name("Field ecology").await.unwrap().id,
        ada.team_id,
        "a renamed team reaches the replica"
    );
    assert_quiet(&app, &laptop, "a team renamed").await;

    // A new teammate (a user and a membership).
    let bob = app.user("bob@lab.fr", "Field ecology", false).await;
    laptop.sync().await;
    assert_eq!(
        laptop.store.user(bob.id).await.unwrap().email,
        "bob@lab.fr",
        "a new teammate reaches the replica"
    );
    assert_quiet(&app, &laptop, "a new teammate").await;

    // The user made admin of another team (a membership).
    let botany = app.team("Botany").await;
    app.store.add_member(botany, ada.id, true).await.unwrap();
    laptop.sync().await;
    assert!(
        laptop.store.team_by_name("Botany").await.is_ok(),
        "a new membership's team reaches the replica"
    );
    let subject = laptop.store.subject(ada.id).await.unwrap();
    assert!(
        subject
            .teams
            .iter()
            .any(|m| m.team_id == botany && m.is_admin),
        "the new membership reaches the replica"
    );
    assert_quiet(&app, &laptop, "a new membership").await;

    // A group, and the user put in it.
    let group = app.store.create_group(ada.team_id, "Divers").await.unwrap();
    laptop.sync().await;
    assert_eq!(
        laptop.store.group(group).await.unwrap().name,
        "Divers",
        "a new group reaches the replica"
    );
    app.store
        .set_group_member(group, ada.id, true)
        .await
        .unwrap();
    laptop.sync().await;
    assert!(
        laptop
            .store
            .subject(ada.id)
            .await
            .unwrap()
            .groups
            .contains(&group),
        "joining a group reaches the replica"
    );
    assert_quiet(&app, &laptop, "a group joined").await;

    // A status added, then renamed; a category added.
    let status = app
        .store
        .create_term(
            Vocabulary::Status,
            ada.team_id,
            Family::Experiment,
            "Waiting for samples",
            "#aa3300",
            false,
        )
        .await
        .unwrap();
    laptop.sync().await;
    let titles = |terms: Vec<cahier_store::catalog::Term>| -> Vec<String> {
        terms.into_iter().map(|t| t.title).collect()
    };
    assert!(
        titles(
            laptop
                .store
                .terms(Vocabulary::Status, ada.team_id, Family::Experiment)
                .await
                .unwrap()
        )
        .contains(&"Waiting for samples".to_owned()),
        "a new status reaches the replica"
    );
    app.store
        .update_term(Vocabulary::Status, status, Some("Samples late"), None, None)
        .await
        .unwrap();
    laptop.sync().await;
    assert_eq!(
        laptop
            .store
            .term(Vocabulary::Status, status)
            .await
            .unwrap()
            .title,
        "Samples late",
        "a renamed status reaches the replica"
    );
    app.store
        .create_term(
            Vocabulary::Category,
            ada.team_id,
            Family::Resource,
            "Microscopes",
            "#0033aa",
            false,
        )
        .await
        .unwrap();
    laptop.sync().await;
    assert!(
        titles(
            laptop
                .store
                .terms(Vocabulary::Category, ada.team_id, Family::Resource)
                .await
                .unwrap()
        )
        .contains(&"Microscopes".to_owned()),
        "a new category reaches the replica"
    );
    assert_quiet(&app, &laptop, "statuses and categories").await;

    // The lab's time zone, and the user's own.
    let root = app.store.subject(sysadmin.id).await.unwrap();
    app.store
        .set_instance_zone(&root, Some("Pacific/Tahiti"))
        .await
        .unwrap();
    laptop.sync().await;
    assert_eq!(
        laptop.store.instance_zone().await.unwrap().name(),
        "Pacific/Tahiti",
        "the lab's time zone reaches the replica"
    );
    app.store
        .set_user_zone(ada.id, Some("America/Cayenne"))
        .await
        .unwrap();
    laptop.sync().await;
    assert_eq!(
        laptop.store.user_zone(ada.id).await.unwrap().name(),
        "America/Cayenne",
        "the user's own time zone reaches the replica"
    );
    assert_quiet(&app, &laptop, "time zones").await;

    // A user made sysadmin (a column of the user's record).
    app.store.set_sysadmin(ada.id, true).await.unwrap();
    laptop.sync().await;
    assert!(
        laptop.store.user(ada.id).await.unwrap().is_sysadmin,
        "a user's role reaches the replica"
    );
    assert_quiet(&app, &laptop, "a role changed").await;

    // A teammate in the team the user joined.
    let carol = app.user("carol@lab.fr", "Botany", false).await;
    laptop.sync().await;
    assert_eq!(
        laptop.store.user(carol.id).await.unwrap().email,
        "carol@lab.fr"
    );
    assert_quiet(&app, &laptop, "an owner listed").await;

    // A sign-in at the lab changes nothing the replica holds: still unchanged.
    app.store
        .verify_login("bob@lab.fr", &bob.password, "test")
        .await
        .unwrap();
    assert_eq!(reference_status(&app, &laptop).await, 304);

    // Another device of the same user, or another user, never gets this replica's answer.
    let (bobs_laptop, _) = replica(&app, &bob).await;
    let version = laptop
        .store
        .replica_get("reference_version")
        .await
        .unwrap()
        .unwrap();
    let status = reqwest::Client::new()
        .get(format!("{}/api/sync/v1/reference", app.url))
        .header("Authorization", format!("Device {}", bobs_laptop.token))
        .header("If-None-Match", format!("\"{version}\""))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 200, "a version is the user's own");
}
