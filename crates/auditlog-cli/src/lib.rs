//! Parts of the `auditlog` tool that others reuse: the exchange formats and
//! the demo workload generator (also the benchmarks' workload).

pub mod formats;
pub mod lake;
pub mod select;
pub mod terminal;
pub mod when;
pub mod workload;
