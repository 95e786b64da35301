//! Templates and metadata fields in the browser: a new experiment starts from the team's
//! default template, its required field is refused while empty (the message sits next to the
//! field and what was typed elsewhere stays), and once filled the fields are saved.

use crate::harness::Ui;
use cahier_core::EntityKind;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiment_from_a_template_needs_its_required_field_before_saving() {
    let ui = Ui::launch().await;
    let admin = ui.app.user("chef@lab.fr", "Ecology", true).await;
    let ada = ui.app.user("ada@lab.fr", "Ecology", false).await;
    let admin_api = ui.app.api(&ui.app.api_key(&admin, true).await);
    let template = admin_api
        .create(
            "/experiments_templates",
            json!({"title": "Soil sampling", "body": "## Method", "metadata": {"extra_fields": {
                "Operator": {"type": "text", "value": "", "required": true, "position": 1},
                "Temperature": {"type": "number", "value": "20", "unit": "°C", "units": ["°C", "K"], "position": 2}
            }}}),
        )
        .await;
    ui.app
        .store
        .set_default_template(
            &ui.app.subject(&admin).await,
            admin.team_id,
            EntityKind::ExperimentTemplate,
            Some(template),
        )
        .await
        .expect("default template");

    ui.sign_in(&ada).await;
    ui.goto("/experiments").await;
    let chosen = ui
        .js(
            "return document.getElementById('new-template').value;",
            vec![],
        )
        .await;
    assert_eq!(
        chosen,
        json!(template.to_string()),
        "the team default is preselected"
    );
    ui.click("#new-entity").await;
    let page = ui.wait_path(r"^/experiments/\d+$").await;
    let id: i64 = page.rsplit('/').next().unwrap().parse().unwrap();
    assert_eq!(
        ui.find("#from-template a")
            .await
            .attr("href")
            .await
            .unwrap(),
        Some(format!("/templates/{template}"))
    );
    assert_eq!(
        ui.find("#title").await.prop("value").await.unwrap(),
        Some("Soil sampling".into())
    );

    // The required field left empty: refused, with the message next to it.
    let operator = "[data-field='Operator'] input";
    let temperature = "[data-field='Temperature'] input";
    ui.find(temperature).await.clear().await.expect("clear");
    ui.type_into(temperature, "25").await;
    ui.click("#fields-save").await;
    ui.wait_js(
        "the error next to the required field",
        "document.querySelector(\"[data-field='Operator'] .field-error\") !== null",
    )
    .await;
    let error = ui
        .find("[data-field='Operator'] .field-error")
        .await
        .text()
        .await
        .unwrap();
    assert!(error.contains("obligatoire"), "{error}");
    assert_eq!(
        ui.find(operator).await.attr("aria-invalid").await.unwrap(),
        Some("true".into())
    );
    assert_eq!(
        ui.find(temperature).await.prop("value").await.unwrap(),
        Some("25".into()),
        "what was typed is kept"
    );
    ui.screenshot("fields-required-error").await;

    // Filled in: saved.
    ui.type_into(operator, "Ada").await;
    ui.click("#fields-save").await;
    ui.wait_js(
        "the saved notice",
        "location.search.includes('saved=fields') && document.readyState === 'complete' && document.querySelector('.notice') !== null",
    )
    .await;
    assert!(
        ui.js(
            "return document.querySelector('.field-error') === null;",
            vec![]
        )
        .await
            == Value::Bool(true)
    );
    let api = ui.app.api(&ui.app.api_key(&ada, true).await);
    let saved = api.json(&format!("/experiments/{id}")).await;
    let metadata: Value = serde_json::from_str(saved["metadata"].as_str().unwrap()).unwrap();
    assert_eq!(metadata["extra_fields"]["Operator"]["value"], "Ada");
    assert_eq!(metadata["extra_fields"]["Temperature"]["value"], "25");
    // The template's page, as its team sees it: fields with their defaults, the way to use it.
    ui.goto(&format!("/templates/{template}")).await;
    ui.find("#use-template").await;
    crate::no_sideways_scrolling(&ui).await;
    ui.js(
        "document.getElementById('fields').scrollIntoView();",
        vec![],
    )
    .await;
    ui.screenshot("template-page").await;
    ui.finish().await;
}
