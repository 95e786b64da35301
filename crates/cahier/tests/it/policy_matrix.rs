//! The access policy end to end. For every combination of base levels, explicit grants and
//! viewer roles, the API (one entry, the list, full-text search, PATCH) and the UI page answer
//! exactly what `cahier_core::access::EntityAccess` decides; the list and search answers prove
//! that the SQL filter (`cahier_store::access_sql`) mirrors the Rust policy. A refused read must
//! look exactly like a missing entry.

use cahier_core::{AccessRule, BaseLevel, EntityAccess, EntityKind, EntityPatch, Subject};
use cahier_store::NewEntity;
use cahier_testkit::{Api, Browser, TestApp, TestUser};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// Who is looking, and how they reach the server.
struct Viewer {
    role: &'static str,
    user: TestUser,
    subject: Subject,
    api: Api,
    browser: Browser,
}

/// One team for the entries, people in every role towards them, and the things grants name.
struct World {
    app: TestApp,
    owner: TestUser,
    owner_subject: Subject,
    listed_team: i64,
    group: i64,
    listed_user: i64,
    viewers: Vec<Viewer>,
}

impl World {
    async fn new() -> World {
        let app = TestApp::spawn().await;
        let owner = app.user("owner@lab.fr", "Ecology", false).await;
        let member = app.user("member@lab.fr", "Ecology", false).await;
        let admin = app.user("admin@lab.fr", "Ecology", true).await;
        let outsider = app.user("outsider@lab.fr", "Chemistry", false).await;
        let sysadmin = app.user("sysadmin@lab.fr", "Chemistry", true).await;
        app.store.set_sysadmin(sysadmin.id, true).await.unwrap();
        let in_listed_team = app.user("physicist@lab.fr", "Physics", false).await;
        let in_group = app.user("geologist@lab.fr", "Geology", false).await;
        let listed = app.user("named@lab.fr", "Biology", false).await;
        // A group of the entries' team whose member comes from another team (eLabFTW allows it).
        let group = app
            .store
            .create_group(owner.team_id, "Soil project")
            .await
            .unwrap();
        app.store
            .set_group_member(group, in_group.id, true)
            .await
            .unwrap();

        let mut viewers = Vec::new();
        for (role, user) in [
            ("owner", &owner),
            ("member of the entry's team", &member),
            ("admin of the entry's team", &admin),
            ("member of another team", &outsider),
            ("sysadmin of another team", &sysadmin),
            ("member of a listed team", &in_listed_team),
            ("member of a listed group", &in_group),
            ("listed user", &listed),
        ] {
            let subject = app.subject(user).await;
            let api = app.api(&app.api_key(user, true).await);
            let browser = app.browser(user).await;
            viewers.push(Viewer {
                role,
                user: user.clone(),
                subject,
                api,
                browser,
            });
        }
        assert!(viewers[4].subject.is_sysadmin);
        let owner_subject = app.subject(&owner).await;
        World {
            listed_team: in_listed_team.team_id,
            listed_user: listed.id,
            group,
            owner,
            owner_subject,
            viewers,
            app,
        }
    }

    /// Creates an entry owned by the owner, titled with a word found nowhere else.
    async fn entry(&self, case: Case, word: &str) -> Entry {
        let mut canread = AccessRule::base(case.read);
        let mut canwrite = AccessRule::base(case.write);
        let rule = match case.extra {
            Extra::None => None,
            Extra::Read(grantee) => Some((&mut canread, grantee)),
            Extra::Write(grantee) => Some((&mut canwrite, grantee)),
        };
        if let Some((rule, grantee)) = rule {
            match grantee {
                Grantee::Team => rule.teams.push(self.listed_team),
                Grantee::Group => rule.teamgroups.push(self.group),
                Grantee::User => rule.users.push(self.listed_user),
            }
        }
        let id = self
            .app
            .store
            .create_entity(
                &self.owner_subject,
                NewEntity {
                    kind: EntityKind::Experiment,
                    team_id: self.owner.team_id,
                    canread: Some(canread.clone()),
                    canwrite: Some(canwrite.clone()),
                    patch: EntityPatch {
                        title: Some(format!("Matrix {word}")),
                        ..Default::default()
                    },
                    template: None,
                },
            )
            .await
            .unwrap();
        Entry {
            id,
            word: word.to_owned(),
            case,
            access: EntityAccess {
                owner_id: self.owner.id,
                team_id: self.owner.team_id,
                canread,
                canwrite,
                locked_by: None,
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Grantee {
    Team,
    Group,
    User,
}

#[derive(Debug, Clone, Copy)]
enum Extra {
    None,
    Read(Grantee),
    Write(Grantee),
}

#[derive(Debug, Clone, Copy)]
struct Case {
    read: BaseLevel,
    write: BaseLevel,
    extra: Extra,
}

struct Entry {
    id: i64,
    word: String,
    case: Case,
    access: EntityAccess,
}

/// Every pair of base levels.
fn all_base_pairs() -> Vec<(BaseLevel, BaseLevel)> {
    let mut pairs = Vec::new();
    for read in BaseLevel::ALL {
        for write in BaseLevel::ALL {
            pairs.push((read, write));
        }
    }
    pairs
}

/// Creates one entry per case, then asks every viewer about every entry through every door,
/// and fails with the full list of disagreements with the policy.
async fn check_matrix(cases: Vec<Case>) {
    let world = World::new().await;
    let mut entries = Vec::new();
    for (n, case) in cases.into_iter().enumerate() {
        entries.push(world.entry(case, &format!("kw{n:04}q")).await);
    }
    let missing_id = entries.iter().map(|e| e.id).max().unwrap_or(0) + 1000;
    let mut failures = String::new();
    let mut fail = |message: String| {
        writeln!(failures, "{message}").unwrap();
    };

    for viewer in &world.viewers {
        let api = &viewer.api;
        let browser = &viewer.browser;
        // What a missing entry looks like, to compare refusals with.
        let missing = api.get(&format!("/experiments/{missing_id}")).await;
        assert_eq!(missing.status(), 404);
        let missing_json: Value = missing.json().await.unwrap();
        assert_eq!(missing_json["code"], 404);
        let missing_page = browser.get(&format!("/experiments/{missing_id}")).await;
        assert_eq!(missing_page.status(), 404);
        let missing_html = missing_page.text().await.unwrap();

        let listed: BTreeSet<i64> = api
            .json("/experiments?limit=1000")
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect();
        let mut readable_count = 0;
        let mut writable_count = 0;

        for entry in &entries {
            let may_read = entry.access.may_read(&viewer.subject);
            let may_write = entry.access.may_write(&viewer.subject);
            readable_count += usize::from(may_read);
            writable_count += usize::from(may_write);
            let what = format!(
                "{} on #{} {:?} (policy: read {may_read}, write {may_write})",
                viewer.role, entry.id, entry.case
            );

            // (b) The list filter in SQL agrees with the Rust policy.
            if listed.contains(&entry.id) != may_read {
                fail(format!("list: {what}"));
            }

            // (a) One entry: 200, or a 404 identical to that of a missing id.
            let response = api.get(&format!("/experiments/{}", entry.id)).await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            match (may_read, status) {
                (true, 200) if body["id"] == entry.id => {}
                (false, 404) if body == missing_json => {}
                _ => fail(format!("GET api: {status} {body} for {what}")),
            }

            // (d) The UI page: the same answers, and the same 404 page as a missing entry.
            let response = browser.get(&format!("/experiments/{}", entry.id)).await;
            let status = response.status().as_u16();
            let html = response.text().await.unwrap();
            match (may_read, status) {
                (true, 200) if html.contains(&entry.word) => {}
                (false, 404) if html == missing_html => {}
                _ => fail(format!("GET page: {status} for {what}")),
            }

            // (e) Full-text search on a word of the title finds it exactly when readable.
            let found: Vec<i64> = api
                .json(&format!("/experiments?q={}", entry.word))
                .await
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_i64().unwrap())
                .collect();
            let expected: Vec<i64> = if may_read { vec![entry.id] } else { vec![] };
            if found != expected {
                fail(format!("search: found {found:?} for {what}"));
            }

            // (c) PATCH: 200 when writable, 403 when only readable, 404 when not readable.
            let title = format!("Matrix {} edited by {}", entry.word, viewer.user.email);
            let response = api
                .patch(
                    &format!("/experiments/{}", entry.id),
                    json!({ "title": title }),
                )
                .await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            match (may_read, may_write, status) {
                (_, true, 200) if body["title"] == title.as_str() => {}
                (true, false, 403) if body["code"] == 403 => {}
                (false, false, 404) if body == missing_json => {}
                _ => fail(format!("PATCH: {status} {body} for {what}")),
            }
        }
        // Guard against a fixture where a role sees everything or nothing.
        assert!(
            (readable_count > 0 && readable_count < entries.len()) || viewer.role == "owner",
            "{} reads {readable_count} of {} entries: the matrix does not discriminate",
            viewer.role,
            entries.len()
        );
        if viewer.role == "owner" {
            assert_eq!(writable_count, entries.len(), "the owner writes everything");
        }
    }
    assert!(
        failures.is_empty(),
        "disagreements with the policy:\n{failures}"
    );
    world.app.stop().await;
}

#[tokio::test]
async fn every_pair_of_base_levels_is_enforced_like_the_policy_for_every_role() {
    let cases = all_base_pairs()
        .into_iter()
        .map(|(read, write)| Case {
            read,
            write,
            extra: Extra::None,
        })
        .collect();
    check_matrix(cases).await;
}

#[tokio::test]
async fn teams_groups_and_users_listed_for_reading_are_enforced_like_the_policy() {
    let mut cases = Vec::new();
    for (read, write) in all_base_pairs() {
        for grantee in [Grantee::Team, Grantee::Group, Grantee::User] {
            cases.push(Case {
                read,
                write,
                extra: Extra::Read(grantee),
            });
        }
    }
    check_matrix(cases).await;
}

#[tokio::test]
async fn teams_groups_and_users_listed_for_writing_are_enforced_like_the_policy() {
    let mut cases = Vec::new();
    for (read, write) in all_base_pairs() {
        for grantee in [Grantee::Team, Grantee::Group, Grantee::User] {
            cases.push(Case {
                read,
                write,
                extra: Extra::Write(grantee),
            });
        }
    }
    check_matrix(cases).await;
}

#[tokio::test]
async fn a_locked_entry_refuses_every_writer_with_409_until_its_locker_owner_or_an_admin_unlocks_it()
 {
    let app = TestApp::spawn().await;
    let owner = app.user("owner@lab.fr", "Ecology", false).await;
    let colleague = app.user("colleague@lab.fr", "Ecology", false).await;
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    let reader = app.user("reader@lab.fr", "Chemistry", false).await;
    let outsider = app.user("outsider@lab.fr", "Chemistry", false).await;
    let owner_api = app.api(&app.api_key(&owner, true).await);
    let id = owner_api
        .create(
            "/experiments",
            json!({
                "title": "Calibration",
                "canread": {"base": 30, "teams": [], "teamgroups": [], "users": [reader.id]},
                "canwrite_base": 30,
            }),
        )
        .await;
    let path = format!("/experiments/{id}");

    // A colleague who may write may not lock; a team admin may.
    let colleague_api = app.api(&app.api_key(&colleague, true).await);
    let refused = colleague_api.patch(&path, json!({"action": "lock"})).await;
    assert_eq!(refused.status(), 403);
    let admin_api = app.api(&app.api_key(&admin, true).await);
    let locked = admin_api.patch(&path, json!({"action": "lock"})).await;
    assert_eq!(locked.status(), 200);
    let locked: Value = locked.json().await.unwrap();
    assert_eq!(locked["locked"], 1);
    assert_eq!(locked["lockedby"], admin.id);

    let row = app
        .store
        .entity(&app.subject(&owner).await, id)
        .await
        .unwrap();
    let access = row.access();
    assert_eq!(access.locked_by, Some(admin.id));
    // Nobody writes a locked entry: not its owner, not the admin who locked it.
    for (user, expected) in [
        (&owner, 409),
        (&colleague, 409),
        (&admin, 409),
        (&reader, 403),
        (&outsider, 404),
    ] {
        let subject = app.subject(user).await;
        assert!(!access.may_write(&subject), "policy for {}", user.email);
        let api = app.api(&app.api_key(user, true).await);
        let response = api
            .patch(
                &path,
                json!({"title": format!("Calibration by {}", user.email)}),
            )
            .await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, expected, "PATCH by {}: {body}", user.email);
        assert_eq!(body["code"].as_i64().unwrap_or(200), i64::from(expected));
        if expected == 409 {
            assert!(
                body["description"].as_str().unwrap().contains("locked"),
                "{body}"
            );
        }
    }

    // The UI refuses the locker's save the same way, and nothing changes.
    let admin_browser = app.browser(&admin).await;
    let page = admin_browser.page(&path).await;
    assert!(
        !page.contains("id=\"entity-form\""),
        "no editor on a locked entry"
    );
    let refused = admin_browser
        .post_form(&format!("{path}/save"), &[("title", "Admin's title")])
        .await;
    assert_eq!(refused.status(), 409);
    assert_eq!(owner_api.json(&path).await["title"], "Calibration");

    // A lock also blocks deletion; a colleague cannot lift it, the owner can.
    assert_eq!(admin_api.delete(&path).await.status(), 409);
    assert_eq!(
        colleague_api
            .patch(&path, json!({"action": "forceunlock"}))
            .await
            .status(),
        403
    );
    let unlocked = owner_api
        .patch(&path, json!({"action": "forceunlock"}))
        .await;
    assert_eq!(unlocked.status(), 200);
    assert_eq!(unlocked.json::<Value>().await.unwrap()["locked"], 0);
    assert_eq!(
        owner_api
            .patch(&path, json!({"title": "Calibration, unlocked"}))
            .await
            .status(),
        200
    );
    let (entries, _) = app
        .store
        .audit_entries(&cahier_store::audit::AuditFilter {
            target_type: Some("entity".into()),
            target_id: Some(id.to_string()),
            ..Default::default()
        })
        .await
        .unwrap();
    let steps: Vec<(&str, Option<i64>)> = entries
        .iter()
        .rev()
        .map(|e| (e.action.as_str(), e.actor_id))
        .collect();
    assert_eq!(
        steps,
        [
            ("entity.lock", Some(admin.id)),
            ("entity.unlock", Some(owner.id))
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_deleted_entry_is_shown_only_to_readers_who_may_restore_it_in_pages_and_lists() {
    let world = World::new().await;
    let mut entries = Vec::new();
    for (n, (read, write)) in all_base_pairs().into_iter().enumerate() {
        for (m, extra) in [
            Extra::None,
            Extra::Read(Grantee::User),
            Extra::Write(Grantee::Team),
        ]
        .into_iter()
        .enumerate()
        {
            let case = Case { read, write, extra };
            let entry = world.entry(case, &format!("del{n:02}x{m}q")).await;
            world
                .app
                .store
                .set_state(
                    &world.owner_subject,
                    entry.id,
                    cahier_store::entities::state::DELETED,
                )
                .await
                .unwrap();
            entries.push(entry);
        }
    }
    let missing_id = entries.iter().map(|e| e.id).max().unwrap_or(0) + 1000;
    let mut failures = String::new();
    for viewer in &world.viewers {
        let missing: Value = viewer
            .api
            .get(&format!("/experiments/{missing_id}"))
            .await
            .json()
            .await
            .unwrap();
        let missing_html = viewer
            .browser
            .get(&format!("/experiments/{missing_id}"))
            .await
            .text()
            .await
            .unwrap();
        let in_bin: BTreeSet<i64> = viewer
            .api
            .json("/experiments?limit=1000&state=3")
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect();
        let in_default_list = viewer
            .api
            .json("/experiments?limit=1000")
            .await
            .as_array()
            .unwrap()
            .len();
        if in_default_list != 0 {
            writeln!(
                failures,
                "{} lists {in_default_list} deleted entries by default",
                viewer.role
            )
            .unwrap();
        }
        for entry in &entries {
            // Deleting an entry must never let more people read it.
            let visible =
                entry.access.may_read(&viewer.subject) && entry.access.may_admin(&viewer.subject);
            let what = format!(
                "{} on deleted #{} {:?} (visible {visible})",
                viewer.role, entry.id, entry.case
            );
            if in_bin.contains(&entry.id) != visible {
                writeln!(failures, "list state=3: {what}").unwrap();
            }
            let response = viewer.api.get(&format!("/experiments/{}", entry.id)).await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            match (visible, status) {
                (true, 200) if body["state"] == 3 => {}
                (false, 404) if body == missing => {}
                _ => writeln!(failures, "GET api: {status} for {what}").unwrap(),
            }
            let response = viewer
                .browser
                .get(&format!("/experiments/{}", entry.id))
                .await;
            let status = response.status().as_u16();
            let html = response.text().await.unwrap();
            match (visible, status) {
                (true, 200) if html.contains(&entry.word) => {}
                (false, 404) if html == missing_html => {}
                _ => writeln!(failures, "GET page: {status} for {what}").unwrap(),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "deleted entries shown to the wrong people:\n{failures}"
    );
    world.app.stop().await;
}
