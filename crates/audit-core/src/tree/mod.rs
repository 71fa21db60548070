//! Tamper evidence: every committed event becomes a leaf of one append-only RFC 6962
//! Merkle tree per database, in a commit-safe order (`order`), stored as C2SP tiles
//! (`tiles`) with what each leaf was sealed from (`records`), grown by the one active
//! `sealer`, which signs checkpoints (also appended to a file, `checkpoint_log`);
//! `proofs` serves inclusion and consistency proofs from the stored tiles,
//! `published` the tiles themselves as C2SP tlog-tiles, and `verify` recomputes
//! everything from the events.

pub mod batches;
pub mod checkpoint_log;
pub mod covered;
pub mod order;
pub mod proofs;
pub mod published;
pub mod records;
pub mod sealer;
pub mod tiles;
pub mod verify;

pub use crate::tree::sealer::{RoundReport, SealError, Sealer, Signing};
