//! Time as a parameter: production code asks a [`Clock`]; tests pass a [`FixedClock`].

use std::sync::atomic::{AtomicI64, Ordering};

/// A source of the current time, in milliseconds since the Unix epoch (UTC).
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "the one place that reads the system clock"
    )]
    fn now_ms(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Default)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    /// A clock stopped at `ms`.
    pub fn new(ms: i64) -> Self {
        Self(AtomicI64::new(ms))
    }
    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Formats milliseconds since the epoch as eLabFTW does: `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn format_sql_datetime(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// Formats milliseconds since the epoch as a calendar date `YYYY-MM-DD` (UTC).
pub fn format_date(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// Checks that `s` is a calendar date `YYYY-MM-DD`.
pub fn is_valid_date(s: &str) -> bool {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &format).is_ok()
}

/// Midnight UTC of the calendar date `YYYY-MM-DD`, in ms since the epoch.
pub fn date_start_ms(s: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(s.trim(), &format).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp() * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_start_at_midnight_utc() {
        assert_eq!(date_start_ms("2023-11-14"), Some(1_699_920_000_000));
        assert_eq!(date_start_ms("2023-02-30"), None);
        assert_eq!(date_start_ms("yesterday"), None);
    }

    #[test]
    fn formats_like_elabftw() {
        assert_eq!(
            format_sql_datetime(1_700_000_000_123),
            "2023-11-14 22:13:20"
        );
        assert_eq!(format_date(1_700_000_000_123), "2023-11-14");
    }

    #[test]
    fn validates_dates() {
        assert!(is_valid_date("2026-02-28"));
        assert!(!is_valid_date("2026-02-30"));
        assert!(!is_valid_date("yesterday"));
    }
}
