//! The Parquet export: what is written reads back (with the parquet crate's
//! own record reader) as the same events, partitioned and sorted as said;
//! runs are incremental and exact across appends, compaction, retention,
//! stopped runs and SIGKILL; and DuckDB, a real lake engine, counts what
//! `auditlog query --count --group-by` counts.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use auditlog::catalog::ocsf;
use auditlog::{Event, Severity, Timestamp};
use auditlog_cli::lake::{self, LakeWriter, Layout};
use common::*;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use proptest::prelude::*;

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    lake::part_files(dir).unwrap()
}

fn text(f: &Field) -> Option<String> {
    match f {
        Field::Null => None,
        Field::Str(s) => Some(s.clone()),
        Field::Bytes(b) => Some(String::from_utf8(b.data().to_vec()).unwrap()),
        other => panic!("not text: {other:?}"),
    }
}

fn int(f: &Field) -> i64 {
    match f {
        Field::Int(i) => i64::from(*i),
        Field::Long(i) => *i,
        Field::TimestampMicros(i) => *i * 1000,
        Field::TimestampMillis(i) => *i * 1_000_000,
        other => panic!("not a number: {other:?}"),
    }
}

/// Every row of every file under `dir` as (lsn, event, file), the event
/// rebuilt from the flat columns; checks on the way that each file is
/// sorted by time, lies in its row's partition, and names its LSN range.
fn read_lake(dir: &Path) -> Vec<(u64, Event, PathBuf)> {
    let mut rows = Vec::new();
    for path in parquet_files(dir) {
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let kv: BTreeMap<String, String> = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .map(|k| (k.key.clone(), k.value.clone().unwrap()))
            .collect();
        let mut last_time = i64::MIN;
        let mut lsns = Vec::new();
        for row in reader.get_row_iter(None).unwrap() {
            let row = row.unwrap();
            let c: BTreeMap<&str, &Field> = row
                .get_column_iter()
                .map(|(k, v)| (k.as_str(), v))
                .collect();
            let time = int(c["time"]);
            assert!(time >= last_time, "{path:?} is sorted by time");
            last_time = time;
            let ty = text(c["auditlog_type"]).unwrap();
            let severity: Severity = text(c["metadata_log_level"]).unwrap().parse().unwrap();
            let mut e = Event::new(Timestamp(time), ty, severity);
            e.result = text(c["status_code"]).map(|r| r.parse().unwrap());
            e.source = text(c["metadata_log_provider"]);
            e.data = text(c["message"]);
            e.actor = text(c["actor_user_name"]);
            e.actor_id = text(c["actor_user_uid"]);
            e.actor_account = text(c["actor_user_account_name"]);
            e.account_id = text(c["actor_user_account_uid"]);
            e.session = text(c["actor_session_uid"]);
            e.ip = text(c["src_endpoint_ip"]).map(|s| s.parse().unwrap());
            e.entity_type = text(c["entity_type"]);
            e.entity_id = text(c["entity_uid"]);
            e.entity_name = text(c["entity_name"]);
            if let Some(a) = text(c["unmapped_attrs"]) {
                e.attrs = serde_json::from_str(&a).unwrap();
            }
            // The OCSF columns agree with the mapping.
            let m = ocsf::mapping(&e.event_type);
            assert_eq!(int(c["class_uid"]), i64::from(m.class_uid));
            assert_eq!(int(c["activity_id"]), i64::from(m.activity_id));
            assert_eq!(int(c["type_uid"]), m.type_uid() as i64);
            assert_eq!(int(c["severity_id"]), i64::from(ocsf::severity(severity).0));
            assert_eq!(int(c["status_id"]), i64::from(m.status.resolve(e.result).0));
            // And so do the captions and the class's columns.
            assert_eq!(int(c["category_uid"]), i64::from(m.category_uid()));
            assert_eq!(text(c["class_name"]).unwrap(), m.class_name);
            assert_eq!(text(c["category_name"]).unwrap(), m.category_name());
            assert_eq!(text(c["activity_name"]).unwrap(), m.activity_name);
            assert_eq!(text(c["type_name"]).unwrap(), m.type_name);
            assert_eq!(text(c["severity"]).unwrap(), ocsf::severity(severity).1);
            assert_eq!(text(c["status"]).unwrap(), m.status.resolve(e.result).1);
            // The file lies in its partition.
            let day = e.time.to_string()[..10].to_string();
            let p = path.to_string_lossy();
            assert!(p.contains(&format!("class_uid={}/", m.class_uid)), "{p}");
            assert!(p.contains(&format!("/day={day}/")), "{p} for {day}");
            let lsn = int(c["lsn"]) as u64;
            lsns.push(lsn);
            rows.push((lsn, e, path.clone()));
        }
        assert_eq!(
            kv["auditlog.first_lsn"],
            lsns.iter().min().unwrap().to_string()
        );
        assert_eq!(
            kv["auditlog.last_lsn"],
            lsns.iter().max().unwrap().to_string()
        );
        assert_eq!(kv["auditlog.rows"], lsns.len().to_string());
    }
    rows
}

fn arbitrary_event() -> impl Strategy<Value = Event> {
    let text = || proptest::option::of(any::<String>());
    (
        (
            proptest::sample::select(vec![
                "USER_LOGGED_IN",
                "FILE_ADDED",
                "USER/LOGIN",
                "EMAIL_SENT",
                "CONFIG_UPDATED",
                "MY_OWN_TYPE",
            ]),
            // Three days around a midnight, so rows split across partitions.
            1_795_000_000_000_000_000i64..1_795_259_200_000_000_000,
            0u8..6,
            text(),
            proptest::option::of(any::<std::net::IpAddr>()),
            text(),
        ),
        (
            text(),
            text(),
            text(),
            text(),
            proptest::option::of(any::<i64>()),
            proptest::collection::btree_map(any::<String>(), any::<String>(), 0..3),
            text(),
        ),
    )
        .prop_map(
            |(
                (ty, ns, sev, source, ip, actor),
                (account, session, eid, ename, result, attrs, data),
            )| {
                let mut e = Event::new(Timestamp(ns), ty, Severity::from_code(sev).unwrap());
                e.source = source;
                e.ip = ip;
                e.actor = actor;
                e.actor_account = account;
                e.session = session;
                e.entity_id = eid;
                e.entity_name = ename;
                e.result = result;
                e.attrs = attrs;
                e.data = data;
                e
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    #[test]
    fn parquet_reads_back_as_the_same_events(events in proptest::collection::vec(arbitrary_event(), 1..120)) {
        let dir = tempfile::tempdir().unwrap();
        let n = events.len() as u64;
        let mut w = LakeWriter::new(dir.path(), Layout::Hive, 7, None, n).unwrap();
        for (i, e) in events.iter().enumerate() {
            w.add(i as u64 + 1, &e.fields()).unwrap();
        }
        let summary = w.commit().unwrap();
        prop_assert_eq!(summary.events, n);
        prop_assert_eq!(summary.state.through_lsn, n);
        let mut back: Vec<(u64, Event)> = read_lake(dir.path()).into_iter().map(|(l, e, _)| (l, e)).collect();
        back.sort_by_key(|(l, _)| *l);
        let expected: Vec<(u64, Event)> = events.into_iter().enumerate().map(|(i, e)| (i as u64 + 1, e)).collect();
        prop_assert_eq!(back, expected);
        // No temporary or commit file is left.
        prop_assert!(!dir.path().join(lake::COMMIT_FILE).exists());
    }
}

#[test]
fn a_stopped_run_is_rolled_back_and_a_committed_one_forward() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Event> = auditlog_cli::workload::Workload {
        events: 3000,
        ..Default::default()
    }
    .generate()
    .collect();
    // A run that stops before its commit: its files are .tmp, and go.
    let mut w = LakeWriter::new(dir.path(), Layout::Hive, 7, None, 1000).unwrap();
    for (i, e) in events[..1000].iter().enumerate() {
        w.add(i as u64 + 1, &e.fields()).unwrap();
    }
    drop(w);
    assert!(parquet_files(dir.path()).is_empty());
    assert_eq!(lake::recover(dir.path()).unwrap(), None);
    // A committed run whose renames did not all happen: finished by the next.
    let mut w = LakeWriter::new(dir.path(), Layout::Hive, 7, None, 2000).unwrap();
    for (i, e) in events[..2000].iter().enumerate() {
        w.add(i as u64 + 1, &e.fields()).unwrap();
    }
    let s = w.commit().unwrap();
    let state = std::fs::read(dir.path().join(lake::STATE_FILE)).unwrap();
    // Undo the tail of the commit: the state file, and some renames.
    std::fs::remove_file(dir.path().join(lake::STATE_FILE)).unwrap();
    let commit = serde_json::json!({ "files": s.files, "state": s.state });
    std::fs::write(dir.path().join(lake::COMMIT_FILE), commit.to_string()).unwrap();
    for f in s.files.iter().step_by(2) {
        let p = dir.path().join(f);
        let mut t = p.clone().into_os_string();
        t.push(".tmp");
        std::fs::rename(&p, t).unwrap();
    }
    let again = lake::recover(dir.path()).unwrap().unwrap();
    assert_eq!(again, s.state);
    assert_eq!(
        std::fs::read(dir.path().join(lake::STATE_FILE)).unwrap(),
        state
    );
    let lsns: Vec<u64> = read_lake(dir.path()).iter().map(|r| r.0).collect();
    assert_eq!(lsns.len(), 2000);
    assert_eq!(lsns.iter().collect::<BTreeSet<_>>().len(), 2000);
    // A damaged or edited state or commit file is named, not followed.
    let d2 = tempfile::tempdir().unwrap();
    std::fs::write(d2.path().join(lake::STATE_FILE), b"{\"log_id\": 1").unwrap();
    let e = lake::recover(d2.path()).unwrap_err().to_string();
    assert!(
        e.contains(lake::STATE_FILE) && e.contains("not an export state"),
        "{e}"
    );
    std::fs::remove_file(d2.path().join(lake::STATE_FILE)).unwrap();
    let evil = serde_json::json!({ "files": ["../../etc/passwd"], "state": again_state(&s.state) });
    std::fs::write(d2.path().join(lake::COMMIT_FILE), evil.to_string()).unwrap();
    let e = lake::recover(d2.path()).unwrap_err().to_string();
    assert!(e.contains("not a part file"), "{e}");
    // Another log's export is not added to.
    let e = LakeWriter::new(dir.path(), Layout::Hive, 8, Some(again.clone()), 3000)
        .err()
        .unwrap();
    assert!(e.to_string().contains("another log"), "{e}");
    let e = LakeWriter::new(
        dir.path(),
        Layout::SecurityLake {
            source: "s".into(),
            region: "r".into(),
            account_id: "1".into(),
        },
        7,
        Some(again),
        3000,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("laid out"), "{e}");
}

fn again_state(s: &lake::LakeState) -> serde_json::Value {
    serde_json::to_value(s).unwrap()
}

/// Every LSN under `out`, with how many times each appears.
fn exported_lsns(out: &Path) -> BTreeMap<u64, usize> {
    let mut m = BTreeMap::new();
    for (l, _, _) in read_lake(out) {
        *m.entry(l).or_insert(0) += 1;
    }
    m
}

fn all_lsns(dir: &str) -> BTreeSet<u64> {
    ok(&[
        "query",
        "--dir",
        dir,
        "-o",
        "jsonl",
        "--output-fields",
        "lsn",
    ])
    .lines()
    .map(|l| {
        serde_json::from_str::<serde_json::Value>(l).unwrap()["lsn"]
            .as_u64()
            .unwrap()
    })
    .collect()
}

#[test]
fn incremental_runs_export_each_event_once_across_compaction_and_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let out = tmp.path().join("lake");
    let (d, o) = (log.to_str().unwrap(), out.to_str().unwrap());
    let (file, events) = events_file(tmp.path(), 100_000);
    // Small segments, so compaction and retention have several to work on.
    let half = tmp.path().join("half.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&half, lines[..50_000].join("\n") + "\n").unwrap();
    let rest = tmp.path().join("rest.jsonl");
    std::fs::write(&rest, lines[50_000..].join("\n") + "\n").unwrap();
    ok(&[
        "import",
        "--dir",
        d,
        "--format",
        "jsonl",
        "--segment-size",
        "2MiB",
        half.to_str().unwrap(),
    ]);
    ok(&["export", "--dir", d, "--format", "parquet", "--out", o]);
    let first = exported_lsns(&out);
    assert_eq!(first.len(), 50_000);
    let before: BTreeSet<u64> = all_lsns(d);
    assert_eq!(first.keys().copied().collect::<BTreeSet<_>>(), before);
    // The state file deleted: refused, saying where the files end; going
    // on from there with --after-lsn adds nothing twice.
    let state = std::fs::read(out.join(lake::STATE_FILE)).unwrap();
    std::fs::remove_file(out.join(lake::STATE_FILE)).unwrap();
    let o2 = auditlog(&["export", "--dir", d, "--format", "parquet", "--out", o]);
    assert!(!o2.status.success());
    let last = *first.keys().max().unwrap();
    assert!(
        stderr(&o2).contains(&format!("--after-lsn {last}")),
        "{}",
        stderr(&o2)
    );
    ok(&[
        "export",
        "--dir",
        d,
        "--format",
        "parquet",
        "--out",
        o,
        "--after-lsn",
        &last.to_string(),
    ]);
    assert_eq!(exported_lsns(&out), first);
    std::fs::write(out.join(lake::STATE_FILE), state).unwrap();
    // Nothing new: nothing written.
    let files = parquet_files(&out).len();
    ok(&["export", "--dir", d, "--format", "parquet", "--out", o]);
    assert_eq!(parquet_files(&out).len(), files);
    // More events, a compaction, and retention removing the oldest segments
    // (exported already).
    ok(&[
        "import",
        "--dir",
        d,
        "--format",
        "jsonl",
        rest.to_str().unwrap(),
    ]);
    ok(&["compact", "--dir", d]);
    let after_compact = all_lsns(d);
    ok(&["compact", "--dir", d, "--max-bytes", "1MiB"]);
    let kept = all_lsns(d);
    assert!(
        kept.len() < after_compact.len(),
        "retention removed something"
    );
    ok(&["export", "--dir", d, "--format", "parquet", "--out", o]);
    let second = exported_lsns(&out);
    assert!(second.values().all(|&n| n == 1), "each event once");
    // Every event, and the retention markers the compaction wrote.
    let markers: BTreeSet<u64> = all_lsns(d).difference(&after_compact).copied().collect();
    assert!(!markers.is_empty());
    assert_eq!(second.len(), events.len() + markers.len());
    let expected: BTreeSet<u64> = after_compact.union(&markers).copied().collect();
    assert_eq!(second.keys().copied().collect::<BTreeSet<_>>(), expected);
}

#[test]
fn a_killed_export_leaves_each_event_once_or_not_at_all() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let out = tmp.path().join("lake");
    let (d, o) = (log.to_str().unwrap(), out.to_str().unwrap());
    let (file, _) = events_file(tmp.path(), 150_000);
    import_jsonl(d, &file);
    let all = all_lsns(d);
    for delay_ms in [40u64, 300, 900, 1500] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_auditlog"))
            .args(["export", "--dir", d, "--format", "parquet", "--out", o])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        let now = exported_lsns(&out);
        assert!(
            now.values().all(|&n| n == 1),
            "each event at most once after a kill at {delay_ms} ms"
        );
        // A run after the kill finishes the job.
        ok(&["export", "--dir", d, "--format", "parquet", "--out", o]);
        let now = exported_lsns(&out);
        assert!(now.values().all(|&n| n == 1));
        assert_eq!(now.keys().copied().collect::<BTreeSet<_>>(), all);
        std::fs::remove_dir_all(&out).unwrap();
    }
}

/// The Python that has DuckDB: AUDITLOG_PYTHON (.ci/run sets it to its
/// virtual environment's, and then it must work), else `python3` if it can
/// import duckdb.
fn duckdb_python() -> Option<String> {
    // Named: it must work (a CI run that meant to have DuckDB fails here).
    if let Ok(py) = std::env::var("AUDITLOG_PYTHON") {
        let o = Command::new(&py).args(["-c", "import duckdb"]).output();
        assert!(
            o.as_ref().is_ok_and(|o| o.status.success()),
            "AUDITLOG_PYTHON={py} cannot import duckdb: {o:?}"
        );
        return Some(py);
    }
    Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success())
        .then(|| "python3".to_string())
}

fn duckdb(py: &str, sql: &str) -> Vec<(String, u64)> {
    let script = format!(
        "import duckdb, json\nrows = duckdb.connect().sql({sql:?}).fetchall()\nprint(json.dumps([[str(a), int(b)] for a, b in rows]))"
    );
    let o = Command::new(py).args(["-c", &script]).output().unwrap();
    assert!(
        o.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Vec<(String, u64)> = serde_json::from_slice(&o.stdout).unwrap();
    v
}

fn auditlog_counts(d: &str, by: &str) -> BTreeMap<String, u64> {
    // `COUNT<TAB>KEY` lines.
    let out = ok(&["query", "--dir", d, "--count", "--group-by", by]);
    out.lines()
        .map(|l| {
            let (n, key) = l.split_once('\t').expect("count and key");
            (key.to_string(), n.parse().unwrap())
        })
        .collect()
}

#[test]
fn duckdb_counts_what_auditlog_counts() {
    let Some(py) = duckdb_python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "DuckDB (python3 -m pip install duckdb) is required under CI: .ci/run installs it and sets AUDITLOG_PYTHON"
        );
        eprintln!("skipped: no Python with duckdb here (CI installs one)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let out = tmp.path().join("lake");
    let (d, o) = (log.to_str().unwrap(), out.to_str().unwrap());
    let (file, _) = events_file(tmp.path(), 200_000);
    import_jsonl(d, &file);
    ok(&["export", "--dir", d, "--format", "parquet", "--out", o]);
    let src = format!("read_parquet('{o}/**/*.parquet', hive_partitioning = true)");
    let by_type: BTreeMap<String, u64> = duckdb(
        &py,
        &format!("select auditlog_type, count(*) from {src} group by 1"),
    )
    .into_iter()
    .collect();
    assert_eq!(by_type, auditlog_counts(d, "type"));
    let by_day: BTreeMap<String, u64> =
        duckdb(&py, &format!("select day, count(*) from {src} group by 1"))
            .into_iter()
            .collect();
    assert_eq!(by_day, auditlog_counts(d, "day"));
    // Per class: auditlog's per-type counts summed through the mapping.
    let mut expected = BTreeMap::new();
    for (ty, n) in auditlog_counts(d, "type") {
        *expected
            .entry(ocsf::mapping(&ty).class_uid.to_string())
            .or_insert(0) += n;
    }
    let by_class: BTreeMap<String, u64> = duckdb(
        &py,
        &format!("select class_uid, count(*) from {src} group by 1"),
    )
    .into_iter()
    .collect();
    assert_eq!(by_class, expected);
    assert!(
        by_class.len() >= 5,
        "the demo workload spans several classes: {by_class:?}"
    );
}

/// Events of a MiB each: the text budget sends buffers out before rows
/// would, and every event reads back whole.
#[test]
fn large_events_are_written_within_the_text_budget_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let n = 80u64;
    let events: Vec<Event> = (0..n)
        .map(|i| {
            let mut e = Event::new(
                Timestamp(1_795_000_000_000_000_000 + i as i64),
                "FILE_ADDED",
                Severity::Info,
            );
            e.data = Some(format!("{i}:{}", "x".repeat(1 << 20)));
            e
        })
        .collect();
    let mut w = LakeWriter::new(dir.path(), Layout::Hive, 7, None, n).unwrap();
    for (i, e) in events.iter().enumerate() {
        w.add(i as u64 + 1, &e.fields()).unwrap();
    }
    let s = w.commit().unwrap();
    let row_groups: usize = s
        .files
        .iter()
        .map(|f| {
            let r = SerializedFileReader::new(File::open(dir.path().join(f)).unwrap()).unwrap();
            r.metadata().num_row_groups()
        })
        .sum();
    assert!(row_groups >= 2, "80 MiB of text is more than one buffer");
    let mut back: Vec<(u64, Event)> = read_lake(dir.path())
        .into_iter()
        .map(|(l, e, _)| (l, e))
        .collect();
    back.sort_by_key(|(l, _)| *l);
    let expected: Vec<(u64, Event)> = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| (i as u64 + 1, e))
        .collect();
    assert!(back == expected);
}

/// Two exports into one directory at once would both start from its state:
/// the second is refused while the first holds the lock.
#[test]
fn one_export_at_a_time_writes_into_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let out = tmp.path().join("lake");
    let (d, o) = (log.to_str().unwrap(), out.to_str().unwrap());
    let (file, events) = events_file(tmp.path(), 1_000);
    import_jsonl(d, &file);
    let held = lake::lock(&out).unwrap();
    let r = auditlog(&["export", "--dir", d, "--format", "parquet", "--out", o]);
    assert!(!r.status.success());
    assert!(
        stderr(&r).contains("another export is writing"),
        "{}",
        stderr(&r)
    );
    assert!(parquet_files(&out).is_empty());
    drop(held);
    ok(&["export", "--dir", d, "--format", "parquet", "--out", o]);
    assert_eq!(exported_lsns(&out).len(), events.len());
}
