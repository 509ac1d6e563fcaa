//! Arbitrary bytes as a segment file, fed to recovery and to the readers.
//!
//! Asserts: nothing panics; every frame recovery accepts has a CRC that
//! matches its bytes; every record a reader returns is one of those frames.
//!
//! Input: byte 0 selects the shape (mod 3). 0: a valid header (segment 1,
//! first LSN 1) is put in front of the rest so the fuzzer starts past the
//! magic. 1: the rest is the whole file, header included. 2: as 0 but for
//! segment 2, put in as `2.seg.tmp` after an empty segment 1: the file an
//! open must tell a spare, a started segment or a stray from.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use auditlog::format::frame::{self, FRAME_HEADER_LEN};
use auditlog::format::recovery;
use auditlog::format::segment::{
    Header, DATA_START, FOOTER_LEN, FORMAT_VERSION, HEADER_LEN, MARK_LEN,
};
use auditlog::testing::FaultyFs;
use auditlog::{Log, Lsn, Options, RecoveryMode, SegmentId};
use libfuzzer_sys::fuzz_target;

const RECORD_MAX: u32 = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let tmp = shape % 3 == 2;
    let file = if shape % 3 != 1 {
        let len = (HEADER_LEN + rest.len() + MARK_LEN + FOOTER_LEN) as u64;
        let header = Header {
            segment: SegmentId(if tmp { 2 } else { 1 }),
            first_lsn: Lsn(1),
            len,
            log_id: 1,
            record_max: RECORD_MAX,
            grow_to: len.next_multiple_of(1 << 16),
            version: FORMAT_VERSION,
        };
        let mut f = header.encode().to_vec();
        f.extend_from_slice(rest);
        f.resize(len as usize, 0);
        f
    } else {
        rest.to_vec()
    };

    // The pure scan: every frame it accepts must carry a matching CRC.
    if file.len() > HEADER_LEN + FOOTER_LEN {
        let limit = (file.len() - FOOTER_LEN) as u64;
        let s = recovery::scan(&file, DATA_START, limit, Lsn(1), RECORD_MAX, &[]);
        let mut at = DATA_START;
        let mut lsn = Lsn(1);
        while at < s.valid_end {
            if let Some(d) = s.damage.iter().find(|d| d.start == at) {
                at = d.end;
                lsn = d.next_lsn;
                continue;
            }
            let f = frame::decode(&file, at, limit, RECORD_MAX).expect("scan accepted a bad frame");
            let header: &[u8; FRAME_HEADER_LEN] = file[at as usize..at as usize + FRAME_HEADER_LEN]
                .try_into()
                .unwrap();
            assert_eq!(
                frame::frame_crc(header, f.payload).to_le_bytes(),
                header[4..8]
            );
            assert_eq!(f.lsn, lsn);
            at = f.next;
            lsn = Lsn(lsn.0 + 1);
        }
    }

    // The whole open path, in both modes, then every reader.
    for mode in [RecoveryMode::Strict, RecoveryMode::Repair] {
        let fs = FaultyFs::new();
        let opts = Options::default()
            .vfs(Arc::new(fs.clone()))
            .segment_bytes(1 << 16)
            .record_bytes_max(RECORD_MAX)
            .recovery(mode)
            .new_log_id(1);
        if tmp {
            // An empty segment 1 of log 1, then the file after it.
            drop(Log::open("/log", opts.clone()).expect("a new log"));
            fs.put_file(Path::new("/log/00000000000000000002.seg.tmp"), &file);
        } else {
            fs.put_file(Path::new("/log/00000000000000000001.seg"), &file);
        }
        let Ok(log) = Log::open("/log", opts) else {
            continue;
        };
        for rec in log.iter(..).chain(log.iter_rev(..)).flatten() {
            let want = frame::encode_header(rec.lsn(), rec.payload());
            assert!(
                file.windows(FRAME_HEADER_LEN).any(|w| w == want),
                "record {} is no frame of the file",
                rec.lsn()
            );
        }
        let _ = log.verify();
        let _ = log.append(b"after recovery");
    }
});
