//! Bookings made on a field replica are requests, decided by the lab server at sync (issue
//! #5): a lab server and real replicas over real HTTP, the replicas served by the production
//! router. A request is shown "pending confirmation" on the replica and absent from the lab
//! until sync; then booked there, or refused with its reason (overlap with a booking made
//! online or from another replica, canbook withdrawn meanwhile) and shown on the replica until
//! dismissed. A request sent twice, or whose answer is cut off, books once; a request survives
//! a restart.

use super::fault_proxy::{Fault, FaultProxy};
use super::sync_blobs::{Replica, replica, replica_at, serve_replica};
use cahier_core::booking::format_instant;
use cahier_store::StoreError;
use cahier_store::bookings::{BookingState, NewBooking};
use cahier_testkit::{Api, Browser, TestApp, TestUser, location};
use serde_json::{Value, json};

pub(super) const HOUR: i64 = 3_600_000;
pub(super) const DAY: i64 = 24 * HOUR;

/// Ada administers Ecology and owns a bookable microscope; Bob and Carol are members.
pub(super) struct Lab {
    pub(super) app: TestApp,
    pub(super) ada: TestUser,
    pub(super) bob: TestUser,
    pub(super) carol: TestUser,
    pub(super) ada_api: Api,
    pub(super) microscope: i64,
    /// Tomorrow 00:00 UTC.
    pub(super) tomorrow: i64,
}

pub(super) async fn lab() -> Lab {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Ecology", true).await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let carol = app.user("carol@lab.fr", "Ecology", false).await;
    let ada_api = app.api(&app.api_key(&ada, true).await);
    ada_api
        .create(
            "/teams/current/resources_categories",
            json!({"title": "Instruments", "is_default": true}),
        )
        .await;
    let microscope = ada_api
        .create("/items", json!({"title": "Confocal LSM 880"}))
        .await;
    let response = app
        .browser(&ada)
        .await
        .post_form(
            &format!("/resources/{microscope}/booking-rules"),
            &[
                ("is_bookable", "1"),
                ("is_cancellable", "1"),
                ("cancel_minutes", "0"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303, "rules saved");
    let tomorrow = (app.store.now_ms() / DAY + 1) * DAY;
    Lab {
        app,
        ada,
        bob,
        carol,
        ada_api,
        microscope,
        tomorrow,
    }
}

pub(super) fn slot(title: &str, start: i64, end: i64) -> Value {
    json!({"title": title, "start": format_instant(start), "end": format_instant(end)})
}

/// The lab's bookings of the microscope.
pub(super) async fn lab_events(lab: &Lab) -> Vec<Value> {
    lab.ada_api
        .json(&format!("/events?item={}", lab.microscope))
        .await
        .as_array()
        .unwrap()
        .clone()
}

/// Asks for an hour from `start` on a replica, offline (no sync); returns the request's id.
pub(super) async fn request_on(
    replica: &Replica,
    user: &TestUser,
    item: i64,
    title: &str,
    start: i64,
) -> i64 {
    let subject = replica.store.subject(user.id).await.unwrap();
    let row = replica
        .store
        .book(
            &subject,
            NewBooking {
                entity_id: item,
                start_ms: start,
                end_ms: start + HOUR,
                title: title.into(),
                experiment_id: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(row.state, BookingState::Requested);
    row.id
}

pub(super) fn day_of(ms: i64) -> String {
    format_instant(ms)[..10].to_owned()
}

#[tokio::test]
async fn a_booking_made_on_a_replica_waits_for_sync_then_is_booked_on_the_lab() {
    let lab = lab().await;
    let m = lab.microscope;
    let (bob_replica, _) = replica(&lab.app, &lab.bob).await;
    let (running, api) = serve_replica(&bob_replica).await;
    let nine = lab.tomorrow + 9 * HOUR;

    // Through the replica's API v2: a request, not a booking.
    let response = api
        .post(&format!("/events/{m}"), slot("Imaging", nine, nine + HOUR))
        .await;
    assert_eq!(response.status(), 201);
    let id: i64 = location(&response)
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        id >= 1_000_000_000,
        "request ids never meet server ids: {id}"
    );
    let event = api.json(&format!("/event/{id}")).await;
    assert_eq!(event["state"], "requested", "{event}");
    assert_eq!(event["request_id"].as_str().unwrap().len(), 36, "{event}");

    // Through the replica's booking form, then shown with words, not colour alone.
    let day = day_of(lab.tomorrow);
    let browser = Browser::at(&running.url);
    let calendar = format!("/resources/{m}/calendar?view=week&date={day}");
    browser.page(&calendar).await;
    let response = browser
        .post_form(
            "/calendar/book",
            &[
                ("scope", &format!("resource:{m}")),
                ("view", "week"),
                ("date", &day),
                ("item", &m.to_string()),
                ("start", &format!("{day}T14:00")),
                ("end", &format!("{day}T15:00")),
                ("title", "Second look"),
                ("experiment", ""),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert!(
        location(&response).contains("msg=requested"),
        "{}",
        location(&response)
    );
    let html = browser.page(&calendar).await;
    assert!(
        html.matches("en attente de confirmation").count() >= 4,
        "cells and list say it: {html}"
    );
    assert!(
        html.contains(r#"id="replica-booking-waiting">2 "#),
        "{html}"
    );
    assert!(html.contains("Retirer la demande"), "{html}");

    // Until sent, a request is changed or withdrawn on the replica alone.
    let response = api
        .patch(&format!("/event/{id}"), json!({"title": "Imaging, 63x"}))
        .await;
    assert_eq!(response.status(), 200);
    let response = api
        .post(
            &format!("/events/{m}"),
            slot("Scratch", nine + 7 * HOUR, nine + 8 * HOUR),
        )
        .await;
    let scratch = location(&response).rsplit('/').next().unwrap().to_owned();
    assert_eq!(api.delete(&format!("/event/{scratch}")).await.status(), 204);
    assert_eq!(api.get(&format!("/event/{scratch}")).await.status(), 404);

    // Nothing reached the lab yet.
    assert!(lab_events(&lab).await.is_empty());

    let report = bob_replica.sync().await;
    assert_eq!(
        (
            report.bookings_sent,
            report.bookings_confirmed,
            report.bookings_refused,
            report.bookings_waiting
        ),
        (2, 2, 0, 0),
        "{report}"
    );
    assert!(
        report
            .to_string()
            .contains("booking requests sent 2 (confirmed 2, refused 0, waiting 0)"),
        "{report}"
    );
    let events = lab_events(&lab).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["title"], "Imaging, 63x");
    assert_eq!(events[0]["userid"], lab.bob.id);
    assert_eq!(events[0]["start"], format_instant(nine));
    assert_eq!(events[0]["state"], "confirmed");
    assert_eq!(events[1]["title"], "Second look");

    // The replica now shows the lab's bookings; the request's id answers the booking.
    let event = api.json(&format!("/event/{id}")).await;
    assert_eq!(event["state"], "confirmed", "{event}");
    assert_eq!(event["id"], events[0]["id"]);
    let local = api.json(&format!("/events?item={m}")).await;
    let local = local.as_array().unwrap();
    assert_eq!(local.len(), 2);
    assert!(local.iter().all(|e| e["state"] == "confirmed"), "{local:?}");
    let html = browser.page(&calendar).await;
    assert!(!html.contains("en attente de confirmation"), "{html}");
    assert!(!html.contains("replica-booking-waiting"));
    assert!(html.contains("Second look"));

    // A second sync sends nothing and books nothing more.
    let report = bob_replica.sync().await;
    assert_eq!(report.bookings_sent, 0);
    assert_eq!(lab_events(&lab).await.len(), 2);
    running.stop().await.unwrap();
    lab.app.stop().await;
}

#[tokio::test]
async fn a_later_request_for_a_taken_slot_is_refused_with_the_overlap_reason() {
    let lab = lab().await;
    let m = lab.microscope;
    let (bob_replica, _) = replica(&lab.app, &lab.bob).await;
    let (carol_replica, _) = replica(&lab.app, &lab.carol).await;
    let nine = lab.tomorrow + 9 * HOUR;
    let two = lab.tomorrow + 14 * HOUR;

    // Both replicas ask for 9:00 offline; Bob also for 14:00, which Ada books online meanwhile.
    request_on(&bob_replica, &lab.bob, m, "Bob imaging", nine).await;
    let carol_nine = request_on(&carol_replica, &lab.carol, m, "Carol imaging", nine).await;
    request_on(&bob_replica, &lab.bob, m, "Bob afternoon", two).await;
    let response = lab
        .ada_api
        .post(
            &format!("/events/{m}"),
            slot("Maintenance", two, two + HOUR),
        )
        .await;
    assert_eq!(response.status(), 201);

    let report = bob_replica.sync().await;
    assert_eq!(
        (
            report.bookings_sent,
            report.bookings_confirmed,
            report.bookings_refused
        ),
        (2, 1, 1)
    );
    let report = carol_replica.sync().await;
    assert_eq!(
        (
            report.bookings_sent,
            report.bookings_confirmed,
            report.bookings_refused
        ),
        (1, 0, 1)
    );
    let titles: Vec<Value> = lab_events(&lab)
        .await
        .iter()
        .map(|e| e["title"].clone())
        .collect();
    assert_eq!(titles, vec![json!("Bob imaging"), json!("Maintenance")]);

    // Each refusal is kept with the server's reason.
    let bob = bob_replica.store.subject(lab.bob.id).await.unwrap();
    let refused = bob_replica
        .store
        .refused_booking_requests(&bob)
        .await
        .unwrap();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].title, "Bob afternoon");
    let request = refused[0].request.clone().unwrap();
    assert_eq!(request.reason_code.as_deref(), Some("overlap"));
    assert!(
        request.reason.unwrap().contains("\"Maintenance\""),
        "names the booking it clashes with"
    );

    // Carol's replica shows hers in the calendar and the status area, with the reason.
    let (running, api) = serve_replica(&carol_replica).await;
    let event = api.json(&format!("/event/{carol_nine}")).await;
    assert_eq!(event["state"], "request_refused", "{event}");
    assert_eq!(event["refusal_code"], "overlap");
    assert!(
        event["refusal_reason"]
            .as_str()
            .unwrap()
            .contains("already booked"),
        "{event}"
    );
    let browser = Browser::at(&running.url);
    let calendar = format!(
        "/resources/{m}/calendar?view=week&date={}",
        day_of(lab.tomorrow)
    );
    let html = browser.page(&calendar).await;
    assert!(
        html.contains("refusée par le serveur du laboratoire"),
        "{html}"
    );
    assert!(html.contains("Le créneau était déjà réservé"), "{html}");
    assert!(
        html.contains("Bob imaging"),
        "the lab's booking is mirrored"
    );
    assert!(
        html.contains(r#"id="replica-booking-refused">1 "#),
        "{html}"
    );
    let html = browser.page("/replica/rejected").await;
    assert!(html.contains("Carol imaging"), "{html}");
    assert!(html.contains("Le créneau était déjà réservé"), "{html}");

    // Dismissed, it leaves the calendar and the status area; the lab is unchanged.
    let response = browser
        .post_form(
            &format!("/calendar/bookings/{carol_nine}/dismiss"),
            &[("back", "/replica/rejected")],
        )
        .await;
    assert_eq!(response.status(), 303);
    let html = browser.page("/replica/rejected").await;
    assert!(!html.contains("Carol imaging"), "{html}");
    assert!(!html.contains("replica-booking-refused"));
    assert!(!browser.page(&calendar).await.contains("Carol imaging"));
    assert_eq!(lab_events(&lab).await.len(), 2);

    // Another user's lab booking cannot be cancelled from the replica either (the online
    // rule, checked at once); nothing is asked of the lab.
    let bob_event = lab_events(&lab).await[0]["id"].as_i64().unwrap();
    let response = api.delete(&format!("/event/{bob_event}")).await;
    assert_eq!(response.status(), 403);
    assert!(
        carol_replica
            .store
            .pending_booking_changes()
            .await
            .unwrap()
            .is_empty()
    );
    running.stop().await.unwrap();
    lab.app.stop().await;
}

#[tokio::test]
async fn a_request_sent_twice_books_once() {
    let lab = lab().await;
    let (bob_replica, _) = replica(&lab.app, &lab.bob).await;
    let (carol_replica, _) = replica(&lab.app, &lab.carol).await;
    let ada = lab.app.subject(&lab.ada).await;
    let resource = lab
        .app
        .store
        .entity(&ada, lab.microscope)
        .await
        .unwrap()
        .uuid;
    let nine = lab.tomorrow + 9 * HOUR;
    let body = json!({"requests": [{
        "id": "8f0e7c1e-1111-4a2b-9c3d-000000000001",
        "resource": resource,
        "start_ms": nine,
        "end_ms": nine + HOUR,
        "title": "Sent twice",
        "device_at": nine - DAY,
    }]});
    let client = reqwest::Client::new();
    let post = |token: String| {
        client
            .post(format!("{}/api/sync/v1/bookings", lab.app.url))
            .header("Authorization", format!("Device {token}"))
            .json(&body)
            .send()
    };
    let first: Value = post(bob_replica.token.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let again = post(bob_replica.token.clone()).await.unwrap();
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(first["outcomes"][0]["outcome"], "booked", "{first}");
    assert_eq!(first["outcomes"], again["outcomes"]);
    assert_eq!(lab_events(&lab).await.len(), 1);
    assert_eq!(
        again["bookings"][0]["id"], first["outcomes"][0]["booking"],
        "the answer carries the lab's bookings"
    );

    // Another device cannot take over the id; nothing more is booked.
    let other: Value = post(carol_replica.token.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["outcomes"][0]["outcome"], "refused", "{other}");
    assert_eq!(other["outcomes"][0]["code"], "conflict");
    assert_eq!(lab_events(&lab).await.len(), 1);

    // Without a device credential, or with a body that is not a request: refused.
    let anonymous = client
        .post(format!("{}/api/sync/v1/bookings", lab.app.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let garbled = client
        .post(format!("{}/api/sync/v1/bookings", lab.app.url))
        .header("Authorization", format!("Device {}", bob_replica.token))
        .body("{\"requests\": 3}")
        .send()
        .await
        .unwrap();
    assert_eq!(garbled.status(), 400);
    lab.app.stop().await;
}

#[tokio::test]
async fn a_request_by_a_user_who_lost_canbook_is_refused_at_sync() {
    let lab = lab().await;
    let m = lab.microscope;
    let (bob_replica, _) = replica(&lab.app, &lab.bob).await;
    let nine = lab.tomorrow + 9 * HOUR;
    request_on(&bob_replica, &lab.bob, m, "Imaging", nine).await;

    // Meanwhile only the owner and the team's admins may book it.
    let response = lab
        .ada_api
        .patch(&format!("/items/{m}"), json!({"canbook_base": 20}))
        .await;
    assert_eq!(response.status(), 200);
    let report = bob_replica.sync().await;
    assert_eq!((report.bookings_confirmed, report.bookings_refused), (0, 1));
    assert!(lab_events(&lab).await.is_empty());
    let bob = bob_replica.store.subject(lab.bob.id).await.unwrap();
    let refused = bob_replica
        .store
        .refused_booking_requests(&bob)
        .await
        .unwrap();
    let request = refused[0].request.clone().unwrap();
    assert_eq!(request.reason_code.as_deref(), Some("forbidden"));
    assert!(request.reason.unwrap().contains("canbook"));

    // The rule came with the sync: a new request is refused at once, offline.
    let refused_now = bob_replica
        .store
        .book(
            &bob,
            NewBooking {
                entity_id: m,
                start_ms: nine + 2 * HOUR,
                end_ms: nine + 3 * HOUR,
                title: "Again".into(),
                experiment_id: None,
            },
        )
        .await;
    assert!(
        matches!(refused_now, Err(StoreError::Forbidden(_))),
        "{refused_now:?}"
    );
    lab.app.stop().await;
}

#[tokio::test]
async fn a_request_survives_a_restart_of_the_replica_before_sync() {
    let lab = lab().await;
    let (bob_replica, _) = replica(&lab.app, &lab.bob).await;
    let nine = lab.tomorrow + 9 * HOUR;
    request_on(&bob_replica, &lab.bob, lab.microscope, "Imaging", nine).await;
    let path = bob_replica.dir.path().join("cahier.db");
    let device = bob_replica.store.device().to_owned();
    bob_replica.store.close().await;

    let store =
        cahier_store::Store::open_sqlite(&path, std::sync::Arc::new(cahier_core::SystemClock))
            .await
            .unwrap()
            .with_device(&device);
    let pending = store.pending_booking_requests().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].title, "Imaging");
    let report = cahier_sync::sync_once(&store, &bob_replica.transport)
        .await
        .unwrap();
    assert_eq!(report.bookings_confirmed, 1, "{report}");
    let events = lab_events(&lab).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["start"], format_instant(nine));
    lab.app.stop().await;
}

#[tokio::test]
async fn a_booking_answer_cut_off_is_asked_again_and_books_once() {
    const BOOKINGS: &str = "POST /api/sync/v1/bookings";
    let lab = lab().await;
    let proxy = FaultProxy::start(&lab.app.url).await;
    let (laptop, _) = replica_at(
        &proxy.url,
        &cahier_sync::http::TlsOptions::default(),
        &lab.bob,
    )
    .await
    .unwrap();
    let nine = lab.tomorrow + 9 * HOUR;
    request_on(&laptop, &lab.bob, lab.microscope, "Imaging", nine).await;

    // The lab decides, but its answer breaks off: the replica still waits.
    proxy.arm(Fault::CutResponse(BOOKINGS, 30));
    assert!(
        cahier_sync::sync_once(&laptop.store, &laptop.transport)
            .await
            .is_err()
    );
    assert_eq!(lab_events(&lab).await.len(), 1, "the lab booked it");
    let pending = laptop.store.pending_booking_requests().await.unwrap();
    assert_eq!(pending.len(), 1);
    // It may be booked already: it cannot be withdrawn or moved until the answer arrives.
    let bob = laptop.store.subject(lab.bob.id).await.unwrap();
    let request_id = laptop
        .store
        .bookings(&bob, &Default::default())
        .await
        .unwrap()[0]
        .id;
    let withdrawn = laptop.store.cancel_booking(&bob, request_id).await;
    assert!(
        matches!(&withdrawn, Err(StoreError::Conflict(m)) if m.contains("answer has not arrived")),
        "{withdrawn:?}"
    );

    // Sent again (and delivered twice): the same answer, one booking.
    proxy.arm(Fault::Duplicate(BOOKINGS));
    let report = laptop.sync().await;
    assert_eq!(
        (report.bookings_sent, report.bookings_confirmed),
        (1, 1),
        "{report}"
    );
    assert_eq!(proxy.armed(), 0);
    let events = lab_events(&lab).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["title"], "Imaging");
    assert!(
        laptop
            .store
            .pending_booking_requests()
            .await
            .unwrap()
            .is_empty()
    );
    lab.app.stop().await;
}
