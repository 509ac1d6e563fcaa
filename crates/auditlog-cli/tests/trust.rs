//! Issue 9: no command destroys a log, readers never hide damage, a piped
//! append is durable as it reads, and output cannot drive a terminal.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

/// Every file below `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn demo_is_refused(dir: &Path, why: &str) {
    let before = snapshot(dir);
    let o = auditlog(&["demo", "--dir", dir.to_str().unwrap(), "--events", "100"]);
    assert!(!o.status.success(), "demo onto {dir:?} ran");
    let err = stderr(&o);
    assert!(
        err.contains(why) && err.contains(&dir.display().to_string()),
        "{err}"
    );
    assert!(err.contains("choose another directory with --dir"), "{err}");
    assert_eq!(snapshot(dir), before, "demo changed {dir:?}");
}

#[test]
fn demo_never_replaces_a_log_or_anything_else_it_did_not_create() {
    let tmp = tempfile::tempdir().unwrap();
    // A log holding real events.
    let real = tmp.path().join("real");
    let (file, _) = events_file(tmp.path(), 200);
    ok(&[
        "append",
        "--dir",
        real.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    demo_is_refused(&real, "was not created by `auditlog demo`");

    // An unrelated directory.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("precious.txt"), b"keep me").unwrap();
    demo_is_refused(&other, "precious.txt");

    // A missing and an empty directory are taken; a demo's own directory is replaced.
    let demo = tmp.path().join("demo");
    ok(&["demo", "--dir", demo.to_str().unwrap(), "--events", "300"]);
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    ok(&["demo", "--dir", empty.to_str().unwrap(), "--events", "300"]);
    ok(&["demo", "--dir", demo.to_str().unwrap(), "--events", "200"]);
    assert!(ok(&["stats", "--dir", demo.to_str().unwrap()]).contains("events      200"));

    // An earlier demo's log with a live writer (an append waiting on its input).
    let mut writer = Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .args(["append", "--dir", demo.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = writer.stdin.take().unwrap();
    writeln!(
        stdin,
        r#"{{"time":"2026-11-23T09:00:00Z","type":"USER_LOGGED_IN","actor":"live"}}"#
    )
    .unwrap();
    stdin.flush().unwrap();
    // Wait until the writer holds the lock and its event is in.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok(&["query", "--dir", demo.to_str().unwrap(), "--actor", "live"]).contains("live") {
        assert!(Instant::now() < deadline, "the writer never appended");
        std::thread::sleep(Duration::from_millis(20));
    }
    demo_is_refused(&demo, "another process is writing to it");
    drop(stdin);
    assert!(writer.wait().unwrap().success());
    // And its event is still there.
    assert!(ok(&["query", "--dir", demo.to_str().unwrap(), "--actor", "live"]).contains("live"));
}
