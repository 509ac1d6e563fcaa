//! Event severities.

use std::fmt;
use std::str::FromStr;

/// How serious an audit event is, least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Severity {
    /// Not interesting in normal cases; can fill up the log.
    Debug = 0,
    /// Regular operation, of no particular interest.
    Info = 1,
    /// Regular operation that may be of interest.
    Notice = 2,
    /// Something unusual, not necessarily a problem.
    Warning = 3,
    /// A problem that should be checked and fixed.
    Error = 4,
    /// The most severe (SAP's Fatal / Very High).
    Critical = 5,
}

impl Severity {
    /// All severities, least to most.
    pub const ALL: [Severity; 6] = [
        Severity::Debug,
        Severity::Info,
        Severity::Notice,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ];

    /// The canonical upper-case name (`"WARNING"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Debug => "DEBUG",
            Severity::Info => "INFO",
            Severity::Notice => "NOTICE",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
            Severity::Critical => "CRITICAL",
        }
    }

    /// The number stored on disk (0 = DEBUG … 5 = CRITICAL).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The severity stored as `code`, if any.
    pub fn from_code(code: u8) -> Option<Severity> {
        Severity::ALL.get(usize::from(code)).copied()
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a severity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity {0:?} (expected DEBUG, INFO, NOTICE, WARNING, ERROR, CRITICAL, or SAP's Info, Warning, Error, Fatal, Low, Medium, High, Very High)")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    /// Case-insensitive; also SAP UME's names (Fatal = CRITICAL) and their
    /// Low / Medium / High / Very High aliases.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_uppercase();
        Ok(match norm.as_str() {
            "DEBUG" => Severity::Debug,
            "INFO" | "LOW" => Severity::Info,
            "NOTICE" => Severity::Notice,
            "WARNING" | "MEDIUM" => Severity::Warning,
            "ERROR" | "HIGH" => Severity::Error,
            "CRITICAL" | "FATAL" | "VERY HIGH" => Severity::Critical,
            _ => return Err(UnknownSeverity(s.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_aliases_and_codes() {
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>(), Ok(s));
            assert_eq!(s.as_str().to_lowercase().parse::<Severity>(), Ok(s));
            assert_eq!(Severity::from_code(s.code()), Some(s));
        }
        assert_eq!("Fatal".parse(), Ok(Severity::Critical));
        assert_eq!("Very  high".parse(), Ok(Severity::Critical));
        assert_eq!("Medium".parse(), Ok(Severity::Warning));
        assert_eq!("Low".parse(), Ok(Severity::Info));
        assert!("loud".parse::<Severity>().is_err());
        assert_eq!(Severity::from_code(6), None);
        assert!(Severity::Debug < Severity::Critical);
    }
}
