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
        .stderr(Stdio::piped())
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
        if Instant::now() > deadline {
            // Say why: the writer's exit and what it said, if it stopped.
            let status = writer.try_wait().unwrap();
            if status.is_none() {
                writer.kill().unwrap();
            }
            let mut said = String::new();
            let _ = std::io::Read::read_to_string(&mut writer.stderr.take().unwrap(), &mut said);
            panic!("the writer never appended (exit {status:?}): {said}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    demo_is_refused(&demo, "another process is writing to it");
    drop(stdin);
    assert!(writer.wait().unwrap().success());
    // And its event is still there.
    assert!(ok(&["query", "--dir", demo.to_str().unwrap(), "--actor", "live"]).contains("live"));
}

fn login_line(i: u32) -> String {
    format!(
        r#"{{"time":"2026-11-23T09:{:02}:{:02}Z","type":"USER_LOGGED_IN","actor":"p{i}"}}"#,
        i / 60 % 60,
        i % 60
    )
}

fn count(dir: &Path) -> u64 {
    ok(&["query", "--dir", dir.to_str().unwrap(), "--count"])
        .trim()
        .parse()
        .unwrap()
}

/// A producer that writes a line now and then: each is committed (and seen
/// by a reader in another process) as soon as it is read, and SIGTERM keeps
/// everything read.
#[test]
fn a_piped_append_is_durable_as_it_reads_and_a_signal_keeps_what_was_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .args(["append", "--dir", dir.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let lines = 8;
    for i in 0..lines {
        writeln!(stdin, "{}", login_line(i)).unwrap();
        stdin.flush().unwrap();
        // Seen by a reader within a second, with the producer still running.
        let deadline = Instant::now() + Duration::from_secs(1);
        while dir.join("CATALOG").exists().then(|| count(&dir)) != Some(u64::from(i) + 1) {
            assert!(Instant::now() < deadline, "line {i} not visible after 1 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // SIGTERM with the input still open: what was read stays, and a summary says so.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{text}");
    assert!(
        text.contains(&format!("appended {lines} events")) && text.contains("interrupted"),
        "{text}"
    );
    assert_eq!(count(&dir), u64::from(lines));
}

/// Fields holding every C0 and C1 control, escape sequences and line breaks
/// reach a table, a grouped count and `stats` only as visible escapes.
#[test]
fn human_output_never_passes_control_bytes_to_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    let controls: String = (0u32..0x20)
        .chain(0x7f..0xa0)
        .filter_map(char::from_u32)
        .collect();
    let nasty = [
        "\x1b]0;owned\x07".to_string(),
        "\x1b[31mred\x1b[0m".to_string(),
        "two\nlines\r\n".to_string(),
        format!("all{controls}end"),
    ];
    let input: String = nasty
        .iter()
        .map(|actor| {
            // Type names cannot hold line breaks; anything else goes.
            let ty = format!("T{}", actor.replace(['\n', '\r'], ""));
            let mut line = serde_json::json!({
                "time": "2026-11-23T09:00:00Z",
                "type": ty,
                "severity": "INFO",
                "actor": actor,
            })
            .to_string();
            line.push('\n');
            line
        })
        .collect();
    let file = tmp.path().join("in.jsonl");
    std::fs::write(&file, input).unwrap();
    ok(&["append", "--dir", d, file.to_str().unwrap()]);
    let outputs = [
        ok(&["query", "--dir", d, "--format", "table"]),
        ok(&["query", "--dir", d, "--group-by", "actor"]),
        ok(&["query", "--dir", d, "--group-by", "type"]),
        ok(&["stats", "--dir", d]),
    ];
    for out in &outputs {
        // Line breaks and the grouped count's tab are the tool's own layout.
        let raw: Vec<char> = out
            .chars()
            .filter(|&c| c.is_control() && c != '\n' && c != '\t')
            .collect();
        assert!(raw.is_empty(), "raw controls {raw:?} in\n{out}");
        assert!(out.contains(r"\x1b]0;owned\x07"), "{out}");
    }
    for out in &outputs[1..3] {
        assert!(out.lines().all(|l| l.matches('\t').count() == 1), "{out}");
    }
    // A table row per event: no field broke its line.
    assert_eq!(
        outputs[0].lines().count(),
        1 + nasty.len(),
        "{}",
        outputs[0]
    );
    // JSON lines stay exact.
    let back = lines_as_events(&ok(&["query", "--dir", d, "--format", "jsonl"]));
    let actors: Vec<String> = back.into_iter().map(|e| e.actor.unwrap()).collect();
    assert_eq!(actors, nasty);
}

/// With no writer running, damage in the middle of the active segment is
/// never hidden: every reader prints what it can, warns naming the file and
/// range, and exits 3; `repair` quarantines it and leaves a log that opens
/// Strict.
#[test]
fn readers_report_damage_in_the_active_segment_and_repair_fixes_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    let (file, events) = events_file(tmp.path(), 3000);
    import_jsonl(d, &file);
    // The active segment: the newest raw one (64, 128, then 256 KiB).
    let raw = raw_segment_files(&dir);
    let name = raw.last().unwrap().clone();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(&name))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"\xde\xad\xbe\xef", 20_000).unwrap();
    drop(f);

    let damaged = |args: &[&str]| {
        let o = auditlog(args);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("missing records") && err.contains(&name),
            "{args:?}: {err}"
        );
        // The damaged range starts at the frame holding byte 20,000 (or
        // at it: where frames fall depends on when the spare segment was
        // made) and ends past it.
        let range = err
            .split("at bytes ")
            .nth(1)
            .and_then(|r| r.split(':').next())
            .and_then(|r| r.split_once(".."))
            .map(|(a, z)| (a.parse::<u64>().unwrap(), z.parse::<u64>().unwrap()));
        assert!(
            range.is_some_and(|(a, z)| a <= 20_000 && z > 20_000 && a > 10_000),
            "{args:?}: {err}"
        );
        stdout(&o)
    };
    let n: usize = damaged(&["query", "--dir", d, "--count"])
        .trim()
        .parse()
        .unwrap();
    // Everything but the damaged records: the reader went on after them.
    assert!(n < events.len() && n > events.len() - 20, "{n}");
    assert_eq!(
        damaged(&["tail", "--dir", d, "-n", "3", "--format", "jsonl"])
            .lines()
            .count(),
        3
    );
    assert!(damaged(&["stats", "--dir", d]).contains(&format!("events      {n}")));
    assert_eq!(
        damaged(&["export", "--dir", d, "--format", "jsonl"])
            .lines()
            .count(),
        n
    );
    assert!(!auditlog(&["verify", "--dir", d]).status.success());

    let out = ok(&["repair", "--dir", d]);
    assert!(
        out.contains("dropped: corruption in") && out.contains("opens Strict"),
        "{out}"
    );
    assert_eq!(ok(&["query", "--dir", d, "--count"]).trim(), n.to_string());
    assert!(ok(&["verify", "--dir", d]).contains("ok"));
    // And the log takes appends again.
    let line = login_line(1);
    let mut w = Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .args(["append", "--dir", d])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(w.stdin.take().unwrap(), "{line}").unwrap();
    assert!(w.wait().unwrap().success());
    assert_eq!(
        ok(&["query", "--dir", d, "--count"]).trim(),
        (n + 1).to_string()
    );
}
