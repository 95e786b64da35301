//! Booking rules of a resource and the checks that need no database: duration, booking window,
//! bookings in the past, the cancellation deadline. Overlaps and the per-user limit need the
//! other bookings; the store checks them in the same write transaction (`cahier-store`
//! `bookings`). Times are UTC milliseconds; a booking covers `[start, end)`.
//!
//! Messages name the rule and say what to do: they reach users as 409/422 descriptions.

use crate::zone::Zone;
use serde::{Deserialize, Serialize};

const MINUTE_MS: i64 = 60_000;

/// A resource's booking rules, set by its owner or a team admin (eLabFTW's `book_*` columns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingRules {
    /// Whether the resource appears in calendars and may be booked at all.
    pub is_bookable: bool,
    /// Whether two bookings may share time.
    pub can_overlap: bool,
    /// Longest booking, in minutes; `None`: no limit.
    pub max_minutes: Option<i64>,
    /// Bookings not yet ended one user may hold; `None`: no limit.
    pub max_slots: Option<i64>,
    /// How many days ahead a booking may start; `None`: no limit.
    pub window_days: Option<i64>,
    /// Whether bookers may cancel their own bookings.
    pub is_cancellable: bool,
    /// Bookers cannot cancel within this many minutes of the start.
    pub cancel_minutes: i64,
    /// Bookings by others than the owner and team admins wait for approval.
    pub needs_approval: bool,
}

impl Default for BookingRules {
    /// Not bookable; once made bookable: no overlap, no limits, cancellable any time.
    fn default() -> Self {
        Self {
            is_bookable: false,
            can_overlap: false,
            max_minutes: None,
            max_slots: None,
            window_days: None,
            is_cancellable: true,
            cancel_minutes: 0,
            needs_approval: false,
        }
    }
}

/// Why a booking or a cancellation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookingError {
    /// A value is wrong in itself (422); `field` names it.
    #[error("{field}: {message}")]
    Invalid {
        /// `start`, `end`, `title` …
        field: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// A rule of the resource forbids it now (409).
    #[error("{0}")]
    Refused(String),
}

fn invalid(field: &'static str, message: impl Into<String>) -> BookingError {
    BookingError::Invalid {
        field,
        message: message.into(),
    }
}

impl BookingRules {
    /// Checks each limit is positive (and the deadline not negative).
    pub fn validate(&self) -> Result<(), BookingError> {
        for (field, value) in [
            ("max_minutes", self.max_minutes),
            ("max_slots", self.max_slots),
            ("window_days", self.window_days),
        ] {
            if value.is_some_and(|v| v <= 0) {
                return Err(invalid(
                    field,
                    "must be a positive number, or empty for no limit",
                ));
            }
        }
        if self.cancel_minutes < 0 {
            return Err(invalid("cancel_minutes", "must be 0 or more"));
        }
        Ok(())
    }

    /// The checks of a new or moved booking that need no other booking. `is_manager`: the
    /// resource's owner or a team admin, who may book in the past and beyond the window. The
    /// window counts calendar days in `zone` (the instance's): with 7 days, a booking may start
    /// any time up to the end of the 7th day after today, whatever daylight saving does.
    pub fn check_slot(
        &self,
        start_ms: i64,
        end_ms: i64,
        now_ms: i64,
        is_manager: bool,
        zone: &Zone,
    ) -> Result<(), BookingError> {
        if !self.is_bookable {
            return Err(BookingError::Refused(
                "this resource is not bookable; its owner or a team admin can allow bookings"
                    .into(),
            ));
        }
        if end_ms <= start_ms {
            return Err(invalid("end", "the end must come after the start"));
        }
        if let Some(max) = self.max_minutes
            && end_ms - start_ms > max * MINUTE_MS
        {
            return Err(invalid(
                "end",
                format!(
                    "a booking of this resource lasts at most {} (asked: {})",
                    duration(max),
                    duration((end_ms - start_ms + MINUTE_MS - 1) / MINUTE_MS)
                ),
            ));
        }
        if is_manager {
            return Ok(());
        }
        if start_ms < now_ms {
            return Err(invalid(
                "start",
                "the start is in the past; choose a time from now on",
            ));
        }
        if let Some(days) = self.window_days
            && zone.date_of(start_ms) > zone.date_of(now_ms) + time::Duration::days(days)
        {
            return Err(invalid(
                "start",
                format!("this resource can be booked at most {days} days ahead"),
            ));
        }
        Ok(())
    }

    /// Whether the booker (not a manager) may still cancel a booking starting at `start_ms`.
    pub fn check_cancel(&self, start_ms: i64, now_ms: i64) -> Result<(), BookingError> {
        if !self.is_cancellable {
            return Err(BookingError::Refused(
                "bookings of this resource cannot be cancelled by their bookers; ask its owner or a team admin"
                    .into(),
            ));
        }
        if now_ms > start_ms - self.cancel_minutes * MINUTE_MS {
            let message = if self.cancel_minutes > 0 {
                format!(
                    "bookings of this resource can be cancelled until {} before they start; ask its owner or a team admin",
                    duration(self.cancel_minutes)
                )
            } else {
                "this booking has started; ask the resource's owner or a team admin to cancel it"
                    .to_owned()
            };
            return Err(BookingError::Refused(message));
        }
        Ok(())
    }
}

/// "90 minutes" → "1 h 30 min".
pub fn duration(minutes: i64) -> String {
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

/// Parses a moment as eLabFTW's scheduler accepts it: RFC 3339 (`2026-12-01T09:00:00+01:00`,
/// `…Z`), or a date and time without offset, taken as UTC (`2026-12-01T09:00`,
/// `2026-12-01 09:00:00`). Returns UTC milliseconds. [`crate::zone::Zone::parse`] takes the
/// latter as local time in a zone instead.
pub fn parse_instant(text: &str) -> Option<i64> {
    crate::zone::Zone::utc().parse(text)
}

/// A date and time without offset: `2026-12-01T09:00[:00]` or `2026-12-01 09:00[:00]`.
pub fn parse_civil(text: &str) -> Option<time::PrimitiveDateTime> {
    let formats = [
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]"),
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]"),
    ];
    formats
        .iter()
        .find_map(|format| time::PrimitiveDateTime::parse(text.trim(), format).ok())
}

/// Formats UTC milliseconds as RFC 3339 with a `Z` (`2026-12-01T09:00:00Z`).
pub fn format_instant(ms: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const DAY_MS: i64 = 86_400_000;

    fn utc() -> Zone {
        Zone::utc()
    }
    const HOUR: i64 = 3_600_000;

    fn bookable() -> BookingRules {
        BookingRules {
            is_bookable: true,
            ..BookingRules::default()
        }
    }

    #[test]
    fn parses_the_formats_elabftw_accepts() {
        let at = parse_instant("2026-12-01T09:00:00Z").unwrap();
        assert_eq!(parse_instant("2026-12-01T10:00:00+01:00"), Some(at));
        assert_eq!(parse_instant("2026-12-01 09:00:00"), Some(at));
        assert_eq!(parse_instant("2026-12-01T09:00"), Some(at));
        assert_eq!(format_instant(at), "2026-12-01T09:00:00Z");
        assert_eq!(parse_instant("tomorrow"), None);
        assert_eq!(parse_instant("2026-02-30T09:00"), None);
    }

    #[test]
    fn a_booking_must_end_after_it_starts_and_respect_the_longest_duration() {
        let rules = BookingRules {
            max_minutes: Some(90),
            ..bookable()
        };
        assert!(
            rules
                .check_slot(NOW + HOUR, NOW + HOUR, NOW, false, &utc())
                .is_err()
        );
        assert!(
            rules
                .check_slot(NOW + HOUR, NOW + HOUR + 90 * MINUTE_MS, NOW, false, &utc())
                .is_ok()
        );
        let error = rules
            .check_slot(NOW + HOUR, NOW + 3 * HOUR, NOW, false, &utc())
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "end: a booking of this resource lasts at most 1 h 30 min (asked: 2 h)"
        );
    }

    #[test]
    fn only_managers_book_in_the_past_or_beyond_the_window() {
        let rules = BookingRules {
            window_days: Some(7),
            ..bookable()
        };
        assert!(
            rules
                .check_slot(NOW - HOUR, NOW, NOW, false, &utc())
                .is_err()
        );
        assert!(rules.check_slot(NOW - HOUR, NOW, NOW, true, &utc()).is_ok());
        let far = NOW + 8 * DAY_MS;
        assert!(
            rules
                .check_slot(far, far + HOUR, NOW, false, &utc())
                .is_err()
        );
        assert!(rules.check_slot(far, far + HOUR, NOW, true, &utc()).is_ok());
    }

    #[test]
    fn the_window_counts_local_calendar_days_across_a_clock_change() {
        let rules = BookingRules {
            window_days: Some(2),
            ..bookable()
        };
        let paris = Zone::named("Europe/Paris").unwrap();
        // Friday 27 March 2026, 23:30 in Paris; clocks go forward on Sunday 29.
        let now = paris.parse("2026-03-27T23:30").unwrap();
        let sunday_late = paris.parse("2026-03-29T23:30").unwrap();
        assert!(
            rules
                .check_slot(sunday_late, sunday_late + HOUR, now, false, &paris)
                .is_ok()
        );
        let monday = paris.parse("2026-03-30T00:10").unwrap();
        assert!(
            rules
                .check_slot(monday, monday + HOUR, now, false, &paris)
                .is_err()
        );
    }

    #[test]
    fn unbookable_resources_refuse_everyone() {
        let rules = BookingRules::default();
        assert!(matches!(
            rules.check_slot(NOW + HOUR, NOW + 2 * HOUR, NOW, true, &utc()),
            Err(BookingError::Refused(_))
        ));
    }

    #[test]
    fn cancelling_stops_at_the_deadline() {
        let rules = BookingRules {
            cancel_minutes: 60,
            ..bookable()
        };
        assert!(rules.check_cancel(NOW + 2 * HOUR, NOW).is_ok());
        assert!(rules.check_cancel(NOW + 30 * MINUTE_MS, NOW).is_err());
        let fixed = BookingRules {
            is_cancellable: false,
            ..bookable()
        };
        assert!(fixed.check_cancel(NOW + 2 * HOUR, NOW).is_err());
    }

    #[test]
    fn limits_must_be_positive() {
        let rules = BookingRules {
            max_slots: Some(0),
            ..bookable()
        };
        assert!(rules.validate().is_err());
        assert!(bookable().validate().is_ok());
    }
}
