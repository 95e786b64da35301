//! Stock of resources over real HTTP: the API extension (`/items/{id}/stock`, the `stock`
//! object of an item), the Stock panel and forms of the resource page, the low-stock badge of
//! the list, the team's "to reorder" page, permissions and locks, bad input, and consumption
//! recorded on a field replica and on the server adding up after sync.

use cahier_core::stock::StockKind;
use cahier_store::stock::NewStockEvent;
use cahier_testkit::{Api, TestApp, TestUser};
use serde_json::{Value, json};

async fn status_and_description(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["description"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A team with a default resource category, its admin and two members.
async fn lab(app: &TestApp) -> (TestUser, TestUser, TestUser) {
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    app.api(&app.api_key(&admin, true).await)
        .create(
            "/teams/current/resources_categories",
            json!({"title": "Reagents", "is_default": true}),
        )
        .await;
    (admin, alice, bob)
}

async fn stock_of(api: &Api, id: i64) -> Value {
    api.json(&format!("/items/{id}")).await["stock"].clone()
}

#[tokio::test]
async fn stock_is_recorded_through_the_api_and_summed_in_the_item() {
    let app = TestApp::spawn().await;
    let (_admin, alice, _bob) = lab(&app).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let item = api.create("/items", json!({"title": "Ethanol 70 %"})).await;
    let experiment = api
        .create("/experiments", json!({"title": "DNA extraction"}))
        .await;
    let stock_path = format!("/items/{item}/stock");

    // Not tracked: no stock object, and recording says what to do first.
    assert!(
        api.json(&format!("/items/{item}"))
            .await
            .get("stock")
            .is_none()
    );
    let (status, description) = status_and_description(
        api.post(&stock_path, json!({"action": "consume", "amount": 1}))
            .await,
    )
    .await;
    assert_eq!(status, 422, "{description}");
    assert!(description.contains("enable tracking"), "{description}");

    let enabled = api
        .patch(&stock_path, json!({"unit": "mL", "threshold": 5}))
        .await;
    assert_eq!(enabled.status(), 200);
    let enabled: Value = enabled.json().await.unwrap();
    assert_eq!(enabled["unit"], "mL");
    assert_eq!(enabled["quantity"], json!(0.0));

    let created = api
        .post(&stock_path, json!({"action": "adjust", "amount": 10}))
        .await;
    assert_eq!(created.status(), 201);
    assert!(
        cahier_testkit::location(&created).starts_with(&format!("/api/v2/items/{item}/stock/")),
        "{}",
        cahier_testkit::location(&created)
    );
    let created = api
        .post(
            &stock_path,
            json!({"action": "consume", "amount": "2.5", "unit": "mL", "experiment": experiment, "note": "lysis"}),
        )
        .await;
    assert_eq!(created.status(), 201);

    let stock = stock_of(&api, item).await;
    assert_eq!(stock["quantity"], json!(7.5));
    assert_eq!(stock["threshold"], json!(5.0));
    assert_eq!(stock["is_low"], false);
    let events = stock["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    let consumption = events.iter().find(|e| e["action"] == "consume").unwrap();
    assert_eq!(consumption["amount"], json!(2.5));
    assert_eq!(consumption["delta"], json!(-2.5));
    assert_eq!(consumption["experiment"], experiment);
    assert_eq!(consumption["experiment_title"], "DNA extraction");
    assert_eq!(consumption["note"], "lysis");
    assert_eq!(consumption["userid"], alice.id);
    assert!(consumption["received_at"].as_str().unwrap().len() == 19);

    // At the threshold: low. Below zero: kept as it is, and flagged.
    api.post(&stock_path, json!({"action": "consume", "amount": 2.5}))
        .await;
    let stock = stock_of(&api, item).await;
    assert_eq!(stock["quantity"], json!(5.0));
    assert_eq!(stock["is_low"], true);
    api.post(&stock_path, json!({"action": "consume", "amount": 6}))
        .await;
    let stock = api.json(&stock_path).await;
    assert_eq!(stock["quantity"], json!(-1.0));
    assert_eq!(stock["is_negative"], true);
    assert_eq!(stock["events"].as_array().unwrap().len(), 4);
    api.post(
        &stock_path,
        json!({"action": "restock", "amount": "100.125"}),
    )
    .await;
    assert_eq!(stock_of(&api, item).await["quantity"], json!(99.125));

    // The threshold can be cleared; the item's other fields are untouched.
    let cleared: Value = api
        .patch(&stock_path, json!({"threshold": null}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["threshold"], Value::Null);
    assert_eq!(cleared["unit"], "mL");

    // Stock is for resources only.
    let (status, _) = status_and_description(
        api.post(
            &format!("/experiments/{experiment}/stock"),
            json!({"action": "consume", "amount": 1}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_stock_input_answers_422_naming_the_field_and_records_nothing() {
    let app = TestApp::spawn().await;
    let (_admin, alice, _bob) = lab(&app).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let item = api.create("/items", json!({"title": "Agarose"})).await;
    let stock_path = format!("/items/{item}/stock");
    let (status, description) =
        status_and_description(api.patch(&stock_path, json!({"threshold": 3})).await).await;
    assert_eq!(status, 422);
    assert!(description.starts_with("unit:"), "{description}");
    assert_eq!(
        api.patch(&stock_path, json!({"unit": "g"})).await.status(),
        200
    );

    for (body, field, words) in [
        (
            json!({"action": "consume", "amount": 1, "unit": "mL"}),
            "unit",
            "counts its stock in g",
        ),
        (
            json!({"action": "consume", "amount": "beaucoup"}),
            "amount",
            "not a number",
        ),
        (
            json!({"action": "consume", "amount": 1.2345}),
            "amount",
            "3 decimals",
        ),
        (
            json!({"action": "consume", "amount": -1}),
            "amount",
            "greater than zero",
        ),
        (
            json!({"action": "adjust", "amount": 0}),
            "amount",
            "must change",
        ),
        (json!({"action": "consume"}), "amount", "give the amount"),
        (json!({"action": "eat", "amount": 1}), "action", "consume"),
        (
            json!({"action": "consume", "amount": true}),
            "amount",
            "expected a number",
        ),
        (
            json!({"action": "consume", "amount": 1, "experiment": 999_999}),
            "experiment",
            "does not exist",
        ),
    ] {
        let (status, description) =
            status_and_description(api.post(&stock_path, body.clone()).await).await;
        assert_eq!(status, 422, "{body}: {description}");
        assert!(
            description.starts_with(&format!("{field}:")) && description.contains(words),
            "{body}: {description}"
        );
    }
    let (status, description) =
        status_and_description(api.patch(&stock_path, json!({"threshold": -2})).await).await;
    assert_eq!(status, 422, "{description}");

    let stock = stock_of(&api, item).await;
    assert_eq!(stock["quantity"], json!(0.0));
    assert_eq!(stock["events"], json!([]));
}

#[tokio::test]
async fn readers_see_stock_but_only_writers_record_it_and_a_lock_stops_them() {
    let app = TestApp::spawn().await;
    let (admin, alice, bob) = lab(&app).await;
    let carol = app.user("carol@lab.fr", "Botany", false).await;
    let alice_api = app.api(&app.api_key(&alice, true).await);
    let item = alice_api
        .create("/items", json!({"title": "Taq polymerase"}))
        .await;
    let stock_path = format!("/items/{item}/stock");
    alice_api
        .patch(&stock_path, json!({"unit": "units", "threshold": 1}))
        .await;
    alice_api
        .post(&stock_path, json!({"action": "adjust", "amount": 3}))
        .await;

    // Bob reads (team read) but may not write; a read-only key may not write either.
    let bob_api = app.api(&app.api_key(&bob, true).await);
    assert_eq!(stock_of(&bob_api, item).await["quantity"], json!(3.0));
    let (status, _) = status_and_description(
        bob_api
            .post(&stock_path, json!({"action": "consume", "amount": 1}))
            .await,
    )
    .await;
    assert_eq!(status, 403);
    let read_only = app.api(&app.api_key(&alice, false).await);
    let (status, _) = status_and_description(
        read_only
            .post(&stock_path, json!({"action": "consume", "amount": 1}))
            .await,
    )
    .await;
    assert_eq!(status, 403);
    // Carol, of another team, cannot even see it.
    let carol_api = app.api(&app.api_key(&carol, true).await);
    assert_eq!(carol_api.get(&stock_path).await.status(), 404);
    assert_eq!(
        carol_api
            .post(&stock_path, json!({"action": "consume", "amount": 1}))
            .await
            .status(),
        404
    );

    // Locked by the team admin: Alice is kept out too.
    let admin_api = app.api(&app.api_key(&admin, true).await);
    assert_eq!(
        admin_api
            .patch(&format!("/items/{item}"), json!({"action": "lock"}))
            .await
            .status(),
        200
    );
    let (status, description) = status_and_description(
        alice_api
            .post(&stock_path, json!({"action": "consume", "amount": 1}))
            .await,
    )
    .await;
    assert!(status == 403 || status == 409, "{status} {description}");
    assert_eq!(stock_of(&alice_api, item).await["quantity"], json!(3.0));
}

#[tokio::test]
async fn the_resource_page_tracks_stock_and_low_stock_shows_in_lists_and_to_reorder() {
    let app = TestApp::spawn().await;
    let (_admin, alice, bob) = lab(&app).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let item = api
        .create("/items", json!({"title": "Ethanol absolu"}))
        .await;
    let other = api
        .create("/items", json!({"title": "Gants nitrile"}))
        .await;
    let page_path = format!("/resources/{item}");
    let browser = app.browser(&alice).await;

    let html = browser.page(&page_path).await;
    assert!(html.contains("id=\"stock\""), "{html}");
    assert!(html.contains("id=\"stock-settings\""));
    assert!(!html.contains("id=\"stock-record\""));

    // Forms need the CSRF token.
    let response = browser
        .post_form_without_csrf(
            &format!("{page_path}/stock/settings"),
            &[("unit", "mL"), ("threshold", "2"), ("initial", "5")],
        )
        .await;
    assert_eq!(response.status(), 403);

    let response = browser
        .post_form(
            &format!("{page_path}/stock/settings"),
            &[("unit", "mL"), ("threshold", "2"), ("initial", "5")],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        cahier_testkit::location(&response),
        format!("{page_path}#stock")
    );
    let html = browser.page(&page_path).await;
    assert!(html.contains("5 mL"), "{html}");
    assert!(html.contains("id=\"stock-record\""));

    // French decimal comma, with a note.
    let response = browser
        .post_form(
            &format!("{page_path}/stock"),
            &[
                ("action", "consume"),
                ("amount", "2,5"),
                ("note", "TP lundi"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let html = browser.page(&page_path).await;
    assert!(html.contains(">2,5 mL<"), "{html}");
    assert!(html.contains("TP lundi"));
    assert!(!html.contains("id=\"stock-low\""));

    // A bad amount comes back with the typed values and the error, nothing recorded.
    let response = browser
        .post_form(
            &format!("{page_path}/stock"),
            &[
                ("action", "consume"),
                ("amount", "beaucoup"),
                ("note", "à garder"),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("id=\"stock-error\""), "{html}");
    assert!(html.contains("value=\"beaucoup\""));
    assert!(html.contains("value=\"à garder\"") || html.contains("value=\"&#224; garder\""));
    assert!(html.contains(">2,5 mL<"));

    // Down to the threshold: low in the list and on the team's page; the other is not.
    browser
        .post_form(
            &format!("{page_path}/stock"),
            &[("action", "consume"), ("amount", "1")],
        )
        .await;
    let html = browser.page(&page_path).await;
    assert!(html.contains("id=\"stock-low\""), "{html}");
    let list = browser.page("/resources").await;
    assert!(list.contains("low-stock"), "{list}");
    assert!(list.contains("href=\"/to-reorder\""));
    let reorder = browser.page("/to-reorder").await;
    assert!(reorder.contains(&format!("/resources/{item}")), "{reorder}");
    assert!(!reorder.contains(&format!("/resources/{other}\"")));
    let dashboard = browser.page("/").await;
    assert!(dashboard.contains("id=\"low-stock\""), "{dashboard}");
    assert!(dashboard.contains(&format!("/resources/{item}#stock")));

    // Below zero: shown, flagged, never clipped.
    browser
        .post_form(
            &format!("{page_path}/stock"),
            &[("action", "consume"), ("amount", "4")],
        )
        .await;
    let html = browser.page(&page_path).await;
    assert!(html.contains("id=\"stock-negative\""), "{html}");
    assert!(html.contains(">-2,5 mL<"));
    let reorder = browser.page("/to-reorder").await;
    assert!(reorder.contains("-2,5 mL"), "{reorder}");

    // Bob reads the stock but gets no form, and his post is refused.
    let bob_browser = app.browser(&bob).await;
    let html = bob_browser.page(&page_path).await;
    assert!(html.contains("id=\"stock-quantity\""));
    assert!(!html.contains("id=\"stock-record\""));
    let response = bob_browser
        .post_form(
            &format!("{page_path}/stock"),
            &[("action", "restock"), ("amount", "10")],
        )
        .await;
    assert_eq!(response.status(), 403);
    let html = bob_browser.page(&format!("{page_path}/stock")).await;
    assert!(html.contains(">-2,5 mL<"), "{html}");
}

#[tokio::test]
async fn consumption_on_a_replica_and_on_the_server_both_count_after_sync() {
    let app = TestApp::spawn().await;
    let (_admin, alice, _bob) = lab(&app).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let item = api.create("/items", json!({"title": "Formol 4 %"})).await;
    let stock_path = format!("/items/{item}/stock");
    api.patch(&stock_path, json!({"unit": "mL", "threshold": 10}))
        .await;
    api.post(&stock_path, json!({"action": "adjust", "amount": 100}))
        .await;

    let (replica, _) = super::sync_blobs::replica(&app, &alice).await;
    let subject = replica.store.subject(alice.id).await.unwrap();
    let copied = replica.store.stock(&subject, item).await.unwrap().unwrap();
    assert_eq!(copied.quantity_milli, 100_000);

    // Offline on the replica, and meanwhile on the server.
    replica
        .store
        .record_stock(
            &subject,
            item,
            NewStockEvent {
                kind: StockKind::Consume,
                amount_milli: 30_000,
                unit: Some("mL".into()),
                experiment: None,
                note: "terrain".into(),
            },
        )
        .await
        .unwrap();
    api.post(&stock_path, json!({"action": "consume", "amount": 65}))
        .await;

    replica.sync().await;
    replica.sync().await;
    let server = stock_of(&api, item).await;
    assert_eq!(server["quantity"], json!(5.0));
    assert_eq!(server["is_low"], true);
    assert_eq!(server["events"].as_array().unwrap().len(), 3);
    assert!(
        server["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["note"] == "terrain")
    );
    let local = replica.store.stock(&subject, item).await.unwrap().unwrap();
    assert_eq!(local.quantity_milli, 5_000);
    assert_eq!(
        replica
            .store
            .stock_events(&subject, item)
            .await
            .unwrap()
            .len(),
        3
    );
}
