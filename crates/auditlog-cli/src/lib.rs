//! Parts of the `auditlog` tool that others reuse: the demo workload
//! generator (also the benchmarks' workload).

pub mod workload;
