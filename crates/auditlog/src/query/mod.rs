//! The query layer: from what a caller asks ([`Filter`]) to what the
//! storage reads and what comes back.
//!
//! - [`filter`]: [`Filter`] and [`IpNet`], as the caller writes them;
//! - `plan`: a filter compiled against the log's catalog into the storage's
//!   `RowFilter` (the storage's filter seam) (index keys, times, and the
//!   other conditions on encoded columns);
//! - [`explain`]: what a query read and why;
//! - `exec`: [`Query`], the events of a filter in LSN order, built only
//!   once they match;
//! - [`aggregate`]: counts and group-bys computed inside the engine, from the
//!   index postings alone where the filter allows, else from the columns.

pub mod aggregate;
mod exec;
pub mod explain;
pub mod filter;
mod plan;

pub(crate) use aggregate::Counter;
pub use aggregate::{Aggregate, Group, GroupBy, GroupValue, UnknownGroupBy};
pub(crate) use exec::Names;
pub use exec::{EventView, Query};
pub use explain::{Explain, SegmentPlan};
pub use filter::{glob_matches, Filter, IpNet, IpNetError};
pub(crate) use plan::{Compiled, Prefilter};
