//! API v2 refusals: every bad request gets eLabFTW's error shape `{code, message, description}`
//! with a status a script can act on, and a refused create leaves nothing behind.

use cahier_testkit::{Api, TestApp};
use serde_json::{Value, json};

/// Asserts eLabFTW's error shape and status; returns the description.
async fn error(response: reqwest::Response, status: u16) -> String {
    let got = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "description", "message"], "{body}");
    assert_eq!(body["code"], status);
    assert!(!body["message"].as_str().unwrap().is_empty(), "{body}");
    let description = body["description"].as_str().unwrap().to_owned();
    assert!(!description.is_empty(), "{body}");
    description
}

/// Number of experiments in every state, as the API lists them.
async fn count(api: &Api) -> usize {
    api.json("/experiments?limit=1000&state=1,2,3")
        .await
        .as_array()
        .unwrap()
        .len()
}

async fn post_raw(api: &Api, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    api.client
        .post(format!("{}{path}", api.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn app_and_api() -> (TestApp, Api) {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", true).await;
    let api = app.api(&app.api_key(&alice, true).await);
    (app, api)
}

#[tokio::test]
async fn malformed_json_is_refused_with_400_and_says_why() {
    let (app, api) = app_and_api().await;
    let description = error(post_raw(&api, "/experiments", r#"{"title": "#).await, 400).await;
    assert!(description.contains("not valid JSON"), "{description}");
    let description = error(post_raw(&api, "/experiments", "[1, 2]").await, 400).await;
    assert!(description.contains("JSON object"), "{description}");
    let id = api.create("/experiments", json!({"title": "Soil"})).await;
    let patch = api
        .client
        .patch(format!("{}/experiments/{id}", api.base))
        .header("content-type", "application/json")
        .body("{\"title\": 'single quotes'}")
        .send()
        .await
        .unwrap();
    error(patch, 400).await;
    assert_eq!(
        api.json(&format!("/experiments/{id}")).await["title"],
        "Soil"
    );
    assert_eq!(count(&api).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_number_given_as_title_is_accepted_as_text() {
    let (app, api) = app_and_api().await;
    let id = api.create("/experiments", json!({"title": 5})).await;
    assert_eq!(api.json(&format!("/experiments/{id}")).await["title"], "5");
    app.stop().await;
}

#[tokio::test]
async fn values_of_the_wrong_type_are_refused_with_422_naming_the_field() {
    let (app, api) = app_and_api().await;
    for (body, field) in [
        (json!({"title": "x", "category": "abc"}), "category"),
        (json!({"title": "x", "status": "abc"}), "status"),
        (json!({"title": "x", "date": "29/11/2026"}), "date"),
        (json!({"title": "x", "date": "2026-02-30"}), "date"),
        (json!({"title": "x", "canread_base": 35}), "canread_base"),
        (
            json!({"title": "x", "canwrite_base": "team"}),
            "canwrite_base",
        ),
        (json!({"title": "x", "canread": 5}), "canread"),
        (json!({"title": ["x"]}), "title"),
        (json!({"title": "x", "tags": 5}), "tags"),
        (json!({"title": "x", "rating": 9}), "rating"),
        (json!({"title": "x", "content_type": 3}), "content_type"),
    ] {
        let description = error(api.post("/experiments", body.clone()).await, 422).await;
        assert!(
            description.starts_with(&format!("{field}:")),
            "{body} → {description}"
        );
    }
    assert_eq!(count(&api).await, 0, "no half-written entry is left");
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_status_or_category_id_is_refused_with_422() {
    let (app, api) = app_and_api().await;
    let description = error(
        api.post("/experiments", json!({"title": "x", "status": 999_999}))
            .await,
        422,
    )
    .await;
    assert!(description.starts_with("status:"), "{description}");
    let description = error(
        api.post("/experiments", json!({"title": "x", "category": 999_999}))
            .await,
        422,
    )
    .await;
    assert!(description.starts_with("category:"), "{description}");
    let id = api.create("/experiments", json!({"title": "Kept"})).await;
    let description = error(
        api.patch(&format!("/experiments/{id}"), json!({"status": 999_999}))
            .await,
        422,
    )
    .await;
    assert!(description.starts_with("status:"), "{description}");
    assert_eq!(count(&api).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_status_of_another_team_is_refused_with_422() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Chemistry", false).await;
    let chemistry_status = app
        .store
        .terms(
            cahier_store::catalog::Vocabulary::Status,
            bob.team_id,
            cahier_store::catalog::Family::Experiment,
        )
        .await
        .unwrap()[0]
        .id;
    let api = app.api(&app.api_key(&alice, true).await);
    let description = error(
        api.post(
            "/experiments",
            json!({"title": "x", "status": chemistry_status}),
        )
        .await,
        422,
    )
    .await;
    assert!(description.starts_with("status:"), "{description}");
    assert_eq!(count(&api).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_refused_create_leaves_no_half_written_entry() {
    let (app, api) = app_and_api().await;
    api.create("/experiments", json!({"title": "Before"})).await;
    let long_title = "t".repeat(10_000);
    for body in [
        json!({"title": long_title}),
        json!({"title": "x", "tags": ["ok", "t".repeat(500)]}),
        json!({"title": "x", "canread": {"teams": [424_242]}}),
        json!({"title": "x", "canwrite": {"users": [424_242]}}),
        json!({"title": "x", "date": "2026-13-01"}),
        json!({"title": "x", "metadata": {"extra_fields": {"T": {"type": "number", "value": "warm"}}}}),
    ] {
        let response = api.post("/experiments", body.clone()).await;
        assert!(
            response.status().is_client_error() || response.status() == 501,
            "{body}: {}",
            response.status()
        );
    }
    assert_eq!(count(&api).await, 1);
    let (_, _, experiments, _) = app.store.instance_counts().await.unwrap();
    assert_eq!(experiments, 1, "no row was written behind the API's back");
    app.stop().await;
}

#[tokio::test]
async fn unknown_and_non_integer_ids_return_404() {
    let (app, api) = app_and_api().await;
    let id = api.create("/experiments", json!({"title": "Real"})).await;
    let not_found = api.get(&format!("/experiments/{}", id + 1000)).await;
    let reference = error(not_found, 404).await;
    for path in [
        "/experiments/abc".to_owned(),
        "/experiments/1.5".to_owned(),
        "/experiments/-1".to_owned(),
        "/experiments/0".to_owned(),
        "/experiments/99999999999999999999999".to_owned(),
        format!("/experiments/{id}x"),
    ] {
        assert_eq!(error(api.get(&path).await, 404).await, reference, "{path}");
        assert_eq!(
            error(api.patch(&path, json!({"title": "y"})).await, 404).await,
            reference,
            "{path}"
        );
        assert_eq!(
            error(api.delete(&path).await, 404).await,
            reference,
            "{path}"
        );
    }
    error(api.get("/no-such-endpoint").await, 404).await;
    assert_eq!(
        api.json(&format!("/experiments/{id}")).await["title"],
        "Real"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_missing_or_invalid_api_key_returns_401() {
    let (app, api) = app_and_api().await;
    let base = api.base.clone();
    let anonymous = reqwest::Client::new();
    let response = anonymous
        .get(format!("{base}/experiments"))
        .send()
        .await
        .unwrap();
    let description = error(response, 401).await;
    assert!(description.contains("API key"), "{description}");
    let response = anonymous
        .post(format!("{base}/experiments"))
        .json(&json!({"title": "anonymous"}))
        .send()
        .await
        .unwrap();
    error(response, 401).await;

    let real = app
        .api_key(&app.user("bob@lab.fr", "Ecology", false).await, true)
        .await;
    let (key_id, secret) = real.split_once('-').unwrap();
    let mut wrong_secret = secret.to_owned();
    wrong_secret.replace_range(..1, if secret.starts_with('0') { "1" } else { "0" });
    for key in [
        "".to_owned(),
        "garbage".to_owned(),
        "Bearer ".to_owned(),
        format!("{key_id}-{wrong_secret}"),
        format!("{}-{secret}", key_id.parse::<i64>().unwrap() + 100),
        format!("x-{secret}"),
        secret.to_owned(),
    ] {
        let response = anonymous
            .get(format!("{base}/experiments"))
            .header("authorization", key.as_str())
            .send()
            .await
            .unwrap();
        error(response, 401).await;
    }
    let response = anonymous
        .get(format!("{base}/experiments"))
        .header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        )
        .send()
        .await
        .unwrap();
    error(response, 401).await;
    // The real key works, also with the Bearer prefix.
    let response = anonymous
        .get(format!("{base}/experiments"))
        .header("authorization", format!("Bearer {real}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(count(&api).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_the_size_limit_returns_413() {
    let (app, api) = app_and_api().await;
    let huge = format!(
        r#"{{"title": "big", "body": "{}"}}"#,
        "a".repeat(5 * 1024 * 1024)
    );
    error(post_raw(&api, "/experiments", huge).await, 413).await;
    assert_eq!(count(&api).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn features_not_built_yet_answer_501_with_a_message() {
    let (app, api) = app_and_api().await;
    let id = api.create("/experiments", json!({"title": "x"})).await;
    let description = error(
        api.patch(&format!("/experiments/{id}"), json!({"action": "bloxberg"}))
            .await,
        501,
    )
    .await;
    assert!(description.contains("bloxberg"), "{description}");
    // Signing is built: without a passphrase it says what is missing.
    let description = error(
        api.patch(&format!("/experiments/{id}"), json!({"action": "sign"}))
            .await,
        422,
    )
    .await;
    assert!(description.contains("passphrase"), "{description}");
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_action_is_refused_with_422_and_changes_nothing() {
    let (app, api) = app_and_api().await;
    let id = api.create("/experiments", json!({"title": "Stable"})).await;
    let path = format!("/experiments/{id}");
    let before = api.json(&path).await;
    let description = error(
        api.patch(&path, json!({"action": "explode", "title": "Changed"}))
            .await,
        422,
    )
    .await;
    assert!(description.starts_with("action:"), "{description}");
    assert!(description.contains("explode"), "{description}");
    let after = api.json(&path).await;
    assert_eq!(after["title"], "Stable");
    assert_eq!(after["heads"], before["heads"]);
    app.stop().await;
}

#[tokio::test]
async fn a_read_only_key_cannot_patch_delete_or_duplicate() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let writer = app.api(&app.api_key(&alice, true).await);
    let reader = app.api(&app.api_key(&alice, false).await);
    let id = writer
        .create("/experiments", json!({"title": "Mine"}))
        .await;
    let path = format!("/experiments/{id}");
    error(reader.patch(&path, json!({"title": "No"})).await, 403).await;
    error(reader.delete(&path).await, 403).await;
    error(reader.post(&path, json!({})).await, 403).await;
    assert_eq!(reader.json(&path).await["title"], "Mine");
    assert_eq!(count(&reader).await, 1);
    app.stop().await;
}
