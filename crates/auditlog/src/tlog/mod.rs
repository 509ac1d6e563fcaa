//! Tamper evidence: a Merkle tree over the log's records, built by a
//! background sealer off the append path, and signed checkpoints of it
//! (docs/TAMPER.md). `tree` and `note` are pure (the tree's hashing and
//! proofs; checkpoints, signed notes and keys); `store` reads and writes
//! the `TREE` and `CHECKPOINTS` files; `sealer` is the thread that seals;
//! `check` verifies a log against its checkpoints and external anchors;
//! `proof` proves one record against a checkpoint.

pub(crate) mod check;
pub mod note;
pub mod proof;
pub(crate) mod sealer;
pub mod store;
pub mod tree;
