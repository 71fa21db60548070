//! A background task's connection of its own (the search postings' poster's, the
//! partition maintenance's) that follows a reload: once the settings in force would
//! open another connection (a new `postgres.dsn`), the old one is closed and a new one
//! opened, so that the task works on the database the requests use.

use audit_core::config::PostgresSettings;
use audit_core::database::DatabaseError;
use audit_core::storage_error::cause_chain;
use deadpool_postgres::tokio_postgres::Client;

#[derive(Default)]
pub struct DedicatedConnection {
    /// The connection, with the settings it was opened with.
    opened: Option<(PostgresSettings, Client)>,
}

impl DedicatedConnection {
    /// The connection for `settings`: the one held, unless it closed or was opened with
    /// settings that open another; then a new one from `connect`, or none while the
    /// database cannot be reached (the task tries again on its next turn).
    pub async fn current(
        &mut self,
        settings: &PostgresSettings,
        connect: impl AsyncFnOnce(&PostgresSettings) -> Result<Client, DatabaseError>,
    ) -> Option<&mut Client> {
        let usable = self.opened.as_ref().is_some_and(|(opened_with, client)| {
            opened_with.opens_same_connection(settings) && !client.is_closed()
        });
        if !usable {
            // The old connection closes before the new one opens.
            self.opened = None;
            match connect(settings).await {
                Ok(client) => self.opened = Some((settings.clone(), client)),
                Err(error) => {
                    tracing::debug!(error = %cause_chain(&error), "a background task cannot connect")
                }
            }
        }
        self.opened.as_mut().map(|(_, client)| client)
    }

    /// Closes the connection (it may be mid-statement or broken); the next `current`
    /// opens another.
    pub fn close(&mut self) {
        self.opened = None;
    }
}
