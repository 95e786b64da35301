//! Set-up shared by this crate's unit tests.

use crate::Store;
use crate::accounts::NewUser;
use crate::sync::Device;
use crate::sync::proto::{PullDoc, PullEntry};
use cahier_core::Subject;

/// A lab member with a registered device, as the sync tests need: Ada, member of the team
/// "Ecology", with her laptop. Returns her id, the team's id, the device and her subject.
pub(crate) async fn member_with_laptop(store: &Store) -> (i64, i64, Device, Subject) {
    let user = store
        .create_user(NewUser {
            email: "ada@lab.fr".into(),
            firstname: "Ada".into(),
            lastname: "L".into(),
            password: Some("long password".into()),
            is_sysadmin: false,
        })
        .await
        .expect("user");
    let team = store.create_team("Ecology").await.expect("team");
    store.add_member(team, user, false).await.expect("member");
    let (device, _) = store
        .register_device("ada@lab.fr", "long password", "laptop", "test")
        .await
        .expect("device");
    let subject = store.subject(user).await.expect("subject");
    (user, team, device, subject)
}

/// Through JSON and back, as every sync message travels over HTTP.
pub(crate) fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned>(value: T) -> T {
    serde_json::from_str(&serde_json::to_string(&value).expect("json")).expect("json")
}

/// A lab and a replica of it on Ada's laptop ([`member_with_laptop`]), each a real SQLite
/// file in one temporary directory (kept as long as this is), the replica holding the lab's
/// reference records.
pub(crate) struct LabAndReplica {
    pub(crate) lab: Store,
    pub(crate) replica: Store,
    /// Ada at the lab.
    pub(crate) subject: Subject,
    /// Ada on the replica.
    pub(crate) replica_subject: Subject,
    pub(crate) team: i64,
    pub(crate) device: Device,
    pub(crate) _dir: tempfile::TempDir,
}

pub(crate) async fn lab_and_replica() -> LabAndReplica {
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("dir");
    let lab = Store::open_sqlite(
        &dir.path().join("lab.db"),
        Arc::new(cahier_core::SystemClock),
    )
    .await
    .expect("lab");
    let (user, team, device, subject) = member_with_laptop(&lab).await;
    let replica = Store::open_sqlite(
        &dir.path().join("replica.db"),
        Arc::new(cahier_core::SystemClock),
    )
    .await
    .expect("replica")
    .with_device(&device.uuid);
    replica.init_replica().await.expect("init");
    replica
        .import_reference(&roundtrip(lab.reference(&subject).await.expect("ref")))
        .await
        .expect("reference");
    let replica_subject = replica.subject(user).await.expect("subject");
    LabAndReplica {
        lab,
        replica,
        subject,
        replica_subject,
        team,
        device,
        _dir: dir,
    }
}

impl LabAndReplica {
    /// What the lab's feed lists, pulled from the replica's acknowledged heads.
    pub(crate) async fn pulled(&self) -> Vec<PullEntry> {
        let feed = self.lab.feed(&self.subject, 0, 10_000).await.expect("feed");
        let acked = self.replica.acked_heads().await.expect("acked");
        let docs: Vec<PullDoc> = feed
            .items
            .iter()
            .map(|item| PullDoc {
                uuid: item.uuid.clone(),
                have: acked.get(&item.uuid).cloned().unwrap_or_default(),
                lazy_html: false,
            })
            .collect();
        roundtrip(self.lab.pull(&self.subject, &docs).await.expect("pull"))
    }

    /// [`LabAndReplica::pulled`], applied on the replica.
    pub(crate) async fn sync_pull(&self) -> Vec<crate::replica::Applied> {
        let entries = self.pulled().await;
        self.replica
            .apply_pulled_batch(&entries)
            .await
            .expect("apply")
    }
}
