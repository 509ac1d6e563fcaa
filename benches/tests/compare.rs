//! `compare` runs end to end on a small workload, every engine answers the
//! audit questions alike, and bad arguments are refused.

use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_auditlog-bench"))
}

#[test]
fn compare_runs_every_engine_and_they_agree() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench()
        .args([
            "compare",
            "--events",
            "3000",
            "--durable-secs",
            "0.1",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for engine in ["auditlog", "sqlite", "jsonl", "walrus", "okaywal"] {
        assert!(text.contains(&format!(" {engine} |")), "{text}");
    }
    assert!(text.contains("| 1. buffered append"), "{text}");
    assert!(text.contains("**The machine, same run:**"), "{text}");
    // The three engines that answer queries gave the same answers (the run fails otherwise).
    let q1 = text.lines().find(|l| l.starts_with("- q1_answer")).unwrap();
    assert_eq!(q1.matches("q1").count(), 1, "{q1}");
    assert_eq!(q1.split("; ").count(), 3, "{q1}");
}

#[test]
fn engines_can_be_skipped_and_unknown_arguments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench()
        .args([
            "compare",
            "--events",
            "500",
            "--durable-secs",
            "0.05",
            "--skip-sqlite",
            "--skip-walrus",
            "--skip-okaywal",
            "--skip-jsonl",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("| measure | auditlog |\n"), "{text}");
    let bad = bench().args(["compare", "--frobnicate"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown argument --frobnicate"));
}
