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
}

fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned>(value: T) -> T {
    serde_json::from_str(&serde_json::to_string(&value).unwrap()).unwrap()
}

impl Transport for Direct {
    async fn reference(&self) -> Result<Reference, SyncError> {
        Ok(roundtrip(self.server.reference(&self.subject).await?))
    }
    async fn push(&self, docs: Vec<PushDoc>) -> Result<Vec<PushResult>, SyncError> {
        Ok(roundtrip(
            self.server
                .push(&self.subject, &self.device, roundtrip(docs))
                .await?,
        ))
    }
    async fn feed(&self, since: i64, limit: i64) -> Result<FeedResponse, SyncError> {
        Ok(roundtrip(
            self.server.feed(&self.subject, since, limit).await?,
        ))
    }
    async fn pull(&self, docs: Vec<PullDoc>) -> Result<Vec<PullEntry>, SyncError> {
        Ok(roundtrip(
            self.server.pull(&self.subject, &roundtrip(docs)).await?,
        ))
    }
    async fn revoked(&self, uuids: Vec<String>) -> Result<Vec<String>, SyncError> {
        Ok(self.server.revoked(&self.subject, &uuids).await?)
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
