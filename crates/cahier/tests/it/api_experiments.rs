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

/// Lists longer than a chunk stream out in chunks; the answer is the same list, in order, with
/// offset and limit honoured, as short pages give.
#[tokio::test]
async fn long_lists_stream_the_same_entries_as_short_pages() {
    use cahier_core::{EntityKind, EntityPatch};
    use cahier_store::NewEntity;
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let subject = app.subject(&alice).await;
    for i in 0..450 {
        app.store
            .create_entity(
                &subject,
                NewEntity {
                    kind: EntityKind::Experiment,
                    team_id: alice.team_id,
                    canread: None,
                    canwrite: None,
                    patch: EntityPatch {
                        title: Some(format!("Transect {i}")),
                        ..Default::default()
                    },
                    template: None,
                },
            )
            .await
            .unwrap();
    }
    let api = app.api(&app.api_key(&alice, false).await);
    let ids = |list: serde_json::Value| -> Vec<i64> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect()
    };
    let mut paged = Vec::new();
    for offset in (0..450).step_by(100) {
        paged.extend(ids(api
            .json(&format!("/experiments?limit=100&offset={offset}&order=id"))
            .await));
    }
    assert_eq!(paged.len(), 450);
    let response = api.get("/experiments?limit=1000&order=id").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let streamed = ids(response.json().await.unwrap());
    assert_eq!(streamed, paged, "same entries, same order");
    let window = ids(api.json("/experiments?limit=300&offset=10&order=id").await);
    assert_eq!(window, paged[10..310].to_vec(), "offset and limit honoured");
    let response = api.get("/experiments?limit=1000&order=nonsense").await;
    assert_eq!(response.status(), 422, "bad queries still get an error");
    app.stop().await;
}
