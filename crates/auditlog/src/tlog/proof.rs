//! Inclusion proofs: that one record is in a log, as of a signed
//! checkpoint, checkable without the log (`auditlog prove`,
//! `auditlog verify-proof`). The text form (docs/FORMAT.md):
//!
//! ```text
//! auditlog inclusion proof
//! lsn 1234
//! payload <base64 of the record's payload>
//! path <base64 hash>            (one line per sibling, from the leaf up)
//! event <the event's canonical JSON, as the log names it: not proven>
//!
//! <the signed checkpoint note, verbatim>
//! ```

use std::sync::Arc;

use base64::Engine as _;

use super::note::{Checkpoint, NoteError, SignedNote, Verifier};
use super::store::{self, CHECKPOINTS_FILE, TREE_FILE};
use super::tree::{self, leaf_hash, root_of, Hash, Subtrees, BLOCK, BLOCK_LEVEL};
use crate::engine::Shared;
use crate::error::{Error, Result};
use crate::query::Prefilter;
use crate::Lsn;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const FIRST_LINE: &str = "auditlog inclusion proof";

/// A proof that the record at `lsn`, with `payload`, is in the tree the
/// checkpoint `note` signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The record's LSN.
    pub lsn: u64,
    /// Its payload (the encoded event).
    pub payload: Vec<u8>,
    /// Sibling hashes from the leaf up.
    pub path: Vec<Hash>,
    /// The event as the log names it (for people; not part of the proof).
    pub event: Option<String>,
    /// The signed checkpoint note.
    pub note: String,
}

impl InclusionProof {
    /// The text form.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{FIRST_LINE}\nlsn {}\npayload {}\n",
            self.lsn,
            B64.encode(&self.payload)
        );
        for p in &self.path {
            s.push_str(&format!("path {}\n", B64.encode(p)));
        }
        if let Some(e) = &self.event {
            s.push_str(&format!("event {e}\n"));
        }
        s.push('\n');
        s.push_str(&self.note);
        s
    }

    /// Parses the text form.
    ///
    /// # Errors
    /// Text that is not a proof; never a panic.
    pub fn from_text(text: &str) -> std::result::Result<InclusionProof, NoteError> {
        let bad = |w: &str| NoteError(format!("not an inclusion proof: {w}"));
        let Some((head, note)) = text.split_once("\n\n") else {
            return Err(bad("no blank line before the checkpoint"));
        };
        let mut lines = head.lines();
        if lines.next() != Some(FIRST_LINE) {
            return Err(bad("the first line"));
        }
        let (mut lsn, mut payload, mut path, mut event) = (None, None, Vec::new(), None);
        for line in lines {
            let (k, v) = line.split_once(' ').ok_or_else(|| bad(line))?;
            match k {
                "lsn" => lsn = Some(v.parse::<u64>().map_err(|_| bad("lsn"))?),
                "payload" => payload = Some(B64.decode(v).map_err(|_| bad("payload"))?),
                "path" => path.push(
                    B64.decode(v)
                        .ok()
                        .and_then(|h| Hash::try_from(h).ok())
                        .ok_or_else(|| bad("path"))?,
                ),
                "event" => event = Some(v.to_string()),
                _ => return Err(bad(k)),
            }
        }
        Ok(InclusionProof {
            lsn: lsn.ok_or_else(|| bad("no lsn"))?,
            payload: payload.ok_or_else(|| bad("no payload"))?,
            path,
            event,
            note: note.to_string(),
        })
    }

    /// Checks the proof with the trusted `key`: the checkpoint is signed by
    /// it, and the record hashes up the path to its root. The checkpoint.
    ///
    /// # Errors
    /// What does not hold, in words.
    pub fn verify(&self, key: &Verifier) -> std::result::Result<Checkpoint, NoteError> {
        let note = SignedNote::parse(&self.note)?;
        if !note.verified_by(key) {
            return Err(NoteError(format!(
                "the checkpoint is not signed by key {} (signed by {})",
                key.name(),
                note.signatures
                    .iter()
                    .map(|s| s.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let cp = Checkpoint::from_body(&note.text)?;
        if self.lsn == 0 || self.lsn > cp.size {
            return Err(NoteError(format!(
                "record LSN {} is not among the {} records of the checkpoint",
                self.lsn, cp.size
            )));
        }
        let leaf = leaf_hash(self.lsn, &self.payload);
        if !tree::verify_inclusion(&leaf, self.lsn - 1, cp.size, &self.path, &cp.root) {
            return Err(NoteError(format!(
                "record LSN {} with this payload does not hash to the checkpoint's root",
                self.lsn
            )));
        }
        if let Some(json) = &self.event {
            self.event_matches_payload(json)?;
        }
        Ok(cp)
    }

    /// The `event` line says what the proven payload holds: every field but
    /// the names of the type and of attribute keys (which the payload holds
    /// as ids) is compared.
    fn event_matches_payload(&self, json: &str) -> std::result::Result<(), NoteError> {
        let bad = |w: String| {
            NoteError(format!(
                "the event line does not match the proven record: {w}"
            ))
        };
        let said =
            crate::event::json::from_json(json, &|_| None).map_err(|e| bad(e.to_string()))?;
        let r = crate::event::codec::EventRef::parse(&self.payload)
            .map_err(|e| bad(format!("the payload is not an event: {e}")))?;
        let name = said.event_type.clone();
        let mut proven = r
            .to_event(&|_| Some(name.clone()), &|k| Some(format!("#{k}")))
            .map_err(|e| bad(e.to_string()))?;
        let values = |e: &crate::Event| {
            let mut v: Vec<String> = e.attrs.values().cloned().collect();
            v.sort();
            v
        };
        if values(&proven) != values(&said) {
            return Err(bad("attribute values differ".into()));
        }
        proven.attrs.clone_from(&said.attrs);
        if proven != said {
            return Err(bad(format!("it says {json}")));
        }
        Ok(())
    }
}

/// Hashes of a live log for proving: whole blocks from `TREE`, smaller
/// subtrees from the records.
struct FromLog<'a> {
    shared: &'a Arc<Shared>,
    blocks: Vec<Hash>,
}

impl Subtrees for FromLog<'_> {
    type Error = Error;

    fn subtree(&mut self, start: u64, level: u32) -> Result<Hash> {
        if level >= BLOCK_LEVEL {
            let (a, n) = ((start / BLOCK) as usize, 1usize << (level - BLOCK_LEVEL));
            return self.blocks.get(a..a + n).map(root_of).ok_or_else(|| {
                Error::InvalidOptions(format!(
                    "{TREE_FILE} lacks the hashes of records LSN {}..={}",
                    start + 1,
                    start + (1u64 << level)
                ))
            });
        }
        let (lo, n) = (start + 1, 1u64 << level);
        let mut leaves = Vec::with_capacity(n as usize);
        for r in self.shared.records(Lsn(lo), Arc::new(Prefilter::default())) {
            let r = r?;
            if r.lsn().0 >= lo + n {
                break;
            }
            leaves.push(leaf_hash(r.lsn().0, r.payload()));
        }
        if leaves.len() as u64 != n {
            return Err(Error::InvalidOptions(format!(
                "records LSN {lo}..={} are not all in the log",
                lo + n - 1
            )));
        }
        Ok(root_of(&leaves))
    }
}

/// The proof of record `lsn` against the newest checkpoint in
/// `CHECKPOINTS` that covers it; `event` is its JSON for people.
pub(crate) fn prove(
    shared: &Arc<Shared>,
    lsn: Lsn,
    event: Option<String>,
) -> Result<InclusionProof> {
    let (vfs, dir, log_id) = (shared.vfs(), shared.dir(), shared.log_id());
    let read = |name: &str| {
        store::read(&*vfs, dir, name).map_err(|e| Error::io("read", dir.join(name), e))
    };
    let bytes = read(CHECKPOINTS_FILE)?
        .ok_or_else(|| Error::InvalidOptions("the log has no checkpoint (is it sealed?)".into()))?;
    let (notes, _) = store::decode_checkpoints(&bytes, log_id)
        .map_err(|e| Error::InvalidOptions(e.to_string()))?;
    let (note, cp) = notes
        .iter()
        .rev()
        .filter_map(|n| {
            let cp = Checkpoint::from_body(&SignedNote::parse(n).ok()?.text).ok()?;
            Some((n.clone(), cp))
        })
        .find(|(_, cp)| cp.size >= lsn.0)
        .ok_or_else(|| Error::InvalidOptions(format!("no checkpoint covers LSN {lsn} yet")))?;
    let blocks = match read(TREE_FILE)? {
        Some(b) => {
            store::decode_tree(&b, log_id)
                .map_err(|e| Error::InvalidOptions(e.to_string()))?
                .0
        }
        None => Vec::new(),
    };
    let payload = {
        let mut it = shared.records(lsn, Arc::new(Prefilter::default()));
        match it.next() {
            Some(Ok(r)) if r.lsn() == lsn => r.payload().to_vec(),
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(Error::InvalidOptions(format!(
                    "record LSN {lsn} is not in the log"
                )))
            }
        }
    };
    let mut src = FromLog { shared, blocks };
    let path = tree::inclusion(&mut src, lsn.0 - 1, cp.size)?;
    Ok(InclusionProof {
        lsn: lsn.0,
        payload,
        path,
        event,
        note,
    })
}
