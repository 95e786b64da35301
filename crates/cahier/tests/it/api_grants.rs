//! API keys' grants kept in memory (issue #7): changes made by another process on the same
//! database (a second `Store`, as `cahier` commands run on a live instance) take effect on the
//! very next request, and API-key answers carry no CSRF cookie.

use cahier_store::Store;
use cahier_testkit::TestApp;
use serde_json::json;
use std::sync::Arc;

/// A second handle on the server's database, as another process would open it.
async fn other_process(app: &TestApp) -> Store {
    Store::open_sqlite(
        &app.dir.path().join("cahier.db"),
        Arc::new(cahier_core::SystemClock),
    )
    .await
    .expect("open the same database")
}

#[tokio::test]
async fn a_key_revoked_by_another_process_is_refused_on_the_next_request() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let key = app.api_key(&alice, true).await;
    let spare = app.api_key(&alice, false).await;
    let api = app.api(&key);
    let id = api
        .create("/experiments", json!({"title": "Soil pH"}))
        .await;
    // Twice: the second answer comes from the grant kept in memory.
    for _ in 0..2 {
        assert_eq!(
            api.json(&format!("/experiments/{id}")).await["title"],
            "Soil pH"
        );
    }

    let other = other_process(&app).await;
    let key_id: i64 = key.split('-').next().unwrap().parse().unwrap();
    other.delete_api_key(alice.id, key_id).await.unwrap();

    let response = api.get(&format!("/experiments/{id}")).await;
    assert_eq!(response.status(), 401, "the single GET sees the revocation");
    assert_eq!(api.get("/experiments").await.status(), 401);
    let response = api
        .patch(&format!("/experiments/{id}"), json!({"title": "Changed"}))
        .await;
    assert_eq!(response.status(), 401);
    // A bad request with the revoked key is refused as unauthenticated, not judged.
    assert_eq!(api.get("/experiments/not-a-number").await.status(), 401);
    // The user's other key still works.
    assert_eq!(
        app.api(&spare).json(&format!("/experiments/{id}")).await["title"],
        "Soil pH"
    );
    other.close().await;
    app.stop().await;
}

#[tokio::test]
async fn leaving_a_team_in_another_process_hides_its_entries_on_the_next_request() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let bobs = app.api(&app.api_key(&bob, true).await);
    let id = bobs
        .create("/experiments", json!({"title": "Team notes"}))
        .await;
    // Readable by the team: bob's default.
    let alices = app.api(&app.api_key(&alice, false).await);
    for _ in 0..2 {
        assert_eq!(
            alices.json(&format!("/experiments/{id}")).await["title"],
            "Team notes"
        );
    }

    let other = other_process(&app).await;
    other.remove_member(alice.team_id, alice.id).await.unwrap();

    assert_eq!(
        alices.get(&format!("/experiments/{id}")).await.status(),
        404,
        "alice's memberships are read again"
    );
    let list = alices.json("/experiments").await;
    assert_eq!(list.as_array().unwrap().len(), 0);
    assert_eq!(
        bobs.json(&format!("/experiments/{id}")).await["title"],
        "Team notes"
    );
    other.close().await;
    app.stop().await;
}

#[tokio::test]
async fn api_key_answers_set_no_csrf_cookie_and_browsers_still_get_one() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api.create("/experiments", json!({"title": "Quiet"})).await;
    let response = api.get(&format!("/experiments/{id}")).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("set-cookie").is_none(),
        "{:?}",
        response.headers()
    );
    let response = api
        .post("/experiments", json!({"title": "Also quiet"}))
        .await;
    assert_eq!(response.status(), 201);
    assert!(response.headers().get("set-cookie").is_none());

    let response = reqwest::get(format!("{}/login", app.url)).await.unwrap();
    let cookies: Vec<&str> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        cookies.iter().any(|c| c.starts_with("cahier_csrf=")),
        "{cookies:?}"
    );
    app.stop().await;
}
