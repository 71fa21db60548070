//! The real application, built by `Application::build` as `main` does, on port 0
//! against a fresh database, configured through a TOML file the test may rewrite.

use std::collections::HashMap;
use std::io::Write;

use actix_web::web;
use audit_core::access::{self, Actor, TokenRequest};
use audit_core::config::ConfigSource;
use audit_core::search_index::SearchIndex;
use audit_server::auth::upkeep::reread_tokens;
use audit_server::settings::{AuthMode, Settings};
use audit_server::startup::Application;
use audit_server::state::AppState;
use audit_server::telemetry::LogControl;
use serde_json::Value;

use crate::test_database::TestDatabase;

pub struct TestApp {
    pub address: String,
    /// `http://127.0.0.1:port` of the operators' listener, when `admin.listen` is set.
    pub operators_address: Option<String>,
    /// The running service's shared state, for tests that reach into it.
    pub state: web::Data<AppState>,
    pub http: reqwest::Client,
    pub database: TestDatabase,
    pub settings: Settings,
    pub config_file: tempfile::NamedTempFile,
}

/// Settings for a test: loopback, any free port, no injected failures.
pub fn test_settings(database: &TestDatabase) -> Settings {
    let mut settings = Settings::default();
    settings.host = "127.0.0.1".to_owned();
    settings.port = 0;
    settings.postgres = database.settings.clone();
    settings.failure.chance = 0.0;
    settings
}

/// Writes settings as the TOML config file a server reads.
pub fn write_config(file: &mut tempfile::NamedTempFile, settings: &Settings) {
    let text = toml::to_string(settings).unwrap();
    write_config_text(file, &text);
}

pub fn write_config_text(file: &mut tempfile::NamedTempFile, text: &str) {
    let handle = file.as_file_mut();
    handle.set_len(0).unwrap();
    std::io::Seek::rewind(handle).unwrap();
    handle.write_all(text.as_bytes()).unwrap();
    handle.sync_all().unwrap();
}

/// Spawns the application with `auth.mode = "tokens"`, once it has read the tokens.
pub async fn spawn_app_with_tokens(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let app = spawn_app_with(|settings| {
        settings.auth.mode = AuthMode::Tokens;
        customize(settings);
    })
    .await;
    app.wait_for_tokens().await;
    app
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns the application after `customize` has adjusted the test settings.
pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let database = TestDatabase::create_migrated().await;
    spawn_app_on(database, customize).await
}

/// Spawns the application against a database the test prepared itself.
pub async fn spawn_app_on(
    database: TestDatabase,
    customize: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = test_settings(&database);
    customize(&mut settings);
    let mut config_file = tempfile::NamedTempFile::new().unwrap();
    write_config(&mut config_file, &settings);
    // An empty environment keeps the developer's APP_* variables out of the tests.
    let source = ConfigSource::for_file(config_file.path().to_owned(), HashMap::new());
    let (loaded, _) = source.load::<Settings>().unwrap();
    let application = Application::build(loaded, source, LogControl::default()).unwrap();
    let address = format!("http://127.0.0.1:{}", application.port());
    let operators_address =
        (application.operators_port()).map(|port| format!("http://127.0.0.1:{port}"));
    let state = application.state();
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        operators_address,
        state,
        http: reqwest::Client::new(),
        database,
        settings,
        config_file,
    }
}

impl TestApp {
    /// Builds `indexes` in the app's database and has its repository read through
    /// them at once (the server would notice within 5 s).
    pub async fn build_search_indexes(&self, indexes: &[SearchIndex]) {
        let client = self.database.client().await;
        let wanted = indexes.iter().copied().collect();
        audit_core::search_index::create_missing(&client, wanted)
            .await
            .unwrap();
        let found = self
            .state
            .runtime()
            .repository
            .refresh_search_indexes()
            .await;
        assert_eq!(found.unwrap(), indexes.iter().copied().collect());
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_events(&self, body: &Value) -> reqwest::Response {
        self.post_raw(serde_json::to_vec(body).unwrap()).await
    }

    pub async fn post_raw(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(self.url("/api/event"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Posts one valid event and returns the status: 201 shows the server still works.
    pub async fn post_one_event(&self) -> reqwest::StatusCode {
        self.post_events(&serde_json::json!([event("a", serde_json::json!(1))]))
            .await
            .status()
    }

    pub async fn get_events(&self, query: &str) -> reqwest::Response {
        self.http
            .get(self.url(&format!("/api/event{query}")))
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// Rewrites the config file and asks the server to reload it.
    pub async fn reload_with(
        &mut self,
        customize: impl FnOnce(&mut Settings),
    ) -> reqwest::Response {
        customize(&mut self.settings);
        let settings = self.settings.clone();
        write_config(&mut self.config_file, &settings);
        self.reload().await
    }

    pub async fn reload(&self) -> reqwest::Response {
        self.http.post(self.url("/reload")).send().await.unwrap()
    }

    /// Polls `path` until it answers `wanted`, failing the test after `limit`.
    pub async fn wait_for_status(&self, path: &str, wanted: u16, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.get(path).await.status().as_u16() == wanted {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("{path} did not answer {wanted} within {limit:?}");
    }

    /// Waits until the server has read the tokens at least once.
    pub async fn wait_for_tokens(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.state.tokens.is_loaded() {
            assert!(tokio::time::Instant::now() < deadline, "tokens never read");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Creates a token as the command line does and returns its secret; this server
    /// knows it when this returns.
    pub async fn create_token(&self, request: TokenRequest) -> String {
        let token = request
            .into_new_token(time::OffsetDateTime::now_utc())
            .unwrap();
        let secret =
            access::create_token(&self.state.runtime().repository.pool(), &token, &Actor::Cli)
                .await
                .unwrap();
        reread_tokens(&self.state).await.unwrap();
        secret.expose().to_owned()
    }

    /// A token that may write the given applications, and nothing else.
    pub async fn writer_of(&self, name: &str, applications: &[&str]) -> String {
        self.create_token(TokenRequest {
            name: name.to_owned(),
            write: owned(applications),
            ..TokenRequest::default()
        })
        .await
    }

    /// A token that may read the given applications, and nothing else.
    pub async fn reader_of(&self, name: &str, applications: &[&str]) -> String {
        self.create_token(TokenRequest {
            name: name.to_owned(),
            read: owned(applications),
            ..TokenRequest::default()
        })
        .await
    }

    pub async fn post_events_as(&self, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/api/event"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_events_as(&self, token: &str, query: &str) -> reqwest::Response {
        self.http
            .get(self.url(&format!("/api/event{query}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn metrics_text(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
    }
}

fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

/// A valid event with the given application name and payload.
pub fn event(application: &str, payload: Value) -> Value {
    serde_json::json!({
        "event_ts": "2023-12-05T12:55:52.805022Z",
        "application_name": application,
        "event_kind": "UserLogin",
        "payload": payload,
    })
}

/// Reads a JSON body, failing the test with the raw text when it is not JSON.
pub async fn json_body(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}
