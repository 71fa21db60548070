//! The RFC 6962 reference vectors (the Certificate Transparency reference tree of
//! eight leaves, its roots, and its inclusion and consistency proofs), then every
//! proof of every tree up to 40 leaves checked both ways.

use super::*;

/// The reference tree's leaves, as hex.
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// The roots of the trees of 0 to 8 of those leaves.
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf index from 0, tree size, proof).
const INCLUSION: [(usize, usize, &[&str]); 4] = [
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (old size, new size, proof).
const CONSISTENCY: [(usize, usize, &[&str]); 4] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

fn bytes(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
        .collect()
}

fn hash(text: &str) -> Hash {
    bytes(text).try_into().unwrap()
}

fn hashes(texts: &[&str]) -> Vec<Hash> {
    texts.iter().map(|text| hash(text)).collect()
}

fn reference_leaves() -> Vec<Hash> {
    LEAVES.iter().map(|leaf| leaf_hash(&bytes(leaf))).collect()
}

#[test]
fn the_reference_roots_of_every_size() {
    let leaves = reference_leaves();

    for (size, expected) in ROOTS.iter().enumerate() {
        assert_eq!(root(&leaves[..size]), hash(expected), "size {size}");
    }
}

#[test]
fn the_reference_inclusion_proofs_are_built_and_verify() {
    let leaves = reference_leaves();

    for (index, size, expected) in INCLUSION {
        let proof = inclusion_proof(&leaves[..size], index).unwrap();
        assert_eq!(proof, hashes(expected), "leaf {index} of {size}");
        let root = hash(ROOTS[size]);
        verify_inclusion(&leaves[index], index as u64, size as u64, &proof, &root).unwrap();
    }
}

#[test]
fn the_reference_consistency_proofs_are_built_and_verify() {
    let leaves = reference_leaves();

    for (old, new, expected) in CONSISTENCY {
        let proof = consistency_proof(&leaves[..new], old).unwrap();
        assert_eq!(proof, hashes(expected), "{old} to {new}");
        let (old_root, new_root) = (hash(ROOTS[old]), hash(ROOTS[new]));
        verify_consistency(old as u64, new as u64, &proof, &old_root, &new_root).unwrap();
    }
}

/// Leaves of a larger tree, each different.
fn numbered_leaves(count: usize) -> Vec<Hash> {
    (0..count)
        .map(|n| leaf_hash(&(n as u64).to_be_bytes()))
        .collect()
}

#[test]
fn every_inclusion_proof_up_to_40_leaves_verifies_and_nothing_else_does() {
    let leaves = numbered_leaves(40);

    for size in 1..=leaves.len() {
        let tree = &leaves[..size];
        let root = root(tree);
        for index in 0..size {
            let proof = inclusion_proof(tree, index).unwrap();
            let (at, of) = (index as u64, size as u64);
            verify_inclusion(&tree[index], at, of, &proof, &root).unwrap();
            let other = tree[(index + 1) % size];
            if size > 1 {
                assert!(verify_inclusion(&other, at, of, &proof, &root).is_err());
                assert!(verify_inclusion(&tree[index], (at + 1) % of, of, &proof, &root).is_err());
            }
            assert!(verify_inclusion(&tree[index], of, of, &proof, &root).is_err());
            if let Some((_, shorter)) = proof.split_last() {
                assert!(verify_inclusion(&tree[index], at, of, shorter, &root).is_err());
            }
        }
        assert!(inclusion_proof(tree, size).is_none());
    }
}

#[test]
fn every_consistency_proof_up_to_40_leaves_verifies_and_a_fork_does_not() {
    let leaves = numbered_leaves(40);
    let forked: Vec<Hash> = (leaves.iter().enumerate())
        .map(|(n, leaf)| if n == 3 { leaf_hash(b"forged") } else { *leaf })
        .collect();

    for new in 1..=leaves.len() {
        let new_root = root(&leaves[..new]);
        for old in 0..=new {
            let old_root = root(&leaves[..old]);
            let proof = consistency_proof(&leaves[..new], old).unwrap();
            let (m, n) = (old as u64, new as u64);
            verify_consistency(m, n, &proof, &old_root, &new_root).unwrap();
            if old > 3 && old < new {
                // The old tree another log served, with leaf 3 changed.
                let forked_root = root(&forked[..old]);
                assert!(verify_consistency(m, n, &proof, &forked_root, &new_root).is_err());
            }
            if old > 0 && old < new {
                let wrong_new = root(&leaves[..new - 1]);
                assert!(verify_consistency(m, n, &proof, &old_root, &wrong_new).is_err());
            }
        }
        assert!(consistency_proof(&leaves[..new], new + 1).is_none());
    }
}
