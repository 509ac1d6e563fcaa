//! A block's body on disk: its raw columnar bytes ([`super::format`])
//! compressed, in one zstd frame (format versions 1 and 2) or, from version
//! 3, in a few frames that each hold whole columns, so a reader decompresses
//! only the frames holding the columns its filter reads, and the rest only
//! for a block where a row matches.
//!
//! ```text
//! version 3:     F (u8, 1..=18) | F × (compressed length u32, raw length u32) | the F zstd frames
//! versions 1, 2: one zstd frame (its first byte is 0x28, never a valid F)
//! ```
//!
//! The raw block is the frames' decompressed bytes one after the other.
//! Readers do not depend on where the frames are cut; the writer cuts at
//! column boundaries ([`FRAME_STARTS`]).

use std::io::Cursor;

use zstd::bulk::{Compressor, Decompressor};

use super::format::{self, COLUMNS};
use crate::error::Problem;

/// The column each frame of a block written now starts at: the row count,
/// the first LSN, the LSN, key, time and presence columns and `source` (what
/// every filter reads, and a filter on the source reads nothing else); the
/// client address; the three actor fields; everything else.
const FRAME_STARTS: [usize; 4] = [0, 5, 6, 9];

/// The most frames a body may have.
pub const MAX_FRAMES: usize = COLUMNS;

/// Bytes of a version-3 body's table before its frames.
fn table_len(frames: usize) -> usize {
    1 + 8 * frames
}

fn bad(what: impl Into<String>) -> Problem {
    Problem::BadCompacted(what.into())
}

/// The body of the raw block `raw` (as [`format::encode_block`] makes it):
/// a version-3 body whose frames start at the columns of [`FRAME_STARTS`].
pub fn compress(raw: &[u8], c: &mut Compressor<'_>) -> std::io::Result<Vec<u8>> {
    let starts = format::column_starts(raw)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a raw block"))?;
    let mut cuts: Vec<usize> = FRAME_STARTS[1..].iter().map(|&c| starts[c]).collect();
    cuts.push(raw.len());
    let mut out = vec![0u8; table_len(cuts.len())];
    out[0] = cuts.len() as u8;
    let mut from = 0;
    for (i, &to) in cuts.iter().enumerate() {
        let frame = c.compress(&raw[from..to])?;
        let at = 1 + 8 * i;
        out[at..at + 4].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        out[at + 4..at + 8].copy_from_slice(&((to - from) as u32).to_le_bytes());
        out.extend_from_slice(&frame);
        from = to;
    }
    Ok(out)
}

/// A block's body being decompressed, a frame at a time.
#[derive(Debug)]
pub struct Body<'a> {
    /// Each frame's compressed bytes and raw length.
    frames: [(&'a [u8], u32); MAX_FRAMES],
    count: usize,
    /// Frames decompressed so far.
    next: usize,
    /// Their bytes.
    raw: Vec<u8>,
    raw_len: usize,
}

impl<'a> Body<'a> {
    /// The frames of the compressed body `comp` of a block whose header says
    /// it decompresses to `raw_len` bytes: checks the table (lengths that
    /// add up), decompresses nothing.
    pub fn parse(comp: &'a [u8], raw_len: u32) -> Result<Body<'a>, Problem> {
        if raw_len > format::MAX_BLOCK_RAW {
            return Err(bad(format!("block claims {raw_len} raw bytes")));
        }
        let mut frames = [(&[][..], 0u32); MAX_FRAMES];
        let count = match comp.first() {
            Some(0x28) => {
                frames[0] = (comp, raw_len);
                1
            }
            Some(&f) if (1..=MAX_FRAMES as u8).contains(&f) => {
                let f = usize::from(f);
                let table = comp
                    .get(1..table_len(f))
                    .ok_or_else(|| bad("block frame table past its end"))?;
                let mut at = table_len(f);
                let mut total = 0u64;
                for (i, e) in table.chunks_exact(8).enumerate() {
                    let c = u32::from_le_bytes(e[..4].try_into().expect("4 bytes")) as usize;
                    let r = u32::from_le_bytes(e[4..].try_into().expect("4 bytes"));
                    let bytes = at
                        .checked_add(c)
                        .and_then(|end| comp.get(at..end))
                        .ok_or_else(|| bad(format!("block frame {i} past the block's end")))?;
                    frames[i] = (bytes, r);
                    at += c;
                    total += u64::from(r);
                }
                if at != comp.len() || total != u64::from(raw_len) {
                    return Err(bad(format!(
                        "block frames hold {at} of {} bytes and {total} of {raw_len} raw bytes",
                        comp.len()
                    )));
                }
                f
            }
            first => {
                return Err(bad(format!(
                    "block body starts with {first:02x?}, neither a frame count nor a zstd frame"
                )))
            }
        };
        Ok(Body {
            frames,
            count,
            next: 0,
            raw: Vec::new(),
            raw_len: raw_len as usize,
        })
    }

    /// A body already decompressed (for tests and fuzzing the decoders).
    pub fn decompressed(raw: Vec<u8>) -> Body<'static> {
        Body {
            frames: [(&[][..], 0u32); MAX_FRAMES],
            count: 0,
            next: 0,
            raw_len: raw.len(),
            raw,
        }
    }

    /// Frames decompressed so far, and frames in all.
    pub fn frames(&self) -> (usize, usize) {
        (self.next, self.count)
    }

    /// The raw bytes decompressed so far: a prefix of the block.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Decompresses the next frame; `false` if every frame is.
    pub fn decompress_next(&mut self, d: &mut Decompressor<'_>) -> Result<bool, Problem> {
        let Some(&(frame, len)) = self.frames[..self.count].get(self.next) else {
            return Ok(false);
        };
        let n = self.next;
        if self.raw.capacity() == 0 {
            self.raw.reserve_exact(self.raw_len);
        }
        let start = self.raw.len();
        let mut out = Cursor::new(&mut self.raw);
        out.set_position(start as u64);
        let wrote = d
            .decompress_to_buffer(frame, &mut out)
            .map_err(|e| bad(format!("block frame {n} does not decompress: {e}")))?;
        if wrote != len as usize || self.raw.len() != start + wrote {
            return Err(bad(format!(
                "block frame {n} decompresses to {wrote} bytes, not {len}"
            )));
        }
        self.next += 1;
        Ok(true)
    }

    /// Decompresses every frame left; the raw block.
    pub fn decompress_all(&mut self, d: &mut Decompressor<'_>) -> Result<&[u8], Problem> {
        while self.decompress_next(d)? {}
        if self.raw.len() != self.raw_len {
            return Err(bad(format!(
                "block decompresses to {} bytes, not {}",
                self.raw.len(),
                self.raw_len
            )));
        }
        Ok(&self.raw)
    }

    /// The raw block, decompressed whole.
    pub fn into_raw(mut self, d: &mut Decompressor<'_>) -> Result<Vec<u8>, Problem> {
        self.decompress_all(d)?;
        Ok(self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compact::format::{encode_block, RowIn};
    use crate::event::{codec, Event, Timestamp};
    use crate::{Lsn, Severity};

    fn raw_block() -> Vec<u8> {
        let payloads: Vec<Vec<u8>> = (0..200u32)
            .map(|i| {
                let mut e = Event::new(Timestamp(i64::from(i) * 1000), "T", Severity::Info);
                e.actor = Some(format!("user{}", i % 7));
                e.source = Some("web".into());
                e.ip = (i % 3 == 0).then(|| std::net::IpAddr::from([10, 0, 0, i as u8]));
                let mut p = Vec::new();
                codec::encode(&e, 1 + (i % 4) as u16, &mut |_| 0, &mut p);
                p
            })
            .collect();
        let rows: Vec<RowIn<'_>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| RowIn::new(Lsn(10 + i as u64), p))
            .collect();
        encode_block(&rows)
    }

    #[test]
    fn a_body_decompresses_a_frame_at_a_time_to_the_raw_block() {
        let raw = raw_block();
        let body = compress(&raw, &mut Compressor::new(3).unwrap()).unwrap();
        assert_eq!(usize::from(body[0]), FRAME_STARTS.len());
        let mut d = Decompressor::new().unwrap();
        let mut b = Body::parse(&body, raw.len() as u32).unwrap();
        let starts = format::column_starts(&raw).unwrap();
        assert!(b.decompress_next(&mut d).unwrap());
        // The first frame ends where the client address column starts.
        assert_eq!(b.raw(), &raw[..starts[FRAME_STARTS[1]]]);
        assert_eq!(b.decompress_all(&mut d).unwrap(), &raw[..]);
        assert!(!b.decompress_next(&mut d).unwrap());
        // A version-2 body (one frame) reads the same.
        let one = zstd::bulk::compress(&raw, 3).unwrap();
        let b = Body::parse(&one, raw.len() as u32).unwrap();
        assert_eq!(b.into_raw(&mut d).unwrap(), raw);
    }

    #[test]
    fn a_body_whose_table_or_frames_do_not_add_up_is_refused() {
        let raw = raw_block();
        let body = compress(&raw, &mut Compressor::new(3).unwrap()).unwrap();
        let mut d = Decompressor::new().unwrap();
        let n = raw.len() as u32;
        assert!(
            Body::parse(&body, n + 1).is_err(),
            "raw lengths add up to the header's"
        );
        assert!(Body::parse(&body[..body.len() - 1], n).is_err());
        assert!(Body::parse(&[], n).is_err());
        assert!(Body::parse(&[0], n).is_err());
        assert!(Body::parse(&[19], n).is_err());
        // A frame whose stated raw length is not what it decompresses to.
        let mut wrong = body.clone();
        let r0 = u32::from_le_bytes(wrong[5..9].try_into().unwrap());
        let r1 = u32::from_le_bytes(wrong[13..17].try_into().unwrap());
        wrong[5..9].copy_from_slice(&(r0 - 1).to_le_bytes());
        wrong[13..17].copy_from_slice(&(r1 + 1).to_le_bytes());
        let b = Body::parse(&wrong, n).unwrap();
        assert!(b.into_raw(&mut d).is_err());
        // Every cut and every flipped byte: an error or the block, no panic.
        for cut in 0..body.len() {
            if let Ok(b) = Body::parse(&body[..cut], n) {
                let _ = b.into_raw(&mut d);
            }
        }
        for at in 0..body.len() {
            let mut flipped = body.clone();
            flipped[at] ^= 0x5a;
            if let Ok(b) = Body::parse(&flipped, n) {
                let _ = b.into_raw(&mut d);
            }
        }
    }
}
