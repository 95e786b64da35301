//! The calendar's list of bookings: each booking with when, what, for whom and its state in
//! words, and the buttons and forms the user may use on it (approve or refuse, cancel, move,
//! withdraw or dismiss a request made on a field replica, withdraw a change asked for there).
//! What is offered follows the store's rules, which decide again when a form is posted.

use super::{MoveInput, action_key, refusal_text, shown_times, state_label};
use crate::i18n::Lang;
use crate::ui::{UiError, UiResultExt};
use cahier_core::Subject;
use cahier_core::booking::BookingRules;
use cahier_core::zone::Zone;
use cahier_store::Store;
use cahier_store::bookings::{BookingRow, BookingState};
use std::collections::HashMap;

pub(super) struct BookingView {
    pub(super) id: i64,
    pub(super) when: String,
    pub(super) title: String,
    pub(super) item_title: String,
    pub(super) item_href: String,
    pub(super) who: String,
    pub(super) experiment: Option<(String, String)>,
    pub(super) state: &'static str,
    pub(super) state_label: &'static str,
    pub(super) can_cancel: bool,
    pub(super) cancel_note: Option<String>,
    pub(super) can_decide: bool,
    /// A request made on this field replica: `withdraw` (pending) or `dismiss` (refused).
    pub(super) request_action: Option<&'static str>,
    /// The key of its button's label.
    pub(super) request_label: &'static str,
    /// Why the lab server refused the request (its kind translated, then its words).
    pub(super) refusal: Option<String>,
    /// On a field replica, a request about a lab booking: the key of what it asked for
    /// (cancellation, move, approval, refusal).
    pub(super) action_label: Option<&'static str>,
    /// A change of this lab booking asked for here and not yet answered, in words.
    pub(super) change_note: Option<String>,
    /// That request's id, to withdraw it.
    pub(super) change_withdraw: Option<i64>,
    /// Whether this user may move it (its booker or a manager, as the store's `check_move`
    /// decides; a request made on this replica, by its maker): the move form is shown.
    pub(super) can_move: bool,
    /// The move form's values: the times it is drawn at, or as typed before a refusal.
    pub(super) move_start: String,
    pub(super) move_end: String,
    /// Why the store refused the move just posted.
    pub(super) move_error: Option<String>,
}

/// The list of `rows` as `subject` sees it at `now`, in `zone`; `moving` is a move form the
/// store just refused (its input and message), shown again beside its booking.
pub(super) async fn booking_views(
    store: &Store,
    subject: &Subject,
    rows: &[BookingRow],
    now: i64,
    zone: &Zone,
    lang: Lang,
    moving: Option<&(MoveInput, String)>,
) -> Result<Vec<BookingView>, UiError> {
    let hm = |ms: i64| zone.hm(ms);
    // Per resource: its rules and whether this user manages it (for the buttons).
    let mut rules_of: HashMap<i64, (BookingRules, bool)> = HashMap::new();
    for row in rows {
        if let std::collections::hash_map::Entry::Vacant(slot) = rules_of.entry(row.entity_id) {
            let r = store.booking_rules(subject, row.entity_id).await.ui(lang)?;
            let m = store
                .manages_bookings(subject, row.entity_id)
                .await
                .ui(lang)?;
            slot.insert((r, m));
        }
    }
    let views = rows
        .iter()
        .map(|r| {
            let (rules, manages) = rules_of
                .get(&r.entity_id)
                .cloned()
                .unwrap_or((BookingRules::default(), false));
            let is_mine = r.user_id == subject.user_id;
            let request_action = match r.state {
                BookingState::Requested => Some("withdraw"),
                BookingState::RequestRefused => Some("dismiss"),
                _ => None,
            };
            // On a field replica, the buttons of the lab's bookings ask the lab at sync.
            let (can_cancel, cancel_note) = if request_action.is_some() || r.change.is_some() {
                (false, None)
            } else if manages {
                (true, None)
            } else if is_mine {
                match rules.check_cancel(r.start_ms, now) {
                    Ok(()) => (true, None),
                    Err(e) => (false, Some(e.to_string())),
                }
            } else {
                (false, None)
            };
            // The store decides every move (`check_move`); the form is offered to whoever it
            // may accept from: the booker or a manager, on an active booking not yet over (a
            // manager may move past ones), without another change waiting here; on a field
            // replica also a new booking asked for here, by its maker.
            let can_move = match r.state {
                BookingState::Confirmed | BookingState::Pending => {
                    (manages || is_mine && r.end_ms > now)
                        && r.change.as_ref().is_none_or(|c| c.action == "move")
                }
                BookingState::Requested => {
                    is_mine
                        && r.end_ms > now
                        && r.request.as_ref().is_some_and(|q| q.action.is_none())
                }
                _ => false,
            };
            let (move_start, move_end, move_error) = match moving {
                Some((input, message)) if input.booking == r.id => (
                    input.start.clone(),
                    input.end.clone(),
                    Some(message.clone()),
                ),
                _ => {
                    let (start, end) = shown_times(r);
                    (zone.input_value(start), zone.input_value(end), None)
                }
            };
            BookingView {
                id: r.id,
                when: format!(
                    "{}–{}",
                    zone.display(r.start_ms),
                    if zone.date_of(r.end_ms - 1) == zone.date_of(r.start_ms) {
                        hm(r.end_ms)
                    } else {
                        zone.display(r.end_ms)
                    }
                ),
                title: r.title.clone(),
                item_title: r.item_title.clone(),
                item_href: format!("/resources/{}/calendar", r.entity_id),
                who: r.fullname.clone(),
                experiment: r.experiment_id.map(|id| {
                    (
                        format!("/experiments/{id}"),
                        r.experiment_title
                            .clone()
                            .unwrap_or_else(|| format!("#{id}")),
                    )
                }),
                state: r.state.as_str(),
                state_label: state_label(r.state),
                can_cancel,
                cancel_note,
                can_decide: manages && r.state == BookingState::Pending && r.change.is_none(),
                request_action,
                request_label: if r.state == BookingState::Requested {
                    "booking.withdraw"
                } else {
                    "booking.dismiss"
                },
                refusal: r
                    .request
                    .as_ref()
                    .filter(|_| r.state == BookingState::RequestRefused)
                    .map(|q| refusal_text(lang, q.reason_code.as_deref(), q.reason.as_deref())),
                action_label: r
                    .request
                    .as_ref()
                    .and_then(|q| q.action.as_deref())
                    .map(action_key),
                change_note: r.change.as_ref().map(|change| {
                    let mut note = lang.t(action_key(&change.action)).to_owned();
                    if change.action == "move" {
                        note = format!(
                            "{note} {} {}–{}",
                            lang.t("booking.change_move_to"),
                            zone.display(change.start_ms),
                            hm(change.end_ms)
                        );
                    }
                    format!("{note}: {}", lang.t("booking.change_pending"))
                }),
                change_withdraw: r.change.as_ref().map(|change| change.request_id),
                can_move,
                move_start,
                move_end,
                move_error,
            }
        })
        .collect();
    Ok(views)
}
