//! Stock in the browser: a user starts tracking a resource's stock from its page, records a
//! consumption with a French decimal comma, sees the quantity, the history and the low-stock
//! warning, and finds the resource on the team's "to reorder" page; the pages fit the window.

use crate::harness::Ui;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_tracks_stock_from_the_resource_page_and_finds_it_to_reorder() {
    let ui = Ui::launch().await;
    let admin = ui.app.user("chef@lab.fr", "Ecology", true).await;
    let ada = ui.app.user("ada@lab.fr", "Ecology", false).await;
    ui.app
        .api(&ui.app.api_key(&admin, true).await)
        .create(
            "/teams/current/resources_categories",
            json!({"title": "Réactifs", "is_default": true}),
        )
        .await;
    let api = ui.app.api(&ui.app.api_key(&ada, true).await);
    let resource = api.create("/items", json!({"title": "Éthanol 96 %"})).await;

    ui.sign_in(&ada).await;
    ui.goto(&format!("/resources/{resource}")).await;
    ui.type_into("#stock-unit", "mL").await;
    ui.type_into("#stock-threshold", "1").await;
    ui.type_into("#stock-initial", "4").await;
    ui.click("#stock-settings-submit").await;
    ui.wait_js(
        "the consumption form",
        "document.getElementById('stock-record') !== null",
    )
    .await;
    let quantity = ui.find("#stock-quantity").await.text().await.unwrap();
    assert_eq!(quantity, "4 mL");

    ui.type_into("#stock-amount", "3,5").await;
    ui.type_into("#stock-note", "extraction ADN").await;
    ui.click("#stock-submit").await;
    ui.wait_js(
        "the low-stock warning",
        "document.getElementById('stock-low') !== null",
    )
    .await;
    let quantity = ui.find("#stock-quantity").await.text().await.unwrap();
    assert_eq!(quantity, "0,5 mL");
    let history = ui.find("#stock-events").await.text().await.unwrap();
    assert!(history.contains("extraction ADN"), "{history}");
    assert!(history.contains("-3,5 mL"), "{history}");
    crate::no_sideways_scrolling(&ui).await;
    ui.js("document.getElementById('stock').scrollIntoView();", vec![])
        .await;
    ui.screenshot("resource-stock-panel").await;

    ui.goto("/resources").await;
    ui.click("#to-reorder-link").await;
    ui.wait_path("^/to-reorder$").await;
    let table = ui.find("#reorder").await.text().await.unwrap();
    assert!(table.contains("Éthanol 96 %"), "{table}");
    crate::no_sideways_scrolling(&ui).await;
    ui.screenshot("to-reorder").await;
    ui.finish().await;
}
