//! The throwaway clusters of the `private-cluster` crate, with the settings the
//! tests give the service for them.

use audit_core::config::PostgresSettings;

pub use private_cluster::PrivateCluster;

pub trait ClusterSettings {
    /// Settings for `database` on this cluster, with a small pool.
    fn settings(&self, database: &str) -> PostgresSettings;
}

impl ClusterSettings for PrivateCluster {
    fn settings(&self, database: &str) -> PostgresSettings {
        PostgresSettings {
            dsn: self.dsn(database),
            pool_size: 8,
            ..PostgresSettings::default()
        }
    }
}
