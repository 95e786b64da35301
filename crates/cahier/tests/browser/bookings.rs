//! The booking calendar in a browser: a team admin creates a resource category and a bookable
//! resource, links it from an experiment, follows "Book for this experiment", books by
//! dragging over the week grid, and the booking appears in the resource's `.ics` feed, read
//! by a real iCalendar parser (Python's `icalendar` from PyPI, in a fresh venv).

use crate::harness::Ui;
use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use serde_json::json;

/// Runs a command to completion; panics with a clear message (never skips) when it fails.
fn run(what: &str, command: &mut std::process::Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not start it ({e}); is python3 installed?"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

/// Prints `SUMMARY|DTSTART|DTEND|STATUS` of every event of the calendar on stdin.
const PARSE_ICS: &str = "import sys, icalendar
cal = icalendar.Calendar.from_ical(sys.stdin.buffer.read())
for event in cal.walk('VEVENT'):
    print('|'.join([str(event['SUMMARY']), event['DTSTART'].dt.isoformat(), event['DTEND'].dt.isoformat(), str(event['STATUS'])]))
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_linked_from_an_experiment_is_booked_by_dragging_and_shows_in_its_feed() {
    let ui = Ui::launch().await;
    let chef = ui.app.user("chef@lab.fr", "Ecology", true).await;
    let api = ui.app.api(&ui.app.api_key(&chef, true).await);

    // A resource category, then a resource in it, from the pages.
    ui.sign_in(&chef).await;
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
    let category = api.json("/teams/current/resources_categories").await[0]["id"]
        .as_i64()
        .unwrap();
    ui.goto("/resources").await;
    ui.js(
        "document.getElementById('new-category').value = arguments[0];",
        vec![json!(category.to_string())],
    )
    .await;
    ui.click("#new-entity").await;
    let page = ui.wait_path(r"^/resources/\d+$").await;
    let resource: i64 = page.rsplit('/').next().unwrap().parse().unwrap();
    api.patch(
        &format!("/items/{resource}"),
        json!({"title": "Confocal microscope"}),
    )
    .await;

    // Its owner makes it bookable on its calendar page.
    ui.goto(&format!("/resources/{resource}")).await;
    ui.click("#calendar-link").await;
    ui.wait_path(&format!("^/resources/{resource}/calendar$"))
        .await;
    ui.click("#rules-form input[name=is_bookable]").await;
    ui.click("#rules-submit").await;
    ui.wait_js(
        "the rules saved",
        "location.search.includes('msg=rules') && document.getElementById('booking-form') !== null",
    )
    .await;

    // Linked from an experiment, whose page offers to book it for the experiment.
    let experiment = api
        .create("/experiments", json!({"title": "Root imaging"}))
        .await;
    ui.goto(&format!("/experiments/{experiment}")).await;
    ui.type_into("#link-target", &resource.to_string()).await;
    ui.click("form[action$='/links'] button[type=submit]").await;
    ui.wait_js(
        "the book link next to the linked resource",
        "document.querySelector('#links a.book-link') !== null",
    )
    .await;
    ui.click("#links a.book-link").await;
    ui.wait_path(&format!("^/resources/{resource}/calendar$"))
        .await;
    let prefilled = ui
        .find("#booking-experiment")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(prefilled.as_deref(), Some(experiment.to_string().as_str()));

    // Tomorrow's week (the link opened this week, which may end today).
    let day = 86_400_000;
    let tomorrow = cahier_core::clock::format_date((ui.app.store.now_ms() / day + 1) * day);
    ui.goto(&format!(
        "/resources/{resource}/calendar?date={tomorrow}&experiment={experiment}"
    ))
    .await;
    ui.wait_js(
        "the script to show the drag hint",
        "document.getElementById('drag-hint').hidden === false",
    )
    .await;
    ui.find("#booking-title").await.clear().await.unwrap();
    ui.type_into("#booking-title", "Root imaging, plate 3")
        .await;

    // Drag from 09:00 to 10:00: two hours, filled into the form and submitted.
    let from = format!("td[data-start='{tomorrow}T09:00']");
    let to = format!("td[data-start='{tomorrow}T10:00']");
    ui.js(
        "document.querySelector(arguments[0]).scrollIntoView({block: 'center'});",
        vec![json!(from)],
    )
    .await;
    let first = ui.find(&from).await;
    let last = ui.find(&to).await;
    let drag = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement {
            element: first,
            duration: None,
            x: 0.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::MoveToElement {
            element: last,
            duration: Some(std::time::Duration::from_millis(200)),
            x: 0.0,
            y: 0.0,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    ui.client.perform_actions(drag).await.expect("drag");
    ui.wait_js(
        "the booking made by the drag",
        "location.search.includes('msg=booked') && document.querySelector('#bookings li') !== null",
    )
    .await;
    let listed = ui.find("#bookings").await.text().await.unwrap();
    assert!(listed.contains("Root imaging, plate 3"), "{listed}");
    assert!(listed.contains("09:00–11:00"), "{listed}");
    assert!(
        listed.contains("Root imaging"),
        "linked experiment: {listed}"
    );
    let events = api.json(&format!("/events?item={resource}")).await;
    assert_eq!(events[0]["experiment"], experiment);
    assert_eq!(events[0]["start"], format!("{tomorrow}T09:00:00Z"));
    assert_eq!(events[0]["end"], format!("{tomorrow}T11:00:00Z"));
    crate::no_sideways_scrolling(&ui).await;
    ui.screenshot("booking-week").await;

    // The feed address, made on the page, opened without a session by a calendar parser.
    ui.click("#feed-renew").await;
    let url = ui
        .wait_js(
            "the resource's feed address",
            "document.getElementById('resource-feed') && document.getElementById('resource-feed').value",
        )
        .await;
    let url = url.as_str().unwrap().to_owned();
    assert!(
        url.ends_with(&format!("/resources/{resource}.ics")),
        "{url}"
    );
    let ics = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    let venv = tempfile::tempdir().expect("temp dir");
    let venv_path = venv.path().to_path_buf();
    let parsed = tokio::task::spawn_blocking(move || {
        run(
            "python3 -m venv",
            std::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv_path),
        );
        let python = venv_path.join("bin/python");
        run(
            "pip install icalendar (is PyPI reachable from this machine?)",
            std::process::Command::new(&python).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--timeout",
                "30",
                "--retries",
                "2",
                "icalendar",
            ]),
        );
        let ics_path = venv_path.join("feed.ics");
        std::fs::write(&ics_path, &ics).expect("write feed");
        run(
            "icalendar parsing the feed",
            std::process::Command::new(&python)
                .args(["-c", PARSE_ICS])
                .stdin(std::fs::File::open(&ics_path).expect("feed file")),
        )
    })
    .await
    .expect("blocking task");
    assert_eq!(
        parsed.trim(),
        format!(
            "Confocal microscope · Root imaging, plate 3|{tomorrow}T09:00:00+00:00|{tomorrow}T11:00:00+00:00|CONFIRMED"
        )
    );
    ui.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_experiment_of_a_booking_is_picked_by_typing_part_of_its_title() {
    let ui = Ui::launch().await;
    let chef = ui.app.user("chef@lab.fr", "Ecology", true).await;
    let api = ui.app.api(&ui.app.api_key(&chef, true).await);
    api.create(
        "/teams/current/resources_categories",
        json!({"title": "Instruments", "is_default": true}),
    )
    .await;
    let resource = api
        .create("/items", json!({"title": "Growth chamber"}))
        .await;
    let rules = ui
        .app
        .browser(&chef)
        .await
        .post_form(
            &format!("/resources/{resource}/booking-rules"),
            &[("is_bookable", "1"), ("is_cancellable", "1")],
        )
        .await;
    assert_eq!(rules.status(), 303);
    api.create("/experiments", json!({"title": "Root imaging"}))
        .await;
    let stomata = api
        .create("/experiments", json!({"title": "Leaf stomata count"}))
        .await;

    ui.sign_in(&chef).await;
    let day = 86_400_000;
    let tomorrow = cahier_core::clock::format_date((ui.app.store.now_ms() / day + 1) * day);
    ui.goto(&format!("/resources/{resource}/calendar?date={tomorrow}"))
        .await;
    ui.js(
        "document.getElementById('booking-start').value = arguments[0] + 'T14:00';
         document.getElementById('booking-end').value = arguments[0] + 'T15:00';",
        vec![json!(tomorrow)],
    )
    .await;
    // Focused empty, it offers recent experiments; typing narrows to the matching one.
    ui.type_into("#booking-experiment", "stomata").await;
    ui.wait_js(
        "only the matching experiment offered",
        "(() => { const o = Array.from(document.querySelectorAll('#booking-experiment-results [role=option]'));
           return o.length === 1 && o[0].textContent.includes('Leaf stomata count')
             && document.getElementById('booking-experiment').getAttribute('aria-expanded') === 'true'; })()",
    )
    .await;
    let offered = ui
        .find("#booking-experiment-results")
        .await
        .text()
        .await
        .unwrap();
    assert!(!offered.contains("Root imaging"), "{offered}");
    ui.click("#booking-experiment-results [role=option]").await;
    let picked = ui
        .find("#booking-experiment")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(
        picked.as_deref(),
        Some(format!("#{stomata} Leaf stomata count").as_str())
    );
    ui.click("#booking-submit").await;
    ui.wait_js(
        "the booking made",
        "location.search.includes('msg=booked') && document.querySelector('#bookings li') !== null",
    )
    .await;
    let listed = ui.find("#bookings").await.text().await.unwrap();
    assert!(listed.contains("Leaf stomata count"), "{listed}");
    let events = api.json(&format!("/events?item={resource}")).await;
    assert_eq!(events[0]["experiment"], stomata);
    ui.finish().await;
}
