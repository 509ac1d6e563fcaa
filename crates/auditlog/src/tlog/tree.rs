//! The Merkle tree over a log's records (RFC 6962 / RFC 9162 hashing): leaf
//! `i` is record LSN `i + 1`, hashed as SHA-256(0x00 ‖ LSN as 8 bytes big
//! endian ‖ payload); an interior node is SHA-256(0x01 ‖ left ‖ right); the
//! tree of size `n` covers LSNs 1..=n. Pure: no file, no log.
//!
//! A [`Frontier`] grows the root as leaves (or whole aligned subtrees, such
//! as the 256-leaf blocks the `TREE` file keeps) are added; [`inclusion`]
//! and [`verify_inclusion`] prove one record in a tree of a given size.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Leaves per block: the subtrees whose hashes the `TREE` file keeps.
pub const BLOCK: u64 = 256;
/// `BLOCK` as a power of two.
pub const BLOCK_LEVEL: u32 = 8;

/// The attribute of a retention marker that holds the tree's edge at the
/// prefix removed ([`Frontier::peaks_text`]); `tree_size` and `tree_root`
/// beside it hold its size and base64 root.
pub const EDGE_ATTR: &str = "tree_edge";

/// The leaf hash of the record at `lsn` with `payload`.
pub fn leaf_hash(lsn: u64, payload: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(lsn.to_be_bytes());
    h.update(payload);
    h.finalize().into()
}

/// The hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The RFC 6962 root of `leaves` (leaf hashes), for tests and small trees.
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// The largest power of two below `n` (n ≥ 2): where RFC 6962 splits.
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The right edge of a growing tree: the roots of its perfect subtrees,
/// largest first (one per set bit of the size). O(log n) hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (level, hash), levels strictly decreasing.
    peaks: Vec<(u32, Hash)>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// How many leaves it covers.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.push_subtree(0, leaf);
    }

    /// Adds a perfect subtree of `2^level` leaves whose root is `hash`; the
    /// size so far must be a multiple of `2^level` (it always is when whole
    /// blocks are added before the leaves of a partial one).
    ///
    /// # Panics
    /// If the size is not so aligned: a caller's mistake, not data's.
    pub fn push_subtree(&mut self, level: u32, hash: Hash) {
        assert!(
            self.size.trailing_zeros() >= level || self.size == 0,
            "a subtree of level {level} added at size {}",
            self.size
        );
        self.size += 1 << level;
        let (mut level, mut hash) = (level, hash);
        while let Some(&(l, h)) = self.peaks.last() {
            if l != level {
                break;
            }
            self.peaks.pop();
            hash = node_hash(&h, &hash);
            level += 1;
        }
        self.peaks.push((level, hash));
    }

    /// The tree whose perfect subtrees are `peaks` (levels strictly
    /// decreasing, as [`peaks`](Self::peaks) gives them); `None` otherwise.
    pub fn from_peaks(peaks: Vec<(u32, Hash)>) -> Option<Frontier> {
        if peaks.windows(2).any(|w| w[0].0 <= w[1].0) || peaks.iter().any(|p| p.0 > 63) {
            return None;
        }
        let size = peaks.iter().map(|(l, _)| 1u64 << l).sum();
        Some(Frontier { size, peaks })
    }

    /// The peaks as text: `level:base64hash` separated by spaces (how a
    /// retention marker records the tree at the prefix it removed).
    pub fn peaks_text(&self) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        self.peaks
            .iter()
            .map(|(l, h)| format!("{l}:{}", b64.encode(h)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Parses [`peaks_text`](Self::peaks_text).
    pub fn from_peaks_text(text: &str) -> Option<Frontier> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let peaks = text
            .split_whitespace()
            .map(|p| {
                let (l, h) = p.split_once(':')?;
                let h: Hash = b64.decode(h).ok()?.try_into().ok()?;
                Some((l.parse().ok()?, h))
            })
            .collect::<Option<Vec<_>>>()?;
        Frontier::from_peaks(peaks)
    }

    /// Its perfect subtrees, (level, root), largest first.
    pub fn peaks(&self) -> &[(u32, Hash)] {
        &self.peaks
    }

    /// The perfect subtrees below `level`: the edge inside the last partial
    /// subtree of that level.
    pub fn edge_below(&self, level: u32) -> Vec<(u32, Hash)> {
        self.peaks
            .iter()
            .filter(|(l, _)| *l < level)
            .copied()
            .collect()
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut it = self.peaks.iter().rev();
        let Some(&(_, mut h)) = it.next() else {
            return empty_root();
        };
        for (_, p) in it {
            h = node_hash(p, &h);
        }
        h
    }
}

/// Where the hashes of a tree come from when proving: the hash of the
/// perfect subtree of `2^level` leaves starting at leaf `start` (aligned).
pub trait Subtrees {
    /// The error reading them may give.
    type Error;
    /// The root of leaves `start .. start + 2^level`.
    fn subtree(&mut self, start: u64, level: u32) -> Result<Hash, Self::Error>;
}

/// The RFC 6962 hash of leaves `lo..hi` (`lo` aligned to the largest power
/// of two not above `hi - lo`, as every range the recursion asks for is).
pub fn range_hash<S: Subtrees>(s: &mut S, lo: u64, hi: u64) -> Result<Hash, S::Error> {
    let n = hi - lo;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() {
        return s.subtree(lo, n.trailing_zeros());
    }
    let k = split(n);
    let left = s.subtree(lo, k.trailing_zeros())?;
    let right = range_hash(s, lo + k, hi)?;
    Ok(node_hash(&left, &right))
}

/// The inclusion proof (RFC 9162 §2.1.3.1) of leaf `index` in the tree of
/// `size` leaves: sibling hashes from the leaf up.
pub fn inclusion<S: Subtrees>(s: &mut S, index: u64, size: u64) -> Result<Vec<Hash>, S::Error> {
    let mut path = Vec::new();
    let (mut lo, mut hi, mut m) = (0u64, size, index);
    let mut levels = Vec::new();
    while hi - lo > 1 {
        let k = split(hi - lo);
        if m < k {
            levels.push((lo + k, hi));
            hi = lo + k;
        } else {
            levels.push((lo, lo + k));
            lo += k;
            m -= k;
        }
    }
    for (a, b) in levels.into_iter().rev() {
        path.push(range_hash(s, a, b)?);
    }
    Ok(path)
}

/// Whether `proof` shows leaf `leaf` at `index` in the tree of `size`
/// leaves whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// Leaf hashes in memory as a [`Subtrees`] source (tests, small ranges).
impl Subtrees for &[Hash] {
    type Error = std::convert::Infallible;

    fn subtree(&mut self, start: u64, level: u32) -> Result<Hash, Self::Error> {
        let (a, b) = (start as usize, (start + (1 << level)) as usize);
        Ok(root_of(&self[a..b]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (1..=n)
            .map(|l| leaf_hash(l, format!("record {l}").as_bytes()))
            .collect()
    }

    #[test]
    fn the_frontier_agrees_with_the_recursive_root_at_every_size() {
        let all = leaves(600);
        let mut f = Frontier::new();
        assert_eq!(f.root(), empty_root());
        for (i, l) in all.iter().enumerate() {
            f.push(*l);
            assert_eq!(f.size(), i as u64 + 1);
            assert_eq!(f.root(), root_of(&all[..=i]), "size {}", i + 1);
        }
        // Whole blocks, then single leaves.
        let mut g = Frontier::new();
        g.push_subtree(BLOCK_LEVEL, root_of(&all[..256]));
        g.push_subtree(BLOCK_LEVEL, root_of(&all[256..512]));
        for l in &all[512..600] {
            g.push(*l);
        }
        assert_eq!(g, f);
        let back = Frontier::from_peaks_text(&f.peaks_text()).unwrap();
        assert_eq!(back, f);
        assert!(Frontier::from_peaks(vec![(1, [0; 32]), (3, [0; 32])]).is_none());
        assert!(Frontier::from_peaks_text("x:y").is_none());
    }

    #[test]
    fn inclusion_proofs_verify_and_fail_when_anything_differs() {
        let all = leaves(77);
        for size in [1u64, 2, 3, 7, 8, 9, 64, 77] {
            let tree = &all[..size as usize];
            let root = root_of(tree);
            for i in 0..size {
                let mut src: &[Hash] = tree;
                let proof = inclusion(&mut src, i, size).unwrap();
                assert!(verify_inclusion(&tree[i as usize], i, size, &proof, &root));
                assert!(
                    !verify_inclusion(&tree[(i as usize + 1) % tree.len()], i, size, &proof, &root)
                        || size == 1
                );
                assert!(!verify_inclusion(
                    &tree[i as usize],
                    i + size,
                    size,
                    &proof,
                    &root
                ));
                let mut bad = proof.clone();
                if let Some(p) = bad.first_mut() {
                    p[0] ^= 1;
                    assert!(!verify_inclusion(&tree[i as usize], i, size, &bad, &root));
                }
            }
        }
    }
}
