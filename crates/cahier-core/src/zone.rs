//! Time zones of the booking calendar: an IANA zone (`Europe/Paris`) with its daylight-saving
//! rules, from the tz database bundled with `jiff` (the same rules on every machine). Instants
//! are stored as UTC milliseconds; a zone turns them into local dates and times for display
//! and turns what a user types (a local date and time) back into instants.
//!
//! A local time that does not exist (the hour skipped when clocks go forward) is moved forward
//! by the gap; a local time that happens twice (when clocks go back) is the first of the two.
//! These are RFC 5545's and the browsers' rules.

use time::Date;

/// An IANA time zone.
#[derive(Debug, Clone)]
pub struct Zone {
    tz: jiff::tz::TimeZone,
    name: String,
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl Default for Zone {
    fn default() -> Self {
        Self::utc()
    }
}

impl Zone {
    /// UTC.
    pub fn utc() -> Self {
        Self {
            tz: jiff::tz::TimeZone::UTC,
            name: "UTC".to_owned(),
        }
    }

    /// The zone of an IANA name (`Europe/Paris`, `UTC`), or `None` if there is no such zone.
    pub fn named(name: &str) -> Option<Self> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 {
            return None;
        }
        let tz = jiff::tz::TimeZone::get(name).ok()?;
        Some(Self {
            name: tz.iana_name().unwrap_or(name).to_owned(),
            tz,
        })
    }

    /// The server's own zone (`TZ`, then `/etc/localtime`) when it has an IANA name.
    pub fn system() -> Option<Self> {
        let tz = jiff::tz::TimeZone::try_system().ok()?;
        Self::named(tz.iana_name()?)
    }

    /// The IANA name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is UTC (offset always zero).
    pub fn is_utc(&self) -> bool {
        matches!(
            self.name.as_str(),
            "UTC" | "Etc/UTC" | "Etc/UCT" | "UCT" | "Zulu"
        )
    }

    /// The names of all zones, sorted, for a settings list.
    pub fn all_names() -> Vec<String> {
        let mut names: Vec<String> = jiff::tz::db().available().map(|n| n.to_string()).collect();
        names.sort();
        names
    }

    fn zoned(&self, ms: i64) -> jiff::Zoned {
        jiff::Timestamp::from_millisecond(ms)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .to_zoned(self.tz.clone())
    }

    /// The local calendar date of an instant.
    pub fn date_of(&self, ms: i64) -> Date {
        let d = self.zoned(ms).date();
        to_time_date(d).unwrap_or(Date::MIN)
    }

    /// The instant a local date starts (usually midnight; later if midnight was skipped).
    pub fn day_start(&self, date: Date) -> i64 {
        self.at(date, 0, 0)
    }

    /// The instant of a local date and time (see the module doc for skipped and repeated
    /// times).
    pub fn at(&self, date: Date, hour: u8, minute: u8) -> i64 {
        let Ok(civil) = jiff::civil::DateTime::new(
            i16::try_from(date.year()).unwrap_or(1970),
            i8::try_from(u8::from(date.month())).unwrap_or(1),
            i8::try_from(date.day()).unwrap_or(1),
            i8::try_from(hour).unwrap_or(0),
            i8::try_from(minute).unwrap_or(0),
            0,
            0,
        ) else {
            return 0;
        };
        self.tz
            .to_ambiguous_zoned(civil)
            .compatible()
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or(0)
    }

    /// Local `HH:MM`.
    pub fn hm(&self, ms: i64) -> String {
        self.zoned(ms).strftime("%H:%M").to_string()
    }

    /// Local `YYYY-MM-DDTHH:MM`, the value of a `datetime-local` input.
    pub fn input_value(&self, ms: i64) -> String {
        self.zoned(ms).strftime("%Y-%m-%dT%H:%M").to_string()
    }

    /// Local `YYYY-MM-DD HH:MM`.
    pub fn display(&self, ms: i64) -> String {
        self.zoned(ms).strftime("%Y-%m-%d %H:%M").to_string()
    }

    /// The offset from UTC at an instant, `+01:00`.
    pub fn offset_label(&self, ms: i64) -> String {
        self.zoned(ms).strftime("%:z").to_string()
    }

    /// RFC 3339 with this zone's offset at that instant (`2026-12-01T10:00:00+01:00`), or with
    /// `Z` in UTC.
    pub fn rfc3339(&self, ms: i64) -> String {
        if self.is_utc() {
            return crate::booking::format_instant(ms);
        }
        self.zoned(ms).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }

    /// Parses a moment: RFC 3339 with an offset or `Z` is that instant; a date and time
    /// without offset (`2026-12-01T09:00`, `2026-12-01 09:00:00`) is local time in this zone.
    /// Returns UTC milliseconds.
    pub fn parse(&self, text: &str) -> Option<i64> {
        use time::format_description::well_known::Rfc3339;
        let text = text.trim();
        if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
            return i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok();
        }
        let civil = crate::booking::parse_civil(text)?;
        Some(self.at(civil.date(), civil.hour(), civil.minute()) + i64::from(civil.second()) * 1000)
    }
}

fn to_time_date(d: jiff::civil::Date) -> Option<Date> {
    let month = time::Month::try_from(u8::try_from(d.month()).ok()?).ok()?;
    Date::from_calendar_date(i32::from(d.year()), month, u8::try_from(d.day()).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris() -> Zone {
        Zone::named("Europe/Paris").unwrap()
    }

    fn date(y: i32, m: u8, d: u8) -> Date {
        Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d).unwrap()
    }

    #[test]
    fn ten_o_clock_in_paris_is_nine_utc_in_winter_and_eight_in_summer() {
        let z = paris();
        let winter = z.parse("2026-01-15T10:00").unwrap();
        assert_eq!(
            crate::booking::format_instant(winter),
            "2026-01-15T09:00:00Z"
        );
        let summer = z.parse("2026-07-15 10:00:00").unwrap();
        assert_eq!(
            crate::booking::format_instant(summer),
            "2026-07-15T08:00:00Z"
        );
        assert_eq!(z.hm(summer), "10:00");
        assert_eq!(z.rfc3339(summer), "2026-07-15T10:00:00+02:00");
        assert_eq!(z.parse("2026-07-15T10:00:00+02:00"), Some(summer));
    }

    #[test]
    fn days_around_the_change_have_23_and_25_hours() {
        let z = paris();
        let spring = z.day_start(date(2026, 3, 30)) - z.day_start(date(2026, 3, 29));
        assert_eq!(spring, 23 * 3_600_000);
        let autumn = z.day_start(date(2026, 10, 26)) - z.day_start(date(2026, 10, 25));
        assert_eq!(autumn, 25 * 3_600_000);
        // 02:30 does not exist on 29 March: it is moved to 03:30 summer time.
        assert_eq!(z.hm(z.at(date(2026, 3, 29), 2, 30)), "03:30");
        assert_eq!(
            z.date_of(z.at(date(2026, 3, 29), 23, 59)),
            date(2026, 3, 29)
        );
    }

    #[test]
    fn unknown_names_are_refused() {
        assert!(Zone::named("Mars/Olympus").is_none());
        assert!(Zone::named("").is_none());
        assert_eq!(Zone::named("Europe/Paris").unwrap().name(), "Europe/Paris");
        assert!(Zone::all_names().iter().any(|n| n == "America/New_York"));
    }
}
