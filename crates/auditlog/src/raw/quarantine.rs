//! The quarantine file: one line per damaged range that `Repair` dropped.
//! See docs/FORMAT.md, "Quarantine file". The damaged bytes stay in the
//! segment (for forensics); readers skip the listed ranges.
//!
//! Line format (ASCII, fields separated by one space), each line led by the
//! CRC-32 (8 hex digits) of the rest of it:
//! `<crc> skip segment=<id> bytes=<start>-<end> next_lsn=<lsn> lost=<a>-<b>|none problem=<text to end of line>`
//! Lines without a CRC (`skip …`, written by earlier versions) are read as
//! they are. A last line cut short (a crash or a full disk while appending)
//! never took effect and is left out; the next append rewrites the file.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::io::Vfs;
use crate::raw::recovery::{Damage, Skip};
use crate::{Lsn, SegmentId};

/// File name of the quarantine file in a log directory.
pub const QUARANTINE_FILE: &str = "QUARANTINE";

/// One quarantined range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The segment it is in.
    pub segment: SegmentId,
    /// The skipped bytes and where reading resumes.
    pub skip: Skip,
    /// The LSNs lost.
    pub lost: Option<(Lsn, Lsn)>,
    /// What was wrong, as text.
    pub problem: String,
    /// A block of a compacted segment (`file=compacted`), not a raw byte range.
    pub compacted: bool,
}

impl Entry {
    /// An entry for damage found by a scan.
    pub fn from_damage(segment: SegmentId, d: &Damage) -> Self {
        Entry {
            segment,
            skip: Skip {
                start: d.start,
                end: d.end,
                next_lsn: d.next_lsn,
            },
            lost: d.lsns_lost,
            problem: d.problem.to_string().replace(['\n', '\r'], " "),
            compacted: false,
        }
    }

    /// The line written to the file (with its newline).
    pub fn to_line(&self) -> String {
        let lost = match self.lost {
            Some((a, b)) => format!("{a}-{b}"),
            None => "none".to_string(),
        };
        let file = if self.compacted {
            " file=compacted"
        } else {
            ""
        };
        let rest = format!(
            "skip segment={}{file} bytes={}-{} next_lsn={} lost={} problem={}",
            self.segment.0, self.skip.start, self.skip.end, self.skip.next_lsn, lost, self.problem
        );
        format!("{:08x} {rest}\n", crc32fast::hash(rest.as_bytes()))
    }

    /// Parses one line (without its newline), checking its CRC if it has one.
    pub fn parse_checked(line: &str) -> std::result::Result<Entry, String> {
        if line.starts_with("skip ") {
            return Entry::parse(line);
        }
        let (crc, rest) = line.split_once(' ').ok_or("expected `CRC skip …`")?;
        let computed = crc32fast::hash(rest.as_bytes());
        if crc.len() != 8 || u32::from_str_radix(crc, 16).ok() != Some(computed) {
            return Err(format!(
                "checksum mismatch (stored {crc}, computed {computed:08x})"
            ));
        }
        Entry::parse(rest)
    }

    /// Parses one line (without its newline).
    pub fn parse(line: &str) -> std::result::Result<Entry, String> {
        let rest = line
            .strip_prefix("skip ")
            .ok_or("line does not start with `skip `")?;
        let (fields, problem) = rest.split_once(" problem=").ok_or("missing `problem=`")?;
        let mut segment = None;
        let mut bytes = None;
        let mut next = None;
        let mut lost = None;
        let mut compacted = false;
        for field in fields.split(' ') {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| format!("bad field `{field}`"))?;
            let num = |s: &str| {
                s.parse::<u64>()
                    .map_err(|_| format!("bad number `{s}` in `{field}`"))
            };
            let pair = |s: &str| -> std::result::Result<(u64, u64), String> {
                let (a, b) = s
                    .split_once('-')
                    .ok_or_else(|| format!("bad range `{field}`"))?;
                Ok((num(a)?, num(b)?))
            };
            match k {
                "segment" => segment = Some(SegmentId(num(v)?)),
                "bytes" => bytes = Some(pair(v)?),
                "next_lsn" => next = Some(Lsn(num(v)?)),
                "file" if v == "compacted" => compacted = true,
                "lost" if v == "none" => lost = Some(None),
                "lost" => lost = Some(Some(pair(v).map(|(a, b)| (Lsn(a), Lsn(b)))?)),
                _ => return Err(format!("unknown field `{k}`")),
            }
        }
        let (start, end) = bytes.ok_or("missing `bytes=`")?;
        if end <= start {
            return Err(format!("empty byte range {start}-{end}"));
        }
        Ok(Entry {
            segment: segment.ok_or("missing `segment=`")?,
            skip: Skip {
                start,
                end,
                next_lsn: next.ok_or("missing `next_lsn=`")?,
            },
            lost: lost.ok_or("missing `lost=`")?,
            problem: problem.to_string(),
            compacted,
        })
    }
}

/// Parses the whole quarantine file. A last line without its newline was
/// cut short and is left out.
pub fn parse_file(path: &Path, bytes: &[u8]) -> Result<Vec<Entry>> {
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let bytes = &bytes[..complete];
    let text = std::str::from_utf8(bytes).map_err(|e| Error::BadQuarantineFile {
        path: path.to_path_buf(),
        line: bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1,
        what: "not UTF-8".into(),
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        out.push(
            Entry::parse_checked(line).map_err(|what| Error::BadQuarantineFile {
                path: path.to_path_buf(),
                line: i + 1,
                what: format!(
                    "{what}; `auditlog repair` finds the damage again if this line is removed"
                ),
            })?,
        );
    }
    Ok(out)
}

/// Name under which a new quarantine file is written before it replaces the old.
pub const QUARANTINE_TMP_FILE: &str = "QUARANTINE.tmp";

/// Appends `lines` to the quarantine file of `dir` durably: the file's
/// data and, since it may have just been created, the directory. A file
/// ending in a line cut short is first rewritten without it (atomically:
/// a temporary file, synced, renamed over it, the directory synced).
pub fn append(vfs: &Arc<dyn Vfs>, dir: &Path, lines: &str) -> Result<()> {
    let path = dir.join(QUARANTINE_FILE);
    let old = match vfs.read_file(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    if old.is_empty() || old.ends_with(b"\n") {
        vfs.append_file(&path, lines.as_bytes())
            .map_err(|e| Error::io("write", &path, e))?;
    } else {
        let keep = old.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut whole = old[..keep].to_vec();
        whole.extend_from_slice(lines.as_bytes());
        let tmp = dir.join(QUARANTINE_TMP_FILE);
        match vfs.remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("remove", &tmp, e))
            }
            _ => {}
        }
        vfs.append_file(&tmp, &whole)
            .map_err(|e| Error::io("write", &tmp, e))?;
        vfs.rename(&tmp, &path)
            .map_err(|e| Error::io("rename", &tmp, e))?;
    }
    vfs.sync_dir(dir)
        .map_err(|e| Error::io("sync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Problem;

    #[test]
    fn lines_round_trip_and_bad_lines_say_where() {
        let d = Damage {
            start: 100,
            end: 300,
            lsns_lost: Some((Lsn(5), Lsn(7))),
            problem: Problem::Zeroed,
            next_lsn: Lsn(8),
        };
        let e = Entry::from_damage(SegmentId(2), &d);
        let line = e.to_line();
        assert_eq!(Entry::parse_checked(line.trim_end()), Ok(e.clone()));
        let file = format!("{line}skip segment=x bytes=1-2 next_lsn=3 lost=none problem=p\n");
        let err = parse_file(Path::new("Q"), file.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        // A line without a CRC (an earlier version's) still reads.
        let old = line.split_once(' ').unwrap().1;
        let alone = parse_file(Path::new("Q"), old.as_bytes()).unwrap();
        assert_eq!(alone, std::slice::from_ref(&e));
        assert_eq!(
            parse_file(Path::new("Q"), format!("{old}{line}").as_bytes()).unwrap(),
            [e.clone(), e.clone()]
        );
        // Any flipped bit of a line is caught by its CRC (or leaves no valid line).
        for bit in 0..(line.len() - 1) * 8 {
            let mut bytes = line.clone().into_bytes();
            bytes[bit / 8] ^= 1 << (bit % 8);
            if let Ok(got) = parse_file(Path::new("Q"), &bytes) {
                assert!(got.is_empty() || got == [e.clone()], "bit {bit}: {got:?}");
            }
        }
        // A last line cut short never took effect.
        let cut = format!("{line}{}", &line[..20]);
        assert_eq!(parse_file(Path::new("Q"), cut.as_bytes()).unwrap(), [e]);
    }
}
