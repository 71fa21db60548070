//! Integration tests of the whole service: the real application over HTTP, against a
//! fresh PostgreSQL database per test.

// Test code fails by panicking: unwrap and expect are how it says "this must hold".
// Every other workspace lint applies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod access_process;
mod export;
mod failure_injection;
mod filters;
mod generate;
mod get_event;
mod group_commit;
mod hostile_input;
mod idempotency;
mod integrity;
mod integrity_order;
mod internal;
mod keygen;
mod listener;
mod listeners_tls;
mod migrate;
mod openapi;
mod outage;
mod overload;
mod page_limits;
mod partitions;
mod payload_limits;
mod post_event;
mod post_event_validation;
mod postings;
mod process;
mod prometheus;
mod reload;
mod replicas;
mod seal_batches;
mod slow_clients;
mod stalled_database;
mod stream;
mod tamper;
mod tidy;
mod viewer;
