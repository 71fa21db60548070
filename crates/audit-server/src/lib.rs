//! The HTTP API of the audit event collector: actix-web handlers over `audit-core`.
//! This crate alone knows HTTP and the JSON shapes of the API.

pub mod auth;
pub mod body;
pub mod dedicated_connection;
pub mod errors;
pub mod http_server;
pub mod integrity;
pub mod keygen_command;
pub mod metrics;
pub mod middleware;
pub mod partitions;
pub mod postings;
pub mod reload;
pub mod replicas;
pub mod request_log;
pub mod routes;
pub mod settings;
pub mod slow_readers;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod token_command;
pub mod verify_command;
pub mod wire;
