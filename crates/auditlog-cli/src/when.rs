//! Time expressions as operators type them (`--since yesterday`, `-S -1h`,
//! `--until 2026-11-22`), and times shown in a chosen zone.
//!
//! Everything is relative to a [`Clock`]: the current instant and the zone
//! that times without one are in. The tool's clock is the wall clock and
//! the system's zone (`TZ`); tests fix both (`AUDITLOG_NOW`, `TZ`).

use auditlog::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Span, Zoned};

/// Which end of a range a time expression is for: a date alone means the
/// start of that day for `Since` and its end for `Until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `--since`: the earliest time (inclusive).
    Since,
    /// `--until`: the latest time (inclusive).
    Until,
}

/// The current instant and the zone for times given without one.
#[derive(Debug, Clone)]
pub struct Clock {
    now: jiff::Timestamp,
    tz: TimeZone,
}

/// The forms a time expression can take, for error messages.
pub const FORMS: &str = "a time such as now, today, yesterday, tomorrow, -1h, 1h30m (ago), \
                         +2d, 2w, 2026-11-22, '2026-11-22 10:00', 10:00, \
                         2026-11-22T10:00:00Z or 2026-11-22T10:00:00+01:00";

impl Clock {
    /// The wall clock, or `AUDITLOG_NOW` (RFC 3339) if set; times without a
    /// zone are in `zone` if given (`--tz`), else UTC with `utc`, else the
    /// system's zone (`TZ`, `/etc/localtime`).
    ///
    /// # Errors
    /// `AUDITLOG_NOW` that is not RFC 3339; a zone name that is not known.
    pub fn new(utc: bool, zone: Option<&str>) -> Result<Clock, String> {
        let now = match std::env::var("AUDITLOG_NOW") {
            Ok(s) => s
                .parse::<jiff::Timestamp>()
                .map_err(|e| format!("AUDITLOG_NOW: {s:?} is not RFC 3339: {e}"))?,
            Err(_) => jiff::Timestamp::now(),
        };
        Ok(Clock {
            now,
            tz: zone_named(utc, zone)?,
        })
    }

    /// A clock stopped at `now`, in zone `tz`.
    pub fn fixed(now: jiff::Timestamp, tz: TimeZone) -> Clock {
        Clock { now, tz }
    }

    /// The zone times are read and shown in.
    pub fn zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The instant `s` names, as the `end` of a range.
    ///
    /// # Errors
    /// Text that is none of the [`FORMS`], or a time outside the years
    /// 1678 to 2262; never a panic, whatever the text.
    pub fn parse(&self, s: &str, end: End) -> Result<Timestamp, String> {
        let t = s.trim();
        let zoned = self
            .parse_zoned(t, end)
            .ok_or_else(|| format!("{s:?} is not {FORMS}"))?;
        to_timestamp(zoned.timestamp())
            .ok_or_else(|| format!("{s:?} is outside the years 1678 to 2262"))
    }

    fn here(&self) -> Zoned {
        self.now.to_zoned(self.tz.clone())
    }

    fn parse_zoned(&self, t: &str, end: End) -> Option<Zoned> {
        let day = |offset: i64| -> Option<Zoned> {
            let start = self
                .here()
                .date()
                .checked_add(Span::new().days(offset))
                .ok()?;
            day_bound(start, &self.tz, end)
        };
        match t.to_ascii_lowercase().as_str() {
            "now" => return Some(self.here()),
            "today" => return day(0),
            "yesterday" => return day(-1),
            "tomorrow" => return day(1),
            _ => {}
        }
        // An instant with its offset: RFC 3339 / ISO 8601.
        if let Ok(ts) = t.parse::<jiff::Timestamp>() {
            return Some(ts.to_zoned(self.tz.clone()));
        }
        // With an IANA zone in brackets: 2026-11-22T10:00[Europe/Prague].
        if let Ok(z) = t.parse::<Zoned>() {
            return Some(z);
        }
        if let Ok(dt) = t.parse::<DateTime>() {
            if t.len() > 10 {
                return dt.to_zoned(self.tz.clone()).ok();
            }
        }
        if let Ok(d) = t.parse::<Date>() {
            return day_bound(d, &self.tz, end);
        }
        if let Ok(time) = t.parse::<Time>() {
            return self
                .here()
                .date()
                .to_datetime(time)
                .to_zoned(self.tz.clone())
                .ok();
        }
        // A length of time: before now unless it says otherwise (`+2h`).
        let (later, text) = match t.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let span: Span = text.parse().ok()?;
        // `-1h` and `1h ago` are already negative; a bare `1h` means ago too.
        let span = if later || span.is_negative() {
            span
        } else {
            span.negate()
        };
        self.here().checked_add(span).ok()
    }

    /// `t` written in this clock's zone: `2026-11-22T10:00:00.123+01:00`
    /// (`Z` for UTC), the fraction only as long as needed.
    pub fn show(&self, t: Timestamp) -> String {
        self.show_as(t, "%Y-%m-%dT%H:%M:%S%.f")
    }

    /// `t` in this clock's zone to the millisecond, always as long:
    /// `2026-11-22T10:00:00.120+01:00` (tables).
    pub fn show_ms(&self, t: Timestamp) -> String {
        self.show_as(t, "%Y-%m-%dT%H:%M:%S%.3f")
    }

    /// `t` in this clock's zone to the second: `2026-11-22T10:00:00+01:00`
    /// (journalctl's short-iso).
    pub fn show_secs(&self, t: Timestamp) -> String {
        self.show_as(t, "%Y-%m-%dT%H:%M:%S")
    }

    fn show_as(&self, t: Timestamp, format: &str) -> String {
        let Some(ts) = jiff::Timestamp::from_nanosecond(i128::from(t.0)).ok() else {
            return t.to_string();
        };
        let z = ts.to_zoned(self.tz.clone());
        let mut s = z.strftime(format).to_string();
        if z.offset().seconds() == 0 {
            s.push('Z');
        } else {
            s.push_str(&z.strftime("%:z").to_string());
        }
        s
    }
}

/// The zone `--tz` names (an IANA name or a fixed offset such as +01:00),
/// UTC with `--utc`, else the system's.
fn zone_named(utc: bool, zone: Option<&str>) -> Result<TimeZone, String> {
    match zone {
        _ if utc => Ok(TimeZone::UTC),
        None => Ok(TimeZone::try_system().unwrap_or(TimeZone::UTC)),
        Some(name) => {
            if name.eq_ignore_ascii_case("utc") || name == "Z" {
                return Ok(TimeZone::UTC);
            }
            if let Some(off) = fixed_offset(name) {
                return Ok(TimeZone::fixed(off));
            }
            TimeZone::get(name).map_err(|e| format!("--tz: {name:?} is not a time zone: {e}"))
        }
    }
}

/// `+01:00`, `-0530` or `+01` as an offset from UTC.
fn fixed_offset(s: &str) -> Option<jiff::tz::Offset> {
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = s[1..].chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 2 | 4) {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = digits.get(2..).map_or(Some(0), |m| m.parse().ok())?;
    if h > 25 || m > 59 {
        return None;
    }
    jiff::tz::Offset::from_seconds(sign * (h * 3600 + m * 60)).ok()
}

/// The first (`Since`) or last (`Until`) nanosecond of day `d` in `tz`.
fn day_bound(d: Date, tz: &TimeZone, end: End) -> Option<Zoned> {
    let start = d.to_zoned(tz.clone()).ok()?;
    match end {
        End::Since => Some(start),
        End::Until => start
            .tomorrow()
            .ok()?
            .start_of_day()
            .ok()?
            .checked_sub(Span::new().nanoseconds(1))
            .ok(),
    }
}

fn to_timestamp(t: jiff::Timestamp) -> Option<Timestamp> {
    i64::try_from(t.as_nanosecond()).ok().map(Timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thursday 2026-11-26 15:30 in Prague (UTC+1 in winter).
    fn clock() -> Clock {
        let now: jiff::Timestamp = "2026-11-26T14:30:00Z".parse().unwrap();
        Clock::fixed(now, TimeZone::fixed(jiff::tz::offset(1)))
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn named_days_are_local_midnights() {
        let c = clock();
        assert_eq!(c.parse("now", End::Since), Ok(at("2026-11-26T14:30:00Z")));
        assert_eq!(c.parse("today", End::Since), Ok(at("2026-11-25T23:00:00Z")));
        assert_eq!(
            c.parse("Yesterday", End::Since),
            Ok(at("2026-11-24T23:00:00Z"))
        );
        assert_eq!(
            c.parse("tomorrow", End::Since),
            Ok(at("2026-11-26T23:00:00Z"))
        );
        // As an end, a day runs to its last nanosecond.
        assert_eq!(
            c.parse("yesterday", End::Until),
            Ok(at("2026-11-25T22:59:59.999999999Z"))
        );
    }

    #[test]
    fn dates_and_times_with_and_without_a_zone() {
        let c = clock();
        assert_eq!(
            c.parse("2026-11-22", End::Since),
            Ok(at("2026-11-21T23:00:00Z"))
        );
        assert_eq!(
            c.parse("2026-11-22", End::Until),
            Ok(at("2026-11-22T22:59:59.999999999Z"))
        );
        assert_eq!(
            c.parse("2026-11-22 10:00", End::Since),
            Ok(at("2026-11-22T09:00:00Z"))
        );
        assert_eq!(
            c.parse("2026-11-22T10:00:00", End::Until),
            Ok(at("2026-11-22T09:00:00Z"))
        );
        assert_eq!(
            c.parse("2026-11-22T10:00:00Z", End::Since),
            Ok(at("2026-11-22T10:00:00Z"))
        );
        assert_eq!(
            c.parse("2026-11-22T10:00:00-05:00", End::Since),
            Ok(at("2026-11-22T15:00:00Z"))
        );
        assert_eq!(c.parse("09:15", End::Since), Ok(at("2026-11-26T08:15:00Z")));
    }

    #[test]
    fn lengths_of_time_are_ago_unless_marked_later() {
        let c = clock();
        assert_eq!(c.parse("-1h", End::Since), Ok(at("2026-11-26T13:30:00Z")));
        assert_eq!(c.parse("1h", End::Since), Ok(at("2026-11-26T13:30:00Z")));
        assert_eq!(c.parse("1h30m", End::Since), Ok(at("2026-11-26T13:00:00Z")));
        assert_eq!(c.parse("2w", End::Since), Ok(at("2026-11-12T14:30:00Z")));
        assert_eq!(c.parse("7d", End::Since), Ok(at("2026-11-19T14:30:00Z")));
        assert_eq!(
            c.parse("3 hours ago", End::Since),
            Ok(at("2026-11-26T11:30:00Z"))
        );
        assert_eq!(c.parse("+2d", End::Until), Ok(at("2026-11-28T14:30:00Z")));
        assert_eq!(c.parse("90s", End::Since), Ok(at("2026-11-26T14:28:30Z")));
    }

    #[test]
    fn nonsense_is_an_error_never_a_panic() {
        let c = clock();
        for bad in [
            "1é",
            "é",
            "",
            "-",
            "+",
            "noon",
            "2026-13-01",
            "1x",
            "99999999999999d",
            "T",
            "Z",
        ] {
            let e = c.parse(bad, End::Since).unwrap_err();
            assert!(
                e.contains("is not a time") || e.contains("outside"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn shown_in_the_zone() {
        let c = clock();
        assert_eq!(
            c.show(at("2026-11-22T09:00:00.5Z")),
            "2026-11-22T10:00:00.5+01:00"
        );
        let utc = Clock::fixed(c.now, TimeZone::UTC);
        assert_eq!(utc.show(at("2026-11-22T09:00:00Z")), "2026-11-22T09:00:00Z");
        assert_eq!(
            utc.show_ms(at("2026-11-22T09:00:00.5Z")),
            "2026-11-22T09:00:00.500Z"
        );
        assert_eq!(
            c.show_secs(at("2026-11-22T09:00:00.5Z")),
            "2026-11-22T10:00:00+01:00"
        );
    }
}
