//! The real binary against real operating-system faults (issue 9), beyond
//! what the simulated file system expresses: a full disk (a small tmpfs) and
//! a failing `fdatasync` (an `LD_PRELOAD` shim built here with `cc`).
//!
//! Mounting needs root (CI runs as root): a test that cannot mount a tmpfs
//! says so on standard error and passes without running.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::*;

/// A tmpfs of `mib` MiB mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Option<Tmpfs> {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "NOT RUN: cannot mount a tmpfs here (needs root); this full-disk test did not run"
            );
            return None;
        }
        Some(Tmpfs {
            dir,
            _parent: parent,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// "… N events up to FILE:LINE are in the log (LSN A..=B); nothing from line L on …"
fn committed(err: &str) -> (u64, u64) {
    let n = err
        .split(" events up to ")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no count of what is in: {err}"));
    let line = err
        .split("nothing from line ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no line of what is not: {err}"));
    (n, line)
}

#[test]
fn a_full_disk_says_exactly_which_records_are_in_and_the_log_still_opens() {
    let Some(fs) = Tmpfs::mount(5) else { return };
    let scratch = tempfile::tempdir().unwrap();
    // Well over what 5 MiB holds (about 65 bytes an event in segments of up to 2 MiB).
    let (file, events) = events_file(scratch.path(), 150_000);
    let dir = fs.dir.join("log");
    let d = dir.to_str().unwrap();
    let o = auditlog(&[
        "import",
        "--dir",
        d,
        "--format",
        "jsonl",
        "--segment-size",
        "2MiB",
        file.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "the import fit on a 5 MiB disk? {} {err}",
        common::stdout(&o)
    );
    assert!(err.contains("no space left"), "{err}");
    let (n, next_line) = committed(&err);
    assert!(n > 0 && (n as usize) < events.len(), "{err}");
    // Exactly the events it says are in, and the next line is the first that is not.
    assert_eq!(ok(&["query", "--dir", d, "--count"]).trim(), n.to_string());
    assert_eq!(next_line, n + 1, "{err}");
    let last = lines_as_events(&ok(&["tail", "--dir", d, "-n", "1", "--format", "jsonl"]));
    assert_eq!(last, [events[n as usize - 1].clone()]);
    assert!(ok(&["verify", "--dir", d]).contains("ok"));
}

const SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Fails fsync and fdatasync of any file whose path holds $AUDITLOG_SHIM_FAIL. */
static int should_fail(int fd) {
    const char *pat = getenv("AUDITLOG_SHIM_FAIL");
    char link[64], path[4096];
    if (!pat) return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return 0;
    path[n] = 0;
    return strstr(path, pat) != NULL;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (should_fail(fd)) { errno = EIO; return -1; }
    return real(fd);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (should_fail(fd)) { errno = EIO; return -1; }
    return real(fd);
}

/* Whether the mapping holding addr is of a file whose path holds pat. */
static int mapped_path_holds(void *addr, const char *pat) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4352];
    int hit = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) != 2) continue;
        if ((unsigned long)addr >= lo && (unsigned long)addr < hi) {
            hit = strstr(line, pat) != NULL;
            break;
        }
    }
    fclose(f);
    return hit;
}

/* Fails msync of a mapping of a file whose path holds $AUDITLOG_SHIM_MSYNC,
   once $AUDITLOG_SHIM_MSYNC_AFTER such calls have succeeded. */
int msync(void *addr, size_t len, int flags) {
    static int (*real)(void *, size_t, int);
    static long seen;
    const char *pat = getenv("AUDITLOG_SHIM_MSYNC");
    if (!real) real = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "msync");
    if (pat && mapped_path_holds(addr, pat)) {
        const char *after = getenv("AUDITLOG_SHIM_MSYNC_AFTER");
        if (__atomic_fetch_add(&seen, 1, __ATOMIC_SEQ_CST) >= (after ? atol(after) : 0)) {
            errno = EIO;
            return -1;
        }
    }
    return real(addr, len, flags);
}
"#;

fn build_shim(dir: &Path) -> PathBuf {
    let src = dir.join("shim.c");
    let lib = dir.join("libfailsync.so");
    std::fs::write(&src, SHIM).unwrap();
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .status()
        .expect("cc is needed to build the fdatasync shim");
    assert!(built.success());
    lib
}

/// One transient `fdatasync` EIO on CATALOG: the append fails, says so, and
/// reports no success; the log opens afterwards with every name intact.
#[test]
fn a_failed_fdatasync_of_catalog_poisons_the_append_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = build_shim(tmp.path());
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    let (file, events) = events_file(tmp.path(), 2_000);
    import_jsonl(d, &file);
    let line =
        r#"{"time":"2026-11-23T09:00:00Z","type":"BRAND_NEW_TYPE","severity":"INFO","actor":"x"}"#;
    let input = tmp.path().join("new.jsonl");
    std::fs::write(&input, format!("{line}\n")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .args(["append", "--dir", d, input.to_str().unwrap()])
        .env("LD_PRELOAD", &lib)
        .env("AUDITLOG_SHIM_FAIL", "CATALOG")
        .output()
        .unwrap();
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(!o.status.success(), "{out}{err}");
    assert!(
        err.contains("Input/output error") || err.contains("os error 5"),
        "{err}"
    );
    assert!(!out.contains("appended 1 event"), "{out}");
    // Without the fault: the log opens, the old events keep their names, and
    // the new type is either wholly there or not at all.
    let all = lines_as_events(&ok(&["query", "--dir", d, "--format", "jsonl"]));
    assert_eq!(&all[..events.len()], &events[..]);
    assert!(all.len() <= events.len() + 1);
    assert!(ok(&["verify", "--dir", d]).contains("ok"));
    // And appends work again, with no type given two ids.
    ok(&["append", "--dir", d, input.to_str().unwrap()]);
    let again = lines_as_events(&ok(&[
        "query",
        "--dir",
        d,
        "--type",
        "BRAND_NEW_TYPE",
        "--format",
        "jsonl",
    ]));
    assert!(!again.is_empty() && again.iter().all(|e| e.actor.as_deref() == Some("x")));
    assert!(ok(&["verify", "--dir", d]).contains("ok"));
}

/// A failing `msync` of a segment (the shim, counting: the first few
/// succeed): `import` stops with the I/O error and says exactly which
/// events are in the log and which of them are not known to be durable, and
/// every word of it holds when the log is opened again. Before, it said
/// "nothing from line L on was appended" of events that were written (and
/// a rerun from there duplicated them).
#[test]
fn a_failed_msync_of_a_segment_says_exactly_what_is_in_and_what_is_not_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = build_shim(tmp.path());
    let (file, events) = events_file(tmp.path(), 60_000);
    let mut not_durable_said = 0;
    for (durability, after) in [("sync", 3), ("sync", 20), ("buffered", 3), ("buffered", 8)] {
        let dir = tmp.path().join(format!("log-{durability}-{after}"));
        let d = dir.to_str().unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_auditlog"))
            .args([
                "import",
                "--dir",
                d,
                "--format",
                "jsonl",
                "--segment-size",
                "2MiB",
            ])
            .args(["--durability", durability])
            .arg(&file)
            .env("LD_PRELOAD", &lib)
            .env("AUDITLOG_SHIM_MSYNC", ".seg")
            .env("AUDITLOG_SHIM_MSYNC_AFTER", after.to_string())
            .output()
            .unwrap();
        let err = stderr(&o);
        let case = format!("{durability}, {after} syncs: {err}");
        assert!(!o.status.success(), "{case}");
        assert!(err.contains("Input/output error"), "{case}");
        // What it says is in (all of it, if only the final sync failed).
        let n = if err.contains(" events up to ") {
            let (n, next_line) = committed(&err);
            assert_eq!(next_line, n + 1, "{case}");
            n
        } else if err.contains("nothing from line 1 on was appended") {
            0
        } else {
            assert!(
                err.contains("sync failed: the events appended from"),
                "{case}"
            );
            events.len() as u64
        };
        let count: u64 = ok(&["query", "--dir", d, "--count"])
            .trim()
            .parse()
            .unwrap();
        assert_eq!(count, n, "{case}");
        if n > 0 {
            let all = lines_as_events(&ok(&["query", "--dir", d, "--format", "jsonl"]));
            assert_eq!(all[..], events[..n as usize], "{case}");
        }
        // "… from FILE:LINE on (LSN A..=B) … not known to be durable": a
        // line among those in, up to the last one in.
        if let Some(rest) = err.split(" on (LSN ").nth(1) {
            assert!(err.contains("not known to be durable"), "{case}");
            let from_line: u64 = err
                .split(" from ")
                .find_map(|s| {
                    s.split(" on (LSN ")
                        .next()?
                        .rsplit(':')
                        .next()?
                        .parse()
                        .ok()
                })
                .unwrap_or_else(|| panic!("no line: {case}"));
            assert!(from_line >= 1 && from_line <= n, "{case}");
            let b: u64 = rest
                .split(')')
                .next()
                .and_then(|r| r.split("..=").nth(1))
                .and_then(|b| b.parse().ok())
                .unwrap_or_else(|| panic!("no LSN range: {case}"));
            let last = ok(&["tail", "--dir", d, "-n", "1", "--format", "jsonl"]);
            assert!(last.contains(&format!("\"lsn\":{b},")), "{case}\n{last}");
            not_durable_said += 1;
        }
        assert!(ok(&["verify", "--dir", d]).contains("ok"), "{case}");
    }
    // A sync that failed under an append leaves written events that are
    // not durable: at least one run must have said so.
    assert!(not_durable_said > 0, "no run said what is not durable");
}

/// Writes zeros into `path` until the file system is full.
fn fill_up(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

/// `compact --max-bytes` on a full disk: compaction cannot write, so
/// retention frees space first, compaction then goes through, and the
/// removals' markers are written once there is room.
#[test]
fn retention_frees_space_on_a_full_disk() {
    use auditlog::{AuditLog, AuditOptions, Compaction, Durability, Options};
    let Some(fs) = Tmpfs::mount(14) else { return };
    let dir = fs.dir.join("log");
    let d = dir.to_str().unwrap();
    let events = auditlog_cli::workload::Workload {
        events: 400_000,
        ..Default::default()
    };
    let mut events = events.generate();
    // Written through the library with compaction by hand, so that what is
    // compacted when is not left to a background thread's timing.
    let opts = || AuditOptions {
        log: Options::default()
            .segment_bytes(2 << 20)
            .durability(Durability::Buffered)
            .compaction(Compaction::Manual),
        ..AuditOptions::default()
    };
    let mut append = |log: &AuditLog, n: usize| -> Result<(), auditlog::Error> {
        for e in events.by_ref().take(n) {
            log.append(&e)?;
        }
        Ok(())
    };
    {
        let log = AuditLog::open(&dir, opts()).unwrap();
        // Segments double from 64 KiB up to 2 MiB: 1 to 6 sealed (4 MiB).
        append(&log, 70_000).unwrap();
        log.log().compact().unwrap();
        append(&log, 45_000).unwrap(); // two more 2 MiB ones sealed
        assert!(log.log().raw_segments().len() >= 3);
    }
    // The disk fills up; then the tail fills, and no next segment fits.
    fill_up(&fs.dir.join("filler"));
    {
        let log = AuditLog::open(&dir, opts()).unwrap();
        let full = append(&log, 100_000).unwrap_err();
        assert!(
            matches!(full, auditlog::Error::StorageFull { .. }),
            "{full}"
        );
    }
    // A spare the failed rollover gave up freed its blocks: full again.
    fill_up(&fs.dir.join("filler-2"));
    let before: u64 = ok(&["query", "--dir", d, "--count"])
        .trim()
        .parse()
        .unwrap();

    let o = auditlog(&["compact", "--dir", d, "--max-bytes", "1MiB"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.contains("the disk is full: applying retention"),
        "{out}"
    );
    assert!(out.contains("retention removed segment 1 "), "{out}");
    // Every removal is recorded in the log, once there was room for it.
    let markers = ok(&[
        "query",
        "--dir",
        d,
        "--type",
        "AUDITLOG_RETENTION_APPLIED",
        "--count",
    ]);
    assert_eq!(
        markers.trim(),
        out.matches("retention removed").count().to_string(),
        "{out}"
    );
    // Each removal is said to be recorded, at once or (owed while the
    // disk was full) once it is.
    assert!(
        out.contains("the removal of segment 1 is recorded as LSN")
            || out
                .lines()
                .any(|l| l.starts_with("retention removed segment 1 ")
                    && l.contains("recorded as LSN")),
        "{out}"
    );
    assert!(ok(&["verify", "--dir", d]).contains("ok"));
    let after: u64 = ok(&["query", "--dir", d, "--count"])
        .trim()
        .parse()
        .unwrap();
    assert!(after < before, "{before} -> {after}");
}

/// Rows in the Parquet files under `dir` (from their footers), and the
/// state file's count: what an export directory holds.
fn lake_rows(dir: &Path) -> (u64, Option<u64>) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let rows = auditlog_cli::lake::part_files(dir)
        .unwrap()
        .iter()
        .map(|p| {
            let r = SerializedFileReader::new(std::fs::File::open(p).unwrap()).unwrap();
            r.metadata().file_metadata().num_rows() as u64
        })
        .sum();
    let state = std::fs::read(dir.join(auditlog_cli::lake::STATE_FILE))
        .ok()
        .map(|b| {
            serde_json::from_slice::<serde_json::Value>(&b).unwrap()["events"]
                .as_u64()
                .unwrap()
        });
    (rows, state)
}

/// A Parquet export onto a full disk fails naming the file and the cause,
/// counts nothing, and once there is room the next run exports every event
/// exactly once.
#[test]
fn an_export_onto_a_full_disk_fails_counts_nothing_and_the_next_run_is_exact() {
    let Some(fs) = Tmpfs::mount(3) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    let (file, events) = events_file(tmp.path(), 100_000);
    import_jsonl(d, &file);
    let out = fs.dir.join("lake");
    let filler = fs.dir.join("filler");
    fill_up(&filler);
    // Leave a little room: some files get written, the run cannot finish.
    let len = std::fs::metadata(&filler).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(len.saturating_sub(300 << 10))
        .unwrap();
    let o = auditlog(&[
        "export",
        "--dir",
        d,
        "--format",
        "parquet",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("No space left") || err.contains("os error 28"),
        "{err}"
    );
    assert!(
        err.contains(out.to_str().unwrap()),
        "the error names where: {err}"
    );
    std::fs::remove_file(&filler).unwrap();
    ok(&[
        "export",
        "--dir",
        d,
        "--format",
        "parquet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        lake_rows(&out),
        (events.len() as u64, Some(events.len() as u64))
    );
}

/// A failing fsync of the export's files: the run fails saying so and
/// commits nothing; without the fault, the next run is exact.
#[test]
fn a_failed_fsync_of_an_export_commits_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = build_shim(tmp.path());
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    let (file, events) = events_file(tmp.path(), 20_000);
    import_jsonl(d, &file);
    let out = tmp.path().join("lake");
    let o = Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .args([
            "export",
            "--dir",
            d,
            "--format",
            "parquet",
            "--out",
            out.to_str().unwrap(),
        ])
        .env("LD_PRELOAD", &lib)
        .env("AUDITLOG_SHIM_FAIL", ".parquet.tmp")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("Input/output error") || err.contains("os error 5"),
        "{err}"
    );
    assert_eq!(lake_rows(&out), (0, None), "nothing counts");
    ok(&[
        "export",
        "--dir",
        d,
        "--format",
        "parquet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        lake_rows(&out),
        (events.len() as u64, Some(events.len() as u64))
    );
}
