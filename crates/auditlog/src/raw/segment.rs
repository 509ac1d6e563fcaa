//! Segment files: name, header and footer. See docs/FORMAT.md, "Segment file".

use crate::error::Problem;
use crate::{Lsn, SegmentId};

/// Magic at byte 0 of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"AUDITSEG";
/// Magic at byte 0 of a segment footer.
pub const FOOTER_MAGIC: [u8; 8] = *b"AUDITEND";
/// The format version this code writes; it reads this one and version 1.
pub const FORMAT_VERSION: u32 = 2;
/// Segment header: magic (8) | version u32 | reserved u32 | segment id u64 |
/// first LSN u64 | segment length u64 | log id (16) | record limit u32 |
/// CRC-32 u32 of bytes 0..60. (Version 1: bytes 40..60 are zero.)
pub const HEADER_LEN: usize = 64;
const _: () = assert!(HEADER_LEN == 8 + 4 + 4 + 8 + 8 + 8 + 16 + 4 + 4);
/// Segment footer, in the last 64 bytes of a sealed segment: magic (8) |
/// segment id u64 | first LSN u64 | last LSN u64 | record count u64 |
/// data end u64 | data CRC u32 | reserved (8) | CRC-32 u32 of bytes 0..60.
pub const FOOTER_LEN: usize = 64;
const _: () = assert!(FOOTER_LEN == 8 + 8 + 8 + 8 + 8 + 8 + 4 + 8 + 4);
/// Offset of the first frame.
pub const DATA_START: u64 = HEADER_LEN as u64;
/// Magic at byte 0 of a sync mark.
pub const MARK_MAGIC: [u8; 8] = *b"AUDITSYN";
/// Sync mark, in the 64 bytes before the footer of a version-2 segment:
/// magic (8) | synced end u64 | next LSN u64 | reserved (36) | CRC-32 u32
/// of bytes 0..60. All zeros until the first sync.
pub const MARK_LEN: usize = 64;
const _: () = assert!(MARK_LEN == 8 + 8 + 8 + 36 + 4);
/// Suffix of segment file names.
pub const SEGMENT_SUFFIX: &str = ".seg";
/// Suffix of a segment being created (renamed to its final name once its
/// header is durable; a leftover one is removed when the log is opened).
pub const CREATING_SUFFIX: &str = ".seg.tmp";
/// Digits in a segment file name (zero-padded so names sort).
pub const SEGMENT_NAME_DIGITS: usize = 20;

/// The file name of segment `id`: `00000000000000000042.seg`.
pub fn file_name(id: SegmentId) -> String {
    format!("{:020}{SEGMENT_SUFFIX}", id.0)
}

/// The name segment `id` has while it is being created.
pub fn creating_file_name(id: SegmentId) -> String {
    format!("{:020}{CREATING_SUFFIX}", id.0)
}

/// Parses a segment file name; `None` for any other name.
pub fn parse_file_name(name: &str) -> Option<SegmentId> {
    parse_with_suffix(name, SEGMENT_SUFFIX)
}

/// Parses the name of a segment being created.
pub fn parse_creating_file_name(name: &str) -> Option<SegmentId> {
    parse_with_suffix(name, CREATING_SUFFIX)
}

fn parse_with_suffix(name: &str, suffix: &str) -> Option<SegmentId> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(SegmentId)
}

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Segment number (also in the file name).
    pub segment: SegmentId,
    /// LSN of the first record the segment holds (or will hold).
    pub first_lsn: Lsn,
    /// The segment's length in bytes.
    pub len: u64,
    /// The identity of the log the segment belongs to (random, the same in
    /// every segment of a log); 0 in a version-1 header.
    pub log_id: u128,
    /// The largest record payload the segment may hold, as its writer was
    /// configured; 0 in a version-1 header (unknown).
    pub record_max: u32,
    /// The size the log's segments grow to (new logs start with small
    /// segments and double them up to this), a multiple of 64 KiB; 0 if
    /// not recorded (headers written before it was).
    pub grow_to: u64,
    /// The header's format version (1 or 2; [`encode`](Header::encode) writes 2).
    pub version: u32,
}

/// [`Header::grow_to`] is stored in units of 64 KiB.
const GROW_UNIT_SHIFT: u32 = 16;

impl Header {
    /// Whether the segment has a sync mark before its footer (version 2).
    pub fn has_mark(&self) -> bool {
        self.version >= 2
    }

    /// The limit its frames are read with: the one it was written with, or
    /// (version 1, which does not say) `default`.
    pub fn record_max_or(&self, default: u32) -> u32 {
        match self.record_max {
            0 => default,
            m => m,
        }
    }
}

/// How far a segment was synced, as its writer last recorded: every frame
/// below `synced_end` (LSNs below `next_lsn`) was durable. Written after a
/// sync, and made durable by the next one (or at close).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncMark {
    /// Offset one past the last synced frame.
    pub synced_end: u64,
    /// LSN after the last synced frame.
    pub next_lsn: Lsn,
}

impl SyncMark {
    /// The 64 bytes of the mark.
    pub fn encode(&self) -> [u8; MARK_LEN] {
        let mut b = [0u8; MARK_LEN];
        b[0..8].copy_from_slice(&MARK_MAGIC);
        b[8..16].copy_from_slice(&self.synced_end.to_le_bytes());
        b[16..24].copy_from_slice(&self.next_lsn.0.to_le_bytes());
        let c = crc(&b[0..60]);
        b[60..64].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// The mark of a version-2 segment of `bytes.len()` bytes, if one was
    /// written and checks (a damaged mark counts as none).
    pub fn decode(bytes: &[u8]) -> Option<SyncMark> {
        let at = bytes.len().checked_sub(FOOTER_LEN + MARK_LEN)?;
        let b = &bytes[at..at + MARK_LEN];
        if b[0..8] != MARK_MAGIC || u32_at(b, 60) != crc(&b[0..60]) {
            return None;
        }
        Some(SyncMark {
            synced_end: u64_at(b, 8),
            next_lsn: Lsn(u64_at(b, 16)),
        })
    }
}

fn crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

impl Header {
    /// The 64 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        let grow = u32::try_from(self.grow_to >> GROW_UNIT_SHIFT).unwrap_or(u32::MAX);
        b[12..16].copy_from_slice(&grow.to_le_bytes());
        b[16..24].copy_from_slice(&self.segment.0.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_lsn.0.to_le_bytes());
        b[32..40].copy_from_slice(&self.len.to_le_bytes());
        b[40..56].copy_from_slice(&self.log_id.to_le_bytes());
        b[56..60].copy_from_slice(&self.record_max.to_le_bytes());
        let c = crc(&b[0..60]);
        b[60..64].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// Decodes and checks a header from the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Header, Problem> {
        if bytes.len() < HEADER_LEN {
            return Err(Problem::Truncated {
                len: bytes.len() as u64,
                expected: HEADER_LEN as u64,
            });
        }
        let b = &bytes[..HEADER_LEN];
        if b[0..8] != SEGMENT_MAGIC {
            return Err(Problem::BadMagic {
                found: b[0..8].try_into().unwrap(),
            });
        }
        let (stored, computed) = (u32_at(b, 60), crc(&b[0..60]));
        if stored != computed {
            return Err(Problem::HeaderCrc {
                what: "segment header",
                stored,
                computed,
            });
        }
        let version = u32_at(b, 8);
        if version != 1 && version != FORMAT_VERSION {
            return Err(Problem::UnsupportedVersion(version));
        }
        Ok(Header {
            segment: SegmentId(u64_at(b, 16)),
            first_lsn: Lsn(u64_at(b, 24)),
            len: u64_at(b, 32),
            log_id: u128::from_le_bytes(b[40..56].try_into().unwrap()),
            record_max: u32_at(b, 56),
            grow_to: u64::from(u32_at(b, 12)) << GROW_UNIT_SHIFT,
            version,
        })
    }
}

/// The decoded footer of a sealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// Segment number.
    pub segment: SegmentId,
    /// LSN of the first record.
    pub first_lsn: Lsn,
    /// LSN of the last record.
    pub last_lsn: Lsn,
    /// Number of records.
    pub count: u64,
    /// Offset one past the last frame.
    pub data_end: u64,
    /// CRC-32 of bytes `0..data_end` (header and frames).
    pub data_crc: u32,
}

impl Footer {
    /// The 64 footer bytes.
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut b = [0u8; FOOTER_LEN];
        b[0..8].copy_from_slice(&FOOTER_MAGIC);
        b[8..16].copy_from_slice(&self.segment.0.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_lsn.0.to_le_bytes());
        b[24..32].copy_from_slice(&self.last_lsn.0.to_le_bytes());
        b[32..40].copy_from_slice(&self.count.to_le_bytes());
        b[40..48].copy_from_slice(&self.data_end.to_le_bytes());
        b[48..52].copy_from_slice(&self.data_crc.to_le_bytes());
        let c = crc(&b[0..60]);
        b[60..64].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// Decodes the footer at the end of a segment of `bytes.len()` bytes.
    /// `Ok(None)` when the footer area is all zeros (the segment is not sealed).
    pub fn decode(bytes: &[u8]) -> Result<Option<Footer>, Problem> {
        if bytes.len() < HEADER_LEN + FOOTER_LEN {
            return Err(Problem::Truncated {
                len: bytes.len() as u64,
                expected: (HEADER_LEN + FOOTER_LEN) as u64,
            });
        }
        let b = &bytes[bytes.len() - FOOTER_LEN..];
        if b.iter().all(|&x| x == 0) {
            return Ok(None);
        }
        if b[0..8] != FOOTER_MAGIC {
            return Err(Problem::BadMagic {
                found: b[0..8].try_into().unwrap(),
            });
        }
        let (stored, computed) = (u32_at(b, 60), crc(&b[0..60]));
        if stored != computed {
            return Err(Problem::HeaderCrc {
                what: "segment footer",
                stored,
                computed,
            });
        }
        let f = Footer {
            segment: SegmentId(u64_at(b, 8)),
            first_lsn: Lsn(u64_at(b, 16)),
            last_lsn: Lsn(u64_at(b, 24)),
            count: u64_at(b, 32),
            data_end: u64_at(b, 40),
            data_crc: u32_at(b, 48),
        };
        let data_limit = (bytes.len() - FOOTER_LEN) as u64;
        if f.data_end < DATA_START || f.data_end > data_limit {
            return Err(Problem::Mismatch {
                field: "footer data end",
                expected: data_limit,
                found: f.data_end,
            });
        }
        if f.count == 0 || f.last_lsn.0 < f.first_lsn.0 {
            return Err(Problem::Mismatch {
                field: "footer record count",
                expected: 1,
                found: f.count,
            });
        }
        Ok(Some(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_and_parse() {
        assert_eq!(file_name(SegmentId(42)), "00000000000000000042.seg");
        assert_eq!(
            parse_file_name("00000000000000000042.seg"),
            Some(SegmentId(42))
        );
        assert_eq!(parse_file_name("42.seg"), None);
        assert_eq!(parse_file_name("0000000000000000004x.seg"), None);
    }

    #[test]
    fn header_and_footer_round_trip_and_reject_flips() {
        let h = Header {
            segment: SegmentId(3),
            first_lsn: Lsn(100),
            len: 4096,
            log_id: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
            record_max: 1024,
            version: FORMAT_VERSION,
            grow_to: 0,
        };
        let b = h.encode();
        assert_eq!(Header::decode(&b), Ok(h));
        for bit in 0..HEADER_LEN * 8 {
            let mut bad = b;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(Header::decode(&bad).is_err(), "bit {bit}");
        }
        let f = Footer {
            segment: SegmentId(3),
            first_lsn: Lsn(100),
            last_lsn: Lsn(120),
            count: 21,
            data_end: 1000,
            data_crc: 0xdead_beef,
        };
        let mut seg = vec![0u8; 4096];
        assert_eq!(Footer::decode(&seg), Ok(None));
        seg[4096 - FOOTER_LEN..].copy_from_slice(&f.encode());
        assert_eq!(Footer::decode(&seg), Ok(Some(f)));
        seg[4096 - 10] ^= 4;
        assert!(Footer::decode(&seg).is_err());
    }
}
