//! The calendar's grids: the week (a row per hour of the user's zone, a column per day) and
//! the month (a cell per day, in weeks of seven), each cell listing the bookings drawn in it,
//! with words for what its colour alone would show (a request, a change asked for on a field
//! replica). Built from the bookings the page read; it reads nothing and decides nothing.

use super::{action_key, iso, shown_times, state_label};
use crate::i18n::Lang;
use cahier_core::zone::Zone;
use cahier_store::bookings::{BookingRow, BookingState};
use time::{Date, Duration, Weekday};

pub(super) struct Cell {
    pub(super) start: String,
    pub(super) items: Vec<CellItem>,
}

pub(super) struct CellItem {
    pub(super) text: String,
    pub(super) state: &'static str,
    pub(super) is_start: bool,
}

pub(super) struct HourRow {
    pub(super) label: String,
    pub(super) cells: Vec<Cell>,
}

pub(super) struct DayHead {
    pub(super) label: String,
    pub(super) date: String,
}

pub(super) struct MonthCell {
    pub(super) day: u8,
    pub(super) date: String,
    pub(super) href: String,
    pub(super) in_month: bool,
    pub(super) items: Vec<CellItem>,
}

/// The bookings a grid draws, and how.
pub(super) struct Drawn<'a> {
    pub(super) rows: &'a [BookingRow],
    /// The zone days and hours are cut in.
    pub(super) zone: &'a Zone,
    pub(super) lang: Lang,
    /// Whether each booking names its resource (the team's calendar).
    pub(super) show_item: bool,
}

impl Drawn<'_> {
    /// The week starting on `first` (a Monday): its day heads and its 24 hour rows.
    pub(super) fn week(&self, first: Date) -> (Vec<DayHead>, Vec<HourRow>) {
        let (zone, lang) = (self.zone, self.lang);
        let hm = |ms: i64| zone.hm(ms);
        let mut day_heads = Vec::new();
        let mut hours = Vec::new();
        for d in 0..7 {
            let day = first + Duration::days(d);
            day_heads.push(DayHead {
                label: format!(
                    "{} {:02}/{:02}",
                    lang.t(weekday_key(day.weekday())),
                    day.day(),
                    u8::from(day.month())
                ),
                date: iso(day),
            });
        }
        for hour in 0u8..24 {
            let cells = (0..7)
                .map(|d| {
                    let day = first + Duration::days(d);
                    let cell_start = zone.at(day, hour, 0);
                    let cell_end = if hour == 23 {
                        zone.day_start(day + Duration::days(1))
                    } else {
                        zone.at(day, hour + 1, 0)
                    };
                    Cell {
                        start: format!("{}T{hour:02}:00", iso(day)),
                        items: self
                            .rows
                            .iter()
                            .map(|r| (r, shown_times(r)))
                            .filter(|(_, (start, end))| *start < cell_end && *end > cell_start)
                            .map(|(r, (start, end))| CellItem {
                                is_start: start >= cell_start || (d == 0 && hour == 0),
                                text: format!(
                                    "{}–{} {}{}",
                                    hm(start),
                                    hm(end),
                                    self.label(r),
                                    state_words(r, lang)
                                ),
                                state: cell_state(r),
                            })
                            .collect(),
                    }
                })
                .collect();
            hours.push(HourRow {
                label: format!("{hour:02}:00"),
                cells,
            });
        }
        (day_heads, hours)
    }

    /// The `days` days from `first` (a Monday), in weeks: the month of `anchor` and the days
    /// that complete its first and last weeks; each day links to its week on `path`.
    pub(super) fn month(
        &self,
        first: Date,
        days: i64,
        anchor: Date,
        path: &str,
    ) -> (Vec<DayHead>, Vec<Vec<MonthCell>>) {
        let (zone, lang) = (self.zone, self.lang);
        let hm = |ms: i64| zone.hm(ms);
        let mut day_heads = Vec::new();
        let mut month_weeks = Vec::new();
        for d in 0..7 {
            let day = first + Duration::days(d);
            day_heads.push(DayHead {
                label: lang.t(weekday_key(day.weekday())).to_owned(),
                date: String::new(),
            });
        }
        let mut week = Vec::new();
        for d in 0..days {
            let day = first + Duration::days(d);
            let day_start = zone.day_start(day);
            let day_end = zone.day_start(day + Duration::days(1));
            week.push(MonthCell {
                day: day.day(),
                date: iso(day),
                href: format!("{path}?view=week&date={}", iso(day)),
                in_month: day.month() == anchor.month(),
                items: self
                    .rows
                    .iter()
                    .map(|r| (r, shown_times(r)))
                    .filter(|(_, (start, end))| *start < day_end && *end > day_start)
                    .map(|(r, (start, _))| CellItem {
                        is_start: true,
                        text: format!("{} {}{}", hm(start), self.label(r), state_words(r, lang)),
                        state: cell_state(r),
                    })
                    .collect(),
            });
            if week.len() == 7 {
                month_weeks.push(std::mem::take(&mut week));
            }
        }
        (day_heads, month_weeks)
    }

    /// A booking as a cell shows it: its title (after its resource's on the team's
    /// calendar), then who booked it.
    fn label(&self, row: &BookingRow) -> String {
        let mut text = row.title.clone();
        if self.show_item {
            text = format!("{} · {text}", row.item_title);
        }
        format!("{text} ({})", row.fullname)
    }
}

fn weekday_key(day: Weekday) -> &'static str {
    match day {
        Weekday::Monday => "booking.mon",
        Weekday::Tuesday => "booking.tue",
        Weekday::Wednesday => "booking.wed",
        Weekday::Thursday => "booking.thu",
        Weekday::Friday => "booking.fri",
        Weekday::Saturday => "booking.sat",
        Weekday::Sunday => "booking.sun",
    }
}

/// The words a calendar cell adds for what colour alone would show.
fn state_words(row: &BookingRow, lang: Lang) -> String {
    if let Some(change) = &row.change {
        return format!(
            " — {}, {}",
            lang.t(action_key(&change.action)),
            lang.t("booking.change_pending_short")
        );
    }
    let action = row.request.as_ref().and_then(|r| r.action.as_deref());
    match (row.state, action) {
        (BookingState::Requested | BookingState::RequestRefused, Some(action)) => format!(
            " — {}, {}",
            lang.t(action_key(action)),
            lang.t(state_label(row.state))
        ),
        (BookingState::Requested | BookingState::RequestRefused, None) => {
            format!(" — {}", lang.t(state_label(row.state)))
        }
        _ => String::new(),
    }
}

/// The class of a booking's cell: a lab booking with a change asked for here is drawn as a
/// request (`requested`), the words saying which.
fn cell_state(row: &BookingRow) -> &'static str {
    if row.change.is_some() {
        BookingState::Requested.as_str()
    } else {
        row.state.as_str()
    }
}
