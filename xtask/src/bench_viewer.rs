//! The viewer's weight and its time to first rows (issue 17), for `cargo xtask bench`:
//! headless Chromium opens `/ui` on the bulk-loaded read table several times, each a
//! fresh load, driven over WebDriver by chromedriver (plain JSON over HTTP, so curl
//! is all it takes). The page itself records when its first rows were in the table
//! (`document.body.dataset.firstRowsMs`, from navigation start).

use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::bench::{PORT, curl};

const LOADS: usize = 7;

pub(crate) fn viewer_report(table_rows: u64) -> anyhow::Result<String> {
    let driver = Driver::start()?;
    let measured = driver.measure();
    drop(driver);
    let (mut first_rows_ms, bytes, files) = measured?;
    first_rows_ms.sort_by(f64::total_cmp);
    let median = first_rows_ms[first_rows_ms.len() / 2];
    let mut report = String::new();
    writeln!(
        report,
        "viewer /ui in headless Chromium on the table of {table_rows} rows: {files} requests, \
         {bytes} bytes in all (page, script, style, settings, first page of events); \
         first rows shown {median:.0} ms after navigation (median of {LOADS} fresh loads; \
         {:.0} to {:.0} ms)",
        first_rows_ms[0],
        first_rows_ms[first_rows_ms.len() - 1]
    )?;
    Ok(report)
}

/// chromedriver with one headless Chromium session, in a process group of its own.
struct Driver {
    child: Child,
    url: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> anyhow::Result<Self> {
        let port = private_cluster::free_port()?;
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("failed to start chromedriver (Debian package chromium-driver)")?;
        let url = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir()?;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run",
                         "--window-size=1366,900",
                         format!("--user-data-dir={}", profile.path().display())],
            },
        }}});
        let deadline = Instant::now() + Duration::from_secs(20);
        let session = loop {
            match post(&format!("{url}/session"), &capabilities) {
                Ok(answer) => match answer["value"]["sessionId"].as_str() {
                    Some(session) => break session.to_owned(),
                    None => bail!("chromedriver made no session: {answer}"),
                },
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(error) => return Err(error.context("chromedriver did not answer")),
            }
        };
        Ok(Self {
            child,
            url,
            session,
            _profile: profile,
        })
    }

    /// The time to first rows of each fresh load, the bytes the last load moved and
    /// how many requests it made.
    fn measure(&self) -> anyhow::Result<(Vec<f64>, u64, usize)> {
        let session = format!("{}/session/{}", self.url, self.session);
        let page = format!("http://127.0.0.1:{PORT}/ui");
        let mut times = Vec::new();
        let mut weight = (0, 0);
        for _ in 0..LOADS {
            // A blank page between loads, so that each starts from nothing shown.
            post(&format!("{session}/url"), &json!({"url": "about:blank"}))?;
            post(&format!("{session}/url"), &json!({"url": page}))?;
            let deadline = Instant::now() + Duration::from_secs(30);
            let shown = loop {
                let answer = self.script(
                    &session,
                    "return document.body && document.body.dataset.firstRowsMs || null;",
                )?;
                if let Some(shown) = answer.as_str() {
                    break shown.parse::<f64>().context("firstRowsMs")?;
                }
                if Instant::now() > deadline {
                    bail!("the viewer showed no rows within 30 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            times.push(shown);
            let entries = self.script(
                &session,
                "return performance.getEntriesByType('navigation')\
                 .concat(performance.getEntriesByType('resource'))\
                 .map((entry) => entry.transferSize);",
            )?;
            let sizes: Vec<u64> = serde_json::from_value(entries)?;
            weight = (sizes.iter().sum(), sizes.len());
        }
        Ok((times, weight.0, weight.1))
    }

    fn script(&self, session: &str, script: &str) -> anyhow::Result<Value> {
        let answer = post(
            &format!("{session}/execute/sync"),
            &json!({"script": script, "args": []}),
        )?;
        Ok(answer["value"].clone())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// A WebDriver command: JSON posted, JSON answered.
fn post(url: &str, body: &Value) -> anyhow::Result<Value> {
    let answer = curl(&[
        "-sf",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data",
        &body.to_string(),
        url,
    ])?;
    serde_json::from_str(&answer).context("WebDriver answered something that is not JSON")
}
