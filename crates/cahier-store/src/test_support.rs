//! Set-up shared by this crate's unit tests.

use crate::Store;
use crate::accounts::NewUser;
use crate::sync::Device;
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
