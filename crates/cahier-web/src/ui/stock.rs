//! Stock pages: the Stock panel of a resource page (enable tracking, record consumption or
//! restocking, recent history, low-stock and below-zero warnings), the full stock page of a
//! resource (`/resources/{id}/stock`, where a refused form comes back with its values and the
//! error next to the field), and the team's "to reorder" page (`/to-reorder`). Rules live in
//! the store and core; this module parses forms and renders.

use super::entities::{entity_id, section_of};
use super::{PageCtx, UiError, UiResultExt, render, when};
use crate::AppState;
use crate::auth::SignedIn;
use crate::error::AppError;
use crate::i18n::Lang;
use askama::Template;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Router, routing::MethodRouter};
use cahier_core::stock::{StockKind, format_amount, parse_amount};
use cahier_core::{EntityKind, Subject};
use cahier_store::Store;
use cahier_store::entities::{EntityRow, state};
use cahier_store::stock::NewStockEvent;
use serde::Deserialize;

pub(super) fn routes() -> Router<AppState> {
    let stock_page: MethodRouter<AppState> = get(show_stock_page).post(record_stock);
    Router::new()
        .route("/to-reorder", get(to_reorder))
        .route("/{section}/{id}/stock", stock_page)
        .route("/{section}/{id}/stock/settings", post(stock_settings))
}

/// How many events the resource page shows; the stock page shows them all.
pub(super) const RECENT_EVENTS: usize = 10;

/// One stock event on a page.
#[derive(Debug, Clone)]
pub(super) struct EventView {
    pub(super) kind_label: &'static str,
    /// Signed, with its unit ("−2.5 mL").
    pub(super) amount: String,
    pub(super) is_decrease: bool,
    pub(super) who: String,
    pub(super) device_time: String,
    pub(super) received_time: String,
    /// The experiment it was used for, when the reader may read it: (href, title).
    pub(super) experiment: Option<(String, String)>,
    pub(super) note: String,
}

/// What the Stock panel shows and the values of a refused form.
#[derive(Debug, Clone, Default)]
pub(super) struct StockView {
    pub(super) section: String,
    pub(super) id: i64,
    pub(super) can_write: bool,
    pub(super) tracked: bool,
    pub(super) unit: String,
    pub(super) quantity: String,
    pub(super) threshold: String,
    pub(super) is_low: bool,
    pub(super) is_negative: bool,
    pub(super) events: Vec<EventView>,
    /// Whether older events are hidden (the panel shows the recent ones).
    pub(super) has_more: bool,
    /// A refused form: which field is at fault and why.
    pub(super) error_field: String,
    pub(super) error: Option<String>,
    /// Values typed in a refused form, given back.
    pub(super) form_action: String,
    pub(super) form_amount: String,
    pub(super) form_experiment: String,
    pub(super) form_note: String,
    pub(super) form_unit: String,
    pub(super) form_threshold: String,
    pub(super) form_initial: String,
    /// The reader's recent experiments, for the picker without JavaScript.
    pub(super) recent_experiments: Vec<(i64, String)>,
}

impl StockView {
    /// Whether `action` is the one preselected in the record form.
    pub(super) fn is_action(&self, action: &str) -> bool {
        if self.form_action.is_empty() {
            action == "consume"
        } else {
            self.form_action == action
        }
    }
}

/// An amount as the user's language writes it (a decimal comma in French).
fn amount_text(lang: Lang, milli: i64) -> String {
    let text = format_amount(milli);
    match lang {
        Lang::Fr => text.replace('.', ","),
        Lang::En => text,
    }
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "consume" => "stock.consume",
        "restock" => "stock.restock",
        _ => "stock.adjust",
    }
}

/// The Stock panel of a resource (`None` for other kinds). `limit` keeps the recent events.
pub(super) async fn view(
    store: &Store,
    subject: &Subject,
    lang: Lang,
    row: &EntityRow,
    can_write: bool,
    limit: Option<usize>,
) -> Result<Option<StockView>, AppError> {
    if row.kind != EntityKind::Resource {
        return Ok(None);
    }
    let mut view = StockView {
        section: section_of(row.kind).to_owned(),
        id: row.id,
        can_write,
        ..StockView::default()
    };
    let Some(stock) = store.stock(subject, row.id).await? else {
        return Ok(Some(view));
    };
    let events = store.stock_events(subject, row.id).await?;
    view.tracked = true;
    if can_write {
        view.recent_experiments = store.experiment_choices(subject, "", 20).await?;
    }
    view.quantity = amount_text(lang, stock.quantity_milli);
    view.threshold = stock
        .threshold_milli
        .map(|t| amount_text(lang, t))
        .unwrap_or_default();
    view.is_low = stock.is_low();
    view.is_negative = stock.is_negative();
    view.form_unit.clone_from(&stock.unit);
    view.form_threshold.clone_from(&view.threshold);
    view.unit = stock.unit;
    view.has_more = limit.is_some_and(|l| events.len() > l);
    view.events = events
        .into_iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|e| EventView {
            kind_label: lang.t(kind_label(&e.kind)),
            amount: format!(
                "{}{} {}",
                if e.delta_milli > 0 { "+" } else { "" },
                amount_text(lang, e.delta_milli),
                e.unit
            ),
            is_decrease: e.delta_milli < 0,
            who: e
                .user_name
                .unwrap_or_else(|| lang.t("common.unknown_user").to_owned()),
            device_time: when(e.at),
            received_time: when(e.received_at),
            experiment: e.experiment_id.map(|id| {
                (
                    format!("/experiments/{id}"),
                    e.experiment_title.unwrap_or_default(),
                )
            }),
            note: e.note,
        })
        .collect();
    Ok(Some(view))
}

#[derive(Template)]
#[template(path = "stock_page.html")]
struct StockPage {
    p: PageCtx,
    e: EntityRow,
    s: StockView,
}

async fn render_stock_page(
    state: &AppState,
    session: &SignedIn,
    row: EntityRow,
    refused: Option<StockView>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let subject = &session.subject;
    let can_write = row.state != state::DELETED && row.access().may_write(subject);
    let mut s = view(&state.store, subject, lang, &row, can_write, None)
        .await
        .ui(lang)?
        .ok_or_else(|| AppError::NotFound("page".into()))
        .ui(lang)?;
    if let Some(refused) = refused {
        s.error = refused.error;
        s.error_field = refused.error_field;
        s.form_action = refused.form_action;
        s.form_amount = refused.form_amount;
        s.form_experiment = refused.form_experiment;
        s.form_note = refused.form_note;
        if !refused.form_unit.is_empty() || !s.tracked {
            s.form_unit = refused.form_unit;
        }
        s.form_threshold = refused.form_threshold;
        s.form_initial = refused.form_initial;
    }
    let title = format!("{} — {}", lang.t("stock.title"), row.title);
    let p = PageCtx::signed_in(state, session, title).await.ui(lang)?;
    let status = if s.error.is_some() {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, render(&StockPage { p, e: row, s })).into_response())
}

async fn show_stock_page(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let row = entity_id(&state, &session, &section, &id).await.ui(lang)?;
    render_stock_page(&state, &session, row, None).await
}

#[derive(Debug, Deserialize)]
struct RecordForm {
    action: String,
    amount: String,
    #[serde(default)]
    experiment: String,
    #[serde(default)]
    note: String,
}

/// The error's field and message, in the user's words for the usual mistakes.
fn refusal(error: &AppError) -> Option<(String, String)> {
    match error {
        AppError::Invalid { field, message } => Some((field.clone(), message.clone())),
        _ => None,
    }
}

async fn record_stock(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
    Form(form): Form<RecordForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let row = entity_id(&state, &session, &section, &id).await.ui(lang)?;
    let outcome = async {
        let kind = StockKind::parse(&form.action)
            .ok_or_else(|| AppError::invalid("action", lang.t("stock.error_action")))?;
        let amount_milli =
            parse_amount(&form.amount).map_err(|m| AppError::invalid("amount", m))?;
        let experiment =
            match super::calendar::experiment_ref(&form.experiment) {
                "" => None,
                text => Some(text.parse::<i64>().map_err(|_| {
                    AppError::invalid("experiment", lang.t("stock.error_experiment"))
                })?),
            };
        let new = NewStockEvent {
            kind,
            amount_milli,
            unit: None,
            experiment,
            note: form.note.clone(),
        };
        state
            .store
            .record_stock(&session.subject, row.id, new)
            .await
            .map_err(AppError::from)
    }
    .await;
    match outcome {
        Ok(_) => Ok(Redirect::to(&format!("/{section}/{}#stock", row.id)).into_response()),
        Err(error) => {
            let Some((field, message)) = refusal(&error) else {
                return Err(UiError(error, lang));
            };
            let refused = StockView {
                error_field: field,
                error: Some(message),
                form_action: form.action,
                form_amount: form.amount,
                form_experiment: form.experiment,
                form_note: form.note,
                ..StockView::default()
            };
            render_stock_page(&state, &session, row, Some(refused)).await
        }
    }
}

#[derive(Debug, Deserialize)]
struct SettingsForm {
    unit: String,
    #[serde(default)]
    threshold: String,
    #[serde(default)]
    initial: String,
}

async fn stock_settings(
    State(state): State<AppState>,
    session: SignedIn,
    Path((section, id)): Path<(String, String)>,
    Form(form): Form<SettingsForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let row = entity_id(&state, &session, &section, &id).await.ui(lang)?;
    let outcome = async {
        let threshold = match form.threshold.trim() {
            "" => None,
            text => Some(parse_amount(text).map_err(|m| AppError::invalid("threshold", m))?),
        };
        let initial = match form.initial.trim() {
            "" => None,
            text => Some(parse_amount(text).map_err(|m| AppError::invalid("initial", m))?),
        };
        state
            .store
            .set_stock(
                &session.subject,
                row.id,
                Some(form.unit.clone()),
                Some(threshold),
                initial,
            )
            .await
            .map_err(AppError::from)
    }
    .await;
    match outcome {
        Ok(()) => Ok(Redirect::to(&format!("/{section}/{}#stock", row.id)).into_response()),
        Err(error) => {
            let Some((field, message)) = refusal(&error) else {
                return Err(UiError(error, lang));
            };
            let refused = StockView {
                error_field: field,
                error: Some(message),
                form_unit: form.unit,
                form_threshold: form.threshold,
                form_initial: form.initial,
                ..StockView::default()
            };
            render_stock_page(&state, &session, row, Some(refused)).await
        }
    }
}

/// A resource on the "to reorder" page.
#[derive(Debug, Clone)]
struct ReorderView {
    href: String,
    title: String,
    category: String,
    quantity: String,
    threshold: String,
    is_negative: bool,
}

#[derive(Template)]
#[template(path = "to_reorder.html")]
struct ReorderPage {
    p: PageCtx,
    team: String,
    rows: Vec<ReorderView>,
}

async fn to_reorder(State(state): State<AppState>, session: SignedIn) -> Result<Response, UiError> {
    let lang = session.lang;
    let Some(team_id) = session.current_team() else {
        return Err(UiError(AppError::NotFound("team".into()), lang));
    };
    let team = state.store.team(team_id).await.ui(lang)?;
    let rows = state
        .store
        .to_reorder(&session.subject, team_id)
        .await
        .ui(lang)?
        .into_iter()
        .map(|r| ReorderView {
            href: format!("/resources/{}", r.id),
            title: r.title,
            category: r.category_title.unwrap_or_default(),
            quantity: format!("{} {}", amount_text(lang, r.quantity_milli), r.unit),
            threshold: format!("{} {}", amount_text(lang, r.threshold_milli), r.unit),
            is_negative: r.quantity_milli < 0,
        })
        .collect();
    let p = PageCtx::signed_in(&state, &session, lang.t("stock.reorder_title").to_owned())
        .await
        .ui(lang)?;
    Ok(render(&ReorderPage {
        p,
        team: team.name,
        rows,
    }))
}
