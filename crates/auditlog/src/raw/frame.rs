//! Record frames: `len | crc | lsn | payload`. See docs/FORMAT.md, "Frame".

use crate::error::Problem;
use crate::Lsn;

/// Frame header: payload length (u32 LE) | CRC-32 (u32 LE) | LSN (u64 LE).
pub const FRAME_HEADER_LEN: usize = 16;
const _: () = assert!(FRAME_HEADER_LEN == 4 + 4 + 8);

/// The CRC-32/IEEE (crc32fast) of a frame: over the length field, the LSN
/// field and the payload, in that order (everything but the CRC field).
pub fn frame_crc(header: &[u8; FRAME_HEADER_LEN], payload: &[u8]) -> u32 {
    // `Hasher::new` asks the CPU for its features every time: a frame is
    // checked at every open and read, so the answer is kept.
    static NEW: std::sync::LazyLock<crc32fast::Hasher> =
        std::sync::LazyLock::new(crc32fast::Hasher::new);
    let mut h = NEW.clone();
    h.update(&header[0..4]);
    h.update(&header[8..16]);
    h.update(payload);
    h.finalize()
}

/// Encodes the header of the frame holding `payload` at `lsn`.
pub fn encode_header(lsn: Lsn, payload: &[u8]) -> [u8; FRAME_HEADER_LEN] {
    let len = u32::try_from(payload.len()).expect("payload length checked against the maximum");
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[0..4].copy_from_slice(&len.to_le_bytes());
    h[8..16].copy_from_slice(&lsn.0.to_le_bytes());
    let crc = frame_crc(&h, payload);
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A frame decoded in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    /// The record's LSN.
    pub lsn: Lsn,
    /// The payload, borrowed from the segment bytes.
    pub payload: &'a [u8],
    /// Offset of the byte after this frame.
    pub next: u64,
}

/// The header fields of the frame at `offset`, unchecked except for bounds:
/// `(payload_len, stored_crc, lsn)`; `None` if fewer than 16 bytes remain before `limit`.
pub fn peek(bytes: &[u8], offset: u64, limit: u64) -> Option<(u32, u32, u64)> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(FRAME_HEADER_LEN)?;
    if end as u64 > limit || end > bytes.len() {
        return None;
    }
    let h = &bytes[start..end];
    Some((
        u32::from_le_bytes(h[0..4].try_into().unwrap()),
        u32::from_le_bytes(h[4..8].try_into().unwrap()),
        u64::from_le_bytes(h[8..16].try_into().unwrap()),
    ))
}

/// Decodes and verifies the frame at `offset`, which must end at or before
/// `limit` and carry at most `payload_max` bytes. Any failure is a [`Problem`].
pub fn decode(
    bytes: &[u8],
    offset: u64,
    limit: u64,
    payload_max: u32,
) -> Result<FrameRef<'_>, Problem> {
    decode_with(bytes, offset, limit, payload_max, true)
}

/// [`decode`] of a frame a scan of these bytes has already checked against
/// its CRC: everything but the CRC is checked again.
pub(crate) fn decode_checked_before(
    bytes: &[u8],
    offset: u64,
    limit: u64,
    payload_max: u32,
) -> Result<FrameRef<'_>, Problem> {
    decode_with(bytes, offset, limit, payload_max, false)
}

fn decode_with(
    bytes: &[u8],
    offset: u64,
    limit: u64,
    payload_max: u32,
    check_crc: bool,
) -> Result<FrameRef<'_>, Problem> {
    let limit = limit.min(bytes.len() as u64);
    let room = limit.saturating_sub(offset);
    let Some((len, stored, lsn)) = peek(bytes, offset, limit) else {
        return Err(Problem::LengthOutOfRange { len: 0, max: room });
    };
    if len == 0 && stored == 0 && lsn == 0 {
        return Err(Problem::Zeroed);
    }
    let max = room
        .saturating_sub(FRAME_HEADER_LEN as u64)
        .min(u64::from(payload_max));
    if u64::from(len) > max {
        return Err(Problem::LengthOutOfRange { len, max });
    }
    let start = offset as usize;
    let header: &[u8; FRAME_HEADER_LEN] =
        bytes[start..start + FRAME_HEADER_LEN].try_into().unwrap();
    let payload = &bytes[start + FRAME_HEADER_LEN..start + FRAME_HEADER_LEN + len as usize];
    if check_crc {
        let computed = frame_crc(header, payload);
        if computed != stored {
            return Err(Problem::FrameCrc { stored, computed });
        }
    }
    if lsn == 0 {
        return Err(Problem::LsnMismatch {
            expected: Lsn(1),
            found: Lsn(0),
        });
    }
    Ok(FrameRef {
        lsn: Lsn(lsn),
        payload,
        next: offset + (FRAME_HEADER_LEN as u64) + u64::from(len),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_bit_flip_is_caught() {
        let payload = b"hello audit";
        let h = encode_header(Lsn(7), payload);
        let mut buf = h.to_vec();
        buf.extend_from_slice(payload);
        let f = decode(&buf, 0, buf.len() as u64, 1024).unwrap();
        assert_eq!(
            (f.lsn, f.payload, f.next),
            (Lsn(7), &payload[..], buf.len() as u64)
        );
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode(&bad, 0, bad.len() as u64, 1024).is_err(),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn the_checksum_is_crc32_ieee_as_docs_format_says() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn zeros_and_short_input_are_errors() {
        assert_eq!(decode(&[0; 64], 0, 64, 1024), Err(Problem::Zeroed));
        assert!(decode(&[1; 8], 0, 8, 1024).is_err());
        let h = encode_header(Lsn(1), &[9; 100]);
        assert!(matches!(
            decode(&h, 0, 16, 1024),
            Err(Problem::LengthOutOfRange { len: 100, max: 0 })
        ));
    }
}
