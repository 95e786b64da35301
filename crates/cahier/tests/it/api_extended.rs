//! eLabFTW's advanced query grammar: the API's `extended` parameter, and `q` when it uses the
//! grammar, over a real server and database.

use cahier_testkit::TestApp;
use serde_json::json;

/// The titles of a list, sorted.
async fn titles(api: &cahier_testkit::Api, path: &str) -> Vec<String> {
    let list = api.json(path).await;
    let mut titles: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("{path}: not a list: {list}"))
        .iter()
        .map(|row| row["title"].as_str().unwrap().to_owned())
        .collect();
    titles.sort();
    titles
}

/// Percent-encodes a query parameter value.
fn q(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn extended_queries_select_what_they_say() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", true).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let bob_api = app.api(&app.api_key(&bob, true).await);

    let core = api
        .create(
            "/experiments",
            json!({"title": "Soil core", "body": "sediment layers", "tags": ["soil"], "date": "2024-01-10",
                   "metadata": {"extra_fields": {"Site": {"type": "text", "value": "Camargue"}, "Depth": {"type": "number", "value": "30"}}}}),
        )
        .await;
    let water = api
        .create(
            "/experiments",
            json!({"title": "Water sample", "body": "river water", "tags": ["water"], "date": "2024-03-05",
                   "metadata": {"extra_fields": {"Site": {"type": "text", "value": "Loire"}, "Depth": {"type": "number", "value": "2"}}}}),
        )
        .await;
    let draft = api
        .create(
            "/experiments",
            json!({"title": "Draft protocol", "body": "to write", "date": "2024-03-20"}),
        )
        .await;
    bob_api
        .create(
            "/experiments",
            json!({"title": "Bob's soil pits", "body": "pits", "tags": ["soil"], "date": "2024-02-01", "canread_base": 30}),
        )
        .await;

    let ext = |s: &str| format!("/experiments?extended={}", q(s));
    assert_eq!(
        titles(&api, &ext("title:soil")).await,
        ["Bob's soil pits", "Soil core"]
    );
    assert_eq!(
        titles(&api, &ext("title:soil AND author:alice")).await,
        ["Soil core"]
    );
    assert_eq!(
        titles(&api, &ext(&format!("owner:{}", bob.id))).await,
        ["Bob's soil pits"]
    );
    assert_eq!(
        titles(&api, &ext("date:>2024-02-01")).await,
        ["Draft protocol", "Water sample"]
    );
    assert_eq!(
        titles(&api, &ext("date:2024-01-01..2024-02-01")).await,
        ["Bob's soil pits", "Soil core"]
    );
    assert_eq!(
        titles(&api, &ext("tag:water OR body:layers")).await,
        ["Soil core", "Water sample"]
    );
    assert_eq!(
        titles(&api, &ext("NOT tag:soil !title:draft")).await,
        ["Water sample"]
    );
    assert_eq!(
        titles(&api, &ext("(sediment | river) date:<20240301")).await,
        ["Soil core"]
    );
    assert_eq!(
        titles(&api, &ext("extrafield:Site:camargue")).await,
        ["Soil core"]
    );
    assert_eq!(
        titles(&api, &ext("extrafield:Site:%o%")).await,
        ["Water sample"]
    );
    assert_eq!(titles(&api, &ext("field:Depth>=10")).await, ["Soil core"]);
    assert_eq!(
        titles(&api, &ext(&format!("id:{water}"))).await,
        ["Water sample"]
    );
    assert_eq!(
        titles(&api, &ext("\"river water\"")).await,
        ["Water sample"]
    );
    assert!(titles(&api, &ext("\"water river\"")).await.is_empty());
    assert_eq!(titles(&api, &ext("timestamped:no")).await.len(), 4);
    assert!(titles(&api, &ext("timestamped:yes")).await.is_empty());

    // `q` switches to the grammar when it is used; plain words stay full-text.
    assert_eq!(
        titles(
            &api,
            &format!(
                "/experiments?q={}",
                q("title:water OR tag:soil author:alice")
            )
        )
        .await,
        ["Soil core", "Water sample"]
    );
    assert_eq!(titles(&api, "/experiments?q=sediment").await, ["Soil core"]);
    // `extended` and the other parameters all apply.
    assert_eq!(
        titles(&api, &format!("{}&q=pits", ext("tag:soil"))).await,
        ["Bob's soil pits"]
    );

    // Locking and states.
    assert_eq!(
        api.patch(&format!("/experiments/{core}"), json!({"action": "lock"}))
            .await
            .status(),
        200
    );
    assert_eq!(titles(&api, &ext("locked:yes")).await, ["Soil core"]);
    assert_eq!(
        api.delete(&format!("/experiments/{draft}")).await.status(),
        204
    );
    assert_eq!(
        titles(&api, &ext("state:deleted")).await,
        ["Draft protocol"]
    );
    assert_eq!(
        titles(&api, &ext("title:draft")).await,
        Vec::<String>::new()
    );
    assert_eq!(
        titles(&api, &ext("state:normal,deleted title:%o%")).await,
        ["Bob's soil pits", "Draft protocol", "Soil core"]
    );

    // Access rules still apply: bob reads alice's team entries only as the policy says.
    let bob_sees = titles(&bob_api, &ext("tag:soil")).await;
    assert!(bob_sees.contains(&"Bob's soil pits".to_owned()));

    app.stop().await;
}

#[tokio::test]
async fn malformed_extended_queries_get_a_422_that_explains() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, false).await);
    for (query, says, in_q) in [
        ("(soil OR water", "not closed", false),
        ("date:yesterday", "YYYY-MM-DD", true),
        ("locked:perhaps", "yes or no", true),
        ("custom_id:3", "no custom ids", true),
        ("soil OR", "missing", true),
    ] {
        // A search box forgives a stray parenthesis or quote (it searches the words).
        let params: &[&str] = if in_q {
            &["extended", "q"]
        } else {
            &["extended"]
        };
        for param in params {
            let response = api.get(&format!("/experiments?{param}={}", q(query))).await;
            assert_eq!(response.status(), 422, "{param}={query}");
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["code"], 422);
            let text = format!("{} {}", body["message"], body["description"]);
            assert!(text.contains(says), "{param}={query}: {text}");
        }
    }
    let forgiven = api
        .get(&format!("/experiments?q={}", q("(soil OR water")))
        .await;
    assert_eq!(forgiven.status(), 200);
    app.stop().await;
}
