//! The booking calendar across time zones and daylight saving, who may book (eLabFTW's
//! `canbook`), and the stock state in API item rows. The instance runs in UTC (TestApp's
//! setting); Bob works in Paris, Carol in New York. Dates are in 2027 so they stay ahead of the
//! clock; daylight saving starts in Europe on Sunday 28 March 2027.

use cahier_testkit::{Api, Browser, TestApp, TestUser};
use serde_json::{Value, json};

struct Lab {
    app: TestApp,
    ada: TestUser,
    bob: TestUser,
    ada_api: Api,
    bob_api: Api,
    carol_api: Api,
    bob_browser: Browser,
    carol_browser: Browser,
    microscope: i64,
}

async fn lab() -> Lab {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", true).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let carol = app.user("carol@lab.fr", "Ecology", false).await;
    let ada_api = app.api(&app.api_key(&ada, true).await);
    let bob_api = app.api(&app.api_key(&bob, true).await);
    let carol_api = app.api(&app.api_key(&carol, true).await);
    ada_api
        .create(
            "/teams/current/resources_categories",
            json!({"title": "Instruments", "is_default": true}),
        )
        .await;
    let microscope = ada_api
        .create("/items", json!({"title": "Confocal LSM 880"}))
        .await;
    let ada_browser = app.browser(&ada).await;
    let response = ada_browser
        .post_form(
            &format!("/resources/{microscope}/booking-rules"),
            &[("is_bookable", "1"), ("is_cancellable", "1")],
        )
        .await;
    assert_eq!(response.status(), 303);
    let bob_browser = app.browser(&bob).await;
    let carol_browser = app.browser(&carol).await;
    for (browser, zone) in [
        (&bob_browser, "Europe/Paris"),
        (&carol_browser, "America/New_York"),
    ] {
        let response = browser
            .post_form("/settings/time-zone", &[("time_zone", zone)])
            .await;
        assert_eq!(response.status(), 303, "zone saved");
    }
    Lab {
        app,
        ada,
        bob,
        ada_api,
        bob_api,
        carol_api,
        bob_browser,
        carol_browser,
        microscope,
    }
}

/// Books through the calendar's form, as the browser sends it; returns the status.
async fn book_in_form(lab: &Lab, start: &str, end: &str, title: &str) -> u16 {
    let m = lab.microscope.to_string();
    lab.bob_browser
        .post_form(
            "/calendar/book",
            &[
                ("scope", &format!("resource:{m}")),
                ("view", "week"),
                ("date", &start[..10]),
                ("item", &m),
                ("title", title),
                ("start", start),
                ("end", end),
                ("experiment", ""),
            ],
        )
        .await
        .status()
        .as_u16()
}

async fn events(api: &Api, m: i64) -> Vec<Value> {
    api.json(&format!("/events?item={m}"))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn by_title<'a>(events: &'a [Value], title: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["title"] == title)
        .unwrap_or_else(|| panic!("no event {title} in {events:?}"))
}

#[tokio::test]
async fn ten_o_clock_in_paris_is_the_right_instant_in_winter_and_summer_for_everyone() {
    let lab = lab().await;
    let m = lab.microscope;
    assert_eq!(
        book_in_form(
            &lab,
            "2027-01-14T10:00",
            "2027-01-14T11:30",
            "Winter imaging"
        )
        .await,
        303
    );
    assert_eq!(
        book_in_form(
            &lab,
            "2027-07-15T10:00",
            "2027-07-15T11:30",
            "Summer imaging"
        )
        .await,
        303
    );
    // Through the API, without an offset: Bob's local time too.
    let response = lab
        .bob_api
        .post(
            &format!("/events/{m}"),
            json!({"title": "API imaging", "start": "2027-07-16 10:00:00", "end": "2027-07-16 11:00:00"}),
        )
        .await;
    assert_eq!(response.status(), 201);

    // Ada's zone is the instance's (UTC): the instants.
    let utc = events(&lab.ada_api, m).await;
    assert_eq!(
        by_title(&utc, "Winter imaging")["start"],
        "2027-01-14T09:00:00Z"
    );
    assert_eq!(
        by_title(&utc, "Winter imaging")["end"],
        "2027-01-14T10:30:00Z"
    );
    assert_eq!(
        by_title(&utc, "Summer imaging")["start"],
        "2027-07-15T08:00:00Z"
    );
    assert_eq!(
        by_title(&utc, "API imaging")["start"],
        "2027-07-16T08:00:00Z"
    );
    // Bob sees his own local times with their offsets, as eLabFTW gives them.
    let paris = events(&lab.bob_api, m).await;
    assert_eq!(
        by_title(&paris, "Winter imaging")["start"],
        "2027-01-14T10:00:00+01:00"
    );
    assert_eq!(
        by_title(&paris, "Summer imaging")["start"],
        "2027-07-15T10:00:00+02:00"
    );
    // Carol, in New York, sees the same booking at her local time.
    let new_york = events(&lab.carol_api, m).await;
    assert_eq!(
        by_title(&new_york, "Summer imaging")["start"],
        "2027-07-15T04:00:00-04:00"
    );
    let html = lab
        .carol_browser
        .page(&format!("/resources/{m}/calendar?date=2027-07-15"))
        .await;
    assert!(html.contains("2027-07-15 04:00–05:30"), "{html}");
    assert!(html.contains("America/New_York"), "{html}");
    assert!(
        html.contains(r#"data-start="2027-07-15T04:00" class="busy""#),
        "the 04:00 row holds it"
    );
    // An offset given explicitly wins over the caller's zone.
    let response = lab
        .carol_api
        .post(
            &format!("/events/{m}"),
            json!({"title": "Offset", "start": "2027-07-20T10:00:00+02:00", "end": "2027-07-20T11:00:00+02:00"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let utc = events(&lab.ada_api, m).await;
    assert_eq!(by_title(&utc, "Offset")["start"], "2027-07-20T08:00:00Z");
    // A zone that does not exist is refused with a message.
    let response = lab
        .bob_browser
        .post_form("/settings/time-zone", &[("time_zone", "Mars/Olympus")])
        .await;
    let text = response.text().await.unwrap();
    assert!(text.contains("not a time zone"), "{text}");
    lab.app.stop().await;
}

/// Prints `SUMMARY start end` (Unix seconds) of each event of the calendar file in argv[1].
const PRINT_EVENTS: &str = r"import sys, icalendar
cal = icalendar.Calendar.from_ical(open(sys.argv[1], 'rb').read())
for e in sorted(cal.walk('VEVENT'), key=lambda e: e['DTSTART'].dt):
    print(e['SUMMARY'], e['DTSTART'].dt.timestamp(), e['DTEND'].dt.timestamp())
";

#[tokio::test]
async fn a_week_crossing_the_clock_change_shows_each_booking_in_its_local_hour() {
    let lab = lab().await;
    let m = lab.microscope;
    // Friday before the change, Sunday after it (clocks go forward at 02:00): both at 10:00
    // in Paris, in the same week (Monday 22 to Sunday 28).
    assert_eq!(
        book_in_form(&lab, "2027-03-26T10:00", "2027-03-26T11:00", "Before").await,
        303
    );
    assert_eq!(
        book_in_form(&lab, "2027-03-28T10:00", "2027-03-28T11:00", "After").await,
        303
    );
    let utc = events(&lab.ada_api, m).await;
    assert_eq!(by_title(&utc, "Before")["start"], "2027-03-26T09:00:00Z");
    assert_eq!(by_title(&utc, "After")["start"], "2027-03-28T08:00:00Z");
    let html = lab
        .bob_browser
        .page(&format!(
            "/resources/{m}/calendar?view=week&date=2027-03-27"
        ))
        .await;
    for day in ["2027-03-26", "2027-03-28"] {
        assert!(
            html.contains(&format!(r#"data-start="{day}T10:00" class="busy""#)),
            "{day} 10:00 is busy"
        );
        assert!(
            html.contains(&format!(r#"data-start="{day}T09:00">"#)),
            "{day} 09:00 is free"
        );
    }
    assert!(
        html.contains("2027-03-28 10:00–11:00"),
        "listed at local time"
    );
    // The hour skipped on Sunday (02:00-03:00) holds nothing.
    assert!(html.contains(r#"data-start="2027-03-28T02:00">"#));
    // The forms name the zone their times are read in, and a move form is prefilled with the
    // local times and read in them (after the change: 12:00 in Paris is 10:00 UTC).
    assert!(html.contains("Début (Europe/Paris)"), "{html}");
    let after = by_title(&utc, "After")["id"].as_i64().unwrap();
    assert!(
        html.contains(&format!(
            r#"id="move-start-{after}" name="start" type="datetime-local" step="60" value="2027-03-28T10:00""#
        )),
        "{html}"
    );
    // The iCal feed carries the instants, read by a real iCalendar parser.
    let token = lab
        .app
        .store
        .renew_calendar_token(lab.bob.id)
        .await
        .unwrap();
    let ics = reqwest::get(format!("{}/ical/{token}/resources/{m}.ics", lab.app.url))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let parsed = tokio::task::spawn_blocking(move || {
        let bin = cahier_testkit::python::venv("icalendar", &["icalendar"]);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("feed.ics");
        std::fs::write(&path, &ics).expect("feed written");
        cahier_testkit::python::run(
            "icalendar parsing the feed",
            std::process::Command::new(bin.join("python"))
                .args(["-c", PRINT_EVENTS])
                .arg(&path),
        )
    })
    .await
    .unwrap();
    // 2027-03-26T09:00Z and 2027-03-28T08:00Z as Unix seconds.
    let lines: Vec<&str> = parsed.lines().collect();
    assert_eq!(lines.len(), 2, "{parsed}");
    assert!(lines[0].ends_with("1806051600.0 1806055200.0"), "{parsed}");
    assert!(lines[1].ends_with("1806220800.0 1806224400.0"), "{parsed}");
    // Moved with its form to 12:00 in Paris: 10:00 UTC.
    let response = lab
        .bob_browser
        .post_form(
            &format!("/calendar/bookings/{after}/move"),
            &[
                ("scope", &format!("resource:{m}")),
                ("view", "week"),
                ("date", "2027-03-27"),
                ("start", "2027-03-28T12:00"),
                ("end", "2027-03-28T13:00"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let moved = events(&lab.ada_api, m).await;
    assert_eq!(by_title(&moved, "After")["start"], "2027-03-28T10:00:00Z");
    lab.app.stop().await;
}

#[tokio::test]
async fn canbook_narrows_who_may_book_with_a_clear_refusal() {
    let lab = lab().await;
    let m = lab.microscope;
    let item = lab.ada_api.json(&format!("/items/{m}")).await;
    assert_eq!(
        item["canbook_base"], item["canread_base"],
        "same as canread"
    );

    // Only the owner and the team's admins may book.
    let response = lab
        .ada_api
        .patch(&format!("/items/{m}"), json!({"canbook_base": 20}))
        .await;
    assert_eq!(response.status(), 200);
    let item = lab.ada_api.json(&format!("/items/{m}")).await;
    assert_eq!(item["canbook_base"], 20);
    let slot =
        json!({"title": "Imaging", "start": "2027-02-01T10:00:00Z", "end": "2027-02-01T11:00:00Z"});
    let response = lab
        .bob_api
        .post(&format!("/events/{m}"), slot.clone())
        .await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], 403);
    assert!(
        body["description"].as_str().unwrap().contains("canbook"),
        "{body}"
    );
    // The calendar says so instead of offering the form; a forced post is refused.
    let html = lab
        .bob_browser
        .page(&format!("/resources/{m}/calendar"))
        .await;
    assert!(html.contains(r#"id="may-not-book""#), "{html}");
    assert!(!html.contains(r#"id="booking-form""#));
    assert_eq!(
        book_in_form(&lab, "2027-02-02T10:00", "2027-02-02T11:00", "Forced").await,
        403
    );
    // Bob listed by name: he may.
    let response = lab
        .ada_api
        .patch(
            &format!("/items/{m}"),
            json!({"canbook": {"base": 20, "teams": [], "teamgroups": [], "users": [lab.bob.id]}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let item = lab.ada_api.json(&format!("/items/{m}")).await;
    let canbook: Value = serde_json::from_str(item["canbook"].as_str().unwrap()).unwrap();
    assert_eq!(canbook["users"], json!([lab.bob.id]));
    let response = lab.bob_api.post(&format!("/events/{m}"), slot).await;
    assert_eq!(response.status(), 201);
    // Through the access form: back to "same as canread".
    let ada_browser = lab.app.browser(&lab.ada).await;
    let response = ada_browser
        .post_form(
            &format!("/resources/{m}/access"),
            &[("read_base", "30"), ("write_base", "20"), ("book_base", "")],
        )
        .await;
    assert_eq!(response.status(), 303);
    let item = lab.ada_api.json(&format!("/items/{m}")).await;
    assert_eq!(item["canbook_base"], 30);
    lab.app.stop().await;
}

#[tokio::test]
async fn item_list_rows_carry_the_stock_state() {
    let lab = lab().await;
    let buffer = lab
        .ada_api
        .create("/items", json!({"title": "PBS buffer"}))
        .await;
    let stock = format!("/items/{buffer}/stock");
    let response = lab
        .ada_api
        .patch(&stock, json!({"unit": "mL", "threshold": 5}))
        .await;
    assert_eq!(response.status(), 200);
    lab.ada_api
        .post(&stock, json!({"action": "restock", "amount": 8}))
        .await;
    lab.ada_api
        .post(&stock, json!({"action": "consume", "amount": 4.5}))
        .await;
    let rows = lab.ada_api.json("/items?limit=50").await;
    let rows = rows.as_array().unwrap();
    let row = rows.iter().find(|r| r["id"] == buffer).expect("buffer row");
    assert_eq!(row["stock"]["unit"], "mL");
    assert_eq!(row["stock"]["quantity"], 3.5);
    assert_eq!(row["stock"]["threshold"], 5.0);
    assert_eq!(row["stock"]["is_low"], true);
    assert!(row["stock"].get("events").is_none(), "no events in rows");
    let microscope = rows.iter().find(|r| r["id"] == lab.microscope).unwrap();
    assert!(microscope.get("stock").is_none(), "no stock tracked");
    let single = lab.ada_api.json(&format!("/items/{buffer}")).await;
    assert_eq!(single["stock"]["quantity"], 3.5);
    assert_eq!(single["stock"]["is_low"], true);
    lab.app.stop().await;
}

/// A field laptop set to another zone than the lab's (issue #5): after a sync the replica
/// reads times in the lab's zone and in the user's own choice made at the lab, not in the
/// laptop's; an entry made offline takes its date by the lab's rule (the UTC day, as at the
/// lab); the device time is recorded beside the lab's receive time, never used for order.
#[tokio::test]
async fn a_replica_follows_the_labs_time_zones_not_the_laptops() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let mut admin = app.subject(&alice).await;
    admin.is_sysadmin = true;
    app.store
        .set_instance_zone(&admin, Some("Pacific/Auckland"))
        .await
        .unwrap();
    let (replica, _) = super::sync_blobs::replica(&app, &alice).await;
    // The laptop's own clock zone (as `replica serve` takes it from the system).
    let laptop = replica
        .store
        .clone()
        .with_default_zone(cahier_core::zone::Zone::named("America/New_York").unwrap());
    assert_eq!(
        laptop.instance_zone().await.unwrap().name(),
        "Pacific/Auckland"
    );
    assert_eq!(
        laptop.user_zone(alice.id).await.unwrap().name(),
        "Pacific/Auckland",
        "no choice of her own: the lab's"
    );

    // Her own choice at the lab reaches the laptop at the next sync.
    app.store
        .set_user_zone(alice.id, Some("Asia/Tokyo"))
        .await
        .unwrap();
    replica.sync().await;
    assert_eq!(
        laptop.user_zone(alice.id).await.unwrap().name(),
        "Asia/Tokyo"
    );
    // The lab changes its zone: followed too.
    app.store
        .set_instance_zone(&admin, Some("Europe/Paris"))
        .await
        .unwrap();
    replica.sync().await;
    assert_eq!(laptop.instance_zone().await.unwrap().name(), "Europe/Paris");

    // An entry made offline gets the date the lab would give at that instant.
    let subject = laptop.subject(alice.id).await.unwrap();
    let id = laptop
        .create_entity(
            &subject,
            cahier_store::NewEntity {
                kind: cahier_core::EntityKind::Experiment,
                team_id: alice.team_id,
                canread: None,
                canwrite: None,
                patch: cahier_core::EntityPatch {
                    title: Some("Offline".into()),
                    ..Default::default()
                },
                template: None,
            },
        )
        .await
        .unwrap();
    let row = laptop.entity(&subject, id).await.unwrap();
    assert_eq!(
        row.date,
        cahier_core::clock::format_date(laptop.now_ms()),
        "the UTC day, as at the lab"
    );
}

/// A user's zone chosen on a replica reaches the lab at the next sync (`POST /preferences`),
/// even when the lab's reference records change meanwhile; a choice or a clearing at the lab
/// reaches the replica; a replayed or stale request changes nothing; bad ones are refused.
#[tokio::test]
async fn a_zone_chosen_on_a_replica_reaches_the_lab_and_a_clearing_at_the_lab_comes_back() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let mut admin = app.subject(&alice).await;
    admin.is_sysadmin = true;
    app.store
        .set_instance_zone(&admin, Some("Pacific/Auckland"))
        .await
        .unwrap();
    app.store
        .set_user_zone(alice.id, Some("Asia/Tokyo"))
        .await
        .unwrap();
    let (replica, _) = super::sync_blobs::replica(&app, &alice).await;
    let laptop = &replica.store;
    assert_eq!(
        laptop.user_zone(alice.id).await.unwrap().name(),
        "Asia/Tokyo"
    );

    // Chosen on the laptop (as its settings page does); the lab's records change meanwhile
    // (a new zone for the lab): the laptop's choice is kept, and reaches the lab.
    laptop
        .set_user_zone(alice.id, Some("America/Cayenne"))
        .await
        .unwrap();
    app.store
        .set_instance_zone(&admin, Some("Europe/Paris"))
        .await
        .unwrap();
    replica.sync().await;
    assert_eq!(
        app.store.user_zone(alice.id).await.unwrap().name(),
        "America/Cayenne",
        "the laptop's choice reached the lab"
    );
    assert_eq!(
        laptop.user_zone(alice.id).await.unwrap().name(),
        "America/Cayenne"
    );
    assert_eq!(laptop.instance_zone().await.unwrap().name(), "Europe/Paris");
    assert!(laptop.pending_preferences().await.unwrap().is_none());

    // Cleared at the lab: cleared on the laptop (the lab's zone applies again).
    app.store.set_user_zone(alice.id, None).await.unwrap();
    replica.sync().await;
    assert_eq!(
        laptop.user_zone(alice.id).await.unwrap().name(),
        "Europe/Paris",
        "cleared at the lab, cleared here"
    );

    // A replay of the laptop's request (same number) changes nothing at the lab.
    let client = reqwest::Client::new();
    let url = format!("{}/api/sync/v1/preferences", app.url);
    let auth = format!("Device {}", replica.token);
    let replay = client
        .post(&url)
        .header("Authorization", &auth)
        .json(&serde_json::json!({"seq": 1, "time_zone": "America/Cayenne"}))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 200);
    let answer: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(answer["applied"], false);
    assert_eq!(
        app.store.user_zone(alice.id).await.unwrap().name(),
        "Europe/Paris",
        "a replay does not undo the lab's clearing"
    );
    // Bad input and strangers are refused; nothing changes.
    let bad = client
        .post(&url)
        .header("Authorization", &auth)
        .json(&serde_json::json!({"seq": 9, "time_zone": "Mars/Olympus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422, "{}", bad.text().await.unwrap());
    let anonymous = client
        .post(&url)
        .json(&serde_json::json!({"seq": 10, "time_zone": "Asia/Tokyo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        app.store.user_zone(alice.id).await.unwrap().name(),
        "Europe/Paris"
    );

    // Cleared on the laptop: cleared at the lab.
    app.store
        .set_user_zone(alice.id, Some("Asia/Tokyo"))
        .await
        .unwrap();
    replica.sync().await;
    assert_eq!(
        laptop.user_zone(alice.id).await.unwrap().name(),
        "Asia/Tokyo"
    );
    laptop.set_user_zone(alice.id, None).await.unwrap();
    let report = replica.sync().await;
    assert_eq!(
        app.store.user_zone(alice.id).await.unwrap().name(),
        "Europe/Paris",
        "{report}"
    );
    assert_eq!(
        laptop.user_zone(alice.id).await.unwrap().name(),
        "Europe/Paris"
    );
    app.stop().await;
}
