//! A first copy over many feed pages (issue #5): the replica reads the feed's pages first and
//! pulls what they list in one stream of batches, the checkpoint moving page by page once all
//! of a page's entries are written; a copy cut short resumes after its last complete page; a
//! first copy asks no access check (it holds only what this sync read); the search index,
//! built in bulk during the copy, is merged and back to its usual settings at the end, also
//! after a copy cut short. Real lab server, a loopback proxy asking for small feed pages, a
//! real replica (its own SQLite file), the production transport.

use super::fault_proxy::{Fault, FaultProxy};
use super::sync_blobs::{Replica, empty_replica_at};
use cahier_core::access::{AccessRule, BaseLevel};
use cahier_core::{EntityKind, EntityPatch, Subject};
use cahier_store::NewEntity;
use cahier_store::listing::{ListQuery, SEARCH_BULK};
use cahier_sync::http::TlsOptions;
use cahier_sync::sync_once;
use cahier_testkit::{TestApp, TestUser};

const FEED: &str = "GET /api/sync/v1/feed";
const PULL: &str = "POST /api/sync/v1/pull";
const CHECK: &str = "POST /api/sync/v1/check";

/// Entries at the lab: more than one pull batch (200), over three feed pages of 100.
const ENTRIES: usize = 250;

/// `ENTRIES` experiments of `user`, each with a word of its own in the body; and one of
/// another team that `user` may not read.
async fn fill_lab(app: &TestApp, user: &TestUser) {
    let subject = app.subject(user).await;
    for i in 0..ENTRIES {
        create(app, &subject, user.team_id, i).await;
    }
    let bob = app.user("bob@lab.fr", "Botany", false).await;
    create(app, &app.subject(&bob).await, bob.team_id, 9999).await;
}

async fn create(app: &TestApp, subject: &Subject, team_id: i64, i: usize) {
    app.store
        .create_entity(
            subject,
            NewEntity {
                kind: EntityKind::Experiment,
                team_id,
                canread: None,
                canwrite: None,
                patch: EntityPatch {
                    title: Some(format!("Transect {i}")),
                    body: Some(format!("Field notes, quadrat{i}")),
                    ..Default::default()
                },
                template: None,
            },
        )
        .await
        .unwrap();
}

/// A device of `user` registered through the proxy, with an empty replica (no copy yet).
async fn empty_replica(proxy: &FaultProxy, user: &TestUser) -> Replica {
    empty_replica_at(&proxy.url, &TlsOptions::default(), user)
        .await
        .unwrap()
}

/// How many requests the proxy saw whose `"METHOD /path"` starts with `prefix`.
fn count(proxy: &FaultProxy, prefix: &str) -> usize {
    proxy
        .log()
        .iter()
        .filter(|r| r.key().starts_with(prefix))
        .count()
}

/// Titles of the replica's entries whose text holds `word`.
async fn found(laptop: &Replica, word: &str) -> Vec<String> {
    let subject = laptop.store.subject(laptop.user_id).await.unwrap();
    let mut query = ListQuery::new(EntityKind::Experiment);
    query.q = Some(word.to_owned());
    laptop
        .store
        .list_entities(&subject, &query)
        .await
        .unwrap()
        .rows
        .into_iter()
        .map(|row| row.title)
        .collect()
}

#[tokio::test]
async fn a_first_copy_streams_its_pages_and_asks_no_access_check() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    fill_lab(&app, &ada).await;
    let proxy = FaultProxy::start(&app.url).await;
    proxy.cap_feed_pages(100);
    let laptop = empty_replica(&proxy, &ada).await;

    let report = sync_once(&laptop.store, &laptop.transport).await.unwrap();
    assert_eq!(report.pulled, ENTRIES, "{report:?}");
    assert_eq!(report.added, ENTRIES, "{report:?}");
    assert_eq!(report.removed, 0, "{report:?}");
    assert_eq!(
        laptop.store.synced_count().await.unwrap(),
        i64::try_from(ENTRIES).unwrap()
    );
    // Three pages read, then their entries pulled in two batches (200, then the other 50):
    // a batch spans page ends.
    assert_eq!(count(&proxy, FEED), 3);
    assert_eq!(count(&proxy, PULL), 2);
    assert_eq!(
        count(&proxy, CHECK),
        0,
        "a first copy holds only what it read: nothing to check"
    );
    // The search index, still in bulk mode, finds entries of every batch; merged (as
    // `replica serve` does after the sync), it is out of bulk mode and finds the same.
    assert_eq!(
        laptop
            .store
            .replica_get(SEARCH_BULK)
            .await
            .unwrap()
            .as_deref(),
        Some("1")
    );
    assert_eq!(found(&laptop, "quadrat3").await, ["Transect 3"]);
    assert_eq!(found(&laptop, "quadrat249").await, ["Transect 249"]);
    assert!(laptop.store.finish_search_bulk().await.unwrap());
    assert!(!laptop.store.finish_search_bulk().await.unwrap());
    assert_eq!(laptop.store.replica_get(SEARCH_BULK).await.unwrap(), None);
    assert_eq!(found(&laptop, "quadrat3").await, ["Transect 3"]);
    assert_eq!(found(&laptop, "quadrat249").await, ["Transect 249"]);
    assert!(found(&laptop, "quadrat9999").await.is_empty());

    // The next sync has nothing to do, and still checks nothing.
    let again = sync_once(&laptop.store, &laptop.transport).await.unwrap();
    assert_eq!(again, cahier_sync::SyncReport::default());
    assert_eq!(count(&proxy, CHECK), 0);

    // A right withdrawn after the copy still reaches the replica: a teammate's entry copied
    // with the others, made private by its owner, is removed at the next sync.
    let carol = app.user("carol@lab.fr", "Ecology", false).await;
    let carol_subject = app.subject(&carol).await;
    create(&app, &carol_subject, carol.team_id, 777).await;
    sync_once(&laptop.store, &laptop.transport).await.unwrap();
    assert_eq!(found(&laptop, "quadrat777").await, ["Transect 777"]);
    let mut query = ListQuery::new(EntityKind::Experiment);
    query.q = Some("quadrat777".into());
    let row = app
        .store
        .list_entities(&carol_subject, &query)
        .await
        .unwrap()
        .rows
        .remove(0);
    app.store
        .set_access(
            &carol_subject,
            row.id,
            AccessRule::base(BaseLevel::OwnerOnly),
            AccessRule::base(BaseLevel::OwnerOnly),
        )
        .await
        .unwrap();
    let after = sync_once(&laptop.store, &laptop.transport).await.unwrap();
    assert_eq!(after.removed, 1, "{after:?}");
    assert!(found(&laptop, "quadrat777").await.is_empty());
    assert!(laptop.store.heads_of(&row.uuid).await.unwrap().is_none());
}

#[tokio::test]
async fn a_first_copy_cut_short_resumes_after_its_last_whole_page() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    fill_lab(&app, &ada).await;
    let proxy = FaultProxy::start(&app.url).await;
    proxy.cap_feed_pages(100);
    let laptop = empty_replica(&proxy, &ada).await;

    // The first pull goes through (delivered twice, harmless); the second one's answer is cut
    // after some of its entries came (and were written, in a transaction the cut rolls back).
    proxy.arm(Fault::Duplicate(PULL));
    proxy.arm(Fault::CutResponse(PULL, 20_000));
    assert!(sync_once(&laptop.store, &laptop.transport).await.is_err());
    assert_eq!(proxy.armed(), 0);
    // The first batch (the first two pages) is written, and the checkpoint is past them.
    assert_eq!(laptop.store.synced_count().await.unwrap(), 200);
    let since: i64 = laptop
        .store
        .replica_get("feed_since")
        .await
        .unwrap()
        .expect("a checkpoint")
        .parse()
        .unwrap();
    assert!(since > 0);
    assert_eq!(
        laptop
            .store
            .replica_get(SEARCH_BULK)
            .await
            .unwrap()
            .as_deref(),
        Some("1"),
        "the search index is still in bulk mode"
    );

    // The next sync pulls only the last page (still in bulk mode); then the index is merged.
    let report = sync_once(&laptop.store, &laptop.transport).await.unwrap();
    assert_eq!(report.pulled, ENTRIES - 200, "{report:?}");
    assert_eq!(report.added, ENTRIES - 200, "{report:?}");
    assert_eq!(
        laptop.store.synced_count().await.unwrap(),
        i64::try_from(ENTRIES).unwrap()
    );
    assert_eq!(found(&laptop, "quadrat0").await, ["Transect 0"]);
    assert!(laptop.store.finish_search_bulk().await.unwrap());
    assert_eq!(laptop.store.replica_get(SEARCH_BULK).await.unwrap(), None);
    assert_eq!(found(&laptop, "quadrat0").await, ["Transect 0"]);
    assert_eq!(found(&laptop, "quadrat249").await, ["Transect 249"]);
}

/// A pull answer is streamed (docs/SYNC.md, "A streamed pull"): one entry per line, written
/// as the server reads them, and still one JSON array, as replicas before it read it; entries
/// come in the order asked, leaving out what the user may not read; heads that are not heads
/// are refused with a 422 before anything is sent.
#[tokio::test]
async fn a_pull_answer_comes_one_entry_per_line_and_reads_as_one_json_array() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    fill_lab(&app, &ada).await;
    let laptop = empty_replica_at(&app.url, &TlsOptions::default(), &ada)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let auth = format!("Device {}", laptop.token);
    let feed: serde_json::Value = client
        .get(format!("{}/api/sync/v1/feed?since=0&limit=1000", app.url))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut uuids: Vec<String> = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["uuid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(uuids.len(), ENTRIES);
    uuids.reverse();
    // An entry nobody may read (it does not exist), in the middle.
    let mut asked = uuids.clone();
    asked.insert(120, "0b7c2f6e-0000-4000-8000-000000000000".into());
    let docs: Vec<serde_json::Value> = asked
        .iter()
        .map(|uuid| serde_json::json!({"uuid": uuid, "have": "", "lazy_html": true}))
        .collect();
    let pull = |docs: Vec<serde_json::Value>| {
        client
            .post(format!("{}/api/sync/v1/pull", app.url))
            .header("Authorization", &auth)
            .json(&serde_json::json!({ "docs": docs }))
            .send()
    };
    let answer = pull(docs.clone()).await.unwrap();
    assert_eq!(answer.status(), 200);
    let body = answer.text().await.unwrap();
    let lines: Vec<&str> = body.trim_end().split('\n').collect();
    assert_eq!(lines.first(), Some(&"["));
    assert_eq!(lines.last(), Some(&"]"));
    assert_eq!(lines.len(), ENTRIES + 2, "one line per entry");
    let entries: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let answered: Vec<&str> = entries
        .iter()
        .map(|entry| entry["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(
        answered, uuids,
        "in the order asked, the unreadable one left out"
    );

    // Bad heads, far into the request: refused before the answer starts.
    let mut bad = docs;
    bad[180]["have"] = serde_json::json!("not-a-hash");
    let refused = pull(bad).await.unwrap();
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("have"));
}
