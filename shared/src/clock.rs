//! Time, injectable. Every rule that depends on the time (the permission cache's 60 s bound,
//! the usage month, `lastLoginAt` at most hourly) reads it from a [`Clock`], so that a test can
//! move time forward instead of sleeping.

use mongodb::bson::DateTime;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use time::{Date, Month, OffsetDateTime};

/// Where the current time comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// The current time as a BSON date.
    fn now(&self) -> DateTime {
        DateTime::from_millis(self.now_ms())
    }
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        DateTime::now().timestamp_millis()
    }
}

/// A clock that moves only when told to: for tests of time bounds, never a sleep.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock standing at the system's current time.
    pub fn starting_now() -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(SystemClock.now_ms())))
    }
    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The shared handle every component keeps.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock as a shared handle.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// The usage month (`YYYY-MM`, UTC) of a Unix time in ms, and the whole seconds until the next
/// one begins (at least 1: a `Retry-After` of 0 would invite an immediate retry).
pub fn month_window(now_ms: i64) -> (String, u64) {
    let now = OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let (year, month) = (now.year(), now.month());
    let (next_year, next_month) = if month == Month::December { (year + 1, Month::January) } else { (year, month.next()) };
    let next = Date::from_calendar_date(next_year, next_month, 1).expect("the first of a month is a valid date").midnight().assume_utc();
    let millis = (next - now).whole_milliseconds().max(0) as u64;
    (format!("{year:04}-{:02}", u8::from(month)), millis.div_ceil(1000).max(1))
}

/// The per-minute window (`YYYYMMDDHHMM`, UTC) of a Unix time in ms, and the whole seconds until
/// the next one begins (at least 1).
pub fn minute_window(now_ms: i64) -> (String, u64) {
    fixed_window(now_ms, 60_000, 12)
}

/// The hour window (`YYYYMMDDHH`, UTC) and the whole seconds until the next one begins.
pub fn hour_window(now_ms: i64) -> (String, u64) {
    fixed_window(now_ms, 3_600_000, 10)
}

/// The day window (`YYYYMMDD`, UTC) and the whole seconds until the next one begins.
pub fn day_window(now_ms: i64) -> (String, u64) {
    fixed_window(now_ms, 86_400_000, 8)
}

/// A window of `width_ms` (a minute, an hour or a day: each divides the Unix epoch evenly),
/// named by the first `digits` of `YYYYMMDDHHMM`, and the whole seconds (at least 1) until the
/// next one.
fn fixed_window(now_ms: i64, width_ms: i64, digits: usize) -> (String, u64) {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let mut key = format!("{:04}{:02}{:02}{:02}{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute());
    key.truncate(digits);
    let into = now_ms.rem_euclid(width_ms) as u64;
    (key, (width_ms as u64 - into).div_ceil(1000).max(1))
}

/// The UTC calendar day (`YYYY-MM-DD`) of a Unix time in ms: the key of a daily snapshot.
pub fn calendar_day(now_ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// An RFC 3339 date-time (`2026-11-28T00:00:00Z`, any offset) as a BSON date, to the
/// millisecond; `None` if it is not one.
pub fn parse_rfc3339(text: &str) -> Option<DateTime> {
    let t = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some(DateTime::from_millis(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()?))
}

/// A date as RFC 3339 UTC with exactly three fractional digits (`2026-11-28T21:07:30.600Z`), the
/// one form timestamps take in responses.
pub fn rfc3339_millis(at: DateTime) -> String {
    let nanos = i128::from(at.timestamp_millis()) * 1_000_000;
    let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(y: i32, m: Month, d: u8, secs: i64) -> i64 {
        let day = Date::from_calendar_date(y, m, d).unwrap().midnight().assume_utc().unix_timestamp();
        (day + secs) * 1000
    }

    #[test]
    fn the_usage_month_and_retry_after_are_exact() {
        assert_eq!(month_window(ms(2026, Month::November, 28, 0)), ("2026-11".to_string(), 3 * 86_400));
    }

    #[test]
    fn december_rolls_into_january() {
        assert_eq!(month_window(ms(2026, Month::December, 31, 86_399)), ("2026-12".to_string(), 1));
    }

    #[test]
    fn the_minute_window_and_its_retry_after_are_exact() {
        assert_eq!(minute_window(ms(2026, Month::November, 28, 21 * 3600 + 7 * 60) + 59_500), ("202611282107".to_string(), 1));
        assert_eq!(minute_window(ms(2026, Month::November, 28, 0)), ("202611280000".to_string(), 60));
    }

    #[test]
    fn hour_and_day_windows_name_their_prefix_and_wait_for_the_next() {
        let at = ms(2026, Month::November, 28, 21 * 3600 + 7 * 60);
        assert_eq!(hour_window(at), ("2026112821".to_string(), 53 * 60));
        assert_eq!(day_window(at), ("20261128".to_string(), (2 * 3600 + 53 * 60) as u64));
        assert_eq!(parse_rfc3339("2026-11-28T21:07:00Z").map(|d| d.timestamp_millis()), Some(at));
        assert_eq!(parse_rfc3339("2026-11-28"), None);
    }

    #[test]
    fn the_calendar_day_is_the_utc_date_and_turns_at_midnight() {
        assert_eq!(calendar_day(ms(2026, Month::November, 28, 21 * 3600 + 7 * 60)), "2026-11-28");
        assert_eq!(calendar_day(ms(2026, Month::December, 31, 86_399) + 999), "2026-12-31");
        assert_eq!(calendar_day(ms(2027, Month::January, 1, 0)), "2027-01-01");
        assert_eq!(calendar_day(0), "1970-01-01");
    }

    #[test]
    fn a_leap_february_is_29_days() {
        assert_eq!(month_window(ms(2028, Month::February, 1, 0)).1, 29 * 86_400);
    }

    #[test]
    fn timestamps_always_carry_three_fractional_digits() {
        let at = DateTime::from_millis(ms(2026, Month::November, 28, 21 * 3600 + 7 * 60 + 30) + 600);
        assert_eq!(rfc3339_millis(at), "2026-11-28T21:07:30.600Z");
        assert_eq!(rfc3339_millis(DateTime::from_millis(0)), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::starting_now();
        let before = clock.now_ms();
        clock.advance(std::time::Duration::from_secs(61));
        assert_eq!(clock.now_ms() - before, 61_000);
    }
}
