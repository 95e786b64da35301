//! The booking calendar: a week or month view per resource (`/resources/{id}/calendar`) and per
//! team (`/calendar`), a booking form that works without JavaScript (the week grid's
//! click-and-drag fills and submits the same form), a move form and cancel/approve/refuse
//! buttons on each booking one may change, the resource's booking rules for its owner and team
//! admins, and the calendar feed (iCal) URLs.
//! Times are shown and entered in the user's time zone (their setting, else the instance's),
//! with its daylight-saving changes: a week crossing a change has a 23- or 25-hour day, and
//! each hour row is that local hour. Every rule is the store's.
//! This module reads the page's bookings and puts it together; the week and month grids are
//! drawn in `grid`, the list of bookings with their buttons built in `list`, and the buttons'
//! and small forms' handlers live in `actions`.

use super::{PageCtx, UiError, UiResultExt, render};
use crate::AppState;
use crate::auth::SignedIn;
use crate::error::AppError;
use crate::i18n::Lang;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cahier_core::booking::BookingRules;
use cahier_core::zone::Zone;
use cahier_store::bookings::{BookingQuery, BookingRow, BookingState, NewBooking};
use serde::Deserialize;
use time::{Date, Duration, Month};

mod actions;
mod grid;
mod list;

use grid::{DayHead, HourRow, MonthCell};
use list::BookingView;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/calendar", get(team_calendar))
        .route("/resources/{id}/calendar", get(resource_calendar))
        .route("/resources/{id}/booking-rules", post(actions::save_rules))
        .route("/calendar/book", post(book))
        .route("/calendar/bookings/{id}/move", post(actions::move_booking))
        .route(
            "/calendar/bookings/{id}/{action}",
            post(actions::change_booking),
        )
        .route("/calendar/feed/{action}", post(actions::feed_token))
        .route("/calendar/experiments", get(experiment_choices))
}

/// Which calendar a page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Team,
    Resource(i64),
}

impl Scope {
    fn parse(s: &str) -> Option<Self> {
        if s == "team" {
            return Some(Self::Team);
        }
        s.strip_prefix("resource:")
            .and_then(|id| id.parse().ok())
            .map(Self::Resource)
    }

    fn as_field(self) -> String {
        match self {
            Self::Team => "team".into(),
            Self::Resource(id) => format!("resource:{id}"),
        }
    }

    fn path(self) -> String {
        match self {
            Self::Team => "/calendar".into(),
            Self::Resource(id) => format!("/resources/{id}/calendar"),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct CalendarQuery {
    view: Option<String>,
    date: Option<String>,
    experiment: Option<String>,
    msg: Option<String>,
}

/// What the booking form holds (kept as typed after an error).
#[derive(Debug, Default, Clone, Deserialize)]
struct BookingForm {
    #[serde(default)]
    scope: String,
    #[serde(default)]
    view: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    item: String,
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    experiment: String,
}

/// A form posted from the page that the store refused: the page is shown again with the
/// message beside that form and the input as typed.
struct Refusal {
    status: StatusCode,
    message: String,
    /// The move form of one booking; `None`: the booking form.
    moving: Option<MoveInput>,
}

/// A booking's move form as typed.
struct MoveInput {
    booking: i64,
    start: String,
    end: String,
}

struct RulesView {
    rules: BookingRules,
    summary: Vec<String>,
}

#[derive(Template)]
#[template(path = "calendar.html")]
struct CalendarPage {
    p: PageCtx,
    heading: String,
    scope: String,
    resource_id: Option<i64>,
    resources: Vec<(i64, String)>,
    is_week: bool,
    date: String,
    range_label: String,
    prev_href: String,
    next_href: String,
    today_href: String,
    week_href: String,
    month_href: String,
    day_heads: Vec<DayHead>,
    hours: Vec<HourRow>,
    month_weeks: Vec<Vec<MonthCell>>,
    bookings: Vec<BookingView>,
    form: BookingForm,
    error: Option<String>,
    /// A refused move of a booking the list does not show (a forged or stale form).
    move_error: Option<String>,
    /// The zone times are shown and entered in.
    zone_name: String,
    is_replica: bool,
    rules: Option<RulesView>,
    can_manage: bool,
    is_bookable: bool,
    /// False when the resource's canbook leaves this user out.
    may_book: bool,
    /// The user's recent experiments, offered by the picker without JavaScript.
    recent_experiments: Vec<(i64, String)>,
    resource_feed: Option<String>,
    user_feed: Option<String>,
    back: String,
}

fn iso(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

fn parse_date(s: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &format).ok()
}

fn state_label(state: BookingState) -> &'static str {
    match state {
        BookingState::Confirmed => "booking.state_confirmed",
        BookingState::Pending => "booking.state_pending",
        BookingState::Cancelled => "booking.state_cancelled",
        BookingState::Refused => "booking.state_refused",
        BookingState::Requested => "booking.state_requested",
        BookingState::RequestRefused => "booking.state_request_refused",
    }
}

/// A refused request's reason: its kind in the user's language, then the server's words.
pub(crate) fn refusal_text(lang: Lang, code: Option<&str>, reason: Option<&str>) -> String {
    let kind = match code {
        Some("overlap") => "booking.refusal_overlap",
        Some("forbidden") => "booking.refusal_forbidden",
        Some("invalid") => "booking.refusal_invalid",
        Some("not_found") => "booking.refusal_not_found",
        _ => "booking.refusal_other",
    };
    match reason {
        Some(reason) => format!("{} ({reason})", lang.t(kind)),
        None => lang.t(kind).to_owned(),
    }
}

/// The key of what a request about a lab booking asks for.
pub(crate) fn action_key(action: &str) -> &'static str {
    match action {
        "cancel" => "booking.change_cancel",
        "move" => "booking.change_move",
        "approve" => "booking.change_approve",
        _ => "booking.change_refuse",
    }
}

/// Where a booking is drawn: at the times a move asked for on this replica, until the lab
/// decides.
fn shown_times(row: &BookingRow) -> (i64, i64) {
    match &row.change {
        Some(change) if change.action == "move" => (change.start_ms, change.end_ms),
        _ => (row.start_ms, row.end_ms),
    }
}

fn rules_summary(rules: &BookingRules, lang: Lang) -> Vec<String> {
    let mut lines = Vec::new();
    if !rules.is_bookable {
        lines.push(lang.t("booking.rule_not_bookable").to_owned());
        return lines;
    }
    lines.push(
        lang.t(if rules.can_overlap {
            "booking.rule_overlap"
        } else {
            "booking.rule_no_overlap"
        })
        .to_owned(),
    );
    if let Some(max) = rules.max_minutes {
        lines.push(format!(
            "{} {}",
            lang.t("booking.rule_max_minutes"),
            cahier_core::booking::duration(max)
        ));
    }
    if let Some(max) = rules.max_slots {
        lines.push(format!("{} {max}", lang.t("booking.rule_max_slots")));
    }
    if let Some(days) = rules.window_days {
        lines.push(format!("{} {days}", lang.t("booking.rule_window_days")));
    }
    if !rules.is_cancellable {
        lines.push(lang.t("booking.rule_not_cancellable").to_owned());
    } else if rules.cancel_minutes > 0 {
        lines.push(format!(
            "{} {}",
            lang.t("booking.rule_cancel_minutes"),
            cahier_core::booking::duration(rules.cancel_minutes)
        ));
    }
    if rules.needs_approval {
        lines.push(lang.t("booking.rule_approval").to_owned());
    }
    lines
}

fn feed_url(state: &AppState, token: &str, file: &str) -> String {
    format!(
        "{}/ical/{token}/{file}",
        state.config.public_url.trim_end_matches('/')
    )
}

/// A date and time typed in a form, read in the user's zone (or with an explicit offset).
fn instant(zone: &Zone, field: &str, value: &str) -> Result<i64, AppError> {
    zone.parse(value).ok_or_else(|| {
        AppError::invalid(
            field,
            format!(
                "enter a date and time, e.g. 2026-12-01 09:00 ({})",
                zone.name()
            ),
        )
    })
}

#[expect(
    clippy::too_many_arguments,
    reason = "the page is rendered from a request or after a refused form"
)]
async fn render_calendar(
    state: &AppState,
    session: &SignedIn,
    scope: Scope,
    view: &str,
    date: Option<&str>,
    form: BookingForm,
    refusal: Option<Refusal>,
    notice: Option<&str>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let subject = &session.subject;
    let store = &state.store;
    // On a field replica, bookings are the lab server's (read-only) and new ones are requests.
    let is_replica = state.replica.is_some();
    let now = store.now_ms();
    let zone = store.user_zone(session.user.id).await.ui(lang)?;
    let is_week = view != "month";
    let anchor = date
        .and_then(parse_date)
        .unwrap_or_else(|| zone.date_of(now));

    // The shown range: Monday to Sunday, or the weeks covering the month.
    let (first, days) = if is_week {
        let monday = anchor - Duration::days(i64::from(anchor.weekday().number_days_from_monday()));
        (monday, 7)
    } else {
        let first_of_month = anchor.replace_day(1).unwrap_or(anchor);
        let monday = first_of_month
            - Duration::days(i64::from(
                first_of_month.weekday().number_days_from_monday(),
            ));
        let next_month = match first_of_month.month() {
            Month::December => {
                Date::from_calendar_date(first_of_month.year() + 1, Month::January, 1)
            }
            m => Date::from_calendar_date(first_of_month.year(), m.next(), 1),
        }
        .unwrap_or(first_of_month);
        let span = (next_month - monday).whole_days();
        (monday, (span + 6) / 7 * 7)
    };
    let from_ms = zone.day_start(first);
    let to_ms = zone.day_start(first + Duration::days(days));

    let (heading, resource_id, resources, rules, can_manage) = match scope {
        Scope::Resource(id) => {
            let row = store
                .entity_of_kind(subject, cahier_core::EntityKind::Resource, id)
                .await
                .ui(lang)?;
            let rules = store.booking_rules(subject, id).await.ui(lang)?;
            let can_manage = row.access().may_admin(subject) && !is_replica;
            let summary = rules_summary(&rules, lang);
            (
                row.title.clone(),
                Some(id),
                vec![(id, row.title)],
                Some(RulesView { rules, summary }),
                can_manage,
            )
        }
        Scope::Team => {
            let team = session.current_team();
            let list = store.bookable_resources(subject, team).await.ui(lang)?;
            (
                lang.t("booking.team_calendar").to_owned(),
                None,
                list.into_iter().map(|r| (r.id, r.title)).collect(),
                None,
                false,
            )
        }
    };
    let is_bookable = match &rules {
        Some(r) => r.rules.is_bookable,
        None => !resources.is_empty(),
    };
    let recent_experiments = store.experiment_choices(subject, "", 20).await.ui(lang)?;
    let may_book = match resource_id {
        Some(id) if is_bookable => store.may_book(subject, id).await.ui(lang)?,
        _ => true,
    };
    let query = BookingQuery {
        from_ms: Some(from_ms),
        to_ms: Some(to_ms),
        entity_ids: resources.iter().map(|(id, _)| *id).collect(),
        ..BookingQuery::default()
    };
    let rows: Vec<BookingRow> = if resources.is_empty() {
        Vec::new()
    } else {
        store.bookings(subject, &query).await.ui(lang)?
    };

    let drawn = grid::Drawn {
        rows: &rows,
        zone: &zone,
        lang,
        show_item: scope == Scope::Team,
    };
    let (day_heads, hours, month_weeks) = if is_week {
        let (day_heads, hours) = drawn.week(first);
        (day_heads, hours, Vec::new())
    } else {
        let (day_heads, month_weeks) = drawn.month(first, days, anchor, &scope.path());
        (day_heads, Vec::new(), month_weeks)
    };

    let (status, error, moving) = match refusal {
        Some(Refusal {
            status,
            message,
            moving: Some(input),
        }) => (status, None, Some((input, message))),
        Some(Refusal {
            status, message, ..
        }) => (status, Some(message), None),
        None => (StatusCode::OK, None, None),
    };
    let bookings =
        list::booking_views(store, subject, &rows, now, &zone, lang, moving.as_ref()).await?;
    let move_error = moving
        .filter(|(input, _)| !bookings.iter().any(|b| b.id == input.booking))
        .map(|(_, message)| message);

    let view_name = if is_week { "week" } else { "month" };
    let (prev, next) = if is_week {
        (anchor - Duration::days(7), anchor + Duration::days(7))
    } else {
        let first_of_month = anchor.replace_day(1).unwrap_or(anchor);
        let before = first_of_month - Duration::days(1);
        let after = first_of_month + Duration::days(31);
        (
            before.replace_day(1).unwrap_or(before),
            after.replace_day(1).unwrap_or(after),
        )
    };
    let path = scope.path();
    let range_label = format!(
        "{} – {} ({})",
        iso(first),
        iso(first + Duration::days(days - 1)),
        zone.name()
    );
    let token = store.calendar_token(session.user.id).await.ui(lang)?;
    let resource_feed = match (&token, resource_id) {
        (Some(t), Some(id)) => Some(feed_url(state, t, &format!("resources/{id}.ics"))),
        _ => None,
    };
    let user_feed = token.as_deref().map(|t| feed_url(state, t, "mine.ics"));
    let mut form = form;
    if form.title.is_empty() && error.is_none() {
        form.title = session.user.fullname();
    }
    let mut p = PageCtx::signed_in(state, session, heading.clone())
        .await
        .ui(lang)?
        .with_notice(notice);
    p.title = format!("{} — {heading}", lang.t("booking.calendar"));
    let page = CalendarPage {
        p,
        heading,
        scope: scope.as_field(),
        resource_id,
        resources,
        is_week,
        date: iso(anchor),
        range_label,
        prev_href: format!("{path}?view={view_name}&date={}", iso(prev)),
        next_href: format!("{path}?view={view_name}&date={}", iso(next)),
        today_href: format!("{path}?view={view_name}"),
        week_href: format!("{path}?view=week&date={}", iso(anchor)),
        month_href: format!("{path}?view=month&date={}", iso(anchor)),
        day_heads,
        hours,
        month_weeks,
        bookings,
        form,
        error,
        move_error,
        zone_name: zone.name().to_owned(),
        is_replica,
        rules,
        can_manage,
        is_bookable,
        may_book,
        recent_experiments,
        resource_feed,
        user_feed,
        back: format!("{path}?view={view_name}&date={}", iso(anchor)),
    };
    let mut response = render(&page);
    *response.status_mut() = status;
    Ok(response)
}

fn notice_key(msg: Option<&str>) -> Option<&'static str> {
    match msg? {
        "booked" => Some("booking.notice_booked"),
        "pending" => Some("booking.notice_pending"),
        "requested" => Some("booking.notice_requested"),
        "withdrawn" => Some("booking.notice_withdrawn"),
        "change_requested" => Some("booking.notice_change_requested"),
        "moved" => Some("booking.notice_moved"),
        "request_moved" => Some("booking.notice_request_moved"),
        "dismissed" => Some("booking.notice_dismissed"),
        "cancelled" => Some("booking.notice_cancelled"),
        "approved" => Some("booking.notice_approved"),
        "refused" => Some("booking.notice_refused"),
        "rules" => Some("booking.notice_rules"),
        "feed" => Some("booking.notice_feed"),
        _ => None,
    }
}

async fn team_calendar(
    State(state): State<AppState>,
    session: SignedIn,
    Query(query): Query<CalendarQuery>,
) -> Result<Response, UiError> {
    let form = BookingForm {
        experiment: query.experiment.clone().unwrap_or_default(),
        ..BookingForm::default()
    };
    render_calendar(
        &state,
        &session,
        Scope::Team,
        query.view.as_deref().unwrap_or("week"),
        query.date.as_deref(),
        form,
        None,
        notice_key(query.msg.as_deref()),
    )
    .await
}

async fn resource_calendar(
    State(state): State<AppState>,
    session: SignedIn,
    Path(id): Path<i64>,
    Query(query): Query<CalendarQuery>,
) -> Result<Response, UiError> {
    let form = BookingForm {
        item: id.to_string(),
        experiment: query.experiment.clone().unwrap_or_default(),
        ..BookingForm::default()
    };
    render_calendar(
        &state,
        &session,
        Scope::Resource(id),
        query.view.as_deref().unwrap_or("week"),
        query.date.as_deref(),
        form,
        None,
        notice_key(query.msg.as_deref()),
    )
    .await
}

fn parse_form(form: &BookingForm, zone: &Zone) -> Result<NewBooking, AppError> {
    let item = form
        .item
        .trim()
        .parse()
        .map_err(|_| AppError::invalid("item", "choose a resource"))?;
    let experiment = match experiment_ref(&form.experiment) {
        "" => None,
        text => Some(text.parse().map_err(|_| {
            AppError::invalid(
                "experiment",
                "enter the number of an experiment, or leave it empty",
            )
        })?),
    };
    Ok(NewBooking {
        entity_id: item,
        start_ms: instant(zone, "start", &form.start)?,
        end_ms: instant(zone, "end", &form.end)?,
        title: form.title.clone(),
        experiment_id: experiment,
    })
}

/// The id in what the experiment picker holds: `42`, `#42` or `#42 Title`.
pub(super) fn experiment_ref(text: &str) -> &str {
    text.trim()
        .trim_start_matches('#')
        .split_whitespace()
        .next()
        .unwrap_or("")
}

#[derive(Debug, Default, Deserialize)]
struct PickerQuery {
    #[serde(default)]
    q: String,
}

/// `GET /calendar/experiments?q=`: the experiments the user may read matching `q` (title or
/// id), as `[{"id", "title", "label"}]`, for the search-as-you-type picker.
async fn experiment_choices(
    State(state): State<AppState>,
    session: SignedIn,
    Query(query): Query<PickerQuery>,
) -> Result<Response, AppError> {
    let rows = state
        .store
        .experiment_choices(&session.subject, &query.q, 12)
        .await?;
    let list: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(id, title)| serde_json::json!({"id": id, "title": title, "label": format!("#{id} {title}")}))
        .collect();
    Ok(axum::Json(list).into_response())
}

async fn book(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<BookingForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let scope = Scope::parse(&form.scope)
        .ok_or_else(|| AppError::BadRequest("unknown calendar".into()))
        .ui(lang)?;
    let zone = state.store.user_zone(session.user.id).await.ui(lang)?;
    let result = match parse_form(&form, &zone) {
        Ok(new) => state
            .store
            .book(&session.subject, new)
            .await
            .map_err(AppError::from),
        Err(e) => Err(e),
    };
    match result {
        Ok(row) => {
            let msg = match row.state {
                BookingState::Pending => "pending",
                BookingState::Requested => "requested",
                _ => "booked",
            };
            let date = iso(zone.date_of(row.start_ms));
            Ok(Redirect::to(&format!(
                "{}?view={}&date={date}&msg={msg}",
                scope.path(),
                if form.view == "month" {
                    "month"
                } else {
                    "week"
                }
            ))
            .into_response())
        }
        Err(error @ (AppError::Invalid { .. } | AppError::Conflict(_))) => {
            let status = error.status();
            let (view, date) = (form.view.clone(), form.date.clone());
            render_calendar(
                &state,
                &session,
                scope,
                &view,
                Some(date.as_str()),
                form,
                Some(Refusal {
                    status,
                    message: error.public_message(),
                    moving: None,
                }),
                None,
            )
            .await
        }
        Err(error) => Err(UiError(error, lang)),
    }
}
