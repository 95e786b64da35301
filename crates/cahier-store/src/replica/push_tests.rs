//! Pushes built from the replica's change rows (issue #5): random sequences of local edits
//! (some on a stale base, which fork), lab edits, pulls and pushes on one replica. Every push is
//! built without loading a document, gives the lab the same heads as the loaded form
//! (`save_after(acknowledged heads)`) would, and in the end both sides hold the same history
//! and every line written anywhere.

use crate::Store;
use crate::replica::Accepted;
use crate::sync::proto::{PullDoc, PushStatus, unb64};
use crate::test_support::{LabAndReplica as World, lab_and_replica as world, roundtrip};
use cahier_core::document::heads_from_string;
use cahier_core::{EntityDoc, EntityKind, EntityPatch};
use std::collections::HashMap;

/// A small deterministic generator (xorshift), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % u64::try_from(n).expect("n")).expect("index")
    }
}

impl World {
    async fn pull(&self) {
        self.sync_pull().await;
    }

    /// Pushes what is pending, checking each push against the loaded form first.
    async fn push(&self) -> usize {
        // Nothing cached: a document loaded to build the pushes would show up in the cache.
        self.replica.docs.lock().expect("cache").clear();
        let pushes = self.replica.pushes_to_send().await.expect("pushes");
        assert_eq!(
            self.replica.docs.lock().expect("cache").len(),
            0,
            "pushes are built without loading documents"
        );
        let acked = self.replica.acked_heads().await.expect("acked");
        for push in &pushes {
            if push.doc.new.is_some() {
                continue;
            }
            let bytes = unb64(&push.doc.changes).expect("b64");
            let mut local =
                EntityDoc::load(&self.replica.saved_document(push.id).await.expect("doc"))
                    .expect("load");
            let base = heads_from_string(&acked[&push.doc.uuid]).expect("heads");
            let loaded_form = local.automerge().save_after(&base);
            let lab_id = self
                .lab
                .entity_by_uuid(&self.subject, &push.doc.uuid)
                .await
                .expect("lab row")
                .id;
            let lab_doc = self.lab.saved_document(lab_id).await.expect("lab doc");
            let mut from_log = EntityDoc::load(&lab_doc).expect("lab");
            from_log.load_changes(&bytes).expect("log changes");
            let mut from_doc = EntityDoc::load(&lab_doc).expect("lab");
            from_doc.load_changes(&loaded_form).expect("loaded changes");
            assert!(from_log.automerge().get_missing_deps(&[]).is_empty());
            assert_eq!(from_log.heads(), from_doc.heads(), "{}", push.doc.uuid);
        }
        let docs = pushes.iter().map(|p| p.doc.clone()).collect();
        let results = roundtrip(
            self.lab
                .push(&self.subject, &self.device, roundtrip(docs))
                .await
                .expect("push"),
        );
        let mut accepted = Vec::new();
        for (push, result) in pushes.iter().zip(&results) {
            assert_eq!(result.status, PushStatus::Accepted, "{:?}", result.reason);
            accepted.push(Accepted {
                id: push.id,
                heads: push.heads.clone(),
                server_id: result.id.expect("id"),
                log_seq: push.log_seq,
                echo_seq: None,
            });
        }
        self.replica
            .record_accepted(&accepted)
            .await
            .expect("acknowledged");
        pushes.len()
    }
}

async fn run(seed: u64) {
    let w = world().await;
    let mut lab_ids = Vec::new();
    for n in 0..4 {
        let id = w
            .lab
            .create_entity(
                &w.subject,
                crate::NewEntity {
                    kind: EntityKind::Experiment,
                    team_id: w.team,
                    canread: None,
                    canwrite: None,
                    patch: EntityPatch {
                        title: Some(format!("entry {n}")),
                        body: Some(format!("first line {n}\n")),
                        ..Default::default()
                    },
                    template: None,
                },
            )
            .await
            .expect("create");
        lab_ids.push(id);
    }
    w.pull().await;
    let mut uuids = Vec::new();
    for id in &lab_ids {
        uuids.push(w.lab.entity(&w.subject, *id).await.expect("row").uuid);
    }
    let local_id = |store: &Store, uuid: String| {
        let pool = store.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT id FROM entities WHERE uuid = ?")
                .bind(uuid)
                .fetch_one(&pool)
                .await
                .expect("id")
        }
    };
    let mut rng = Rng(seed);
    let mut tokens = Vec::new();
    // An older version of each entry as seen on the replica, to edit from (a fork).
    let mut stale: HashMap<usize, (String, String)> = HashMap::new();
    let mut pushed = 0;
    for step in 0..40 {
        let which = rng.below(uuids.len());
        let token = format!("token-{seed}-{step}");
        match rng.below(6) {
            0 | 1 => {
                let id = local_id(&w.replica, uuids[which].clone()).await;
                let content = w.replica.content(&w.replica_subject, id).await.expect("c");
                let heads = w
                    .replica
                    .heads_of(&uuids[which])
                    .await
                    .expect("h")
                    .expect("h");
                stale.insert(which, (heads, content.body.clone()));
                w.replica
                    .update_entity(
                        &w.replica_subject,
                        id,
                        None,
                        &EntityPatch {
                            body: Some(format!("{}{token}\n", content.body)),
                            ..Default::default()
                        },
                        "replica edit",
                    )
                    .await
                    .expect("replica edit");
                tokens.push(token);
            }
            2 => {
                // From an older version: the edit forks, as when a conflict is resolved here.
                let Some((heads, body)) = stale.get(&which).cloned() else {
                    continue;
                };
                let id = local_id(&w.replica, uuids[which].clone()).await;
                w.replica
                    .update_entity(
                        &w.replica_subject,
                        id,
                        Some(&heads),
                        &EntityPatch {
                            title: Some(format!("title {token}")),
                            body: Some(format!("{token}\n{body}")),
                            ..Default::default()
                        },
                        "stale edit",
                    )
                    .await
                    .expect("stale edit");
                tokens.push(token);
            }
            3 => {
                let id = lab_ids[which];
                let body = w.lab.content(&w.subject, id).await.expect("c").body;
                w.lab
                    .update_entity(
                        &w.subject,
                        id,
                        None,
                        &EntityPatch {
                            body: Some(format!("{body}{token}\n")),
                            ..Default::default()
                        },
                        "lab edit",
                    )
                    .await
                    .expect("lab edit");
                tokens.push(token);
            }
            4 => w.pull().await,
            _ => pushed += w.push().await,
        }
        // The set the triggers keep (migration 33) names exactly the entries waiting.
        let scanned: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM entity_docs d LEFT JOIN replica_entities r ON r.entity_id = d.entity_id \
             WHERE r.acked_heads IS NULL OR r.acked_heads != d.heads",
        )
        .fetch_one(&w.replica.pool)
        .await
        .expect("scan");
        assert_eq!(
            w.replica.pending_count().await.expect("count"),
            scanned,
            "seed {seed}, step {step}"
        );
    }
    pushed += w.push().await;
    w.pull().await;
    assert!(pushed > 0, "seed {seed} pushed nothing");
    assert_eq!(w.replica.pending_count().await.expect("count"), 0);
    for (uuid, lab_id) in uuids.iter().zip(&lab_ids) {
        let heads = w.replica.heads_of(uuid).await.expect("h");
        assert_eq!(heads, w.lab.heads_of(uuid).await.expect("h"), "seed {seed}");
        let id = local_id(&w.replica, uuid.clone()).await;
        let here = w.replica.content(&w.replica_subject, id).await.expect("c");
        let there = w.lab.content(&w.subject, *lab_id).await.expect("c");
        assert_eq!(here.body, there.body);
        assert_eq!(here.title, there.title);
    }
    for token in tokens {
        let mut found = false;
        for lab_id in &lab_ids {
            let there = w.lab.content(&w.subject, *lab_id).await.expect("c");
            found |= there.body.contains(&token) || there.title.contains(&token);
        }
        assert!(found, "{token} lost (seed {seed})");
    }
}

#[tokio::test]
async fn pushes_from_change_rows_equal_the_loaded_form_and_converge() {
    for seed in [7, 42, 1234, 98_765] {
        run(seed).await;
    }
}

#[tokio::test]
async fn a_whole_document_over_the_copy_falls_back_to_loading_it() {
    let w = world().await;
    let id = w
        .lab
        .create_entity(
            &w.subject,
            crate::NewEntity {
                kind: EntityKind::Experiment,
                team_id: w.team,
                canread: None,
                canwrite: None,
                patch: EntityPatch {
                    title: Some("restored".into()),
                    body: Some("one\n".into()),
                    ..Default::default()
                },
                template: None,
            },
        )
        .await
        .expect("create");
    let uuid = w.lab.entity(&w.subject, id).await.expect("row").uuid;
    w.pull().await;
    let local: i64 = sqlx::query_scalar("SELECT id FROM entities WHERE uuid = ?")
        .bind(&uuid)
        .fetch_one(&w.replica.pool)
        .await
        .expect("id");
    w.replica
        .update_entity(
            &w.replica_subject,
            local,
            None,
            &EntityPatch {
                body: Some("one\ntwo\n".into()),
                ..Default::default()
            },
            "edit",
        )
        .await
        .expect("edit");
    assert_eq!(w.push().await, 1);
    // The server sends the document whole over the copy (as a restored server does): which
    // change rows it holds is no longer known, so the next push loads the document.
    let mut entries = roundtrip(
        w.lab
            .pull(
                &w.subject,
                &[PullDoc {
                    uuid: uuid.clone(),
                    have: String::new(),
                    lazy_html: false,
                }],
            )
            .await
            .expect("pull"),
    );
    entries[0].full = true;
    w.replica.apply_pulled_batch(&entries).await.expect("apply");
    let known: Option<i64> =
        sqlx::query_scalar("SELECT pushed_seq FROM replica_entities WHERE entity_id = ?")
            .bind(local)
            .fetch_one(&w.replica.pool)
            .await
            .expect("seq");
    assert_eq!(known, None);
    w.replica
        .update_entity(
            &w.replica_subject,
            local,
            None,
            &EntityPatch {
                body: Some("one\ntwo\nthree\n".into()),
                ..Default::default()
            },
            "edit",
        )
        .await
        .expect("edit");
    w.replica.docs.lock().expect("cache").clear();
    let pushes = w.replica.pushes_to_send().await.expect("pushes");
    assert_eq!(pushes.len(), 1);
    assert_eq!(
        w.replica.docs.lock().expect("cache").len(),
        1,
        "loaded when the log cannot tell"
    );
    let docs = pushes.iter().map(|p| p.doc.clone()).collect();
    let results = w
        .lab
        .push(&w.subject, &w.device, roundtrip(docs))
        .await
        .expect("push");
    assert_eq!(results[0].status, PushStatus::Accepted);
    assert_eq!(
        w.lab.content(&w.subject, id).await.expect("c").body,
        "one\ntwo\nthree\n"
    );
}
