//! A real browser for the viewer's tests: headless Chromium driven over WebDriver by
//! chromedriver (Debian packages `chromium` and `chromium-driver`), one of each per
//! test, with a profile of its own.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::server_process::free_port;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a test waits for the page to show what it expects.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Self {
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            // A group of its own, so that the browser it starts goes with it.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver must be installed (Debian package chromium-driver)");
        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".to_owned(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    // The tests may run as root, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--window-size=1366,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + PATIENCE;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(error) if Instant::now() > deadline => {
                    panic!("no WebDriver session with chromedriver: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Runs `script` (a function body; `arguments` are its arguments) in the page.
    pub async fn run(&self, script: &str, arguments: Vec<Value>) -> Value {
        self.client.execute(script, arguments).await.unwrap()
    }

    /// Waits until `script` returns something other than null or false, and returns
    /// it; panics with `what` after [`PATIENCE`].
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.run(script, vec![]).await;
            if !(value.is_null() || value == json!(false)) {
                return value;
            }
            if Instant::now() > deadline {
                let said = self
                    .run(
                        "const text = (id) => (document.getElementById(id) || {}).textContent; \
                         return [text('status'), text('follow-status'), \
                         document.querySelectorAll('#events tbody tr').length];",
                        vec![],
                    )
                    .await;
                panic!("the page never showed {what}; status, follow status, rows: {said}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The ids of the table's rows, top to bottom.
    pub async fn row_ids(&self) -> Vec<i64> {
        let ids = self
            .run(
                "return [...document.querySelectorAll('#events tbody tr')]\
                 .map((row) => Number(row.dataset.id));",
                vec![],
            )
            .await;
        serde_json::from_value(ids).unwrap()
    }

    /// The table's ids once a load has finished (the status says so).
    pub async fn loaded_row_ids(&self) -> Vec<i64> {
        self.wait_for(
            "a finished load",
            "const status = document.getElementById('status').textContent; \
             return status !== '' && status !== 'Loading…';",
        )
        .await;
        self.row_ids().await
    }

    /// Types `text` into the input `id` in place of what it held.
    pub async fn fill(&self, id: &str, text: &str) {
        let input = self.client.find(Locator::Id(id)).await.unwrap();
        input.clear().await.unwrap();
        if !text.is_empty() {
            input.send_keys(text).await.unwrap();
        }
    }

    pub async fn click(&self, id: &str) {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    pub async fn text_of(&self, id: &str) -> String {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Every URL the page has requested since it was opened (the document, its files
    /// and every fetch), as the browser's resource timing recorded them.
    pub async fn requested_urls(&self) -> Vec<String> {
        let urls = self
            .run(
                "return performance.getEntriesByType('navigation')\
                 .concat(performance.getEntriesByType('resource'))\
                 .map((entry) => entry.name);",
                vec![],
            )
            .await;
        serde_json::from_value(urls).unwrap()
    }

    /// The page's location: path and query.
    pub async fn location(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver and the Chromium processes it started share its group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
    }
}
