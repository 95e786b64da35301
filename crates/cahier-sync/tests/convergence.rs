//! Protocol property test: random interleavings of edits on the server and two replicas with
//! random sync order converge to identical heads, and no edit made anywhere is lost.
//! The transport calls the server's store directly, through a JSON round trip of every message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use cahier_core::document::EntityOp;
use cahier_core::{EntityKind, EntityPatch, Subject, SystemClock};
use cahier_store::Store;
use cahier_store::accounts::NewUser;
use cahier_store::sync::Device;
use cahier_store::sync::proto::{FeedResponse, PullDoc, PullEntry, PushDoc, PushResult, Reference};
use cahier_sync::{SyncError, Transport, sync_once};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

struct Direct {
    server: Store,
    subject: Subject,
    device: Device,
    /// `POST /check` requests asked.
    checks: std::sync::atomic::AtomicUsize,
}

fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned>(value: T) -> T {
    serde_json::from_str(&serde_json::to_string(&value).unwrap()).unwrap()
}

impl Direct {
    /// The device's user as the server sees them now (the HTTP server reads it per request).
    async fn subject(&self) -> Subject {
        self.server.subject(self.subject.user_id).await.unwrap()
    }
}

impl Transport for Direct {
    async fn reference(&self) -> Result<Reference, SyncError> {
        Ok(roundtrip(
            self.server.reference(&self.subject().await).await?,
        ))
    }
    async fn push(&self, docs: Vec<PushDoc>) -> Result<Vec<PushResult>, SyncError> {
        Ok(roundtrip(
            self.server
                .push(&self.subject().await, &self.device, roundtrip(docs))
                .await?,
        ))
    }
    async fn feed(&self, since: i64, limit: i64) -> Result<FeedResponse, SyncError> {
        Ok(roundtrip(
            self.server
                .feed(&self.subject().await, since, limit)
                .await?,
        ))
    }
    async fn pull(&self, docs: Vec<PullDoc>) -> Result<Vec<PullEntry>, SyncError> {
        Ok(roundtrip(
            self.server
                .pull(&self.subject().await, &roundtrip(docs))
                .await?,
        ))
    }
    async fn revoked(&self, uuids: Vec<String>) -> Result<Vec<String>, SyncError> {
        self.checks
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(self.server.revoked(&self.subject().await, &uuids).await?)
    }
}

struct Node {
    store: Store,
    transport: Option<Direct>,
    _dir: tempfile::TempDir,
}

async fn open(device: &str) -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("cahier.db"), Arc::new(SystemClock))
        .await
        .unwrap()
        .with_device(device);
    (store, dir)
}

async fn world() -> (Vec<Node>, i64) {
    let (server, dir) = open("server").await;
    let user = server
        .create_user(NewUser {
            email: "ada@lab.fr".into(),
            firstname: "Ada".into(),
            lastname: "L".into(),
            password: Some("long password".into()),
            is_sysadmin: false,
        })
        .await
        .unwrap();
    let team = server.create_team("Ecology").await.unwrap();
    server.add_member(team, user, false).await.unwrap();
    let mut nodes = vec![Node {
        store: server.clone(),
        transport: None,
        _dir: dir,
    }];
    for name in ["laptop A", "laptop B"] {
        let (device, _) = server
            .register_device("ada@lab.fr", "long password", name, "test")
            .await
            .unwrap();
        let (store, dir) = open(&device.uuid).await;
        store.init_replica().await.unwrap();
        let transport = Direct {
            server: server.clone(),
            subject: server.subject(user).await.unwrap(),
            device,
            checks: std::sync::atomic::AtomicUsize::new(0),
        };
        sync_once(&store, &transport).await.unwrap();
        nodes.push(Node {
            store,
            transport: Some(transport),
            _dir: dir,
        });
    }
    (nodes, team)
}

async fn local_id(store: &Store, subject: &Subject, uuid: &str) -> Option<i64> {
    store.entity_by_uuid(subject, uuid).await.ok().map(|r| r.id)
}

async fn run(seed: u64, steps: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (nodes, team) = world().await;
    let user = 1;
    let mut uuids: Vec<String> = Vec::new();
    // Every token written anywhere, per entity: all must survive.
    let mut body_tokens: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut comment_tokens: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for step in 0..steps {
        let n = rng.gen_range(0..nodes.len());
        let node = &nodes[n];
        let subject = node.store.subject(user).await.unwrap();
        let roll = rng.gen_range(0..100);
        if roll < 20 && n > 0 {
            sync_once(&node.store, node.transport.as_ref().unwrap())
                .await
                .unwrap();
            continue;
        }
        if roll < 35 || uuids.is_empty() {
            let token = format!("created-{seed}-{step}");
            let new = cahier_store::NewEntity {
                kind: EntityKind::Experiment,
                team_id: team,
                canread: None,
                canwrite: None,
                patch: EntityPatch {
                    title: Some(format!("E {step}")),
                    body: Some(format!("{token}\n")),
                    ..Default::default()
                },
                template: None,
            };
            let id = node.store.create_entity(&subject, new).await.unwrap();
            let uuid = node.store.entity(&subject, id).await.unwrap().uuid;
            body_tokens.entry(uuid.clone()).or_default().insert(token);
            uuids.push(uuid);
            continue;
        }
        let uuid = uuids[rng.gen_range(0..uuids.len())].clone();
        // The entity may not have reached this node yet.
        let Some(id) = local_id(&node.store, &subject, &uuid).await else {
            continue;
        };
        let token = format!("t-{seed}-{step}-{n}");
        let patch = if roll < 75 {
            let body = node.store.content(&subject, id).await.unwrap().body;
            let mut lines: Vec<&str> = body.lines().collect();
            let at = rng.gen_range(0..=lines.len());
            lines.insert(at, &token);
            body_tokens
                .entry(uuid.clone())
                .or_default()
                .insert(token.clone());
            EntityPatch {
                body: Some(lines.join("\n") + "\n"),
                ..Default::default()
            }
        } else if roll < 85 {
            EntityPatch {
                title: Some(token.clone()),
                ..Default::default()
            }
        } else {
            comment_tokens
                .entry(uuid.clone())
                .or_default()
                .insert(token.clone());
            EntityPatch {
                ops: vec![EntityOp::AddComment {
                    id: token.clone(),
                    author: user,
                    body: token.clone(),
                    at_ms: step as i64,
                }],
                ..Default::default()
            }
        };
        node.store
            .update_entity(&subject, id, None, &patch, "save")
            .await
            .unwrap();
    }
    // Settle: two rounds of syncing both replicas.
    for _ in 0..2 {
        for node in &nodes[1..] {
            let report = sync_once(&node.store, node.transport.as_ref().unwrap())
                .await
                .unwrap();
            assert_eq!(
                report.rejected, 0,
                "nothing should be refused here: {report}"
            );
        }
    }
    let server = &nodes[0].store;
    for uuid in &uuids {
        let server_heads = server.heads_of(uuid).await.unwrap();
        assert!(
            server_heads.is_some(),
            "entity {uuid} never reached the server"
        );
        for node in &nodes[1..] {
            assert_eq!(
                node.store.heads_of(uuid).await.unwrap(),
                server_heads,
                "seed {seed}: replica differs on {uuid}"
            );
        }
        for node in &nodes {
            let subject = node.store.subject(user).await.unwrap();
            let id = local_id(&node.store, &subject, uuid).await.unwrap();
            let content = node.store.content(&subject, id).await.unwrap();
            for token in body_tokens.get(uuid).into_iter().flatten() {
                assert!(
                    content.body.contains(token.as_str()),
                    "seed {seed}: lost {token} in {uuid}"
                );
            }
            for token in comment_tokens.get(uuid).into_iter().flatten() {
                assert!(
                    content.comments.iter().any(|c| &c.body == token),
                    "seed {seed}: lost comment {token}"
                );
            }
            // The projection agrees with the document on every node.
            let row = node.store.entity(&subject, id).await.unwrap();
            assert_eq!(row.body, content.body);
            assert_eq!(row.title, content.title);
        }
    }
}

#[tokio::test]
async fn random_interleavings_converge_and_lose_nothing() {
    for seed in 0..6 {
        run(seed, 60).await;
    }
}

#[tokio::test]
async fn a_change_pushed_twice_is_accepted_once() {
    let (nodes, team) = world().await;
    let replica = &nodes[1];
    let transport = replica.transport.as_ref().unwrap();
    let subject = replica.store.subject(1).await.unwrap();
    let new = cahier_store::NewEntity {
        kind: EntityKind::Experiment,
        team_id: team,
        canread: None,
        canwrite: None,
        patch: EntityPatch {
            title: Some("offline".into()),
            ..Default::default()
        },
        template: None,
    };
    replica.store.create_entity(&subject, new).await.unwrap();
    let pending = replica.store.pending_pushes().await.unwrap();
    let docs: Vec<PushDoc> = pending.iter().map(|p| p.1.clone()).collect();
    let first = transport.push(docs.clone()).await.unwrap();
    let second = transport.push(docs).await.unwrap();
    assert_eq!(
        first[0].id, second[0].id,
        "a replayed push must not create a second entity"
    );
    assert_eq!(first[0].heads, second[0].heads);
    let report = sync_once(&replica.store, transport).await.unwrap();
    assert_eq!(report.waiting, 0);
}

/// A sync with nothing to do writes nothing to the replica's database: its file and its
/// write-ahead log keep their size and time.
#[tokio::test]
async fn a_sync_with_nothing_to_do_writes_nothing_on_the_replica() {
    let (nodes, team) = world().await;
    let server = &nodes[0].store;
    let owner = server.subject(1).await.unwrap();
    for title in ["one", "two"] {
        let new = cahier_store::NewEntity {
            kind: EntityKind::Experiment,
            team_id: team,
            canread: None,
            canwrite: None,
            patch: EntityPatch {
                title: Some(title.into()),
                ..Default::default()
            },
            template: None,
        };
        server.create_entity(&owner, new).await.unwrap();
    }
    let replica = &nodes[1];
    let transport = replica.transport.as_ref().unwrap();
    let report = sync_once(&replica.store, transport).await.unwrap();
    assert_eq!(report.added, 2, "{report}");
    sync_once(&replica.store, transport).await.unwrap();
    let files = |dir: &std::path::Path| -> Vec<(u64, std::time::SystemTime)> {
        ["cahier.db", "cahier.db-wal"]
            .iter()
            .map(|name| {
                let meta = std::fs::metadata(dir.join(name)).unwrap();
                (meta.len(), meta.modified().unwrap())
            })
            .collect()
    };
    let before = files(replica._dir.path());
    for _ in 0..3 {
        let report = sync_once(&replica.store, transport).await.unwrap();
        assert_eq!(report, cahier_sync::SyncReport::default(), "{report}");
    }
    assert_eq!(files(replica._dir.path()), before);
}

/// A push larger than one server transaction (50 documents) is committed in parts, all
/// accepted, each entry once.
#[tokio::test]
async fn a_push_of_more_documents_than_one_commit_takes_is_all_accepted() {
    let (nodes, team) = world().await;
    let replica = &nodes[1];
    let transport = replica.transport.as_ref().unwrap();
    let ada = replica.store.subject(1).await.unwrap();
    for i in 0..120 {
        let new = cahier_store::NewEntity {
            kind: EntityKind::Experiment,
            team_id: team,
            canread: None,
            canwrite: None,
            patch: EntityPatch {
                title: Some(format!("offline {i}")),
                ..Default::default()
            },
            template: None,
        };
        replica.store.create_entity(&ada, new).await.unwrap();
    }
    let report = sync_once(&replica.store, transport).await.unwrap();
    assert_eq!(
        (report.pushed, report.rejected, report.waiting),
        (120, 0, 0),
        "{report}"
    );
    let server = &nodes[0].store;
    let owner = server.subject(1).await.unwrap();
    let listed = server.feed(&owner, 0, 1000).await.unwrap().items.len();
    assert_eq!(listed, 120);
    let report = sync_once(&replica.store, transport).await.unwrap();
    assert_eq!((report.pushed, report.waiting), (0, 0), "{report}");
}

/// A lab with Ada (member) and Bea (team admin) and one replica of Ada's notebook.
async fn lab_with_replica() -> (Store, Node, i64, Subject, Node) {
    let (nodes, team) = world().await;
    let server = nodes[0].store.clone();
    let bea = server
        .create_user(NewUser {
            email: "bea@lab.fr".into(),
            firstname: "Bea".into(),
            lastname: "A".into(),
            password: Some("long password".into()),
            is_sysadmin: false,
        })
        .await
        .unwrap();
    server.add_member(team, bea, true).await.unwrap();
    let bea = server.subject(bea).await.unwrap();
    let mut nodes = nodes.into_iter();
    // The server node is returned too: dropping it would delete its data directory.
    let server_node = nodes.next().unwrap();
    (server, nodes.next().unwrap(), team, bea, server_node)
}

async fn shared_entry(server: &Store, owner: &Subject, team: i64) -> (i64, String) {
    let team_rule = cahier_core::AccessRule::base(cahier_core::BaseLevel::Team);
    let new = cahier_store::NewEntity {
        kind: EntityKind::Experiment,
        team_id: team,
        canread: Some(team_rule.clone()),
        canwrite: Some(team_rule),
        patch: EntityPatch {
            title: Some("Shared".into()),
            body: Some("Server text\n".into()),
            ..Default::default()
        },
        template: None,
    };
    let id = server.create_entity(owner, new).await.unwrap();
    (id, server.entity(owner, id).await.unwrap().uuid)
}

#[tokio::test]
async fn offline_edits_to_an_entry_locked_meanwhile_are_kept_as_rejected_edits() {
    let (server, replica, team, bea, _server_node) = lab_with_replica().await;
    let (server_id, uuid) = shared_entry(&server, &bea, team).await;
    let transport = replica.transport.as_ref().unwrap();
    sync_once(&replica.store, transport).await.unwrap();
    let ada = replica.store.subject(1).await.unwrap();
    let local = local_id(&replica.store, &ada, &uuid).await.unwrap();
    let patch = EntityPatch {
        body: Some("Server text\nWritten in the field\n".into()),
        ..Default::default()
    };
    replica
        .store
        .update_entity(&ada, local, None, &patch, "save")
        .await
        .unwrap();
    // Meanwhile Bea, a team admin, locks the entry on the server.
    server.set_lock(&bea, server_id, true).await.unwrap();

    let report = sync_once(&replica.store, transport).await.unwrap();
    assert_eq!(report.rejected, 1, "{report}");
    let rejected = replica.store.rejected_edits().await.unwrap();
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0].reason.contains("locked"),
        "{}",
        rejected[0].reason
    );
    // The replica shows the server's version again; the field text waits in the rejected edit.
    let local = local_id(&replica.store, &ada, &uuid).await.unwrap();
    assert_eq!(
        replica.store.entity(&ada, local).await.unwrap().body,
        "Server text\n"
    );
    assert_eq!(
        replica.store.entity(&ada, local).await.unwrap().locked_by,
        Some(bea.user_id)
    );
    // And the server kept the refused bytes too.
    let kept: i64 = server.quarantined(&uuid).await.unwrap();
    assert_eq!(kept, 1);
    let report = sync_once(&replica.store, transport).await.unwrap();
    assert_eq!((report.rejected, report.waiting), (0, 0), "{report}");
}

/// One push request is one transaction with a savepoint per document: the document the server
/// refuses is rolled back and quarantined, the others of the same request are all accepted,
/// each with its own audit entry, and the audit chain stays whole.
#[tokio::test]
async fn a_push_batch_with_one_refused_document_accepts_the_others() {
    let (server, replica, team, bea, _server_node) = lab_with_replica().await;
    let (first_id, first) = shared_entry(&server, &bea, team).await;
    let (locked_id, locked) = shared_entry(&server, &bea, team).await;
    let (third_id, third) = shared_entry(&server, &bea, team).await;
    let transport = replica.transport.as_ref().unwrap();
    sync_once(&replica.store, transport).await.unwrap();
    let ada = replica.store.subject(1).await.unwrap();
    for uuid in [&first, &locked, &third] {
        let local = local_id(&replica.store, &ada, uuid).await.unwrap();
        let patch = EntityPatch {
            body: Some(format!("Server text\nField note for {uuid}\n")),
            ..Default::default()
        };
        replica
            .store
            .update_entity(&ada, local, None, &patch, "save")
            .await
            .unwrap();
    }
    server.set_lock(&bea, locked_id, true).await.unwrap();
    let audit_before = server.audit_head().await.unwrap().map_or(0, |e| e.seq);

    let pending = replica.store.pending_pushes().await.unwrap();
    assert_eq!(pending.len(), 3);
    let docs: Vec<PushDoc> = pending.iter().map(|p| p.1.clone()).collect();
    let results = transport.push(docs).await.unwrap();
    for (doc, result) in pending.iter().zip(&results) {
        assert_eq!(doc.1.uuid, result.uuid);
        if result.uuid == locked {
            assert_eq!(
                result.status,
                cahier_store::sync::proto::PushStatus::Rejected
            );
            assert!(result.quarantine.is_some(), "{result:?}");
        } else {
            assert_eq!(
                result.status,
                cahier_store::sync::proto::PushStatus::Accepted,
                "{result:?}"
            );
        }
    }
    for (id, uuid) in [(first_id, &first), (third_id, &third)] {
        assert_eq!(
            server.entity(&bea, id).await.unwrap().body,
            format!("Server text\nField note for {uuid}\n")
        );
    }
    assert_eq!(
        server.entity(&bea, locked_id).await.unwrap().body,
        "Server text\n",
        "nothing of the refused document was kept"
    );
    assert_eq!(server.quarantined(&locked).await.unwrap(), 1);
    assert_eq!(server.quarantined(&first).await.unwrap(), 0);
    // One audit entry per document: two acceptances and one refusal, chained.
    let (entries, _) = server
        .audit_entries(&cahier_store::audit::AuditFilter::default())
        .await
        .unwrap();
    let mut actions: Vec<&str> = entries
        .iter()
        .filter(|e| e.seq > audit_before)
        .map(|e| e.action.as_str())
        .collect();
    actions.sort_unstable();
    assert_eq!(actions, ["sync.accept", "sync.accept", "sync.reject"]);
    assert!(server.verify_audit_chain().await.unwrap().broken.is_empty());

    // The replica records the outcome: the refused edit is kept, the rest acknowledged.
    let report = sync_once(&replica.store, transport).await.unwrap();
    assert_eq!((report.pushed, report.rejected), (2, 1), "{report}");
    assert_eq!(replica.store.rejected_edits().await.unwrap().len(), 1);
    let report = sync_once(&replica.store, transport).await.unwrap();
    assert_eq!(
        (report.pushed, report.rejected, report.waiting),
        (0, 0, 0),
        "{report}"
    );
}

#[tokio::test]
async fn losing_read_access_removes_the_entry_and_keeps_unpushed_edits() {
    let (server, replica, team, bea, _server_node) = lab_with_replica().await;
    let (server_id, uuid) = shared_entry(&server, &bea, team).await;
    let transport = replica.transport.as_ref().unwrap();
    sync_once(&replica.store, transport).await.unwrap();
    let ada = replica.store.subject(1).await.unwrap();
    let local = local_id(&replica.store, &ada, &uuid).await.unwrap();
    let patch = EntityPatch {
        body: Some("Server text\nNotes nobody must lose\n".into()),
        ..Default::default()
    };
    replica
        .store
        .update_entity(&ada, local, None, &patch, "save")
        .await
        .unwrap();
    let only_owner = cahier_core::AccessRule::base(cahier_core::BaseLevel::OwnerOnly);
    server
        .set_access(&bea, server_id, only_owner.clone(), only_owner)
        .await
        .unwrap();

    let report = sync_once(&replica.store, transport).await.unwrap();
    assert_eq!(report.rejected, 1, "{report}");
    assert!(
        local_id(&replica.store, &ada, &uuid).await.is_none(),
        "the entry is gone from the laptop"
    );
    let rejected = replica.store.rejected_edits().await.unwrap();
    assert_eq!(rejected.len(), 1, "the unpushed edit is kept");
    assert_eq!(server.quarantined(&uuid).await.unwrap(), 1);
}

#[tokio::test]
async fn a_server_restored_from_an_old_backup_gets_the_whole_document_again() {
    let (nodes, team) = world().await;
    let server = &nodes[0].store;
    let replica = &nodes[1];
    let transport = replica.transport.as_ref().unwrap();
    let ada = replica.store.subject(1).await.unwrap();
    let new = cahier_store::NewEntity {
        kind: EntityKind::Experiment,
        team_id: team,
        canread: None,
        canwrite: None,
        patch: EntityPatch {
            title: Some("Field".into()),
            body: Some("one\n".into()),
            ..Default::default()
        },
        template: None,
    };
    let local = replica.store.create_entity(&ada, new).await.unwrap();
    sync_once(&replica.store, transport).await.unwrap();
    let uuid = replica.store.entity(&ada, local).await.unwrap().uuid;
    // The server loses the entity's later history (as if restored from an older backup):
    // simulate by pushing a change whose base the server has never seen.
    let patch = EntityPatch {
        body: Some("one\ntwo\n".into()),
        ..Default::default()
    };
    replica
        .store
        .update_entity(&ada, local, None, &patch, "save")
        .await
        .unwrap();
    let mut pending = replica.store.pending_pushes().await.unwrap();
    let (_, mut doc, _) = pending.remove(0);
    doc.base = "0000000000000000000000000000000000000000000000000000000000000000".into();
    let only_delta = transport.push(vec![doc]).await.unwrap();
    // Delta against an unknown base: the server asks for more rather than guessing.
    assert!(matches!(
        only_delta[0].status,
        cahier_store::sync::proto::PushStatus::Accepted
            | cahier_store::sync::proto::PushStatus::NeedFull
    ));
    let report = sync_once(&replica.store, transport).await.unwrap();
    assert_eq!(report.waiting, 0, "{report}");
    let subject = server.subject(1).await.unwrap();
    let server_row = server.entity_by_uuid(&subject, &uuid).await.unwrap();
    assert_eq!(server_row.body, "one\ntwo\n");
}

/// Access withdrawn on one entry reaches the replica through the feed (no `POST /check` of
/// everything it holds); a change of the user's teams asks the whole check.
#[tokio::test]
async fn lost_access_comes_with_the_feed_and_a_team_change_asks_the_whole_check() {
    use std::sync::atomic::Ordering;
    let (server, replica, team, bea, _server_node) = lab_with_replica().await;
    let (shared, uuid) = shared_entry(&server, &bea, team).await;
    let (_, other) = shared_entry(&server, &bea, team).await;
    let transport = replica.transport.as_ref().unwrap();
    sync_once(&replica.store, transport).await.unwrap();
    let ada = replica.store.subject(1).await.unwrap();
    let checks = transport.checks.load(Ordering::SeqCst);

    // An edit at the lab moves the checkpoint: pulled, and no whole check.
    let patch = EntityPatch {
        body: Some("Server text\nEdited at the lab\n".into()),
        ..Default::default()
    };
    server
        .update_entity(&bea, shared, None, &patch, "save")
        .await
        .unwrap();
    let report = sync_once(&replica.store, transport).await.unwrap();
    assert_eq!(report.pulled, 1, "{report}");
    assert_eq!(transport.checks.load(Ordering::SeqCst), checks);

    // Access withdrawn on that entry: the feed says so; removed without the whole check.
    let only_owner = cahier_core::AccessRule::base(cahier_core::BaseLevel::OwnerOnly);
    server
        .set_access(&bea, shared, only_owner.clone(), only_owner)
        .await
        .unwrap();
    let report = sync_once(&replica.store, transport).await.unwrap();
    assert_eq!(report.removed, 1, "{report}");
    assert!(local_id(&replica.store, &ada, &uuid).await.is_none());
    assert_eq!(transport.checks.load(Ordering::SeqCst), checks);
    assert!(local_id(&replica.store, &ada, &other).await.is_some());

    // Ada leaves the team: no entry moved, but the reference records did: the whole check
    // runs and removes the team's entry.
    server.remove_member(team, 1).await.unwrap();
    let report = sync_once(&replica.store, transport).await.unwrap();
    assert_eq!(report.removed, 1, "{report}");
    assert!(local_id(&replica.store, &ada, &other).await.is_none());
    assert!(transport.checks.load(Ordering::SeqCst) > checks);
}
