//! The files of a sealed log (docs/FORMAT.md, "Tamper evidence"):
//!
//! - `PUBKEY`: the verifier key checkpoints are signed for, one line. Its
//!   presence says the log is sealed.
//! - `KEY`: the signer key (mode 0600), unless kept elsewhere.
//! - `TREE`: the hash of every complete block of 256 records (the tree's
//!   level-8 nodes): a 24-byte header (`ALTREE\0\x01`, the log id as 16
//!   bytes little endian), then one 36-byte entry per block: the hash, and a
//!   CRC-32 (IEEE) of the block number (8 bytes little endian) and the hash.
//! - `CHECKPOINTS`: every signed checkpoint, in order: a 24-byte header
//!   (`ALCKPT\0\x01`, the log id), then entries of a 4-byte length and a
//!   4-byte CRC-32 of what follows: the note's length (4 bytes), its text,
//!   and the tree's edge inside the last partial block at that size (a
//!   count byte, then per perfect subtree its level byte and hash), with
//!   which the sealer resumes even when retention removed those records.
//!
//! A torn last entry (a crash while appending) is ignored by readers and
//! dropped by the next writer. Pure encoding here; the few reads and
//! writes go through the log's `Vfs`.

use std::path::Path;

use super::tree::Hash;
use crate::io::Vfs;

/// File name of the verifier key.
pub const PUBKEY_FILE: &str = "PUBKEY";
/// File name of the signer key kept beside the log.
pub const KEY_FILE: &str = "KEY";
/// File name of the block hashes.
pub const TREE_FILE: &str = "TREE";
/// File name of the signed checkpoints.
pub const CHECKPOINTS_FILE: &str = "CHECKPOINTS";

const TREE_MAGIC: &[u8; 8] = b"ALTREE\0\x01";
const CKPT_MAGIC: &[u8; 8] = b"ALCKPT\0\x01";
const HEADER: usize = 24;
const TREE_ENTRY: usize = 36;
/// Longest checkpoint note stored.
const MAX_NOTE: usize = 64 << 10;

/// A file of a sealed log that is not what it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {what}")]
pub struct StoreError {
    /// The file's name.
    pub file: &'static str,
    /// What is wrong, and where.
    pub what: String,
}

fn header(magic: &[u8; 8], log_id: u128) -> Vec<u8> {
    let mut h = magic.to_vec();
    h.extend_from_slice(&log_id.to_le_bytes());
    h
}

fn check_header(
    file: &'static str,
    bytes: &[u8],
    magic: &[u8; 8],
    log_id: u128,
) -> Result<(), StoreError> {
    let bad = |what: String| Err(StoreError { file, what });
    if bytes.len() < HEADER || &bytes[..8] != magic {
        return bad("not a file of this kind (bad header)".into());
    }
    let id = u128::from_le_bytes(bytes[8..24].try_into().expect("16 bytes"));
    if id != log_id {
        return bad(format!(
            "belongs to another log ({id:032x}, this one is {log_id:032x})"
        ));
    }
    Ok(())
}

/// The log id a `CHECKPOINTS` file's header names, if it has one.
pub fn checkpoints_log_id(bytes: &[u8]) -> Option<u128> {
    (bytes.len() >= HEADER && &bytes[..8] == CKPT_MAGIC)
        .then(|| u128::from_le_bytes(bytes[8..24].try_into().expect("16 bytes")))
}

/// The bytes of a new `TREE` file with no entry.
pub fn tree_header(log_id: u128) -> Vec<u8> {
    header(TREE_MAGIC, log_id)
}

/// The entry for block `n`.
pub fn tree_entry(n: u64, hash: &Hash) -> [u8; TREE_ENTRY] {
    let mut e = [0u8; TREE_ENTRY];
    e[..32].copy_from_slice(hash);
    let mut c = crc32fast::Hasher::new();
    c.update(&n.to_le_bytes());
    c.update(hash);
    e[32..].copy_from_slice(&c.finalize().to_le_bytes());
    e
}

/// The block hashes a `TREE` file holds, and whether its end was torn.
///
/// # Errors
/// A bad header, another log's file, or an entry whose CRC fails (which
/// is damage or tampering, not a torn end: it is not the last).
pub fn decode_tree(bytes: &[u8], log_id: u128) -> Result<(Vec<Hash>, bool), StoreError> {
    check_header(TREE_FILE, bytes, TREE_MAGIC, log_id)?;
    let body = &bytes[HEADER..];
    let whole = body.len() / TREE_ENTRY;
    let mut out = Vec::with_capacity(whole);
    for (n, e) in body.chunks_exact(TREE_ENTRY).enumerate() {
        let hash: Hash = e[..32].try_into().expect("32 bytes");
        if tree_entry(n as u64, &hash) != e {
            return Err(StoreError {
                file: TREE_FILE,
                what: format!(
                    "the entry of block {n} (records LSN {}..={}) fails its checksum",
                    n as u64 * 256 + 1,
                    n as u64 * 256 + 256
                ),
            });
        }
        out.push(hash);
    }
    Ok((out, !body.len().is_multiple_of(TREE_ENTRY)))
}

/// The bytes of a new `CHECKPOINTS` file with no entry.
pub fn checkpoints_header(log_id: u128) -> Vec<u8> {
    header(CKPT_MAGIC, log_id)
}

/// The perfect subtrees, (level, hash), that make up the leaves of a
/// partial block: the tree's edge inside it.
pub type Edge = Vec<(u32, Hash)>;

/// The entry of one signed note (with no edge).
pub fn checkpoint_entry(note: &str) -> Vec<u8> {
    checkpoint_entry_with(note, &[])
}

/// The entry of one signed note and the edge of its tree.
pub fn checkpoint_entry_with(note: &str, edge: &[(u32, Hash)]) -> Vec<u8> {
    let mut body = (note.len() as u32).to_le_bytes().to_vec();
    body.extend_from_slice(note.as_bytes());
    body.push(edge.len() as u8);
    for (level, h) in edge {
        body.push(*level as u8);
        body.extend_from_slice(h);
    }
    let mut e = (body.len() as u32).to_le_bytes().to_vec();
    e.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    e.extend_from_slice(&body);
    e
}

/// The notes a `CHECKPOINTS` file holds, and whether its end was torn.
///
/// # Errors
/// A bad header, another log's file, or an entry that is not the last and
/// fails its CRC or length.
pub fn decode_checkpoints(bytes: &[u8], log_id: u128) -> Result<(Vec<String>, bool), StoreError> {
    let (entries, torn) = decode_checkpoint_entries(bytes, log_id)?;
    Ok((entries.into_iter().map(|(n, _)| n).collect(), torn))
}

/// The notes a `CHECKPOINTS` file holds with their edges, and whether its
/// end was torn.
///
/// # Errors
/// As [`decode_checkpoints`].
pub fn decode_checkpoint_entries(
    bytes: &[u8],
    log_id: u128,
) -> Result<(Vec<(String, Edge)>, bool), StoreError> {
    check_header(CHECKPOINTS_FILE, bytes, CKPT_MAGIC, log_id)?;
    let mut at = HEADER;
    let mut out = Vec::new();
    while at < bytes.len() {
        let bad = |what: String| StoreError {
            file: CHECKPOINTS_FILE,
            what: format!("entry {} at byte {at}: {what}", out.len() + 1),
        };
        let Some(head) = bytes.get(at..at + 8) else {
            return Ok((out, true));
        };
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        if len > MAX_NOTE {
            return Err(bad(format!("a length of {len} bytes")));
        }
        let Some(body) = bytes.get(at + 8..at + 8 + len) else {
            return Ok((out, true));
        };
        if crc32fast::hash(body) != crc {
            if at + 8 + len == bytes.len() {
                return Ok((out, true));
            }
            return Err(bad("fails its checksum".into()));
        }
        let shape = || bad("its parts do not add up to its length".into());
        let n =
            u32::from_le_bytes(body.get(..4).ok_or_else(shape)?.try_into().expect("4")) as usize;
        let note = body.get(4..4 + n).ok_or_else(shape)?;
        let text = std::str::from_utf8(note).map_err(|_| bad("not UTF-8".into()))?;
        let rest = &body[4 + n..];
        let count = usize::from(*rest.first().ok_or_else(shape)?);
        if rest.len() != 1 + count * 33 {
            return Err(shape());
        }
        let edge = rest[1..]
            .chunks_exact(33)
            .map(|c| (u32::from(c[0]), c[1..].try_into().expect("32 bytes")))
            .collect();
        out.push((text.to_string(), edge));
        at += 8 + len;
    }
    Ok((out, false))
}

/// Reads a file of the log; `None` if missing.
pub(crate) fn read(vfs: &dyn Vfs, dir: &Path, name: &str) -> std::io::Result<Option<Vec<u8>>> {
    match vfs.read_file(&dir.join(name)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces a file of the log with `bytes`, durably (a new file renamed
/// over the old).
pub(crate) fn replace(vfs: &dyn Vfs, dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let _ = vfs.remove_file(&tmp);
    vfs.append_file(&tmp, bytes)?;
    vfs.rename(&tmp, &dir.join(name))?;
    vfs.sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_and_checkpoint_files_decode_what_they_encode_and_tolerate_a_torn_end() {
        let mut t = tree_header(7);
        for n in 0..3u64 {
            t.extend_from_slice(&tree_entry(n, &[n as u8; 32]));
        }
        let (hashes, torn) = decode_tree(&t, 7).unwrap();
        assert_eq!((hashes.len(), torn), (3, false));
        assert!(decode_tree(&t, 8).unwrap_err().what.contains("another log"));
        let (h, torn) = decode_tree(&t[..t.len() - 5], 7).unwrap();
        assert_eq!((h.len(), torn), (2, true));
        let mut bad = t.clone();
        bad[HEADER + 3] ^= 1;
        assert!(decode_tree(&bad, 7).unwrap_err().what.contains("block 0"));

        let mut c = checkpoints_header(7);
        c.extend(checkpoint_entry("one\n\n— k AAAA\n"));
        c.extend(checkpoint_entry("two\n\n— k BBBB\n"));
        let (notes, torn) = decode_checkpoints(&c, 7).unwrap();
        assert_eq!((notes.len(), torn), (2, false));
        let (notes, torn) = decode_checkpoints(&c[..c.len() - 3], 7).unwrap();
        assert_eq!((notes.len(), torn), (1, true));
        let mut bad = c.clone();
        bad[HEADER + 9] ^= 1;
        assert!(decode_checkpoints(&bad, 7).is_err());
    }
}
