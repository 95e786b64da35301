//! Resources in the browser: a team admin creates a resource category on the team page, a user
//! makes a resource in it from the resources list, links it from an experiment, and sees the
//! link on both pages ("Used in" on the resource).

use crate::harness::Ui;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_in_a_new_category_is_linked_from_an_experiment_and_shown_on_both_pages() {
    let ui = Ui::launch().await;
    let admin = ui.app.user("chef@lab.fr", "Ecology", true).await;
    let ada = ui.app.user("ada@lab.fr", "Ecology", false).await;

    // The team admin creates the category on the team page.
    ui.sign_in(&admin).await;
    ui.goto("/team").await;
    ui.type_into("#resource_category-new-title", "Microscopes")
        .await;
    ui.click("form[action='/team/terms/resource_category'] button[type=submit]")
        .await;
    ui.wait_js(
        "the new category on the team page",
        "document.querySelector(\"input[id^='resource_category-'][value='Microscopes']\") !== null",
    )
    .await;
    crate::no_sideways_scrolling(&ui).await;
    ui.js(
        "document.getElementById('resource_category-title').scrollIntoView();",
        vec![],
    )
    .await;
    ui.screenshot("team-resource-categories").await;
    ui.click("form[action='/logout'] button[type=submit]").await;
    ui.wait_path("^/login").await;

    // A user makes a resource in it from the list page.
    let api = ui.app.api(&ui.app.api_key(&ada, true).await);
    let category = api.json("/teams/current/resources_categories").await[0]["id"]
        .as_i64()
        .unwrap();
    ui.sign_in(&ada).await;
    ui.click("nav a[href='/resources']").await;
    ui.wait_path("^/resources$").await;
    crate::no_sideways_scrolling(&ui).await;
    ui.js(
        "document.getElementById('new-category').value = arguments[0];",
        vec![json!(category.to_string())],
    )
    .await;
    ui.click("#new-entity").await;
    let page = ui.wait_path(r"^/resources/\d+$").await;
    let resource: i64 = page.rsplit('/').next().unwrap().parse().unwrap();
    let item = api.json(&format!("/items/{resource}")).await;
    assert_eq!(item["category_title"], "Microscopes");
    api.patch(
        &format!("/items/{resource}"),
        json!({"title": "Confocal microscope"}),
    )
    .await;

    // She links it from an experiment.
    let experiment = api
        .create("/experiments", json!({"title": "Root imaging"}))
        .await;
    ui.goto(&format!("/experiments/{experiment}")).await;
    ui.type_into("#link-target", &resource.to_string()).await;
    ui.click("form[action$='/links'] button[type=submit]").await;
    ui.wait_js(
        "the resource in the experiment's links",
        "document.querySelector(\"#links a[href^='/resources/']\") !== null",
    )
    .await;
    let text = ui.find("#links").await.text().await.unwrap();
    assert!(text.contains("Confocal microscope"), "{text}");

    // The resource page lists the experiment under "Used in".
    ui.goto(&format!("/resources/{resource}")).await;
    let used_in = ui.find("#backlinks-title").await.text().await.unwrap();
    assert!(
        used_in.contains("Utilisée dans") || used_in.contains("Used in"),
        "{used_in}"
    );
    let backlinks = ui.find("#backlinks").await.text().await.unwrap();
    assert!(backlinks.contains("Root imaging"), "{backlinks}");
    ui.screenshot("resource-used-in").await;
    ui.finish().await;
}
