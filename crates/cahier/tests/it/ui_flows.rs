//! The web UI over real HTTP with a browser-like client (cookie jar, CSRF token, no redirects
//! followed): signing in and out, throttling, CSRF, first-run setup, editing an entry (autosave,
//! merges and conflicts, steps, comments, links, access, delete, duplicate, history), language,
//! and the team and instance admin pages.

use cahier_store::catalog::{Family, Vocabulary};
use cahier_testkit::{Browser, TestApp, TestUser, location};
use serde_json::{Value, json};

/// The text between `start` and the next `end`, for each occurrence of `start`.
fn all_between(html: &str, start: &str, end: &str) -> Vec<String> {
    html.split(start)
        .skip(1)
        .filter_map(|rest| rest.split(end).next())
        .map(str::to_owned)
        .collect()
}

fn between(html: &str, start: &str, end: &str) -> String {
    all_between(html, start, end)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{start}…{end} not in page"))
}

/// The `lang` attribute of the page.
fn html_lang(html: &str) -> String {
    between(html, "<html lang=\"", "\"")
}

/// The entry id a redirect points to (`/experiments/12#steps` → 12).
fn redirected_id(response: &reqwest::Response) -> i64 {
    let target = location(response);
    target
        .strip_prefix("/experiments/")
        .unwrap_or_else(|| panic!("not an entry: {target}"))
        .split(['#', '?', '/'])
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The version the editor of a page started from (the hidden `base` field).
fn base_heads(html: &str) -> String {
    between(html, "name=\"base\" value=\"", "\"")
}

/// Posts the editor form asking for JSON, as the autosave script does.
async fn save_json(browser: &Browser, id: i64, fields: &[(&str, &str)]) -> reqwest::Response {
    let csrf = browser.csrf().await;
    let mut form = fields.to_vec();
    form.push(("csrf", &csrf));
    browser
        .client
        .post(format!("{}/experiments/{id}/save", browser.base))
        .header("accept", "application/json")
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// An entry created through the API by `user`, with extra fields.
async fn entry(app: &TestApp, user: &TestUser, fields: Value) -> i64 {
    let api = app.api(&app.api_key(user, true).await);
    api.create("/experiments", fields).await
}

/// The entry as the API shows it to `user`.
async fn api_view(app: &TestApp, user: &TestUser, id: i64) -> Value {
    let api = app.api(&app.api_key(user, false).await);
    api.json(&format!("/experiments/{id}")).await
}

async fn is_signed_in(browser: &Browser) -> bool {
    let response = browser.get("/").await;
    match response.status().as_u16() {
        200 => true,
        303 => {
            assert!(location(&response).starts_with("/login"));
            false
        }
        other => panic!("GET / gave {other}"),
    }
}

#[tokio::test]
async fn signing_in_with_the_right_password_opens_a_session_and_follows_next() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    let browser = app.anonymous_browser();
    let response = browser.get("/experiments").await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/login?next=%2Fexperiments");
    assert!(!is_signed_in(&browser).await);
    let response = browser
        .post_form(
            "/login",
            &[
                ("email", "ada@lab.fr"),
                ("password", &ada.password),
                ("next", "/experiments"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/experiments");
    let dashboard = browser.page("/").await;
    assert!(dashboard.contains("ada Test"), "the dashboard greets Ada");
    // An outside `next` is not followed.
    let other = app.anonymous_browser();
    let response = other
        .post_form(
            "/login",
            &[
                ("email", "ada@lab.fr"),
                ("password", &ada.password),
                ("next", "//evil.example/"),
            ],
        )
        .await;
    assert_eq!(location(&response), "/");
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_password_gives_401_with_a_message_and_no_session() {
    let app = TestApp::spawn().await;
    app.user("ada@lab.fr", "Ecology", false).await;
    let browser = app.anonymous_browser();
    for (email, password) in [
        ("ada@lab.fr", "wrong password"),
        ("nobody@lab.fr", "correct horse battery"),
    ] {
        let response = browser
            .post_form("/login", &[("email", email), ("password", password)])
            .await;
        assert_eq!(response.status(), 401);
        assert_eq!(set_cookie(&response, "cahier_session"), None);
        let html = response.text().await.unwrap();
        assert!(html.contains("id=\"login-error\""), "{html}");
        assert!(html.contains("Adresse ou mot de passe incorrect."));
        assert!(
            html.contains(&format!("value=\"{email}\"")),
            "the e-mail is kept"
        );
        assert!(!is_signed_in(&browser).await);
    }
    app.stop().await;
}

#[tokio::test]
async fn five_failures_for_one_email_throttle_it_even_with_the_right_password() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let browser = app.anonymous_browser();
    for attempt in 1..=5 {
        let response = browser
            .post_form(
                "/login",
                &[("email", "ada@lab.fr"), ("password", "not the password")],
            )
            .await;
        assert_eq!(response.status(), 401, "attempt {attempt}");
    }
    let response = browser
        .post_form(
            "/login",
            &[("email", "ADA@lab.fr "), ("password", &ada.password)],
        )
        .await;
    assert_eq!(response.status(), 429);
    let html = response.text().await.unwrap();
    assert!(html.contains("Trop d"), "{html}");
    let response = browser
        .post_form(
            "/login",
            &[("email", "ada@lab.fr"), ("password", &ada.password)],
        )
        .await;
    assert_eq!(
        response.status(),
        429,
        "the right password is refused in the window"
    );
    assert!(!is_signed_in(&browser).await);
    // Other addresses are not locked out.
    let other = app.browser(&bob).await;
    assert!(is_signed_in(&other).await);
    app.stop().await;
}

/// A client that handles cookies by hand, to replay a session cookie after sign-out.
struct Manual {
    client: reqwest::Client,
    base: String,
    csrf: String,
    cookies: String,
}

impl Manual {
    async fn sign_in(app: &TestApp, user: &TestUser) -> Manual {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let page = client
            .get(format!("{}/login", app.url))
            .send()
            .await
            .unwrap();
        let csrf = set_cookie(&page, "cahier_csrf").expect("csrf cookie");
        let cookies = format!("cahier_csrf={csrf}");
        let response = client
            .post(format!("{}/login", app.url))
            .header("cookie", &cookies)
            .form(&[
                ("email", user.email.as_str()),
                ("password", &user.password),
                ("csrf", &csrf),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303);
        let session = set_cookie(&response, "cahier_session").expect("session cookie");
        Manual {
            client,
            base: app.url.clone(),
            cookies: format!("{cookies}; cahier_session={session}"),
            csrf,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookies)
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, path: &str) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookies)
            .form(&[("csrf", &self.csrf)])
            .send()
            .await
            .unwrap()
    }
}

fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
}

#[tokio::test]
async fn signing_out_ends_the_session_on_the_server() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    let manual = Manual::sign_in(&app, &ada).await;
    assert_eq!(manual.get("/").await.status(), 200);
    let response = manual.post("/logout").await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/login?msg=signed_out");
    assert_eq!(set_cookie(&response, "cahier_session").as_deref(), Some(""));
    // The old cookie, replayed, no longer opens anything.
    let replay = manual.get("/").await;
    assert_eq!(replay.status(), 303);
    assert!(location(&replay).starts_with("/login"));
    assert_eq!(manual.get("/experiments/1").await.status(), 303);

    // The same through a cookie jar, and the login page says so.
    let browser = app.browser(&ada).await;
    assert!(is_signed_in(&browser).await);
    assert_eq!(browser.post_form("/logout", &[]).await.status(), 303);
    assert!(!is_signed_in(&browser).await);
    let html = browser.page("/login?msg=signed_out").await;
    assert!(html.contains("Vous êtes déconnecté"), "{html}");
    app.stop().await;
}

#[tokio::test]
async fn a_form_post_without_the_csrf_token_is_refused_with_403_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    let id = entry(&app, &ada, json!({"title": "Original"})).await;
    let browser = app.browser(&ada).await;
    let path = format!("/experiments/{id}/save");

    let response = browser
        .post_form_without_csrf(&path, &[("title", "Forged")])
        .await;
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("reload the page"));
    let wrong = "0".repeat(64);
    let response = browser
        .post_form_without_csrf(&path, &[("title", "Forged"), ("csrf", &wrong)])
        .await;
    assert_eq!(response.status(), 403);
    let response = browser
        .client
        .post(format!("{}{path}", browser.base))
        .header("x-csrf-token", &wrong)
        .form(&[("title", "Forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = browser.post_form_without_csrf("/experiments", &[]).await;
    assert_eq!(response.status(), 403);
    let response = browser.post_form_without_csrf("/logout", &[]).await;
    assert_eq!(response.status(), 403);
    assert!(
        is_signed_in(&browser).await,
        "a forged sign-out does nothing"
    );

    // The API through a session needs the token in a header.
    let api_url = format!("{}/api/v2/experiments", browser.base);
    let response = browser
        .client
        .post(&api_url)
        .json(&json!({"title": "Forged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(response.json::<Value>().await.unwrap()["code"], 403);

    assert_eq!(api_view(&app, &ada, id).await["title"], "Original");
    let (_, _, experiments, _) = app.store.instance_counts().await.unwrap();
    assert_eq!(experiments, 1);

    // With the token, the same requests go through.
    let response = browser
        .client
        .post(&api_url)
        .header("x-csrf-token", browser.csrf().await)
        .json(&json!({"title": "Scripted"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let response = browser.post_form(&path, &[("title", "Edited")]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(api_view(&app, &ada, id).await["title"], "Edited");
    app.stop().await;
}

#[tokio::test]
async fn the_setup_link_creates_the_first_sysadmin_and_team_and_works_once() {
    let app = TestApp::spawn().await;
    let setup_url = app
        .setup_url
        .clone()
        .expect("an empty instance prints a setup link");
    let setup_path = setup_url.strip_prefix(&app.url).unwrap().to_owned();
    let token = setup_path.split("token=").nth(1).unwrap().to_owned();
    let browser = app.anonymous_browser();
    let html = browser.page(&setup_path).await;
    assert!(html.contains(&format!("name=\"token\" value=\"{token}\"")));

    // A wrong token is refused.
    let response = browser.get("/setup?token=not-the-token").await;
    assert_eq!(response.status(), 403);

    // Invalid input shows the form again and spends nothing.
    let response = browser
        .post_form(
            "/setup",
            &[
                ("token", &token),
                ("firstname", "Ada"),
                ("lastname", "Lovelace"),
                ("email", "ada@lab.fr"),
                ("password", "short"),
                ("team", "Ecology"),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    let message = between(&html, "class=\"error\" role=\"alert\">", "<");
    assert!(message.starts_with("password:"), "{message}");
    assert_eq!(app.store.count_users().await.unwrap(), 0);

    let response = browser
        .post_form(
            "/setup",
            &[
                ("token", &token),
                ("firstname", "Ada"),
                ("lastname", "Lovelace"),
                ("email", "ada@lab.fr"),
                ("password", "analytical engine"),
                ("team", "Ecology"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/");
    let admin_page = browser.page("/admin").await;
    assert!(admin_page.contains("ada@lab.fr"));
    let ada = app.store.user_by_email("ada@lab.fr").await.unwrap();
    assert!(ada.is_sysadmin);
    let team = app.store.team_by_name("Ecology").await.unwrap();
    assert!(
        app.store
            .subject(ada.id)
            .await
            .unwrap()
            .is_team_admin(team.id)
    );

    // The link is spent.
    let stranger = app.anonymous_browser();
    assert_eq!(stranger.get(&setup_path).await.status(), 403);
    let response = stranger
        .post_form(
            "/setup",
            &[
                ("token", &token),
                ("firstname", "Eve"),
                ("email", "eve@lab.fr"),
                ("password", "long enough password"),
                ("team", "Evil"),
            ],
        )
        .await;
    assert_eq!(response.status(), 403);
    assert_eq!(app.store.count_users().await.unwrap(), 1);
    assert!(app.store.team_by_name("Evil").await.is_err());
    app.stop().await;
}

#[tokio::test]
async fn a_setup_refused_for_a_bad_team_name_leaves_the_link_usable() {
    let app = TestApp::spawn().await;
    let setup_url = app.setup_url.clone().unwrap();
    let token = setup_url.split("token=").nth(1).unwrap().to_owned();
    let browser = app.anonymous_browser();
    let long_team = "T".repeat(101);
    let mut fields = vec![
        ("token", token.as_str()),
        ("firstname", "Ada"),
        ("email", "ada@lab.fr"),
        ("password", "analytical engine"),
        ("team", long_team.as_str()),
    ];
    let response = browser.post_form("/setup", &fields).await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    let message = between(&html, "class=\"error\" role=\"alert\">", "<");
    assert!(message.starts_with("team:"), "{message}");
    assert_eq!(
        app.store.count_users().await.unwrap(),
        0,
        "no account without its team"
    );
    fields[4].1 = "Ecology";
    let response = browser.post_form("/setup", &fields).await;
    assert_eq!(
        response.status(),
        303,
        "the link still works after fixing the form"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_experiment_created_from_the_ui_opens_in_the_editor() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    let browser = app.browser(&ada).await;
    let dashboard = browser.page("/").await;
    assert!(dashboard.contains("action=\"/experiments\""));
    let response = browser.post_form("/experiments", &[]).await;
    assert_eq!(response.status(), 303);
    let id = redirected_id(&response);
    let html = browser.page(&format!("/experiments/{id}")).await;
    assert!(html.contains("id=\"entity-form\""));
    let view = api_view(&app, &ada, id).await;
    assert_eq!(view["title"], "Untitled");
    assert_eq!(view["userid"], ada.id);
    assert_eq!(view["team"], ada.team_id);
    assert_eq!(view["status_title"], "Running", "the team's default status");
    let list = browser.page("/experiments").await;
    assert!(list.contains(&format!("href=\"/experiments/{id}\"")));
    app.stop().await;
}

#[tokio::test]
async fn saving_the_editor_form_changes_the_entry_and_answers_json_when_asked() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    let id = entry(&app, &ada, json!({"title": "Draft"})).await;
    let browser = app.browser(&ada).await;
    let html = browser.page(&format!("/experiments/{id}")).await;
    let base = base_heads(&html);
    let response = browser
        .post_form(
            &format!("/experiments/{id}/save"),
            &[
                ("base", &base),
                ("title", "Soil pH"),
                ("date", "2026-11-29"),
                ("tags", "soil, ph"),
                ("body", "Plot 4:\r\n\r\n- pH 6.5\r\n"),
                ("content_type", "2"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), format!("/experiments/{id}"));
    let view = api_view(&app, &ada, id).await;
    assert_eq!(view["title"], "Soil pH");
    assert_eq!(view["date"], "2026-11-29");
    assert_eq!(view["tags"], "ph|soil");
    assert_eq!(view["body"], "Plot 4:\n\n- pH 6.5\n", "CRLF become LF");
    assert!(
        view["body_html"]
            .as_str()
            .unwrap()
            .contains("<li>pH 6.5</li>")
    );

    let response = save_json(
        &browser,
        id,
        &[
            ("base", view["heads"].as_str().unwrap()),
            ("title", "Soil pH, plot 4"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let saved: Value = response.json().await.unwrap();
    assert_eq!(saved["changed"], true);
    assert_eq!(saved["merged"], false);
    let view = api_view(&app, &ada, id).await;
    assert_eq!(view["title"], "Soil pH, plot 4");
    assert_eq!(saved["heads"], view["heads"]);
    assert!(!saved["heads"].as_str().unwrap().is_empty());

    // Saving the same values changes nothing.
    let again: Value = save_json(&browser, id, &[("title", "Soil pH, plot 4")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["changed"], false);
    assert_eq!(again["heads"], view["heads"]);

    // Bad values are refused, as JSON for the script and as a page for the form.
    let response = save_json(&browser, id, &[("date", "29/11/2026")]).await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert!(body["description"].as_str().unwrap().starts_with("date:"));
    let response = browser
        .post_form(&format!("/experiments/{id}/save"), &[("rating", "lots")])
        .await;
    assert_eq!(response.status(), 422);
    assert!(response.text().await.unwrap().contains("rating"));
    assert_eq!(api_view(&app, &ada, id).await["date"], "2026-11-29");
    app.stop().await;
}

#[tokio::test]
async fn two_saves_from_the_same_version_on_different_paragraphs_both_survive() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let original = "First paragraph.\n\nSecond paragraph.\n";
    let id = entry(
        &app,
        &ada,
        json!({"title": "Shared", "body": original, "canwrite_base": 30}),
    )
    .await;
    let ada_browser = app.browser(&ada).await;
    let bob_browser = app.browser(&bob).await;
    let page = format!("/experiments/{id}");
    let ada_base = base_heads(&ada_browser.page(&page).await);
    let bob_base = base_heads(&bob_browser.page(&page).await);
    assert_eq!(ada_base, bob_base);

    let first: Value = save_json(
        &ada_browser,
        id,
        &[
            ("base", &ada_base),
            ("title", "Shared"),
            (
                "body",
                "First paragraph, edited by Ada.\n\nSecond paragraph.\n",
            ),
        ],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        (first["changed"].clone(), first["merged"].clone()),
        (json!(true), json!(false))
    );
    let second: Value = save_json(
        &bob_browser,
        id,
        &[
            ("base", &bob_base),
            ("title", "Shared"),
            (
                "body",
                "First paragraph.\n\nSecond paragraph, edited by Bob.\n",
            ),
        ],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(second["merged"], true, "{second}");

    let view = api_view(&app, &ada, id).await;
    assert_eq!(
        view["body"],
        "First paragraph, edited by Ada.\n\nSecond paragraph, edited by Bob.\n"
    );
    assert_eq!(view["has_conflicts"], false);
    let html = ada_browser.page(&page).await;
    assert!(!html.contains("id=\"conflicts\""));
    assert!(html.contains("edited by Bob"));
    app.stop().await;
}

#[tokio::test]
async fn two_saves_of_different_titles_from_the_same_version_show_a_conflict_to_resolve() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    let id = entry(&app, &ada, json!({"title": "Original"})).await;
    let tab1 = app.browser(&ada).await;
    let tab2 = app.browser(&ada).await;
    let page = format!("/experiments/{id}");
    let base = base_heads(&tab1.page(&page).await);
    for (tab, title) in [(&tab1, "Alpha"), (&tab2, "Beta")] {
        let response = tab
            .post_form(
                &format!("{page}/save"),
                &[("base", &base), ("title", title)],
            )
            .await;
        assert_eq!(response.status(), 303);
    }
    let html = tab1.page(&page).await;
    assert!(html.contains("id=\"conflicts\""), "{html}");
    let conflict = between(&html, "id=\"conflicts\"", "</section>");
    assert!(conflict.contains("data-field=\"title\""));
    let values = all_between(&conflict, "class=\"conflict-value\">", "<");
    assert_eq!(values.len(), 2);
    assert!(values.contains(&"Alpha".to_owned()) && values.contains(&"Beta".to_owned()));
    let view = api_view(&app, &ada, id).await;
    assert_eq!(view["has_conflicts"], true);
    assert!(["Alpha", "Beta"].contains(&view["title"].as_str().unwrap()));

    let response = tab1
        .post_form(
            &format!("{page}/resolve"),
            &[("field", "title"), ("value", "Beta")],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), format!("{page}#conflicts"));
    let html = tab1.page(&page).await;
    assert!(!html.contains("id=\"conflicts\""));
    let view = api_view(&app, &ada, id).await;
    assert_eq!(view["title"], "Beta");
    assert_eq!(view["has_conflicts"], false);

    let response = tab1
        .post_form(
            &format!("{page}/resolve"),
            &[("field", "body"), ("value", "x")],
        )
        .await;
    assert_eq!(response.status(), 422, "only fields that can conflict");
    app.stop().await;
}

#[tokio::test]
async fn steps_are_added_and_ticked_recording_who_did_them() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let id = entry(
        &app,
        &ada,
        json!({"title": "Protocol", "canwrite_base": 30}),
    )
    .await;
    let page = format!("/experiments/{id}");
    let ada_browser = app.browser(&ada).await;
    let response = ada_browser
        .post_form(&format!("{page}/steps"), &[("body", "Weigh the samples")])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), format!("{page}#steps"));
    let response = ada_browser
        .post_form(&format!("{page}/steps"), &[("body", "  ")])
        .await;
    assert_eq!(response.status(), 422);

    let bob_browser = app.browser(&bob).await;
    let html = bob_browser.page(&page).await;
    let step = between(&html, &format!("action=\"{page}/steps/"), "/toggle\"");
    let response = bob_browser
        .post_form(&format!("{page}/steps/{step}/toggle"), &[])
        .await;
    assert_eq!(response.status(), 303);
    let view = api_view(&app, &ada, id).await;
    let steps = view["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0]["body"], "Weigh the samples");
    assert_eq!(steps[0]["finished"], 1);
    assert_eq!(steps[0]["finished_by"], bob.id);
    assert!(steps[0]["finished_time"].is_string());
    let html = ada_browser.page(&page).await;
    assert!(
        html.contains("faite par bob Test"),
        "the page names who did it"
    );

    let response = ada_browser
        .post_form(&format!("{page}/steps/{step}/toggle"), &[])
        .await;
    assert_eq!(response.status(), 303);
    let view = api_view(&app, &ada, id).await;
    assert_eq!(view["steps"][0]["finished"], 0);
    assert!(view["steps"][0]["finished_by"].is_null());
    let response = ada_browser
        .post_form(&format!("{page}/steps/nosuchstep/toggle"), &[])
        .await;
    assert_eq!(response.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn comments_are_posted_and_shown_with_their_author() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let id = entry(&app, &ada, json!({"title": "Results", "canwrite_base": 30})).await;
    let page = format!("/experiments/{id}");
    let bob_browser = app.browser(&bob).await;
    let response = bob_browser
        .post_form(
            &format!("{page}/comments"),
            &[("body", "Looks <b>good</b>")],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), format!("{page}#comments"));
    let response = bob_browser
        .post_form(&format!("{page}/comments"), &[("body", "   ")])
        .await;
    assert_eq!(response.status(), 422);

    let ada_browser = app.browser(&ada).await;
    let html = ada_browser.page(&page).await;
    let comments = between(&html, "id=\"comments\"", "</section>");
    assert!(comments.contains("bob Test"));
    assert!(
        comments.contains("Looks &#60;b&#62;good&#60;/b&#62;")
            || comments.contains("Looks &lt;b&gt;good&lt;/b&gt;"),
        "comments are escaped: {comments}"
    );
    let view = api_view(&app, &ada, id).await;
    assert_eq!(view["comments"][0]["comment"], "Looks <b>good</b>");
    assert_eq!(view["comments"][0]["userid"], bob.id);

    // Only the author deletes a comment.
    let comment = view["comments"][0]["id"].as_str().unwrap().to_owned();
    let response = ada_browser
        .post_form(&format!("{page}/comments/{comment}/delete"), &[])
        .await;
    assert_eq!(response.status(), 403);
    let response = bob_browser
        .post_form(&format!("{page}/comments/{comment}/delete"), &[])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(api_view(&app, &ada, id).await["comments"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn a_reader_who_may_not_write_can_still_comment() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    let reader = app.user("reader@lab.fr", "Ecology", false).await;
    let id = entry(
        &app,
        &ada,
        json!({"title": "Results", "canread_base": 30, "canwrite_base": 10}),
    )
    .await;
    let page = format!("/experiments/{id}");
    let browser = app.browser(&reader).await;
    let html = browser.page(&page).await;
    assert!(!html.contains("id=\"entity-form\""), "read only");
    assert!(
        html.contains(&format!("action=\"{page}/comments\"")),
        "the page offers a reader the comment form"
    );
    let response = browser
        .post_form(&format!("{page}/comments"), &[("body", "Which plot?")])
        .await;
    assert_eq!(response.status(), 303, "anyone who may read may comment");
    let view = api_view(&app, &ada, id).await;
    assert_eq!(view["comments"][0]["comment"], "Which plot?");
    assert_eq!(view["comments"][0]["userid"], reader.id);
    // Commenting opens nothing else: steps and content still need write access.
    let response = browser
        .post_form(&format!("{page}/steps"), &[("body", "Sneaky step")])
        .await;
    assert_eq!(response.status(), 403);
    let response = browser
        .post_form(&format!("{page}/save"), &[("title", "Sneaky title")])
        .await;
    assert_eq!(response.status(), 403);
    let view = api_view(&app, &ada, id).await;
    assert_eq!(view["title"], "Results");
    assert_eq!(view["steps"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn links_go_to_readable_entries_and_an_unreadable_target_is_404() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    let carol = app.user("carol@lab.fr", "Chemistry", false).await;
    let from = entry(&app, &ada, json!({"title": "Analysis"})).await;
    let to = entry(&app, &ada, json!({"title": "Sampling"})).await;
    let secret = entry(&app, &carol, json!({"title": "Secret", "canread_base": 10})).await;
    let browser = app.browser(&ada).await;
    let page = format!("/experiments/{from}");

    let response = browser
        .post_form(&format!("{page}/links"), &[("target", &format!("#{to}"))])
        .await;
    assert_eq!(response.status(), 303);
    let html = browser.page(&page).await;
    let links = between(&html, "id=\"links\"", "</section>");
    assert!(links.contains(&format!("href=\"/experiments/{to}\">#{to} Sampling")));
    let target_html = browser.page(&format!("/experiments/{to}")).await;
    assert!(
        target_html.contains(&format!("href=\"/experiments/{from}\">#{from} Analysis")),
        "the target shows where it is linked from"
    );

    let refused = browser
        .post_form(&format!("{page}/links"), &[("target", &secret.to_string())])
        .await;
    assert_eq!(refused.status(), 404);
    let refused_html = refused.text().await.unwrap();
    let missing = browser
        .post_form(
            &format!("{page}/links"),
            &[("target", &(secret + 100).to_string())],
        )
        .await;
    assert_eq!(missing.status(), 404);
    assert_eq!(refused_html, missing.text().await.unwrap());
    let response = browser
        .post_form(&format!("{page}/links"), &[("target", "abc")])
        .await;
    assert_eq!(response.status(), 422);
    let response = browser
        .post_form(&format!("{page}/links"), &[("target", &from.to_string())])
        .await;
    assert_eq!(response.status(), 422, "no link to itself");

    let view = api_view(&app, &ada, from).await;
    let linked: Vec<i64> = view["experiments_links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["entityid"].as_i64().unwrap())
        .collect();
    assert_eq!(linked, vec![to]);
    app.stop().await;
}

#[tokio::test]
async fn the_owner_changes_access_and_a_member_who_is_not_admin_gets_403() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let id = entry(
        &app,
        &ada,
        json!({"title": "Private soon", "canread_base": 30}),
    )
    .await;
    let page = format!("/experiments/{id}");
    let ada_browser = app.browser(&ada).await;
    let bob_browser = app.browser(&bob).await;
    let bob_html = bob_browser.page(&page).await;
    assert!(!bob_html.contains(&format!("action=\"{page}/access\"")));

    let response = bob_browser
        .post_form(
            &format!("{page}/access"),
            &[("read_base", "50"), ("write_base", "50")],
        )
        .await;
    assert_eq!(response.status(), 403);
    let view = api_view(&app, &ada, id).await;
    assert_eq!(
        (view["canread_base"].clone(), view["canwrite_base"].clone()),
        (json!(30), json!(20))
    );

    let ada_html = ada_browser.page(&page).await;
    assert!(ada_html.contains(&format!("action=\"{page}/access\"")));
    let response = ada_browser
        .post_form(
            &format!("{page}/access"),
            &[("read_base", "10"), ("write_base", "10")],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), format!("{page}#access"));
    assert_eq!(bob_browser.get(&page).await.status(), 404);

    let response = ada_browser
        .post_form(
            &format!("{page}/access"),
            &[
                ("read_base", "10"),
                ("read_users", "bob@lab.fr"),
                ("write_base", "10"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let bob_html = bob_browser.page(&page).await;
    assert!(!bob_html.contains("id=\"entity-form\""), "read only");
    assert!(bob_html.contains("id=\"entity-title\""));
    let view = api_view(&app, &ada, id).await;
    assert_eq!(
        view["canread"],
        json!({"teams": [], "teamgroups": [], "users": [bob.id]}).to_string()
    );

    let response = ada_browser
        .post_form(
            &format!("{page}/access"),
            &[
                ("read_base", "10"),
                ("read_users", "nobody@lab.fr"),
                ("write_base", "10"),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);
    let response = ada_browser
        .post_form(
            &format!("{page}/access"),
            &[("read_base", "35"), ("write_base", "10")],
        )
        .await;
    assert_eq!(response.status(), 422);
    assert_eq!(bob_browser.get(&page).await.status(), 200, "unchanged");
    app.stop().await;
}

#[tokio::test]
async fn deleting_hides_an_entry_and_restoring_brings_it_back() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let id = entry(&app, &ada, json!({"title": "Disposable"})).await;
    let page = format!("/experiments/{id}");
    let ada_browser = app.browser(&ada).await;
    let bob_browser = app.browser(&bob).await;

    let response = bob_browser.post_form(&format!("{page}/delete"), &[]).await;
    assert_eq!(response.status(), 403, "a reader cannot delete");
    let response = ada_browser.post_form(&format!("{page}/delete"), &[]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/experiments");
    assert_eq!(api_view(&app, &ada, id).await["state"], 3);
    assert_eq!(bob_browser.get(&page).await.status(), 404);
    let list = ada_browser.page("/experiments").await;
    assert!(!list.contains(&format!("href=\"/experiments/{id}\"")));
    let trash = ada_browser.page("/experiments?deleted=1").await;
    assert!(trash.contains(&format!("href=\"/experiments/{id}\"")));
    let bob_trash = bob_browser.page("/experiments?deleted=1").await;
    assert!(
        !bob_trash.contains(&format!("href=\"/experiments/{id}\"")),
        "the bin shows only what one may restore"
    );
    let deleted_page = ada_browser.page(&page).await;
    assert!(
        !deleted_page.contains("id=\"entity-form\""),
        "no editing while deleted"
    );
    let response = ada_browser
        .post_form(&format!("{page}/save"), &[("title", "Edited in the bin")])
        .await;
    assert_eq!(response.status(), 409);

    let response = ada_browser.post_form(&format!("{page}/restore"), &[]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), page);
    let view = api_view(&app, &ada, id).await;
    assert_eq!(view["state"], 1);
    assert_eq!(view["title"], "Disposable");
    assert_eq!(bob_browser.get(&page).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn duplicating_copies_the_entry_with_i_appended_to_the_title() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    let id = entry(
        &app,
        &ada,
        json!({"title": "Soil pH", "body": "Method A", "tags": ["soil"]}),
    )
    .await;
    let browser = app.browser(&ada).await;
    let response = browser
        .post_form(&format!("/experiments/{id}/steps"), &[("body", "Dry")])
        .await;
    assert_eq!(response.status(), 303);
    let response = browser
        .post_form(&format!("/experiments/{id}/duplicate"), &[])
        .await;
    assert_eq!(response.status(), 303);
    let copy = redirected_id(&response);
    assert_ne!(copy, id);
    let view = api_view(&app, &ada, copy).await;
    assert_eq!(view["title"], "Soil pH I");
    assert_eq!(view["body"], "Method A");
    assert_eq!(view["tags"], "soil");
    assert_eq!(view["steps"][0]["body"], "Dry");
    assert_eq!(view["steps"][0]["finished"], 0);
    assert_eq!(
        api_view(&app, &ada, id).await["title"],
        "Soil pH",
        "the original stays"
    );
    app.stop().await;
}

#[tokio::test]
async fn history_lists_every_version_and_versions_and_diffs_can_be_viewed() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    let id = entry(
        &app,
        &ada,
        json!({"title": "First title", "body": "alpha\n"}),
    )
    .await;
    let other = entry(&app, &ada, json!({"title": "Other"})).await;
    let browser = app.browser(&ada).await;
    let page = format!("/experiments/{id}");
    for (title, body) in [
        ("Second title", "alpha\nbeta\n"),
        ("Third title", "gamma\nbeta\n"),
    ] {
        let response = browser
            .post_form(&format!("{page}/save"), &[("title", title), ("body", body)])
            .await;
        assert_eq!(response.status(), 303);
    }

    let html = browser.page(&format!("{page}/history")).await;
    let hashes = all_between(&html, &format!("href=\"{page}/versions/"), "\"");
    assert_eq!(hashes.len(), 3, "create and two saves");
    assert_eq!(html.matches("class=\"version-row\"").count(), 3);
    let (newest, oldest) = (&hashes[0], &hashes[2]);

    let old = browser.page(&format!("{page}/versions/{oldest}")).await;
    assert!(old.contains("<h1>First title</h1>"));
    assert!(old.contains("alpha"));
    let new = browser.page(&format!("{page}/versions/{newest}")).await;
    assert!(new.contains("<h1>Third title</h1>"));

    let diff = browser
        .page(&format!("{page}/diff?from={oldest}&to={newest}"))
        .await;
    assert!(diff.contains("First title") && diff.contains("Third title"));
    let body_diff = between(&diff, "id=\"body-diff\">", "</pre>");
    assert!(body_diff.contains("- alpha"), "{body_diff}");
    assert!(body_diff.contains("+ gamma"), "{body_diff}");
    assert!(body_diff.contains("+ beta"), "{body_diff}");

    // A version of another entry, or a made-up one, is not found here.
    let other_history = browser.page(&format!("/experiments/{other}/history")).await;
    let other_hash = all_between(
        &other_history,
        &format!("/experiments/{other}/versions/"),
        "\"",
    )
    .remove(0);
    assert_eq!(
        browser
            .get(&format!("{page}/versions/{other_hash}"))
            .await
            .status(),
        404
    );
    assert_eq!(
        browser
            .get(&format!("{page}/versions/{}", "ab".repeat(32)))
            .await
            .status(),
        404
    );
    assert_eq!(
        browser
            .get(&format!("{page}/versions/nothex"))
            .await
            .status(),
        422
    );
    assert_eq!(browser.get(&format!("{page}/diff")).await.status(), 422);
    app.stop().await;
}

#[tokio::test]
async fn switching_the_language_changes_html_lang_and_is_remembered() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    let browser = app.browser(&ada).await;
    let html = browser.page("/").await;
    assert_eq!(html_lang(&html), "fr", "French by default");
    assert!(html.contains("Tableau de bord"));
    let response = browser
        .client
        .post(format!("{}/language", browser.base))
        .header("referer", format!("{}/experiments", app.url))
        .form(&[("lang", "en"), ("csrf", &browser.csrf().await)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        location(&response),
        "/experiments",
        "back where the form was"
    );
    let html = browser.page("/").await;
    assert_eq!(html_lang(&html), "en");
    assert!(html.contains("Dashboard"));
    // Saved on the account: a new session is in English too.
    let again = app.browser(&ada).await;
    assert_eq!(html_lang(&again.page("/experiments").await), "en");
    let response = browser.post_form("/language", &[("lang", "de")]).await;
    assert_eq!(response.status(), 422);

    // A visitor's choice is kept in a cookie.
    let visitor = app.anonymous_browser();
    assert_eq!(html_lang(&visitor.page("/login").await), "fr");
    let response = visitor.post_form("/language", &[("lang", "en")]).await;
    assert_eq!(response.status(), 303);
    let html = visitor.page("/login").await;
    assert_eq!(html_lang(&html), "en");
    assert!(html.contains("Sign in"));
    app.stop().await;
}

#[tokio::test]
async fn accept_language_en_gives_english_pages() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", false).await;
    let browser = app.anonymous_browser();
    let get = |path: &'static str, accept: &'static str| {
        browser
            .client
            .get(format!("{}{path}", app.url))
            .header("accept-language", accept)
            .send()
    };
    let html = get("/login", "en-GB,en;q=0.9,fr;q=0.5")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(html_lang(&html), "en");
    assert!(html.contains("Sign in"));
    let html = get("/login", "de-DE,fr;q=0.8,en;q=0.5")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(html_lang(&html), "fr");
    assert!(html.contains("Connexion"));

    let signed_in = app.browser(&ada).await;
    let response = signed_in
        .client
        .get(format!("{}/", app.url))
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    let html = response.text().await.unwrap();
    assert_eq!(html_lang(&html), "en");
    assert!(html.contains("Dashboard"));
    let response = signed_in
        .client
        .get(format!("{}/experiments/999", app.url))
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("This page does not exist, or you do not have access to it.")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_team_admin_adds_members_creates_groups_and_statuses_and_members_cannot() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin@lab.fr", "Ecology", true).await;
    let member = app.user("member@lab.fr", "Ecology", false).await;
    let newcomer = app.user("newcomer@lab.fr", "Chemistry", false).await;
    let team = admin.team_id;
    let member_browser = app.browser(&member).await;

    // Refusals first: nothing may change.
    assert_eq!(member_browser.get("/team").await.status(), 403);
    for (path, fields) in [
        ("/team/members", vec![("email", "newcomer@lab.fr")]),
        ("/team/groups", vec![("name", "Rogue group")]),
        (
            "/team/terms/status",
            vec![("title", "Rogue"), ("color", "#000000")],
        ),
    ] {
        let response = member_browser.post_form(path, &fields).await;
        assert_eq!(response.status(), 403, "{path}");
    }
    assert!(!member_browser.page("/").await.contains("href=\"/team\""));
    assert_eq!(app.store.team_members(team).await.unwrap().len(), 2);
    assert!(app.store.groups(team).await.unwrap().is_empty());

    let browser = app.browser(&admin).await;
    assert!(browser.page("/").await.contains("href=\"/team\""));
    let html = browser.page("/team").await;
    assert!(html.contains("member@lab.fr"));
    let response = browser
        .post_form("/team/members", &[("email", "newcomer@lab.fr")])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/team");
    assert!(app.subject(&newcomer).await.is_member(team));
    let response = browser
        .post_form("/team/members", &[("email", "ghost@lab.fr")])
        .await;
    assert_eq!(response.status(), 422);

    let response = browser
        .post_form("/team/groups", &[("name", "Soil project")])
        .await;
    assert_eq!(response.status(), 303);
    let groups = app.store.groups(team).await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].name, "Soil project");
    let response = browser
        .post_form(
            &format!("/team/groups/{}/members", groups[0].id),
            &[("email", "member@lab.fr")],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(app.subject(&member).await.groups, vec![groups[0].id]);

    let response = browser
        .post_form(
            "/team/terms/status",
            &[("title", "Queued"), ("color", "#ffaa00")],
        )
        .await;
    assert_eq!(response.status(), 303);
    let statuses = app
        .store
        .terms(Vocabulary::Status, team, Family::Experiment)
        .await
        .unwrap();
    let queued = statuses
        .iter()
        .find(|s| s.title == "Queued")
        .expect("new status");
    assert!(browser.page("/team").await.contains("value=\"Queued\""));
    // The new status can be used at once.
    let api = app.api(&app.api_key(&member, true).await);
    let id = api
        .create(
            "/experiments",
            json!({"title": "Waiting", "status": queued.id}),
        )
        .await;
    assert_eq!(
        api.json(&format!("/experiments/{id}")).await["status_title"],
        "Queued"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_sysadmin_creates_teams_and_users_and_others_cannot() {
    let app = TestApp::spawn().await;
    let root = app.user("root@lab.fr", "Ecology", true).await;
    app.store.set_sysadmin(root.id, true).await.unwrap();
    let admin = app.user("admin@lab.fr", "Ecology", true).await;

    // A team admin is not an instance admin.
    let admin_browser = app.browser(&admin).await;
    assert_eq!(admin_browser.get("/admin").await.status(), 403);
    let response = admin_browser
        .post_form("/admin/teams", &[("name", "Rogue team")])
        .await;
    assert_eq!(response.status(), 403);
    let response = admin_browser
        .post_form(
            "/admin/users",
            &[
                ("email", "rogue@lab.fr"),
                ("firstname", "Rogue"),
                ("lastname", "User"),
                ("password", "long enough password"),
            ],
        )
        .await;
    assert_eq!(response.status(), 403);
    assert!(app.store.team_by_name("Rogue team").await.is_err());
    assert!(app.store.user_by_email("rogue@lab.fr").await.is_err());

    let browser = app.browser(&root).await;
    assert!(browser.page("/").await.contains("href=\"/admin\""));
    browser.page("/admin").await;
    let response = browser
        .post_form("/admin/teams", &[("name", "Physics")])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/admin");
    let physics = app.store.team_by_name("Physics").await.unwrap().id;
    let response = browser
        .post_form("/admin/teams", &[("name", "Physics")])
        .await;
    assert_eq!(response.status(), 409, "team names are unique");

    let physics_field = physics.to_string();
    let response = browser
        .post_form(
            "/admin/users",
            &[
                ("email", "marie@lab.fr"),
                ("firstname", "Marie"),
                ("lastname", "Curie"),
                ("password", "radium and polonium"),
                ("team", &physics_field),
                ("is_admin", "1"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let marie = app.store.user_by_email("marie@lab.fr").await.unwrap();
    assert!(!marie.is_sysadmin);
    assert!(
        app.store
            .subject(marie.id)
            .await
            .unwrap()
            .is_team_admin(physics)
    );
    assert!(browser.page("/admin").await.contains("marie@lab.fr"));
    let marie = TestUser {
        id: marie.id,
        email: marie.email,
        password: "radium and polonium".into(),
        team_id: physics,
    };
    let marie_browser = app.browser(&marie).await;
    assert!(marie_browser.page("/team").await.contains("Physics"));
    assert_eq!(marie_browser.get("/admin").await.status(), 403);

    let response = browser
        .post_form(
            "/admin/users",
            &[
                ("email", "marie@lab.fr"),
                ("firstname", "Marie"),
                ("lastname", "Again"),
                ("password", "radium and polonium"),
            ],
        )
        .await;
    assert_eq!(response.status(), 409, "e-mails are unique");
    app.stop().await;
}
