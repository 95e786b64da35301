//! A team's tags on the team page: a team admin renames a tag on every entry that carries it,
//! declares a new one, and removes one after confirming; each entry's tags follow.

use crate::harness::Ui;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_admin_renames_declares_and_removes_tags_from_the_team_page() {
    let ui = Ui::launch().await;
    let admin = ui.app.user("chef@lab.fr", "Ecology", true).await;
    let ada = ui.app.user("ada@lab.fr", "Ecology", false).await;
    let api = ui.app.api(&ui.app.api_key(&ada, true).await);
    let first = api
        .create(
            "/experiments",
            json!({"title": "Soil cores", "tags": ["soil", "water"]}),
        )
        .await;
    let second = api
        .create(
            "/experiments",
            json!({"title": "Soil pH", "tags": ["soil"]}),
        )
        .await;
    let tags_of = |id: i64| {
        let api = &api;
        async move {
            let mut tags: Vec<String> = api.json(&format!("/experiments/{id}")).await["tags"]
                .as_str()
                .unwrap_or_default()
                .split('|')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
            tags.sort();
            tags
        }
    };

    ui.sign_in(&admin).await;
    ui.goto("/team").await;
    let soil = ui
        .wait_js(
            "the soil tag on the team page, carried by two entries",
            "(() => { const row = [...document.querySelectorAll('.team-tag')].find(r => r.querySelector('.tag').textContent === 'soil'); \
               return row && row.textContent.includes('2') ? row.querySelector('input[name=new_text]').id : null; })()",
        )
        .await;
    let soil = soil.as_str().unwrap().to_owned();
    ui.js(
        "document.getElementById(arguments[0]).value = 'sediment';",
        vec![json!(soil)],
    )
    .await;
    ui.click(&format!("#{soil} ~ button[type=submit]")).await;
    ui.wait_js(
        "the renamed tag on the team page",
        "[...document.querySelectorAll('.team-tag .tag')].some(t => t.textContent === 'sediment')",
    )
    .await;
    assert_eq!(tags_of(first).await, ["sediment", "water"]);
    assert_eq!(tags_of(second).await, ["sediment"]);
    let history = api.json(&format!("/experiments/{first}/revisions")).await;
    assert!(
        history.to_string().contains("tag renamed"),
        "the rename is in the entry's history: {history}"
    );

    // Declared ahead of use: listed with no entry.
    ui.type_into("#tag-new", "field-2026").await;
    ui.click("form[action='/team/tags'] button[type=submit]")
        .await;
    ui.wait_js(
        "the declared tag on the team page",
        "[...document.querySelectorAll('.team-tag .tag')].some(t => t.textContent === 'field-2026')",
    )
    .await;

    // Removed from every entry, after the confirmation.
    ui.js("window.confirm = () => true;", vec![]).await;
    ui.js(
        "[...document.querySelectorAll('.team-tag')].find(r => r.querySelector('.tag').textContent === 'water') \
           .querySelector(\"form[action='/team/tags/remove'] button\").click();",
        vec![],
    )
    .await;
    ui.wait_js(
        "the removed tag gone from the team page",
        "document.querySelector('#tags-title') !== null && ![...document.querySelectorAll('.team-tag .tag')].some(t => t.textContent === 'water')",
    )
    .await;
    assert_eq!(tags_of(first).await, ["sediment"]);
    crate::no_sideways_scrolling(&ui).await;
    ui.js(
        "document.getElementById('tags-title').scrollIntoView();",
        vec![],
    )
    .await;
    ui.screenshot("team-tags").await;
    ui.finish().await;
}
