//! API v2 sub-resources and team-level endpoints: comments, steps, tags, links, revisions,
//! unfinished steps, users, teams, team groups, statuses, categories and API keys, with
//! eLabFTW's conventions (201 + Location, PATCH → full object, DELETE → 204) and refusals.

use cahier_testkit::{Api, TestApp, python};
use serde_json::{Value, json};

async fn status(response: reqwest::Response) -> (u16, Value) {
    let code = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Asserts an eLabFTW error body with this status whose description mentions `needle`.
async fn refused(response: reqwest::Response, code: u16, needle: &str) {
    let (got, body) = status(response).await;
    assert_eq!(got, code, "expected {code}: {body}");
    assert_eq!(body["code"], code, "{body}");
    let description = body["description"].as_str().unwrap_or_default();
    assert!(
        description.contains(needle),
        "description should mention {needle:?}: {description}"
    );
}

fn last_segment(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .expect("Location")
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

async fn experiment(api: &Api, title: &str) -> i64 {
    api.create("/experiments", json!({"title": title, "body": "start"}))
        .await
}

#[tokio::test]
async fn comments_are_listed_added_edited_and_deleted_by_their_author_only() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let carol = app.user("carol@lab.fr", "Physics", false).await;
    let alice_api = app.api(&app.api_key(&alice, true).await);
    let bob_api = app.api(&app.api_key(&bob, true).await);
    let carol_api = app.api(&app.api_key(&carol, true).await);
    let id = api_team_experiment(&alice_api).await;

    let cid = bob_api
        .create(
            &format!("/experiments/{id}/comments"),
            json!({"comment": "Nice plot"}),
        )
        .await;
    let list = alice_api.json(&format!("/experiments/{id}/comments")).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], cid);
    assert_eq!(list[0]["comment"], "Nice plot");
    assert_eq!(list[0]["userid"], bob.id);
    assert_eq!(list[0]["created_at"].as_str().unwrap().len(), 19);
    let one = alice_api
        .json(&format!("/experiments/{id}/comments/{cid}"))
        .await;
    assert_eq!(one["fullname"], list[0]["fullname"]);

    // Only the author edits or deletes.
    refused(
        alice_api
            .patch(
                &format!("/experiments/{id}/comments/{cid}"),
                json!({"comment": "hijack"}),
            )
            .await,
        403,
        "author",
    )
    .await;
    refused(
        alice_api
            .delete(&format!("/experiments/{id}/comments/{cid}"))
            .await,
        403,
        "author",
    )
    .await;
    let (code, edited) = status(
        bob_api
            .patch(
                &format!("/experiments/{id}/comments/{cid}"),
                json!({"comment": "Nice plot, really"}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 200, "{edited}");
    assert_eq!(edited["comment"], "Nice plot, really");
    assert_eq!(edited["id"], cid);

    // Bad input names the field; foreign entities and unknown comments are 404.
    refused(
        bob_api
            .post(
                &format!("/experiments/{id}/comments"),
                json!({"comment": "  "}),
            )
            .await,
        422,
        "comment",
    )
    .await;
    refused(
        carol_api.get(&format!("/experiments/{id}/comments")).await,
        404,
        "not found",
    )
    .await;
    refused(
        carol_api
            .post(
                &format!("/experiments/{id}/comments"),
                json!({"comment": "x"}),
            )
            .await,
        404,
        "not found",
    )
    .await;
    refused(
        bob_api
            .get(&format!("/experiments/{id}/comments/12345"))
            .await,
        404,
        "comment",
    )
    .await;
    let read_only = app.api(&app.api_key(&bob, false).await);
    refused(
        read_only
            .post(
                &format!("/experiments/{id}/comments"),
                json!({"comment": "x"}),
            )
            .await,
        403,
        "read-only",
    )
    .await;

    assert_eq!(
        bob_api
            .delete(&format!("/experiments/{id}/comments/{cid}"))
            .await
            .status(),
        204
    );
    let list = alice_api.json(&format!("/experiments/{id}/comments")).await;
    assert_eq!(list.as_array().unwrap().len(), 0);
    app.stop().await;
}

/// An experiment readable by the whole team (base 30), writable by its owner.
async fn api_team_experiment(api: &Api) -> i64 {
    api.create(
        "/experiments",
        json!({"title": "Shared", "canread_base": 30, "canwrite_base": 10}),
    )
    .await
}

#[tokio::test]
async fn steps_are_added_finished_edited_and_deleted() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let bob_api = app.api(&app.api_key(&bob, true).await);
    let id = api_team_experiment(&api).await;

    let sid = api
        .create(
            &format!("/experiments/{id}/steps"),
            json!({"body": "Weigh the samples"}),
        )
        .await;
    api.create(
        &format!("/experiments/{id}/steps"),
        json!({"body": "Dry them"}),
    )
    .await;
    let steps = api.json(&format!("/experiments/{id}/steps")).await;
    assert_eq!(steps.as_array().unwrap().len(), 2);
    assert_eq!(steps[0]["id"], sid);
    assert_eq!(steps[0]["finished"], 0);

    let (code, done) = status(
        api.patch(
            &format!("/experiments/{id}/steps/{sid}"),
            json!({"action": "finish"}),
        )
        .await,
    )
    .await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["finished"], 1);
    assert_eq!(done["finished_by"], alice.id);
    assert_eq!(done["finished_time"].as_str().unwrap().len(), 19);
    let (_, undone) = status(
        api.patch(
            &format!("/experiments/{id}/steps/{sid}"),
            json!({"action": "finish"}),
        )
        .await,
    )
    .await;
    assert_eq!(undone["finished"], 0, "finish toggles");

    let (code, edited) = status(
        api.patch(
            &format!("/experiments/{id}/steps/{sid}"),
            json!({"body": "Weigh the dry samples"}),
        )
        .await,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(edited["body"], "Weigh the dry samples");

    refused(
        api.patch(
            &format!("/experiments/{id}/steps/{sid}"),
            json!({"action": "explode"}),
        )
        .await,
        422,
        "action",
    )
    .await;
    refused(
        api.post(&format!("/experiments/{id}/steps"), json!({}))
            .await,
        422,
        "body",
    )
    .await;
    // Bob reads but may not write this experiment.
    assert_eq!(
        bob_api.json(&format!("/experiments/{id}/steps")).await[0]["id"],
        sid
    );
    refused(
        bob_api
            .patch(
                &format!("/experiments/{id}/steps/{sid}"),
                json!({"action": "finish"}),
            )
            .await,
        403,
        "not change",
    )
    .await;
    refused(
        api.delete(&format!("/experiments/{id}/steps/99")).await,
        404,
        "step",
    )
    .await;

    // Unfinished steps: mine, and the team's.
    let other = bob_api
        .create(
            "/experiments",
            json!({"title": "Bob's", "canread_base": 30}),
        )
        .await;
    bob_api
        .create(
            &format!("/experiments/{other}/steps"),
            json!({"body": "Bob's step"}),
        )
        .await;
    let mine = api.json("/unfinished_steps").await;
    assert_eq!(mine["experiments"].as_array().unwrap().len(), 1);
    assert_eq!(mine["experiments"][0]["id"], id);
    assert_eq!(mine["experiments"][0]["steps"].as_array().unwrap().len(), 2);
    assert_eq!(
        mine["experiments"][0]["steps"][0],
        json!([sid, "Weigh the dry samples"]),
        "steps are [id, body] pairs as in eLabFTW"
    );
    let team = api.json("/unfinished_steps?scope=team").await;
    assert_eq!(team["experiments"].as_array().unwrap().len(), 2);
    refused(api.get("/unfinished_steps?scope=world").await, 422, "scope").await;

    assert_eq!(
        api.delete(&format!("/experiments/{id}/steps/{sid}"))
            .await
            .status(),
        204
    );
    assert_eq!(
        api.json(&format!("/experiments/{id}/steps"))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn tags_are_added_unreferenced_and_cleared() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = experiment(&api, "Tagged").await;

    let soil = api
        .create(&format!("/experiments/{id}/tags"), json!({"tag": "soil"}))
        .await;
    api.create(&format!("/experiments/{id}/tags"), json!({"tag": "ph"}))
        .await;
    let tags = api.json(&format!("/experiments/{id}/tags")).await;
    assert_eq!(tags.as_array().unwrap().len(), 2);
    let one = api.json(&format!("/experiments/{id}/tags/{soil}")).await;
    assert_eq!(one["tag"], "soil");
    assert_eq!(
        api.json(&format!("/experiments/{id}")).await["tags"],
        "ph|soil"
    );

    refused(
        api.patch(&format!("/experiments/{id}/tags/{soil}"), json!({}))
            .await,
        422,
        "action",
    )
    .await;
    let (code, left) = status(
        api.patch(
            &format!("/experiments/{id}/tags/{soil}"),
            json!({"action": "unreference"}),
        )
        .await,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["tag"], "ph");
    refused(
        api.get(&format!("/experiments/{id}/tags/{soil}")).await,
        404,
        "tag",
    )
    .await;
    refused(
        api.post(&format!("/experiments/{id}/tags"), json!({"tag": ["soil"]}))
            .await,
        422,
        "tag",
    )
    .await;

    assert_eq!(
        api.delete(&format!("/experiments/{id}/tags"))
            .await
            .status(),
        204
    );
    assert_eq!(
        api.json(&format!("/experiments/{id}/tags"))
            .await
            .as_array()
            .unwrap()
            .len(),
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn experiments_are_linked_and_unlinked_and_item_links_need_a_resource() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let carol = app.user("carol@lab.fr", "Physics", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let carol_api = app.api(&app.api_key(&carol, true).await);
    let a = experiment(&api, "Source").await;
    let b = experiment(&api, "Target").await;
    let secret = experiment(&carol_api, "Carol's private").await;

    let response = api
        .post(
            &format!("/experiments/{a}/experiments_links/{b}"),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(last_segment(&response), b.to_string());
    let links = api
        .json(&format!("/experiments/{a}/experiments_links"))
        .await;
    assert_eq!(links.as_array().unwrap().len(), 1);
    assert_eq!(links[0]["entityid"], b);
    assert_eq!(links[0]["title"], "Target");

    refused(
        api.post(
            &format!("/experiments/{a}/experiments_links/{a}"),
            json!({}),
        )
        .await,
        422,
        "itself",
    )
    .await;
    refused(
        api.post(
            &format!("/experiments/{a}/experiments_links/{secret}"),
            json!({}),
        )
        .await,
        404,
        "not found",
    )
    .await;
    refused(
        api.post(&format!("/experiments/{a}/items_links/{b}"), json!({}))
            .await,
        404,
        "resource",
    )
    .await;
    assert_eq!(
        api.json(&format!("/experiments/{a}/items_links")).await,
        json!([])
    );

    assert_eq!(
        api.delete(&format!("/experiments/{a}/experiments_links/{b}"))
            .await
            .status(),
        204
    );
    refused(
        api.delete(&format!("/experiments/{a}/experiments_links/{b}"))
            .await,
        404,
        "link",
    )
    .await;
    assert_eq!(
        api.json(&format!("/experiments/{a}/experiments_links"))
            .await
            .as_array()
            .unwrap()
            .len(),
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn revisions_list_versions_and_return_one_version_body() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let carol = app.user("carol@lab.fr", "Physics", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let carol_api = app.api(&app.api_key(&carol, true).await);
    let id = experiment(&api, "Versions").await;
    let response = api
        .patch(
            &format!("/experiments/{id}"),
            json!({"body": "second body"}),
        )
        .await;
    assert_eq!(response.status(), 200);

    let revisions = api.json(&format!("/experiments/{id}/revisions")).await;
    let revisions = revisions.as_array().unwrap();
    assert!(revisions.len() >= 2, "{revisions:?}");
    assert!(revisions[0].get("body").is_none(), "no body in the list");
    assert_eq!(revisions[0]["userid"], alice.id);
    assert_eq!(revisions[0]["created_at"].as_str().unwrap().len(), 19);
    let oldest = revisions.last().unwrap()["id"].as_i64().unwrap();
    let newest = revisions[0]["id"].as_i64().unwrap();
    let first = api
        .json(&format!("/experiments/{id}/revisions/{oldest}"))
        .await;
    assert_eq!(first["body"], "start");
    assert_eq!(first["title"], "Versions");
    let last = api
        .json(&format!("/experiments/{id}/revisions/{newest}"))
        .await;
    assert_eq!(last["body"], "second body");

    refused(
        api.get(&format!("/experiments/{id}/revisions/999999"))
            .await,
        404,
        "revision",
    )
    .await;
    refused(
        carol_api.get(&format!("/experiments/{id}/revisions")).await,
        404,
        "not found",
    )
    .await;

    let (code, _) = status(
        api.patch(
            &format!("/experiments/{id}/revisions/{oldest}"),
            json!({"action": "replace"}),
        )
        .await,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        api.json(&format!("/experiments/{id}")).await["body"],
        "start"
    );
    app.stop().await;
}

#[tokio::test]
async fn users_are_listed_read_created_and_patched_by_admins() {
    let app = TestApp::spawn().await;
    let root = app.user("root@lab.fr", "Ecology", true).await;
    app.store.set_sysadmin(root.id, true).await.unwrap();
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let carol = app.user("carol@lab.fr", "Physics", false).await;
    let root_api = app.api(&app.api_key(&root, true).await);
    let admin_api = app.api(&app.api_key(&admin, true).await);
    let bob_api = app.api(&app.api_key(&bob, true).await);

    // Members of my teams; sysadmins see everyone.
    let mine = bob_api.json("/users").await;
    let ids: Vec<i64> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userid"].as_i64().unwrap())
        .collect();
    assert!(
        ids.contains(&admin.id) && !ids.contains(&carol.id),
        "{ids:?}"
    );
    assert_eq!(root_api.json("/users").await.as_array().unwrap().len(), 4);

    // Non-admins get a stripped record; admins the full one; strangers are not found.
    let stripped = bob_api.json(&format!("/users/{}", admin.id)).await;
    assert!(stripped.get("email").is_none(), "{stripped}");
    assert_eq!(stripped["fullname"], "admin Test");
    let full = admin_api.json(&format!("/users/{}", bob.id)).await;
    assert_eq!(full["email"], "bob@lab.fr");
    refused(
        bob_api.get(&format!("/users/{}", carol.id)).await,
        404,
        "user",
    )
    .await;

    // Creating users is for sysadmins.
    refused(
        admin_api
            .post(
                "/users",
                json!({"firstname": "Dan", "lastname": "D", "email": "dan@lab.fr"}),
            )
            .await,
        403,
        "sysadmin",
    )
    .await;
    refused(
        root_api
            .post("/users", json!({"firstname": "Dan", "lastname": "D"}))
            .await,
        422,
        "email",
    )
    .await;
    let physics = app.team("Physics").await;
    let dan = root_api
        .create(
            "/users",
            json!({"firstname": "Dan", "lastname": "D", "email": "dan@lab.fr", "team": physics}),
        )
        .await;
    let dan_json = root_api.json(&format!("/users/{dan}")).await;
    assert_eq!(dan_json["teams"][0]["id"], physics);

    // add to a team: that team's admin (or a sysadmin).
    let ecology = app.team("Ecology").await;
    refused(
        bob_api
            .patch(
                &format!("/users/{}", bob.id),
                json!({"action": "add", "team": ecology}),
            )
            .await,
        403,
        "admin",
    )
    .await;
    let (code, patched) = status(
        root_api
            .patch(
                &format!("/users/{dan}"),
                json!({"action": "add", "team": ecology}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["teams"].as_array().unwrap().len(), 2);

    // patchuser2team: is_admin and is_archived.
    let (code, promoted) = status(
        admin_api
            .patch(
                &format!("/users/{}", bob.id),
                json!({"action": "patchuser2team", "team": ecology, "target": "is_admin", "content": 1}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 200, "{promoted}");
    let in_ecology = promoted["teams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == ecology)
        .cloned()
        .unwrap();
    assert_eq!(in_ecology["is_admin"], 1);
    refused(
        admin_api
            .patch(
                &format!("/users/{}", bob.id),
                json!({"action": "patchuser2team", "team": ecology, "target": "is_boss", "content": 1}),
            )
            .await,
        422,
        "target",
    )
    .await;
    let (code, archived) = status(
        admin_api
            .patch(
                &format!("/users/{dan}"),
                json!({"action": "patchuser2team", "team": ecology, "target": "is_archived", "content": 1}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 200, "{archived}");
    assert_eq!(archived["is_archived"], 1);
    refused(
        admin_api
            .patch(&format!("/users/{}", bob.id), json!({"action": "fly"}))
            .await,
        422,
        "action",
    )
    .await;
    let read_only = app.api(&app.api_key(&admin, false).await);
    refused(
        read_only
            .patch(
                &format!("/users/{}", bob.id),
                json!({"action": "add", "team": ecology}),
            )
            .await,
        403,
        "read-only",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn teams_and_team_groups_are_read_by_members_and_written_by_admins() {
    let app = TestApp::spawn().await;
    let root = app.user("root@lab.fr", "Ecology", true).await;
    app.store.set_sysadmin(root.id, true).await.unwrap();
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let carol = app.user("carol@lab.fr", "Physics", false).await;
    let root_api = app.api(&app.api_key(&root, true).await);
    let admin_api = app.api(&app.api_key(&admin, true).await);
    let bob_api = app.api(&app.api_key(&bob, true).await);
    let ecology = app.team("Ecology").await;
    let physics = app.team("Physics").await;

    let teams = bob_api.json("/teams").await;
    assert_eq!(teams.as_array().unwrap().len(), 1);
    assert_eq!(teams[0]["name"], "Ecology");
    assert_eq!(bob_api.json("/teams/current").await["id"], ecology);
    assert_eq!(
        bob_api.json(&format!("/teams/{ecology}")).await["name"],
        "Ecology"
    );
    refused(bob_api.get(&format!("/teams/{physics}")).await, 404, "team").await;

    refused(
        admin_api.post("/teams", json!({"name": "Chemistry"})).await,
        403,
        "sysadmin",
    )
    .await;
    refused(root_api.post("/teams", json!({})).await, 422, "name").await;
    let chemistry = root_api
        .create("/teams", json!({"name": "Chemistry"}))
        .await;
    assert_eq!(
        root_api.json(&format!("/teams/{chemistry}")).await["name"],
        "Chemistry"
    );

    // Team groups.
    refused(
        bob_api
            .post(
                &format!("/teams/{ecology}/teamgroups"),
                json!({"name": "Field"}),
            )
            .await,
        403,
        "admin",
    )
    .await;
    let group = admin_api
        .create(
            &format!("/teams/{ecology}/teamgroups"),
            json!({"name": "Field"}),
        )
        .await;
    let (code, patched) = status(
        admin_api
            .patch(
                &format!("/teams/{ecology}/teamgroups/{group}"),
                json!({"how": "add", "userid": bob.id}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["users"][0]["userid"], bob.id);
    refused(
        admin_api
            .patch(
                &format!("/teams/{ecology}/teamgroups/{group}"),
                json!({"how": "add", "userid": carol.id}),
            )
            .await,
        422,
        "userid",
    )
    .await;
    refused(
        admin_api
            .patch(
                &format!("/teams/{ecology}/teamgroups/{group}"),
                json!({"how": "sideways", "userid": bob.id}),
            )
            .await,
        422,
        "how",
    )
    .await;
    let groups = bob_api.json(&format!("/teams/{ecology}/teamgroups")).await;
    assert_eq!(groups[0]["name"], "Field");
    assert_eq!(
        bob_api
            .json(&format!("/teams/{ecology}/teamgroups/{group}"))
            .await["id"],
        group
    );
    let (_, removed) = status(
        admin_api
            .patch(
                &format!("/teams/{ecology}/teamgroups/{group}"),
                json!({"how": "unreference", "userid": bob.id}),
            )
            .await,
    )
    .await;
    assert_eq!(removed["users"].as_array().unwrap().len(), 0);
    // A group asked under another team is not found.
    refused(
        root_api
            .get(&format!("/teams/{physics}/teamgroups/{group}"))
            .await,
        404,
        "team group",
    )
    .await;
    assert_eq!(
        admin_api
            .delete(&format!("/teams/{ecology}/teamgroups/{group}"))
            .await
            .status(),
        204
    );
    refused(
        admin_api
            .get(&format!("/teams/{ecology}/teamgroups/{group}"))
            .await,
        404,
        "team group",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn statuses_and_categories_are_managed_by_team_admins() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let carol = app.user("carol@lab.fr", "Physics", true).await;
    let admin_api = app.api(&app.api_key(&admin, true).await);
    let bob_api = app.api(&app.api_key(&bob, true).await);
    let carol_api = app.api(&app.api_key(&carol, true).await);
    let ecology = app.team("Ecology").await;

    let statuses = bob_api
        .json(&format!("/teams/{ecology}/experiments_status"))
        .await;
    assert_eq!(
        statuses.as_array().unwrap().len(),
        4,
        "four default statuses"
    );

    let status_id = admin_api
        .create(
            &format!("/teams/{ecology}/experiments_status"),
            json!({"name": "Waiting", "color": "#aabbcc", "is_default": true}),
        )
        .await;
    let one = bob_api
        .json(&format!("/teams/{ecology}/experiments_status/{status_id}"))
        .await;
    assert_eq!(
        (
            one["title"].clone(),
            one["color"].clone(),
            one["is_default"].clone()
        ),
        (json!("Waiting"), json!("aabbcc"), json!(1))
    );
    let (code, patched) = status(
        admin_api
            .patch(
                &format!("/teams/{ecology}/experiments_status/{status_id}"),
                json!({"title": "On hold"}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(patched["title"], "On hold");
    refused(
        admin_api
            .post(
                "/teams/current/experiments_status",
                json!({"name": "Bad", "color": "blue"}),
            )
            .await,
        422,
        "color",
    )
    .await;
    refused(
        admin_api
            .post(
                &format!("/teams/{ecology}/experiments_status"),
                json!({"color": "aabbcc"}),
            )
            .await,
        422,
        "name",
    )
    .await;
    refused(
        bob_api
            .post(
                &format!("/teams/{ecology}/experiments_status"),
                json!({"name": "Mine"}),
            )
            .await,
        403,
        "admin",
    )
    .await;
    refused(
        carol_api
            .get(&format!("/teams/{ecology}/experiments_status"))
            .await,
        404,
        "team",
    )
    .await;
    refused(
        carol_api
            .get(&format!("/teams/current/experiments_status/{status_id}"))
            .await,
        404,
        "status",
    )
    .await;

    // Categories, with eLabFTW example 11's `title` key.
    let category = admin_api
        .create(
            "/teams/current/experiments_categories",
            json!({"title": "Field work", "color": "29aeb9"}),
        )
        .await;
    let list = bob_api.json("/teams/current/experiments_categories").await;
    assert_eq!(list[0]["id"], category);
    let experiment = bob_api
        .create(
            "/experiments",
            json!({"title": "Categorised", "category": category}),
        )
        .await;
    assert_eq!(
        bob_api.json(&format!("/experiments/{experiment}")).await["category_title"],
        "Field work"
    );
    assert_eq!(
        admin_api.json("/teams/current/resources_categories").await,
        json!([]),
        "resource categories are a separate list"
    );

    assert_eq!(
        admin_api
            .delete(&format!(
                "/teams/{ecology}/experiments_categories/{category}"
            ))
            .await
            .status(),
        204
    );
    refused(
        bob_api
            .get(&format!(
                "/teams/{ecology}/experiments_categories/{category}"
            ))
            .await,
        404,
        "category",
    )
    .await;
    assert_eq!(
        admin_api
            .delete(&format!("/teams/{ecology}/experiments_status/{status_id}"))
            .await
            .status(),
        204
    );
    app.stop().await;
}

#[tokio::test]
async fn api_keys_are_listed_created_with_the_key_in_location_and_revoked() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let bob_api = app.api(&app.api_key(&bob, true).await);

    let response = api
        .post("/apikeys", json!({"name": "script", "canwrite": 0}))
        .await;
    assert_eq!(response.status(), 201);
    let key = last_segment(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["key"], key);
    let key_id = body["id"].as_i64().unwrap();

    // The new key works, read-only.
    let new_api = app.api(&key);
    assert_eq!(new_api.json("/users/me").await["userid"], alice.id);
    refused(
        new_api.post("/apikeys", json!({"name": "more"})).await,
        403,
        "read-only",
    )
    .await;
    refused(
        api.post("/apikeys", json!({"canwrite": 1})).await,
        422,
        "name",
    )
    .await;
    refused(
        api.post("/apikeys", json!({"name": "x", "canwrite": 7}))
            .await,
        422,
        "canwrite",
    )
    .await;

    let keys = api.json("/apikeys").await;
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == key_id && k["name"] == "script" && k["can_write"] == 0)
    );
    assert!(
        bob_api
            .json("/apikeys")
            .await
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["id"] != key_id)
    );
    refused(
        bob_api.delete(&format!("/apikeys/{key_id}")).await,
        404,
        "api key",
    )
    .await;
    assert_eq!(
        api.delete(&format!("/apikeys/{key_id}")).await.status(),
        204
    );
    assert_eq!(new_api.get("/users/me").await.status(), 401);
    app.stop().await;
}

/// eLabFTW's official client (`elabapi-python` from PyPI, in a cached venv) runs
/// `scripts/elabapi_compat.py` against a real server. Needs python3 and PyPI: without them
/// the test fails and says why.
#[tokio::test]
async fn official_python_client_works_against_cahier() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", true).await;
    let key = app.api_key(&alice, true).await;
    let script =
        std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
            .join("../../scripts/elabapi_compat.py");
    let url = app.url.clone();
    // Blocking work off the runtime, so the server keeps answering meanwhile.
    let output = tokio::task::spawn_blocking(move || {
        let bin = python::venv("elabapi", &["elabapi-python"]);
        python::run(
            "scripts/elabapi_compat.py (the eLabFTW client against Cahier)",
            std::process::Command::new(bin.join("python"))
                .arg(&script)
                .env("API_HOST", &url)
                .env("API_KEY", &key),
        )
    })
    .await
    .expect("blocking task");
    assert!(output.contains("all checks passed"), "{output}");
    app.stop().await;
}

#[tokio::test]
async fn team_tags_are_listed_declared_renamed_and_removed_across_the_team() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    let carol = app.user("carol@lab.fr", "Physics", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let admin_api = app.api(&app.api_key(&admin, true).await);
    let carol_api = app.api(&app.api_key(&carol, true).await);
    let one = api
        .create("/experiments", json!({"title": "One", "tags": ["soil"]}))
        .await;
    let two = api
        .create(
            "/experiments",
            json!({"title": "Two", "tags": ["soil", "ph"]}),
        )
        .await;
    let elsewhere = carol_api
        .create(
            "/experiments",
            json!({"title": "Other team", "tags": ["soil"]}),
        )
        .await;

    let count = |list: &Value, tag: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["tag"] == tag)
            .map(|t| t["item_count"].as_i64().unwrap())
    };
    let tags = api.json("/teams/current/tags").await;
    assert_eq!(count(&tags, "soil"), Some(2), "{tags}");
    assert_eq!(count(&tags, "ph"), Some(1), "{tags}");
    assert_eq!(tags[0]["team"], alice.team_id, "{tags}");

    // Any member declares a tag ahead of use; declaring it twice changes nothing.
    let response = api
        .post("/teams/current/tags", json!({"tag": "  water "}))
        .await;
    assert_eq!(response.status(), 201);
    let water = last_segment(&response);
    assert_eq!(
        api.post("/teams/current/tags", json!({"tag": "water"}))
            .await
            .status(),
        201
    );
    let read = api
        .json(&format!("/teams/{}/tags/{water}", alice.team_id))
        .await;
    assert_eq!(read["tag"], "water");
    assert_eq!(read["item_count"], 0);
    refused(
        api.post("/teams/current/tags", json!({"tag": "a|b"})).await,
        422,
        "|",
    )
    .await;
    // Another team's members do not see this team's tags.
    refused(
        carol_api
            .get(&format!("/teams/{}/tags", alice.team_id))
            .await,
        404,
        "team",
    )
    .await;

    // Renaming is for team admins, and edits every entry of the team that carries the tag.
    let soil = api
        .json("/teams/current/tags")
        .await
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tag"] == "soil")
        .unwrap()["id"]
        .clone();
    refused(
        api.patch(
            &format!("/teams/current/tags/{soil}"),
            json!({"action": "updatetag", "tag": "sediment"}),
        )
        .await,
        403,
        "admin",
    )
    .await;
    let (code, renamed) = status(
        admin_api
            .patch(
                &format!("/teams/current/tags/{soil}"),
                json!({"action": "updatetag", "tag": "sediment"}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 200, "{renamed}");
    assert_eq!(renamed["tag"], "sediment");
    assert_eq!(renamed["item_count"], 2);
    assert_eq!(
        api.json(&format!("/experiments/{one}")).await["tags"],
        "sediment"
    );
    assert_eq!(
        api.json(&format!("/experiments/{two}")).await["tags"],
        "ph|sediment"
    );
    assert_eq!(
        carol_api.json(&format!("/experiments/{elsewhere}")).await["tags"],
        "soil",
        "another team's entries keep their tag"
    );
    // The rename is in the entry's history, under the admin's name.
    let revisions = api.json(&format!("/experiments/{one}/revisions")).await;
    assert!(revisions.as_array().unwrap().len() >= 2, "{revisions}");

    // A locked entry carrying the tag stops the removal before anything changes.
    let ph = api
        .json("/teams/current/tags")
        .await
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tag"] == "ph")
        .unwrap()["id"]
        .clone();
    assert_eq!(
        api.patch(&format!("/experiments/{two}"), json!({"action": "lock"}))
            .await
            .status(),
        200
    );
    refused(
        admin_api.delete(&format!("/teams/current/tags/{ph}")).await,
        409,
        "locked",
    )
    .await;
    assert_eq!(
        api.json(&format!("/experiments/{two}")).await["tags"],
        "ph|sediment"
    );
    api.patch(&format!("/experiments/{two}"), json!({"action": "lock"}))
        .await;
    assert_eq!(
        admin_api
            .delete(&format!("/teams/current/tags/{ph}"))
            .await
            .status(),
        204
    );
    assert_eq!(
        api.json(&format!("/experiments/{two}")).await["tags"],
        "sediment"
    );
    assert_eq!(
        admin_api
            .delete(&format!("/teams/current/tags/{water}"))
            .await
            .status(),
        204
    );
    let left = api.json("/teams/current/tags").await;
    let names: Vec<&str> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sediment"]);
    refused(
        api.get(&format!("/teams/current/tags/{water}")).await,
        404,
        "tag",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn metadatamerge_changes_only_the_fields_it_names() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api
        .create(
            "/experiments",
            json!({"title": "Fields", "metadata": {"extra_fields": {
                "Site": {"type": "text", "value": "Lac Noir"},
                "Depth": {"type": "number", "value": "3", "unit": "m"}
            }}}),
        )
        .await;
    let fields = |entity: &Value| -> Value {
        serde_json::from_str::<Value>(entity["metadata"].as_str().unwrap()).unwrap()["extra_fields"]
            .clone()
    };
    let (code, after) = status(
        api.patch(
            &format!("/experiments/{id}"),
            json!({"metadatamerge": {"extra_fields": {"Depth": {"value": "4.5"}, "pH": {"type": "number", "value": "7.1"}}}}),
        )
        .await,
    )
    .await;
    assert_eq!(code, 200, "{after}");
    let extra = fields(&after);
    assert_eq!(extra["Site"]["value"], "Lac Noir");
    assert_eq!(extra["Depth"]["value"], "4.5");
    assert_eq!(extra["Depth"]["unit"], "m", "the rest of the field stays");
    assert_eq!(extra["pH"]["value"], "7.1");
    // As a JSON string too; null removes a field.
    let (code, after) = status(
        api.patch(
            &format!("/experiments/{id}"),
            json!({"metadatamerge": "{\"extra_fields\": {\"pH\": null}}"}),
        )
        .await,
    )
    .await;
    assert_eq!(code, 200, "{after}");
    assert!(fields(&after).get("pH").is_none(), "{after}");
    refused(
        api.patch(
            &format!("/experiments/{id}"),
            json!({"metadatamerge": {"extra_fields": {}}, "metadata": {}}),
        )
        .await,
        422,
        "not both",
    )
    .await;
    refused(
        api.patch(
            &format!("/experiments/{id}"),
            json!({"metadatamerge": "[1]"}),
        )
        .await,
        422,
        "object",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn updateowner_gives_an_entry_to_a_team_member_by_an_admin_only() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    let carol = app.user("carol@lab.fr", "Physics", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let admin_api = app.api(&app.api_key(&admin, true).await);
    let id = experiment(&api, "Handed over").await;

    refused(
        api.patch(
            &format!("/experiments/{id}"),
            json!({"action": "updateowner", "userid": bob.id}),
        )
        .await,
        403,
        "admin",
    )
    .await;
    refused(
        admin_api
            .patch(
                &format!("/experiments/{id}"),
                json!({"action": "updateowner", "userid": carol.id}),
            )
            .await,
        422,
        "not a member",
    )
    .await;
    refused(
        admin_api
            .patch(
                &format!("/experiments/{id}"),
                json!({"action": "updateowner"}),
            )
            .await,
        422,
        "userid",
    )
    .await;
    let (code, after) = status(
        admin_api
            .patch(
                &format!("/experiments/{id}"),
                json!({"action": "updateowner", "userid": bob.id}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 200, "{after}");
    assert_eq!(after["userid"], bob.id);
    assert_eq!(after["team"], alice.team_id);
    // The transfer is in the audit log, with who did it.
    let (logged, _) = app
        .store
        .audit_entries(&cahier_store::audit::AuditFilter {
            action: Some("entity.owner".into()),
            actor_id: Some(admin.id),
            target_id: Some(id.to_string()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(logged.len(), 1);
    // A locked entry stays with its owner.
    let bob_api = app.api(&app.api_key(&bob, true).await);
    bob_api
        .patch(&format!("/experiments/{id}"), json!({"action": "lock"}))
        .await;
    refused(
        admin_api
            .patch(
                &format!("/experiments/{id}"),
                json!({"action": "updateowner", "userid": alice.id}),
            )
            .await,
        409,
        "locked",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn duplicate_link_also_links_to_what_the_target_links_to() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    app.api(&app.api_key(&admin, true).await)
        .create(
            "/teams/current/resources_categories",
            json!({"title": "Instruments", "is_default": true}),
        )
        .await;
    let api = app.api(&app.api_key(&alice, true).await);
    let probe = api.create("/items", json!({"title": "pH probe"})).await;
    let buffer = api.create("/items", json!({"title": "Buffer pH 7"})).await;
    let meter = api.create("/items", json!({"title": "pH meter"})).await;
    api.post(&format!("/items/{meter}/items_links/{probe}"), json!({}))
        .await;
    api.post(&format!("/items/{meter}/items_links/{buffer}"), json!({}))
        .await;
    let id = experiment(&api, "Calibration").await;
    let response = api
        .post(
            &format!("/experiments/{id}/items_links/{meter}"),
            json!({"action": "duplicate"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(last_segment(&response), meter.to_string());
    let mut linked: Vec<i64> = api
        .json(&format!("/experiments/{id}/items_links"))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["entityid"].as_i64().unwrap())
        .collect();
    linked.sort_unstable();
    let mut expected = vec![probe, buffer, meter];
    expected.sort_unstable();
    assert_eq!(linked, expected);
    refused(
        api.post(
            &format!("/experiments/{id}/items_links/{meter}"),
            json!({"action": "copy"}),
        )
        .await,
        422,
        "duplicate",
    )
    .await;
    app.stop().await;
}
