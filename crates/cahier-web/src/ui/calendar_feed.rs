//! Calendar feeds (iCalendar, RFC 5545) that Thunderbird, Outlook or a phone subscribe to:
//! `/ical/{token}/mine.ics` (the token owner's bookings) and `/ical/{token}/resources/{id}.ics`
//! (every active booking of a resource the token owner may read). Served without a session:
//! the secret token in the URL stands for its user, whose access the store applies. An unknown
//! token or an unreadable resource is 404. Never log the token.

use crate::AppState;
use crate::error::AppError;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cahier_store::bookings::{BookingQuery, BookingRow, BookingState};
use icalendar::{Calendar, Component, EventLike, EventStatus};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ical/{token}/mine.ics", get(user_feed))
        .route("/ical/{token}/resources/{file}", get(resource_feed))
}

/// How far back a feed goes.
const FEED_HISTORY_MS: i64 = 90 * 86_400_000;

fn utc(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// `YYYYMMDDTHHMMSSZ`, RFC 5545's UTC form.
fn stamp(ms: i64) -> String {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    utc(ms).format(&format).unwrap_or_default()
}

/// The calendar of `rows`, one VEVENT each; its UID is stable across fetches so calendar
/// applications update events instead of duplicating them.
fn calendar(state: &AppState, name: &str, rows: &[BookingRow]) -> String {
    let host = state
        .config
        .public_url
        .split("://")
        .nth(1)
        .unwrap_or("cahier")
        .trim_end_matches('/')
        .to_owned();
    let mut calendar = Calendar::new();
    calendar.name(name);
    for row in rows {
        let mut summary = format!("{} · {}", row.item_title, row.title);
        if row.state == BookingState::Pending {
            summary.push_str(" (?)");
        }
        let mut description = format!("{} — {}", row.fullname, row.item_title);
        if let Some(title) = &row.experiment_title {
            description.push_str(&format!("\n{title}"));
        }
        let event = icalendar::Event::new()
            .uid(&format!("booking-{}@{host}", row.id))
            .add_property("DTSTAMP", stamp(row.modified_at))
            .summary(&summary)
            .description(&description)
            .location(&row.item_title)
            .starts(utc(row.start_ms))
            .ends(utc(row.end_ms))
            .status(if row.state == BookingState::Pending {
                EventStatus::Tentative
            } else {
                EventStatus::Confirmed
            })
            .url(&format!(
                "{}/resources/{}/calendar",
                state.config.public_url.trim_end_matches('/'),
                row.entity_id
            ))
            .done();
        calendar.push(event);
    }
    calendar.done().to_string()
}

fn ics(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn token_subject(state: &AppState, token: &str) -> Result<cahier_core::Subject, AppError> {
    let user = state
        .store
        .calendar_token_user(token)
        .await?
        .ok_or_else(|| AppError::NotFound("calendar".into()))?;
    Ok(state.store.subject(user).await?)
}

async fn user_feed(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    let subject = token_subject(&state, &token).await?;
    let query = BookingQuery {
        from_ms: Some(state.store.now_ms() - FEED_HISTORY_MS),
        user_id: Some(subject.user_id),
        ..BookingQuery::default()
    };
    let rows = state.store.bookings(&subject, &query).await?;
    Ok(ics(calendar(&state, "Cahier", &rows)))
}

async fn resource_feed(
    State(state): State<AppState>,
    Path((token, file)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let id: i64 = file
        .strip_suffix(".ics")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| AppError::NotFound("calendar".into()))?;
    let subject = token_subject(&state, &token).await?;
    // Not found unless the token's user may read the resource.
    state.store.booking_rules(&subject, id).await?;
    let resource = state.store.entity(&subject, id).await?;
    let query = BookingQuery {
        from_ms: Some(state.store.now_ms() - FEED_HISTORY_MS),
        entity_ids: vec![id],
        ..BookingQuery::default()
    };
    let rows = state.store.bookings(&subject, &query).await?;
    Ok(ics(calendar(&state, &resource.title, &rows)))
}
