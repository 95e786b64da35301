//! A booking made in a browser on a field replica (issue #5): the replica's calendar shows it
//! "en attente de confirmation" in the week grid, the list and the sync banner, and once the
//! replica has synced, as the lab's confirmed booking. A lab booking cancelled with the
//! calendar's button on the replica is shown with the cancellation pending until sync, then
//! gone on both sides.

use crate::harness::Ui;
use cahier_store::Store;
use cahier_sync::http::{HttpTransport, TlsOptions};
use cahier_testkit::{Api, TestUser};
use serde_json::json;
use std::sync::Arc;

const DAY: i64 = 86_400_000;

/// Ada, team admin, and a bookable, cancellable microscope on the lab.
async fn lab_with_microscope(ui: &Ui) -> (TestUser, Api, i64) {
    let ada = ui.app.user("ada@lab.fr", "Ecology", true).await;
    let api = ui.app.api(&ui.app.api_key(&ada, true).await);
    api.create(
        "/teams/current/resources_categories",
        json!({"title": "Instruments", "is_default": true}),
    )
    .await;
    let microscope = api.create("/items", json!({"title": "Confocal"})).await;
    let response = ui
        .app
        .browser(&ada)
        .await
        .post_form(
            &format!("/resources/{microscope}/booking-rules"),
            &[("is_bookable", "1"), ("is_cancellable", "1")],
        )
        .await;
    assert_eq!(response.status(), 303);
    (ada, api, microscope)
}

/// The user's laptop: a replica with its first copy, served as `cahier replica serve` does.
async fn laptop(
    ui: &Ui,
    user: &TestUser,
) -> (tempfile::TempDir, Store, HttpTransport, cahier::Running) {
    let dir = tempfile::tempdir().unwrap();
    let (transport, registered) = HttpTransport::register(
        &ui.app.url,
        &TlsOptions::default(),
        &user.email,
        &user.password,
        "laptop",
    )
    .await
    .unwrap();
    let store = Store::open_sqlite(
        &dir.path().join("cahier.db"),
        Arc::new(cahier_core::SystemClock),
    )
    .await
    .unwrap()
    .with_device(&registered.device);
    store.init_replica().await.unwrap();
    cahier_sync::sync_once(&store, &transport).await.unwrap();
    let settings = cahier::settings::Settings {
        data: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        public_url: None,
        max_body_mb: 4,
        max_upload_mb: 64,
        tsa: None,
        audit_anchor_hours: 0,
        sqlite: Default::default(),
        time_zone: cahier_core::zone::Zone::utc(),
    };
    let handle = Arc::new(cahier_web::ReplicaHandle {
        user_id: registered.user_id,
        status: std::sync::Mutex::new(cahier_web::ReplicaStatus::default()),
        sync_now: tokio::sync::Notify::new(),
        fetcher: None,
    });
    let running = cahier::serve_store(&settings, store.clone(), Some(handle))
        .await
        .unwrap();
    (dir, store, transport, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_made_on_a_replica_shows_pending_confirmation_until_sync() {
    let ui = Ui::launch().await;
    let (ada, api, microscope) = lab_with_microscope(&ui).await;
    let (_dir, store, transport, running) = laptop(&ui, &ada).await;

    // In the browser, on the replica's calendar: book through the form.
    let tomorrow = (ui.app.store.now_ms() / DAY + 1) * DAY;
    let day = cahier_core::booking::format_instant(tomorrow)[..10].to_owned();
    let calendar = format!(
        "{}/resources/{microscope}/calendar?view=week&date={day}",
        running.url
    );
    ui.client.goto(&calendar).await.unwrap();
    ui.js(
        "document.getElementById('booking-start').value = arguments[0]; \
         document.getElementById('booking-end').value = arguments[1];",
        vec![json!(format!("{day}T09:00")), json!(format!("{day}T10:30"))],
    )
    .await;
    ui.click("#booking-submit").await;
    ui.wait_js(
        "the request in the list",
        "document.querySelector('#bookings .booking.requested') !== null",
    )
    .await;
    let list = ui
        .js(
            "return document.getElementById('bookings').innerText;",
            vec![],
        )
        .await;
    assert!(
        list.as_str()
            .unwrap()
            .contains("en attente de confirmation"),
        "{list}"
    );
    let cell = ui
        .js(
            "return document.querySelector('#week-grid .slot.requested').textContent;",
            vec![],
        )
        .await;
    assert!(
        cell.as_str()
            .unwrap()
            .contains("en attente de confirmation"),
        "said in words, not colour alone: {cell}"
    );
    let banner = ui
        .js(
            "return document.getElementById('replica-booking-waiting').textContent;",
            vec![],
        )
        .await;
    assert!(banner.as_str().unwrap().starts_with("1 "), "{banner}");
    assert!(
        api.json(&format!("/events?item={microscope}"))
            .await
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing on the lab before sync"
    );

    // Synced: the lab's booking, confirmed, on both sides.
    let report = cahier_sync::sync_once(&store, &transport).await.unwrap();
    assert_eq!(report.bookings_confirmed, 1, "{report}");
    ui.client.goto(&calendar).await.unwrap();
    ui.wait_js(
        "the confirmed booking",
        "document.querySelector('#bookings .booking.confirmed') !== null \
         && document.querySelector('#bookings .booking.requested') === null \
         && document.getElementById('replica-booking-waiting') === null",
    )
    .await;
    assert_eq!(
        api.json(&format!("/events?item={microscope}"))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    running.stop().await.unwrap();
    ui.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_booking_cancelled_on_a_replica_shows_the_cancellation_pending_until_sync() {
    let ui = Ui::launch().await;
    let (ada, api, microscope) = lab_with_microscope(&ui).await;
    let tomorrow = (ui.app.store.now_ms() / DAY + 1) * DAY;
    let nine = tomorrow + 9 * 3_600_000;
    let response = api
        .post(
            &format!("/events/{microscope}"),
            json!({
                "title": "Imaging",
                "start": cahier_core::booking::format_instant(nine),
                "end": cahier_core::booking::format_instant(nine + 3_600_000),
            }),
        )
        .await;
    assert_eq!(response.status(), 201, "booked on the lab");
    let (_dir, store, transport, running) = laptop(&ui, &ada).await;

    // On the replica's calendar, the lab's booking has the same Cancel button as on the lab.
    let day = cahier_core::booking::format_instant(tomorrow)[..10].to_owned();
    let calendar = format!(
        "{}/resources/{microscope}/calendar?view=week&date={day}",
        running.url
    );
    ui.client.goto(&calendar).await.unwrap();
    ui.click("#bookings .booking.confirmed button.danger").await;
    ui.wait_js(
        "the cancellation pending",
        "document.querySelector('#bookings [data-pending-change]') !== null",
    )
    .await;
    let list = ui
        .js(
            "return document.getElementById('bookings').innerText;",
            vec![],
        )
        .await;
    ui.screenshot("replica-booking-cancel-pending").await;
    let list = list.as_str().unwrap();
    assert!(list.contains("Annulation demandée"), "{list}");
    assert!(list.contains("Retirer cette demande"), "{list}");
    let cell = ui
        .js(
            "return document.querySelector('#week-grid .slot.requested').textContent;",
            vec![],
        )
        .await;
    assert!(
        cell.as_str().unwrap().contains("Annulation demandée"),
        "said in words in the grid: {cell}"
    );
    assert_eq!(
        api.json(&format!("/events?item={microscope}"))
            .await
            .as_array()
            .unwrap()
            .len(),
        1,
        "the lab still holds it before sync"
    );

    // Synced: cancelled at the lab, gone from the replica's calendar.
    let report = cahier_sync::sync_once(&store, &transport).await.unwrap();
    assert_eq!(report.bookings_confirmed, 1, "{report}");
    assert!(
        api.json(&format!("/events?item={microscope}"))
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    ui.client.goto(&calendar).await.unwrap();
    ui.wait_js(
        "the booking gone",
        "document.querySelector('#bookings .booking') === null \
         && document.getElementById('replica-booking-waiting') === null",
    )
    .await;
    running.stop().await.unwrap();
    ui.finish().await;
}
