//! eLabFTW's scheduler endpoints: `GET /events`, `POST /events/{item id}`,
//! `GET|PATCH|DELETE /event/{id}`. An event is a booking of a resource ("item"); the rules and
//! their checks are the store's (`cahier_store::bookings`). `start` and `end` come back as
//! ISO 8601 with the caller's offset, as eLabFTW gives them (`2026-12-01T10:00:00+01:00`; `Z`
//! when the caller's zone is UTC). They are accepted as ISO 8601 with an offset or `Z`, or as
//! `YYYY-MM-DD HH:MM:SS` without offset, which is local time in the caller's zone (their
//! setting, else the instance's).

use super::entities::created_at_path;
use super::json::JsonBody;
use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::AppError;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cahier_core::clock::format_sql_datetime;
use cahier_core::zone::Zone;
use cahier_store::bookings::{BookingChange, BookingQuery, BookingRow, NewBooking};
use serde_json::{Value, json};

use super::openapi::{
    Documented, Op, integer, list_of, object, one_of, schema, string, with_property,
};

pub(super) fn routes() -> Documented {
    let booking = || {
        object(&[
            ("start", string()),
            ("end", string()),
            ("title", string()),
            ("experiment", json!({"type": "integer", "nullable": true})),
        ])
    };
    Documented::new()
        .route(
            "bookings",
            "/events",
            get(list_events),
            vec![Op::get("List bookings", list_of("Event")).query(&[
                ("start", string()),
                ("end", string()),
                ("item", integer()),
                ("eventOwner", integer()),
            ])],
        )
        .route(
            "bookings",
            "/events/{item}",
            post(create_event),
            vec![Op::post("Book a resource").body(booking())],
        )
        .route(
            "bookings",
            "/event/{id}",
            get(read_event).patch(update_event).delete(delete_event),
            vec![
                Op::get("Read a booking", schema("Event")),
                Op::patch(
                    "Move, retitle, approve or refuse a booking",
                    schema("Event"),
                )
                .body(with_property(
                    booking(),
                    "action",
                    one_of(&["approve", "refuse"]),
                )),
                Op::delete("Cancel a booking"),
            ],
        )
}

/// The JSON of one event, with eLabFTW's field names. On a field replica, a booking asked for
/// there has `state` `requested` (pending confirmation by the lab server at sync) or
/// `request_refused` (with `refusal_reason`), and its `request_id`; a request to change a lab
/// booking also has `request_action` (`cancel`, `move`, `approve`, `refuse`). A lab booking
/// with such a change not yet answered has `pending_change` (`action`, `start`, `end`,
/// `request_id`, and `event`: the request's own id, to withdraw it with `DELETE`).
pub(crate) fn event_json(row: &BookingRow, zone: &Zone) -> Value {
    let mut event = json!({
        "id": row.id,
        "team": row.team_id,
        "item": row.entity_id,
        "items_id": row.entity_id,
        "item_title": row.item_title,
        "start": zone.rfc3339(row.start_ms),
        "end": zone.rfc3339(row.end_ms),
        "title": row.title,
        "title_only": row.title,
        "userid": row.user_id,
        "fullname": row.fullname,
        "experiment": row.experiment_id,
        "experiment_title": row.experiment_title,
        "event_duration_minutes": (row.end_ms - row.start_ms) / 60_000,
        "state": row.state.as_str(),
        "created_at": format_sql_datetime(row.created_at),
        "modified_at": format_sql_datetime(row.modified_at),
    });
    if let (Some(request), Some(object)) = (&row.request, event.as_object_mut()) {
        object.insert("request_id".into(), json!(request.uuid));
        object.insert("refusal_reason".into(), json!(request.reason));
        object.insert("refusal_code".into(), json!(request.reason_code));
        if let Some(action) = &request.action {
            object.insert("request_action".into(), json!(action));
        }
    }
    if let (Some(change), Some(object)) = (&row.change, event.as_object_mut()) {
        object.insert(
            "pending_change".into(),
            json!({
                "action": change.action,
                "start": zone.rfc3339(change.start_ms),
                "end": zone.rfc3339(change.end_ms),
                "request_id": change.uuid,
                "event": change.request_id,
            }),
        );
    }
    event
}

fn instant(zone: &Zone, field: &str, text: &str) -> Result<i64, AppError> {
    zone.parse(text).ok_or_else(|| {
        AppError::invalid(
            field,
            format!(
                "expected a date and time such as 2026-12-01T09:00:00+01:00, 2026-12-01T08:00:00Z or 2026-12-01 09:00:00 (then in your time zone, {})",
                zone.name()
            ),
        )
    })
}

async fn caller_zone(state: &AppState, caller: &ApiCaller) -> Result<Zone, AppError> {
    Ok(state.store.user_zone(caller.user.id).await?)
}

/// `GET /events?start=&end=&item=&items[]=`: active bookings of resources the caller may read.
async fn list_events(
    State(state): State<AppState>,
    caller: ApiCaller,
    RawQuery(raw): RawQuery,
) -> Result<Response, AppError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| AppError::BadRequest(format!("could not read the query string: {e}")))?;
    let zone = caller_zone(&state, &caller).await?;
    let mut query = BookingQuery::default();
    for (key, value) in &pairs {
        if value.trim().is_empty() {
            continue;
        }
        match key.as_str() {
            "start" => query.from_ms = Some(instant(&zone, "start", value)?),
            "end" => query.to_ms = Some(instant(&zone, "end", value)?),
            "item" | "items[]" | "items" => {
                for piece in value.split(',') {
                    let id = piece
                        .trim()
                        .parse::<i64>()
                        .map_err(|_| AppError::invalid(key, "expected resource ids"))?;
                    query.entity_ids.push(id);
                }
            }
            "eventOwner" | "owner" => {
                query.user_id = Some(
                    value
                        .parse()
                        .map_err(|_| AppError::invalid(key, "expected a user id"))?,
                );
            }
            _ => {}
        }
    }
    let rows = state.store.bookings(&caller.subject, &query).await?;
    Ok(axum::Json(
        rows.iter()
            .map(|row| event_json(row, &zone))
            .collect::<Vec<_>>(),
    )
    .into_response())
}

/// `POST /events/{item}` `{title, start, end, experiment?}` → 201 + `Location: …/event/{id}`.
/// On a field replica the event is a request (`state: requested`) until the next sync.
async fn create_event(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(item): Path<i64>,
    body: JsonBody,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let start = body
        .string("start")?
        .ok_or_else(|| AppError::invalid("start", "required, e.g. 2026-12-01T09:00:00Z"))?;
    let end = body
        .string("end")?
        .ok_or_else(|| AppError::invalid("end", "required, e.g. 2026-12-01T10:00:00Z"))?;
    let zone = caller_zone(&state, &caller).await?;
    let new = NewBooking {
        entity_id: item,
        start_ms: instant(&zone, "start", &start)?,
        end_ms: instant(&zone, "end", &end)?,
        title: body.string("title")?.unwrap_or_default(),
        experiment_id: body.int("experiment")?,
    };
    // On a field replica this records a request, decided by the lab server at sync.
    let row = state.store.book(&caller.subject, new).await?;
    Ok(created_at_path(&state, &format!("event/{}", row.id)))
}

/// `GET /event/{id}`.
async fn read_event(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let row = state.store.booking(&caller.subject, id).await?;
    let zone = caller_zone(&state, &caller).await?;
    Ok(axum::Json(event_json(&row, &zone)).into_response())
}

/// `PATCH /event/{id}`: `start`, `end`, `title`, `experiment` (null unlinks); eLabFTW's
/// `{"target": "title", "content": …}` and `{"target": "experiment", "id": …}` forms; or
/// `{"action": "approve" | "refuse"}` for the resource's owner and team admins.
async fn update_event(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
    body: JsonBody,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let store = &state.store;
    let zone = caller_zone(&state, &caller).await?;
    if let Some(action) = body.string("action")? {
        let row = match action.as_str() {
            "approve" => store.decide_booking(&caller.subject, id, true).await?,
            "refuse" => store.decide_booking(&caller.subject, id, false).await?,
            _ => return Err(AppError::invalid("action", "expected approve or refuse")),
        };
        return Ok(axum::Json(event_json(&row, &zone)).into_response());
    }
    let mut change = BookingChange::default();
    match body.string("target")?.as_deref() {
        Some("title") => change.title = Some(body.string("content")?.unwrap_or_default()),
        Some("experiment") => change.experiment_id = Some(body.int("id")?),
        Some("datetime") | None => {}
        Some(other) => {
            return Err(AppError::invalid(
                "target",
                format!("unknown target {other}; use datetime, title or experiment"),
            ));
        }
    }
    if let Some(start) = body.string("start")? {
        change.start_ms = Some(instant(&zone, "start", &start)?);
    }
    if let Some(end) = body.string("end")? {
        change.end_ms = Some(instant(&zone, "end", &end)?);
    }
    if body.string("target")?.is_none() {
        if let Some(title) = body.string("title")? {
            change.title = Some(title);
        }
        if let Some(experiment) = body.nullable_int("experiment")? {
            change.experiment_id = Some(experiment);
        }
    }
    let row = store.update_booking(&caller.subject, id, change).await?;
    Ok(axum::Json(event_json(&row, &zone)).into_response())
}

/// `DELETE /event/{id}`: cancels the booking within the resource's rules → 204.
async fn delete_event(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    caller.require_write()?;
    state.store.cancel_booking(&caller.subject, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
