//! Browser end-to-end tests: a real headless Chromium, driven over WebDriver (chromedriver),
//! against a real server started in-process, or (the field test, `field_replicas`) against a
//! lab server and field replicas run as processes of the built binary. They check what unit
//! and HTTP tests cannot: that the script (autosave, preview, shortcuts, language switch) works
//! in a browser, and that what the field syncs shows up whole on the lab's pages.
//!
//! Needs Debian's `chromium` and `chromium-driver` (CI installs them); `CHROMIUM_BIN` and
//! `CHROMEDRIVER_BIN` override their paths. Screenshots go to `$CARGO_TARGET_DIR/screenshots/`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod attachments;
mod booking_requests;
mod bookings;
mod exports;
mod field_replicas;
mod harness;
mod resources;
mod stock;
mod team_tags;
mod templates;

use fantoccini::key::Key;
use harness::Ui;
use serde_json::{Value, json};

const TABLE: &str = "| Sample | pH |\n|---|---|\n| A | 6.5 |";

/// The JavaScript condition "the save indicator says saved".
const SAVED: &str = "document.querySelector('#save-state').dataset.state === 'saved'";

/// Reloads the page and waits until the new document has loaded (a marker set on the old one
/// is gone), so nothing is read from the page being replaced.
async fn reload(ui: &Ui) {
    ui.js("window.__beforeReload = true;", vec![]).await;
    ui.client.refresh().await.expect("reload");
    ui.wait_js(
        "the reloaded page",
        "!window.__beforeReload && document.readyState === 'complete'",
    )
    .await;
}

/// Whether some cell of a table inside `container` reads `text`.
async fn has_cell(ui: &Ui, container: &str, text: &str) -> bool {
    ui.js(
        "return [...document.querySelectorAll(arguments[0] + ' table td')]
            .some(td => td.textContent.trim() === arguments[1]);",
        vec![json!(container), json!(text)],
    )
    .await
        == Value::Bool(true)
}

/// Whether leaving the page now would ask for confirmation. Leaving by clicking a link first
/// takes the focus from the field being edited, then fires `beforeunload`; this does both in
/// one step and reports whether the page asked to stay. (Headless Chromium under chromedriver
/// never shows the "Leave site?" prompt itself, so the test asks the page.)
async fn leaving_warns(ui: &Ui) -> bool {
    ui.js(
        "document.activeElement.blur();
         const event = new Event('beforeunload', { cancelable: true });
         window.dispatchEvent(event);
         return event.defaultPrevented;",
        vec![],
    )
    .await
        == Value::Bool(true)
}

/// Asserts the page fits the window's width: no element sticks out to the right (which would
/// add a horizontal scroll bar).
async fn no_sideways_scrolling(ui: &Ui) {
    let wide = ui
        .js(
            "const width = document.documentElement.clientWidth;
             return [...document.body.querySelectorAll('*')]
               .filter(e => e.getBoundingClientRect().right > width + 1)
               .map(e => e.outerHTML.slice(0, 120));",
            vec![],
        )
        .await;
    assert_eq!(wide, json!([]), "elements wider than the window");
}

async fn text_of(ui: &Ui, css: &str) -> String {
    ui.find(css).await.text().await.expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_researcher_writes_an_experiment_with_a_table_and_finds_it_after_reload() {
    let ui = Ui::launch().await;
    let ada = ui.app.user("ada@lab.fr", "Ecology", false).await;
    ui.sign_in(&ada).await;

    // The dashboard's "new experiment" button.
    ui.click("main form[action='/experiments'] button[type=submit]")
        .await;
    let page = ui.wait_path(r"^/experiments/\d+$").await;
    ui.find("#title").await.clear().await.expect("clear title");
    ui.type_into("#title", "Buffer pH, plot 4").await;
    ui.type_into("#body", TABLE).await;

    // No save button needed: the autosave runs after a pause in typing.
    ui.wait_js("the autosave to report saved", SAVED).await;
    ui.wait_js(
        "the live preview to show the table",
        "[...document.querySelectorAll('#preview table td')].some(td => td.textContent.trim() === '6.5')",
    )
    .await;
    ui.screenshot("experiment-with-table").await;
    no_sideways_scrolling(&ui).await;

    reload(&ui).await;
    assert_eq!(ui.path().await, page);
    assert!(
        has_cell(&ui, "#preview", "6.5").await,
        "the saved body renders as a table after reload: {}",
        ui.find("#preview").await.html(true).await.unwrap()
    );
    assert_eq!(
        ui.find("#title")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("Buffer pH, plot 4")
    );
    let body = ui.find("#body").await.prop("value").await.unwrap();
    assert_eq!(body.as_deref(), Some(TABLE));

    // Another row, then straight to the history with the cursor still in the text.
    ui.type_into("#body", "\n| B | 7.0 |").await;
    ui.wait_js("the second autosave", SAVED).await;
    ui.click("#history-link").await;
    ui.wait_path(r"^/experiments/\d+/history$").await;
    // Every save is a version: creation, then the autosaves.
    let rows = ui
        .wait_js(
            "the versions table",
            "document.querySelectorAll('#versions tbody tr').length",
        )
        .await;
    assert!(rows.as_u64().unwrap() >= 3, "versions: {rows}");

    // The newest version shows both rows of the table.
    ui.click("#versions tbody tr:first-child a[href*='/versions/']")
        .await;
    ui.wait_path(r"^/experiments/\d+/versions/[0-9a-f,]+$")
        .await;
    assert!(has_cell(&ui, "#version-body", "6.5").await);
    assert!(has_cell(&ui, "#version-body", "7.0").await);
    assert_eq!(text_of(&ui, "main h1").await, "Buffer pH, plot 4");

    ui.goto("/experiments").await;
    let link = ui.find("table.list tbody a[href^='/experiments/']").await;
    assert_eq!(link.text().await.unwrap(), "Buffer pH, plot 4");
    no_sideways_scrolling(&ui).await;
    ui.screenshot("experiment-list").await;
    ui.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_language_changes_the_interface() {
    let ui = Ui::launch().await;
    let bea = ui.app.user("bea@lab.fr", "Ecology", false).await;
    ui.sign_in(&bea).await;
    ui.goto("/experiments").await;
    let lang = "document.documentElement.lang";
    assert_eq!(ui.js(&format!("return {lang};"), vec![]).await, "fr");
    assert_eq!(
        text_of(&ui, "header nav a[href='/experiments']").await,
        "Expériences"
    );
    // The script hides the select's submit button: choosing is enough.
    assert_eq!(
        ui.js(
            "return document.getElementById('lang-submit').hidden;",
            vec![]
        )
        .await,
        true
    );

    ui.find("#lang-select")
        .await
        .select_by_value("en")
        .await
        .expect("choose English");
    ui.wait_js("the page in English", &format!("{lang} === 'en'"))
        .await;
    assert_eq!(ui.path().await, "/experiments", "stays on the same page");
    assert_eq!(
        text_of(&ui, "header nav a[href='/experiments']").await,
        "Experiments"
    );
    assert_eq!(text_of(&ui, "main h1").await, "Experiments");

    // The choice follows the user around…
    ui.click("header nav a[href='/']").await;
    ui.wait_path("^/$").await;
    assert_eq!(ui.js(&format!("return {lang};"), vec![]).await, "en");
    assert_eq!(text_of(&ui, "header nav a[href='/']").await, "Dashboard");
    // …and survives signing out (the sign-in page stays in English) and in again.
    ui.click("header form[action='/logout'] button").await;
    ui.wait_path("^/login$").await;
    assert_eq!(ui.js(&format!("return {lang};"), vec![]).await, "en");
    assert_eq!(text_of(&ui, "main h1").await, "Sign in");
    ui.sign_in(&bea).await;
    assert_eq!(ui.js(&format!("return {lang};"), vec![]).await, "en");
    ui.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_only_user_can_reach_the_main_actions() {
    let ui = Ui::launch().await;
    let cyd = ui.app.user("cyd@lab.fr", "Ecology", false).await;
    ui.sign_in(&cyd).await;
    ui.goto("/experiments").await;
    let tab = char::from(Key::Tab);
    let enter = char::from(Key::Enter);
    let escape = char::from(Key::Escape);

    // The first Tab lands on the skip link, which shows itself with a visible focus ring.
    ui.press(&[tab]).await;
    let skip = ui
        .js(
            "const a = document.activeElement, r = a.getBoundingClientRect(), s = getComputedStyle(a);
             return { skip: a.classList.contains('skip'), href: a.getAttribute('href'),
                      onScreen: r.left >= 0 && r.top >= 0 && r.width > 0,
                      focusVisible: a.matches(':focus-visible'),
                      outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2 };",
            vec![],
        )
        .await;
    assert_eq!(
        skip,
        json!({"skip": true, "href": "#main", "onScreen": true, "focusVisible": true, "outline": true}),
        "first Tab stop"
    );
    ui.press(&[enter]).await;
    ui.wait_js(
        "the skip link to move focus to the content",
        "document.activeElement.id === 'main'",
    )
    .await;

    // "?" lists the shortcuts; Escape closes the list.
    ui.press(&['?']).await;
    ui.wait_js(
        "the shortcuts dialog",
        "document.getElementById('shortcuts').open",
    )
    .await;
    ui.press(&[escape]).await;
    ui.wait_js(
        "the shortcuts dialog to close",
        "!document.getElementById('shortcuts').open",
    )
    .await;

    // "n" (outside a field) creates an experiment.
    ui.press(&['n']).await;
    ui.wait_path(r"^/experiments/\d+$").await;
    ui.find("#entity-form").await;

    // On the new page: skip link, then the title is the first field; Ctrl+S saves.
    ui.press(&[tab, enter, tab]).await;
    ui.wait_js(
        "focus in the title",
        "document.activeElement.id === 'title'",
    )
    .await;
    let control = char::from(Key::Control);
    ui.chord(control, 'a').await;
    let title: Vec<char> = "Titration by keyboard".chars().collect();
    ui.press(&title).await;
    ui.chord(control, 's').await;
    ui.wait_js("Ctrl+S to save", SAVED).await;
    reload(&ui).await;
    assert_eq!(
        ui.find("#title")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("Titration by keyboard")
    );

    // "/" on the list jumps to the search field; Enter searches.
    ui.goto("/experiments").await;
    ui.press(&['/']).await;
    ui.wait_js(
        "focus in the search field",
        "document.activeElement.id === 'q'",
    )
    .await;
    let query: Vec<char> = "titration".chars().chain([enter]).collect();
    ui.press(&query).await;
    ui.wait_js(
        "the search results",
        "location.search.includes('q=titration') && document.readyState === 'complete'",
    )
    .await;
    assert_eq!(
        ui.find("#q").await.prop("value").await.unwrap().as_deref(),
        Some("titration"),
        "the shortcut key itself is not typed into the field"
    );
    assert_eq!(
        text_of(&ui, "table.list tbody a[href^='/experiments/']").await,
        "Titration by keyboard"
    );
    ui.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_with_unsaved_text_is_not_silent() {
    let ui = Ui::launch().await;
    let dan = ui.app.user("dan@lab.fr", "Ecology", false).await;
    ui.sign_in(&dan).await;
    ui.goto("/experiments").await;
    ui.click("#new-entity").await;
    let page = ui.wait_path(r"^/experiments/\d+$").await;
    ui.type_into("#body", "First reading: 6.5").await;
    ui.wait_js("the first autosave", SAVED).await;
    assert!(
        !leaving_warns(&ui).await,
        "once the page says saved, leaving right away needs no confirmation"
    );

    // The session ends while the page is open (signed out in another tab, expired): saving
    // cannot succeed, and the page must say so rather than claim it saved.
    let session = ui
        .client
        .get_named_cookie("cahier_session")
        .await
        .expect("session cookie");
    ui.app
        .store
        .delete_session(session.value())
        .await
        .expect("end the session");
    ui.type_into("#body", "\nSecond reading: 6.7").await;
    ui.wait_js(
        "the autosave to report the failure",
        "document.querySelector('#save-state').dataset.state === 'failed'",
    )
    .await;
    let both = "First reading: 6.5\nSecond reading: 6.7";
    assert_eq!(
        ui.find("#body")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some(both),
        "the text stays in the editor"
    );
    assert!(
        leaving_warns(&ui).await,
        "leaving with unsaved text asks for confirmation"
    );

    // Signing in again in another tab: the page keeps retrying and saves the text.
    let editor = ui.client.window().await.expect("window");
    let tab = ui.client.new_window(true).await.expect("new tab");
    ui.client
        .switch_to_window(tab.handle)
        .await
        .expect("switch");
    ui.sign_in(&dan).await;
    ui.client.close_window().await.expect("close tab");
    ui.client
        .switch_to_window(editor)
        .await
        .expect("switch back");
    ui.wait_js("the retried autosave", SAVED).await;
    assert!(!leaving_warns(&ui).await);
    reload(&ui).await;
    assert_eq!(ui.path().await, page);
    assert_eq!(
        ui.find("#body")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some(both)
    );
    ui.finish().await;
}
