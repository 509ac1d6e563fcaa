//! Helpers shared by the CLI test files: run the tool, read its output,
//! write a workload as JSON lines.
#![allow(dead_code)] // each test file uses its own part

pub mod ocsf_schema;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use auditlog::event::json;
use auditlog::Event;
use auditlog_cli::workload::Workload;

pub fn auditlog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .args(args)
        .output()
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

pub fn ok(args: &[&str]) -> String {
    let o = auditlog(args);
    assert!(
        o.status.success(),
        "auditlog {args:?} failed: {}",
        stderr(&o)
    );
    stdout(&o)
}

/// A small workload written as JSON lines to `file`.
pub fn events_file(dir: &Path, n: u64) -> (std::path::PathBuf, Vec<Event>) {
    let w = Workload {
        events: n,
        ..Workload::default()
    };
    let events: Vec<Event> = w.generate().collect();
    let path = dir.join("events.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for e in &events {
        writeln!(f, "{}", json::to_json(e, None)).unwrap();
    }
    (path, events)
}

pub fn lines_as_events(text: &str) -> Vec<Event> {
    text.lines()
        .map(|l| json::from_json(l, &|_| None).unwrap())
        .collect()
}

/// `auditlog import --format jsonl FILE` into `dir`, which must succeed.
pub fn import_jsonl(dir: &str, file: &Path) -> String {
    ok(&[
        "import",
        "--dir",
        dir,
        "--format",
        "jsonl",
        file.to_str().unwrap(),
    ])
}

/// The names of the raw segment files (`.seg`) in `dir`, sorted: the last
/// is the active segment.
pub fn raw_segment_files(dir: &Path) -> Vec<String> {
    let mut raw: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    raw.sort();
    raw
}
