//! Calendar feeds (iCalendar, RFC 5545) that Thunderbird, Outlook or a phone subscribe to:
//! `/ical/{token}/mine.ics` (the token owner's bookings) and `/ical/{token}/resources/{id}.ics`
//! (every active booking of a resource the token owner may read). Served without a session:
//! the secret token in the URL stands for its user, whose access the store applies. An unknown
//! token or an unreadable resource is 404. Never log the token.
//!
//! A field replica serves the same routes from its mirror of the lab's bookings and its user's
//! requests, with a token of its own (made on its calendar page, kept in its database, never
//! synced: a lab token opens nothing there, nor a replica's at the lab). What waits for the lab
//! server is `TENTATIVE`, with a note in the description in the user's language: a booking
//! asked for there, and a lab booking with a change asked for (a move at its new times). A
//! refused request is left out, and so is a change whose booking has left the mirror.

use super::calendar::action_key;
use crate::AppState;
use crate::error::AppError;
use crate::i18n::Lang;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cahier_core::Subject;
use cahier_core::zone::Zone;
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

/// One event of a feed: a booking as the feed shows it.
struct FeedEvent<'a> {
    row: &'a BookingRow,
    uid: String,
    start_ms: i64,
    end_ms: i64,
    is_tentative: bool,
    /// What waits for the lab server, in words (field replica).
    note: Option<String>,
}

/// Who a feed is read for: the token's user, their language and zone, and the host that
/// names its events.
struct Reader {
    subject: Subject,
    lang: Lang,
    zone: Zone,
    /// The host in event UIDs: this server's; on a field replica, the lab server's, so a
    /// booking keeps the UID the lab's feed gives it.
    host: String,
}

/// What follows the scheme of a URL (`lab.example.org/cahier`), as UIDs have always used it.
fn host_of(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.trim_end_matches('/');
    (!host.is_empty()).then(|| host.to_owned())
}

/// How a feed shows `row`, or `None` to leave it out (a refused request; a change asked for
/// on a field replica whose booking has left the mirror).
fn event<'a>(row: &'a BookingRow, reader: &Reader) -> Option<FeedEvent<'a>> {
    let lang = reader.lang;
    let pending = lang.t("booking.change_pending");
    let zone = &reader.zone;
    let span = |start: i64, end: i64| {
        format!("{}–{} ({})", zone.display(start), zone.hm(end), zone.name())
    };
    match (&row.request, &row.change) {
        (Some(request), _) => {
            if row.state != BookingState::Requested || request.action.is_some() {
                return None;
            }
            Some(FeedEvent {
                row,
                uid: format!("request-{}@{}", request.uuid, reader.host),
                start_ms: row.start_ms,
                end_ms: row.end_ms,
                is_tentative: true,
                note: Some(lang.t("booking.feed_requested").to_owned()),
            })
        }
        (None, Some(change)) => {
            let is_move = change.action == "move";
            let (start_ms, end_ms) = if is_move {
                (change.start_ms, change.end_ms)
            } else {
                (row.start_ms, row.end_ms)
            };
            let mut note = lang.t(action_key(&change.action)).to_owned();
            if is_move {
                note = format!(
                    "{note} ({} {})",
                    lang.t("booking.feed_lab_times"),
                    span(row.start_ms, row.end_ms)
                );
            }
            Some(FeedEvent {
                row,
                uid: format!("booking-{}@{}", row.id, reader.host),
                start_ms,
                end_ms,
                is_tentative: true,
                note: Some(format!("{note}: {pending}")),
            })
        }
        (None, None) => Some(FeedEvent {
            row,
            uid: format!("booking-{}@{}", row.id, reader.host),
            start_ms: row.start_ms,
            end_ms: row.end_ms,
            is_tentative: row.state == BookingState::Pending,
            note: None,
        }),
    }
}

/// The calendar of `rows`, one VEVENT each; its UID is stable across fetches so calendar
/// applications update events instead of duplicating them.
fn calendar(state: &AppState, reader: &Reader, name: &str, rows: &[BookingRow]) -> String {
    let mut calendar = Calendar::new();
    calendar.name(name);
    for event in rows.iter().filter_map(|row| self::event(row, reader)) {
        let row = event.row;
        let mut summary = format!("{} · {}", row.item_title, row.title);
        if event.is_tentative {
            summary.push_str(" (?)");
        }
        let mut description = format!("{} — {}", row.fullname, row.item_title);
        if let Some(title) = &row.experiment_title {
            description.push_str(&format!("\n{title}"));
        }
        if let Some(note) = &event.note {
            description.push_str(&format!("\n{note}"));
        }
        let ical = icalendar::Event::new()
            .uid(&event.uid)
            .add_property("DTSTAMP", stamp(row.modified_at))
            .summary(&summary)
            .description(&description)
            .location(&row.item_title)
            .starts(utc(event.start_ms))
            .ends(utc(event.end_ms))
            .status(if event.is_tentative {
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
        calendar.push(ical);
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

/// The reader a token stands for. On a field replica only its own user's token opens a feed.
async fn reader(state: &AppState, token: &str, headers: &HeaderMap) -> Result<Reader, AppError> {
    let not_found = || AppError::NotFound("calendar".into());
    let user_id = state
        .store
        .calendar_token_user(token)
        .await?
        .ok_or_else(not_found)?;
    if state
        .replica
        .as_ref()
        .is_some_and(|replica| replica.user_id != user_id)
    {
        return Err(not_found());
    }
    let user = state.store.user(user_id).await?;
    let host = match &state.replica {
        Some(_) => state.store.replica_get("server").await?,
        None => None,
    }
    .and_then(|url| host_of(&url))
    .or_else(|| host_of(&state.config.public_url))
    .unwrap_or_else(|| "cahier".to_owned());
    Ok(Reader {
        subject: state.store.subject(user_id).await?,
        lang: Lang::from_headers(headers, user.lang.as_deref()),
        zone: state.store.user_zone(user_id).await?,
        host,
    })
}

async fn user_feed(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let reader = reader(&state, &token, &headers).await?;
    let query = BookingQuery {
        from_ms: Some(state.store.now_ms() - FEED_HISTORY_MS),
        user_id: Some(reader.subject.user_id),
        ..BookingQuery::default()
    };
    let rows = state.store.bookings(&reader.subject, &query).await?;
    Ok(ics(calendar(&state, &reader, "Cahier", &rows)))
}

async fn resource_feed(
    State(state): State<AppState>,
    Path((token, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let id: i64 = file
        .strip_suffix(".ics")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| AppError::NotFound("calendar".into()))?;
    let reader = reader(&state, &token, &headers).await?;
    let subject = &reader.subject;
    // Not found unless the token's user may read the resource.
    state.store.booking_rules(subject, id).await?;
    let resource = state.store.entity(subject, id).await?;
    let query = BookingQuery {
        from_ms: Some(state.store.now_ms() - FEED_HISTORY_MS),
        entity_ids: vec![id],
        ..BookingQuery::default()
    };
    let rows = state.store.bookings(subject, &query).await?;
    Ok(ics(calendar(&state, &reader, &resource.title, &rows)))
}
