//! `auditlog-bench`: `compare` runs auditlog beside SQLite, JSON lines,
//! walrus and okaywal on the same events and prints the table.
//!
//! ```text
//! cargo run --release -p auditlog-bench -- compare [--events N] [--markdown]
//!     [--skip-sqlite] [--skip-jsonl] [--skip-walrus] [--skip-okaywal] [--skip-auditlog]
//!     [--durable-secs S] [--dir PATH]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use auditlog_bench::compare::{self, Args, ENGINES};

const USAGE: &str = "usage: auditlog-bench compare [--events N] [--markdown] [--skip-ENGINE ...] [--durable-secs S] [--dir PATH]
engines: auditlog, sqlite, jsonl, walrus, okaywal";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) != Some("compare") {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    }
    let mut args = Args::default();
    let mut child: Option<(String, String)> = None;
    let mut store: Option<PathBuf> = None;
    let mut it = argv[1..].iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs {what}"))
        };
        let parsed: Result<(), String> = (|| {
            match a.as_str() {
                "--events" => {
                    args.events = value("a number")?
                        .parse()
                        .map_err(|_| "--events needs a number".to_string())?
                }
                "--durable-secs" => {
                    args.durable_secs = value("seconds")?
                        .parse()
                        .map_err(|_| "--durable-secs needs seconds".to_string())?
                }
                "--markdown" => args.markdown = true,
                "--dir" => args.dir = Some(PathBuf::from(value("a directory")?)),
                "--store" => store = Some(PathBuf::from(value("a directory")?)),
                "--child" => child = Some((value("an engine")?, value("a phase")?)),
                s if s.starts_with("--skip-") && ENGINES.contains(&&s[7..]) => {
                    args.skip.push(s[7..].to_string())
                }
                other => return Err(format!("unknown argument {other}\n{USAGE}")),
            }
            Ok(())
        })();
        if let Err(e) = parsed {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some((engine, phase)) = child {
        let store = store.expect("the parent passes --store");
        compare::run_child(&engine, &phase, args.events, args.durable_secs, &store);
        return ExitCode::SUCCESS;
    }
    match compare::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compare: {e}");
            ExitCode::FAILURE
        }
    }
}
