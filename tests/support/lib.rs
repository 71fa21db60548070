//! Helpers for the integration tests: an isolated database per test, the real
//! application on a random port, and the real binary as a child process.

pub mod private_cluster;
pub mod server_process;
pub mod test_app;
pub mod test_database;
