//! Domain types, validation rules, configuration and PostgreSQL storage of the audit
//! event collector. Nothing here knows about HTTP: the server and the generator both
//! build on these types, so there is one event model and one set of rules.

pub mod access;
pub mod batch;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod copy;
pub mod database;
pub mod event;
pub mod export;
pub mod filter;
pub mod idempotency;
pub mod merkle;
pub mod migrations;
pub mod partitions;
pub mod postings;
pub mod replicas;
pub mod repository;
pub mod search_index;
pub mod storage_error;
pub mod tail;
pub mod thread_pools;
pub mod timestamp;
pub mod tree;
pub mod writer;
