//! An accepted push is not pulled back (issue #5): the feed lists the replica's own pushed
//! entries again, and when nothing else happened to them on the server the replica skips them.
//! Anything else the server did to an entry (an edit merged with the push, a lock taken and
//! released, a later edit) is still pulled. The transport calls the server's store directly,
//! through a JSON round trip of every message, and counts what is pulled.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use cahier_core::{AccessRule, BaseLevel, EntityKind, EntityPatch, Subject, SystemClock};
use cahier_store::Store;
use cahier_store::accounts::NewUser;
use cahier_store::sync::Device;
use cahier_store::sync::proto::{FeedResponse, PullDoc, PullEntry, PushDoc, PushResult, Reference};
use cahier_sync::{SyncError, Transport, sync_once};
use std::sync::{Arc, Mutex};

struct Counting {
    server: Store,
    subject: Subject,
    device: Device,
    /// UUIDs asked for by `POST /pull`, in order.
    pulled: Mutex<Vec<String>>,
}

fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned>(value: T) -> T {
    serde_json::from_str(&serde_json::to_string(&value).unwrap()).unwrap()
}

impl Transport for Counting {
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
        self.pulled
            .lock()
            .unwrap()
            .extend(docs.iter().map(|d| d.uuid.clone()));
        Ok(roundtrip(
            self.server.pull(&self.subject, &roundtrip(docs)).await?,
        ))
    }
    async fn revoked(&self, uuids: Vec<String>) -> Result<Vec<String>, SyncError> {
        Ok(self.server.revoked(&self.subject, &uuids).await?)
    }
}

impl Counting {
    fn take_pulled(&self) -> Vec<String> {
        let mut pulled = std::mem::take(&mut *self.pulled.lock().unwrap());
        pulled.sort();
        pulled
    }
}

async fn open(dir: &tempfile::TempDir, name: &str, device: &str) -> Store {
    Store::open_sqlite(&dir.path().join(name), Arc::new(SystemClock))
        .await
        .unwrap()
        .with_device(device)
}

async fn edit(store: &Store, subject: &Subject, id: i64, line: &str) {
    let body = store.content(subject, id).await.unwrap().body;
    store
        .update_entity(
            subject,
            id,
            None,
            &EntityPatch {
                body: Some(format!("{body}{line}\n")),
                ..Default::default()
            },
            "edit",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn an_accepted_push_is_not_pulled_back_but_the_servers_own_events_are() {
    let dir = tempfile::tempdir().unwrap();
    let server = open(&dir, "lab.db", "server").await;
    let mut users = Vec::new();
    for (email, name) in [("ada@lab.fr", "Ada"), ("bea@lab.fr", "Bea")] {
        users.push(
            server
                .create_user(NewUser {
                    email: email.into(),
                    firstname: name.into(),
                    lastname: "L".into(),
                    password: Some("long password".into()),
                    is_sysadmin: false,
                })
                .await
                .unwrap(),
        );
    }
    let team = server.create_team("Ecology").await.unwrap();
    server.add_member(team, users[0], false).await.unwrap();
    server.add_member(team, users[1], true).await.unwrap();
    let ada = server.subject(users[0]).await.unwrap();
    let bea = server.subject(users[1]).await.unwrap();
    let mut lab_ids = Vec::new();
    let mut uuids = Vec::new();
    for n in 0..4 {
        let rule = AccessRule::base(BaseLevel::Team);
        let id = server
            .create_entity(
                &bea,
                cahier_store::NewEntity {
                    kind: EntityKind::Experiment,
                    team_id: team,
                    canread: Some(rule.clone()),
                    canwrite: Some(rule),
                    patch: EntityPatch {
                        title: Some(format!("Entry {n}")),
                        body: Some(format!("lab line {n}\n")),
                        ..Default::default()
                    },
                    template: None,
                },
            )
            .await
            .unwrap();
        lab_ids.push(id);
        uuids.push(server.entity(&bea, id).await.unwrap().uuid);
    }
    let (device, _) = server
        .register_device("ada@lab.fr", "long password", "laptop", "test")
        .await
        .unwrap();
    let replica = open(&dir, "replica.db", &device.uuid).await;
    replica.init_replica().await.unwrap();
    let transport = Counting {
        server: server.clone(),
        subject: ada.clone(),
        device,
        pulled: Mutex::new(Vec::new()),
    };
    let first = sync_once(&replica, &transport).await.unwrap();
    assert_eq!(first.added, 4);
    transport.take_pulled();
    let me = replica.subject(users[0]).await.unwrap();
    let mut local = Vec::new();
    for uuid in &uuids {
        local.push(replica.entity_by_uuid(&me, uuid).await.unwrap().id);
    }

    // 1. Edits on the laptop only: pushed, and nothing pulled back.
    for (n, id) in local.iter().enumerate() {
        edit(&replica, &me, *id, &format!("laptop line {n}")).await;
    }
    let report = sync_once(&replica, &transport).await.unwrap();
    assert_eq!((report.pushed, report.pulled, report.waiting), (4, 0, 0));
    assert!(transport.take_pulled().is_empty(), "own pushes pulled back");
    for uuid in &uuids {
        assert_eq!(
            replica.heads_of(uuid).await.unwrap(),
            server.heads_of(uuid).await.unwrap()
        );
    }
    // The next sync has nothing to do either.
    let report = sync_once(&replica, &transport).await.unwrap();
    assert_eq!((report.pushed, report.pulled), (0, 0));
    assert!(transport.take_pulled().is_empty());

    // 2. The laptop edits all four again; meanwhile, at the lab, entry 0 is edited (merged
    // with the push: other heads) and entry 1 locked and unlocked (same heads, a newer
    // sequence before the push). Those two are pulled; entries 2 and 3 are not.
    for (n, id) in local.iter().enumerate() {
        edit(&replica, &me, *id, &format!("second laptop line {n}")).await;
    }
    edit(&server, &bea, lab_ids[0], "lab edit").await;
    server.set_lock(&bea, lab_ids[1], true).await.unwrap();
    server.set_lock(&bea, lab_ids[1], false).await.unwrap();
    let report = sync_once(&replica, &transport).await.unwrap();
    assert_eq!((report.pushed, report.waiting), (4, 0), "{report}");
    let mut expected = vec![uuids[0].clone(), uuids[1].clone()];
    expected.sort();
    assert_eq!(transport.take_pulled(), expected);
    for (uuid, lab_id) in uuids.iter().zip(&lab_ids) {
        assert_eq!(
            replica.heads_of(uuid).await.unwrap(),
            server.heads_of(uuid).await.unwrap()
        );
        let here = replica.entity_by_uuid(&me, uuid).await.unwrap();
        let there = server.entity(&bea, *lab_id).await.unwrap();
        assert_eq!(here.body, there.body);
    }
    let merged = replica.entity_by_uuid(&me, &uuids[0]).await.unwrap().body;
    assert!(merged.contains("lab edit") && merged.contains("second laptop line 0"));

    // 3. A lab edit after the push is pulled as usual.
    edit(&server, &bea, lab_ids[3], "later lab edit").await;
    let report = sync_once(&replica, &transport).await.unwrap();
    assert_eq!((report.pushed, report.pulled), (0, 1));
    assert_eq!(transport.take_pulled(), vec![uuids[3].clone()]);
    let body = replica.entity_by_uuid(&me, &uuids[3]).await.unwrap().body;
    assert!(body.contains("later lab edit"));
}
