//! Resources over real HTTP: resource categories (team admins manage them), items and
//! items_types through API v2 (the experiments' code path), links both ways with the reader's
//! access applied, and the `/resources` list filtered by category.

use cahier_testkit::{Api, TestApp, location};
use serde_json::{Value, json};

async fn refused(response: reqwest::Response, status: u16) -> String {
    let got = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "{body}");
    body["description"].as_str().unwrap_or_default().to_owned()
}

async fn create_at(api: &Api, path: &str, body: Value) -> (i64, String) {
    let response = api.post(path, body).await;
    assert_eq!(response.status(), 201);
    let at = location(&response);
    let id = at.rsplit('/').next().unwrap().parse().unwrap();
    (id, at)
}

#[tokio::test]
async fn team_admins_manage_resource_categories_and_users_only_read_them() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let carol = app.user("carol@lab.fr", "Botany", true).await;
    let admin_api = app.api(&app.api_key(&admin, true).await);
    let bob_api = app.api(&app.api_key(&bob, true).await);
    let carol_api = app.api(&app.api_key(&carol, true).await);

    // eLabFTW's example 11 sends `title`; the Location names resources_categories.
    let (category, at) = create_at(
        &admin_api,
        "/teams/current/resources_categories",
        json!({"title": "Antibodies", "color": "#FF0000"}),
    )
    .await;
    assert_eq!(
        at,
        format!(
            "/api/v2/teams/{}/resources_categories/{category}",
            admin.team_id
        )
    );
    let (old_name, _) = create_at(
        &admin_api,
        "/teams/current/items_categories",
        json!({"name": "Plasmids"}),
    )
    .await;

    let list = bob_api.json("/teams/current/resources_categories").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["title"], "Antibodies");
    assert_eq!(list[0]["color"], "ff0000");
    assert_eq!(
        bob_api.json("/teams/current/experiments_categories").await,
        json!([]),
        "experiment categories are another list"
    );

    // Users read them but cannot change them.
    let description = refused(
        bob_api
            .post(
                "/teams/current/resources_categories",
                json!({"title": "Mine"}),
            )
            .await,
        403,
    )
    .await;
    assert!(description.contains("admins"), "{description}");
    refused(
        bob_api
            .patch(
                &format!("/teams/current/resources_categories/{category}"),
                json!({"title": "Renamed"}),
            )
            .await,
        403,
    )
    .await;
    refused(
        bob_api
            .delete(&format!("/teams/current/resources_categories/{category}"))
            .await,
        403,
    )
    .await;
    // Another team's admin does not see or touch them.
    assert_eq!(
        carol_api.json("/teams/current/resources_categories").await,
        json!([])
    );
    refused(
        carol_api
            .patch(
                &format!("/teams/{}/resources_categories/{category}", admin.team_id),
                json!({"title": "Mine"}),
            )
            .await,
        404,
    )
    .await;
    // Bad input.
    let description = refused(
        admin_api
            .post(
                "/teams/current/resources_categories",
                json!({"title": "Bad", "color": "blue"}),
            )
            .await,
        422,
    )
    .await;
    assert!(description.contains("hexadecimal"), "{description}");

    let patched = admin_api
        .patch(
            &format!("/teams/current/resources_categories/{category}"),
            json!({"title": "Antibodies (primary)", "color": "00aa00", "is_default": 1}),
        )
        .await;
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["title"], "Antibodies (primary)");
    assert_eq!(patched["is_default"], 1);

    assert_eq!(
        admin_api
            .delete(&format!("/teams/current/resources_categories/{old_name}"))
            .await
            .status(),
        204
    );
    assert_eq!(
        bob_api
            .json("/teams/current/resources_categories")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn items_are_created_read_listed_by_category_changed_and_deleted_through_api_v2() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let admin_api = app.api(&app.api_key(&admin, true).await);
    let api = app.api(&app.api_key(&bob, true).await);

    // Without categories, a resource cannot be filed: 422 saying what to do.
    let description = refused(api.post("/items", json!({"title": "Pipette"})).await, 422).await;
    assert!(description.contains("category"), "{description}");

    let antibodies = admin_api
        .create(
            "/teams/current/resources_categories",
            json!({"title": "Antibodies", "color": "aa0000"}),
        )
        .await;
    let instruments = admin_api
        .create(
            "/teams/current/resources_categories",
            json!({"title": "Instruments", "color": "0000aa", "is_default": true}),
        )
        .await;
    let experiment_category = admin_api
        .create(
            "/teams/current/experiments_categories",
            json!({"title": "Field work"}),
        )
        .await;

    // Unknown categories, and experiment categories, are refused.
    for bad in [json!(999_999), json!(experiment_category)] {
        let description = refused(
            api.post("/items", json!({"title": "Pipette", "category": bad}))
                .await,
            422,
        )
        .await;
        assert!(description.contains("category"), "{description}");
    }

    // Without a category, the team's default one.
    let pipette = api
        .create(
            "/items",
            json!({"title": "Pipette P200", "body": "Gilson", "tags": ["lab"]}),
        )
        .await;
    let item = api.json(&format!("/items/{pipette}")).await;
    assert_eq!(item["category"], instruments);
    assert_eq!(item["category_title"], "Instruments");
    assert_eq!(item["category_color"], "0000aa");
    assert_eq!(item["type"], "items");
    assert_eq!(item["tags"], "lab");

    let anti = api
        .create(
            "/items",
            json!({"title": "Anti-GFP", "category": antibodies, "metadata": {"extra_fields": {"Dilution": {"type": "number", "value": "1000"}}}}),
        )
        .await;
    assert_eq!(
        api.json(&format!("/items/{anti}")).await["category_title"],
        "Antibodies"
    );

    // Lists: by category (`cat` and `category`), by words; experiments are elsewhere.
    let experiment = api
        .create("/experiments", json!({"title": "Pipette calibration"}))
        .await;
    let ids = |list: Value| -> Vec<i64> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(api.json("/items").await).len(), 2);
    assert_eq!(
        ids(api.json(&format!("/items?cat={antibodies}")).await),
        vec![anti]
    );
    assert_eq!(
        ids(api.json(&format!("/items?category={instruments}")).await),
        vec![pipette]
    );
    assert_eq!(ids(api.json("/items?q=pipette").await), vec![pipette]);
    assert_eq!(
        ids(api.json("/items?q=field:Dilution>500").await),
        vec![anti]
    );
    refused(api.get(&format!("/items/{experiment}")).await, 404).await;
    refused(api.get(&format!("/experiments/{pipette}")).await, 404).await;

    // Changes, and a category cannot be removed.
    let patched = api
        .patch(
            &format!("/items/{pipette}"),
            json!({"title": "Pipette P200 (2)", "category": antibodies}),
        )
        .await;
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["title"], "Pipette P200 (2)");
    assert_eq!(patched["category_title"], "Antibodies");
    let description = refused(
        api.patch(&format!("/items/{pipette}"), json!({"category": null}))
            .await,
        422,
    )
    .await;
    assert!(description.contains("category"), "{description}");
    let description = refused(
        api.patch(
            &format!("/items/{pipette}"),
            json!({"category": experiment_category}),
        )
        .await,
        422,
    )
    .await;
    assert!(description.contains("category"), "{description}");

    // Steps, comments and history work as on experiments.
    api.create(
        &format!("/items/{pipette}/steps"),
        json!({"body": "Calibrate"}),
    )
    .await;
    api.create(
        &format!("/items/{pipette}/comments"),
        json!({"comment": "Leaks a little"}),
    )
    .await;
    let full = api.json(&format!("/items/{pipette}")).await;
    assert_eq!(full["steps"][0]["body"], "Calibrate");
    assert_eq!(full["comments"][0]["comment"], "Leaks a little");
    assert!(
        api.json(&format!("/items/{pipette}/revisions"))
            .await
            .as_array()
            .unwrap()
            .len()
            >= 3
    );

    // Files attach to resources as to experiments.
    let response = api
        .client
        .post(format!("{}/items/{pipette}/uploads", api.base))
        .multipart(crate::uploads::form(
            "manual.pdf",
            b"%PDF-1.4 manual".to_vec(),
            Some("user manual"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let uploads = api.json(&format!("/items/{pipette}/uploads")).await;
    assert_eq!(uploads[0]["real_name"], "manual.pdf");
    assert_eq!(uploads[0]["comment"], "user manual");

    // A user of another team cannot read them.
    let carol = app.user("carol@lab.fr", "Botany", false).await;
    let carol_api = app.api(&app.api_key(&carol, true).await);
    refused(
        carol_api.get(&format!("/items/{pipette}")).await,
        if item["canread_base"].as_i64().unwrap() >= 40 {
            200
        } else {
            404
        },
    )
    .await;

    assert_eq!(api.delete(&format!("/items/{pipette}")).await.status(), 204);
    assert_eq!(ids(api.json("/items").await), vec![anti]);
    app.stop().await;
}

#[tokio::test]
async fn items_types_are_resource_templates_that_make_items() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    let admin_api = app.api(&app.api_key(&admin, true).await);
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&bob, true).await);
    let antibodies = admin_api
        .create(
            "/teams/current/resources_categories",
            json!({"title": "Antibodies"}),
        )
        .await;

    let template = admin_api
        .create(
            "/items_types",
            json!({"title": "Antibody", "body": "Host:", "category": antibodies,
                   "metadata": {"extra_fields": {"Host": {"type": "select", "value": "", "options": ["mouse", "rabbit"]}}}}),
        )
        .await;
    let read = api.json(&format!("/items_types/{template}")).await;
    assert_eq!(read["title"], "Antibody");
    assert_eq!(read["canread_base"], 30, "team admins share templates");
    assert_eq!(api.json("/items_types").await.as_array().unwrap().len(), 1);
    assert_eq!(
        api.json("/experiments_templates").await,
        json!([]),
        "resource templates are not experiment templates"
    );
    refused(
        api.patch(
            &format!("/items_types/{template}"),
            json!({"title": "Mine"}),
        )
        .await,
        403,
    )
    .await;

    let item = api
        .create("/items", json!({"template": template, "title": "Anti-GFP"}))
        .await;
    let item = api.json(&format!("/items/{item}")).await;
    assert_eq!(item["title"], "Anti-GFP");
    assert_eq!(item["body"], "Host:");
    assert_eq!(item["category"], antibodies);
    assert_eq!(item["created_from_id"], template);
    assert_eq!(item["created_from_type"], 4);

    // An experiment template does not make items, nor an items_type experiments.
    let experiment_template = admin_api
        .create("/experiments_templates", json!({"title": "Protocol"}))
        .await;
    refused(
        api.post("/items", json!({"template": experiment_template}))
            .await,
        404,
    )
    .await;
    refused(
        api.post("/experiments", json!({"template": template}))
            .await,
        404,
    )
    .await;

    let patched = admin_api
        .patch(
            &format!("/items_types/{template}"),
            json!({"title": "Antibody v2"}),
        )
        .await;
    assert_eq!(patched.status(), 200);
    assert_eq!(
        admin_api
            .delete(&format!("/items_types/{template}"))
            .await
            .status(),
        204
    );
    assert_eq!(api.json("/items_types").await, json!([]));
    app.stop().await;
}

#[tokio::test]
async fn links_go_both_ways_and_only_show_what_the_reader_may_read() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let admin_api = app.api(&app.api_key(&admin, true).await);
    let alice_api = app.api(&app.api_key(&alice, true).await);
    let bob_api = app.api(&app.api_key(&bob, true).await);
    admin_api
        .create(
            "/teams/current/resources_categories",
            json!({"title": "Instruments", "is_default": 1}),
        )
        .await;

    let centrifuge = alice_api
        .create(
            "/items",
            json!({"title": "Centrifuge", "canread_base": 30, "canwrite_base": 30}),
        )
        .await;
    let rotor = alice_api
        .create("/items", json!({"title": "Rotor", "canread_base": 30}))
        .await;
    let secret = alice_api
        .create(
            "/experiments",
            json!({"title": "Secret spin", "canread_base": 10}),
        )
        .await;
    let open = bob_api
        .create(
            "/experiments",
            json!({"title": "Open spin", "canread_base": 30}),
        )
        .await;

    // experiment → resource, resource → resource, resource → experiment.
    let (_, at) = create_at(
        &alice_api,
        &format!("/experiments/{secret}/items_links/{centrifuge}"),
        json!({}),
    )
    .await;
    assert_eq!(
        at,
        format!("/api/v2/experiments/{secret}/items_links/{centrifuge}")
    );
    bob_api
        .create(
            &format!("/experiments/{open}/items_links/{centrifuge}"),
            json!({}),
        )
        .await;
    alice_api
        .create(
            &format!("/items/{centrifuge}/items_links/{rotor}"),
            json!({}),
        )
        .await;
    alice_api
        .create(
            &format!("/items/{rotor}/experiments_links/{open}"),
            json!({}),
        )
        .await;
    // Wrong kinds and self-links are refused.
    refused(
        alice_api
            .post(
                &format!("/experiments/{secret}/items_links/{open}"),
                json!({}),
            )
            .await,
        404,
    )
    .await;
    refused(
        alice_api
            .post(&format!("/items/{rotor}/items_links/{rotor}"), json!({}))
            .await,
        422,
    )
    .await;

    let linked = alice_api
        .json(&format!("/experiments/{secret}/items_links"))
        .await;
    assert_eq!(linked[0]["entityid"], centrifuge);
    assert_eq!(linked[0]["type"], "items");
    assert_eq!(
        alice_api
            .json(&format!("/experiments/{secret}/experiments_links"))
            .await,
        json!([])
    );
    assert_eq!(
        alice_api
            .json(&format!("/items/{rotor}/experiments_links"))
            .await[0]["entityid"],
        open
    );

    // Alice sees both experiments that use the centrifuge; Bob only the one he may read.
    let titles = |v: &Value, key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["title"].as_str().unwrap().to_owned())
            .collect()
    };
    let seen_by_alice = alice_api.json(&format!("/items/{centrifuge}")).await;
    assert_eq!(
        titles(&seen_by_alice, "related_experiments_links"),
        vec!["Open spin", "Secret spin"]
    );
    assert_eq!(titles(&seen_by_alice, "items_links"), vec!["Rotor"]);
    let seen_by_bob = bob_api.json(&format!("/items/{centrifuge}")).await;
    assert_eq!(
        titles(&seen_by_bob, "related_experiments_links"),
        vec!["Open spin"]
    );
    let rotor_json = bob_api.json(&format!("/items/{rotor}")).await;
    assert_eq!(
        titles(&rotor_json, "related_items_links"),
        vec!["Centrifuge"]
    );
    assert_eq!(titles(&rotor_json, "experiments_links"), vec!["Open spin"]);

    // The pages show the same: "Used in" on the resource, the resource on the experiment.
    let alice_browser = app.browser(&alice).await;
    let bob_browser = app.browser(&bob).await;
    let page = alice_browser
        .page(&format!("/resources/{centrifuge}"))
        .await;
    assert!(page.contains("Used in") || page.contains("Utilisée dans"));
    assert!(page.contains("Secret spin"));
    assert!(page.contains(&format!("/experiments/{open}")));
    let page = bob_browser.page(&format!("/resources/{centrifuge}")).await;
    assert!(page.contains("Open spin"));
    assert!(
        !page.contains("Secret spin") && !page.contains(&format!("/experiments/{secret}\"")),
        "an unreadable experiment is neither shown nor named"
    );
    let page = bob_browser.page(&format!("/experiments/{open}")).await;
    assert!(page.contains(&format!("/resources/{centrifuge}")));
    assert!(page.contains("Centrifuge"));

    // Unlinking.
    assert_eq!(
        alice_api
            .delete(&format!("/experiments/{secret}/items_links/{centrifuge}"))
            .await
            .status(),
        204
    );
    let seen_by_alice = alice_api.json(&format!("/items/{centrifuge}")).await;
    assert_eq!(
        titles(&seen_by_alice, "related_experiments_links"),
        vec!["Open spin"]
    );
    app.stop().await;
}

#[tokio::test]
async fn the_resources_page_lists_filters_by_category_and_makes_resources_in_a_category() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let admin_browser = app.browser(&admin).await;
    let browser = app.browser(&bob).await;

    // The team admin page manages resource categories.
    let team_page = admin_browser.page("/team").await;
    assert!(team_page.contains("/team/terms/resource_category"));
    let response = admin_browser
        .post_form(
            "/team/terms/resource_category",
            &[("title", "Antibodies"), ("color", "#aa0000")],
        )
        .await;
    assert_eq!(response.status(), 303);
    admin_browser
        .post_form(
            "/team/terms/resource_category",
            &[("title", "Instruments"), ("color", "#0000aa")],
        )
        .await;
    let api = app.api(&app.api_key(&bob, true).await);
    let categories = api.json("/teams/current/resources_categories").await;
    let antibodies = categories[0]["id"].as_i64().unwrap();
    let instruments = categories[1]["id"].as_i64().unwrap();
    assert_eq!(categories[0]["title"], "Antibodies");
    assert_eq!(
        api.json("/teams/current/experiments_categories").await,
        json!([])
    );

    // Bob makes one in a category from the list page.
    let list = browser.page("/resources").await;
    assert!(list.contains("Ressources") || list.contains("Resources"));
    assert!(list.contains("name=\"category\""));
    let response = browser
        .post_form(
            "/resources",
            &[
                ("template", "blank"),
                ("category", &instruments.to_string()),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let at = location(&response);
    assert!(at.starts_with("/resources/"), "{at}");
    let made: i64 = at.rsplit('/').next().unwrap().parse().unwrap();
    let item = api.json(&format!("/items/{made}")).await;
    assert_eq!(item["category"], instruments);
    api.patch(&format!("/items/{made}"), json!({"title": "Microscope"}))
        .await;
    api.create(
        "/items",
        json!({"title": "Anti-GFP", "category": antibodies}),
    )
    .await;

    let all = browser.page("/resources").await;
    assert!(all.contains("Microscope") && all.contains("Anti-GFP"));
    let filtered = browser
        .page(&format!("/resources?category={antibodies}"))
        .await;
    assert!(filtered.contains("Anti-GFP"));
    assert!(!filtered.contains("Microscope"));
    let searched = browser.page("/resources?q=microscope").await;
    assert!(searched.contains("Microscope") && !searched.contains("Anti-GFP"));
    // Resources are not experiments.
    assert!(!browser.page("/experiments").await.contains("Microscope"));
    // The resource page shows its category.
    let page = browser.page(&format!("/resources/{made}")).await;
    assert!(page.contains("Instruments"));
    app.stop().await;
}

#[tokio::test]
async fn a_resource_category_gives_new_resources_its_access_rules_and_template() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let admin_api = app.api(&app.api_key(&admin, true).await);
    let api = app.api(&app.api_key(&bob, true).await);
    let template = admin_api
        .create(
            "/items_types",
            json!({"title": "Antibody", "body": "Host: rabbit"}),
        )
        .await;
    let experiment_template = admin_api
        .create("/experiments_templates", json!({"title": "Protocol"}))
        .await;

    let category = admin_api
        .create(
            "/teams/current/resources_categories",
            json!({"title": "Antibodies", "default_canread_base": 40, "default_canwrite_base": 20,
                   "default_template": template}),
        )
        .await;
    let read = api
        .json(&format!("/teams/current/resources_categories/{category}"))
        .await;
    assert_eq!(read["default_canread_base"], 40);
    assert_eq!(read["default_canwrite_base"], 20);
    assert_eq!(read["default_template"], template);

    // Bad defaults are refused, and only team admins set them.
    for (body, needle) in [
        (json!({"default_template": experiment_template}), "template"),
        (json!({"default_canread_base": 35}), "10, 20"),
    ] {
        let description = refused(
            admin_api
                .patch(
                    &format!("/teams/current/resources_categories/{category}"),
                    body,
                )
                .await,
            422,
        )
        .await;
        assert!(description.contains(needle), "{description}");
    }
    refused(
        api.patch(
            &format!("/teams/current/resources_categories/{category}"),
            json!({"default_canread_base": 50}),
        )
        .await,
        403,
    )
    .await;
    refused(
        admin_api
            .post(
                "/teams/current/experiments_categories",
                json!({"title": "X", "default_template": template}),
            )
            .await,
        422,
    )
    .await;
    assert_eq!(
        admin_api
            .json("/teams/current/experiments_categories")
            .await,
        json!([]),
        "a refused request writes nothing"
    );

    // A new resource in the category starts from its template with its rules.
    let item = api
        .create("/items", json!({"title": "Anti-GFP", "category": category}))
        .await;
    let item = api.json(&format!("/items/{item}")).await;
    assert_eq!(item["body"], "Host: rabbit");
    assert_eq!(item["created_from_id"], template);
    assert_eq!(item["canread_base"], 40);
    assert_eq!(item["canwrite_base"], 20);
    // Unless the request says otherwise.
    let blank = api
        .create(
            "/items",
            json!({"title": "Anti-RFP", "category": category, "template": 0, "canread_base": 30}),
        )
        .await;
    let blank = api.json(&format!("/items/{blank}")).await;
    assert_eq!(blank["body"], "");
    assert_eq!(blank["canread_base"], 30);
    assert_eq!(blank["canwrite_base"], 20);

    // The team page sets them too, and the list page's "category's template" uses it.
    let admin_browser = app.browser(&admin).await;
    let page = admin_browser.page("/team").await;
    assert!(page.contains(&format!("resource_category-{category}-template")));
    let response = admin_browser
        .post_form(
            &format!("/team/terms/resource_category/{category}"),
            &[
                ("title", "Antibodies"),
                ("color", "#aa0000"),
                ("default_canread_base", "30"),
                ("default_canwrite_base", ""),
                ("default_template", &template.to_string()),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let read = api
        .json(&format!("/teams/current/resources_categories/{category}"))
        .await;
    assert_eq!(read["default_canread_base"], 30);
    assert_eq!(read["default_canwrite_base"], Value::Null);
    let browser = app.browser(&bob).await;
    let response = browser
        .post_form(
            "/resources",
            &[("template", ""), ("category", &category.to_string())],
        )
        .await;
    assert_eq!(response.status(), 303);
    let made: i64 = location(&response)
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let made = api.json(&format!("/items/{made}")).await;
    assert_eq!(made["body"], "Host: rabbit");
    assert_eq!(made["canread_base"], 30);
    app.stop().await;
}

/// A field replica receives what a resource category gives new resources (read and write
/// rules, template), so a resource made offline in it gets the same as on the server.
#[tokio::test]
async fn a_replica_knows_what_a_category_gives_new_resources() {
    use cahier_core::{BaseLevel, EntityKind, EntityPatch};
    let app = TestApp::spawn().await;
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let admin_api = app.api(&app.api_key(&admin, true).await);
    let template = admin_api
        .create(
            "/items_types",
            json!({"title": "Antibody sheet", "body": "Clone, host, dilution", "canread_base": 30}),
        )
        .await;
    let (category, _) = create_at(
        &admin_api,
        "/teams/current/resources_categories",
        json!({"name": "Antibodies", "color": "#112233", "default_canread_base": 20,
               "default_canwrite_base": 10, "default_template": template}),
    )
    .await;

    let (replica, _) = super::sync_blobs::replica(&app, &alice).await;
    // The template arrives with the first pull; the category names it from then on.
    replica.sync().await;
    let defaults = replica.store.category_defaults(category).await.unwrap();
    assert_eq!(defaults.canread, Some(BaseLevel::OwnerAndAdmins));
    assert_eq!(defaults.canwrite, Some(BaseLevel::OwnerOnly));
    assert_eq!(defaults.template, Some(template));
    // Linked: later pulls need not import the reference records again for it.
    assert!(!replica.store.category_templates_pending().await.unwrap());

    // Offline: a resource filed in the category gets its rules.
    let subject = replica.store.subject(alice.id).await.unwrap();
    let id = replica
        .store
        .create_entity(
            &subject,
            cahier_store::NewEntity {
                kind: EntityKind::Resource,
                team_id: alice.team_id,
                canread: None,
                canwrite: None,
                patch: EntityPatch {
                    title: Some("Anti-GFP".into()),
                    category: Some(Some(category)),
                    ..Default::default()
                },
                template: None,
            },
        )
        .await
        .unwrap();
    let row = replica.store.entity(&subject, id).await.unwrap();
    assert_eq!(row.canread.base, BaseLevel::OwnerAndAdmins);
    assert_eq!(row.canwrite.base, BaseLevel::OwnerOnly);
    // And the server accepts it as it is.
    replica.sync().await;
    let list = app
        .api(&app.api_key(&alice, false).await)
        .json("/items?q=Anti-GFP")
        .await;
    assert_eq!(list[0]["canread_base"], 20);
    assert_eq!(list[0]["category"], category);
}
