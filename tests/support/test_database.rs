//! A fresh, uniquely named database per test, dropped when the test ends.

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use audit_core::config::PostgresSettings;
use audit_core::database::{self, quote_identifier};
use tokio_postgres::types::FromSqlOwned;
use tokio_postgres::{Client, NoTls};

/// The server the tests use; override with `AUDIT_TEST_DATABASE_URL`.
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

pub struct TestDatabase {
    pub name: String,
    pub settings: PostgresSettings,
    /// Whether `Drop` drops the database from the shared server.
    owned: bool,
}

fn admin_url() -> String {
    std::env::var("AUDIT_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

impl TestDatabase {
    /// Creates an empty database, without the schema.
    pub async fn create_empty() -> Self {
        let database = Self::reserve();
        database::create_database_if_missing(&database.settings)
            .await
            .expect("PostgreSQL must be running for the tests (see README)");
        database
    }

    /// A unique database name that does not exist yet; dropped on `Drop` if created.
    pub fn reserve() -> Self {
        let name = format!(
            "audit_test_{}_{}_{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let mut config = tokio_postgres::Config::from_str(&admin_url()).unwrap();
        config.dbname(&name);
        let settings = PostgresSettings {
            dsn: dsn_for(&config),
            pool_size: 8,
            ..PostgresSettings::default()
        };
        Self {
            name,
            settings,
            owned: true,
        }
    }

    /// Wraps a database that lives elsewhere (a private cluster); `Drop` leaves it.
    pub fn adopt(name: &str, settings: PostgresSettings) -> Self {
        Self {
            name: name.to_owned(),
            settings,
            owned: false,
        }
    }

    /// Creates a database and applies every migration.
    pub async fn create_migrated() -> Self {
        let database = Self::create_empty().await;
        database::migrate(&database.settings).await.unwrap();
        database
    }

    pub async fn client(&self) -> Client {
        database::connect(&self.settings).await.unwrap()
    }

    /// The first column of every row the query returns.
    pub async fn column<T: FromSqlOwned>(&self, query: &str) -> Vec<T> {
        self.client()
            .await
            .query(query, &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    /// Whether `condition` (a query of one boolean) holds within `limit`, asked
    /// every 50 ms on one connection (which the condition may leave out as
    /// `pg_backend_pid()`).
    pub async fn holds_within(&self, limit: std::time::Duration, condition: &str) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let client = self.client().await;
        loop {
            let row = client.query_one(condition, &[]).await.unwrap();
            if row.get::<_, Option<bool>>(0) == Some(true) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn count_events(&self) -> i64 {
        self.client()
            .await
            .query_one("SELECT count(*) FROM events", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Another session takes the events table, so every COPY into it waits until
    /// the lock is released (or dropped: closing the session releases it too).
    pub async fn lock_events_table(&self) -> EventsTableLock {
        let client = self.client().await;
        client
            .batch_execute("BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        EventsTableLock { client }
    }
}

pub struct EventsTableLock {
    client: Client,
}

impl EventsTableLock {
    pub async fn release(self) {
        self.client.batch_execute("ROLLBACK").await.unwrap();
    }
}

fn dsn_for(config: &tokio_postgres::Config) -> String {
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let password = config
        .get_password()
        .map(|bytes| format!(":{}", String::from_utf8_lossy(bytes)))
        .unwrap_or_default();
    let name = config.get_dbname().unwrap_or("postgres");
    format!("postgres://{user}{password}@{host}:{port}/{name}")
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        // Drop cannot be async, and the test's runtime may be shutting down, so the
        // database is dropped from a thread with a runtime of its own.
        let name = self.name.clone();
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let Ok((client, connection)) = tokio_postgres::connect(&admin_url(), NoTls).await
                else {
                    return;
                };
                tokio::spawn(connection);
                let statement = format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_identifier(&name)
                );
                let _ = client.batch_execute(&statement).await;
            });
        });
        let _ = handle.join();
    }
}
