//! Building a compacted segment's bytes from a raw segment's records (pure:
//! the compactor writes the result).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::bloom;
use super::format::{
    encode_block, BlockMeta, Header, Index, KeyEntry, Posting, RowIn, StripeMeta, BLOCK_MAGIC,
    HEADER_LEN, OPAQUE,
};
use crate::event::codec;
use crate::{Lsn, SegmentId};

/// How records are grouped and compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Target raw bytes of payload per block.
    pub block_bytes: usize,
    /// Records per stripe (records are sorted by type inside a stripe).
    pub stripe_rows: usize,
    /// zstd level.
    pub level: i32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            block_bytes: 16 << 10,
            stripe_rows: 128 << 10,
            level: 3,
        }
    }
}

/// A built compacted segment.
#[derive(Debug)]
pub struct Built {
    /// The whole file.
    pub bytes: Vec<u8>,
    /// Bytes of the index.
    pub index_len: usize,
    /// Blocks written.
    pub blocks: usize,
}

/// Builds the compacted form of segment `segment` of the log tagged
/// `log_tag`, which covers LSNs `first_lsn..next_lsn` and holds the
/// records `records` yields (in LSN order, inside that range). Only one
/// stripe of records is held at a time, so memory stays bounded by the
/// stripe size (and the compressed output, for which room for a fifth of
/// `raw_bytes`, the records' bytes, is taken at once: growing it by
/// doubling would hold two copies at the end).
#[allow(clippy::too_many_arguments)]
pub fn build<E: From<std::io::Error>>(
    log_tag: u32,
    segment: SegmentId,
    first_lsn: Lsn,
    next_lsn: Lsn,
    records: &mut dyn Iterator<Item = Result<(Lsn, Bytes), E>>,
    raw_bytes: u64,
    p: &Params,
) -> Result<Built, E> {
    let guess = usize::try_from(raw_bytes / 5).unwrap_or(0) + (64 << 10);
    let mut bytes = Vec::with_capacity(guess);
    bytes.resize(HEADER_LEN, 0);
    let mut index = Index::default();
    let mut postings: BTreeMap<(u16, u8), Vec<Posting>> = BTreeMap::new();
    let stripe_rows = p.stripe_rows.max(1);
    let mut count = 0u64;
    let mut stripe_first = first_lsn;
    let mut compressor = zstd::bulk::Compressor::new(p.level)?;
    let mut held: Vec<(Lsn, Bytes)> = Vec::with_capacity(stripe_rows.min(1 << 16));
    let mut lookahead: Option<(Lsn, Bytes)> = None;
    loop {
        held.clear();
        if let Some(r) = lookahead.take() {
            held.push(r);
        }
        while held.len() < stripe_rows {
            match records.next() {
                Some(r) => held.push(r?),
                None => break,
            }
        }
        if held.len() == stripe_rows {
            lookahead = records.next().transpose()?;
        }
        count += held.len() as u64;
        debug_assert!(held.windows(2).all(|w| w[0].0 < w[1].0));
        let stripe_next = lookahead.as_ref().map_or(next_lsn, |r| r.0);
        if stripe_next <= stripe_first {
            break; // nothing left to cover
        }
        let stripe_no = index.stripes.len() as u32;
        let first_block = index.blocks.len() as u32;
        let mut rows: Vec<RowIn<'_>> = held.iter().map(|(l, b)| RowIn::new(*l, b)).collect();
        let stripe = &mut rows[..];
        // By key, then actor: a key's rows stay together (its postings), and
        // one actor's rows share a few blocks, which their filters name.
        stripe.sort_unstable_by(|a, b| {
            (a.type_id, a.severity, a.actor, a.lsn).cmp(&(b.type_id, b.severity, b.actor, b.lsn))
        });
        let mut i = 0;
        while i < stripe.len() {
            // Cut at the target size, or at a change of key past half of it.
            let mut size = 0;
            let mut j = i;
            while j < stripe.len() {
                let key_change = j > i
                    && (stripe[j].type_id, stripe[j].severity)
                        != (stripe[j - 1].type_id, stripe[j - 1].severity);
                if size >= p.block_bytes || (key_change && size >= p.block_bytes / 2) {
                    break;
                }
                size += stripe[j].payload.len();
                j += 1;
            }
            let block_rows = &stripe[i..j];
            let block_no = index.blocks.len() as u32;
            let raw = encode_block(block_rows);
            let comp = super::body::compress(&raw, &mut compressor)?;
            let offset = bytes.len() as u64;
            bytes.extend_from_slice(BLOCK_MAGIC);
            bytes.extend_from_slice(&(comp.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&(raw.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&crc32fast::hash(&comp).to_le_bytes());
            bytes.extend_from_slice(&comp);
            let mut filter = bloom::Builder::default();
            for r in block_rows.iter().filter(|r| r.severity != OPAQUE) {
                if let Some((_, fields)) = codec::split(r.payload) {
                    filter.insert_row(&fields);
                }
            }
            let filter = filter.finish();
            let start = index.filter_data.len() as u32;
            index.filter_data.extend_from_slice(&filter);
            index.filters.push(start..index.filter_data.len() as u32);
            let times = block_rows.iter().filter(|r| r.severity != OPAQUE);
            index.blocks.push(BlockMeta {
                offset,
                comp_len: comp.len() as u32,
                raw_len: raw.len() as u32,
                rows: block_rows.len() as u32,
                stripe: stripe_no,
                min_lsn: block_rows.iter().map(|r| r.lsn).min().expect("rows"),
                max_lsn: block_rows.iter().map(|r| r.lsn).max().expect("rows"),
                min_time: times.clone().map(|r| r.time).min().unwrap_or(i64::MAX),
                max_time: times.map(|r| r.time).max().unwrap_or(i64::MIN),
            });
            let mut k = 0;
            while k < block_rows.len() {
                let key = (block_rows[k].type_id, block_rows[k].severity);
                let run = block_rows[k..]
                    .iter()
                    .take_while(|r| (r.type_id, r.severity) == key)
                    .count();
                postings.entry(key).or_default().push(Posting {
                    block: block_no,
                    first_row: k as u32,
                    rows: run as u32,
                });
                k += run;
            }
            i = j;
        }
        index.stripes.push(StripeMeta {
            first_lsn: stripe_first,
            next_lsn: stripe_next,
            first_block,
            blocks: index.blocks.len() as u32 - first_block,
        });
        stripe_first = stripe_next;
        if lookahead.is_none() && stripe_first >= next_lsn {
            break;
        }
    }
    let records = count;
    index.keys = postings
        .into_iter()
        .map(|((type_id, severity), postings)| KeyEntry {
            type_id,
            severity,
            postings,
        })
        .collect();
    let index_offset = bytes.len() as u64;
    let encoded = index.encode();
    bytes.extend_from_slice(&encoded);
    let header = Header {
        segment,
        first_lsn,
        next_lsn,
        records,
        index_offset,
        index_len: encoded.len() as u32,
        log_tag,
        version: super::format::VERSION,
    };
    bytes[..HEADER_LEN].copy_from_slice(&header.encode());
    Ok(Built {
        bytes,
        index_len: encoded.len(),
        blocks: index.blocks.len(),
    })
}
