//! The OpenAPI document at `/api/v2/openapi.json`: it describes exactly the routes served
//! (every documented operation reaches a handler), and schemathesis (from PyPI) fuzzing the
//! API from it finds no server error and no answer that breaks the document.

use cahier_testkit::{TestApp, python};
use serde_json::{Value, json};

/// A user who is a sysadmin and admin of their team, with a read-write key.
async fn admin(app: &TestApp) -> (cahier_testkit::TestUser, String) {
    let user = app.user("ada@lab.fr", "Ecology", true).await;
    app.store.set_sysadmin(user.id, true).await.unwrap();
    let key = app.api_key(&user, true).await;
    (user, key)
}

#[tokio::test]
async fn every_documented_operation_reaches_a_handler() {
    let app = TestApp::spawn().await;
    let (_, key) = admin(&app).await;
    let api = app.api(&key);
    // Served without a key: it is the API's public description.
    let document: Value = reqwest::get(format!("{}/api/v2/openapi.json", app.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["openapi"], "3.0.3");
    let paths = document["paths"].as_object().unwrap();
    let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert!(operations >= 60, "{operations} operations");
    for required in [
        "/{entity_type}",
        "/{entity_type}/{id}",
        "/{entity_type}/{id}/uploads/{subid}",
        "/{entity_type}/{id}/items_links/{subid}",
        "/teams/{id}/{vocabulary}/{subid}",
        "/apikeys",
        "/info",
    ] {
        assert!(paths.contains_key(required), "{required} is documented");
    }

    for (path, methods) in paths {
        for (method, op) in methods.as_object().unwrap() {
            assert!(
                op["responses"]["4XX"].is_object(),
                "{method} {path} documents its errors"
            );
            // Ids that exist nowhere: the handler answers (404 naming what is missing, or 4xx
            // for the body), never the router's "endpoint not found" or 405.
            // The first value each path allows for the entity type.
            let entity_type = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "entity_type")
                .map(|p| p["schema"]["enum"][0].as_str().unwrap().to_owned())
                .unwrap_or_default();
            let concrete = path
                .replace("{entity_type}", &entity_type)
                .replace("{vocabulary}", "experiments_categories")
                .replace("/teams/{id}", "/teams/current")
                .replace("{id}", "987654")
                .replace("{subid}", "987655");
            let response = match method.as_str() {
                "get" => api.get(&concrete).await,
                "post" if concrete.ends_with("/uploads") || concrete.contains("/uploads/") => api
                    .client
                    .post(format!("{}{concrete}", api.base))
                    .send()
                    .await
                    .unwrap(),
                "post" => api.post(&concrete, json!({})).await,
                "patch" => api.patch(&concrete, json!({})).await,
                "delete" => api.delete(&concrete).await,
                other => panic!("unexpected method {other}"),
            };
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_ne!(status, 405, "{method} {path}: {body}");
            assert!(status < 500, "{method} {path}: {status} {body}");
            assert!(
                body["description"] != "endpoint not found",
                "{method} {path} is documented but not served"
            );
        }
    }

    // What is not documented is not served.
    let response = api.get("/no_such_thing").await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["description"], "endpoint not found");
    app.stop().await;
}

/// Framework-level refusals (a query string or multipart body that cannot be read) are
/// eLabFTW-style JSON errors like the others.
#[tokio::test]
async fn unreadable_requests_get_json_errors() {
    let app = TestApp::spawn().await;
    let (_, key) = admin(&app).await;
    let api = app.api(&key);
    let id = api.create("/experiments", json!({"title": "x"})).await;
    let response = api
        .get(&format!("/experiments/{id}/uploads?state=1&state=2"))
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], 400);
    assert!(body["description"].as_str().unwrap().contains("state"));
    let response = api
        .client
        .post(format!("{}/experiments/{id}/uploads", api.base))
        .header("Content-Type", "multipart/form-data")
        .body("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], 400);
    // An unknown export format is a mistake, one that has not landed yet a 501.
    let response = api.get(&format!("/experiments/{id}?format=null")).await;
    assert_eq!(response.status(), 422);
    app.stop().await;
}

/// schemathesis generates requests from the document (valid and invalid) for every operation
/// and checks the answers: no 5xx, only documented statuses and content types, bodies that
/// match their schemas. Bounded (a fixed seed and a few examples per operation) to stay
/// within CI's time.
#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_schema_break() {
    let app = TestApp::spawn().await;
    let (_, key) = admin(&app).await;
    let api = app.api(&key);
    // Some data for the generated requests to reach.
    for title in ["Soil core", "Water sample", "Draft"] {
        let id = api
            .create("/experiments", json!({"title": title, "tags": ["field"]}))
            .await;
        api.create(
            &format!("/experiments/{id}/comments"),
            json!({"comment": "ok"}),
        )
        .await;
        api.create(
            &format!("/experiments/{id}/steps"),
            json!({"body": "weigh"}),
        )
        .await;
    }
    let url = app.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        let bin = python::venv("schemathesis", &["schemathesis==4.32.5", "hypothesis==6.160.0"]);
        // schemathesis keeps a cache in its working directory: not in the source tree.
        let work = tempfile::tempdir().expect("temp dir");
        let output = std::process::Command::new(bin.join("schemathesis"))
            .current_dir(work.path())
            .args([
                "run",
                &format!("{url}/api/v2/openapi.json"),
                "--url",
                &format!("{url}/api/v2"),
                "--header",
                &format!("Authorization: {key}"),
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--max-examples",
                "10",
                "--seed",
                "20261129",
                "--workers",
                "2",
                "--no-color",
                "--generation-with-security-parameters",
                "false",
                // Stateful runs chain requests through links schemathesis infers, which carry
                // values across paths whatever the path's own enum says (a template's type into
                // uploads, which templates do not have yet: 501); the other phases stay inside
                // the document.
                "--phases",
                "examples,coverage,fuzzing",
                // Revoking the run's own key would end the run.
                "--exclude-path",
                "/apikeys/{id}",
            ])
            .output()
            .expect("start schemathesis");
        (
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    })
    .await
    .expect("blocking task");
    let (status, stdout) = output;
    assert!(status.success(), "schemathesis found problems:\n{stdout}");
    assert!(stdout.contains("passed"), "{stdout}");
    app.stop().await;
}

/// The UI's API page lists the operations from the same document and says how to start.
#[tokio::test]
async fn the_api_page_lists_the_documented_operations() {
    let app = TestApp::spawn().await;
    let (user, _) = admin(&app).await;
    let browser = app.browser(&user).await;
    let html = browser.page("/api-docs").await;
    assert!(
        html.contains("/{entity_type}/{id}/uploads/{subid}"),
        "{html}"
    );
    assert!(html.contains("Attach a file"));
    assert!(html.contains("href=\"/api/v2/openapi.json\""));
    assert!(
        html.contains(&format!("{}/api/v2/experiments", app.url))
            || html.contains("/api/v2/experiments?limit=5")
    );
    let settings = browser.page("/settings").await;
    assert!(settings.contains("href=\"/api-docs\""));
    app.stop().await;
}
