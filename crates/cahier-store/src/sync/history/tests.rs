//! Marks of the server's history on real SQLite files: a plain restart and a repeated request
//! raise no alarm; a database restored from a backup, once its sequence has grown past what a
//! replica saw, no longer holds the marks written after the backup; a push gives marks only
//! while the server holds the one named before it.

use crate::Store;
use crate::replica::Accepted;
use crate::sync::proto::{FeedResponse, PushStatus};
use crate::test_support::{lab_and_replica, roundtrip};
use cahier_core::{EntityKind, EntityPatch, Subject, SystemClock};
use std::path::Path;
use std::sync::Arc;

async fn open(path: &Path) -> Store {
    Store::open_sqlite(path, Arc::new(SystemClock))
        .await
        .expect("open")
}

async fn create(store: &Store, subject: &Subject, team: i64, title: &str) -> i64 {
    store
        .create_entity(
            subject,
            crate::NewEntity {
                kind: EntityKind::Experiment,
                team_id: team,
                canread: None,
                canwrite: None,
                patch: EntityPatch {
                    title: Some(title.into()),
                    ..Default::default()
                },
                template: None,
            },
        )
        .await
        .expect("create")
}

async fn edit(store: &Store, subject: &Subject, id: i64, body: &str) {
    let patch = EntityPatch {
        body: Some(body.into()),
        ..Default::default()
    };
    store
        .update_entity(subject, id, None, &patch, "save")
        .await
        .expect("edit");
}

async fn feed(
    store: &Store,
    subject: &Subject,
    since: i64,
    history: Option<&str>,
    pushed: Option<&str>,
) -> FeedResponse {
    roundtrip(
        store
            .feed_in_history(subject, since, 1000, history, pushed)
            .await
            .expect("feed"),
    )
}

/// A consistent copy of a live database, as a sysadmin's backup.
async fn backup(store: &Store, to: &Path) {
    sqlx::query("VACUUM INTO ?")
        .bind(to.display().to_string())
        .execute(&store.pool)
        .await
        .expect("backup");
}

#[tokio::test]
async fn a_repeated_feed_request_and_a_plain_restart_raise_no_alarm() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("lab.db");
    let lab = open(&path).await;
    let (_, team, _, ada) = crate::test_support::member_with_laptop(&lab).await;
    let id = create(&lab, &ada, team, "Soil").await;
    let first = feed(&lab, &ada, 0, None, None).await;
    let mark = first.history.clone().expect("a mark");
    assert!(mark.contains('.'), "{mark}");
    assert_eq!(first.lost, None);
    for _ in 0..2 {
        let again = feed(&lab, &ada, first.next, Some(&mark), Some(&mark)).await;
        assert_eq!(again.lost, None, "asked twice, nothing lost");
        assert_eq!(
            again.history.as_deref(),
            Some(mark.as_str()),
            "nothing moved"
        );
    }
    edit(&lab, &ada, id, "pH 6.5\n").await;
    let moved = feed(&lab, &ada, first.next, Some(&mark), None).await;
    assert_eq!(moved.lost, None);
    assert_ne!(moved.history, first.history, "a new end, a new mark");

    // The same database opened again: a new process history, the same marks.
    lab.close().await;
    let lab = open(&path).await;
    let after = feed(
        &lab,
        &ada,
        moved.next,
        moved.history.as_deref(),
        Some(&mark),
    )
    .await;
    assert_eq!(after.lost, None, "a restart loses nothing");
    assert_eq!(after.history, moved.history);
    lab.close().await;
}

#[tokio::test]
async fn a_database_restored_from_a_backup_no_longer_holds_the_marks_written_after_it() {
    let dir = tempfile::tempdir().expect("dir");
    let lab = open(&dir.path().join("lab.db")).await;
    let (_, team, _, ada) = crate::test_support::member_with_laptop(&lab).await;
    let id = create(&lab, &ada, team, "Soil").await;
    let before = feed(&lab, &ada, 0, None, None).await;
    let saved = dir.path().join("backup.db");
    backup(&lab, &saved).await;
    // After the backup: an edit the replica reads.
    edit(&lab, &ada, id, "pH 6.5\n").await;
    let seen = feed(&lab, &ada, before.next, before.history.as_deref(), None).await;
    assert_eq!(seen.items.len(), 1);
    let mark = seen.history.clone().expect("mark");
    lab.close().await;

    // The backup, written to more than it lost: its sequence passes the checkpoint again.
    let restored = open(&saved).await;
    for n in 0..5 {
        edit(&restored, &ada, id, &format!("pH {n}\n")).await;
    }
    let top = feed(&restored, &ada, 0, None, None).await.next;
    assert!(top > seen.next, "the premise: {top} > {}", seen.next);
    let checked = feed(&restored, &ada, seen.next, Some(&mark), None).await;
    assert_eq!(checked.lost, Some(true), "the checkpoint's mark is gone");
    let pushed = feed(
        &restored,
        &ada,
        top,
        checked.history.as_deref(),
        Some(&mark),
    )
    .await;
    assert_eq!(
        pushed.lost,
        Some(true),
        "a push mark written after the backup is gone"
    );
    // What the backup held is still there.
    let old = feed(
        &restored,
        &ada,
        before.next,
        before.history.as_deref(),
        None,
    )
    .await;
    assert_eq!(old.lost, None, "the backup holds what was read before it");
    let current = feed(&restored, &ada, top, checked.history.as_deref(), None).await;
    assert_eq!(current.lost, None);
    restored.close().await;
}

#[tokio::test]
async fn a_push_gives_marks_only_while_the_server_holds_the_one_named_before_it() {
    let w = lab_and_replica().await;
    let mut marks = Vec::new();
    for title in ["One", "Two"] {
        create(&w.replica, &w.replica_subject, w.team, title).await;
        let pushes = w.replica.pushes_to_send().await.expect("pushes");
        let docs = pushes.iter().map(|p| p.doc.clone()).collect();
        let after = marks.last().map(String::as_str);
        let results = roundtrip(
            w.lab
                .push_after(&w.subject, &w.device, roundtrip(docs), after)
                .await
                .expect("push"),
        );
        assert_eq!(results[0].status, PushStatus::Accepted);
        let mark = results[0].history.clone().expect("a mark");
        let accepted: Vec<Accepted> = pushes
            .iter()
            .zip(&results)
            .map(|(p, r)| Accepted {
                id: p.id,
                heads: p.heads.clone(),
                server_id: r.id.expect("id"),
                log_seq: p.log_seq,
                echo_seq: None,
            })
            .collect();
        w.replica
            .record_accepted_marked(&accepted, Some(&mark))
            .await
            .expect("recorded");
        assert_eq!(
            w.replica
                .replica_get(crate::replica::checkpoint::FEED_PUSHED)
                .await
                .expect("state")
                .as_deref(),
            Some(mark.as_str()),
            "kept with the acknowledgement"
        );
        marks.push(mark);
    }
    let feed_now = feed(&w.lab, &w.subject, 0, None, Some(&marks[1])).await;
    assert_eq!(feed_now.lost, None);

    // A mark this server never gave (a server restored to before it): the push is accepted,
    // without a mark, so the replica keeps naming the one the server lost.
    let (seq, _) = marks[1].split_once('.').expect("mark");
    let foreign = format!("{seq}.0123456789abcdef");
    w.replica
        .update_entity(
            &w.replica_subject,
            w.replica
                .entity_by_uuid(&w.replica_subject, &feed_now.items[0].uuid)
                .await
                .expect("row")
                .id,
            None,
            &EntityPatch {
                body: Some("more\n".into()),
                ..Default::default()
            },
            "save",
        )
        .await
        .expect("edit");
    let pushes = w.replica.pushes_to_send().await.expect("pushes");
    let docs = pushes.iter().map(|p| p.doc.clone()).collect();
    let results = w
        .lab
        .push_after(&w.subject, &w.device, docs, Some(&foreign))
        .await
        .expect("push");
    assert_eq!(results[0].status, PushStatus::Accepted);
    assert_eq!(results[0].history, None, "no mark after a lost one");
    let lost = feed(&w.lab, &w.subject, 0, None, Some(&foreign)).await;
    assert_eq!(lost.lost, Some(true));

    // Something else than a mark is a request error.
    for bad in ["12.xyz", "12.0123456789abcdefff", ".0123456789abcdef"] {
        let refused = w
            .lab
            .push_after(&w.subject, &w.device, vec![], Some(bad))
            .await;
        assert!(
            matches!(refused, Err(crate::StoreError::Invalid { ref field, .. }) if field == "after"),
            "{bad}: {refused:?}"
        );
        let refused = w
            .lab
            .feed_in_history(&w.subject, 1, 10, Some(bad), None)
            .await;
        assert!(
            matches!(refused, Err(crate::StoreError::Invalid { ref field, .. }) if field == "history"),
            "{bad}: {refused:?}"
        );
    }
    // An old process history id is checked as before: unknown, lost.
    let old = feed(
        &w.lab,
        &w.subject,
        1,
        Some("00ff00ff00ff00ff00ff00ff00ff00ff"),
        None,
    )
    .await;
    assert_eq!(old.lost, Some(true));
}
