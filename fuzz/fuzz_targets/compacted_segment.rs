//! Arbitrary bytes as a compacted block (raw, or a compressed body), and as a whole compacted segment
//! file opened by the log (Strict and Repair): no input panics, and nothing
//! is returned from a file whose checksums do not hold.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use auditlog::format::codec::TextField;
use auditlog::format::compacted::{decode_block, decode_block_where, Body, Header, Index};
use auditlog::testing::FaultyFs;
use auditlog::{Compaction, Log, Options, RecoveryMode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut d = zstd::bulk::Decompressor::new().unwrap();
    if mode % 8 == 6 {
        // Raw block bytes cut into zstd frames at places the input picks (a
        // crafted file may cut mid-column): the lazy two-pass decoder keeps
        // exactly what the one-pass decoder keeps, wherever the cuts fall.
        let Some((&[cut, needed_lo, needed_hi], raw)) =
            rest.split_first_chunk::<3>().map(|(a, r)| (a, r))
        else {
            return;
        };
        let frames = usize::from(cut % 5) + 1;
        let mut at = 0;
        let mut table = vec![frames as u8];
        let mut bodies = Vec::new();
        for i in 0..frames {
            let end = if i + 1 == frames {
                raw.len()
            } else {
                (at + raw.len() * usize::from(cut) / 255 / frames).min(raw.len())
            };
            let z = zstd::bulk::compress(&raw[at..end], 1).unwrap();
            table.extend_from_slice(&(z.len() as u32).to_le_bytes());
            table.extend_from_slice(&((end - at) as u32).to_le_bytes());
            bodies.extend_from_slice(&z);
            at = end;
        }
        table.extend_from_slice(&bodies);
        let needed = u16::from_le_bytes([needed_lo, needed_hi]);
        let mut body = Body::parse(&table, raw.len() as u32).expect("a well-made body");
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        let two = decode_block_where(
            &mut body,
            &mut d,
            needed,
            &mut |k, _| k.row % 3 == 0,
            &mut buf,
            &mut out,
        );
        let (mut buf1, mut out1) = (Vec::new(), Vec::new());
        if let Ok(rows) = decode_block(raw, &mut |k, _| k.row % 3 == 0, &mut buf1, &mut out1) {
            assert_eq!(two.ok(), Some(rows));
            assert_eq!((buf, out), (buf1, out1));
        }
        return;
    }
    if mode % 4 == 2 {
        // A block's body (its CRC already checked): its frame table and
        // frames, decompressed a frame at a time, then decoded.
        let Some((len, body)) = rest.split_first_chunk::<2>() else {
            return;
        };
        let raw_len = u32::from(u16::from_le_bytes(*len));
        let Ok(mut b) = Body::parse(body, raw_len) else {
            return;
        };
        while let Ok(true) = b.decompress_next(&mut d) {
            assert!(b.raw().len() <= raw_len as usize);
        }
        if let Ok(b) = Body::parse(body, raw_len) {
            if let Ok(raw) = b.into_raw(&mut d) {
                assert_eq!(raw.len(), raw_len as usize);
                let (mut buf, mut out) = (Vec::new(), Vec::new());
                let _ = decode_block(&raw, &mut |_, _| true, &mut buf, &mut out);
            }
        }
        return;
    }
    if mode % 4 == 0 {
        // A raw block, as zstd would hand it over (its CRC already checked).
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        let whole = decode_block(
            rest,
            &mut |k, f| {
                // What a filter reads of the columns never panics either.
                let _ = (
                    f.ip(),
                    f.result(),
                    f.text(TextField::Actor),
                    f.text(TextField::Data),
                );
                k.row % 2 == 0
            },
            &mut buf,
            &mut out,
        );
        // Whatever the bytes, the two-pass decoder does not panic, and
        // keeps exactly what the one-pass one keeps.
        let (mut buf2, mut out2) = (Vec::new(), Vec::new());
        let mut body = Body::decompressed(rest.to_vec());
        let two = decode_block_where(
            &mut body,
            &mut d,
            0b10_1000,
            &mut |k, _| k.row % 2 == 0,
            &mut buf2,
            &mut out2,
        );
        if let Ok(rows) = whole {
            assert_eq!(out.len(), (rows as usize).div_ceil(2));
            assert!(out.iter().all(|(_, r)| r.end <= buf.len()));
            assert_eq!(two.ok(), Some(rows));
            assert_eq!((buf, out), (buf2, out2));
        }
        return;
    }
    let mut file = rest.to_vec();
    if mode % 4 == 1 && file.len() >= 64 {
        // Make the checksums hold, so the structure checks behind them run.
        let crc = crc32fast::hash(&file[..60]);
        file[60..64].copy_from_slice(&crc.to_le_bytes());
        let at = u64::from_le_bytes(file[48..56].try_into().unwrap());
        if at >= 64 && at.checked_add(4).is_some_and(|e| e <= file.len() as u64) {
            let at = at as usize;
            let crc = crc32fast::hash(&file[at + 4..]);
            file[at..at + 4].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let rest = &file[..];
    if let Ok(h) = Header::decode(rest) {
        let _ = Index::decode(&rest[h.index_offset as usize..], &h);
    }
    for recovery in [RecoveryMode::Strict, RecoveryMode::Repair] {
        let fs = FaultyFs::new();
        let dir = Path::new("/log");
        fs.put_file(&dir.join("00000000000000000001.cseg"), rest);
        let opts = Options::default()
            .vfs(Arc::new(fs.clone()))
            .segment_bytes(64 << 10)
            .record_bytes_max(4 << 10)
            .compaction(Compaction::Manual)
            .recovery(recovery);
        let Ok(log) = Log::open(dir, opts) else {
            continue;
        };
        for r in log.iter(..).take(100_000) {
            if r.is_err() {
                break;
            }
        }
        for r in log.iter_rev(..).take(100_000) {
            if r.is_err() {
                break;
            }
        }
        let _ = log.verify();
    }
});
