//! Pushed edits accepted without loading the document, projected later: a real SQLite file,
//! pushes built by Automerge as a replica builds them, JSON round trips as over HTTP.

use crate::Store;
use crate::sync::Device;
use crate::sync::proto::{self, PushDoc, PushResult, PushStatus};
use crate::test_support::roundtrip;
use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ROOT, ReadDoc};
use cahier_core::{EntityKind, EntityPatch, Subject, SystemClock};
use std::sync::Arc;

struct Lab {
    store: Store,
    subject: Subject,
    device: Device,
    id: i64,
    uuid: String,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn lab() -> Lab {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("lab.db");
    let store = Store::open_sqlite(&path, Arc::new(SystemClock))
        .await
        .expect("lab");
    let (_, team, device, subject) = crate::test_support::member_with_laptop(&store).await;
    let id = store
        .create_entity(
            &subject,
            crate::NewEntity {
                kind: EntityKind::Experiment,
                team_id: team,
                canread: None,
                canwrite: None,
                patch: EntityPatch {
                    title: Some("Soil cores".into()),
                    body: Some("first line\nsecond line\n".into()),
                    ..Default::default()
                },
                template: None,
            },
        )
        .await
        .expect("create");
    let uuid = store.entity(&subject, id).await.expect("row").uuid;
    Lab {
        store,
        subject,
        device,
        id,
        uuid,
        path,
        _dir: dir,
    }
}

/// The laptop's copy: the lab's stored document, written to by a new actor.
async fn laptop_copy(lab: &Lab) -> AutoCommit {
    let bytes: Vec<u8> = sqlx::query_scalar("SELECT doc FROM entity_docs WHERE entity_id = ?")
        .bind(lab.id)
        .fetch_one(&lab.store.pool)
        .await
        .expect("doc");
    AutoCommit::load(&bytes)
        .expect("load")
        .with_actor(ActorId::random())
}

fn body_obj(doc: &AutoCommit) -> automerge::ObjId {
    doc.get(ROOT, "body").expect("get").expect("body").1
}

/// What the laptop pushes: its changes after the lab's heads.
fn push_doc(lab: &Lab, doc: &mut AutoCommit, base: &[automerge::ChangeHash]) -> PushDoc {
    PushDoc {
        uuid: lab.uuid.clone(),
        base: cahier_core::document::heads_to_string(base),
        changes: proto::b64(&doc.save_after(base)),
        new: None,
    }
}

async fn push(lab: &Lab, doc: PushDoc) -> PushResult {
    let mut results = lab
        .store
        .push(&lab.subject, &lab.device, roundtrip(vec![doc]))
        .await
        .expect("push");
    results.remove(0)
}

async fn search(store: &Store, word: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT rowid FROM entity_fts WHERE entity_fts MATCH ? ORDER BY rowid")
        .bind(word)
        .fetch_all(&store.pool)
        .await
        .expect("search")
}

async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&store.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_pushed_body_edit_is_accepted_without_loading_and_projected_later() {
    let lab = lab().await;
    let mut doc = laptop_copy(&lab).await;
    let base = doc.get_heads();
    let body = body_obj(&doc);
    doc.splice_text(&body, 11, 0, "zebrafish line\n")
        .expect("edit");
    doc.put(ROOT, "title", "Soil cores, day 2").expect("title");
    doc.commit();
    let pushed = push_doc(&lab, &mut doc, &base);
    let changes_before = count(&lab.store, "SELECT count(*) FROM entity_changes").await;

    let result = push(&lab, pushed.clone()).await;
    assert_eq!(result.status, PushStatus::Accepted);
    assert_eq!(
        result.heads,
        cahier_core::document::heads_to_string(&doc.get_heads())
    );
    assert_eq!(
        lab.store.sync_stats().fast_pushes(),
        1,
        "the fast path took it"
    );
    assert_eq!(lab.store.stale_count().await.expect("stale"), 1);
    assert_eq!(
        count(&lab.store, "SELECT count(*) FROM entity_changes").await,
        changes_before + 1
    );
    // Lists and search lag until the projector runs.
    assert!(search(&lab.store, "zebrafish").await.is_empty());
    // The stored document (changes appended) loads to the accepted heads.
    let (stored, heads): (Vec<u8>, String) =
        sqlx::query_as("SELECT doc, heads FROM entity_docs WHERE entity_id = ?")
            .bind(lab.id)
            .fetch_one(&lab.store.pool)
            .await
            .expect("doc");
    assert_eq!(heads, result.heads);
    let mut loaded = cahier_core::EntityDoc::load(&stored).expect("loads");
    assert_eq!(
        cahier_core::document::heads_to_string(&loaded.heads()),
        heads
    );

    // The background projector, run to completion: search finds the new word.
    assert_eq!(lab.store.project_stale().await.expect("project"), 1);
    assert_eq!(lab.store.stale_count().await.expect("stale"), 0);
    assert_eq!(search(&lab.store, "zebrafish").await, vec![lab.id]);
    let row = lab.store.entity(&lab.subject, lab.id).await.expect("row");
    assert_eq!(row.body, "first line\nzebrafish line\nsecond line\n");
    assert_eq!(row.title, "Soil cores, day 2");
    assert_eq!(row.heads, result.heads);
    // Saved whole again by the projector.
    let compact: Vec<u8> = sqlx::query_scalar("SELECT doc FROM entity_docs WHERE entity_id = ?")
        .bind(lab.id)
        .fetch_one(&lab.store.pool)
        .await
        .expect("doc");
    assert!(compact.len() < stored.len());

    // The same push again: accepted, nothing written.
    let seq_before = count(&lab.store, "SELECT value FROM sync_counter").await;
    let again = push(&lab, pushed).await;
    assert_eq!(again.status, PushStatus::Accepted);
    assert_eq!(again.heads, result.heads);
    assert_eq!(
        count(&lab.store, "SELECT count(*) FROM entity_changes").await,
        changes_before + 1
    );
    assert_eq!(
        count(&lab.store, "SELECT value FROM sync_counter").await,
        seq_before
    );
    assert_eq!(lab.store.stale_count().await.expect("stale"), 0);

    // A second edit on top, read at once: one entry is projected on demand.
    let base = doc.get_heads();
    doc.splice_text(&body, 0, 0, "axolotl line\n")
        .expect("edit");
    doc.commit();
    let result = push(&lab, push_doc(&lab, &mut doc, &base)).await;
    assert_eq!(result.status, PushStatus::Accepted);
    assert_eq!(lab.store.sync_stats().fast_pushes(), 3);
    let row = lab.store.entity(&lab.subject, lab.id).await.expect("row");
    assert!(row.body.starts_with("axolotl line\n"), "{}", row.body);
    assert_eq!(lab.store.stale_count().await.expect("stale"), 0);
    assert_eq!(search(&lab.store, "axolotl").await, vec![lab.id]);
    // And the lab's own next edit builds on it.
    let content = lab.store.content(&lab.subject, lab.id).await.expect("c");
    assert_eq!(content.body, doc.text(&body).expect("text"));
}

#[tokio::test]
async fn a_push_touching_a_protected_key_still_goes_the_full_path() {
    let lab = lab().await;
    let mut doc = laptop_copy(&lab).await;
    let base = doc.get_heads();
    let body = body_obj(&doc);
    doc.splice_text(&body, 0, 0, "x").expect("edit");
    doc.put(ROOT, "created_by", 999_i64).expect("author");
    doc.commit();
    let result = push(&lab, push_doc(&lab, &mut doc, &base)).await;
    assert_eq!(result.status, PushStatus::Rejected);
    assert!(result.quarantine.is_some());
    assert_eq!(lab.store.sync_stats().fast_pushes(), 0);
    assert_eq!(lab.store.quarantined(&lab.uuid).await.expect("q"), 1);
    assert_eq!(lab.store.stale_count().await.expect("stale"), 0);

    // A metadata field: the full path, which accepts it and projects at once.
    let mut doc = laptop_copy(&lab).await;
    let base = doc.get_heads();
    let tags = doc.get(ROOT, "tags").expect("get").expect("tags").1;
    doc.put(&tags, "peat", true).expect("tag");
    doc.commit();
    let result = push(&lab, push_doc(&lab, &mut doc, &base)).await;
    assert_eq!(result.status, PushStatus::Accepted);
    assert_eq!(lab.store.sync_stats().fast_pushes(), 0);
    assert_eq!(lab.store.stale_count().await.expect("stale"), 0);
    let row = lab.store.entity(&lab.subject, lab.id).await.expect("row");
    assert!(row.tags.contains(&"peat".to_owned()));
}

#[tokio::test]
async fn a_push_on_a_version_the_lab_lacks_gets_need_full() {
    let lab = lab().await;
    let mut doc = laptop_copy(&lab).await;
    let body = body_obj(&doc);
    doc.splice_text(&body, 0, 0, "never pushed ").expect("edit");
    doc.commit();
    let base = doc.get_heads();
    doc.splice_text(&body, 0, 0, "pushed ").expect("edit");
    doc.commit();
    let result = push(&lab, push_doc(&lab, &mut doc, &base)).await;
    assert_eq!(result.status, PushStatus::NeedFull);
    assert_eq!(lab.store.sync_stats().fast_pushes(), 0);
    assert_eq!(lab.store.stale_count().await.expect("stale"), 0);
}

#[tokio::test]
async fn an_edit_left_stale_by_a_crash_is_projected_at_the_next_start() {
    let lab = lab().await;
    let mut doc = laptop_copy(&lab).await;
    let base = doc.get_heads();
    let body = body_obj(&doc);
    doc.splice_text(&body, 0, 0, "quokka line\n").expect("edit");
    doc.commit();
    let result = push(&lab, push_doc(&lab, &mut doc, &base)).await;
    assert_eq!(result.status, PushStatus::Accepted);
    assert_eq!(lab.store.stale_count().await.expect("stale"), 1);
    // The process stops before the projector runs.
    lab.store.pool.close().await;

    let store = Store::open_sqlite(&lab.path, Arc::new(SystemClock))
        .await
        .expect("reopen");
    assert_eq!(store.stale_count().await.expect("stale"), 1);
    assert!(search(&store, "quokka").await.is_empty());
    let projector = tokio::spawn(store.clone().run_projector());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while store.stale_count().await.expect("stale") > 0 {
        assert!(std::time::Instant::now() < deadline, "never projected");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    projector.abort();
    assert_eq!(search(&store, "quokka").await, vec![lab.id]);
    let title: String = sqlx::query_scalar("SELECT body FROM entities WHERE id = ?")
        .bind(lab.id)
        .fetch_one(&store.pool)
        .await
        .expect("body");
    assert!(title.starts_with("quokka line\n"));
}

/// A fast-path push of a body edit on top of the lab's current document.
async fn push_body_edit(lab: &Lab, text: &str) -> PushResult {
    let mut doc = laptop_copy(lab).await;
    let base = doc.get_heads();
    let body = body_obj(&doc);
    doc.splice_text(&body, 0, 0, text).expect("edit");
    doc.commit();
    push(lab, push_doc(lab, &mut doc, &base)).await
}

#[tokio::test]
async fn entries_written_on_the_server_are_pushed_fast_without_rebuilding_an_index() {
    let lab = lab().await;
    let stats = lab.store.sync_stats();
    // Created on the server: the index was built with the entry.
    let result = push_body_edit(&lab, "created here ").await;
    assert_eq!(result.status, PushStatus::Accepted);
    assert_eq!((stats.fast_pushes(), stats.index_rebuilds()), (1, 0));

    // Edited through the store (UI, API): the index follows the new change.
    lab.store
        .update_entity(
            &lab.subject,
            lab.id,
            None,
            &EntityPatch {
                body: Some("rewritten at the lab\nsecond line\n".into()),
                title: Some("Soil cores, lab".into()),
                ..Default::default()
            },
            "edit",
        )
        .await
        .expect("update");
    let result = push_body_edit(&lab, "after a lab edit ").await;
    assert_eq!(result.status, PushStatus::Accepted);
    assert_eq!((stats.fast_pushes(), stats.index_rebuilds()), (2, 0));
    let content = lab.store.content(&lab.subject, lab.id).await.expect("c");
    assert_eq!(
        content.body,
        "after a lab edit rewritten at the lab\nsecond line\n"
    );

    // Accepted by the full path (a tag): the index follows too.
    let mut doc = laptop_copy(&lab).await;
    let base = doc.get_heads();
    let tags = doc.get(ROOT, "tags").expect("get").expect("tags").1;
    doc.put(&tags, "peat", true).expect("tag");
    doc.commit();
    let result = push(&lab, push_doc(&lab, &mut doc, &base)).await;
    assert_eq!(result.status, PushStatus::Accepted);
    assert_eq!((stats.fast_pushes(), stats.index_rebuilds()), (2, 0));
    let result = push_body_edit(&lab, "after a tag ").await;
    assert_eq!(result.status, PushStatus::Accepted);
    assert_eq!((stats.fast_pushes(), stats.index_rebuilds()), (3, 0));

    // The index kept incrementally is the one built from the whole log.
    let heads: String = sqlx::query_scalar("SELECT heads FROM entity_docs WHERE entity_id = ?")
        .bind(lab.id)
        .fetch_one(&lab.store.pool)
        .await
        .expect("heads");
    let (at, kept): (String, String) =
        sqlx::query_as("SELECT heads, info FROM entity_doc_index WHERE entity_id = ?")
            .bind(lab.id)
            .fetch_one(&lab.store.pool)
            .await
            .expect("index");
    assert_eq!(at, heads);
    let rows: Vec<(String, String, Vec<u8>)> =
        sqlx::query_as("SELECT hash, deps, bytes FROM entity_changes WHERE entity_id = ?")
            .bind(lab.id)
            .fetch_all(&lab.store.pool)
            .await
            .expect("log");
    let rebuilt = crate::sync::fast_push::build_index(&rows, &heads).expect("built");
    let kept: crate::sync::fast_push::DocIndex = serde_json::from_str(&kept).expect("json");
    assert_eq!(kept.normalized(), rebuilt.normalized());
}

#[tokio::test]
async fn an_entry_created_by_a_push_is_indexed_with_its_creation() {
    let lab = lab().await;
    let stats = lab.store.sync_stats();
    let uuid = uuid::Uuid::new_v4();
    let mut doc = cahier_core::EntityDoc::create(
        &cahier_core::document::NewContent {
            id: cahier_core::EntityId(uuid),
            kind: EntityKind::Experiment,
            created_by: lab.subject.user_id,
            created_at_ms: 1_700_000_000_000,
            template: None,
            patch: EntityPatch {
                title: Some("Made in the field".into()),
                body: Some("field notes\n".into()),
                ..Default::default()
            },
            default_date: "2026-11-30".into(),
        },
        &cahier_core::document::CommitMeta {
            actor: ActorId::random(),
            time_ms: 1_700_000_000_000,
            message: "create".into(),
        },
    )
    .expect("doc");
    let team_id = lab
        .store
        .entity(&lab.subject, lab.id)
        .await
        .expect("row")
        .team_id;
    let created = push(
        &lab,
        PushDoc {
            uuid: uuid.to_string(),
            base: String::new(),
            changes: proto::b64(&doc.save()),
            new: Some(proto::NewEntityInfo {
                team_id,
                canread: cahier_core::access::AccessRule::base(
                    cahier_core::access::BaseLevel::Team,
                ),
                canwrite: cahier_core::access::AccessRule::base(
                    cahier_core::access::BaseLevel::OwnerOnly,
                ),
            }),
        },
    )
    .await;
    assert_eq!(created.status, PushStatus::Accepted, "{created:?}");
    assert_eq!((stats.fast_pushes(), stats.index_rebuilds()), (0, 0));
    // Its next edit, from the field: fast, no rebuild.
    let mut fork = doc.automerge().fork().with_actor(ActorId::random());
    let base = fork.get_heads();
    let body = body_obj(&fork);
    fork.splice_text(&body, 0, 0, "more ").expect("edit");
    fork.commit();
    let result = push(
        &lab,
        PushDoc {
            uuid: uuid.to_string(),
            base: cahier_core::document::heads_to_string(&base),
            changes: proto::b64(&fork.save_after(&base)),
            new: None,
        },
    )
    .await;
    assert_eq!(result.status, PushStatus::Accepted);
    assert_eq!((stats.fast_pushes(), stats.index_rebuilds()), (1, 0));
}

#[tokio::test]
async fn the_background_builder_indexes_entries_from_before_the_index() {
    let lab = lab().await;
    let second = lab
        .store
        .create_entity(
            &lab.subject,
            crate::NewEntity {
                kind: EntityKind::Experiment,
                team_id: lab
                    .store
                    .entity(&lab.subject, lab.id)
                    .await
                    .expect("row")
                    .team_id,
                canread: None,
                canwrite: None,
                patch: EntityPatch {
                    body: Some("another\n".into()),
                    ..Default::default()
                },
                template: None,
            },
        )
        .await
        .expect("create");
    // As a lab from before migration 26: no index at all.
    sqlx::query("DELETE FROM entity_doc_index")
        .execute(&lab.store.pool)
        .await
        .expect("clear");
    let built = lab.store.build_missing_indexes(0).await.expect("build");
    assert_eq!(built, 2);
    assert_eq!(
        count(
            &lab.store,
            "SELECT count(*) FROM entity_doc_index x JOIN entity_docs d \
             ON d.entity_id = x.entity_id AND d.heads = x.heads WHERE x.info != ''"
        )
        .await,
        2
    );
    assert_eq!(lab.store.build_missing_indexes(0).await.expect("again"), 0);
    let stats = lab.store.sync_stats();
    let result = push_body_edit(&lab, "indexed in the background ").await;
    assert_eq!(result.status, PushStatus::Accepted);
    assert_eq!((stats.fast_pushes(), stats.index_rebuilds()), (1, 0));
    let _ = second;
}
