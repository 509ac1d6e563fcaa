//! Sealing through the tool: keygen, sealed appends, anchor, and verify
//! with its own exit status for tampering (4).

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str], env: &[(&str, &str)], input: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_auditlog"));
    c.args(args)
        .env_remove("AUDITLOG_KEY")
        .env_remove("AUDITLOG_DIR");
    for (k, v) in env {
        c.env(k, v);
    }
    match input {
        Some(text) => {
            use std::io::Write;
            c.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = c.spawn().unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        }
        None => c.output().unwrap(),
    }
}

fn events(from: u32, n: u32) -> String {
    (from..from + n)
        .map(|i| format!("{{\"time\":\"2026-11-23T09:00:00Z\",\"type\":\"USER_LOGGED_IN\",\"actor\":\"u{i}\"}}\n"))
        .collect()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn keygen_seal_anchor_and_verify_through_the_tool() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    let o = run(&["keygen", "-d", d], &[], None);
    assert!(o.status.success(), "{}", text(&o));
    let public = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(public.starts_with("auditlog.log+"), "{public}");
    let pubfile = tmp.path().join("trusted.pub");
    std::fs::write(&pubfile, &public).unwrap();
    // A second keygen refuses: the log is sealed already.
    assert!(!run(&["keygen", "-d", d], &[], None).status.success());

    let o = run(
        &["append", "-d", d, "--durability", "buffered"],
        &[],
        Some(&events(0, 600)),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = run(
        &[
            "verify",
            "-d",
            d,
            "--pubkey",
            pubfile.to_str().unwrap(),
            "--require-sealed",
        ],
        &[],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("as signed"), "{}", text(&o));

    // An anchor, then the directory rolled back to an older copy.
    let older = tmp.path().join("older");
    copy_dir(&dir, &older);
    let o = run(
        &["append", "-d", d, "--durability", "buffered"],
        &[],
        Some(&events(600, 300)),
    );
    assert!(o.status.success(), "{}", text(&o));
    let anchor = run(&["anchor", "-d", d], &[], None);
    assert!(anchor.status.success(), "{}", text(&anchor));
    let anchor_file = tmp.path().join("anchor.txt");
    std::fs::write(&anchor_file, &anchor.stdout).unwrap();
    let o = run(
        &["verify", "-d", d, "--anchor", anchor_file.to_str().unwrap()],
        &[],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(
        &[
            "verify",
            "-d",
            older.to_str().unwrap(),
            "--anchor",
            anchor_file.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("TAMPERED") && text(&o).contains("records missing at the end"),
        "{}",
        text(&o)
    );

    // A proof of one event, checked without the log.
    let proof = run(&["prove", "-d", d, "--lsn", "100"], &[], None);
    assert!(proof.status.success(), "{}", text(&proof));
    let proof_file = tmp.path().join("proof.txt");
    std::fs::write(&proof_file, &proof.stdout).unwrap();
    let p = proof_file.to_str().unwrap();
    let o = run(
        &["verify-proof", p, "--pubkey", pubfile.to_str().unwrap()],
        &[],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("record LSN 100 is in log"),
        "{}",
        text(&o)
    );
    let forged = String::from_utf8(proof.stdout.clone())
        .unwrap()
        .replace("\"u", "\"x");
    std::fs::write(&proof_file, forged).unwrap();
    let o = run(
        &["verify-proof", p, "--pubkey", pubfile.to_str().unwrap()],
        &[],
        None,
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));

    // Another public key than the log's: its checkpoints do not verify.
    let other = tmp.path().join("other");
    assert!(run(&["keygen", "-d", other.to_str().unwrap()], &[], None)
        .status
        .success());
    let o = run(
        &[
            "verify",
            "-d",
            d,
            "--pubkey",
            other.join("PUBKEY").to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
}

#[test]
fn a_key_kept_elsewhere_is_needed_to_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    let key = tmp.path().join("secret.key");
    let k = key.to_str().unwrap();
    assert!(run(
        &["keygen", "-d", d, "--key", k, "--name", "ops.example"],
        &[],
        None
    )
    .status
    .success());
    assert!(!dir.join("KEY").exists());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let o = run(&["append", "-d", d], &[], Some(&events(0, 5)));
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no signing key was given"),
        "{}",
        text(&o)
    );
    let o = run(
        &["append", "-d", d],
        &[("AUDITLOG_KEY", k)],
        Some(&events(0, 5)),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["verify", "-d", d, "--require-sealed"], &[], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// A sealed log of 30,000 events in 2 MiB segments, written by the tool.
fn sealed_base(tmp: &Path) -> std::path::PathBuf {
    let base = tmp.join("base");
    let b = base.to_str().unwrap();
    assert!(run(&["keygen", "-d", b], &[], None).status.success());
    for from in [0, 10_000, 20_000] {
        let o = run(
            &[
                "append",
                "-d",
                b,
                "--durability",
                "buffered",
                "--segment-size",
                "2MiB",
            ],
            &[],
            Some(&events(from, 10_000)),
        );
        assert!(o.status.success(), "{}", text(&o));
    }
    base
}

/// The segment files of `d` with these extensions, sorted.
fn segment_files(d: &Path, exts: &[&str]) -> Vec<std::path::PathBuf> {
    let mut s: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| exts.iter().any(|e| x == *e)))
        .collect();
    s.sort();
    s
}

/// The newest segment deleted when it is the only raw one (the compactor
/// took the others): no segment holds the log's identity any more, only its
/// low 32 bits (compacted segments carry them). `verify` still names the
/// records missing at the end; it said the seal files "belong to another
/// log" and checked no checkpoint.
#[test]
fn the_only_raw_segment_deleted_is_told_as_records_missing_at_the_end() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    assert!(run(&["keygen", "-d", d], &[], None).status.success());
    let append = [
        "append",
        "-d",
        d,
        "--durability",
        "buffered",
        "--segment-size",
        "2MiB",
    ];
    for from in [0, 10_000] {
        let o = run(&append, &[], Some(&events(from, 10_000)));
        assert!(o.status.success(), "{}", text(&o));
    }
    // A writer kept open until its background compactor has taken every
    // sealed segment.
    let mut child = Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .args(append)
        .arg("-")
        .env_remove("AUDITLOG_KEY")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(events(20_000, 10_000).as_bytes()).unwrap();
    stdin.flush().unwrap();
    let start = std::time::Instant::now();
    while segment_files(&dir, &["seg"]).len() > 1 || segment_files(&dir, &["cseg"]).is_empty() {
        assert!(start.elapsed().as_secs() < 120, "the compactor did not run");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let raw = segment_files(&dir, &["seg"]);
    assert_eq!(raw.len(), 1, "{raw:?}");
    std::fs::remove_file(&raw[0]).unwrap();

    let o = run(&["verify", "-d", d], &[], None);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(out.contains("records missing at the end"), "{out}");
    assert!(
        out.contains("no raw segment is left to hold the log's identity"),
        "{out}"
    );
    assert!(!out.contains("belongs to another log"), "{out}");
}

/// The attacks of docs/TAMPER.md through the tool: each exits 4 and names
/// the LSNs; damage to a seal file exits 1.
#[test]
fn verify_exits_4_on_each_kind_of_tampering() {
    use auditlog::format::{frame, segment};
    let tmp = tempfile::tempdir().unwrap();
    let base = sealed_base(tmp.path());
    let segs = |d: &Path| segment_files(d, &["seg"]);
    let verify = |d: &Path| run(&["verify", "-d", d.to_str().unwrap()], &[], None);
    assert_eq!(
        verify(&base).status.code(),
        Some(0),
        "{}",
        text(&verify(&base))
    );

    // An event's actor changed in place, its frame CRC fixed up.
    let d = tmp.path().join("edited");
    copy_dir(&base, &d);
    let path = segs(&d).pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let mut at = segment::DATA_START;
    let mut frames = Vec::new();
    while let Ok(f) = frame::decode(&bytes, at, bytes.len() as u64, u32::MAX) {
        frames.push((at, f.lsn.0, f.payload.len()));
        at = f.next;
    }
    assert!(frames.len() > 100, "the active segment holds events");
    let (at, lsn, len) = frames[frames.len() - 50];
    let start = at as usize + frame::FRAME_HEADER_LEN;
    let payload = &mut bytes[start..start + len];
    let i = payload
        .windows(1)
        .rposition(|w| w[0].is_ascii_digit())
        .expect("the actor's number");
    payload[i] = if payload[i] == b'9' {
        b'8'
    } else {
        payload[i] + 1
    };
    let header = frame::encode_header(auditlog::Lsn(lsn), &bytes[start..start + len]);
    bytes[at as usize..at as usize + frame::FRAME_HEADER_LEN].copy_from_slice(&header);
    std::fs::write(&path, bytes).unwrap();
    let o = verify(&d);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let block = (lsn - 1) / 256 * 256 + 1;
    assert!(
        text(&o).contains("TAMPERED") && text(&o).contains(&format!("LSN {block}..=")),
        "{lsn}: {}",
        text(&o)
    );

    // The newest segment deleted.
    let d = tmp.path().join("deleted");
    copy_dir(&base, &d);
    std::fs::remove_file(segs(&d).pop().unwrap()).unwrap();
    let o = verify(&d);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("records missing at the end"),
        "{}",
        text(&o)
    );
    // Every segment deleted, compacted ones too (the compactor may have
    // taken some): the seal files are of a log that is not there.
    for s in segment_files(&d, &["seg", "cseg"]) {
        std::fs::remove_file(s).unwrap();
    }
    let o = verify(&d);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("not the ones it was sealed for"),
        "{}",
        text(&o)
    );

    // A seal file damaged: damage, not tampering.
    let d = tmp.path().join("damaged");
    copy_dir(&base, &d);
    let mut t = std::fs::read(d.join("TREE")).unwrap();
    let n = t.len();
    t[n - 10] ^= 1;
    std::fs::write(d.join("TREE"), t).unwrap();
    let o = verify(&d);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("DAMAGE") && !text(&o).contains("TAMPERED"),
        "{}",
        text(&o)
    );
}

/// The rest of docs/TAMPER.md's attacks through the tool, and what must
/// pass: compaction and retention, then verify.
#[test]
fn checkpoints_removed_altered_or_re_signed_exit_4_and_maintenance_does_not() {
    use auditlog::format::sealed_files as files;
    let tmp = tempfile::tempdir().unwrap();
    let base = sealed_base(tmp.path());
    let b = base.to_str().unwrap();
    let verify = |d: &Path| run(&["verify", "-d", d.to_str().unwrap()], &[], None);
    let log_id = |d: &Path| {
        let s = segment_files(d, &["seg", "cseg"]);
        let bytes = std::fs::read(s.last().unwrap()).unwrap();
        auditlog::format::segment::Header::decode(&bytes[..64])
            .unwrap()
            .log_id
    };
    let notes = |d: &Path| {
        let bytes = std::fs::read(d.join("CHECKPOINTS")).unwrap();
        files::decode_checkpoints(&bytes, log_id(d)).unwrap().0
    };
    let rewrite = |d: &Path, ns: &[String]| {
        let mut f = files::checkpoints_header(log_id(d));
        for n in ns {
            f.extend(files::checkpoint_entry(n));
        }
        std::fs::write(d.join("CHECKPOINTS"), f).unwrap();
    };
    let expect = |d: &Path, code: i32, says: &str| {
        let o = verify(d);
        assert_eq!(o.status.code(), Some(code), "{says}: {}", text(&o));
        assert!(text(&o).contains(says), "{says}: {}", text(&o));
    };

    // A checkpoint removed from CHECKPOINTS; one altered; all re-signed with another key.
    let d = tmp.path().join("removed");
    copy_dir(&base, &d);
    let mut ns = notes(&d);
    assert!(ns.len() >= 3, "{ns:?}");
    ns.remove(1);
    rewrite(&d, &ns);
    expect(&d, 4, "an entry was removed");
    let d = tmp.path().join("altered");
    copy_dir(&base, &d);
    let mut ns = notes(&d);
    ns[1] = ns[1].replacen('\n', "\n9", 1);
    rewrite(&d, &ns);
    expect(&d, 4, "signature does not verify");
    let d = tmp.path().join("re-signed");
    copy_dir(&base, &d);
    let other = auditlog::SealKey::from_seed("intruder", [9; 32]);
    std::fs::write(d.join("PUBKEY"), format!("{}\n", other.verifier())).unwrap();
    let ns: Vec<String> = notes(&d)
        .iter()
        .map(|n| other.sign_note(&auditlog::SignedNote::parse(n).unwrap().text))
        .collect();
    rewrite(&d, &ns);
    expect(&d, 4, "signature does not verify");

    // A log that says it is sealed but holds no checkpoint.
    let d = tmp.path().join("never-sealed");
    let o = run(
        &["append", "-d", d.to_str().unwrap()],
        &[],
        Some(&events(0, 50)),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = verify(&d);
    assert!(
        o.status.success() && text(&o).contains("not sealed"),
        "{}",
        text(&o)
    );
    std::fs::copy(base.join("PUBKEY"), d.join("PUBKEY")).unwrap();
    expect(&d, 4, "holds no checkpoint");

    // Compaction and retention through the tool, then verify: ok.
    let o = run(&["compact", "-d", b, "--max-bytes", "20KiB"], &[], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("removed segment"),
        "retention removed something: {}",
        text(&o)
    );
    expect(&base, 0, "as signed");
}
