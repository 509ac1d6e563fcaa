//! Timestamps: nanoseconds since the Unix epoch, UTC; RFC 3339 in and out.

use std::fmt;
use std::str::FromStr;

use ::time::format_description::well_known::Rfc3339;
use ::time::OffsetDateTime;

/// A point in time: nanoseconds since 1970-01-01T00:00:00Z (years 1678 to 2262).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

/// A time that is not RFC 3339 or is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time {text:?}: {why} (expected RFC 3339, e.g. 2026-11-21T10:15:30.123456Z)")]
pub struct TimestampError {
    /// The text given.
    pub text: String,
    /// What is wrong with it.
    pub why: String,
}

impl Timestamp {
    /// Seconds since the epoch (rounded down).
    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1_000_000_000)
    }

    /// From seconds since the epoch; `None` out of range.
    pub fn from_unix_seconds(secs: i64) -> Option<Timestamp> {
        secs.checked_mul(1_000_000_000).map(Timestamp)
    }

    /// The current time.
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    /// RFC 3339 with any offset; converted to UTC.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: String| TimestampError {
            text: s.to_string(),
            why,
        };
        let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| err(e.to_string()))?;
        i64::try_from(t.unix_timestamp_nanos())
            .map(Timestamp)
            .map_err(|_| err("outside the years 1678 to 2262".into()))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with `Z`; the fraction in groups of three digits, as
    /// many as needed (none for whole seconds).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0))
            .map_err(|_| fmt::Error)?;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )?;
        let ns = t.nanosecond();
        if ns % 1_000_000 == 0 && ns != 0 {
            write!(f, ".{:03}", ns / 1_000_000)?;
        } else if ns % 1_000 == 0 && ns != 0 {
            write!(f, ".{:06}", ns / 1_000)?;
        } else if ns != 0 {
            write!(f, ".{ns:09}")?;
        }
        f.write_str("Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_in_any_offset_out_in_utc() {
        let t: Timestamp = "2026-11-21T10:15:30.123456Z".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-21T10:15:30.123456Z");
        let t2: Timestamp = "2026-11-21T11:15:30.123456+01:00".parse().unwrap();
        assert_eq!(t, t2);
        assert_eq!(
            "2026-01-01T00:00:00Z"
                .parse::<Timestamp>()
                .unwrap()
                .to_string(),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(Timestamp(1).to_string(), "1970-01-01T00:00:00.000000001Z");
        assert_eq!(
            Timestamp(-1_000_000).to_string(),
            "1969-12-31T23:59:59.999Z"
        );
        assert!("2026-13-01T00:00:00Z".parse::<Timestamp>().is_err());
        assert!("yesterday"
            .parse::<Timestamp>()
            .unwrap_err()
            .to_string()
            .contains("RFC 3339"));
        assert!("9999-01-01T00:00:00Z".parse::<Timestamp>().is_err());
    }
}
