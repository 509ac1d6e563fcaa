//! Everything tamper evidence reads: signed notes, checkpoints, keys, the
//! TREE and CHECKPOINTS files, and inclusion proofs. Never a panic; what
//! parses holds together (a checkpoint prints back to itself, a proof
//! prints back to one that parses the same).
#![no_main]

use auditlog::format::{note, sealed_files, tree};
use auditlog::{Checkpoint, InclusionProof, SealKey, SignedNote};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let _ = sealed_files::decode_tree(rest, 7);
            let _ = sealed_files::decode_checkpoint_entries(rest, 7);
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(n) = SignedNote::parse(text) {
                if let Ok(c) = Checkpoint::from_body(&n.text) {
                    assert_eq!(Checkpoint::from_body(&c.body()).unwrap(), c);
                }
                let key = SealKey::from_seed("fuzz", [3; 32]);
                let _ = n.verified_by(&key.verifier());
            }
            let _ = note::Verifier::from_text(text);
            let _ = SealKey::from_text(text);
            if let Ok(p) = InclusionProof::from_text(text) {
                let back = InclusionProof::from_text(&p.to_text()).expect("our own text parses");
                assert_eq!(back, p);
                let _ = p.verify(&SealKey::from_seed("fuzz", [3; 32]).verifier());
                let _ = tree::verify_inclusion(
                    &[0; 32],
                    p.lsn,
                    p.lsn.saturating_add(1),
                    &p.path,
                    &[0; 32],
                );
            }
        }
    }
});
