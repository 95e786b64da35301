//! API v2 experiments: the eLabFTW conventions scripts rely on.

use cahier_testkit::TestApp;
use serde_json::json;

#[tokio::test]
async fn creating_reading_patching_and_deleting_an_experiment_follows_elabftw_conventions() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", true).await;
    let api = app.api(&app.api_key(&alice, true).await);

    let id = api
        .create("/experiments", json!({"title": "Soil pH", "body": "| a | b |\n|---|---|\n| 1 | 2 |", "tags": ["soil", "ph"], "date": "2026-11-20"}))
        .await;
    let one = api.json(&format!("/experiments/{id}")).await;
    assert_eq!(one["title"], "Soil pH");
    assert_eq!(one["date"], "2026-11-20");
    assert_eq!(one["tags"], "ph|soil");
    assert!(one["body_html"].as_str().unwrap().contains("<table>"));
    assert!(
        one["canread"].is_string(),
        "canread is a JSON string as in eLabFTW"
    );
    let created = one["created_at"].as_str().unwrap();
    assert_eq!(created.len(), 19, "YYYY-MM-DD HH:MM:SS: {created}");

    let patched = api
        .patch(
            &format!("/experiments/{id}"),
            json!({"title": "Soil pH, plot 4"}),
        )
        .await;
    assert_eq!(patched.status(), 200);
    let patched: serde_json::Value = patched.json().await.unwrap();
    assert_eq!(patched["title"], "Soil pH, plot 4");
    assert_eq!(patched["body"], "| a | b |\n|---|---|\n| 1 | 2 |");

    let list = api.json("/experiments?q=plot").await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    assert_eq!(
        api.delete(&format!("/experiments/{id}")).await.status(),
        204
    );
    assert_eq!(api.json("/experiments").await.as_array().unwrap().len(), 0);
    app.stop().await;
}

#[tokio::test]
async fn read_only_keys_get_403_on_writes() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, false).await);
    let response = api.post("/experiments", json!({"title": "x"})).await;
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], 403);
    assert!(body["description"].as_str().unwrap().contains("read-only"));
}
