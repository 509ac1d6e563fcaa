//! Tamper evidence (docs/TAMPER.md): a sealed log verifies; edits, cuts,
//! deletions, rollbacks and re-signing are each found and named; retention,
//! compaction and a crash are not mistaken for them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use auditlog::format::{frame, segment};
use auditlog::{
    AuditLog, AuditOptions, Catalog, Compaction, Durability, Event, Log, Lsn, Options, SealCheck,
    SealKey, Severity, Timestamp,
};

fn key() -> SealKey {
    SealKey::from_seed("audit.test", [42; 32])
}

fn opts(key: Option<SealKey>) -> AuditOptions {
    AuditOptions {
        log: Options::default()
            .segment_bytes(256 << 10)
            .record_bytes_max(16 << 10)
            .durability(Durability::Buffered)
            .compaction(Compaction::Manual),
        catalog: Catalog::builtin("filetransfer-2.0"),
        seal_key: key,
        ..AuditOptions::default()
    }
}

fn event(i: u64) -> Event {
    let mut e = Event::new(
        Timestamp(1_700_000_000_000_000_000 + i as i64),
        "USER_LOGGED_IN",
        Severity::Info,
    );
    e.actor = Some(format!("user{}", i % 17));
    e.ip = Some(format!("10.0.{}.{}", i % 7, i % 250).parse().unwrap());
    e
}

/// A sealed log of `n` events, closed (its last round sealed everything).
fn sealed_log(dir: &Path, n: u64) {
    let log = AuditLog::open(dir, opts(Some(key()))).unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<Event> = chunk.iter().map(|&i| event(i)).collect();
        log.append_batch(&batch).unwrap();
        log.log().sync().unwrap();
        let st = log.seal_now().unwrap();
        assert!(st.error.is_none(), "{st:?}");
    }
}

/// The log in `dir`, opened read-only beside whatever writes it.
fn reader(dir: &Path) -> AuditLog {
    let o = AuditOptions {
        log: Options::default().read_only(true),
        ..opts(None)
    };
    AuditLog::open(dir, o).unwrap()
}

fn check(dir: &Path, c: &SealCheck) -> auditlog::TamperReport {
    let log = reader(dir);
    log.verify_seal(c).unwrap()
}

#[test]
fn a_sealed_log_verifies_and_its_root_agrees_with_an_independent_tree() {
    let dir = tempfile::tempdir().unwrap();
    sealed_log(dir.path(), 3000);
    let r = check(dir.path(), &SealCheck::default());
    assert!(!r.is_tampered(), "{r:#?}");
    assert!(r.checkpoints >= 6, "{r:#?}");
    let log = reader(dir.path());
    let end = log.log().next_lsn().0 - 1;
    assert!(
        r.sealed + 1 >= end,
        "all but the last checkpoint record is sealed: {r:#?} end {end}"
    );
    assert!(
        r.unsealed.is_none_or(|(_, _, events)| events == 0),
        "{r:#?}"
    );

    // The root of the newest checkpoint, recomputed with ct-merkle.
    let mut t = ct_merkle::mem_backed_tree::MemoryBackedTree::<sha2::Sha256, Vec<u8>>::new();
    for rec in log.log().iter(..=auditlog::Lsn(r.sealed)) {
        let rec = rec.unwrap();
        let mut leaf = rec.lsn().0.to_be_bytes().to_vec();
        leaf.extend_from_slice(rec.payload());
        t.push(leaf);
    }
    let newest = checkpoints(dir.path())
        .into_iter()
        .max_by_key(|c| c.size)
        .unwrap();
    assert_eq!(newest.size, r.sealed);
    assert_eq!(t.root().as_bytes().as_slice(), newest.root.as_slice());
}

/// The checkpoint a signed note holds.
fn checkpoint_of(note: &str) -> auditlog::Checkpoint {
    auditlog::Checkpoint::from_body(&auditlog::SignedNote::parse(note).unwrap().text).unwrap()
}

/// The checkpoints in the log's `CHECKPOINTS`, in order.
fn checkpoints(dir: &Path) -> Vec<auditlog::Checkpoint> {
    let bytes = std::fs::read(dir.join("CHECKPOINTS")).unwrap();
    let (notes, _) =
        auditlog::format::sealed_files::decode_checkpoints(&bytes, log_id(dir)).unwrap();
    notes.iter().map(|n| checkpoint_of(n)).collect()
}

/// The log id, from the first segment's header (bytes 16..32).
fn log_id(dir: &Path) -> u128 {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    let h =
        auditlog::format::segment::Header::decode(&std::fs::read(&segs[0]).unwrap()[..64]).unwrap();
    h.log_id
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs
}

/// The frames of a raw segment file: (offset, LSN, payload range).
fn frames(bytes: &[u8]) -> Vec<(u64, u64, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut at = segment::DATA_START;
    while let Ok(f) = frame::decode(bytes, at, bytes.len() as u64, u32::MAX) {
        let start = at as usize + frame::FRAME_HEADER_LEN;
        out.push((at, f.lsn.0, start..start + f.payload.len()));
        at = f.next;
    }
    out
}

/// Changes the actor of the event at the `back`-th frame from the end of
/// the active segment (`userN` → `userM`), fixing the frame's CRC up as an
/// attacker would. The LSN changed.
fn edit_active(dir: &Path, back: usize) -> u64 {
    let path = segments(dir).pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let fs = frames(&bytes);
    let (at, lsn, range) = fs
        .iter()
        .rev()
        .filter(|(_, _, r)| bytes[r.clone()].windows(4).any(|w| w == b"user"))
        .nth(back)
        .cloned()
        .expect("an event frame");
    let payload = &mut bytes[range.clone()];
    let i = payload.windows(4).position(|w| w == b"user").unwrap() + 4;
    payload[i] = if payload[i] == b'9' {
        b'8'
    } else {
        payload[i] + 1
    };
    let header = frame::encode_header(Lsn(lsn), &bytes[range.clone()]);
    bytes[at as usize..at as usize + frame::FRAME_HEADER_LEN].copy_from_slice(&header);
    std::fs::write(&path, bytes).unwrap();
    lsn
}

fn tampered(dir: &Path, c: &SealCheck, says: &str) -> auditlog::TamperReport {
    let r = check(dir, c);
    assert!(r.is_tampered(), "not found: {says}: {r:#?}");
    assert!(
        r.problems.iter().any(|p| p.contains(says)),
        "{says}: {r:#?}"
    );
    r
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The newest checkpoint note, as `auditlog anchor` prints it.
fn anchor(dir: &Path) -> (String, String) {
    let bytes = std::fs::read(dir.join("CHECKPOINTS")).unwrap();
    let (notes, _) =
        auditlog::format::sealed_files::decode_checkpoints(&bytes, log_id(dir)).unwrap();
    ("test".into(), notes.last().unwrap().clone())
}

#[test]
fn an_edited_record_is_found_in_a_raw_and_in_a_compacted_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let (raw, compacted) = (tmp.path().join("raw"), tmp.path().join("compacted"));
    sealed_log(&raw, 3000);
    copy_dir(&raw, &compacted);
    let lsn = edit_active(&raw, 5);
    let r = tampered(
        &raw,
        &SealCheck::default(),
        "do not hash to the root it signed",
    );
    let block = (lsn - 1) / 256;
    let range = format!("LSN {}..=", block * 256 + 1);
    assert!(
        r.problems.iter().any(|p| p.contains(&range)),
        "{range}: {r:#?}"
    );
    // Reading it still works: the frame is valid, only the seal knows.
    assert!(Log::open(&raw, Options::default().read_only(true))
        .unwrap()
        .verify()
        .unwrap()
        .damage
        .is_empty());

    // The same edit, then compaction: a compacted segment whose every
    // checksum is right, holding the changed record.
    edit_active(&compacted, 5);
    {
        let log = Log::open(
            &compacted,
            Options::default().compaction(Compaction::Manual),
        )
        .unwrap();
        log.seal().unwrap();
        log.compact().unwrap();
        assert!(log.raw_segments().len() <= 1 && !log.compacted_segments().is_empty());
    }
    tampered(
        &compacted,
        &SealCheck::default(),
        "do not hash to the root it signed",
    );
    // And a sealer opened on it refuses to seal it again.
    let log = AuditLog::open(&compacted, opts(Some(key()))).unwrap();
    let st = log.seal_now().unwrap();
    assert!(
        st.error
            .as_deref()
            .is_some_and(|e| e.contains("changed after it was sealed")),
        "{st:?}"
    );
}

#[test]
fn cuts_deletions_and_rollbacks_are_found() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    sealed_log(&base, 3000);
    let at = |name: &str| {
        let d = tmp.path().join(name);
        copy_dir(&base, &d);
        d
    };

    // The newest segment deleted.
    let d = at("deleted");
    std::fs::remove_file(segments(&d).pop().unwrap()).unwrap();
    tampered(&d, &SealCheck::default(), "records missing at the end");

    // The active segment cut at a frame boundary, its sync mark rewritten
    // to match, and the checkpoints past the cut removed from CHECKPOINTS:
    // only an anchor kept elsewhere shows it.
    let d = at("cut");
    let before = anchor(&d);
    let path = segments(&d).pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let fs = frames(&bytes);
    let (cut_at, cut_lsn, _) = fs[fs.len() / 2].clone();
    let data_end = fs.last().unwrap().2.end;
    bytes[cut_at as usize..data_end].fill(0);
    let mark = segment::SyncMark {
        synced_end: cut_at,
        next_lsn: Lsn(cut_lsn),
    };
    let m = bytes.len() - segment::FOOTER_LEN - segment::MARK_LEN;
    bytes[m..m + segment::MARK_LEN].copy_from_slice(&mark.encode());
    std::fs::write(&path, bytes).unwrap();
    let ckpts = std::fs::read(d.join("CHECKPOINTS")).unwrap();
    let (notes, _) =
        auditlog::format::sealed_files::decode_checkpoints(&ckpts, log_id(&d)).unwrap();
    let mut kept = auditlog::format::sealed_files::checkpoints_header(log_id(&d));
    for n in &notes {
        let c = checkpoint_of(n);
        if c.size < cut_lsn {
            kept.extend(auditlog::format::sealed_files::checkpoint_entry(n));
        }
    }
    std::fs::write(d.join("CHECKPOINTS"), kept).unwrap();
    let r = check(&d, &SealCheck::default());
    assert!(
        !r.is_tampered(),
        "without an anchor a clean cut is a shorter log: {r:#?}"
    );
    let r = tampered(
        &d,
        &SealCheck {
            anchors: vec![before.clone()],
            ..SealCheck::default()
        },
        "records missing at the end",
    );
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains(&format!("the log ends at LSN {}", cut_lsn - 1))),
        "{r:#?}"
    );

    // The whole directory replaced with an older copy.
    let old = tmp.path().join("old");
    sealed_log(&old, 1000);
    let older = tmp.path().join("older");
    copy_dir(&old, &older);
    {
        let log = AuditLog::open(&old, opts(Some(key()))).unwrap();
        for i in 1000..2000 {
            log.append(&event(i)).unwrap();
        }
        log.log().sync().unwrap();
        log.seal_now().unwrap();
    }
    let newer = anchor(&old);
    tampered(
        &older,
        &SealCheck {
            anchors: vec![newer],
            ..SealCheck::default()
        },
        "records missing at the end",
    );

    // A checkpoint deleted from CHECKPOINTS, or altered.
    let d = at("deleted-checkpoint");
    let ckpts = std::fs::read(d.join("CHECKPOINTS")).unwrap();
    let (notes, _) =
        auditlog::format::sealed_files::decode_checkpoints(&ckpts, log_id(&d)).unwrap();
    let mut kept = auditlog::format::sealed_files::checkpoints_header(log_id(&d));
    for (i, n) in notes.iter().enumerate() {
        if i != 2 {
            kept.extend(auditlog::format::sealed_files::checkpoint_entry(n));
        }
    }
    std::fs::write(d.join("CHECKPOINTS"), &kept).unwrap();
    tampered(&d, &SealCheck::default(), "an entry was removed");
    let d = at("altered-checkpoint");
    let mut kept = auditlog::format::sealed_files::checkpoints_header(log_id(&d));
    for (i, n) in notes.iter().enumerate() {
        let n = if i == 2 {
            n.replacen('\n', "\n1", 1)
        } else {
            n.clone()
        };
        kept.extend(auditlog::format::sealed_files::checkpoint_entry(&n));
    }
    std::fs::write(d.join("CHECKPOINTS"), &kept).unwrap();
    tampered(&d, &SealCheck::default(), "signature does not verify");

    // Re-signed with another key (PUBKEY replaced, CHECKPOINTS re-signed).
    let d = at("re-signed");
    let other = SealKey::from_seed("audit.test", [7; 32]);
    std::fs::write(d.join("PUBKEY"), format!("{}\n", other.verifier())).unwrap();
    let mut resigned = auditlog::format::sealed_files::checkpoints_header(log_id(&d));
    for n in &notes {
        let text = auditlog::SignedNote::parse(n).unwrap().text;
        resigned.extend(auditlog::format::sealed_files::checkpoint_entry(
            &other.sign_note(&text),
        ));
    }
    std::fs::write(d.join("CHECKPOINTS"), &resigned).unwrap();
    // With the PUBKEY in the directory, the log's own records give it away;
    // with the operator's own key, everything does.
    tampered(&d, &SealCheck::default(), "signature does not verify");
    tampered(
        &d,
        &SealCheck {
            key: Some(key().verifier()),
            ..SealCheck::default()
        },
        "signature does not verify",
    );

    // A log that says it is sealed but holds no checkpoint.
    let d = tmp.path().join("unsealed");
    {
        let log = AuditLog::open(&d, opts(None)).unwrap();
        for i in 0..100 {
            log.append(&event(i)).unwrap();
        }
    }
    assert!(check(&d, &SealCheck::default())
        .notes
        .iter()
        .any(|n| n.contains("not sealed")));
    std::fs::write(d.join("PUBKEY"), format!("{}\n", key().verifier())).unwrap();
    tampered(&d, &SealCheck::default(), "holds no checkpoint");
}

#[test]
fn retention_and_compaction_are_not_tampering() {
    let dir = tempfile::tempdir().unwrap();
    sealed_log(dir.path(), 6000);
    {
        let mut o = opts(Some(key()));
        o.retention = auditlog::Retention {
            max_bytes: Some(1),
            ..Default::default()
        };
        let log = AuditLog::open(dir.path(), o).unwrap();
        log.log().seal().unwrap();
        log.log().compact().unwrap();
        // Retention removes only what a checkpoint covers: the sealer first.
        log.seal_now().unwrap();
        let removed = log.apply_retention().unwrap();
        assert!(!removed.is_empty(), "retention removed something");
        for i in 6000..6500 {
            log.append(&event(i)).unwrap();
        }
        log.log().sync().unwrap();
        let st = log.seal_now().unwrap();
        assert!(st.error.is_none(), "{st:?}");
    }
    let r = check(dir.path(), &SealCheck::default());
    assert!(!r.is_tampered(), "{r:#?}");
    let log = reader(dir.path());
    assert!(log.log().first_lsn().0 > 1, "a prefix was pruned");
    // The markers record the tree at each prefix removed.
    let markers: Vec<Event> = log
        .query(
            &auditlog::Filter {
                types: vec![auditlog::RETENTION_APPLIED.into()],
                ..Default::default()
            },
            false,
        )
        .map(|r| r.unwrap().1)
        .collect();
    let last = markers.last().expect("a marker");
    assert_eq!(
        last.attrs["tree_size"],
        (log.log().first_lsn().0 - 1).to_string(),
        "{last:?}"
    );
    assert!(
        last.attrs.contains_key("tree_root") && last.attrs.contains_key("tree_edge"),
        "{last:?}"
    );
    // TREE's hashes of the removed records changed (CRC fixed): named.
    let d3 = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), d3.path());
    let mut t = std::fs::read(d3.path().join("TREE")).unwrap();
    t[24] ^= 1; // block 0's hash
    let fixed = auditlog::format::sealed_files::tree_entry(0, &t[24..56].try_into().unwrap());
    t[24..60].copy_from_slice(&fixed);
    std::fs::write(d3.path().join("TREE"), t).unwrap();
    tampered(
        d3.path(),
        &SealCheck::default(),
        "removed by retention) are not those retention recorded",
    );
    assert!(r.sealed + 1 >= log.log().next_lsn().0 - 1, "{r:#?}");
    // Deleting the oldest segment without retention's record is not retention.
    drop(log);
    let d2 = tempfile::tempdir().unwrap();
    sealed_log(d2.path(), 3000);
    {
        let log = Log::open(d2.path(), Options::default().compaction(Compaction::Manual)).unwrap();
        log.seal().unwrap();
        log.compact().unwrap();
    }
    let oldest = std::fs::read_dir(d2.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|x| x != "seg")
                && p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .chars()
                    .next()
                    .unwrap()
                    .is_ascii_digit()
        })
        .min()
        .unwrap();
    std::fs::remove_file(oldest).unwrap();
    tampered(d2.path(), &SealCheck::default(), "no retention record");
}

const CHILD_ENV: &str = "AUDITLOG_TAMPER_CHILD";

/// The child of the SIGKILL test: appends sealed events until killed.
#[test]
#[ignore = "the SIGKILL test's child process, not a test"]
fn sealing_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut o = opts(Some(key()));
    o.log = o.log.durability(Durability::Sync);
    let log = AuditLog::open(&dir, o).unwrap();
    for i in 0.. {
        log.append(&event(i)).unwrap();
    }
}

#[test]
fn a_sigkill_while_sealing_leaves_an_unsealed_tail_not_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    for wait in [1300u64, 2100, 700] {
        let mut child = Command::new(&exe)
            .args(["--exact", "sealing_child", "--ignored", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(wait));
        child.kill().unwrap();
        child.wait().unwrap();
        let r = check(dir.path(), &SealCheck::default());
        assert!(!r.is_tampered(), "after SIGKILL: {r:#?}");
        assert!(
            r.checkpoints > 0,
            "it sealed something before the kill: {r:#?}"
        );
    }
    // The next writer resumes sealing where the last left off.
    let log = AuditLog::open(dir.path(), opts(Some(key()))).unwrap();
    log.append(&event(1)).unwrap();
    log.log().sync().unwrap();
    let st = log.seal_now().unwrap();
    assert!(st.error.is_none(), "{st:?}");
    drop(log);
    let r = check(dir.path(), &SealCheck::default());
    assert!(
        !r.is_tampered() && r.unsealed.is_none_or(|u| u.2 == 0),
        "{r:#?}"
    );
}

#[test]
fn inclusion_proofs_verify_without_the_log_and_agree_with_an_independent_verifier() {
    let dir = tempfile::tempdir().unwrap();
    sealed_log(dir.path(), 2000);
    {
        // Compacted or raw, the proof is the same.
        let log = Log::open(
            dir.path(),
            Options::default().compaction(Compaction::Manual),
        )
        .unwrap();
        log.seal().unwrap();
        log.compact().unwrap();
    }
    let log = reader(dir.path());
    let verifier = key().verifier();
    for lsn in [1u64, 2, 255, 256, 257, 1000, 1999] {
        let p = log.prove(Lsn(lsn)).unwrap();
        let text = p.to_text();
        let back = auditlog::InclusionProof::from_text(&text).unwrap();
        assert_eq!(back, p);
        let cp = back
            .verify(&verifier)
            .unwrap_or_else(|e| panic!("LSN {lsn}: {e}"));
        // ct-merkle agrees.
        let root = ct_merkle::RootHash::<sha2::Sha256>::new(cp.root.into(), cp.size);
        let mut leaf = lsn.to_be_bytes().to_vec();
        leaf.extend_from_slice(&p.payload);
        let path: Vec<u8> = p.path.concat();
        root.verify_inclusion(&leaf, lsn - 1, &ct_merkle::InclusionProof::from_bytes(path))
            .unwrap_or_else(|e| panic!("LSN {lsn}: ct-merkle: {e:?}"));
        // Anything changed fails.
        let mut bad = p.clone();
        bad.payload[3] ^= 1;
        assert!(bad.verify(&verifier).is_err());
        let mut bad = p.clone();
        bad.lsn += 1;
        assert!(bad.verify(&verifier).is_err());
        assert!(p
            .verify(&SealKey::from_seed("audit.test", [1; 32]).verifier())
            .is_err());
        if let Some(e) = &p.event {
            let mut bad = p.clone();
            bad.event = Some(e.replacen("Z\"", "+01:00\"", 1));
            assert!(
                bad.verify(&verifier).is_err(),
                "the event line is checked against the payload"
            );
        }
    }
    assert!(log.prove(Lsn(1_000_000)).is_err());
}

/// Every checkpoint reaches the application's hook as it is signed, and a
/// fully compacted log still hashes to every checkpoint (compaction keeps
/// each payload byte for byte).
#[test]
fn the_hook_gets_each_checkpoint_and_compaction_keeps_every_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = got.clone();
    let mut o = opts(Some(key()));
    o.on_checkpoint = Some(auditlog::CheckpointHook(std::sync::Arc::new(
        move |note: &str| {
            seen.lock().unwrap().push(note.to_string());
        },
    )));
    {
        let log = AuditLog::open(dir.path(), o).unwrap();
        for i in 0..3 {
            let batch: Vec<Event> = (i * 700..i * 700 + 700).map(event).collect();
            log.append_batch(&batch).unwrap();
            log.log().sync().unwrap();
            log.seal_now().unwrap();
        }
        log.log().seal().unwrap();
        log.log().compact().unwrap();
        assert!(log.log().raw_segments().len() <= 1);
    }
    let notes = got.lock().unwrap().clone();
    assert_eq!(notes.len(), 3, "{notes:?}");
    let sizes: Vec<u64> = notes.iter().map(|n| checkpoint_of(n).size).collect();
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
    // Each is an anchor the compacted log still satisfies, leaf by leaf.
    let anchors = notes
        .iter()
        .map(|n| ("hook".to_string(), n.clone()))
        .collect();
    let r = check(
        dir.path(),
        &SealCheck {
            anchors,
            ..SealCheck::default()
        },
    );
    assert!(!r.is_tampered(), "{r:#?}");
    assert!(r.records_hashed >= 2048, "{r:#?}");
    assert_eq!(r.sealed, *sizes.last().unwrap());
}

/// Each file of the seal damaged, deleted or replaced: no panic; a reader
/// still reads every event; `verify_seal` answers (damage is damage, not
/// tampering, when the log itself is intact); a writer with the key opens
/// and its sealer carries on, or the open says exactly what is missing.
#[test]
fn damage_to_each_seal_file_is_said_and_sealing_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    sealed_log(&base, 1500);
    std::fs::write(base.join("KEY"), format!("{}\n", key().to_text())).unwrap();
    type Hurt = (&'static str, fn(&mut Vec<u8>));
    let hurts: [Hurt; 4] = [
        ("delete", |_| {}),
        ("flip", |b| {
            let at = b.len() / 2;
            b[at] ^= 0x20;
        }),
        ("truncate", |b| b.truncate(b.len() * 2 / 3)),
        ("empty", |b| b.clear()),
    ];
    for file in ["PUBKEY", "KEY", "TREE", "CHECKPOINTS"] {
        for (how, hurt) in hurts {
            let d = tmp.path().join(format!("{file}-{how}"));
            copy_dir(&base, &d);
            let path = d.join(file);
            if how == "delete" {
                std::fs::remove_file(&path).unwrap();
            } else {
                let mut b = std::fs::read(&path).unwrap();
                hurt(&mut b);
                std::fs::write(&path, b).unwrap();
            }
            let what = format!("{file} {how}");
            // Readers read every event.
            let ro = reader(&d);
            assert_eq!(
                ro.query(&auditlog::Filter::default(), false).count(),
                1500,
                "{what}"
            );
            let r = ro
                .verify_seal(&SealCheck {
                    key: Some(key().verifier()),
                    ..SealCheck::default()
                })
                .unwrap();
            drop(ro);
            if file == "TREE" || file == "KEY" {
                // Nothing the log needs: every record is there to hash again.
                assert!(!r.is_tampered(), "{what}: {r:#?}");
            }
            if file == "CHECKPOINTS" && how != "delete" {
                assert!(
                    !r.damage.is_empty() || !r.notes.is_empty() || r.checkpoints > 0,
                    "{what}: {r:#?}"
                );
            }
            // A writer with the key opens and seals on (PUBKEY rewritten if
            // missing); one that takes it from KEY says what is wrong with it.
            let given = if file == "KEY" { None } else { Some(key()) };
            match AuditLog::open(&d, opts(given)) {
                Ok(log) => {
                    log.append(&event(9999)).unwrap();
                    log.log().sync().unwrap();
                    let st = log.seal_now().unwrap();
                    if file != "CHECKPOINTS" || how == "delete" || how == "empty" {
                        assert!(st.error.is_none(), "{what}: {st:?}");
                    }
                }
                Err(e) => {
                    // Only a PUBKEY or KEY that is not a key stops a writer,
                    // and it says which.
                    assert!(file == "PUBKEY" || file == "KEY", "{what}: {e}");
                    let e = e.to_string();
                    assert!(
                        e.contains(file) || e.contains("no signing key"),
                        "{what}: {e}"
                    );
                }
            }
        }
    }
}

/// A checkpoint at every segment seal, besides the once-a-second ones:
/// events appended one by one across several segments, then one round.
#[test]
fn every_sealed_segment_ends_at_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = AuditLog::open(dir.path(), opts(Some(key()))).unwrap();
        for i in 0..6000 {
            log.append(&event(i)).unwrap();
        }
        log.log().sync().unwrap();
        assert!(log.seal_now().unwrap().error.is_none());
    }
    let log = reader(dir.path());
    let starts: Vec<u64> = log.log().raw_segments().iter().map(|s| s.1 .0).collect();
    assert!(starts.len() >= 3, "{starts:?}");
    let sizes: Vec<u64> = checkpoints(dir.path()).iter().map(|c| c.size).collect();
    for s in &starts[1..] {
        assert!(
            sizes.contains(&(s - 1)),
            "no checkpoint at the end of the segment before LSN {s}: {sizes:?}"
        );
    }
    assert!(!check(dir.path(), &SealCheck::default()).is_tampered());
}

/// A slow writer's few events wait for more (or for a minute) before a
/// checkpoint is spent on them; a request signs at once.
#[test]
fn a_slow_writer_does_not_pay_a_checkpoint_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), opts(Some(key()))).unwrap();
    for i in 0..10 {
        log.append(&event(i)).unwrap();
    }
    log.log().sync().unwrap();
    let before = log.seal_status().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let after = log.seal_status().unwrap();
    assert!(
        after.rounds >= before.rounds + 2,
        "rounds ran: {before:?} {after:?}"
    );
    assert_eq!(after.checkpoints, 0, "{after:?}");
    assert_eq!(log.seal_now().unwrap().checkpoints, 1);
}
