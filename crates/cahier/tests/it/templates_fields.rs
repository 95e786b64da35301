//! Experiment templates and typed metadata fields over real HTTP: template CRUD and who may do
//! what, creating from a template, the team default, field validation, eLabFTW's metadata JSON
//! through API v2, and `field:` search in the API and the list page.

use cahier_testkit::{Api, TestApp, location};
use serde_json::{Value, json};

async fn refused(response: reqwest::Response, status: u16) -> String {
    let got = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "{body}");
    body["description"].as_str().unwrap_or_default().to_owned()
}

fn metadata_of(entity: &Value) -> Value {
    serde_json::from_str(entity["metadata"].as_str().expect("metadata string")).expect("json")
}

const TEMPLATE_METADATA: &str = r#"{"elabftw": {"extra_fields_groups": [{"id": 1, "name": "Conditions"}]},
 "extra_fields": {
  "Temperature": {"type": "number", "value": "20", "unit": "°C", "units": ["°C", "K"], "group_id": 1, "position": 1, "required": true},
  "Sample type": {"type": "select", "value": "", "options": ["soil", "water"], "position": 2, "required": true},
  "Operator": {"type": "text", "value": "", "position": 3, "description": "who sampled"}
 }}"#;

#[tokio::test]
async fn team_admins_share_templates_users_keep_private_ones_and_other_teams_see_neither() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let carol = app.user("carol@lab.fr", "Botany", false).await;
    let admin_api = app.api(&app.api_key(&admin, true).await);
    let bob_api = app.api(&app.api_key(&bob, true).await);
    let carol_api = app.api(&app.api_key(&carol, true).await);

    let shared = admin_api
        .create(
            "/experiments_templates",
            json!({"title": "Soil sampling", "body": "## Method", "tags": ["soil"], "metadata": TEMPLATE_METADATA}),
        )
        .await;
    let one = admin_api
        .json(&format!("/experiments_templates/{shared}"))
        .await;
    assert_eq!(one["title"], "Soil sampling");
    assert_eq!(
        one["canread_base"], 30,
        "the team reads the team's templates"
    );
    assert_eq!(
        one["canwrite_base"], 20,
        "the owner and team admins edit them"
    );
    assert_eq!(
        metadata_of(&one)["extra_fields"]["Temperature"]["unit"],
        "°C"
    );

    // A user of the team reads it but cannot change it.
    let listed = bob_api.json("/experiments_templates").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    refused(
        bob_api
            .patch(
                &format!("/experiments_templates/{shared}"),
                json!({"title": "Mine now"}),
            )
            .await,
        403,
    )
    .await;
    refused(
        bob_api
            .delete(&format!("/experiments_templates/{shared}"))
            .await,
        403,
    )
    .await;

    // A user keeps private templates, and cannot share one.
    let private = bob_api
        .create("/experiments_templates", json!({"title": "Bob's way"}))
        .await;
    let mine = bob_api
        .json(&format!("/experiments_templates/{private}"))
        .await;
    assert_eq!(mine["canread_base"], 10);
    assert_eq!(mine["canwrite_base"], 10);
    let description = refused(
        bob_api
            .post(
                "/experiments_templates",
                json!({"title": "For all", "canread_base": 30}),
            )
            .await,
        403,
    )
    .await;
    assert!(description.contains("team admins"), "{description}");
    refused(
        bob_api
            .patch(
                &format!("/experiments_templates/{private}"),
                json!({"canread_base": 30}),
            )
            .await,
        403,
    )
    .await;
    refused(
        admin_api
            .get(&format!("/experiments_templates/{private}"))
            .await,
        404,
    )
    .await;

    // Another team sees neither.
    assert_eq!(carol_api.json("/experiments_templates").await, json!([]));
    refused(
        carol_api
            .get(&format!("/experiments_templates/{shared}"))
            .await,
        404,
    )
    .await;
    // A template is not an experiment.
    refused(admin_api.get(&format!("/experiments/{shared}")).await, 404).await;

    // The admin edits and deletes it.
    let patched = admin_api
        .patch(
            &format!("/experiments_templates/{shared}"),
            json!({"title": "Soil sampling v2"}),
        )
        .await;
    assert_eq!(patched.status(), 200);
    assert_eq!(
        admin_api
            .delete(&format!("/experiments_templates/{shared}"))
            .await
            .status(),
        204
    );
    assert_eq!(
        bob_api
            .json("/experiments_templates")
            .await
            .as_array()
            .unwrap()
            .len(),
        1,
        "only Bob's own is left"
    );
    app.stop().await;
}

async fn shared_template(api: &Api) -> i64 {
    let id = api
        .create(
            "/experiments_templates",
            json!({"title": "Soil sampling", "body": "## Method\n\nDig.", "tags": ["soil", "field"], "metadata": TEMPLATE_METADATA}),
        )
        .await;
    let step = api
        .post(
            &format!("/experiments_templates/{id}/steps"),
            json!({"body": "Weigh the sample"}),
        )
        .await;
    assert_eq!(step.status(), 201);
    id
}

#[tokio::test]
async fn creating_from_a_template_copies_it_and_records_where_it_came_from() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let carol = app.user("carol@lab.fr", "Botany", false).await;
    let admin_api = app.api(&app.api_key(&admin, true).await);
    let bob_api = app.api(&app.api_key(&bob, true).await);
    let carol_api = app.api(&app.api_key(&carol, true).await);
    let template = shared_template(&admin_api).await;

    let id = bob_api
        .create("/experiments", json!({"template": template}))
        .await;
    let copy = bob_api.json(&format!("/experiments/{id}")).await;
    assert_eq!(copy["title"], "Soil sampling");
    assert_eq!(copy["body"], "## Method\n\nDig.");
    assert_eq!(copy["tags"], "field|soil");
    assert_eq!(copy["steps"][0]["body"], "Weigh the sample");
    assert_eq!(copy["userid"], bob.id, "the copy is Bob's");
    assert_eq!(copy["created_from_id"], template);
    assert_eq!(copy["created_from_type"], 3);
    let fields = &metadata_of(&copy)["extra_fields"];
    assert_eq!(fields["Temperature"]["value"], "20", "defaults are copied");
    assert_eq!(fields["Temperature"]["required"], true);
    assert_eq!(
        metadata_of(&copy)["elabftw"]["extra_fields_groups"][0]["name"],
        "Conditions"
    );

    // Values given with the request apply on top of the template.
    let titled = bob_api
        .create(
            "/experiments",
            json!({"template": template, "title": "Plot 4"}),
        )
        .await;
    assert_eq!(
        bob_api.json(&format!("/experiments/{titled}")).await["title"],
        "Plot 4"
    );

    // The page links back to the template.
    let browser = app.browser(&bob).await;
    let html = browser.page(&format!("/experiments/{id}")).await;
    assert!(
        html.contains(&format!("href=\"/templates/{template}\"")),
        "template link"
    );

    // Unknown, unreadable or malformed templates are refused with a message, and nothing is made.
    let before = bob_api.json("/experiments").await.as_array().unwrap().len();
    let description = refused(
        bob_api
            .post("/experiments", json!({"template": 424242}))
            .await,
        404,
    )
    .await;
    assert!(description.contains("template 424242"), "{description}");
    let description = refused(
        carol_api
            .post("/experiments", json!({"template": template}))
            .await,
        404,
    )
    .await;
    assert!(description.contains("cannot read"), "{description}");
    refused(
        bob_api
            .post("/experiments", json!({"template": "soil"}))
            .await,
        422,
    )
    .await;
    refused(
        bob_api.post("/experiments", json!({"template": id})).await,
        404,
    )
    .await;
    assert_eq!(
        bob_api.json("/experiments").await.as_array().unwrap().len(),
        before
    );
    app.stop().await;
}

#[tokio::test]
async fn the_team_default_template_is_preselected_and_used_for_a_new_experiment() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let admin_api = app.api(&app.api_key(&admin, true).await);
    let bob_api = app.api(&app.api_key(&bob, true).await);
    let template = shared_template(&admin_api).await;
    let other = admin_api
        .create("/experiments_templates", json!({"title": "Water"}))
        .await;

    let admin_browser = app.browser(&admin).await;
    admin_browser.page(&format!("/templates/{template}")).await;
    let response = admin_browser
        .post_form(&format!("/templates/{template}/make-default"), &[])
        .await;
    assert_eq!(response.status(), 303);
    let listed = bob_api.json("/experiments_templates").await;
    let flags: Vec<(i64, i64)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_i64().unwrap(), t["is_default"].as_i64().unwrap()))
        .collect();
    assert!(
        flags.contains(&(template, 1)) && flags.contains(&(other, 0)),
        "{flags:?}"
    );

    // Bob's "new experiment" chooser preselects it, and offers a blank one.
    let bob_browser = app.browser(&bob).await;
    let html = bob_browser.page("/experiments").await;
    assert!(
        html.contains(&format!("<option value=\"{template}\" selected>")),
        "default preselected"
    );
    assert!(html.contains("value=\"blank\""), "blank offered");
    // A new experiment without a choice starts from the default; "blank" from nothing.
    let response = bob_browser.post_form("/experiments", &[]).await;
    let from_default: i64 = location(&response)
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        bob_api.json(&format!("/experiments/{from_default}")).await["created_from_id"],
        template
    );
    let html = bob_browser.page(&format!("/templates/{template}")).await;
    assert!(
        html.contains("id=\"use-template\""),
        "a template page offers to use it"
    );
    let response = bob_browser
        .post_form("/experiments", &[("template", "blank")])
        .await;
    let blank: i64 = location(&response)
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let blank = bob_api.json(&format!("/experiments/{blank}")).await;
    assert!(
        blank["created_from_id"].is_null() && blank["metadata"].is_null(),
        "{blank}"
    );
    let response = bob_browser
        .post_form("/experiments", &[("template", &other.to_string())])
        .await;
    let chosen: i64 = location(&response)
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        bob_api.json(&format!("/experiments/{chosen}")).await["title"],
        "Water"
    );

    // Only team admins choose the default, and only among templates the team can read.
    let response = bob_browser
        .post_form(&format!("/templates/{other}/make-default"), &[])
        .await;
    assert_eq!(response.status(), 403);
    let private = bob_api
        .create("/experiments_templates", json!({"title": "Mine"}))
        .await;
    let response = bob_browser
        .post_form(&format!("/templates/{private}/make-default"), &[])
        .await;
    assert_eq!(response.status(), 403);
    let admin_private = admin_api
        .create(
            "/experiments_templates",
            json!({"title": "Draft", "canread_base": 10, "canwrite_base": 10}),
        )
        .await;
    let response = admin_browser
        .post_form(&format!("/templates/{admin_private}/make-default"), &[])
        .await;
    assert_eq!(response.status(), 422);
    assert!(
        app.store
            .default_template(admin.team_id, cahier_core::EntityKind::ExperimentTemplate)
            .await
            .unwrap()
            == Some(template)
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_field_values_are_refused_with_a_message_naming_the_field() {
    let app = TestApp::spawn().await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let carol = app.user("carol@lab.fr", "Botany", false).await;
    let api = app.api(&app.api_key(&bob, true).await);
    let carol_api = app.api(&app.api_key(&carol, true).await);
    let secret = carol_api
        .create(
            "/experiments",
            json!({"title": "Secret", "canread_base": 10}),
        )
        .await;
    let mine = api
        .create("/experiments", json!({"title": "Reference"}))
        .await;
    let metadata = json!({"extra_fields": {
        "Temperature": {"type": "number", "value": "20", "unit": "°C", "units": ["°C", "K"], "required": true},
        "Sample type": {"type": "select", "value": "soil", "options": ["soil", "water"]},
        "Sampled on": {"type": "date", "value": "2026-11-20"},
        "Contact": {"type": "email", "value": "a@b.fr"},
        "Protocol": {"type": "experiments", "value": mine}
    }});
    let id = api
        .create(
            "/experiments",
            json!({"title": "Plot 4", "metadata": metadata}),
        )
        .await;
    let path = format!("/experiments/{id}");
    let before = api.json(&path).await;

    let set = |name: &str, value: Value| json!({"action": "updatemetadatafield", name: value});
    for (body, field, words) in [
        (
            set("Temperature", json!("warm")),
            "Temperature",
            "not a number",
        ),
        (set("Temperature", json!("")), "Temperature", "required"),
        (
            set("Sample type", json!("lava")),
            "Sample type",
            "not one of the choices",
        ),
        (
            set("Sampled on", json!("20/11/2026")),
            "Sampled on",
            "YYYY-MM-DD",
        ),
        (set("Contact", json!("nobody")), "Contact", "e-mail"),
        (set("Protocol", json!(secret)), "Protocol", "cannot read"),
        (
            set("Protocol", json!(999_999)),
            "Protocol",
            "does not exist",
        ),
        (set("Unknown", json!("x")), "Unknown", "no such field"),
    ] {
        let description = refused(api.patch(&path, body.clone()).await, 422).await;
        assert!(
            description.starts_with(field) && description.contains(words),
            "{body}: {description}"
        );
    }
    // Whole metadata: bad unit, missing required value, unknown type.
    for (metadata, field, words) in [
        (
            json!({"extra_fields": {"Temperature": {"type": "number", "value": "4", "unit": "mg", "units": ["°C", "K"]}}}),
            "Temperature",
            "unit",
        ),
        (
            json!({"extra_fields": {"Temperature": {"type": "number", "value": "", "required": true}}}),
            "Temperature",
            "required",
        ),
        (
            json!({"extra_fields": {"Colour": {"type": "colour", "value": "red"}}}),
            "Colour",
            "unknown type",
        ),
        (json!("not json"), "metadata", "JSON object"),
    ] {
        let description = refused(api.patch(&path, json!({"metadata": metadata})).await, 422).await;
        assert!(
            description.starts_with(field) && description.contains(words),
            "{metadata}: {description}"
        );
    }
    let description = refused(
        api.post("/experiments", json!({"title": "x", "metadata": {"extra_fields": {"Need": {"type": "text", "value": "", "required": true}}}}))
            .await,
        422,
    )
    .await;
    assert!(
        description.contains("Need: this field is required"),
        "{description}"
    );
    assert_eq!(
        api.json(&path).await["metadata"],
        before["metadata"],
        "refused changes changed nothing"
    );

    // Good values are saved.
    let patched = api.patch(&path, set("Temperature", json!("4.5"))).await;
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(
        metadata_of(&patched)["extra_fields"]["Temperature"]["value"],
        "4.5"
    );
    app.stop().await;
}

#[tokio::test]
async fn elabftw_metadata_round_trips_through_api_v2() {
    let app = TestApp::spawn().await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&bob, true).await);
    let linked = api.create("/experiments", json!({"title": "Linked"})).await;
    // The shape eLabFTW 5.x writes (groups, units, options, multi values, unknown keys).
    let metadata = json!({
        "elabftw": {"display_main_text": true, "extra_fields_groups": [{"id": 1, "name": "Group 1"}, {"id": 2, "name": "Group 2"}]},
        "extra_fields": {
            "Number with units": {"type": "number", "unit": "mM", "units": ["mM", "μM", "nM"], "value": "12", "group_id": 2, "description": "this one has units"},
            "A dropdown menu": {"type": "select", "value": "Choice 1", "options": ["Choice 1", "Choice 2"], "group_id": 1},
            "Multi dropdown menu": {"type": "select", "value": ["Option 1", "Option 3"], "options": ["Option 1", "Option 2", "Option 3"], "allow_multi_values": true},
            "Text input name": {"type": "text", "value": "some text", "readonly": true, "required": true, "blank_value_on_duplicate": true},
            "Some date": {"type": "date", "value": "2024-07-14", "position": 3},
            "Date and time": {"type": "datetime-local", "value": "2024-07-14T13:37"},
            "Just time": {"type": "time", "value": "17:00"},
            "A checkbox": {"type": "checkbox", "value": "on"},
            "Type URL": {"type": "url", "value": "https://www.elabftw.net"},
            "Email input": {"type": "email", "value": "louis@example.com"},
            "Radio buttons": {"type": "radio", "value": "Oui", "options": ["Oui", "Non", "Peut-être"]},
            "Type experiment": {"type": "experiments", "value": linked}
        }
    });
    // As an object on create, read back as eLabFTW's JSON string.
    let id = api
        .create(
            "/experiments",
            json!({"title": "Gold master", "metadata": metadata}),
        )
        .await;
    let one = api.json(&format!("/experiments/{id}")).await;
    assert_eq!(metadata_of(&one), metadata);
    assert_eq!(one["metadata_decoded"], metadata);
    // In list rows too (scripts read it there).
    let rows = api.json("/experiments").await;
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(metadata_of(&row), metadata);
    // As a string on PATCH (elabapi-python examples send a string), back unchanged.
    let patched = api
        .patch(
            &format!("/experiments/{id}"),
            json!({"metadata": metadata.to_string()}),
        )
        .await;
    assert_eq!(patched.status(), 200);
    assert_eq!(
        metadata_of(&patched.json::<Value>().await.unwrap()),
        metadata
    );
    // Removing a field through a new metadata removes it.
    let mut fewer = metadata.clone();
    fewer["extra_fields"]
        .as_object_mut()
        .unwrap()
        .remove("Just time");
    api.patch(&format!("/experiments/{id}"), json!({"metadata": fewer}))
        .await;
    assert_eq!(
        metadata_of(&api.json(&format!("/experiments/{id}")).await),
        fewer
    );
    app.stop().await;
}

#[tokio::test]
async fn field_filters_find_entries_through_api_q_and_the_list_page() {
    let app = TestApp::spawn().await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let carol = app.user("carol@lab.fr", "Botany", false).await;
    let api = app.api(&app.api_key(&bob, true).await);
    let carol_api = app.api(&app.api_key(&carol, true).await);
    let make = |title: &'static str, temperature: &'static str, sample: &'static str| {
        json!({"title": title, "metadata": {"extra_fields": {
            "Temperature": {"type": "number", "value": temperature, "unit": "°C", "units": ["°C"]},
            "Sample type": {"type": "select", "value": sample, "options": ["soil", "water", "clay soil"]}
        }}})
    };
    for (title, t, sample) in [
        ("Cold lake", "4", "water"),
        ("Room soil", "20", "soil"),
        ("Warm soil", "37.5", "soil"),
        ("Clay pit", "21", "clay soil"),
    ] {
        api.create("/experiments", make(title, t, sample)).await;
    }
    api.create("/experiments", json!({"title": "No fields"}))
        .await;
    // Carol's entries match too but Bob may not read them.
    carol_api
        .create("/experiments", json!({"title": "Hidden hot", "canread_base": 10, "metadata": {"extra_fields": {"Temperature": {"type": "number", "value": "99"}}}}))
        .await;

    let titles = |rows: Value| -> Vec<String> {
        let mut t: Vec<String> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["title"].as_str().unwrap().to_owned())
            .collect();
        t.sort();
        t
    };
    let q = |q: &str| format!("/experiments?q={}", urlencode(q));
    assert_eq!(
        titles(api.json(&q("field:Temperature>20")).await),
        ["Clay pit", "Warm soil"]
    );
    assert_eq!(
        titles(api.json(&q("field:Temperature<=4.5")).await),
        ["Cold lake"]
    );
    assert_eq!(
        titles(api.json(&q("field:Temperature=20")).await),
        ["Room soil"]
    );
    assert_eq!(
        titles(
            api.json(&q("field:temperature>=20 field:Temperature<30"))
                .await
        ),
        ["Clay pit", "Room soil"]
    );
    assert_eq!(
        titles(api.json(&q("field:\"Sample type\"=SOIL")).await),
        ["Room soil", "Warm soil"]
    );
    assert_eq!(
        titles(api.json(&q("field:\"Sample type\"=\"clay soil\"")).await),
        ["Clay pit"]
    );
    assert_eq!(
        titles(api.json(&q("warm field:\"Sample type\"=soil")).await),
        ["Warm soil"],
        "with full-text words"
    );
    assert_eq!(
        titles(api.json(&q("extrafield:\"Sample type\":soil")).await),
        ["Room soil", "Warm soil"],
        "eLabFTW's extrafield:key:value"
    );
    // Pages still work with a filter.
    let first = api
        .json(&format!(
            "{}&limit=1&order=title&sort=asc",
            q("field:Temperature>=4")
        ))
        .await;
    let second = api
        .json(&format!(
            "{}&limit=1&offset=1&order=title&sort=asc",
            q("field:Temperature>=4")
        ))
        .await;
    assert_eq!(
        (titles(first), titles(second)),
        (vec!["Clay pit".to_owned()], vec!["Cold lake".to_owned()])
    );
    let description = refused(api.get(&q("field:Temperature>warm")).await, 422).await;
    assert!(
        description.contains("field:Temperature>20"),
        "{description}"
    );

    // The list page's search box takes the same syntax.
    let browser = app.browser(&bob).await;
    let html = browser.page(&q("field:Temperature>20")).await;
    assert!(
        html.contains("Warm soil") && html.contains("Clay pit"),
        "filtered list"
    );
    assert!(
        !html.contains("Room soil") && !html.contains("Cold lake"),
        "filtered out"
    );
    assert!(
        html.contains("value=\"field:Temperature&gt;20\"")
            || html.contains("field:Temperature&#62;20"),
        "the search is kept in the box"
    );
    let response = browser.get(&q("field:Temperature>warm")).await;
    assert_eq!(response.status(), 200, "a bad filter keeps the list");
    let html = response.text().await.unwrap();
    assert!(
        html.contains("id=\"q-error\"")
            && (html.contains("field:Temperature&gt;20")
                || html.contains("field:Temperature&#62;20")),
        "says what to write"
    );
    app.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn the_fields_form_adds_checks_saves_and_removes_fields() {
    let app = TestApp::spawn().await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&bob, true).await);
    let id = api.create("/experiments", json!({"title": "Plot 4"})).await;
    let path = format!("/experiments/{id}");
    let browser = app.browser(&bob).await;
    browser.page(&path).await;

    // A field added directly to the experiment, in a new group, with units.
    for (name, field_type, extra) in [
        (
            "Temperature",
            "number",
            vec![
                ("units", "°C, K"),
                ("group", "Conditions"),
                ("required", "1"),
            ],
        ),
        (
            "Sample type",
            "select",
            vec![("options", "soil, water"), ("value", "soil")],
        ),
        ("Contact", "email", vec![]),
    ] {
        let mut form = vec![("name", name), ("type", field_type)];
        form.extend(extra);
        let response = browser
            .post_form(&format!("{path}/fields/add"), &form)
            .await;
        assert_eq!(response.status(), 303, "{name}");
    }
    let metadata = metadata_of(&api.json(&path).await);
    let temperature = &metadata["extra_fields"]["Temperature"];
    assert_eq!(temperature["units"], json!(["°C", "K"]));
    assert_eq!(temperature["unit"], "°C");
    assert_eq!(temperature["required"], true);
    assert_eq!(
        metadata["elabftw"]["extra_fields_groups"],
        json!([{"id": 1, "name": "Conditions"}])
    );
    assert_eq!(temperature["group_id"], 1);
    let response = browser
        .post_form(
            &format!("{path}/fields/add"),
            &[("name", "Contact"), ("type", "text")],
        )
        .await;
    assert_eq!(response.status(), 422, "names are unique");

    // The page shows them grouped, labelled, with proper input types.
    let html = browser.page(&path).await;
    assert!(html.contains("<legend>Conditions</legend>"), "group legend");
    assert!(
        html.contains("type=\"number\"") && html.contains("type=\"email\""),
        "input types"
    );
    assert!(html.contains("aria-required=\"true\""), "required marked");

    // Bad values: refused with messages next to each field; what was typed stays.
    let response = browser
        .post_form(
            &format!("{path}/fields"),
            &[
                ("f:Temperature", "warm"),
                ("u:Temperature", "K"),
                ("f:Sample type", "lava"),
                ("f:Contact", "nobody"),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert_eq!(
        html.matches("class=\"error field-error\"").count(),
        3,
        "one message per bad field"
    );
    assert!(
        html.contains("value=\"warm\"") && html.contains("value=\"nobody\""),
        "typed values kept"
    );
    assert!(html.contains("aria-invalid=\"true\""));
    assert!(
        html.contains("Écrivez un nombre") && html.contains("Choisissez parmi les choix proposés"),
        "messages in the user's language"
    );
    let response = browser
        .post_form(
            &format!("{path}/fields"),
            &[("f:Temperature", ""), ("f:Sample type", "water")],
        )
        .await;
    assert_eq!(response.status(), 422, "required");
    assert_eq!(
        metadata_of(&api.json(&path).await),
        metadata,
        "nothing was saved"
    );

    // Good values are saved, unit included.
    let response = browser
        .post_form(
            &format!("{path}/fields"),
            &[
                ("f:Temperature", "277.5"),
                ("u:Temperature", "K"),
                ("f:Sample type", "water"),
                ("f:Contact", "a@b.fr"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let fields = metadata_of(&api.json(&path).await)["extra_fields"].clone();
    assert_eq!(fields["Temperature"]["value"], "277.5");
    assert_eq!(fields["Temperature"]["unit"], "K");
    assert_eq!(fields["Sample type"]["value"], "water");
    assert_eq!(fields["Contact"]["value"], "a@b.fr");
    let html = browser
        .page(&format!(
            "/experiments?q={}",
            urlencode("field:Temperature>100")
        ))
        .await;
    assert!(html.contains("Plot 4"), "found by its new value");

    // A definition edited: new choices, now required, renamed; the value stays.
    let response = browser
        .post_form(
            &format!("{path}/fields/add"),
            &[
                ("original", "Sample type"),
                ("name", "Sample"),
                ("type", "select"),
                ("options", "soil, water, clay"),
                ("required", "1"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let fields = metadata_of(&api.json(&path).await)["extra_fields"].clone();
    assert!(fields.get("Sample type").is_none());
    assert_eq!(
        fields["Sample"]["options"],
        json!(["soil", "water", "clay"])
    );
    assert_eq!(fields["Sample"]["required"], true);
    assert_eq!(fields["Sample"]["value"], "water");
    assert_eq!(fields["Sample"]["position"], 2, "keeps its place");
    let response = browser
        .post_form(
            &format!("{path}/fields/add"),
            &[
                ("original", "Sample"),
                ("name", "Sample"),
                ("type", "select"),
                ("options", "soil"),
            ],
        )
        .await;
    assert_eq!(response.status(), 422, "its value is no longer a choice");

    // Removed.
    let response = browser
        .post_form(&format!("{path}/fields/remove"), &[("name", "Contact")])
        .await;
    assert_eq!(response.status(), 303);
    assert!(
        metadata_of(&api.json(&path).await)["extra_fields"]
            .get("Contact")
            .is_none()
    );
    // Another user of the team may read but not change the fields.
    let eve = app.user("eve@lab.fr", "Ecology", false).await;
    let eve_browser = app.browser(&eve).await;
    eve_browser.page(&path).await;
    let response = eve_browser
        .post_form(&format!("{path}/fields"), &[("f:Temperature", "1")])
        .await;
    assert_eq!(response.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn the_list_pages_through_field_filter_results_with_its_keyset_links() {
    let app = TestApp::spawn().await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&bob, true).await);
    for n in 0..25 {
        let temperature = (100 + n).to_string();
        api.create(
            "/experiments",
            json!({"title": format!("Hot {n:02}"), "metadata": {"extra_fields": {"Temperature": {"type": "number", "value": temperature}}}}),
        )
        .await;
    }
    api.create("/experiments", json!({"title": "Cold", "metadata": {"extra_fields": {"Temperature": {"type": "number", "value": "3"}}}}))
        .await;
    let browser = app.browser(&bob).await;
    let mut path = format!(
        "/experiments?order=title&sort=asc&q={}",
        urlencode("field:Temperature>=100")
    );
    let mut seen = Vec::new();
    for _ in 0..5 {
        let html = browser.page(&path).await;
        seen.extend(
            (0..25)
                .map(|n| format!("Hot {n:02}"))
                .filter(|t| html.contains(&format!(">{t}</a>"))),
        );
        assert!(!html.contains(">Cold</a>"));
        match html
            .split("id=\"next-page\"")
            .next()
            .and_then(|before| before.rsplit("href=\"").next())
        {
            Some(next) if html.contains("id=\"next-page\"") => {
                path = next.split('"').next().unwrap().replace("&amp;", "&");
                assert!(
                    path.contains("q=field"),
                    "the filter stays in the next page's link: {path}"
                );
            }
            _ => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 25, "every match once, over two pages: {seen:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_field_given_two_values_at_once_is_a_conflict_resolved_on_the_page() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&ada, true).await);
    let id = api
        .create(
            "/experiments",
            json!({"title": "Buffer", "metadata": {"extra_fields": {"Temperature": {
                "type": "number", "value": "20", "unit": "°C", "units": ["°C", "K"]}}}}),
        )
        .await;
    // Two saves made from the same version, as two laptops would: each sets its own reading.
    let base = api.json(&format!("/experiments/{id}")).await["heads"]
        .as_str()
        .expect("heads")
        .to_owned();
    let subject = app.store.subject(ada.id).await.expect("subject");
    for reading in ["21.5", "19"] {
        let patch = cahier_core::EntityPatch {
            ops: vec![cahier_core::document::EntityOp::SetFieldValue {
                name: "Temperature".into(),
                value: json!(reading),
            }],
            ..Default::default()
        };
        app.store
            .update_entity(&subject, id, Some(&base), &patch, "save")
            .await
            .expect("save");
    }
    let both = api.json(&format!("/experiments/{id}")).await;
    assert_eq!(both["has_conflicts"], true);
    let shown = metadata_of(&both)["extra_fields"]["Temperature"]["value"].clone();
    let shown = shown.as_str().expect("value").to_owned();

    let browser = app.browser(&ada).await;
    let page = browser.get(&format!("/experiments/{id}")).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    let panel = &html[html.find("id=\"conflicts\"").expect("the conflict panel")..];
    assert!(
        panel.contains("data-field=\"field:Temperature\"")
            && panel.contains("<h3>Temperature</h3>")
            && panel.contains("value=\"21.5\"")
            && panel.contains("value=\"19\""),
        "the panel names the field and offers both values: {panel}"
    );

    let unknown = browser
        .post_form(
            &format!("/experiments/{id}/resolve"),
            &[("field", "field:Depth"), ("value", "3")],
        )
        .await;
    assert!(unknown.status().is_client_error(), "{}", unknown.status());
    // Keeping the value already shown settles the conflict too.
    let kept = browser
        .post_form(
            &format!("/experiments/{id}/resolve"),
            &[("field", "field:Temperature"), ("value", &shown)],
        )
        .await;
    assert_eq!(kept.status(), 303);
    let after = api.json(&format!("/experiments/{id}")).await;
    assert_eq!(after["has_conflicts"], false);
    assert_eq!(
        metadata_of(&after)["extra_fields"]["Temperature"]["value"],
        shown.as_str()
    );
    let html = browser
        .get(&format!("/experiments/{id}"))
        .await
        .text()
        .await
        .expect("html");
    assert!(!html.contains("id=\"conflicts\""), "no conflict left");
}
