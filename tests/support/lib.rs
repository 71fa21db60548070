//! Helpers for the integration tests: an isolated database per test, the real
//! application on a random port, and the real binary as a child process.

// Test code fails by panicking: unwrap and expect are how it says "this must hold".
// Every other workspace lint applies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod private_cluster;
pub mod sealing;
pub mod server_process;
pub mod test_app;
pub mod test_database;
