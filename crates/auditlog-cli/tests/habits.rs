//! The operator's habits (issue 11): time expressions against a fixed clock,
//! journalctl's short flags and priorities, type patterns, `-g`,
//! `--output-fields` and the output forms, colors, `AUDITLOG_DIR`, and
//! cursors across a concurrent writer and compaction.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use auditlog::{AuditLog, AuditOptions, Catalog, Event, Options, Severity, Timestamp};
use unicode_width::UnicodeWidthStr;

/// The fixed "now" of these tests: Sunday 2026-11-22, noon UTC.
const NOW: &str = "2026-11-22T12:00:00Z";

fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_auditlog"));
    c.args(args)
        .env("AUDITLOG_NOW", NOW)
        .env("TZ", "UTC")
        .env_remove("AUDITLOG_DIR")
        .env_remove("NO_COLOR")
        .env_remove("COLUMNS");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let o = run_env(args, env);
    assert!(
        o.status.success(),
        "auditlog {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn ok(args: &[&str]) -> String {
    ok_env(args, &[])
}

const ACTORS: [&str; 3] = ["alice", "bob", "Žofie 漢字"];
const TYPES: [(&str, Severity); 4] = [
    ("USER_LOGGED_IN", Severity::Info),
    ("USER_AUTH_FAILED_WRONG_PASSWORD", Severity::Warning),
    ("USER_AUTH_FAILED_USER_LOCKED", Severity::Error),
    ("ADMIN_LOGGED_IN", Severity::Critical),
];

/// One event an hour from 2026-11-20T00:00Z to 2026-11-23T00:00Z (73),
/// types, severities and actors in turn.
fn hourly_log(dir: &Path) -> Vec<Event> {
    let log = AuditLog::open(dir, AuditOptions::default()).unwrap();
    let start: Timestamp = "2026-11-20T00:00:00Z".parse().unwrap();
    let events: Vec<Event> = (0..73i64)
        .map(|h| {
            let (ty, sev) = TYPES[h as usize % 4];
            let mut e = Event::new(Timestamp(start.0 + h * 3_600_000_000_000), ty, sev);
            e.actor = Some(ACTORS[h as usize % 3].into());
            e.ip = Some(format!("10.0.{}.{}", h % 2, h).parse().unwrap());
            e
        })
        .collect();
    log.append_batch(&events).unwrap();
    events
}

/// The times `query` prints for `args` (in UTC).
fn times(d: &str, args: &[&str]) -> Vec<String> {
    let mut full = vec!["query", "--dir", d, "-o", "cat", "--output-fields", "time"];
    full.extend_from_slice(args);
    ok(&full).lines().map(String::from).collect()
}

#[test]
fn time_expressions_against_a_fixed_clock() {
    let tmp = tempfile::tempdir().unwrap();
    hourly_log(tmp.path());
    let d = tmp.path().to_str().unwrap();
    let n = |args: &[&str]| times(d, args).len();
    // Named days; a day as --until runs to its end.
    assert_eq!(n(&["-S", "yesterday", "-U", "yesterday"]), 24);
    assert_eq!(
        times(d, &["--since", "yesterday"])[0],
        "2026-11-21T00:00:00Z"
    );
    assert_eq!(n(&["-S", "today"]), 25); // 2026-11-22T00:00 … 2026-11-23T00:00
    assert_eq!(n(&["-S", "tomorrow"]), 1);
    // Dates alone, dates and times without a zone (local: TZ=UTC here).
    assert_eq!(n(&["-S", "2026-11-21", "-U", "2026-11-21"]), 24);
    assert_eq!(n(&["-S", "2026-11-22 10:00"]), 15);
    assert_eq!(n(&["-U", "2026-11-20T05:00:00"]), 6);
    // Another zone, for reading and for printing.
    let cet = times(
        d,
        &["--tz", "+01:00", "-S", "2026-11-21", "-U", "2026-11-21"],
    );
    assert_eq!(cet.len(), 24);
    assert_eq!(cet[0], "2026-11-20T23:00:00Z", "cat prints canonical UTC");
    let short = ok(&[
        "query",
        "--dir",
        d,
        "--tz",
        "+01:00",
        "-o",
        "short-iso",
        "-n",
        "1",
    ]);
    assert!(
        short.starts_with("2026-11-23T01:00:00+01:00 INFO USER_LOGGED_IN: lsn="),
        "{short}"
    );
    let utc = ok_env(
        &["query", "--dir", d, "-o", "short-iso", "-n", "1"],
        &[("TZ", "Asia/Tokyo")],
    );
    assert!(
        utc.starts_with("2026-11-23T09:00:00+09:00"),
        "the local zone: {utc}"
    );
    let utc = ok_env(
        &["query", "--dir", d, "--utc", "-o", "short-iso", "-n", "1"],
        &[("TZ", "Asia/Tokyo")],
    );
    assert!(utc.starts_with("2026-11-23T00:00:00Z"), "--utc: {utc}");
    // Relative: ago unless marked later; RFC 3339 with any offset.
    assert_eq!(n(&["-S", "-2h"]), 15);
    assert_eq!(n(&["--since", "1h30m"]), 14);
    assert_eq!(n(&["-S", "2 days ago", "-U", "-1d"]), 25);
    assert_eq!(n(&["-S", "-1w", "-U", "+1w"]), 73);
    assert_eq!(
        n(&[
            "-S",
            "2026-11-22T13:00:00+01:00",
            "-U",
            "2026-11-22T13:00:00+01:00"
        ]),
        1
    );
    // Mistakes are usage errors that say what is accepted; never a panic.
    for (args, says) in [
        (vec!["-S", "today", "-U", "yesterday"], "later than --until"),
        (vec!["-S", "1é"], "is not a time"),
        (vec!["--until", "noon"], "is not a time"),
        (
            vec!["--tz", "Mars/Olympus", "-S", "today"],
            "not a time zone",
        ),
    ] {
        let mut full = vec!["query", "--dir", d];
        full.extend_from_slice(&args);
        let o = run_env(&full, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn short_flags_priorities_patterns_and_search() {
    let tmp = tempfile::tempdir().unwrap();
    let events = hourly_log(tmp.path());
    let d = tmp.path().to_str().unwrap();
    let lsns = |args: &[&str]| -> Vec<u64> {
        let mut full = vec!["query", "-d", d, "-o", "cat", "--output-fields", "lsn"];
        full.extend_from_slice(args);
        ok(&full).lines().map(|l| l.parse().unwrap()).collect()
    };
    let count = |keep: &dyn Fn(&Event) -> bool| events.iter().filter(|e| keep(e)).count();
    let all = lsns(&[]);
    assert_eq!(all.len(), 73);
    // -p: names, syslog numbers and names, ranges in either order.
    for (p, keep) in [
        (
            "err",
            &(|e: &Event| e.severity >= Severity::Error) as &dyn Fn(&Event) -> bool,
        ),
        ("3", &|e: &Event| e.severity >= Severity::Error),
        ("crit", &|e: &Event| e.severity == Severity::Critical),
        ("warning", &|e: &Event| e.severity >= Severity::Warning),
        ("err..warning", &|e: &Event| {
            (Severity::Warning..=Severity::Error).contains(&e.severity)
        }),
        ("6..4", &|e: &Event| {
            (Severity::Info..=Severity::Warning).contains(&e.severity)
        }),
    ] {
        assert_eq!(lsns(&["-p", p]).len(), count(keep), "-p {p}");
    }
    let o = run_env(&["query", "-d", d, "-p", "loud"], &[]);
    assert_eq!(o.status.code(), Some(2));
    // -t: `*` anywhere, any case; unknown names suggest.
    assert_eq!(
        lsns(&["-t", "*FAILED*"]).len(),
        count(&|e| e.event_type.contains("FAILED"))
    );
    assert_eq!(
        lsns(&["-t", "*_logged_in"]).len(),
        count(&|e| e.event_type.ends_with("_LOGGED_IN"))
    );
    assert_eq!(
        lsns(&["-t", "user_logged_in,ADMIN_LOGGED_IN"]).len(),
        count(&|e| e.event_type.ends_with("_LOGGED_IN"))
    );
    let o = run_env(&["query", "-d", d, "-t", "ADMIN_LOGED_IN"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("did you mean ADMIN_LOGGED_IN"));
    // -n is the last N (oldest first, or newest first with -r); --limit the first.
    assert_eq!(lsns(&["-n", "3"]), all[70..].to_vec());
    assert_eq!(
        lsns(&["-n", "3", "-r"]),
        all[70..].iter().rev().copied().collect::<Vec<_>>()
    );
    assert_eq!(lsns(&["--limit", "2"]), all[..2].to_vec());
    assert_eq!(lsns(&["-r", "--limit", "2"]), vec![all[72], all[71]]);
    assert_eq!(lsns(&["-t", "ADMIN_*", "-n", "1"]), vec![all[71]]);
    // -g: a regular expression over the text fields, smart about case.
    assert_eq!(
        lsns(&["-g", "alice"]).len(),
        count(&|e| e.actor.as_deref() == Some("alice"))
    );
    assert_eq!(lsns(&["-g", "ALICE"]).len(), 0);
    assert_eq!(
        lsns(&["-g", "漢字|^bob$"]).len(),
        count(&|e| e.actor.as_deref() != Some("alice"))
    );
    assert_eq!(
        lsns(&["-g", "wrong_pass"]).len(),
        count(&|e| e.event_type.contains("WRONG"))
    );
    let counted = ok(&["query", "-d", d, "-g", "alice", "--count"]);
    assert_eq!(
        counted.trim(),
        count(&|e| e.actor.as_deref() == Some("alice")).to_string()
    );
    assert_eq!(
        run_env(&["query", "-d", d, "-g", "("], &[]).status.code(),
        Some(2)
    );
    // AUDITLOG_DIR stands for --dir.
    let n = ok_env(&["query", "--count"], &[("AUDITLOG_DIR", d)]);
    assert_eq!(n.trim(), "73");
}

#[test]
fn output_forms_and_fields() {
    let tmp = tempfile::tempdir().unwrap();
    hourly_log(tmp.path());
    let d = tmp.path().to_str().unwrap();
    // --output-fields picks and orders, in every form.
    let csv = ok(&[
        "query",
        "-d",
        d,
        "-n",
        "2",
        "-o",
        "csv",
        "--output-fields",
        "lsn,actor,ip",
    ]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "lsn,actor,ip");
    assert!(lines[2].ends_with(",alice,10.0.0.72"), "{csv}");
    let jsonl = ok(&[
        "query",
        "-d",
        d,
        "-n",
        "1",
        "-o",
        "jsonl",
        "--output-fields",
        "type,lsn",
    ]);
    assert!(
        jsonl.starts_with("{\"type\":\"USER_LOGGED_IN\",\"lsn\":"),
        "{jsonl}"
    );
    // json-pretty is the same objects as jsonl, indented.
    let pretty = ok(&["query", "-d", d, "-o", "json-pretty"]);
    let plain = ok(&["query", "-d", d, "-o", "jsonl"]);
    let a: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&pretty)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let b: Vec<serde_json::Value> = plain
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(a, b);
    assert!(pretty.contains("\n  \"type\": "), "{pretty}");
    let fields = ok(&[
        "query",
        "-d",
        d,
        "-n",
        "1",
        "-o",
        "json-pretty",
        "--output-fields",
        "lsn,actor",
    ]);
    let v: serde_json::Value = serde_json::from_str(&fields).unwrap();
    assert_eq!(v["actor"], "alice");
    // cat: the fields as key=value, or the values asked for alone.
    let cat = ok(&["query", "-d", d, "-n", "1", "-o", "cat"]);
    assert_eq!(cat, "USER_LOGGED_IN ip=10.0.0.72 actor=alice\n");
    let cat = ok(&[
        "query",
        "-d",
        d,
        "-t",
        "USER_LOGGED_IN",
        "-g",
        "漢",
        "-n",
        "1",
        "-o",
        "cat",
        "--output-fields",
        "actor,type",
    ]);
    assert_eq!(cat, "Žofie 漢字 USER_LOGGED_IN\n");
    // Tables fit the terminal, wide characters counted twice, and cut with `…`.
    for width in [60usize, 80, 200] {
        let table = ok_env(
            &[
                "query",
                "-d",
                d,
                "-o",
                "table",
                "--output-fields",
                "lsn,time,type,actor,ip",
            ],
            &[("COLUMNS", &width.to_string())],
        );
        for line in table.lines() {
            assert!(
                line.width() <= width,
                "{width}: {line:?} is {} wide",
                line.width()
            );
        }
        assert!(table.lines().count() == 74, "{table}");
        if width == 200 {
            assert!(table.contains("Žofie 漢字"), "{table}");
        }
    }
    // Colors: on a terminal unless NO_COLOR or --color never; --color always anywhere.
    let piped = ok(&["query", "-d", d, "-o", "table", "-n", "5"]);
    assert!(!piped.contains('\x1b'));
    let forced = ok(&[
        "query", "-d", d, "-o", "table", "-n", "5", "--color", "always",
    ]);
    assert!(forced.contains("\x1b[31m"), "{forced}");
    let on_a_terminal = |env: &[(&str, &str)], extra: &str| -> String {
        let cmd = format!(
            "{} query -d {d} -o table -n 5 {extra}",
            env!("CARGO_BIN_EXE_auditlog")
        );
        let o = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("AUDITLOG_NOW", NOW)
            .env_remove("NO_COLOR")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("`script` (util-linux) runs a command on a terminal");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(
        on_a_terminal(&[], "").contains("\x1b[31m"),
        "colored on a terminal"
    );
    assert!(
        !on_a_terminal(&[("NO_COLOR", "1")], "").contains("\x1b[31m"),
        "NO_COLOR"
    );
    assert!(
        !on_a_terminal(&[], "--color never").contains("\x1b[31m"),
        "--color never"
    );
}

#[test]
fn completions_and_man_pages_come_from_the_definition() {
    let bash = ok(&["completions", "bash"]);
    assert!(
        bash.contains("--cursor-file") && bash.contains("--output-fields"),
        "bash"
    );
    let zsh = ok(&["completions", "zsh"]);
    assert!(zsh.contains("#compdef auditlog"));
    let man = ok(&["man"]);
    assert!(
        man.contains(".TH auditlog") && man.contains("query"),
        "{man}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man1");
    ok(&["man", "--out-dir", dir.to_str().unwrap()]);
    let page = std::fs::read_to_string(dir.join("auditlog-query.1")).unwrap();
    // The command's own page, with its options and their help.
    assert!(page.contains(".TH auditlog-query 1"), "{page}");
    assert!(page.contains("\\-\\-cursor\\-file"), "{page}");
    assert!(
        page.contains("a cursor (the last LSN a run printed)"),
        "{page}"
    );
}

/// Cursor runs of `query` (and a follower stopped by SIGINT) while a writer
/// appends and segments are compacted: together they print every matching
/// LSN exactly once.
#[test]
fn cursors_have_no_gap_and_no_duplicate_across_a_writer_and_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap().to_string();
    let cursor = tmp.path().join("cursor");
    let c = cursor.to_str().unwrap().to_string();
    let opts = AuditOptions {
        log: Options::default()
            .segment_bytes(64 << 10)
            .record_bytes_max(4096)
            .durability(auditlog::Durability::Sync),
        catalog: Catalog::builtin("filetransfer-2.0"),
        ..AuditOptions::default()
    };
    let log = std::sync::Arc::new(AuditLog::open(&dir, opts).unwrap());
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut want = Vec::new();
            for i in 0..3000i64 {
                let (ty, sev) = TYPES[i as usize % 4];
                let mut e = Event::new(Timestamp(1_700_000_000_000_000_000 + i), ty, sev);
                e.actor = Some(ACTORS[i as usize % 3].into());
                let lsn = log.append(&e).unwrap();
                if ty.starts_with("USER_") {
                    want.push(lsn.0);
                }
                if i % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            want
        })
    };
    // The LSNs of USER_* events, with the cursor in `c`.
    let cursor_query: [&str; 11] = [
        "query",
        "-d",
        &d,
        "-t",
        "USER_*",
        "-o",
        "cat",
        "--output-fields",
        "lsn",
        "--cursor-file",
        &c,
    ];
    let query = |extra: &[&str]| -> Vec<u64> {
        let mut args = cursor_query.to_vec();
        args.extend_from_slice(extra);
        ok(&args).lines().map(|l| l.parse().unwrap()).collect()
    };
    let mut printed = Vec::new();
    let mut runs = 0;
    while !writer.is_finished() {
        printed.extend(query(&[]));
        runs += 1;
        if runs % 3 == 0 {
            log.log().compact().unwrap();
        }
        if runs % 4 == 0 {
            // A follower, stopped with SIGINT, carries on from the cursor too.
            let child = Command::new(env!("CARGO_BIN_EXE_auditlog"))
                .args(cursor_query)
                .arg("-f")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(150));
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let o = child.wait_with_output().unwrap();
            assert_eq!(
                o.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
            printed.extend(
                String::from_utf8(o.stdout)
                    .unwrap()
                    .lines()
                    .map(|l| l.parse::<u64>().unwrap()),
            );
        }
    }
    let want = writer.join().unwrap();
    log.log().compact().unwrap();
    printed.extend(query(&[]));
    assert!(
        runs >= 3,
        "the writer finished before the cursor runs could overlap it"
    );
    let unique: BTreeSet<u64> = printed.iter().copied().collect();
    assert_eq!(unique.len(), printed.len(), "an LSN was printed twice");
    assert_eq!(printed, want, "every matching LSN once, in order");
    // --after-lsn is the same cursor, given by hand.
    let after = want[want.len() - 3];
    let after = after.to_string();
    let mut args = cursor_query[..9].to_vec(); // all but --cursor-file
    args.extend(["--after-lsn", after.as_str()]);
    let tail = ok(&args);
    assert_eq!(tail.lines().count(), 2);
}

/// Imports: each record-level problem named and skippable, a byte-order
/// mark accepted, a JSON array explained, a stopped import resumed without
/// duplicates, a missing input creating nothing; OS errors said once.
#[test]
fn imports_name_each_problem_and_resume_without_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    let write = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let line = |i: u32, ty: &str| {
        format!("{{\"time\":\"2026-11-22T10:00:{i:02}Z\",\"type\":\"{ty}\",\"actor\":\"u{i}\"}}\n")
    };
    let import = |file: &str, extra: &[&str]| {
        let mut args = vec!["import", "-d", d, "--format", "jsonl", file];
        args.extend_from_slice(extra);
        run_env(&args, &[])
    };
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // A missing file creates nothing.
    let o = import(tmp.path().join("nope.jsonl").to_str().unwrap(), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("No such file"), "{}", stderr(&o));
    assert!(!dir.exists(), "a failed import left a log behind");

    // A byte-order mark is not data.
    let bom = write(
        "bom.jsonl",
        &format!("\u{feff}{}", line(1, "USER_LOGGED_IN")),
    );
    assert!(import(&bom, &[]).status.success());

    // A JSON array is explained.
    let array = write(
        "array.json",
        "[{\"time\":\"2026-11-22T10:00:00Z\",\"type\":\"USER_LOGGED_IN\"}]\n",
    );
    let o = import(&array, &[]);
    assert!(
        stderr(&o).contains("one JSON object per line"),
        "{}",
        stderr(&o)
    );

    // A mistyped type (no severity to go on) is named as such.
    let typo = write("typo.jsonl", &line(2, "USER_LOGED_IN"));
    let o = import(&typo, &[]);
    assert!(
        stderr(&o).contains("did you mean USER_LOGGED_IN"),
        "{}",
        stderr(&o)
    );

    // A stop in the middle says what is in and how to go on; going on adds
    // the rest and nothing twice.
    let mut text = String::new();
    for i in 10..15 {
        text.push_str(&line(i, "USER_LOGGED_IN"));
    }
    text.push_str("{not json\n");
    for i in 16..20 {
        text.push_str(&line(i, "USER_LOGGED_IN"));
    }
    let mid = write("mid.jsonl", &text);
    let o = import(&mid, &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("mid.jsonl:6: not JSON"), "{err}");
    assert!(
        err.contains("the 5 events before it are in the log (LSN"),
        "{err}"
    );
    assert!(err.contains("--from-line 6"), "{err}");
    std::fs::write(
        &mid,
        text.replace("{not json\n", &line(15, "USER_LOGGED_IN")),
    )
    .unwrap();
    assert!(import(&mid, &["--from-line", "6"]).status.success());
    let actors = ok(&["query", "-d", d, "-o", "cat", "--output-fields", "actor"]);
    let want: Vec<String> = [1]
        .into_iter()
        .chain(10..20)
        .map(|i| format!("u{i}"))
        .collect();
    assert_eq!(actors.lines().collect::<Vec<_>>(), want);

    // --skip-invalid goes past bad JSON, a bad field, an oversized record and,
    // with --strict, an unknown type, naming each.
    let big = format!(
        "{{\"time\":\"2026-11-22T11:00:00Z\",\"type\":\"USER_LOGGED_IN\",\"data\":\"{}\"}}\n",
        "x".repeat(2 << 20)
    );
    let mixed = write(
        "mixed.jsonl",
        &format!(
            "{}oops\n{}{{\"time\":\"2026-11-22T11:00:00Z\",\"type\":\"USER_LOGGED_IN\",\"ip\":\"1.2.3\"}}\n{big}{}",
            line(30, "USER_LOGGED_IN"),
            line(31, "CUSTOM_THING"),
            line(32, "ADMIN_LOGGED_IN")
        ),
    );
    let o = import(&mixed, &["--skip-invalid", "--strict"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    for (n, what) in [
        (2, "not JSON"),
        (3, "CUSTOM_THING"),
        (4, "field `ip`"),
        (5, "larger than"),
    ] {
        assert!(
            err.contains(&format!("mixed.jsonl:{n}: skipped")) && err.contains(what),
            "{n} {what}: {err}"
        );
    }
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("appended 2 events") && out.contains("skipped 4"),
        "{out}"
    );

    // An OS error says its cause once.
    let file = write("not-a-dir", "");
    let o = run_env(&["query", "-d", &format!("{file}/log"), "--count"], &[]);
    let err = stderr(&o);
    assert_eq!(err.matches("Not a directory").count(), 1, "{err}");
}

/// A count with a cursor counts what is new since the last run, once.
#[test]
fn a_count_with_a_cursor_counts_what_is_new() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    let cursor = tmp.path().join("cursor");
    let c = cursor.to_str().unwrap();
    let log = AuditLog::open(&dir, AuditOptions::default()).unwrap();
    let append = |n: i64| {
        for i in 0..n {
            log.append(&Event::new(Timestamp(i), "USER_LOGGED_IN", Severity::Info))
                .unwrap();
        }
    };
    append(5);
    let count = || {
        ok(&["query", "-d", d, "--count", "--cursor-file", c])
            .trim()
            .to_string()
    };
    assert_eq!(count(), "5");
    assert_eq!(count(), "0");
    append(3);
    assert_eq!(count(), "3");
    let o = run_env(
        &["query", "-d", d, "--group-by", "type", "--cursor-file", c],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "group-by does not take a cursor");
}
