//! Recovery: scanning segment bytes frame by frame and deciding, for every
//! invalid frame, whether it is a torn tail (normal after a crash) or damage.
//!
//! The decision table (docs/FORMAT.md, "Recovery", states the same):
//!
//! | at offset `p`, expecting LSN `e`                       | decision                         |
//! |--------------------------------------------------------|----------------------------------|
//! | a frame with a valid CRC and LSN `e`                   | accept, continue after it        |
//! | a quarantined range starts at `p`                      | skip it, expect its next LSN     |
//! | anything else, and a valid frame with LSN `f >= e` at a later `q` | damage `p..q`, LSNs `e..f` lost; continue at `q` |
//! | anything else, no valid frame later, all bytes from `p` zero | clean end of data          |
//! | anything else, no valid frame later, some bytes non-zero | torn tail: data ends at `p`    |
//!
//! "Valid frame later" is searched at every byte offset `q` whose header has an
//! LSN in `e..=e + (q - p) / 16` (no more records than could have fit in the
//! gap), a length that fits and a CRC that matches. Pure functions over bytes:
//! no I/O here, so the fuzzer can drive it directly.

use crate::error::Problem;
use crate::raw::frame::{self, FRAME_HEADER_LEN};
use crate::Lsn;

/// A byte range of a segment already known to be damaged and skipped
/// (from the quarantine file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skip {
    /// First skipped byte.
    pub start: u64,
    /// One past the last skipped byte.
    pub end: u64,
    /// LSN of the first frame after the range.
    pub next_lsn: Lsn,
}

/// A damaged range found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// First damaged byte.
    pub start: u64,
    /// First byte of the next valid frame.
    pub end: u64,
    /// LSNs lost in the range (inclusive), if any.
    pub lsns_lost: Option<(Lsn, Lsn)>,
    /// What was wrong at `start`.
    pub problem: Problem,
    /// LSN of the first valid frame at `end`.
    pub next_lsn: Lsn,
}

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// One past the last valid frame (or the data start if there is none).
    pub valid_end: u64,
    /// LSN the next record would get (one past the last valid one).
    pub next_lsn: Lsn,
    /// Valid frames seen.
    pub count: u64,
    /// Damaged ranges followed by valid frames, in order.
    pub damage: Vec<Damage>,
    /// One past the last non-zero byte after `valid_end` (a torn tail to clear);
    /// equal to `valid_end` when the rest is zeros.
    pub garbage_end: u64,
    /// Checkpoints `(lsn, offset)` every [`INDEX_STRIDE`] frames, for random access.
    pub index: Vec<(Lsn, u64)>,
}

/// Frames between two sparse-index checkpoints.
pub const INDEX_STRIDE: u64 = 64;

/// Scans `bytes[start..limit]` for frames starting at LSN `first_lsn`.
/// `payload_max` bounds frame lengths; `skips` are known-quarantined ranges.
pub fn scan(
    bytes: &[u8],
    start: u64,
    limit: u64,
    first_lsn: Lsn,
    payload_max: u32,
    skips: &[Skip],
) -> Scan {
    let limit = limit.min(bytes.len() as u64);
    let start = start.min(limit);
    let mut out = Scan {
        valid_end: start,
        next_lsn: first_lsn,
        count: 0,
        damage: Vec::new(),
        garbage_end: start,
        index: Vec::new(),
    };
    let mut p = start;
    let mut e = first_lsn;
    loop {
        if let Some(s) = skips.iter().find(|s| s.start == p && s.end > s.start) {
            e = e.max(s.next_lsn);
            out.next_lsn = e;
            if s.end > limit {
                // A quarantined range running to (or past) the end of the data.
                break;
            }
            p = s.end;
            out.valid_end = p;
            continue;
        }
        let problem = match frame::decode(bytes, p, limit, payload_max) {
            Ok(f) if f.lsn == e => {
                if out.count.is_multiple_of(INDEX_STRIDE) {
                    out.index.push((e, p));
                }
                out.count += 1;
                p = f.next;
                e = Lsn(e.0 + 1);
                out.valid_end = p;
                out.next_lsn = e;
                continue;
            }
            Ok(f) => Problem::LsnMismatch {
                expected: e,
                found: f.lsn,
            },
            Err(problem) => problem,
        };
        let Some(d) = resync(bytes, p, limit, e, payload_max, problem) else {
            break;
        };
        (p, e) = (d.end, d.next_lsn);
        out.damage.push(d);
    }
    out.garbage_end = last_nonzero_end(&bytes[..limit as usize], out.valid_end.min(limit));
    out
}

/// After an invalid frame at `from`, the damage up to the next valid frame;
/// `None` when no valid frame follows (the end of the data).
fn resync(
    bytes: &[u8],
    from: u64,
    limit: u64,
    e: Lsn,
    payload_max: u32,
    problem: Problem,
) -> Option<Damage> {
    let (q, f) = find_next_frame(bytes, from, limit, e, payload_max)?;
    let problem = if bytes[from as usize..q as usize].iter().all(|&b| b == 0) {
        Problem::Zeroed
    } else {
        problem
    };
    Some(Damage {
        start: from,
        end: q,
        lsns_lost: (f.0 > e.0).then(|| (e, Lsn(f.0 - 1))),
        problem,
        next_lsn: f,
    })
}

/// The first offset `q > from` holding a valid frame whose LSN could follow
/// `e` after the gap `from..q`.
fn find_next_frame(
    bytes: &[u8],
    from: u64,
    limit: u64,
    e: Lsn,
    payload_max: u32,
) -> Option<(u64, Lsn)> {
    let mut q = from + 1;
    let hdr = FRAME_HEADER_LEN as u64;
    while q + hdr <= limit {
        let (len, _, lsn) = frame::peek(bytes, q, limit)?;
        if len == 0 && lsn == 0 {
            // Skip runs of zeros quickly: a frame header has a non-zero LSN.
            let next_nonzero = first_nonzero(bytes, q, limit)?;
            q = next_nonzero.saturating_sub(hdr - 1).max(q + 1);
            continue;
        }
        let max_lsn = e.0.saturating_add((q - from) / hdr);
        if lsn >= e.0 && lsn <= max_lsn {
            if let Ok(f) = frame::decode(bytes, q, limit, payload_max) {
                return Some((q, f.lsn));
            }
        }
        q += 1;
    }
    None
}

/// Bytes looked at together when skipping zeros: a segment's unwritten
/// rest (up to a whole segment) is read at every open, forwards and back.
const ZEROS_STEP: usize = 64;

fn all_zero(block: &[u8]) -> bool {
    // OR of the words: the compiler vectorises it (a loop that stops at the
    // first non-zero byte it does not).
    block
        .chunks_exact(8)
        .fold(0, |acc, w| acc | u64::from_ne_bytes(w.try_into().unwrap()))
        == 0
}

/// Offset of the first non-zero byte in `from..limit`.
fn first_nonzero(bytes: &[u8], from: u64, limit: u64) -> Option<u64> {
    let s = &bytes[from as usize..limit as usize];
    let mut i = 0;
    for c in s.chunks_exact(ZEROS_STEP) {
        if !all_zero(c) {
            break;
        }
        i += ZEROS_STEP;
    }
    s[i..]
        .iter()
        .position(|&b| b != 0)
        .map(|k| from + (i + k) as u64)
}

/// One past the last non-zero byte at or after `from`, or `from` if none.
fn last_nonzero_end(bytes: &[u8], from: u64) -> u64 {
    let s = &bytes[from as usize..];
    let mut end = s.len();
    while end >= ZEROS_STEP && all_zero(&s[end - ZEROS_STEP..end]) {
        end -= ZEROS_STEP;
    }
    while end > 0 && s[end - 1] == 0 {
        end -= 1;
    }
    from + end as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::frame::encode_header;

    #[test]
    fn zeros_are_skipped_to_the_exact_byte_from_any_start() {
        let len = 3 * ZEROS_STEP + 5;
        for at in 0..len {
            let mut b = vec![0u8; len];
            b[at] = 0x80;
            for from in [0, 1, 7, 8, ZEROS_STEP - 1, ZEROS_STEP + 3] {
                let want = (at >= from).then_some(at as u64);
                assert_eq!(
                    first_nonzero(&b, from as u64, len as u64),
                    want,
                    "{at} {from}"
                );
                let end = if at >= from { at + 1 } else { from };
                assert_eq!(last_nonzero_end(&b, from as u64), end as u64, "{at} {from}");
            }
        }
        assert_eq!(first_nonzero(&[0; 200], 0, 200), None);
        assert_eq!(last_nonzero_end(&[0; 200], 3), 3);
    }

    fn log_bytes(n: u64, size: usize) -> (Vec<u8>, Vec<u64>) {
        let mut b = vec![0u8; 16];
        let mut offs = Vec::new();
        for i in 1..=n {
            offs.push(b.len() as u64);
            let payload = vec![i as u8; (i as usize * 7) % 50];
            b.extend_from_slice(&encode_header(Lsn(i), &payload));
            b.extend_from_slice(&payload);
        }
        b.resize(size, 0);
        (b, offs)
    }

    #[test]
    fn clean_log_scans_to_its_end() {
        let (b, offs) = log_bytes(100, 8192);
        let s = scan(&b, 16, b.len() as u64, Lsn(1), 1024, &[]);
        assert_eq!((s.count, s.next_lsn, s.damage.len()), (100, Lsn(101), 0));
        assert_eq!(s.garbage_end, s.valid_end);
        assert_eq!(s.index[1], (Lsn(65), offs[64]));
    }

    #[test]
    fn torn_tail_is_not_damage() {
        let (mut b, offs) = log_bytes(100, 8192);
        let end = scan(&b, 16, 8192, Lsn(1), 1024, &[]).valid_end as usize;
        // Tear the last frame: keep half of it.
        let last = offs[99] as usize;
        for x in &mut b[last + (end - last) / 2..end] {
            *x = 0;
        }
        let s = scan(&b, 16, 8192, Lsn(1), 1024, &[]);
        assert_eq!((s.count, s.valid_end, s.damage.len()), (99, last as u64, 0));
        assert!(s.garbage_end > s.valid_end);
    }

    #[test]
    fn damage_followed_by_frames_is_reported_with_lost_lsns() {
        let (mut b, offs) = log_bytes(100, 8192);
        b[offs[10] as usize + 20] ^= 0x10; // flip a bit inside record 11
        let s = scan(&b, 16, 8192, Lsn(1), 1024, &[]);
        assert_eq!(s.count, 99);
        assert_eq!(s.damage.len(), 1);
        let d = &s.damage[0];
        assert_eq!((d.start, d.end), (offs[10], offs[11]));
        assert_eq!(d.lsns_lost, Some((Lsn(11), Lsn(11))));
        assert!(matches!(d.problem, Problem::FrameCrc { .. }));
        // The same range, once quarantined, is skipped silently.
        let skip = Skip {
            start: d.start,
            end: d.end,
            next_lsn: d.next_lsn,
        };
        let s2 = scan(&b, 16, 8192, Lsn(1), 1024, &[skip]);
        assert_eq!((s2.count, s2.damage.len(), s2.next_lsn), (99, 0, Lsn(101)));
    }

    #[test]
    fn zeroed_page_in_the_middle_is_damage() {
        let (mut b, offs) = log_bytes(200, 16384);
        for x in &mut b[1024..1536] {
            *x = 0;
        }
        let s = scan(&b, 16, 16384, Lsn(1), 1024, &[]);
        assert_eq!(s.damage.len(), 1);
        let d = &s.damage[0];
        let first_lost = offs.iter().rposition(|&o| o < 1024).unwrap() as u64 + 1;
        assert_eq!(d.lsns_lost.unwrap().0, Lsn(first_lost));
        assert_eq!(s.next_lsn, Lsn(201));
    }
}
