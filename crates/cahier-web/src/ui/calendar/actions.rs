//! The calendar's buttons and small forms: move, cancel, approve and refuse a booking (on a
//! field replica: ask the lab server to, at sync), withdraw or dismiss a request made on a
//! replica, save a resource's booking rules, make, renew or turn off the calendar feed token.
//! Each answers with a redirect back to the calendar it came from (a local path only); a move
//! the store refuses shows the calendar again with the message beside the booking's form.

use super::{MoveInput, Refusal, Scope, instant, iso, render_calendar};
use crate::AppState;
use crate::auth::SignedIn;
use crate::error::AppError;
use crate::ui::{UiError, UiResultExt};
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use cahier_core::booking::BookingRules;
use cahier_store::StoreError;
use cahier_store::bookings::{BookingChange, BookingState};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub(super) struct BackForm {
    #[serde(default)]
    back: String,
}

/// A local path to return to (never another site).
fn safe_back(back: &str) -> &str {
    if back.starts_with('/') && !back.starts_with("//") && !back.contains('\\') {
        back
    } else {
        "/calendar"
    }
}

fn with_msg(back: &str, msg: &str) -> String {
    let back = safe_back(back);
    let separator = if back.contains('?') { '&' } else { '?' };
    format!("{back}{separator}msg={msg}")
}

pub(super) async fn change_booking(
    State(state): State<AppState>,
    session: SignedIn,
    Path((id, action)): Path<(i64, String)>,
    Form(form): Form<BackForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let store = &state.store;
    let subject = &session.subject;
    // On a field replica, cancelling, approving or refusing a lab booking records a request
    // the lab decides at sync: the answered row then carries it.
    let asked = |row: cahier_store::bookings::BookingRow, done: &'static str| {
        if row.change.is_some() {
            "change_requested"
        } else {
            done
        }
    };
    let msg = match action.as_str() {
        "cancel" => store
            .cancel_booking(subject, id)
            .await
            .map(|row| asked(row, "cancelled")),
        // A request made on this field replica: withdrawn before it is sent, or a refusal read.
        "withdraw" => store.cancel_booking(subject, id).await.map(|_| "withdrawn"),
        "dismiss" => store.cancel_booking(subject, id).await.map(|_| "dismissed"),
        "approve" => store
            .decide_booking(subject, id, true)
            .await
            .map(|row| asked(row, "approved")),
        "refuse" => store
            .decide_booking(subject, id, false)
            .await
            .map(|row| asked(row, "refused")),
        _ => Err(StoreError::NotFound("action")),
    }
    .ui(lang)?;
    Ok(Redirect::to(&with_msg(&form.back, msg)).into_response())
}

/// A booking's move form: the new times, and the calendar it was posted from.
#[derive(Debug, Default, Deserialize)]
pub(super) struct MoveForm {
    #[serde(default)]
    scope: String,
    #[serde(default)]
    view: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
}

/// `POST /calendar/bookings/{id}/move`: gives a booking new times through the store call of
/// API v2's `PATCH /event/{id}` (`update_booking`), so every rule and right is checked in one
/// place. On a field replica a lab booking's move is asked for (decided at sync) and a request
/// made here changes. Success goes to the calendar at the new start; a refusal shows the
/// calendar again, the message beside the form and the times as typed.
pub(super) async fn move_booking(
    State(state): State<AppState>,
    session: SignedIn,
    Path(id): Path<i64>,
    Form(form): Form<MoveForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let scope = Scope::parse(&form.scope)
        .ok_or_else(|| AppError::BadRequest("unknown calendar".into()))
        .ui(lang)?;
    let zone = state.store.user_zone(session.user.id).await.ui(lang)?;
    let times = instant(&zone, "start", &form.start)
        .and_then(|start| Ok((start, instant(&zone, "end", &form.end)?)));
    let result = match times {
        Ok((start_ms, end_ms)) => {
            let change = BookingChange {
                start_ms: Some(start_ms),
                end_ms: Some(end_ms),
                ..BookingChange::default()
            };
            state
                .store
                .update_booking(&session.subject, id, change)
                .await
                .map(|row| (row, start_ms))
                .map_err(AppError::from)
        }
        Err(error) => Err(error),
    };
    let view = if form.view == "month" {
        "month"
    } else {
        "week"
    };
    match result {
        Ok((row, start_ms)) => {
            let msg = if row.change.is_some() {
                "change_requested"
            } else if row.state == BookingState::Requested {
                "request_moved"
            } else {
                "moved"
            };
            Ok(Redirect::to(&format!(
                "{}?view={view}&date={}&msg={msg}",
                scope.path(),
                iso(zone.date_of(start_ms))
            ))
            .into_response())
        }
        Err(
            error @ (AppError::Invalid { .. } | AppError::Conflict(_) | AppError::Forbidden(_)),
        ) => {
            let refusal = Refusal {
                status: error.status(),
                message: error.public_message(),
                moving: Some(MoveInput {
                    booking: id,
                    start: form.start,
                    end: form.end,
                }),
            };
            render_calendar(
                &state,
                &session,
                scope,
                view,
                Some(form.date.as_str()),
                super::BookingForm {
                    item: match scope {
                        Scope::Resource(id) => id.to_string(),
                        Scope::Team => String::new(),
                    },
                    ..super::BookingForm::default()
                },
                Some(refusal),
                None,
            )
            .await
        }
        Err(error) => Err(UiError(error, lang)),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RulesForm {
    is_bookable: Option<String>,
    can_overlap: Option<String>,
    #[serde(default)]
    max_minutes: String,
    #[serde(default)]
    max_slots: String,
    #[serde(default)]
    window_days: String,
    is_cancellable: Option<String>,
    #[serde(default)]
    cancel_minutes: String,
    needs_approval: Option<String>,
}

fn optional_number(field: &str, text: &str) -> Result<Option<i64>, AppError> {
    match text.trim() {
        "" => Ok(None),
        t => t
            .parse()
            .map(Some)
            .map_err(|_| AppError::invalid(field, "enter a whole number, or leave it empty")),
    }
}

fn rules_from_form(form: &RulesForm) -> Result<BookingRules, AppError> {
    Ok(BookingRules {
        is_bookable: form.is_bookable.is_some(),
        can_overlap: form.can_overlap.is_some(),
        max_minutes: optional_number("max_minutes", &form.max_minutes)?,
        max_slots: optional_number("max_slots", &form.max_slots)?,
        window_days: optional_number("window_days", &form.window_days)?,
        is_cancellable: form.is_cancellable.is_some(),
        cancel_minutes: optional_number("cancel_minutes", &form.cancel_minutes)?.unwrap_or(0),
        needs_approval: form.needs_approval.is_some(),
    })
}

pub(super) async fn save_rules(
    State(state): State<AppState>,
    session: SignedIn,
    Path(id): Path<i64>,
    Form(form): Form<RulesForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let rules = rules_from_form(&form).ui(lang)?;
    state
        .store
        .set_booking_rules(&session.subject, id, &rules)
        .await
        .ui(lang)?;
    Ok(Redirect::to(&format!("/resources/{id}/calendar?msg=rules")).into_response())
}

pub(super) async fn feed_token(
    State(state): State<AppState>,
    session: SignedIn,
    Path(action): Path<String>,
    Form(form): Form<BackForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    match action.as_str() {
        "renew" => {
            state
                .store
                .renew_calendar_token(session.user.id)
                .await
                .ui(lang)?;
        }
        "revoke" => state
            .store
            .revoke_calendar_token(session.user.id)
            .await
            .ui(lang)?,
        _ => return Err(UiError(AppError::NotFound("action".into()), lang)),
    }
    Ok(Redirect::to(&with_msg(&form.back, "feed")).into_response())
}
