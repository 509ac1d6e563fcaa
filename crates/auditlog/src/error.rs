//! The one public error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::{Lsn, SegmentId};

/// Everything that can go wrong in auditlog. Each variant's `Display` is a
/// sentence a user can act on: it names the file, the offset and the LSNs.
/// A variant with an underlying cause (an OS error, a decoding error, the
/// error that cut a batch short) does not repeat it in its own text: it is
/// the [`source`](std::error::Error::source), so that a report printing the
/// chain (`{:#}` with anyhow) says each cause once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done ("create segment", "sync", ...).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The disk is full. The log stays readable, and appendable again once space is freed.
    #[error("no space left on the device while trying to {op} {}; free some space and retry (the log is intact and readable)", path.display())]
    StorageFull {
        /// What was being done.
        op: &'static str,
        /// The file it was done to.
        path: PathBuf,
    },
    /// Damaged bytes on disk. Never returned as records.
    #[error(transparent)]
    Corruption(Box<Corruption>),
    /// Another process holds the write lock.
    #[error("log {} is locked by {}; close that writer or open this one read-only", path.display(), match pid { Some(p) => format!("pid {p}"), None => "another process".to_string() })]
    Locked {
        /// The log directory.
        path: PathBuf,
        /// The pid the lock file names, if it could be read.
        pid: Option<u32>,
    },
    /// A record larger than the configured maximum.
    #[error("record of {len} bytes is larger than the maximum of {max} bytes")]
    RecordTooLarge {
        /// The record's length.
        len: usize,
        /// The configured maximum ([`Options::record_bytes_max`](crate::Options::record_bytes_max)).
        max: u32,
    },
    /// An earlier write or sync failed, so durability can no longer be promised.
    #[error("the log refuses writes because an earlier {reason}; reopen it to recover")]
    Poisoned {
        /// What failed.
        reason: String,
    },
    /// The log directory holds a file auditlog did not write.
    #[error("{} does not belong to an auditlog log ({what}); move it away or choose another directory", path.display())]
    ForeignFile {
        /// The offending file.
        path: PathBuf,
        /// Why it is not ours.
        what: &'static str,
    },
    /// The log directory does not exist (for read-only opens).
    #[error("log directory {} does not exist", path.display())]
    NotFound {
        /// The directory.
        path: PathBuf,
    },
    /// A write was attempted on a log opened read-only.
    #[error("the log was opened read-only")]
    ReadOnly,
    /// The options are inconsistent.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// The log's `CATALOG` file cannot be parsed.
    #[error("{}: line {line}: {what}", path.display())]
    BadCatalogFile {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0: the file as a whole).
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// An event type the log's strict catalog does not know.
    #[error("unknown event type {name:?}{}", if suggestions.is_empty() { String::new() } else { format!("; did you mean {}?", suggestions.join(", ")) })]
    UnknownType {
        /// The type given.
        name: String,
        /// The closest known names.
        suggestions: Vec<String>,
    },
    /// An event type of the engine's own (`AUDITLOG_…`): only the engine writes them.
    #[error("event type {name:?} is reserved: names starting with AUDITLOG_ belong to auditlog's own events, which only auditlog writes")]
    ReservedType {
        /// The type given.
        name: String,
    },
    /// A name that cannot be stored (empty, too long, or with a line break).
    #[error("invalid {what} name {name:?}")]
    InvalidName {
        /// "event type" or "attribute key".
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// A stored event that does not decode.
    #[error("record {lsn}")]
    BadEvent {
        /// Its LSN.
        lsn: Lsn,
        /// What is wrong with it.
        source: crate::event::codec::DecodeError,
    },
    /// A batch larger than a segment was cut short: its first records are in
    /// the log (and as durable as the batch asked), the rest are not.
    #[error("only the first {} records of the batch were appended (LSN {}..={}), the rest were not", next.0 - first.0, first, next.0 - 1)]
    BatchCut {
        /// LSN of the batch's first record.
        first: Lsn,
        /// One past the last record appended; `next - first` records are in.
        next: Lsn,
        /// Why the rest could not be.
        source: Box<Error>,
    },
    /// A `Sync` append wrote its records, but the sync that was to make them
    /// durable failed: they are in the log now (readers see them, and a
    /// reopen finds them unless the machine goes down first) but may not
    /// survive a crash or power loss. Nothing after them was appended, and
    /// the log is poisoned. `next - first` may be fewer than the batch held
    /// (a batch larger than a segment, cut): the rest was not appended.
    #[error("records {first}..={} were appended but not made durable: their sync failed, so they are in the log now but may not survive a crash", next.0 - 1)]
    NotDurable {
        /// LSN of the first record written.
        first: Lsn,
        /// One past the last record written.
        next: Lsn,
        /// Why the sync failed.
        source: Box<Error>,
    },
    /// The quarantine file cannot be parsed.
    #[error("{}: line {line}: {what}", path.display())]
    BadQuarantineFile {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.kind() == io::ErrorKind::StorageFull {
            Error::StorageFull { op, path }
        } else {
            Error::Io { op, path, source }
        }
    }

    /// This error and every cause under it, `: `-separated (what a poisoned
    /// log keeps as its reason: the operation, the file and the OS error).
    pub(crate) fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }

    /// The corruption report, if this is a corruption error.
    pub fn corruption(&self) -> Option<&Corruption> {
        match self {
            Error::Corruption(c) => Some(c),
            _ => None,
        }
    }
}

impl From<Corruption> for Error {
    fn from(c: Corruption) -> Self {
        Error::Corruption(Box::new(c))
    }
}

/// Where damage was found and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The damaged segment file.
    pub path: PathBuf,
    /// Its segment number.
    pub segment: SegmentId,
    /// First damaged byte (offset in the file).
    pub offset: u64,
    /// One past the last damaged byte.
    pub end: u64,
    /// The LSNs whose records were in the damaged range, if any were.
    pub lsns_lost: Option<(Lsn, Lsn)>,
    /// For a damaged block of a compacted segment: what its index says the
    /// block held (its LSNs are not consecutive, so `lsns_lost` is `None`).
    pub block: Option<BlockLoss>,
    /// What was wrong at `offset`.
    pub problem: Problem,
}

/// What a damaged block of a compacted segment held, as the segment's index
/// says. A block holds the records of some types of one stripe, so its LSNs
/// are a subset of `lsns`, not every LSN between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLoss {
    /// The block's number in its segment (from 0).
    pub block: u32,
    /// Records it held.
    pub records: u32,
    /// Its least and greatest LSN.
    pub lsns: (Lsn, Lsn),
}

impl fmt::Display for BlockLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (block, (a, b)) = (self.block, self.lsns);
        match self.records {
            1 => write!(f, "block {block} lost: its one record, LSN {a}"),
            n => write!(
                f,
                "block {block} lost: its {n} records, LSNs from {a} to {b} (those between \
                 that other blocks hold are not lost)"
            ),
        }
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "corruption in {} at bytes {}..{}: {}",
            self.path.display(),
            self.offset,
            self.end,
            self.problem
        )?;
        match (self.lsns_lost, self.block) {
            (Some((a, b)), _) if a == b => write!(f, "; record {a} lost"),
            (Some((a, b)), _) => write!(f, "; records {a}..={b} lost"),
            (None, Some(loss)) => write!(f, "; {loss}"),
            // Not "no record lost": a damaged frame run or index may hold
            // records whose LSNs cannot be read from it.
            (None, None) => write!(f, "; which LSNs it held is not known"),
        }
    }
}

impl std::error::Error for Corruption {}

/// What exactly was wrong with damaged bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// A file header that does not start with the segment magic.
    BadMagic {
        /// The first eight bytes found.
        found: [u8; 8],
    },
    /// A format version this build does not read.
    UnsupportedVersion(u32),
    /// A header or footer whose checksum does not match.
    HeaderCrc {
        /// Which structure ("segment header", "segment footer").
        what: &'static str,
        /// CRC stored in the file.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// A header that contradicts the file it is in (its name, the LSN sequence).
    Mismatch {
        /// Which field.
        field: &'static str,
        /// The value expected.
        expected: u64,
        /// The value found.
        found: u64,
    },
    /// A frame whose checksum does not match its contents.
    FrameCrc {
        /// CRC stored in the frame header.
        stored: u32,
        /// CRC computed over the frame.
        computed: u32,
    },
    /// A frame length that cannot be right.
    LengthOutOfRange {
        /// The length found.
        len: u32,
        /// The largest length possible at that offset.
        max: u64,
    },
    /// A valid frame carrying the wrong LSN (stale or misdirected data).
    LsnMismatch {
        /// The LSN expected at this position.
        expected: Lsn,
        /// The LSN found.
        found: Lsn,
    },
    /// Zeroed bytes where records should be.
    Zeroed,
    /// The whole-segment checksum in the footer does not match.
    DataCrc {
        /// CRC stored in the footer.
        stored: u32,
        /// CRC computed over the data.
        computed: u32,
    },
    /// A segment file shorter than its header says.
    Truncated {
        /// Its length.
        len: u64,
        /// The length expected.
        expected: u64,
    },
    /// A segment file missing from the sequence.
    MissingSegment,
    /// A segment whose header names another log: copied or moved in from elsewhere.
    ForeignSegment {
        /// The identity of this log (held by its other segments).
        log_id: u128,
        /// The identity the segment's header holds.
        found: u128,
    },
    /// A compacted segment's block or index that does not decode.
    BadCompacted(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::BadMagic { found } => {
                write!(f, "bad magic {found:02x?} (not an auditlog segment)")
            }
            Problem::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            Problem::HeaderCrc {
                what,
                stored,
                computed,
            } => write!(
                f,
                "{what} checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Problem::Mismatch {
                field,
                expected,
                found,
            } => {
                write!(f, "{field} is {found}, expected {expected}")
            }
            Problem::FrameCrc { stored, computed } => write!(
                f,
                "record checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Problem::LengthOutOfRange { len, max } => {
                write!(f, "record length {len} out of range (at most {max} here)")
            }
            Problem::LsnMismatch { expected, found } => {
                write!(f, "record carries LSN {found} where LSN {expected} belongs")
            }
            Problem::Zeroed => write!(f, "zeroed bytes where records should be"),
            Problem::DataCrc { stored, computed } => write!(
                f,
                "segment checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Problem::Truncated { len, expected } => {
                write!(f, "file is {len} bytes, expected {expected}")
            }
            Problem::MissingSegment => write!(f, "segment file is missing"),
            Problem::ForeignSegment { log_id, found } => write!(
                f,
                "the segment belongs to another log (its header says log {found:032x}, this log is {log_id:032x})"
            ),
            Problem::BadCompacted(what) => write!(f, "compacted segment: {what}"),
        }
    }
}

/// Shorthand for `Result<T, auditlog::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
