//! `/api/v2/items/{id}/stock` (a Cahier extension; docs/API.md): read a resource's stock and
//! its events, record consumption, restocking or a correction, change the unit or threshold.
//! Amounts are decimal numbers (JSON numbers or strings, at most 3 decimals); bad numbers and
//! unit mismatches answer 400 naming the field. Writes need a read-write key and write access
//! (a locked resource refuses), like every other change.

use super::entities::{created_at_path, kind, parse_id};
use super::json::JsonBody;
use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::AppError;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cahier_core::EntityKind;
use cahier_core::clock::format_sql_datetime;
use cahier_core::stock::{StockKind, format_amount, parse_amount};
use cahier_store::stock::{NewStockEvent, StockEventRow, StockRow};
use serde_json::{Value, json};

use super::openapi::{Documented, Op, integer, object, one_of, schema, string};

pub(super) fn routes() -> Documented {
    Documented::new().route(
        "stock",
        "/{entity_type}/{id}/stock",
        get(read_stock).post(record_stock).patch(patch_stock),
        vec![
            Op::get("A resource's stock and its events", schema("Stock")),
            Op::post("Record consumption, restocking or a correction").body(object(&[
                ("action", one_of(&["consume", "restock", "adjust"])),
                (
                    "amount",
                    json!({"oneOf": [{"type": "number"}, {"type": "string"}]}),
                ),
                ("unit", string()),
                ("experiment", integer()),
                ("note", string()),
            ])),
            Op::patch(
                "Set the unit (starts tracking) or the low-stock threshold",
                schema("Stock"),
            )
            .body(object(&[
                ("unit", string()),
                (
                    "threshold",
                    json!({"oneOf": [{"type": "number"}, {"type": "string"}], "nullable": true}),
                ),
            ])),
        ],
    )
}

/// A number of units as JSON (a number with at most 3 decimals).
fn amount_json(milli: i64) -> Value {
    format_amount(milli)
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

fn event_json(event: &StockEventRow) -> Value {
    json!({
        "id": event.event_id,
        "action": event.kind,
        "amount": amount_json(event.delta_milli.abs()),
        "delta": amount_json(event.delta_milli),
        "unit": event.unit,
        "userid": event.user_id,
        "fullname": event.user_name,
        "device_time": format_sql_datetime(event.at),
        "received_at": format_sql_datetime(event.received_at),
        "experiment": event.experiment_id,
        "experiment_uuid": event.experiment_uuid,
        "experiment_title": event.experiment_title,
        "note": event.note,
    })
}

/// The `stock` object of a resource (`None` when it does not track stock).
pub(super) async fn stock_json(
    app: &AppState,
    caller: &ApiCaller,
    id: i64,
) -> Result<Option<Value>, AppError> {
    let Some(stock) = app.store.stock(&caller.subject, id).await? else {
        return Ok(None);
    };
    let events = app.store.stock_events(&caller.subject, id).await?;
    Ok(Some(summary_json(&stock, &events)))
}

/// The state of a stock without its events (API list rows).
pub(super) fn stock_state_json(stock: &StockRow) -> Value {
    json!({
        "unit": stock.unit,
        "quantity": amount_json(stock.quantity_milli),
        "threshold": stock.threshold_milli.map(amount_json),
        "is_low": stock.is_low(),
        "is_negative": stock.is_negative(),
    })
}

fn summary_json(stock: &StockRow, events: &[StockEventRow]) -> Value {
    let mut summary = stock_state_json(stock);
    if let Value::Object(map) = &mut summary {
        map.insert(
            "events".into(),
            events.iter().map(event_json).collect::<Vec<_>>().into(),
        );
    }
    summary
}

fn resource_id(entity_type: &str, id: &str) -> Result<i64, AppError> {
    if kind(entity_type)? != EntityKind::Resource {
        return Err(AppError::NotFound(format!(
            "stock of {entity_type} (only resources track stock)"
        )));
    }
    parse_id(id)
}

fn amount(body: &JsonBody, field: &str) -> Result<Option<i64>, AppError> {
    let text = match body.0.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(AppError::invalid(
                field,
                "expected a number, like 12 or 2.5",
            ));
        }
    };
    parse_amount(&text)
        .map(Some)
        .map_err(|m| AppError::invalid(field, m))
}

async fn read_stock(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let id = resource_id(&entity_type, &id)?;
    app.store
        .entity_of_kind(&caller.subject, EntityKind::Resource, id)
        .await?;
    match stock_json(&app, &caller, id).await? {
        Some(stock) => Ok(axum::Json(stock).into_response()),
        None => Err(AppError::NotFound(
            "stock (this resource does not track stock; PATCH a unit to start)".into(),
        )),
    }
}

async fn record_stock(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Response, AppError> {
    let id = resource_id(&entity_type, &id)?;
    caller.require_write()?;
    app.store
        .entity_of_kind(&caller.subject, EntityKind::Resource, id)
        .await?;
    let action = body.string("action")?;
    let Some(kind) = action.as_deref().and_then(StockKind::parse) else {
        return Err(AppError::invalid(
            "action",
            "expected \"consume\", \"restock\" or \"adjust\"",
        ));
    };
    let Some(amount_milli) = amount(&body, "amount")? else {
        return Err(AppError::invalid(
            "amount",
            "give the amount, like 12 or 2.5",
        ));
    };
    let new = NewStockEvent {
        kind,
        amount_milli,
        unit: body.string("unit")?,
        experiment: body.int("experiment")?,
        note: body.string("note")?.unwrap_or_default(),
    };
    let event_id = app
        .store
        .record_stock(&caller.subject, id, new)
        .await
        .map_err(AppError::from)?;
    Ok(created_at_path(
        &app,
        &format!("{entity_type}/{id}/stock/{event_id}"),
    ))
}

async fn patch_stock(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Response, AppError> {
    let id = resource_id(&entity_type, &id)?;
    caller.require_write()?;
    app.store
        .entity_of_kind(&caller.subject, EntityKind::Resource, id)
        .await?;
    let unit = body.string("unit")?;
    let threshold = if body.has("threshold") {
        Some(amount(&body, "threshold")?)
    } else {
        None
    };
    if unit.is_none() && threshold.is_none() {
        return Err(AppError::invalid(
            "unit",
            "send \"unit\" and/or \"threshold\" (null clears the threshold)",
        ));
    }
    app.store
        .set_stock(&caller.subject, id, unit, threshold, None)
        .await
        .map_err(AppError::from)?;
    match stock_json(&app, &caller, id).await? {
        Some(stock) => Ok(axum::Json(stock).into_response()),
        None => Err(AppError::NotFound("stock".into())),
    }
}
