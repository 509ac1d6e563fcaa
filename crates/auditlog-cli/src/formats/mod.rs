//! The exchange formats: those of the systems the seeds describe (SAP UME
//! security audit lines, the Netop Portal log report), auditlog's own CSV,
//! and what lakes and SIEMs read (OCSF JSON, RFC 5424 syslog, CEF). Pure functions over
//! text; each error names the field at fault (the caller adds file and line).

pub mod cef;
pub mod events_csv;
pub mod netop;
pub mod ocsf;
pub mod sap;
pub mod syslog;

/// A line or record that is not in the expected format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// The field at fault, if one is.
    pub field: Option<&'static str>,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.field {
            Some(field) => write!(f, "field `{field}`: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

impl std::error::Error for FormatError {}

pub(crate) fn err(field: &'static str, what: impl Into<String>) -> FormatError {
    FormatError {
        field: Some(field),
        what: what.into(),
    }
}
