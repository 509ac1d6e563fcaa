//! Signed checkpoints in the C2SP forms: a checkpoint (tlog-checkpoint)
//! is the text `<origin>\n<tree size>\n<base64 root>\n`, signed as a note
//! (signed-note): the text, a blank line, then one line per signature,
//! `— <key name> <base64(key hash ‖ Ed25519 signature)>`. Keys are written
//! as signed-note keys: `<name>+<hash>+<base64(0x01 ‖ public key)>` to
//! verify, `PRIVATE+KEY+<name>+<hash>+<base64(0x01 ‖ seed)>` to sign, where
//! the hash is the first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public
//! key), in hex. Pure: parsing never panics.

use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::tree::Hash;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// The signature algorithm byte of Ed25519 in signed-note keys.
const ED25519: u8 = 0x01;
/// Longest note or key text accepted.
const MAX_TEXT: usize = 64 << 10;

/// Text that is not a checkpoint, a note or a key, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoteError(pub String);

fn err<T>(what: impl Into<String>) -> Result<T, NoteError> {
    Err(NoteError(what.into()))
}

/// A key name: printable, no spaces or `+`, not empty.
fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty()
        || name.len() > 256
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
    {
        return err(format!(
            "{name:?} is not a key name (printable, no spaces or `+`)"
        ));
    }
    Ok(())
}

fn key_hash(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn hex4(h: [u8; 4]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key that signs checkpoints.
#[derive(Clone)]
pub struct SealKey {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("SealKey")
            .field("name", &self.name)
            .field("verifier", &self.verifier().to_string())
            .finish()
    }
}

impl SealKey {
    /// A new key named `name`, from the operating system's random source.
    ///
    /// # Errors
    /// A bad name; `/dev/urandom` unreadable.
    pub fn generate(name: &str) -> Result<SealKey, NoteError> {
        check_name(name)?;
        let mut seed = [0u8; 32];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom")
                .map_err(|e| NoteError(format!("/dev/urandom: {e}")))?,
            &mut seed,
        )
        .map_err(|e| NoteError(format!("/dev/urandom: {e}")))?;
        Ok(SealKey::from_seed(name, seed))
    }

    /// The key with this name and 32-byte seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> SealKey {
        SealKey {
            name: name.to_string(),
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public half, which verifies what this key signs.
    pub fn verifier(&self) -> Verifier {
        let key = self.key.verifying_key();
        Verifier {
            name: self.name.clone(),
            hash: key_hash(&self.name, key.as_bytes()),
            key,
        }
    }

    /// The signer-key text (`PRIVATE+KEY+…`): keep it secret.
    pub fn to_text(&self) -> String {
        let v = self.verifier();
        let mut raw = vec![ED25519];
        raw.extend_from_slice(&self.key.to_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex4(v.hash),
            B64.encode(raw)
        )
    }

    /// Parses signer-key text.
    ///
    /// # Errors
    /// Text that is not a signer key, or whose hash does not match its key.
    pub fn from_text(text: &str) -> Result<SealKey, NoteError> {
        let t = text.trim();
        let Some(rest) = t.strip_prefix("PRIVATE+KEY+") else {
            return err("not a signing key (it starts with PRIVATE+KEY+)");
        };
        // The key's base64 may hold `+` itself: it is all that follows.
        let parts: Vec<&str> = rest.splitn(3, '+').collect();
        let [name, hash, b64] = parts[..] else {
            return err("a signing key is PRIVATE+KEY+<name>+<hash>+<key>");
        };
        check_name(name)?;
        let raw = B64
            .decode(b64)
            .map_err(|e| NoteError(format!("the key is not base64: {e}")))?;
        let seed: [u8; 32] = match raw.split_first() {
            Some((&ED25519, seed)) => seed
                .try_into()
                .map_err(|_| NoteError("an Ed25519 seed has 32 bytes".into()))?,
            _ => return err("not an Ed25519 key"),
        };
        let key = SealKey::from_seed(name, seed);
        if hex4(key.verifier().hash) != hash {
            return err("the key's hash does not match the key");
        }
        Ok(key)
    }

    /// `text` (a checkpoint body) signed as a note.
    pub fn sign_note(&self, text: &str) -> String {
        let sig = self.key.sign(text.as_bytes());
        let mut raw = self.verifier().hash.to_vec();
        raw.extend_from_slice(&sig.to_bytes());
        format!("{text}\n— {} {}\n", self.name, B64.encode(raw))
    }
}

/// The public half of a [`SealKey`]: verifies checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    hash: [u8; 4],
    key: VerifyingKey,
}

impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{}+{}", self.name, hex4(self.hash), B64.encode(raw))
    }
}

impl Verifier {
    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Parses verifier-key text (`<name>+<hash>+<key>`).
    ///
    /// # Errors
    /// Text that is not a verifier key, or whose hash does not match.
    pub fn from_text(text: &str) -> Result<Verifier, NoteError> {
        let parts: Vec<&str> = text.trim().splitn(3, '+').collect();
        let [name, hash, b64] = parts[..] else {
            return err("a public key is <name>+<hash>+<key>");
        };
        check_name(name)?;
        let raw = B64
            .decode(b64)
            .map_err(|e| NoteError(format!("the key is not base64: {e}")))?;
        let public: [u8; 32] = match raw.split_first() {
            Some((&ED25519, k)) => k
                .try_into()
                .map_err(|_| NoteError("an Ed25519 public key has 32 bytes".into()))?,
            _ => return err("not an Ed25519 key"),
        };
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| NoteError("not a valid Ed25519 public key".into()))?;
        let v = Verifier {
            name: name.to_string(),
            hash: key_hash(name, &public),
            key,
        };
        if hex4(v.hash) != hash {
            return err("the key's hash does not match the key");
        }
        Ok(v)
    }
}

/// A checkpoint: the log it is of, how many records, and the tree's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Which log (`auditlog/<log id in hex>`).
    pub origin: String,
    /// The tree size: records LSN 1..=size.
    pub size: u64,
    /// The root of the tree of that size.
    pub root: Hash,
}

impl Checkpoint {
    /// The checkpoint body text.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a checkpoint body.
    ///
    /// # Errors
    /// Text that is not `<origin>\n<size>\n<base64 root>\n` (extension
    /// lines after it are allowed and ignored).
    pub fn from_body(text: &str) -> Result<Checkpoint, NoteError> {
        let mut lines = text.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return err("a checkpoint has an origin, a tree size and a root hash, one per line");
        };
        if origin.is_empty() || origin.chars().any(char::is_control) {
            return err(format!("{origin:?} is not an origin"));
        }
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return err(format!("tree size {size:?} is not a number"));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| NoteError(format!("tree size {size:?} is too large")))?;
        let root: Hash = B64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| NoteError(format!("root {root:?} is not a base64 SHA-256 hash")))?;
        if !text.ends_with('\n') {
            return err("a checkpoint ends with a newline");
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }
}

/// A signed note split into its text and signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text (ends with a newline).
    pub text: String,
    /// (key name, key hash, signature) per signature line.
    pub signatures: Vec<(String, [u8; 4], [u8; 64])>,
}

impl SignedNote {
    /// Parses a signed note.
    ///
    /// # Errors
    /// Text that is not a note: no blank line before the signatures, a
    /// signature line that is not `— <name> <base64>`, or no signature.
    pub fn parse(note: &str) -> Result<SignedNote, NoteError> {
        if note.len() > MAX_TEXT {
            return err("a note longer than 64 KiB");
        }
        let Some(at) = note.rfind("\n\n") else {
            return err("a signed note has its text, a blank line, then signature lines");
        };
        let (text, sigs) = (&note[..=at], &note[at + 2..]);
        let mut signatures = Vec::new();
        for line in sigs.split('\n') {
            if line.is_empty() {
                continue;
            }
            let Some(rest) = line.strip_prefix("— ") else {
                return err(format!(
                    "{line:?} is not a signature line (— <name> <signature>)"
                ));
            };
            let Some((name, b64)) = rest.split_once(' ') else {
                return err(format!(
                    "{line:?} is not a signature line (— <name> <signature>)"
                ));
            };
            check_name(name)?;
            let raw = B64
                .decode(b64)
                .map_err(|e| NoteError(format!("signature of {name}: not base64: {e}")))?;
            if raw.len() != 68 {
                return err(format!("signature of {name}: not an Ed25519 signature"));
            }
            let mut hash = [0u8; 4];
            hash.copy_from_slice(&raw[..4]);
            let mut sig = [0u8; 64];
            sig.copy_from_slice(&raw[4..]);
            signatures.push((name.to_string(), hash, sig));
        }
        if signatures.is_empty() {
            return err("a signed note has at least one signature");
        }
        Ok(SignedNote {
            text: text.to_string(),
            signatures,
        })
    }

    /// Whether `key` signed this note.
    pub fn verified_by(&self, key: &Verifier) -> bool {
        self.signatures.iter().any(|(name, hash, sig)| {
            *name == key.name
                && *hash == key.hash
                && key
                    .key
                    .verify_strict(
                        self.text.as_bytes(),
                        &ed25519_dalek::Signature::from_bytes(sig),
                    )
                    .is_ok()
        })
    }

    /// The names of the keys that signed it.
    pub fn signers(&self) -> Vec<&str> {
        self.signatures.iter().map(|(n, _, _)| n.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealKey {
        SealKey::from_seed("audit.example", [7; 32])
    }

    #[test]
    fn keys_round_trip_through_text() {
        let k = key();
        let back = SealKey::from_text(&k.to_text()).unwrap();
        assert_eq!(back.verifier(), k.verifier());
        let v = Verifier::from_text(&k.verifier().to_string()).unwrap();
        assert_eq!(v, k.verifier());
        assert!(k.to_text().starts_with("PRIVATE+KEY+audit.example+"));
        // A changed hash or key is refused.
        let text = k.verifier().to_string();
        let bad = text.replacen("+", "+0", 1);
        assert!(Verifier::from_text(&bad).is_err());
        assert!(Verifier::from_text("a+b").is_err());
        assert!(SealKey::from_text("PRIVATE+KEY+x+00000000+AQ==").is_err());
        assert!(
            format!("{k:?}").contains("audit.example") && !format!("{k:?}").contains(&k.to_text())
        );
    }

    #[test]
    fn checkpoints_sign_verify_and_refuse_changes() {
        let k = key();
        let c = Checkpoint {
            origin: "auditlog/00ff".into(),
            size: 1234,
            root: [9; 32],
        };
        let note = k.sign_note(&c.body());
        let parsed = SignedNote::parse(&note).unwrap();
        assert!(parsed.verified_by(&k.verifier()));
        assert_eq!(Checkpoint::from_body(&parsed.text).unwrap(), c);
        // Another key, another size, another root: refused.
        let other = SealKey::from_seed("audit.example", [8; 32]);
        assert!(!parsed.verified_by(&other.verifier()));
        let edited = note.replace("1234", "1235");
        assert!(!SignedNote::parse(&edited)
            .unwrap()
            .verified_by(&k.verifier()));
        assert!(Checkpoint::from_body("o\n01\nAAAA\n").is_err());
        assert!(Checkpoint::from_body("o\n12\n").is_err());
        assert!(SignedNote::parse("no signatures\n\n").is_err());
        assert!(SignedNote::parse(&note.replace('—', "-")).is_err());
    }
}
