//! Calendar feeds (iCal) of a field replica (issue #5): served by the replica from its mirror
//! of the lab's bookings and its user's requests, under a token made on the replica and known
//! nowhere else. A lab server and a real replica over real HTTP, the replica served by the
//! production router; the feeds are fetched without a session, as a calendar application does.

use super::booking_requests::{HOUR, lab, request_on, slot};
use super::sync_blobs::{replica, serve_replica};
use cahier_core::booking::format_instant;
use cahier_store::bookings::BookingChange;
use cahier_testkit::Browser;
use serde_json::json;

/// `YYYYMMDDTHHMMSSZ`, as feeds write instants.
fn stamp(ms: i64) -> String {
    format_instant(ms).replace(['-', ':'], "")
}

/// GETs a feed without a session; the status and the body with folded lines unfolded.
async fn feed(url: &str, lang: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(lang) = lang {
        request = request.header("Accept-Language", lang);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap().replace("\r\n ", ""))
}

/// The events of a feed.
fn events(ics: &str) -> Vec<String> {
    ics.split("BEGIN:VEVENT")
        .skip(1)
        .map(|event| event.split("END:VEVENT").next().unwrap().to_owned())
        .collect()
}

/// The event whose summary names `title`.
fn event<'a>(events: &'a [String], title: &str) -> &'a str {
    events
        .iter()
        .find(|e| e.contains(&format!(" · {title}")))
        .unwrap_or_else(|| panic!("no event {title} in {events:?}"))
}

#[tokio::test]
async fn a_replicas_feed_lists_lab_bookings_and_pending_requests_and_answers_only_to_its_token() {
    let lab = lab().await;
    let (m, t) = (lab.microscope, lab.tomorrow);
    let bob_api = lab.app.api(&lab.app.api_key(&lab.bob, true).await);
    let carol_api = lab.app.api(&lab.app.api_key(&lab.carol, true).await);
    // Carol's experiment, which only she may read, and her booking for it.
    let secret = carol_api
        .create("/experiments", json!({"title": "Secret assay"}))
        .await;
    let response = carol_api
        .patch(
            &format!("/experiments/{secret}"),
            json!({"canread": {"base": 10, "teams": [], "teamgroups": [], "users": []}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let mut body = slot("Carol run", t + 11 * HOUR, t + 12 * HOUR);
    body["experiment"] = json!(secret);
    carol_api.create(&format!("/events/{m}"), body).await;
    let imaging = bob_api
        .create(
            &format!("/events/{m}"),
            slot("Imaging", t + 9 * HOUR, t + 10 * HOUR),
        )
        .await;
    // Another team's instrument, which Bob's replica never holds.
    let dave = lab.app.user("dave@lab.fr", "Botany", true).await;
    let dave_api = lab.app.api(&lab.app.api_key(&dave, true).await);
    dave_api
        .create(
            "/teams/current/resources_categories",
            json!({"title": "Instruments", "is_default": true}),
        )
        .await;
    let scope = dave_api
        .create("/items", json!({"title": "Botany scope"}))
        .await;

    // On Bob's replica: a request the lab refuses at sync (Ada books the slot meanwhile),
    // then a request still pending and a move of Imaging to 17:00 asked for.
    let (bob_replica, _) = replica(&lab.app, &lab.bob).await;
    request_on(&bob_replica, &lab.bob, m, "Clash", t + 13 * HOUR).await;
    lab.ada_api
        .create(
            &format!("/events/{m}"),
            slot("Maintenance", t + 13 * HOUR, t + 14 * HOUR),
        )
        .await;
    assert_eq!(bob_replica.sync().await.bookings_refused, 1);
    request_on(&bob_replica, &lab.bob, m, "Field request", t + 15 * HOUR).await;
    let bob = bob_replica.store.subject(lab.bob.id).await.unwrap();
    let change = BookingChange {
        start_ms: Some(t + 17 * HOUR),
        end_ms: Some(t + 18 * HOUR),
        ..BookingChange::default()
    };
    bob_replica
        .store
        .update_booking(&bob, imaging, change)
        .await
        .unwrap();

    // The token is made on the replica's calendar page, which shows this laptop's addresses.
    let (running, _) = serve_replica(&bob_replica).await;
    let browser = Browser::at(&running.url);
    let calendar = format!("/resources/{m}/calendar");
    let html = browser.page(&calendar).await;
    assert!(html.contains("id=\"replica-feed-note\""), "{html}");
    let response = browser
        .post_form("/calendar/feed/renew", &[("back", &calendar)])
        .await;
    assert_eq!(response.status(), 303);
    let token = bob_replica
        .store
        .calendar_token(lab.bob.id)
        .await
        .unwrap()
        .expect("a token made on the replica");
    let html = browser.page(&calendar).await;
    let mine = format!("{}/ical/{token}/mine.ics", running.url);
    let resource = format!("{}/ical/{token}/resources/{m}.ics", running.url);
    assert!(html.contains(&mine) && html.contains(&resource), "{html}");

    // Its own feed: the lab booking at the times asked for, and the pending request, both
    // tentative with a note; neither the refused request nor others' bookings.
    let (status, ics) = feed(&mine, None).await;
    assert_eq!(status, 200, "{ics}");
    assert!(ics.starts_with("BEGIN:VCALENDAR"), "{ics}");
    let mine_events = events(&ics);
    assert_eq!(mine_events.len(), 2, "{ics}");
    let moved = event(&mine_events, "Imaging");
    assert!(
        moved.contains(&format!("DTSTART:{}", stamp(t + 17 * HOUR))),
        "{moved}"
    );
    assert!(
        moved.contains(&format!("DTEND:{}", stamp(t + 18 * HOUR))),
        "{moved}"
    );
    assert!(moved.contains("STATUS:TENTATIVE"), "{moved}");
    assert!(
        moved.contains("Déplacement demandé (actuellement au laboratoire"),
        "{moved}"
    );
    assert!(moved.contains("09:00–10:00 (UTC)"), "{moved}");
    assert!(moved.contains("en attente de confirmation"), "{moved}");
    let uid = moved
        .lines()
        .find(|line| line.starts_with("UID:"))
        .unwrap()
        .to_owned();
    assert_eq!(
        uid,
        format!("UID:booking-{imaging}@{}", &lab.app.url["http://".len()..])
    );
    let asked = event(&mine_events, "Field request");
    assert!(asked.contains("STATUS:TENTATIVE"), "{asked}");
    assert!(asked.contains("UID:request-"), "{asked}");
    assert!(
        asked.contains("Demandée sur une copie de terrain"),
        "{asked}"
    );
    assert!(
        asked.contains(&format!("DTSTART:{}", stamp(t + 15 * HOUR))),
        "{asked}"
    );
    for absent in ["Clash", "Carol run", "Maintenance"] {
        assert!(!ics.contains(absent), "{absent}: {ics}");
    }
    // In the reader's language when they chose none.
    let (_, english) = feed(&mine, Some("en")).await;
    assert!(
        english.contains("Move asked for (now at the lab"),
        "{english}"
    );
    assert!(english.contains("Asked for on a field copy"), "{english}");

    // The resource's feed: everyone's bookings, the lab's confirmed ones as confirmed, but not
    // the experiment Bob may not read.
    let (status, ics) = feed(&resource, None).await;
    assert_eq!(status, 200, "{ics}");
    let all = events(&ics);
    assert_eq!(all.len(), 4, "{ics}");
    assert!(
        event(&all, "Carol run").contains("STATUS:CONFIRMED"),
        "{ics}"
    );
    assert!(
        event(&all, "Maintenance").contains("STATUS:CONFIRMED"),
        "{ics}"
    );
    assert!(!ics.contains("Secret assay"), "{ics}");
    assert!(!ics.contains("Clash"), "{ics}");

    // The same booking keeps its UID in the lab's own feed; but the lab's token opens nothing
    // on the replica, nor the replica's at the lab.
    let lab_token = lab
        .app
        .store
        .renew_calendar_token(lab.bob.id)
        .await
        .unwrap();
    let (status, lab_ics) = feed(&format!("{}/ical/{lab_token}/mine.ics", lab.app.url), None).await;
    assert_eq!(status, 200);
    assert!(lab_ics.contains(&uid), "{lab_ics}");
    assert!(!lab_ics.contains("Field request"), "{lab_ics}");
    for url in [
        format!("{}/ical/{lab_token}/mine.ics", running.url),
        format!("{}/ical/{token}/mine.ics", lab.app.url),
        format!("{}/ical/{token}/resources/{m}.ics", lab.app.url),
        format!("{}/ical/{}/mine.ics", running.url, "0".repeat(48)),
        // A resource the replica does not hold (another team's) or that does not exist.
        format!("{}/ical/{token}/resources/{scope}.ics", running.url),
        format!("{}/ical/{token}/resources/999999.ics", running.url),
    ] {
        assert_eq!(feed(&url, None).await.0, 404, "{url}");
    }

    // Turned off on the replica: its addresses stop answering.
    let response = browser
        .post_form("/calendar/feed/revoke", &[("back", &calendar)])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(feed(&mine, None).await.0, 404);
    running.stop().await.unwrap();
    lab.app.stop().await;
}
