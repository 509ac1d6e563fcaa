//! Raw segments: the on-disk structures of the write-ahead log, pure (no
//! `Log`, no shared state).
//!
//! - [`segment`]: file names, the header (log id, record limit), the sync
//!   mark and the footer;
//! - [`frame`]: one CRC-framed record;
//! - [`recovery`]: the frame-by-frame scan of a segment and its decision
//!   table (torn tail or damage);
//! - [`quarantine`]: the `QUARANTINE` file, the ranges `Repair` dropped.

pub mod frame;
pub mod quarantine;
pub mod recovery;
pub mod segment;
