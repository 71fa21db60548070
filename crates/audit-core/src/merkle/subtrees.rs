//! Proofs over any store of perfect subtree hashes.
//!
//! RFC 9162 defines the tree head and both proofs recursively over ranges of leaves;
//! every range it splits off is either a perfect subtree (a power of two of leaves,
//! aligned to its size) or splits further. So all a proof needs is the hash of the
//! `index`-th perfect subtree of `2^height` leaves, which a slice of leaf hashes
//! computes and stored tiles hold (`crate::tree`). [`Wanted`] lists what a proof would
//! ask for, so that a store can fetch it all at once before computing.

use std::convert::Infallible;

use super::{Hash, empty_root, node_hash, root};

/// The hashes of perfect subtrees: `perfect(height, index)` is the root of leaves
/// `index * 2^height .. (index + 1) * 2^height`.
pub trait SubtreeSource {
    type Error;
    fn perfect(&mut self, height: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// The tree head of leaves `start..end`, where `start` is a multiple of the largest
/// power of two below `end - start` (every range RFC 9162's recursion makes).
pub fn range_root<S: SubtreeSource>(
    source: &mut S,
    start: u64,
    end: u64,
) -> Result<Hash, S::Error> {
    let size = end - start;
    if size == 0 {
        return Ok(empty_root());
    }
    if size.is_power_of_two() {
        let height = size.trailing_zeros();
        return source.perfect(height, start >> height);
    }
    let split = start + split_point(size);
    let left = range_root(source, start, split)?;
    let right = range_root(source, split, end)?;
    Ok(node_hash(&left, &right))
}

/// The inclusion proof (PATH) of leaf `index` in the tree of `size` leaves; none when
/// the index is outside it.
pub fn inclusion_path<S: SubtreeSource>(
    source: &mut S,
    index: u64,
    size: u64,
) -> Result<Option<Vec<Hash>>, S::Error> {
    if index >= size {
        return Ok(None);
    }
    let mut proof = Vec::new();
    path(source, index, 0, size, &mut proof)?;
    Ok(Some(proof))
}

fn path<S: SubtreeSource>(
    source: &mut S,
    index: u64,
    start: u64,
    end: u64,
    proof: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if end - start <= 1 {
        return Ok(());
    }
    let split = start + split_point(end - start);
    if index < split {
        path(source, index, start, split, proof)?;
        proof.push(range_root(source, split, end)?);
    } else {
        path(source, index, split, end, proof)?;
        proof.push(range_root(source, start, split)?);
    }
    Ok(())
}

/// The consistency proof (PROOF) between the trees of `old_size` and `size` leaves;
/// none when `old_size` is larger.
pub fn consistency_path<S: SubtreeSource>(
    source: &mut S,
    old_size: u64,
    size: u64,
) -> Result<Option<Vec<Hash>>, S::Error> {
    if old_size > size {
        return Ok(None);
    }
    let mut proof = Vec::new();
    if old_size > 0 {
        subproof(source, old_size, 0, size, true, &mut proof)?;
    }
    Ok(Some(proof))
}

fn subproof<S: SubtreeSource>(
    source: &mut S,
    old_end: u64,
    start: u64,
    end: u64,
    whole: bool,
    proof: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if old_end == end {
        if !whole {
            proof.push(range_root(source, start, end)?);
        }
        return Ok(());
    }
    let split = start + split_point(end - start);
    if old_end <= split {
        subproof(source, old_end, start, split, whole, proof)?;
        proof.push(range_root(source, split, end)?);
    } else {
        subproof(source, old_end, split, end, false, proof)?;
        proof.push(range_root(source, start, split)?);
    }
    Ok(())
}

/// The largest power of two below `size` (which is at least 2).
pub(super) fn split_point(size: u64) -> u64 {
    1 << (63 - (size - 1).leading_zeros())
}

/// Every leaf hash of a tree: perfect subtrees are computed from them.
pub struct LeafSlice<'a>(pub &'a [Hash]);

impl SubtreeSource for LeafSlice<'_> {
    type Error = Infallible;

    fn perfect(&mut self, height: u32, index: u64) -> Result<Hash, Infallible> {
        let width = 1usize << height;
        let start = usize::try_from(index)
            .unwrap_or(usize::MAX)
            .saturating_mul(width);
        Ok(root(&self.0[start..start + width]))
    }
}

/// Records the perfect subtrees a computation asks for, answering each with zeros.
#[derive(Debug, Default)]
pub struct Wanted(pub Vec<(u32, u64)>);

impl SubtreeSource for Wanted {
    type Error = Infallible;

    fn perfect(&mut self, height: u32, index: u64) -> Result<Hash, Infallible> {
        self.0.push((height, index));
        Ok([0; 32])
    }
}
