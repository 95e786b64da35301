//! Changes of the lab's bookings asked for on a field replica (issue #5): the booker cancels or
//! moves their booking, a manager approves or refuses one. A lab server and real replicas over
//! real HTTP, the replicas served by the production router. Each change is checked at once
//! against the mirrored rules and bookings, shown pending on the replica, absent from the lab
//! until sync, then decided there with the online rules (or refused with its reason, shown
//! until dismissed); a change sent twice is applied once.

use super::booking_requests::{DAY, HOUR, Lab, day_of, lab, lab_events, slot};
use super::fault_proxy::{Fault, FaultProxy};
use super::sync_blobs::{replica, replica_at, serve_replica};
use cahier_core::booking::format_instant;
use cahier_store::StoreError;
use cahier_store::bookings::BookingState;
use cahier_sync::Transport;
use cahier_testkit::{Browser, TestUser, location};
use serde_json::{Value, json};

/// Books an hour from `start` on the lab server as `user`; returns the booking's id.
async fn book_online(lab: &Lab, user: &TestUser, title: &str, start: i64) -> i64 {
    let api = lab.app.api(&lab.app.api_key(user, true).await);
    let response = api
        .post(
            &format!("/events/{}", lab.microscope),
            slot(title, start, start + HOUR),
        )
        .await;
    assert_eq!(response.status(), 201, "booked online");
    location(&response)
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Every booking of the microscope on the lab, whatever its state, as (id, state, start).
async fn lab_rows(lab: &Lab) -> Vec<(i64, String, i64)> {
    let ada = lab.app.subject(&lab.ada).await;
    let mut rows = Vec::new();
    for event in lab_events(lab).await {
        let id = event["id"].as_i64().unwrap();
        let row = lab.app.store.booking(&ada, id).await.unwrap();
        rows.push((id, row.state.as_str().to_owned(), row.start_ms));
    }
    rows
}

async fn state_on_lab(lab: &Lab, id: i64) -> BookingState {
    let ada = lab.app.subject(&lab.ada).await;
    lab.app.store.booking(&ada, id).await.unwrap().state
}

fn counts(report: &cahier_sync::SyncReport) -> (usize, usize, usize, i64) {
    (
        report.bookings_sent,
        report.bookings_confirmed,
        report.bookings_refused,
        report.bookings_waiting,
    )
}

#[tokio::test]
async fn the_booker_cancels_a_lab_booking_from_a_replica_and_the_lab_cancels_it_at_sync() {
    let lab = lab().await;
    let m = lab.microscope;
    let nine = lab.tomorrow + 9 * HOUR;
    let id = book_online(&lab, &lab.bob, "Imaging", nine).await;
    let (bob_replica, _) = replica(&lab.app, &lab.bob).await;
    let (running, api) = serve_replica(&bob_replica).await;

    // Through the replica's API v2, as on the lab: a request, not yet a cancellation.
    assert_eq!(api.delete(&format!("/event/{id}")).await.status(), 204);
    let event = api.json(&format!("/event/{id}")).await;
    assert_eq!(
        event["state"], "confirmed",
        "still the lab's truth: {event}"
    );
    assert_eq!(event["pending_change"]["action"], "cancel", "{event}");
    // Asked twice before sync: one request.
    assert_eq!(api.delete(&format!("/event/{id}")).await.status(), 204);
    assert_eq!(
        bob_replica
            .store
            .pending_booking_changes()
            .await
            .unwrap()
            .len(),
        1
    );

    // The replica's calendar says so in words, with a way to take it back.
    let browser = Browser::at(&running.url);
    let calendar = format!(
        "/resources/{m}/calendar?view=week&date={}",
        day_of(lab.tomorrow)
    );
    let html = browser.page(&calendar).await;
    assert!(html.contains("Annulation demandée"), "{html}");
    assert!(
        html.contains("en attente de confirmation par le serveur du laboratoire"),
        "{html}"
    );
    assert!(html.contains("Retirer cette demande"), "{html}");
    assert!(
        html.contains(r#"id="replica-booking-waiting">1 "#),
        "{html}"
    );
    assert_eq!(state_on_lab(&lab, id).await, BookingState::Confirmed);

    let report = bob_replica.sync().await;
    assert_eq!(counts(&report), (1, 1, 0, 0), "{report}");
    assert_eq!(state_on_lab(&lab, id).await, BookingState::Cancelled);
    assert!(lab_events(&lab).await.is_empty());
    // The mirror shows the lab's truth: the booking is gone.
    assert!(
        api.json(&format!("/events?item={m}"))
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    let html = browser.page(&calendar).await;
    assert!(!html.contains("Imaging"), "{html}");
    assert!(!html.contains("replica-booking-waiting"), "{html}");

    // A second sync sends nothing.
    assert_eq!(bob_replica.sync().await.bookings_sent, 0);
    running.stop().await.unwrap();
    lab.app.stop().await;
}

#[tokio::test]
async fn the_booker_moves_a_lab_booking_from_a_replica_checked_at_once_and_moved_at_sync() {
    let lab = lab().await;
    let m = lab.microscope;
    let nine = lab.tomorrow + 9 * HOUR;
    let eleven = lab.tomorrow + 11 * HOUR;
    let two = lab.tomorrow + 14 * HOUR;
    let id = book_online(&lab, &lab.bob, "Imaging", nine).await;
    book_online(&lab, &lab.ada, "Maintenance", two).await;
    let (bob_replica, _) = replica(&lab.app, &lab.bob).await;
    let (running, api) = serve_replica(&bob_replica).await;

    // Into a slot the mirror shows taken: refused at once, offline.
    let response = api
        .patch(
            &format!("/event/{id}"),
            json!({"start": format_instant(two), "end": format_instant(two + HOUR)}),
        )
        .await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert!(body.to_string().contains("Maintenance"), "{body}");
    // Its title is the lab's to change.
    let response = api
        .patch(&format!("/event/{id}"), json!({"title": "Renamed"}))
        .await;
    assert_eq!(response.status(), 409);

    let response = api
        .patch(
            &format!("/event/{id}"),
            json!({"start": format_instant(eleven), "end": format_instant(eleven + HOUR)}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let event: Value = response.json().await.unwrap();
    assert_eq!(event["start"], format_instant(nine), "{event}");
    assert_eq!(event["pending_change"]["action"], "move");
    assert_eq!(event["pending_change"]["start"], format_instant(eleven));
    // The slot asked for is held on the replica: a new request there clashes at once.
    let response = api
        .post(
            &format!("/events/{m}"),
            slot("Other", eleven, eleven + HOUR),
        )
        .await;
    assert_eq!(response.status(), 409);
    // And new requests still hold their slots against each other.
    let one = lab.tomorrow + 13 * HOUR;
    let response = api
        .post(&format!("/events/{m}"), slot("First ask", one, one + HOUR))
        .await;
    assert_eq!(response.status(), 201);
    let response = api
        .post(&format!("/events/{m}"), slot("Second ask", one, one + HOUR))
        .await;
    assert_eq!(response.status(), 409, "asked for on this device already");

    // The week grid draws it at the new time, marked.
    let browser = Browser::at(&running.url);
    let calendar = format!(
        "/resources/{m}/calendar?view=week&date={}",
        day_of(lab.tomorrow)
    );
    let html = browser.page(&calendar).await;
    assert!(
        html.contains("11:00–12:00 Imaging (") && html.contains("Déplacement demandé, en attente"),
        "{html}"
    );
    assert_eq!(lab_rows(&lab).await[0].2, nine, "the lab is unchanged");

    let report = bob_replica.sync().await;
    assert_eq!(counts(&report), (2, 2, 0, 0), "{report}");
    let rows = lab_rows(&lab).await;
    assert_eq!(rows[0], (id, "confirmed".into(), eleven), "{rows:?}");
    let event = api.json(&format!("/event/{id}")).await;
    assert_eq!(event["start"], format_instant(eleven), "{event}");
    assert!(event.get("pending_change").is_none(), "{event}");
    running.stop().await.unwrap();
    lab.app.stop().await;
}

#[tokio::test]
async fn a_manager_approves_and_refuses_bookings_from_a_replica() {
    let lab = lab().await;
    let m = lab.microscope;
    let response = lab
        .app
        .browser(&lab.ada)
        .await
        .post_form(
            &format!("/resources/{m}/booking-rules"),
            &[
                ("is_bookable", "1"),
                ("is_cancellable", "1"),
                ("cancel_minutes", "0"),
                ("needs_approval", "1"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let nine = lab.tomorrow + 9 * HOUR;
    let eleven = lab.tomorrow + 11 * HOUR;
    let first = book_online(&lab, &lab.bob, "First", nine).await;
    let second = book_online(&lab, &lab.bob, "Second", eleven).await;
    assert_eq!(state_on_lab(&lab, first).await, BookingState::Pending);
    let (ada_replica, _) = replica(&lab.app, &lab.ada).await;
    let (bob_replica, _) = replica(&lab.app, &lab.bob).await;

    // Bob may not approve, even offline.
    let bob = bob_replica.store.subject(lab.bob.id).await.unwrap();
    let refused = bob_replica.store.decide_booking(&bob, first, true).await;
    assert!(
        matches!(refused, Err(StoreError::Forbidden(_))),
        "{refused:?}"
    );

    // Ada approves the first from the replica's calendar, refuses the second through API v2.
    let (running, api) = serve_replica(&ada_replica).await;
    let browser = Browser::at(&running.url);
    let calendar = format!(
        "/resources/{m}/calendar?view=week&date={}",
        day_of(lab.tomorrow)
    );
    let html = browser.page(&calendar).await;
    assert!(
        html.contains(&format!("/calendar/bookings/{first}/approve")),
        "{html}"
    );
    let response = browser
        .post_form(
            &format!("/calendar/bookings/{first}/approve"),
            &[("back", &calendar)],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert!(location(&response).contains("msg=change_requested"));
    let response = api
        .patch(&format!("/event/{second}"), json!({"action": "refuse"}))
        .await;
    assert_eq!(response.status(), 200);
    let html = browser.page(&calendar).await;
    assert!(html.contains("Approbation demandée"), "{html}");
    assert!(html.contains("Refus demandé"), "{html}");
    assert_eq!(state_on_lab(&lab, first).await, BookingState::Pending);

    let report = ada_replica.sync().await;
    assert_eq!(counts(&report), (2, 2, 0, 0), "{report}");
    assert_eq!(state_on_lab(&lab, first).await, BookingState::Confirmed);
    assert_eq!(state_on_lab(&lab, second).await, BookingState::Refused);
    let local = api.json(&format!("/events?item={m}")).await;
    let local = local.as_array().unwrap();
    assert_eq!(local.len(), 1, "{local:?}");
    assert_eq!(local[0]["state"], "confirmed");
    running.stop().await.unwrap();
    lab.app.stop().await;
}

#[tokio::test]
async fn a_change_the_lab_refuses_is_shown_with_its_reason_until_dismissed() {
    let lab = lab().await;
    let m = lab.microscope;
    let nine = lab.tomorrow + 9 * HOUR;
    let two = lab.tomorrow + 14 * HOUR;
    let imaging = book_online(&lab, &lab.bob, "Imaging", nine).await;
    let spare = book_online(&lab, &lab.bob, "Spare", lab.tomorrow + 16 * HOUR).await;
    let (bob_replica, _) = replica(&lab.app, &lab.bob).await;
    let (running, api) = serve_replica(&bob_replica).await;

    // Offline, Bob moves Imaging to 14:00 and cancels Spare; meanwhile, at the lab, Ada books
    // 14:00 and cancels Spare herself.
    let response = api
        .patch(
            &format!("/event/{imaging}"),
            json!({"start": format_instant(two), "end": format_instant(two + HOUR)}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(api.delete(&format!("/event/{spare}")).await.status(), 204);
    book_online(&lab, &lab.ada, "Maintenance", two).await;
    assert_eq!(
        lab.ada_api
            .delete(&format!("/event/{spare}"))
            .await
            .status(),
        204
    );

    let report = bob_replica.sync().await;
    assert_eq!(counts(&report), (2, 0, 2, 0), "{report}");
    let rows = lab_rows(&lab).await;
    assert!(
        rows.contains(&(imaging, "confirmed".into(), nine)),
        "not moved: {rows:?}"
    );

    let bob = bob_replica.store.subject(lab.bob.id).await.unwrap();
    let refused = bob_replica
        .store
        .refused_booking_requests(&bob)
        .await
        .unwrap();
    assert_eq!(refused.len(), 2, "{refused:?}");
    let by_action = |action: &str| {
        refused
            .iter()
            .find(|r| r.request.as_ref().unwrap().action.as_deref() == Some(action))
            .unwrap()
            .clone()
    };
    let moved = by_action("move");
    let request = moved.request.clone().unwrap();
    assert_eq!(request.reason_code.as_deref(), Some("overlap"));
    assert!(request.reason.unwrap().contains("\"Maintenance\""));
    let cancel = by_action("cancel").request.unwrap();
    assert_eq!(cancel.reason_code.as_deref(), Some("conflict"));
    assert!(
        cancel.reason.unwrap().contains("already cancelled"),
        "booking gone meanwhile"
    );

    // Shown in the calendar beside the lab's truth, and on the status page, with the reason.
    let browser = Browser::at(&running.url);
    let calendar = format!(
        "/resources/{m}/calendar?view=week&date={}",
        day_of(lab.tomorrow)
    );
    let html = browser.page(&calendar).await;
    assert!(html.contains("Déplacement demandé"), "{html}");
    assert!(
        html.contains("refusée par le serveur du laboratoire"),
        "{html}"
    );
    assert!(html.contains("Le créneau était déjà réservé"), "{html}");
    assert!(
        html.contains("09:00–10:00 Imaging"),
        "the lab's truth: {html}"
    );
    let html = browser.page("/replica/rejected").await;
    assert!(html.contains("Annulation demandée"), "{html}");
    assert!(
        html.contains(r#"id="replica-booking-refused">2 "#),
        "{html}"
    );

    // Dismissed, like a refused new booking.
    for row in [&moved, &by_action("cancel")] {
        let response = browser
            .post_form(
                &format!("/calendar/bookings/{}/dismiss", row.id),
                &[("back", "/replica/rejected")],
            )
            .await;
        assert_eq!(response.status(), 303);
    }
    let html = browser.page(&calendar).await;
    assert!(!html.contains("Déplacement demandé"), "{html}");
    assert!(!html.contains("replica-booking-refused"), "{html}");
    running.stop().await.unwrap();
    lab.app.stop().await;
}

#[tokio::test]
async fn a_change_whose_answer_is_cut_off_is_sent_again_and_applied_once() {
    const BOOKINGS: &str = "POST /api/sync/v1/bookings";
    let lab = lab().await;
    let nine = lab.tomorrow + 9 * HOUR;
    let id = book_online(&lab, &lab.bob, "Imaging", nine).await;
    let proxy = FaultProxy::start(&lab.app.url).await;
    let (laptop, _) = replica_at(
        &proxy.url,
        &cahier_sync::http::TlsOptions::default(),
        &lab.bob,
    )
    .await
    .unwrap();
    let bob = laptop.store.subject(lab.bob.id).await.unwrap();
    let row = laptop.store.cancel_booking(&bob, id).await.unwrap();
    let change = row.change.unwrap();

    // The lab cancels it, but its answer breaks off: the replica still waits, and the request
    // can neither be withdrawn nor replaced until the answer arrives.
    proxy.arm(Fault::CutResponse(BOOKINGS, 30));
    assert!(
        cahier_sync::sync_once(&laptop.store, &laptop.transport)
            .await
            .is_err()
    );
    assert_eq!(state_on_lab(&lab, id).await, BookingState::Cancelled);
    assert_eq!(
        laptop.store.pending_booking_changes().await.unwrap().len(),
        1
    );
    let withdrawn = laptop.store.cancel_booking(&bob, change.request_id).await;
    assert!(
        matches!(&withdrawn, Err(StoreError::Conflict(m)) if m.contains("answer has not arrived")),
        "{withdrawn:?}"
    );
    let again = laptop.store.cancel_booking(&bob, id).await;
    assert!(
        matches!(&again, Err(StoreError::Conflict(m)) if m.contains("answer has not arrived")),
        "{again:?}"
    );

    // Sent again (and delivered twice): the recorded answer, not "already cancelled".
    proxy.arm(Fault::Duplicate(BOOKINGS));
    let report = laptop.sync().await;
    assert_eq!(counts(&report), (1, 1, 0, 0), "{report}");
    assert_eq!(proxy.armed(), 0);
    assert!(
        laptop
            .store
            .pending_booking_changes()
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        laptop
            .store
            .refused_booking_requests(&bob)
            .await
            .unwrap()
            .is_empty()
    );
    lab.app.stop().await;
}

#[tokio::test]
async fn a_change_posted_twice_is_applied_once_and_no_other_device_can_reuse_its_id() {
    let lab = lab().await;
    let nine = lab.tomorrow + 9 * HOUR;
    let id = book_online(&lab, &lab.bob, "Imaging", nine).await;
    let (bob_replica, _) = replica(&lab.app, &lab.bob).await;
    let (carol_replica, _) = replica(&lab.app, &lab.carol).await;
    let body = json!({"requests": [], "changes": [{
        "id": "8f0e7c1e-2222-4a2b-9c3d-000000000002",
        "booking": id,
        "action": "move",
        "start_ms": nine + 2 * HOUR,
        "end_ms": nine + 3 * HOUR,
        "device_at": nine - DAY,
    }]});
    let client = reqwest::Client::new();
    let post = |token: &str, body: &Value| {
        client
            .post(format!("{}/api/sync/v1/bookings", lab.app.url))
            .header("Authorization", format!("Device {token}"))
            .json(body)
            .send()
    };
    let first: Value = post(&bob_replica.token, &body)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["change_outcomes"][0]["outcome"], "booked", "{first}");
    assert_eq!(first["change_outcomes"][0]["booking"], id);
    // Meanwhile Ada moves it back online: the replay must not move it again.
    let response = lab
        .ada_api
        .patch(
            &format!("/event/{id}"),
            json!({"start": format_instant(nine), "end": format_instant(nine + HOUR)}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let again: Value = post(&bob_replica.token, &body)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["change_outcomes"], again["change_outcomes"]);
    assert_eq!(lab_rows(&lab).await[0].2, nine, "applied once");

    // Another device cannot take over the id.
    let other: Value = post(&carol_replica.token, &body)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["change_outcomes"][0]["outcome"], "refused");
    assert_eq!(other["change_outcomes"][0]["code"], "conflict");

    // Carol may not move Bob's booking; an unknown change is refused, not a 500.
    let carols = json!({"requests": [], "changes": [
        {"id": "8f0e7c1e-3333-4a2b-9c3d-000000000003", "booking": id, "action": "move",
         "start_ms": nine + 5 * HOUR, "end_ms": nine + 6 * HOUR, "device_at": 0},
        {"id": "8f0e7c1e-4444-4a2b-9c3d-000000000004", "booking": id, "action": "explode",
         "device_at": 0},
    ]});
    let answer: Value = post(&carol_replica.token, &carols)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["change_outcomes"][0]["code"], "forbidden",
        "{answer}"
    );
    assert_eq!(answer["change_outcomes"][1]["code"], "invalid", "{answer}");
    assert_eq!(lab_rows(&lab).await[0].2, nine);
    lab.app.stop().await;
}

/// A lab server older than changes of its bookings, as the replica sees it: the real lab over
/// HTTP, but `changes` never reach it (an older server ignores the field) and its answer has
/// no `change_outcomes`. No file transfers (the default of the trait).
struct OlderLab<'a>(&'a cahier_sync::http::HttpTransport);

impl Transport for OlderLab<'_> {
    async fn reference(
        &self,
    ) -> Result<cahier_store::sync::proto::Reference, cahier_sync::SyncError> {
        self.0.reference().await
    }
    async fn push(
        &self,
        docs: Vec<cahier_store::sync::proto::PushDoc>,
    ) -> Result<Vec<cahier_store::sync::proto::PushResult>, cahier_sync::SyncError> {
        self.0.push(docs).await
    }
    async fn feed(
        &self,
        since: i64,
        limit: i64,
    ) -> Result<cahier_store::sync::proto::FeedResponse, cahier_sync::SyncError> {
        self.0.feed(since, limit).await
    }
    async fn pull(
        &self,
        docs: Vec<cahier_store::sync::proto::PullDoc>,
    ) -> Result<Vec<cahier_store::sync::proto::PullEntry>, cahier_sync::SyncError> {
        self.0.pull(docs).await
    }
    async fn revoked(&self, uuids: Vec<String>) -> Result<Vec<String>, cahier_sync::SyncError> {
        self.0.revoked(uuids).await
    }
    async fn bookings(
        &self,
        mut body: cahier_store::sync::proto::BookingRequests,
    ) -> Result<Option<cahier_store::sync::proto::BookingAnswer>, cahier_sync::SyncError> {
        body.changes.clear();
        let answer = self.0.bookings(body).await?;
        assert!(answer.as_ref().is_none_or(|a| a.change_outcomes.is_empty()));
        Ok(answer)
    }
}

#[tokio::test]
async fn changes_wait_on_the_replica_while_the_lab_server_is_older_than_them() {
    let lab = lab().await;
    let nine = lab.tomorrow + 9 * HOUR;
    let id = book_online(&lab, &lab.bob, "Imaging", nine).await;
    let (bob_replica, _) = replica(&lab.app, &lab.bob).await;
    let bob = bob_replica.store.subject(lab.bob.id).await.unwrap();
    let change = bob_replica
        .store
        .cancel_booking(&bob, id)
        .await
        .unwrap()
        .change
        .unwrap();

    let older = OlderLab(&bob_replica.transport);
    let report = cahier_sync::sync_once(&bob_replica.store, &older)
        .await
        .unwrap();
    assert_eq!(counts(&report), (0, 0, 0, 1), "{report}");
    assert_eq!(state_on_lab(&lab, id).await, BookingState::Confirmed);
    // Not sent, so still the device's own: it can be asked again or withdrawn.
    let pending = bob_replica.store.pending_booking_changes().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, change.uuid);
    bob_replica
        .store
        .cancel_booking(&bob, change.request_id)
        .await
        .unwrap();
    bob_replica.store.cancel_booking(&bob, id).await.unwrap();

    // Once the lab takes changes, the next sync makes it.
    let report = bob_replica.sync().await;
    assert_eq!(counts(&report), (1, 1, 0, 0), "{report}");
    assert_eq!(state_on_lab(&lab, id).await, BookingState::Cancelled);
    lab.app.stop().await;
}

/// Posts the move form of booking `id` on a calendar page of the microscope.
async fn move_with_form(
    browser: &Browser,
    lab: &Lab,
    id: i64,
    page_date: &str,
    start: i64,
) -> reqwest::Response {
    let zone = cahier_core::zone::Zone::utc();
    browser
        .post_form(
            &format!("/calendar/bookings/{id}/move"),
            &[
                ("scope", &format!("resource:{}", lab.microscope)),
                ("view", "week"),
                ("date", page_date),
                ("start", &zone.input_value(start)),
                ("end", &zone.input_value(start + HOUR)),
            ],
        )
        .await
}

#[tokio::test]
async fn a_move_made_with_the_replicas_calendar_form_waits_in_the_new_week_and_is_made_at_sync() {
    let lab = lab().await;
    let m = lab.microscope;
    let nine = lab.tomorrow + 9 * HOUR;
    let next_week = lab.tomorrow + 7 * DAY;
    let imaging = book_online(&lab, &lab.bob, "Imaging", nine).await;
    book_online(&lab, &lab.ada, "Maintenance", next_week + 14 * HOUR).await;
    let (bob_replica, _) = replica(&lab.app, &lab.bob).await;
    let (running, _) = serve_replica(&bob_replica).await;
    let browser = Browser::at(&running.url);
    let day = day_of(lab.tomorrow);
    let calendar = |date: &str| format!("/resources/{m}/calendar?view=week&date={date}");

    // The replica's page offers the form, saying the move will be a request.
    let html = browser.page(&calendar(&day)).await;
    assert!(
        html.contains(&format!("id=\"move-form-{imaging}\"")),
        "{html}"
    );
    assert!(html.contains("déplacer une réservation du laboratoire est une demande"));

    // Into a slot the mirror shows taken: refused at once, offline, beside the form.
    let response = move_with_form(&browser, &lab, imaging, &day, next_week + 14 * HOUR).await;
    assert_eq!(response.status(), 409);
    let html = response.text().await.unwrap();
    assert!(
        html.contains(&format!(
            "id=\"move-error-{imaging}\">this slot is already booked"
        )),
        "{html}"
    );
    assert!(
        bob_replica
            .store
            .pending_booking_changes()
            .await
            .unwrap()
            .is_empty()
    );

    // To next week at 10:00: a request, shown pending in the new week's grid and list.
    let response = move_with_form(&browser, &lab, imaging, &day, next_week + 10 * HOUR).await;
    assert_eq!(response.status(), 303);
    let target = location(&response);
    assert_eq!(
        target,
        format!("{}&msg=change_requested", calendar(&day_of(next_week)))
    );
    let html = browser.page(&target).await;
    assert!(html.contains("Modification enregistrée"), "{html}");
    assert!(
        html.contains("10:00–11:00 Imaging (") && html.contains("Déplacement demandé, en attente"),
        "drawn in the week of the new times: {html}"
    );
    assert!(
        html.contains(&format!("data-booking=\"{imaging}\"")),
        "{html}"
    );
    assert!(html.contains("Retirer cette demande"), "{html}");
    // In the week of the lab's times it stays listed with the change, no longer drawn there.
    let html = browser.page(&calendar(&day)).await;
    assert!(
        html.contains(&format!("data-booking=\"{imaging}\"")),
        "{html}"
    );
    assert!(html.contains("Déplacement demandé vers"), "{html}");
    assert!(!html.contains("09:00–10:00 Imaging ("), "{html}");
    assert_eq!(lab_rows(&lab).await[0].2, nine, "the lab is unchanged");

    // Withdrawn, it is gone from the new week; asked again (at 11:00), it waits again.
    let change = bob_replica.store.pending_booking_changes().await.unwrap();
    assert_eq!(change.len(), 1);
    let bob = bob_replica.store.subject(lab.bob.id).await.unwrap();
    let request = bob_replica
        .store
        .booking(&bob, imaging)
        .await
        .unwrap()
        .change
        .unwrap()
        .request_id;
    let response = browser
        .post_form(
            &format!("/calendar/bookings/{request}/withdraw"),
            &[("back", &calendar(&day_of(next_week)))],
        )
        .await;
    assert_eq!(response.status(), 303);
    let html = browser.page(&calendar(&day_of(next_week))).await;
    assert!(
        !html.contains(&format!("data-booking=\"{imaging}\"")),
        "{html}"
    );
    let response = move_with_form(&browser, &lab, imaging, &day, next_week + 11 * HOUR).await;
    assert_eq!(response.status(), 303);

    // The sync makes it at the lab; the mirror then holds the lab's truth.
    let report = bob_replica.sync().await;
    assert_eq!(counts(&report), (1, 1, 0, 0), "{report}");
    let rows = lab_rows(&lab).await;
    assert!(
        rows.contains(&(imaging, "confirmed".into(), next_week + 11 * HOUR)),
        "{rows:?}"
    );
    let html = browser.page(&calendar(&day_of(next_week))).await;
    assert!(html.contains("11:00–12:00 Imaging ("), "{html}");
    assert!(!html.contains("Déplacement demandé"), "{html}");
    running.stop().await.unwrap();
    lab.app.stop().await;
}

#[tokio::test]
async fn a_move_from_the_replicas_form_into_a_slot_taken_meanwhile_is_refused_with_the_reason() {
    let lab = lab().await;
    let m = lab.microscope;
    let nine = lab.tomorrow + 9 * HOUR;
    let eleven = lab.tomorrow + 11 * HOUR;
    let imaging = book_online(&lab, &lab.bob, "Imaging", nine).await;
    let (bob_replica, _) = replica(&lab.app, &lab.bob).await;
    let (carol_replica, _) = replica(&lab.app, &lab.carol).await;
    let day = day_of(lab.tomorrow);
    let calendar = format!("/resources/{m}/calendar?view=week&date={day}");

    // Carol's replica offers no move of Bob's booking, and refuses a forged one (403).
    let (carol_running, _) = serve_replica(&carol_replica).await;
    let carol = Browser::at(&carol_running.url);
    let html = carol.page(&calendar).await;
    assert!(
        html.contains(&format!("data-booking=\"{imaging}\"")),
        "{html}"
    );
    assert!(
        !html.contains(&format!("id=\"move-form-{imaging}\"")),
        "{html}"
    );
    let response = move_with_form(&carol, &lab, imaging, &day, eleven).await;
    assert_eq!(response.status(), 403);
    assert!(
        carol_replica
            .store
            .pending_booking_changes()
            .await
            .unwrap()
            .is_empty()
    );
    carol_running.stop().await.unwrap();

    // Bob asks for 11:00 offline; meanwhile Ada books 11:00 at the lab.
    let (running, _) = serve_replica(&bob_replica).await;
    let browser = Browser::at(&running.url);
    browser.page(&calendar).await;
    let response = move_with_form(&browser, &lab, imaging, &day, eleven).await;
    assert_eq!(response.status(), 303);
    book_online(&lab, &lab.ada, "Maintenance", eleven).await;

    let report = bob_replica.sync().await;
    assert_eq!(counts(&report), (1, 0, 1, 0), "{report}");
    assert!(
        lab_rows(&lab)
            .await
            .contains(&(imaging, "confirmed".into(), nine)),
        "not moved"
    );
    // Shown with the reason beside the lab's truth, until dismissed.
    let html = browser.page(&calendar).await;
    assert!(html.contains("Déplacement demandé"), "{html}");
    assert!(html.contains("Le créneau était déjà réservé"), "{html}");
    assert!(html.contains("09:00–10:00 Imaging ("), "{html}");
    running.stop().await.unwrap();
    lab.app.stop().await;
}
