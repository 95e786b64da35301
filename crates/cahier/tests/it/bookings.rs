//! The booking calendar over real HTTP: every rule of a resource and its message, the
//! concurrency guarantee (many parallel requests for one slot, exactly one wins), eLabFTW's
//! `events` API shapes, who may see, book, cancel and approve, the calendar pages and the
//! iCal feeds behind their secret token.

use cahier_core::booking::format_instant;
use cahier_testkit::{Api, Browser, TestApp, TestUser, location};
use serde_json::{Value, json};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// A lab: Ada administers Ecology and owns a confocal microscope; Bob and Carol are members;
/// Dave is in another team.
struct Lab {
    app: TestApp,
    ada: TestUser,
    bob: TestUser,
    carol: TestUser,
    ada_api: Api,
    bob_api: Api,
    carol_api: Api,
    dave_api: Api,
    microscope: i64,
    /// Tomorrow 00:00 UTC.
    tomorrow: i64,
}

async fn lab() -> Lab {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", true).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let carol = app.user("carol@lab.fr", "Ecology", false).await;
    let dave = app.user("dave@lab.fr", "Botany", false).await;
    let ada_api = app.api(&app.api_key(&ada, true).await);
    let bob_api = app.api(&app.api_key(&bob, true).await);
    let carol_api = app.api(&app.api_key(&carol, true).await);
    let dave_api = app.api(&app.api_key(&dave, true).await);
    ada_api
        .create(
            "/teams/current/resources_categories",
            json!({"title": "Instruments", "is_default": true}),
        )
        .await;
    let microscope = ada_api
        .create("/items", json!({"title": "Confocal LSM 880"}))
        .await;
    let tomorrow = (app.store.now_ms() / DAY + 1) * DAY;
    Lab {
        app,
        ada,
        bob,
        carol,
        ada_api,
        bob_api,
        carol_api,
        dave_api,
        microscope,
        tomorrow,
    }
}

/// Sets the microscope's rules through the resource's calendar page, as its owner.
async fn set_rules(lab: &Lab, fields: &[(&str, &str)]) {
    let browser = lab.app.browser(&lab.ada).await;
    let response = browser
        .post_form(
            &format!("/resources/{}/booking-rules", lab.microscope),
            fields,
        )
        .await;
    assert_eq!(response.status(), 303, "rules saved");
}

fn slot(title: &str, start: i64, end: i64) -> Value {
    json!({"title": title, "start": format_instant(start), "end": format_instant(end)})
}

/// Asserts the status of a refused request and returns its description.
async fn refused(response: reqwest::Response, status: u16) -> String {
    let got = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "{body}");
    assert_eq!(body["code"], status, "{body}");
    assert!(body["message"].is_string(), "{body}");
    body["description"].as_str().unwrap_or_default().to_owned()
}

async fn book(api: &Api, item: i64, body: Value) -> reqwest::Response {
    api.post(&format!("/events/{item}"), body).await
}

#[tokio::test]
async fn every_booking_rule_is_enforced_with_a_message_that_names_it() {
    let lab = lab().await;
    let (t, m) = (lab.tomorrow, lab.microscope);
    let api = &lab.bob_api;

    // Not bookable until its owner allows it.
    let why = refused(
        book(api, m, slot("Imaging", t + 10 * HOUR, t + 11 * HOUR)).await,
        409,
    )
    .await;
    assert!(why.contains("not bookable"), "{why}");

    set_rules(
        &lab,
        &[
            ("is_bookable", "1"),
            ("max_minutes", "120"),
            ("max_slots", "2"),
            ("window_days", "14"),
            ("is_cancellable", "1"),
            ("cancel_minutes", "60"),
        ],
    )
    .await;

    let response = book(api, m, slot("Imaging roots", t + 10 * HOUR, t + 11 * HOUR)).await;
    assert_eq!(response.status(), 201);
    let at = location(&response);
    assert!(at.contains("/api/v2/event/"), "{at}");
    let first: i64 = at.rsplit('/').next().unwrap().parse().unwrap();

    // eLabFTW's event shape.
    let event = api.json(&format!("/event/{first}")).await;
    assert_eq!(event["id"], first);
    assert_eq!(event["item"], m);
    assert_eq!(event["item_title"], "Confocal LSM 880");
    assert_eq!(event["title"], "Imaging roots");
    assert_eq!(event["start"], format_instant(t + 10 * HOUR));
    assert_eq!(event["end"], format_instant(t + 11 * HOUR));
    assert_eq!(event["userid"], lab.bob.id);
    assert_eq!(event["state"], "confirmed");
    assert_eq!(event["event_duration_minutes"], 60);
    assert!(event["experiment"].is_null());

    // Overlap: 409 naming the booking in the way.
    let why = refused(
        book(
            &lab.carol_api,
            m,
            slot("Mine", t + 10 * HOUR + HOUR / 2, t + 12 * HOUR),
        )
        .await,
        409,
    )
    .await;
    assert!(why.contains("already booked"), "{why}");
    assert!(why.contains("Imaging roots"), "{why}");
    // Touching is not overlapping.
    assert_eq!(
        book(
            &lab.carol_api,
            m,
            slot("Right after", t + 11 * HOUR, t + 12 * HOUR)
        )
        .await
        .status(),
        201
    );

    // Longest duration.
    let why = refused(
        book(api, m, slot("Long", t + 13 * HOUR, t + 16 * HOUR)).await,
        422,
    )
    .await;
    assert_eq!(
        why,
        "end: a booking of this resource lasts at most 2 h (asked: 3 h)"
    );
    // End before start.
    let why = refused(
        book(api, m, slot("Backwards", t + 14 * HOUR, t + 13 * HOUR)).await,
        422,
    )
    .await;
    assert!(why.contains("after the start"), "{why}");
    // In the past.
    let why = refused(
        book(api, m, slot("Yesterday", t - 30 * HOUR, t - 29 * HOUR)).await,
        422,
    )
    .await;
    assert!(why.contains("in the past"), "{why}");
    // Beyond the booking window.
    let far = t + 20 * DAY;
    let why = refused(book(api, m, slot("Later", far, far + HOUR)).await, 422).await;
    assert!(why.contains("14 days ahead"), "{why}");
    // Unreadable dates and missing fields.
    let why = refused(
        book(
            api,
            m,
            json!({"title": "x", "start": "tomorrow", "end": "later"}),
        )
        .await,
        422,
    )
    .await;
    assert!(why.starts_with("start:"), "{why}");
    let why = refused(book(api, m, json!({"title": "x"})).await, 422).await;
    assert!(why.starts_with("start:"), "{why}");
    let why = refused(
        book(api, m, slot("  ", t + 15 * HOUR, t + 16 * HOUR)).await,
        422,
    )
    .await;
    assert!(why.starts_with("title:"), "{why}");
    // An experiment one cannot read cannot be linked.
    let mut body = slot("Linked", t + 15 * HOUR, t + 16 * HOUR);
    body["experiment"] = json!(999_999);
    let why = refused(book(api, m, body).await, 422).await;
    assert!(why.starts_with("experiment:"), "{why}");

    // Upcoming bookings per user: two allowed.
    let experiment = api
        .create("/experiments", json!({"title": "Root growth"}))
        .await;
    let mut body = slot("Second", t + 15 * HOUR, t + 16 * HOUR);
    body["experiment"] = json!(experiment);
    let second = api.create(&format!("/events/{m}"), body).await;
    let event = api.json(&format!("/event/{second}")).await;
    assert_eq!(event["experiment"], experiment);
    assert_eq!(event["experiment_title"], "Root growth");
    let why = refused(
        book(api, m, slot("Third", t + 17 * HOUR, t + 18 * HOUR)).await,
        409,
    )
    .await;
    assert!(why.contains("most allowed is 2"), "{why}");

    // The owner manages the resource: past bookings and beyond the window are allowed.
    assert_eq!(
        book(
            &lab.ada_api,
            m,
            slot("Maintenance", t - 30 * HOUR, t - 29 * HOUR)
        )
        .await
        .status(),
        201
    );
    assert_eq!(
        book(&lab.ada_api, m, slot("Service visit", far, far + HOUR))
            .await
            .status(),
        201
    );

    // The list: by time range and resource, in start order.
    let list = api
        .json(&format!(
            "/events?start={}&end={}&item={m}",
            format_instant(t),
            format_instant(t + DAY)
        ))
        .await;
    let titles: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Imaging roots", "Right after", "Second"]);

    // Moving a booking obeys the same rules.
    let why = refused(
        api.patch(
            &format!("/event/{first}"),
            json!({"start": format_instant(t + 11 * HOUR), "end": format_instant(t + 12 * HOUR)}),
        )
        .await,
        409,
    )
    .await;
    assert!(why.contains("Right after"), "{why}");
    let moved = api
        .patch(
            &format!("/event/{first}"),
            json!({"start": format_instant(t + 8 * HOUR), "end": format_instant(t + 9 * HOUR), "title": "Imaging leaves"}),
        )
        .await;
    assert_eq!(moved.status(), 200);
    let moved: Value = moved.json().await.unwrap();
    assert_eq!(moved["title"], "Imaging leaves");
    assert_eq!(moved["start"], format_instant(t + 8 * HOUR));
    lab.app.stop().await;
}

#[tokio::test]
async fn cancelling_follows_the_rules_and_only_the_booker_or_a_manager_may() {
    let lab = lab().await;
    let (t, m) = (lab.tomorrow, lab.microscope);
    set_rules(
        &lab,
        &[
            ("is_bookable", "1"),
            ("is_cancellable", "1"),
            ("cancel_minutes", "60"),
        ],
    )
    .await;
    let now = lab.app.store.now_ms();
    let soon = lab
        .bob_api
        .create(
            &format!("/events/{m}"),
            slot("Soon", now + 30 * 60_000, now + 90 * 60_000),
        )
        .await;
    let later = lab
        .bob_api
        .create(
            &format!("/events/{m}"),
            slot("Later", t + 30 * HOUR, t + 31 * HOUR),
        )
        .await;

    // Within the deadline the booker is refused and told why; others are forbidden.
    let why = refused(lab.bob_api.delete(&format!("/event/{soon}")).await, 409).await;
    assert!(why.contains("until 1 h before"), "{why}");
    let why = refused(lab.carol_api.delete(&format!("/event/{later}")).await, 403).await;
    assert!(why.contains("only the booker"), "{why}");
    // A user of another team does not even see it.
    refused(lab.dave_api.delete(&format!("/event/{later}")).await, 404).await;

    // The booker before the deadline; the owner at any time.
    assert_eq!(
        lab.bob_api
            .delete(&format!("/event/{later}"))
            .await
            .status(),
        204
    );
    let why = refused(lab.bob_api.delete(&format!("/event/{later}")).await, 409).await;
    assert!(why.contains("already cancelled"), "{why}");
    assert_eq!(
        lab.ada_api.delete(&format!("/event/{soon}")).await.status(),
        204
    );
    // Cancelled bookings free their slot and leave the list.
    assert_eq!(lab.bob_api.json("/events").await, json!([]));
    assert_eq!(
        book(
            &lab.carol_api,
            m,
            slot("Freed", t + 30 * HOUR, t + 31 * HOUR)
        )
        .await
        .status(),
        201
    );

    // Not cancellable at all by bookers.
    set_rules(&lab, &[("is_bookable", "1")]).await;
    let fixed = lab
        .bob_api
        .create(
            &format!("/events/{m}"),
            slot("Fixed", t + 40 * HOUR, t + 41 * HOUR),
        )
        .await;
    let why = refused(lab.bob_api.delete(&format!("/event/{fixed}")).await, 409).await;
    assert!(why.contains("cannot be cancelled"), "{why}");
    lab.app.stop().await;
}

#[tokio::test]
async fn bookings_needing_approval_hold_the_slot_until_the_owner_decides() {
    let lab = lab().await;
    let (t, m) = (lab.tomorrow, lab.microscope);
    set_rules(
        &lab,
        &[
            ("is_bookable", "1"),
            ("is_cancellable", "1"),
            ("needs_approval", "1"),
        ],
    )
    .await;
    let asked = lab
        .bob_api
        .create(
            &format!("/events/{m}"),
            slot("Please", t + 9 * HOUR, t + 10 * HOUR),
        )
        .await;
    assert_eq!(
        lab.bob_api.json(&format!("/event/{asked}")).await["state"],
        "pending"
    );
    // A pending booking holds its slot.
    let why = refused(
        book(
            &lab.carol_api,
            m,
            slot("Me too", t + 9 * HOUR, t + 10 * HOUR),
        )
        .await,
        409,
    )
    .await;
    assert!(why.contains("Please"), "{why}");
    // Only the owner (or a team admin) decides.
    let why = refused(
        lab.bob_api
            .patch(&format!("/event/{asked}"), json!({"action": "approve"}))
            .await,
        403,
    )
    .await;
    assert!(why.contains("approve"), "{why}");
    let approved: Value = lab
        .ada_api
        .patch(&format!("/event/{asked}"), json!({"action": "approve"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(approved["state"], "confirmed");
    let why = refused(
        lab.ada_api
            .patch(&format!("/event/{asked}"), json!({"action": "refuse"}))
            .await,
        409,
    )
    .await;
    assert!(why.contains("not waiting for approval"), "{why}");

    // Refusing frees the slot.
    let other = lab
        .carol_api
        .create(
            &format!("/events/{m}"),
            slot("Carol", t + 11 * HOUR, t + 12 * HOUR),
        )
        .await;
    let refused_event: Value = lab
        .ada_api
        .patch(&format!("/event/{other}"), json!({"action": "refuse"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(refused_event["state"], "refused");
    assert_eq!(
        book(&lab.bob_api, m, slot("Bob", t + 11 * HOUR, t + 12 * HOUR))
            .await
            .status(),
        201
    );
    // The owner's own bookings need no approval.
    let own = lab
        .ada_api
        .create(
            &format!("/events/{m}"),
            slot("Owner", t + 13 * HOUR, t + 14 * HOUR),
        )
        .await;
    assert_eq!(
        lab.ada_api.json(&format!("/event/{own}")).await["state"],
        "confirmed"
    );
    lab.app.stop().await;
}

#[tokio::test]
async fn of_twenty_parallel_requests_for_one_slot_exactly_one_wins() {
    let lab = lab().await;
    let (t, m) = (lab.tomorrow, lab.microscope);
    set_rules(&lab, &[("is_bookable", "1")]).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..20 {
        let from = if n % 2 == 0 {
            &lab.bob_api
        } else {
            &lab.carol_api
        };
        let api = Api {
            client: from.client.clone(),
            base: from.base.clone(),
        };
        // Slightly different slots that all overlap 10:00–10:30.
        let body = slot(
            &format!("Attempt {n}"),
            t + 10 * HOUR - n * 60_000,
            t + 10 * HOUR + HOUR / 2,
        );
        tasks.spawn(async move {
            let response = api.post(&format!("/events/{m}"), body).await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body)
        });
    }
    let mut created = 0;
    let mut conflicts = 0;
    while let Some(result) = tasks.join_next().await {
        let (status, body) = result.unwrap();
        match status {
            201 => created += 1,
            409 => {
                conflicts += 1;
                let why = body["description"].as_str().unwrap();
                assert!(why.contains("already booked"), "{why}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((created, conflicts), (1, 19));
    let list = lab.bob_api.json(&format!("/events?item={m}")).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    lab.app.stop().await;
}

#[tokio::test]
async fn people_who_cannot_read_a_resource_neither_see_nor_book_it() {
    let lab = lab().await;
    let (t, m) = (lab.tomorrow, lab.microscope);
    set_rules(&lab, &[("is_bookable", "1")]).await;
    let event = lab
        .bob_api
        .create(
            &format!("/events/{m}"),
            slot("Team only", t + 9 * HOUR, t + 10 * HOUR),
        )
        .await;
    let why = refused(
        book(
            &lab.dave_api,
            m,
            slot("Outsider", t + 11 * HOUR, t + 12 * HOUR),
        )
        .await,
        404,
    )
    .await;
    assert!(why.contains("not found"), "{why}");
    refused(lab.dave_api.get(&format!("/event/{event}")).await, 404).await;
    assert_eq!(lab.dave_api.json("/events").await, json!([]));
    // Only the owner or a team admin changes the rules.
    let browser = lab.app.browser(&lab.bob).await;
    let response = browser
        .post_form(
            &format!("/resources/{m}/booking-rules"),
            &[("is_bookable", "1"), ("can_overlap", "1")],
        )
        .await;
    assert_eq!(response.status(), 403);
    // A read-only key cannot book.
    let read_only = lab.app.api(&lab.app.api_key(&lab.bob, false).await);
    refused(
        book(
            &read_only,
            m,
            slot("Read only", t + 12 * HOUR, t + 13 * HOUR),
        )
        .await,
        403,
    )
    .await;
    lab.app.stop().await;
}

async fn page(browser: &Browser, path: &str) -> (u16, String) {
    let response = browser.get(path).await;
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn the_calendar_pages_book_through_the_form_and_keep_the_input_after_an_error() {
    let lab = lab().await;
    let (t, m) = (lab.tomorrow, lab.microscope);
    set_rules(&lab, &[("is_bookable", "1"), ("is_cancellable", "1")]).await;
    let browser = lab.app.browser(&lab.bob).await;
    let date = cahier_core::clock::format_date(t);
    let calendar = format!("/resources/{m}/calendar");
    let (status, html) = page(&browser, &format!("{calendar}?date={date}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"week-grid\""), "week view by default");
    assert!(html.contains(&format!("data-start=\"{date}T09:00\"")));

    let start = format!("{date}T09:00");
    let end = format!("{date}T10:30");
    let scope = format!("resource:{m}");
    let response = browser
        .post_form(
            "/calendar/book",
            &[
                ("scope", &scope),
                ("view", "week"),
                ("date", &date),
                ("item", &m.to_string()),
                ("title", "Calibration"),
                ("start", &start),
                ("end", &end),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let target = location(&response);
    assert!(target.contains("msg=booked"), "{target}");
    let (_, html) = page(&browser, &target).await;
    assert!(html.contains("Calibration"), "the booking is listed");
    assert!(html.contains("09:00–10:30"), "{html}");

    // The same slot again: 409, the message on the page, the typed title kept.
    let response = browser
        .post_form(
            "/calendar/book",
            &[
                ("scope", &scope),
                ("view", "week"),
                ("date", &date),
                ("item", &m.to_string()),
                ("title", "Second try"),
                ("start", &start),
                ("end", &end),
            ],
        )
        .await;
    assert_eq!(response.status(), 409);
    let html = response.text().await.unwrap();
    assert!(html.contains("id=\"booking-error\""), "{html}");
    assert!(html.contains("already booked"), "{html}");
    assert!(html.contains("value=\"Second try\""), "{html}");

    // Month view and the team calendar show it too.
    let (status, html) = page(&browser, &format!("{calendar}?view=month&date={date}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"month-grid\"") && html.contains("Calibration"));
    let (status, html) = page(&browser, &format!("/calendar?date={date}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("Confocal LSM 880 · Calibration"), "{html}");

    // Cancel from the page.
    let id = lab.bob_api.json("/events").await[0]["id"].as_i64().unwrap();
    let back = format!("{calendar}?view=week&date={date}");
    let response = browser
        .post_form(
            &format!("/calendar/bookings/{id}/cancel"),
            &[("back", &back)],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert!(location(&response).contains("msg=cancelled"));
    assert_eq!(lab.bob_api.json("/events").await, json!([]));
    lab.app.stop().await;
}

/// The start of the move form of booking `id` in a calendar page, if there is one.
fn move_start_value(html: &str, id: i64) -> Option<String> {
    let input = html.split(&format!("id=\"move-start-{id}\"")).nth(1)?;
    let value = input.split("value=\"").nth(1)?;
    Some(value.split('"').next()?.to_owned())
}

/// Posts the move form of booking `id`.
async fn post_move(browser: &Browser, id: i64, fields: Vec<(String, String)>) -> reqwest::Response {
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    browser
        .post_form(&format!("/calendar/bookings/{id}/move"), &fields)
        .await
}

#[tokio::test]
async fn the_calendar_page_moves_a_booking_through_its_form_and_shows_refusals_beside_it() {
    let lab = lab().await;
    let (t, m) = (lab.tomorrow, lab.microscope);
    set_rules(&lab, &[("is_bookable", "1"), ("is_cancellable", "1")]).await;
    let imaging = lab
        .bob_api
        .create(
            &format!("/events/{m}"),
            slot("Imaging", t + 9 * HOUR, t + 10 * HOUR),
        )
        .await;
    let carols = lab
        .carol_api
        .create(
            &format!("/events/{m}"),
            slot("Carol's run", t + 14 * HOUR, t + 15 * HOUR),
        )
        .await;
    let date = cahier_core::clock::format_date(t);
    let calendar = format!("/resources/{m}/calendar?view=week&date={date}");
    let scope = format!("resource:{m}");
    let move_to = |start: String, end: String| {
        vec![
            ("scope".to_owned(), scope.clone()),
            ("view".to_owned(), "week".to_owned()),
            ("date".to_owned(), date.clone()),
            ("start".to_owned(), start),
            ("end".to_owned(), end),
        ]
    };
    let start_of = |id: i64| {
        let api = &lab.ada_api;
        async move { api.json(&format!("/event/{id}")).await["start"].clone() }
    };

    // Bob gets a form on his booking, prefilled with its times, and none on Carol's.
    let bob = lab.app.browser(&lab.bob).await;
    let (status, html) = page(&bob, &calendar).await;
    assert_eq!(status, 200);
    assert!(
        html.contains(&format!("id=\"move-form-{imaging}\"")),
        "{html}"
    );
    assert_eq!(
        move_start_value(&html, imaging).as_deref(),
        Some(format!("{date}T09:00").as_str())
    );
    assert!(
        html.contains(&format!("id=\"move-end-{imaging}\"")),
        "{html}"
    );
    assert!(html.contains("Déplacer"), "{html}");
    assert!(
        !html.contains(&format!("id=\"move-form-{carols}\"")),
        "{html}"
    );

    // Into Carol's slot: 409, the message beside the form, the typed times kept, nothing moved.
    let response = post_move(
        &bob,
        imaging,
        move_to(format!("{date}T14:30"), format!("{date}T15:30")),
    )
    .await;
    assert_eq!(response.status(), 409);
    let html = response.text().await.unwrap();
    let error = html
        .split(&format!("id=\"move-error-{imaging}\">"))
        .nth(1)
        .expect("the error beside the booking");
    assert!(error.starts_with("this slot is already booked"), "{html}");
    assert!(
        error.contains("Carol"),
        "names the booking in the way: {html}"
    );
    assert_eq!(
        move_start_value(&html, imaging).as_deref(),
        Some(format!("{date}T14:30").as_str())
    );
    assert!(html.contains("<details class=\"move\" open>"), "{html}");
    // Into the past, or with a time that is not one: 422, nothing moved.
    let yesterday = cahier_core::clock::format_date(t - 2 * DAY);
    let response = post_move(
        &bob,
        imaging,
        move_to(format!("{yesterday}T09:00"), format!("{yesterday}T10:00")),
    )
    .await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("in the past"), "{html}");
    let response = post_move(&bob, imaging, move_to("soon".into(), "later".into())).await;
    assert_eq!(response.status(), 422);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("enter a date and time")
    );
    assert_eq!(start_of(imaging).await, format_instant(t + 9 * HOUR));

    // Carol gets no form on Bob's booking, and a forged one is refused (403, said on the
    // page); without the CSRF token nothing is even tried.
    let carol = lab.app.browser(&lab.carol).await;
    let (_, html) = page(&carol, &calendar).await;
    assert!(
        !html.contains(&format!("id=\"move-form-{imaging}\"")),
        "{html}"
    );
    assert!(
        html.contains(&format!("id=\"move-form-{carols}\"")),
        "{html}"
    );
    let response = post_move(
        &carol,
        imaging,
        move_to(format!("{date}T11:00"), format!("{date}T12:00")),
    )
    .await;
    assert_eq!(response.status(), 403);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("only the booker, the resource&#x27;s owner or a team admin")
            || html.contains("only the booker, the resource&#39;s owner or a team admin"),
        "{html}"
    );
    let response = bob
        .post_form_without_csrf(
            &format!("/calendar/bookings/{imaging}/move"),
            &[
                ("scope", &scope),
                ("start", &format!("{date}T11:00")),
                ("end", &format!("{date}T12:00")),
            ],
        )
        .await;
    assert_eq!(response.status(), 403);
    assert_eq!(start_of(imaging).await, format_instant(t + 9 * HOUR));

    // The owner manages the resource: she gets the form on Bob's booking too.
    let (_, html) = page(&lab.app.browser(&lab.ada).await, &calendar).await;
    assert!(
        html.contains(&format!("id=\"move-form-{imaging}\"")),
        "{html}"
    );

    // Moved to next week: the calendar of the new start, saying so.
    let next_week = cahier_core::clock::format_date(t + 7 * DAY);
    let response = post_move(
        &bob,
        imaging,
        move_to(format!("{next_week}T11:00"), format!("{next_week}T12:30")),
    )
    .await;
    assert_eq!(response.status(), 303);
    let target = location(&response);
    assert_eq!(
        target,
        format!("/resources/{m}/calendar?view=week&date={next_week}&msg=moved")
    );
    let (_, html) = page(&bob, &target).await;
    assert!(html.contains("Réservation déplacée."), "{html}");
    assert!(html.contains("11:00–12:30 Imaging ("), "{html}");
    assert_eq!(
        start_of(imaging).await,
        format_instant(t + 7 * DAY + 11 * HOUR)
    );

    // Once the booker may no longer book the resource (canbook narrowed to its managers),
    // a move is refused with the reason, though the form is still his.
    let response = lab
        .ada_api
        .patch(&format!("/items/{m}"), json!({"canbook_base": 20}))
        .await;
    assert_eq!(response.status(), 200);
    let response = post_move(
        &bob,
        imaging,
        move_to(format!("{next_week}T13:00"), format!("{next_week}T14:00")),
    )
    .await;
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("canbook"));
    assert_eq!(
        start_of(imaging).await,
        format_instant(t + 7 * DAY + 11 * HOUR)
    );
    lab.app.stop().await;
}

#[tokio::test]
async fn ical_feeds_answer_only_to_their_secret_token() {
    let lab = lab().await;
    let (t, m) = (lab.tomorrow, lab.microscope);
    set_rules(&lab, &[("is_bookable", "1")]).await;
    lab.bob_api
        .create(
            &format!("/events/{m}"),
            slot("Imaging; roots, day 2", t + 9 * HOUR, t + 10 * HOUR),
        )
        .await;
    let browser = lab.app.browser(&lab.bob).await;
    let response = browser
        .post_form("/calendar/feed/renew", &[("back", "/calendar")])
        .await;
    assert_eq!(response.status(), 303);
    let token = lab
        .app
        .store
        .calendar_token(lab.bob.id)
        .await
        .unwrap()
        .expect("a token");
    let (_, html) = page(&browser, &format!("/resources/{m}/calendar")).await;
    assert!(
        html.contains(&format!("/ical/{token}/resources/{m}.ics")),
        "URL shown"
    );

    let anonymous = reqwest::Client::new();
    let get = |path: String| {
        let client = anonymous.clone();
        let url = format!("{}{path}", lab.app.url);
        async move { client.get(url).send().await.unwrap() }
    };
    for path in [
        format!("/ical/{token}/mine.ics"),
        format!("/ical/{token}/resources/{m}.ics"),
    ] {
        let response = get(path.clone()).await;
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/calendar")
        );
        let ics = response.text().await.unwrap();
        assert!(ics.starts_with("BEGIN:VCALENDAR\r\n"), "{ics}");
        assert!(ics.contains("BEGIN:VEVENT"), "{ics}");
        // Text values are escaped as RFC 5545 says.
        assert!(ics.contains("Imaging\\; roots\\, day 2"), "{ics}");
        let start = format_instant(t + 9 * HOUR).replace(['-', ':'], "");
        assert!(ics.contains(&format!("DTSTART:{start}")), "{ics}");
    }
    // A wrong token, or a resource the token's user cannot read: 404.
    assert_eq!(
        get(format!("/ical/{}/mine.ics", "0".repeat(48)))
            .await
            .status(),
        404
    );
    let dave = lab.app.user("dave2@lab.fr", "Botany", false).await;
    let dave_token = lab.app.store.renew_calendar_token(dave.id).await.unwrap();
    assert_eq!(
        get(format!("/ical/{dave_token}/resources/{m}.ics"))
            .await
            .status(),
        404
    );
    // Revoked: the old URL stops working.
    browser
        .post_form("/calendar/feed/revoke", &[("back", "/calendar")])
        .await;
    assert_eq!(get(format!("/ical/{token}/mine.ics")).await.status(), 404);
    lab.app.stop().await;
}

#[tokio::test]
async fn elabftw_patch_targets_work_and_redirects_stay_on_cahier() {
    let lab = lab().await;
    let (t, m) = (lab.tomorrow, lab.microscope);
    set_rules(&lab, &[("is_bookable", "1"), ("is_cancellable", "1")]).await;
    let experiment = lab
        .bob_api
        .create("/experiments", json!({"title": "Leaf count"}))
        .await;
    let mut body = slot("Counting", t + 9 * HOUR, t + 10 * HOUR);
    body["experiment"] = json!(experiment);
    let id = lab.bob_api.create(&format!("/events/{m}"), body).await;
    let path = format!("/event/{id}");

    let renamed: Value = lab
        .bob_api
        .patch(
            &path,
            json!({"target": "title", "content": "Counting leaves"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["title"], "Counting leaves");
    assert_eq!(renamed["experiment"], experiment, "other fields unchanged");
    let unlinked: Value = lab
        .bob_api
        .patch(&path, json!({"experiment": null}))
        .await
        .json()
        .await
        .unwrap();
    assert!(unlinked["experiment"].is_null(), "{unlinked}");
    let why = refused(
        lab.bob_api.patch(&path, json!({"target": "colour"})).await,
        422,
    )
    .await;
    assert!(why.starts_with("target:"), "{why}");
    // Another team's reader cannot change it; a team member who did not book it may not either.
    refused(
        lab.dave_api.patch(&path, json!({"title": "Mine"})).await,
        404,
    )
    .await;
    refused(
        lab.carol_api.patch(&path, json!({"title": "Mine"})).await,
        403,
    )
    .await;

    // A `back` pointing elsewhere is ignored: the redirect stays on Cahier.
    let browser = lab.app.browser(&lab.bob).await;
    let response = browser
        .post_form(
            &format!("/calendar/bookings/{id}/cancel"),
            &[("back", "//evil.example/phish")],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/calendar?msg=cancelled");
    lab.app.stop().await;
}
