//! RFC 6962 Merkle trees (RFC 9162, section 2.1): the hashes, the tree head of any
//! size, inclusion and consistency proofs, and their verification.
//!
//! Leaf hash = SHA-256(0x00 || leaf bytes), node hash = SHA-256(0x01 || left ||
//! right); a tree of n > 1 leaves splits at the largest power of two below n. The
//! proofs built here are computed from every leaf hash of the tree, which is what the
//! verifier and the tests need; serving proofs from a large stored tree reads stored
//! subtree hashes instead, and must give the same answers (the tests compare).

use sha2::{Digest, Sha256};

mod frontier;
mod leaf;
mod subtrees;

pub use crate::merkle::frontier::{Frontier, FrontierMismatch};
pub use crate::merkle::leaf::{
    LEAF_VERSION, LeafContent, LeafEvent, SEAL_BYTES, leaf_bytes, leaf_hash_of, text_fingerprint,
    unix_micros,
};
use crate::merkle::subtrees::split_point;
pub use crate::merkle::subtrees::{
    LeafSlice, SubtreeSource, Wanted, consistency_path, inclusion_path, range_root,
};

/// A SHA-256 hash: of a leaf, of a subtree, or the root of a tree.
pub type Hash = [u8; 32];

pub(crate) const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// Why a proof did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the index or sizes are out of range")]
    OutOfRange,
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
}

pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(leaf);
    hasher.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([NODE_PREFIX]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree: the SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The tree head (MTH) over these leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [leaf] => *leaf,
        _ => {
            let split = usize::try_from(split_point(leaves.len() as u64)).unwrap_or(usize::MAX);
            node_hash(&root(&leaves[..split]), &root(&leaves[split..]))
        }
    }
}

/// The inclusion proof (PATH) of leaf `index` in the tree of these leaves; none when
/// the index is outside it.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    let Ok(proof) = inclusion_path(&mut LeafSlice(leaves), index as u64, leaves.len() as u64);
    proof
}

/// The consistency proof (PROOF) between the tree of the first `old_size` leaves and
/// the tree of all of them; none when `old_size` is larger than the tree.
pub fn consistency_proof(leaves: &[Hash], old_size: usize) -> Option<Vec<Hash>> {
    let Ok(proof) = consistency_path(&mut LeafSlice(leaves), old_size as u64, leaves.len() as u64);
    proof
}

/// Checks that `leaf` is leaf `index` of the tree of `size` leaves whose root is
/// `root` (RFC 9162, 2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange);
    }
    let (mut node, mut last) = (index, size - 1);
    let mut computed = *leaf;
    for sibling in proof {
        if last == 0 {
            return Err(ProofError::WrongLength);
        }
        if node & 1 == 1 || node == last {
            computed = node_hash(sibling, &computed);
            // A right edge: climb to where this node is a right child.
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            computed = node_hash(&computed, sibling);
        }
        node >>= 1;
        last >>= 1;
    }
    if last != 0 {
        return Err(ProofError::WrongLength);
    }
    if computed != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `old_size` leaves with root `old_root` is a prefix of the
/// tree of `new_size` leaves with root `new_root` (RFC 9162, 2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OutOfRange);
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old_size == 0 {
        // Every tree extends the empty one; there is nothing to prove.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    // A complete old tree is a node of the new one: its root starts the path.
    let mut path = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut node, mut last) = (old_size - 1, new_size - 1);
    while node & 1 == 1 {
        node >>= 1;
        last >>= 1;
    }
    let (mut old_computed, mut new_computed) = (*first, *first);
    for sibling in rest {
        if last == 0 {
            return Err(ProofError::WrongLength);
        }
        if node & 1 == 1 || node == last {
            old_computed = node_hash(sibling, &old_computed);
            new_computed = node_hash(sibling, &new_computed);
            // A right edge: climb to where this node is a right child.
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            new_computed = node_hash(&new_computed, sibling);
        }
        node >>= 1;
        last >>= 1;
    }
    if last != 0 {
        return Err(ProofError::WrongLength);
    }
    if old_computed != *old_root || new_computed != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
