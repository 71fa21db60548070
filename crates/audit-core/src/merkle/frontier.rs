//! The right edge of an append-only tree: the roots of its perfect subtrees, largest
//! first (one per bit set in its size). It is all a sealer needs to keep to append
//! leaves and compute the new root, in O(log n) memory, without reading old leaves.

use super::{Hash, empty_root, node_hash};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Roots of the perfect subtrees covering leaves `0..size`, left to right; the
    /// i-th covers as many leaves as the i-th highest bit set in `size` says.
    subtrees: Vec<Hash>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a frontier of {size} leaves has {expected} subtree hashes, not {found}")]
pub struct FrontierMismatch {
    pub size: u64,
    pub expected: u32,
    pub found: usize,
}

impl Frontier {
    /// A frontier as stored: its size and its subtree hashes, checked to agree.
    pub fn from_parts(size: u64, subtrees: Vec<Hash>) -> Result<Self, FrontierMismatch> {
        if usize::try_from(size.count_ones()).ok() != Some(subtrees.len()) {
            return Err(FrontierMismatch {
                size,
                expected: size.count_ones(),
                found: subtrees.len(),
            });
        }
        Ok(Self { size, subtrees })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn subtrees(&self) -> &[Hash] {
        &self.subtrees
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.push_reporting(leaf, |_, _| {});
    }

    /// Appends one leaf hash, handing `merged` the root of each perfect subtree the
    /// leaf completes, with its height, smallest first: the roots a tile store needs,
    /// without hashing them again.
    pub fn push_reporting(&mut self, leaf: Hash, mut merged: impl FnMut(u32, &Hash)) {
        let mut carried = leaf;
        // Each trailing one bit of the old size is a subtree of the new leaf's height
        // to its left: they merge, as a binary increment carries.
        let merges = self.size.trailing_ones();
        for height in 1..=merges {
            let Some(left) = self.subtrees.pop() else {
                break;
            };
            carried = node_hash(&left, &carried);
            merged(height, &carried);
        }
        self.subtrees.push(carried);
        self.size += 1;
    }

    /// The root of the tree of `size` leaves (RFC 6962's MTH).
    pub fn root(&self) -> Hash {
        let mut subtrees = self.subtrees.iter().rev();
        let Some(last) = subtrees.next() else {
            return empty_root();
        };
        subtrees.fold(*last, |right, left| node_hash(left, &right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{leaf_hash, root};

    #[test]
    fn the_frontier_root_is_the_tree_head_at_every_size() {
        let leaves: Vec<Hash> = (0..300u64).map(|n| leaf_hash(&n.to_be_bytes())).collect();
        let mut frontier = Frontier::default();
        assert_eq!(frontier.root(), root(&[]));

        for (count, leaf) in leaves.iter().enumerate() {
            frontier.push(*leaf);
            assert_eq!(
                frontier.root(),
                root(&leaves[..=count]),
                "size {}",
                count + 1
            );
            assert_eq!(frontier.size(), count as u64 + 1);
        }
    }

    #[test]
    fn a_stored_frontier_resumes_where_it_stopped() {
        let mut whole = Frontier::default();
        for n in 0..13u64 {
            whole.push(leaf_hash(&n.to_be_bytes()));
        }
        let mut resumed = Frontier::from_parts(whole.size(), whole.subtrees().to_vec()).unwrap();
        for n in 13..20u64 {
            whole.push(leaf_hash(&n.to_be_bytes()));
            resumed.push(leaf_hash(&n.to_be_bytes()));
        }

        assert_eq!(resumed, whole);
        assert_eq!(whole.subtrees().len(), 20u64.count_ones() as usize);
        assert!(Frontier::from_parts(13, vec![[0; 32]; 2]).is_err());
    }
}
