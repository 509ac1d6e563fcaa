//! [`Explain`]: what a query read, segment by segment, and why.

use std::fmt;

pub use crate::compact::SegmentPlan;

/// What a query read: one entry per segment, in the order read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Explain {
    /// Per segment.
    pub segments: Vec<SegmentPlan>,
}

impl Explain {
    /// Blocks decompressed, of blocks in the stripes looked at (compacted
    /// segments only).
    pub fn blocks(&self) -> (u64, u64) {
        self.segments
            .iter()
            .filter(|p| p.compacted)
            .fold((0, 0), |(r, t), p| (r + p.blocks_read, t + p.blocks))
    }

    /// zstd frames decompressed, of frames in the blocks read (compacted
    /// segments only).
    pub fn frames(&self) -> (u64, u64) {
        self.segments
            .iter()
            .fold((0, 0), |(d, t), p| (d + p.frames.0, t + p.frames.1))
    }

    /// Chunks of raw segments scanned, of chunks looked at.
    pub fn raw_chunks(&self) -> (u64, u64) {
        self.segments
            .iter()
            .filter(|p| !p.compacted)
            .fold((0, 0), |(r, t), p| (r + p.blocks_read, t + p.blocks))
    }

    /// Rows (compacted and raw) whose columns or frames were looked at.
    pub fn rows(&self) -> u64 {
        self.segments.iter().map(|p| p.rows).sum()
    }
}

impl fmt::Display for Explain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.segments {
            if p.compacted {
                writeln!(
                    f,
                    "segment {} compacted, LSNs {}..={}: read {} of {} blocks ({} bytes, {} rows; {} of {} zstd frames decompressed); skipped {} by type/severity index, {} by time range, {} by block filter, {} by LSN range, {} damaged; {} rows matched on their columns",
                    p.segment, p.lsns.0, p.lsns.1 .0.saturating_sub(1), p.blocks_read, p.blocks, p.bytes_read, p.rows, p.frames.0, p.frames.1,
                    p.skipped_by_key, p.skipped_by_time, p.skipped_by_filter, p.skipped_by_lsn, p.skipped_damaged, p.records
                )?;
            } else {
                writeln!(
                    f,
                    "segment {} raw, LSNs {}..={}: scanned {} of {} chunks ({} bytes, {} records); skipped {} by type/severity, {} by time range, {} by chunk filter, {} by LSN range; {} records matched",
                    p.segment,
                    p.lsns.0,
                    p.lsns.1 .0.saturating_sub(1),
                    p.blocks_read,
                    p.blocks,
                    p.bytes_read,
                    p.rows,
                    p.skipped_by_key,
                    p.skipped_by_time,
                    p.skipped_by_filter,
                    p.skipped_by_lsn,
                    p.records
                )?;
            }
        }
        let (read, total) = self.blocks();
        let (frames, all_frames) = self.frames();
        let (chunks, all_chunks) = self.raw_chunks();
        write!(
            f,
            "total: {read} of {total} compacted blocks read ({frames} of {all_frames} zstd frames decompressed), {chunks} of {all_chunks} raw chunks scanned, {} rows looked at",
            self.rows()
        )
    }
}
