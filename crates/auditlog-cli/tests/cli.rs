//! The `auditlog` tool driven as a user would, checked against answers
//! computed here from the same events.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use auditlog::event::json;
use auditlog::{Event, Severity};
use auditlog_cli::workload::{Workload, ATTACKER};

mod common;
use common::*;

#[test]
fn append_then_query_with_each_filter() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    let (file, events) = events_file(tmp.path(), 20_000);
    let out = ok(&[
        "append",
        "--dir",
        d,
        "--durability",
        "buffered",
        file.to_str().unwrap(),
    ]);
    // The log's catalog records (one per new type or key) come before the
    // first event that needs them, so a few LSNs of the range are theirs.
    let (a, b) = out
        .trim()
        .strip_prefix("appended 20000 events, LSN ")
        .and_then(|r| r.split_once("..="))
        .unwrap_or_else(|| panic!("{out}"));
    let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
    assert!(
        a > 1 && a < 100 && (20_000..20_100).contains(&(b - a + 1)),
        "{out}"
    );

    let check = |args: &[&str], keep: &dyn Fn(&Event) -> bool| {
        let mut full = vec!["query", "--dir", d, "--format", "jsonl"];
        full.extend_from_slice(args);
        let got = lines_as_events(&ok(&full));
        let want: Vec<Event> = events.iter().filter(|e| keep(e)).cloned().collect();
        assert!(!want.is_empty(), "{args:?} selects nothing: a weak test");
        assert_eq!(got, want, "query {args:?}");
    };
    check(&["--type", "USER_AUTH_FAILED_*"], &|e| {
        e.event_type.starts_with("USER_AUTH_FAILED_")
    });
    check(
        &["--type", "PACKAGE_QUARANTINED", "--type", "CONFIG_UPDATED"],
        &|e| e.event_type == "PACKAGE_QUARANTINED" || e.event_type == "CONFIG_UPDATED",
    );
    check(&["--min-severity", "warning"], &|e| {
        e.severity >= Severity::Warning
    });
    check(&["--max-severity", "Low"], &|e| {
        e.severity <= Severity::Info
    });
    let since = "2026-11-01T00:00:00Z".parse().unwrap();
    let until = "2026-11-02T12:00:00+02:00".parse().unwrap();
    check(
        &[
            "--since",
            "2026-11-01T00:00:00Z",
            "--until",
            "2026-11-02T12:00:00+02:00",
        ],
        &|e| e.time >= since && e.time <= until,
    );
    check(&["--actor", "user007"], &|e| {
        e.actor.as_deref() == Some("user007")
    });
    check(&["--ip", ATTACKER], &|e| {
        e.ip == Some(ATTACKER.parse().unwrap())
    });
    check(&["--ip", "10.0.1.0/24"], &|e| {
        e.ip.is_some_and(|ip| ip.to_string().starts_with("10.0.1."))
    });
    check(&["--source", "WEB_ADMIN"], &|e| {
        e.source.as_deref() == Some("WEB_ADMIN")
    });
    check(&["--entity-type", "PACKAGE"], &|e| {
        e.entity_type.as_deref() == Some("PACKAGE")
    });
    check(&["--failed"], &|e| e.result.is_some_and(|r| r != 0));
    let some_entity = events.iter().find_map(|e| e.entity_id.clone()).unwrap();
    check(&["--entity-id", &some_entity], &|e| {
        e.entity_id.as_deref() == Some(some_entity.as_str())
    });
    let some_session = events[100].session.clone().unwrap();
    check(&["--session", &some_session], &|e| {
        e.session.as_deref() == Some(some_session.as_str())
    });
    check(
        &[
            "--session",
            &some_session,
            "--type",
            "USER_LOGGED_*",
            "--max-severity",
            "notice",
        ],
        &|e| {
            e.session.as_deref() == Some(some_session.as_str())
                && e.event_type.starts_with("USER_LOGGED_")
                && e.severity <= Severity::Notice
        },
    );
    // An unknown type is an error that suggests, not an empty answer.
    let out = auditlog(&["query", "--dir", d, "--type", "USER_LOGED_IN"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did you mean USER_LOGGED_IN"), "{err}");
    // Case does not matter, and `*` goes anywhere.
    check(&["--type", "user_logged_in"], &|e| {
        e.event_type == "USER_LOGGED_IN"
    });
    check(&["--type", "*FAILED*"], &|e| {
        e.event_type.contains("FAILED")
    });

    // --count, --reverse, --limit, --group-by, csv.
    let failed = events.iter().filter(|e| e.result == Some(1)).count();
    assert_eq!(
        ok(&["query", "--dir", d, "--failed", "--count"]).trim(),
        failed.to_string()
    );
    let last3 = lines_as_events(&ok(&[
        "query",
        "--dir",
        d,
        "--reverse",
        "--limit",
        "3",
        "--format",
        "jsonl",
    ]));
    assert_eq!(
        last3,
        events.iter().rev().take(3).cloned().collect::<Vec<_>>()
    );
    let groups = ok(&[
        "query",
        "--dir",
        d,
        "--type",
        "USER_AUTH_FAILED_*",
        "--group-by",
        "ip",
    ]);
    assert!(
        groups
            .lines()
            .next()
            .unwrap()
            .ends_with(&format!("\t{ATTACKER}")),
        "{groups}"
    );
    // Groups in the output form asked for: JSON objects, CSV with a header.
    let json = ok(&[
        "query",
        "--dir",
        d,
        "--group-by",
        "day,severity",
        "-o",
        "jsonl",
    ]);
    let objects: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let total: u64 = objects.iter().map(|o| o["count"].as_u64().unwrap()).sum();
    assert_eq!(total, events.len() as u64);
    assert!(objects
        .iter()
        .all(|o| o["day"].is_string() && o["severity"].is_string()));
    let table = ok(&[
        "query",
        "--dir",
        d,
        "--group-by",
        "day,severity",
        "-o",
        "csv",
    ]);
    assert!(table.starts_with("day,severity,count\n"), "{table}");
    assert_eq!(table.lines().count(), objects.len() + 1);
    let csv = ok(&["query", "--dir", d, "--limit", "2", "--format", "csv"]);
    assert!(csv.starts_with("lsn,time,type,severity,"));
    assert_eq!(csv.lines().count(), 3);
    let csv = ok(&[
        "query",
        "--dir",
        d,
        "--type",
        "CONFIG_UPDATED",
        "--limit",
        "1",
        "--format",
        "csv",
    ]);
    assert!(
        csv.contains(r#""{""parameter"":""smtp.timeout."#),
        "attrs as a quoted JSON object: {csv}"
    );
    let table = ok(&["query", "--dir", d, "--limit", "1", "--format", "table"]);
    assert!(
        table.contains("SEVERITY") && !table.contains('\x1b'),
        "no colour when not a terminal"
    );
}

#[test]
fn bad_input_names_file_line_and_field_and_keeps_what_came_before() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("log");
    let d = d.to_str().unwrap();
    let good = r#"{"time":"2026-11-21T10:15:30Z","type":"USER_LOGGED_IN","actor":"alice"}"#;
    let bad = r#"{"time":"2026-11-21T10:15:30Z","type":"USER_LOGGED_IN","ip":"10.0.0.300"}"#;
    let file = tmp.path().join("in.jsonl");
    std::fs::write(&file, format!("{good}\n{good}\n{bad}\n{good}\n")).unwrap();
    let o = auditlog(&["append", "--dir", d, file.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("in.jsonl:3") && err.contains("`ip`"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one readable line: {err}");
    assert_eq!(
        ok(&["query", "--dir", d, "--count"]).trim(),
        "2",
        "the lines before stay, none after"
    );
    // Severity defaulted from the catalog.
    assert!(
        ok(&["query", "--dir", d, "--limit", "1", "--format", "jsonl"])
            .contains(r#""severity":"INFO""#)
    );

    let o = auditlog(&[
        "append",
        "--dir",
        d,
        "--skip-invalid",
        file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("in.jsonl:3: skipped"), "{}", stderr(&o));
    assert_eq!(ok(&["query", "--dir", d, "--count"]).trim(), "5");

    // An event too large for a record names its line.
    let big = format!(
        r#"{{"time":"2026-11-21T10:15:30Z","type":"USER_LOGGED_IN","data":"{}"}}"#,
        "x".repeat(1_100_000)
    );
    std::fs::write(&file, format!("{good}\n{big}\n")).unwrap();
    let o = auditlog(&["append", "--dir", d, file.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("in.jsonl:2") && stderr(&o).contains("larger than the maximum"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        ok(&["query", "--dir", d, "--count"]).trim(),
        "6",
        "the good line before it was appended"
    );

    // Unknown field, and strict catalogs.
    std::fs::write(
        &file,
        r#"{"time":"2026-11-21T10:15:30Z","type":"X","colour":"red"}"#,
    )
    .unwrap();
    let err = stderr(&auditlog(&["append", "--dir", d, file.to_str().unwrap()]));
    assert!(err.contains("colour"), "{err}");
    std::fs::write(
        &file,
        r#"{"time":"2026-11-21T10:15:30Z","type":"USER_LOGGED_INN","severity":"INFO"}"#,
    )
    .unwrap();
    let err = stderr(&auditlog(&[
        "append",
        "--dir",
        d,
        "--strict",
        file.to_str().unwrap(),
    ]));
    assert!(err.contains("did you mean USER_LOGGED_IN"), "{err}");

    // Read-only commands on a missing directory.
    let missing = tmp.path().join("nope");
    for cmd in ["query", "stats", "verify", "tail", "export --format jsonl"] {
        let mut args: Vec<&str> = cmd.split(' ').collect();
        args.extend(["--dir", missing.to_str().unwrap()]);
        let o = auditlog(&args);
        assert!(
            !o.status.success() && stderr(&o).contains("does not exist"),
            "{cmd}: {}",
            stderr(&o)
        );
    }
    let o = auditlog(&["query", "--dir", d, "--since", "last tuesday"]);
    assert!(
        !o.status.success() && stderr(&o).contains("--since"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn tail_follows_a_concurrent_append() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("log");
    let d = d.to_str().unwrap();
    let line = |i: u32| {
        format!(
            r#"{{"time":"2026-11-21T10:15:{:02}Z","type":"USER_LOGGED_IN","actor":"u{i}"}}"#,
            i % 60
        )
    };
    let file = tmp.path().join("in.jsonl");
    std::fs::write(&file, (0..5).map(line).collect::<Vec<_>>().join("\n")).unwrap();
    ok(&["append", "--dir", d, file.to_str().unwrap()]);
    let last2 = lines_as_events(&ok(&["tail", "--dir", d, "-n", "2", "--format", "jsonl"]));
    assert_eq!(
        last2
            .iter()
            .map(|e| e.actor.clone().unwrap())
            .collect::<Vec<_>>(),
        ["u3", "u4"]
    );

    let mut follower = Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .args(["tail", "--dir", d, "-n", "1", "-f", "--format", "jsonl"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines() {
            let _ = tx.send(l.unwrap());
        }
    });
    // The last existing event proves the follower is up before we append.
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("tail -f printed nothing");
    assert!(first.contains(r#""actor":"u4""#), "{first}");
    let mut w = Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .args(["append", "--dir", d])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(w.stdin.take().unwrap(), "{}", line(42)).unwrap();
    assert!(w.wait().unwrap().success());
    let got = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("tail -f did not print the new event");
    follower.kill().unwrap();
    follower.wait().unwrap();
    assert!(
        // LSN 1 is the catalog record of USER_LOGGED_IN, 2..=6 the first five.
        got.contains(r#""actor":"u42""#) && got.contains(r#""lsn":7"#),
        "{got}"
    );
}

#[test]
fn stats_verify_catalog_and_demo() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("demo");
    let d = d.to_str().unwrap();
    let out = ok(&["demo", "--dir", d, "--events", "20000"]);
    assert!(
        out.contains("Failed logins by address") && out.contains(ATTACKER),
        "{out}"
    );
    assert!(out.contains("answered in"));
    // Running it again replaces the earlier demo log.
    ok(&["demo", "--dir", d, "--events", "5000"]);
    let stats = ok(&["stats", "--dir", d]);
    assert!(stats.contains("events      5000"), "{stats}");
    // The demo writes as application 2.0, and every type it uses exists in 2.0.
    assert!(stats.contains("versions    5000 events written under a declared application version; 0 of a type outside"), "{stats}");
    assert!(stats.contains("USER_LOGGED_IN"));
    assert!(ok(&["verify", "--dir", d]).contains("ok"));

    // Damage makes verify fail and say where (in the active segment: the
    // demo compacted the sealed ones).
    let raw = raw_segment_files(Path::new(d));
    let name = raw.last().unwrap().clone();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(Path::new(d).join(&name))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xff; 8], 10_000).unwrap();
    let o = auditlog(&["verify", "--dir", d]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("DAMAGE") && stdout(&o).contains(&name),
        "{}",
        stdout(&o)
    );

    // A directory that is not a log is never removed by demo.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("precious.txt"), b"keep me").unwrap();
    assert!(
        !auditlog(&["demo", "--dir", other.to_str().unwrap(), "--events", "10"])
            .status
            .success()
    );
    assert!(other.join("precious.txt").exists());

    let list = ok(&["catalog", "list", "--catalog", "filetransfer-1.6"]);
    assert_eq!(list.lines().count(), 165);
    let show = ok(&[
        "catalog",
        "show",
        "ADFS_DELETED",
        "--catalog",
        "filetransfer-1.6",
    ]);
    assert!(
        show.contains("never occurs during application runtime"),
        "{show}"
    );
    let diff = ok(&["catalog", "diff", "filetransfer-1.6", "filetransfer-2.0"]);
    assert!(
        diff.contains("severity  PACKAGE_DOWNLOAD_UNAUTHORIZED_ACCESS: WARNING -> INFO"),
        "{diff}"
    );
    assert!(diff.contains("41 added, 0 removed"), "{diff}");
    let o = auditlog(&["catalog", "show", "USER_LOGGED_INN"]);
    assert!(!o.status.success() && stderr(&o).contains("USER_LOGGED_IN"));
}

/// `export --format F` then `import --format F` into a fresh log gives the same events.
/// Appends `events`, exports them in `format`, imports the export into a
/// new log: which must hold exactly `want` (what the format carries).
fn round_trip(tmp: &Path, format: &str, events: &[Event], want: &[Event]) {
    let src = tmp.join(format!("src-{format}"));
    let dst = tmp.join(format!("dst-{format}"));
    let file = tmp.join(format!("in-{format}.jsonl"));
    let mut f = std::fs::File::create(&file).unwrap();
    for e in events {
        writeln!(f, "{}", json::to_json(e, None)).unwrap();
    }
    ok(&[
        "append",
        "--dir",
        src.to_str().unwrap(),
        "--durability",
        "buffered",
        file.to_str().unwrap(),
    ]);
    let exported = ok(&["export", "--dir", src.to_str().unwrap(), "--format", format]);
    let out = tmp.join(format!("out.{format}"));
    std::fs::write(&out, &exported).unwrap();
    ok(&[
        "import",
        "--dir",
        dst.to_str().unwrap(),
        "--format",
        format,
        out.to_str().unwrap(),
    ]);
    let b = ok(&["query", "--dir", dst.to_str().unwrap(), "--format", "jsonl"]);
    let got = lines_as_events(&b);
    assert_eq!(got.len(), want.len(), "{format} round trip");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w, "{format} round trip");
    }
}

#[test]
fn export_then_import_gives_the_same_events_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let w = Workload {
        events: 3000,
        ..Workload::default()
    };
    let mut all: Vec<Event> = w.generate().collect();
    // Fields with every separator the formats use, quotes and line breaks.
    for (i, e) in all.iter_mut().enumerate().step_by(97) {
        e.actor = Some(format!("a|b,c=d\\e \"q\" '{i}'\nnext\tline\r"));
        e.entity_name = Some("x;y, \"z\"\n".into());
        e.data = Some("{\"k\": \"v,\\n\"}\nmore".into());
        e.attrs
            .insert("note".into(), "one\ntwo|three=four,five".into());
    }
    round_trip(tmp.path(), "jsonl", &all, &all);
    round_trip(tmp.path(), "csv", &all, &all);

    // SAP lines carry whole seconds, four severities, actor, entity and attributes.
    let sap: Vec<Event> = all
        .iter()
        .map(|e| {
            let severity = match e.severity {
                Severity::Debug => Severity::Info,
                Severity::Notice => Severity::Warning,
                s => s,
            };
            let mut s = Event::new(
                auditlog::Timestamp(e.time.unix_seconds() * 1_000_000_000),
                e.event_type.clone(),
                severity,
            );
            s.actor = e.actor.clone();
            s.entity_type = e.entity_type.clone();
            s.entity_id = e.entity_id.clone();
            s.entity_name = e.entity_name.clone();
            s.attrs = e.attrs.clone();
            s
        })
        .collect();
    round_trip(tmp.path(), "sap-ume", &all, &sap);

    // Netop rows: the type whole (it has no `/`), no entity type; no severity
    // (the catalog's default), address, account name, or attributes but
    // `environment`.
    let catalog = auditlog::Catalog::builtin("filetransfer-2.0").unwrap();
    let netop: Vec<Event> = all
        .iter()
        .map(|e| {
            let mut n = e.clone();
            n.entity_type = None;
            n.severity = catalog
                .get(&e.event_type)
                .map_or(Severity::Info, |t| t.severity);
            n.ip = None;
            n.actor_account = None;
            n.attrs.retain(|k, _| k == "environment");
            n
        })
        .collect();
    round_trip(tmp.path(), "netop-csv", &all, &netop);

    // A bad record names file, line and field.
    let bad = tmp.path().join("bad.sap");
    std::fs::write(&bad, "Feb 12, 2003 6:20:48 PM | Info | a | LOGIN.OK | USER = 1\nFeb 30, 2003 6:20:48 PM | Info | a | LOGIN.OK | USER = 1\n").unwrap();
    let d = tmp.path().join("badlog");
    let o = auditlog(&[
        "import",
        "--dir",
        d.to_str().unwrap(),
        "--format",
        "sap-ume",
        bad.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("bad.sap:2") && stderr(&o).contains("TimeStamp"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        ok(&["query", "--dir", d.to_str().unwrap(), "--count"]).trim(),
        "1"
    );
}

#[test]
fn garbage_input_never_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("log");
    let d = d.to_str().unwrap();
    let mut rng = auditlog_cli::workload::SplitMix64(7);
    // Random bytes, and real records with bytes flipped.
    let (file, _) = events_file(tmp.path(), 50);
    let real = std::fs::read(&file).unwrap();
    for round in 0..6 {
        let bytes: Vec<u8> = if round % 2 == 0 {
            (0..2000).map(|_| rng.next() as u8).collect()
        } else {
            let mut b = real.clone();
            for _ in 0..20 {
                let i = (rng.next() as usize) % b.len();
                b[i] = rng.next() as u8;
            }
            b
        };
        let input = tmp.path().join("garbage");
        std::fs::write(&input, &bytes).unwrap();
        let input = input.to_str().unwrap();
        for args in [
            vec!["append", "--dir", d, input],
            vec!["append", "--dir", d, "--skip-invalid", input],
            vec!["import", "--dir", d, "--format", "sap-ume", input],
            vec![
                "import",
                "--dir",
                d,
                "--format",
                "sap-ume",
                "--skip-invalid",
                input,
            ],
            vec!["import", "--dir", d, "--format", "netop-csv", input],
            vec![
                "import",
                "--dir",
                d,
                "--format",
                "netop-csv",
                "--skip-invalid",
                input,
            ],
        ] {
            let o = auditlog(&args);
            assert_ne!(
                o.status.code(),
                Some(101),
                "{args:?} panicked: {}",
                stderr(&o)
            );
            assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
            if !o.status.success() {
                let err = stderr(&o);
                assert!(
                    err.starts_with("auditlog: ") && err.trim().lines().count() == 1,
                    "{args:?}: {err}"
                );
            }
        }
    }
    // Whatever got in reads back and verifies.
    assert!(auditlog(&["verify", "--dir", d]).status.success());
    ok(&["query", "--dir", d, "--format", "jsonl"]);
}

#[test]
fn compact_stats_explain_and_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("demo");
    let d = d.to_str().unwrap();
    // 400,000 demo events fill segments that double from 64 KiB; the demo
    // compacts the sealed ones.
    let out = ok(&["demo", "--dir", d, "--events", "400000"]);
    assert!(out.contains("Compacted 9 sealed segments"), "{out}");
    assert!(out.contains("compressed blocks"), "{out}");
    // With no writer about, `compact` takes the active segment too.
    let out = ok(&["compact", "--dir", d]);
    assert!(out.contains("compacted 1 segments, 14"), "{out}");
    let raw = raw_segment_files(Path::new(d));
    assert_eq!(raw.len(), 1, "one small, empty raw segment: {raw:?}");
    assert_eq!(ok(&["compact", "--dir", d]).trim(), "nothing to compact");
    let stats = ok(&["stats", "--dir", d]);
    assert!(stats.contains("events      400000"), "{stats}");
    assert!(
        stats.contains("10 compacted") && stats.contains("bytes/event"),
        "{stats}"
    );

    let o = auditlog(&[
        "query",
        "--dir",
        d,
        "--type",
        "PACKAGE_QUARANTINED",
        "--count",
        "--explain",
    ]);
    assert!(o.status.success());
    let plan = stderr(&o);
    assert!(
        plan.contains("segment 1 compacted") && plan.contains("by type/severity index"),
        "{plan}"
    );
    // Counted from the postings: no block read.
    assert!(plan.contains("total: 0 of "), "{plan}");
    let n: u64 = stdout(&o).trim().parse().unwrap();
    let scanned = ok(&[
        "query",
        "--dir",
        d,
        "--count",
        "--type",
        "PACKAGE_QUARANTINED",
        "--reverse",
    ]);
    assert_eq!(scanned.trim().parse::<u64>().unwrap(), n);

    // Retention: a size without its unit is refused, and nothing changes.
    let files_before = std::fs::read_dir(d).unwrap().count();
    let bare = auditlog(&["compact", "--dir", d, "--max-bytes", "10"]);
    assert!(!bare.status.success());
    assert!(stderr(&bare).contains("has no unit"), "{}", stderr(&bare));
    assert_eq!(std::fs::read_dir(d).unwrap().count(), files_before);
    // A limit that the oldest segment's removal meets exactly.
    let size = |name: &str| std::fs::metadata(Path::new(d).join(name)).unwrap().len();
    let total: u64 = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg") || n.ends_with(".cseg"))
        .map(|n| size(&n))
        .sum();
    let limit = format!("{}B", total - size("00000000000000000001.cseg"));
    // A dry run lists what would go, and removes nothing.
    let dry = ok(&["compact", "--dir", d, "--max-bytes", &limit, "--dry-run"]);
    assert!(dry.contains("would remove segment 1 "), "{dry}");
    assert!(!dry.contains("segment 2"), "{dry}");
    assert!(Path::new(d).join("00000000000000000001.cseg").exists());
    // The real run removes what the dry run listed, and the trail says so.
    let out = ok(&["compact", "--dir", d, "--max-bytes", &limit]);
    assert!(out.contains("retention removed segment 1"), "{out}");
    assert!(!out.contains("segment 2"), "{out}");
    let marker = ok(&["query", "--dir", d, "--type", "AUDITLOG_RETENTION_APPLIED"]);
    assert!(
        marker.contains("\"entity_id\":\"1\"") && marker.contains("max_bytes="),
        "{marker}"
    );
    let bad = auditlog(&["compact", "--dir", d, "--max-age", "soon"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("--max-age"), "{}", stderr(&bad));
}

/// A small log stays small: a fresh one takes one 64 KiB segment, and after
/// `import` and `compact` the events take fewer bytes on disk, every file of
/// the directory counted, than the same events as zstd-compressed JSON lines
/// (here at 100,000 events; docs/BENCHMARKS.md has the figure at 300,000).
#[test]
fn a_small_log_after_compact_is_smaller_than_compressed_json_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    let (file, events) = common::events_file(tmp.path(), 100_000);
    let jsonl = std::fs::read(&file).unwrap();
    let zstd_len = zstd::encode_all(&jsonl[..], 3).unwrap().len() as u64;
    let dir_bytes = || -> u64 {
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let one = tmp.path().join("one.jsonl");
    std::fs::write(&one, format!("{}\n", json::to_json(&events[0], None))).unwrap();
    import_jsonl(d, &one);
    assert!(
        dir_bytes() < 80 << 10,
        "a fresh log takes {} bytes",
        dir_bytes()
    );
    import_jsonl(d, &file);
    ok(&["compact", "--dir", d]);
    let n: usize = ok(&["query", "--dir", d, "--count"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(n, events.len() + 1);
    let on_disk = dir_bytes();
    assert!(
        on_disk < zstd_len,
        "{on_disk} bytes on disk against {zstd_len} of zstd JSON lines"
    );
}

/// A closed standard output (`auditlog query … | head`) ends every command
/// quietly with status 0: no panic, no "Broken pipe" message.
#[test]
fn a_closed_pipe_ends_every_command_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    let (file, _) = common::events_file(tmp.path(), 5_000);
    import_jsonl(d, &file);
    let demo = tmp.path().join("demo");
    let demo = demo.to_str().unwrap();
    let commands: &[&[&str]] = &[
        &["query", "--dir", d, "--format", "jsonl"],
        &["query", "--dir", d, "--format", "csv"],
        &["query", "--dir", d, "-o", "table"],
        &["query", "--dir", d, "-o", "json-pretty"],
        &["query", "--dir", d, "-o", "cat"],
        &["query", "--dir", d, "-o", "short-iso", "-g", "user"],
        &["query", "--dir", d, "--group-by", "actor,ip"],
        &["tail", "--dir", d, "-n", "2000"],
        &["tail", "--dir", d, "-n", "2000", "-f"],
        &["query", "--dir", d, "-n", "2000", "-f"],
        &["export", "--dir", d, "--format", "jsonl"],
        &["export", "--dir", d, "--format", "csv"],
        &["export", "--dir", d, "--format", "sap-ume"],
        &["export", "--dir", d, "--format", "netop-csv"],
        &["stats", "--dir", d],
        &["verify", "--dir", d],
        &["catalog", "list"],
        &["catalog", "diff", "filetransfer-1.6", "filetransfer-2.0"],
        &["completions", "bash"],
        &["man"],
        &["--help"],
        &["demo", "--dir", demo, "--events", "20000"],
    ];
    for args in commands {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_auditlog"))
            .args(*args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Read a little, then close the pipe, as `head -c 100` would.
        let mut out = child.stdout.take().unwrap();
        let mut first = [0u8; 100];
        let _ = std::io::Read::read(&mut out, &mut first);
        drop(out);
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).is_empty(), "{args:?}: {}", stderr(&o));
    }
}

/// `--read-threads` (by default the cores, at most 4) shares a read's
/// compacted blocks among threads and changes nothing in what is printed:
/// queries, newest first, exports.
#[test]
fn read_threads_print_what_one_thread_prints() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    // 30,000 events compacted: dozens of 64 KiB blocks in a stripe.
    let (file, events) = events_file(tmp.path(), 30_000);
    import_jsonl(d, &file);
    ok(&["compact", "--dir", d]);
    for args in [
        &["query", "--dir", d, "--format", "jsonl"][..],
        &[
            "query",
            "--dir",
            d,
            "--format",
            "jsonl",
            "--min-severity",
            "warning",
        ],
        &["query", "--dir", d, "--format", "jsonl", "--reverse"],
        &["export", "--dir", d, "--format", "csv"],
    ] {
        let mut one_thread = vec!["--read-threads", "1"];
        one_thread.extend_from_slice(args);
        let one = ok(&one_thread);
        let mut more = vec!["--read-threads", "3"];
        more.extend_from_slice(args);
        assert_eq!(ok(&more), one, "{args:?}");
        assert_eq!(ok(args), one, "{args:?} with the default");
        assert!(!one.is_empty());
    }
    let all = ok(&[
        "--read-threads",
        "2",
        "query",
        "--dir",
        d,
        "--format",
        "jsonl",
    ]);
    assert_eq!(lines_as_events(&all).len(), events.len());
    assert_eq!(
        auditlog(&["--read-threads", "0", "query", "--dir", d])
            .status
            .code(),
        Some(2)
    );
}
