//! A real Prometheus scrapes a real server under generated load; every expression of
//! the shipped dashboard and rules must return data.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use audit_tests::server_process::{free_port, workspace_binary};
use audit_tests::test_app::spawn_app_with;
use serde_json::Value;

struct Prometheus {
    child: Child,
    address: String,
    _directory: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn deploy_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

async fn start_prometheus(target_port: u16) -> Prometheus {
    let directory = tempfile::tempdir().unwrap();
    let rules = deploy_directory().join("prometheus/alerts.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: audit-collector\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n",
        rules.canonicalize().unwrap().display()
    );
    let config_path = directory.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            directory.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package prometheus) must be installed; .ci/run installs it");
    let prometheus = Prometheus {
        child,
        address: format!("http://127.0.0.1:{port}"),
        _directory: directory,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(response) = reqwest::get(format!("{}/-/ready", prometheus.address)).await
            && response.status().is_success()
        {
            return prometheus;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("prometheus did not become ready");
}

async fn query(prometheus: &Prometheus, expression: &str) -> Vec<Value> {
    let response: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/query", prometheus.address))
        .query(&[("query", expression)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(response["status"], "success", "{expression}: {response}");
    response["data"]["result"].as_array().unwrap().clone()
}

/// Every PromQL expression the dashboard and the rules use, with Grafana's variables
/// replaced and the alerts' thresholds cut off (a quiet alert has no data by design).
fn shipped_expressions() -> Vec<String> {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy_directory().join("grafana/audit-collector.json")).unwrap(),
    )
    .unwrap();
    let mut expressions: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap().iter())
        .map(|target| {
            target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$__range", "5m")
        })
        .collect();
    let rules = std::fs::read_to_string(deploy_directory().join("prometheus/alerts.yml")).unwrap();
    for line in rules.lines().map(str::trim) {
        if let Some(record) = line.strip_prefix("- record: ") {
            expressions.push(record.to_owned());
        }
        if let Some(alert) = line.strip_prefix("expr: ")
            && !alert.starts_with('|')
        {
            let measured = alert
                .split([' '])
                .take_while(|word| !matches!(*word, ">" | "<" | "==" | "!="))
                .collect::<Vec<_>>()
                .join(" ");
            expressions.push(measured);
        }
    }
    expressions
}

#[tokio::test]
async fn prometheus_finds_data_for_every_dashboard_and_alert_expression() {
    let app = spawn_app_with(|settings| settings.failure.chance = 0.1).await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let prometheus = start_prometheus(port).await;
    assert_eq!(app.reload().await.status(), 200);
    let url = app.address.clone();

    let traffic = tokio::task::spawn_blocking(move || {
        Command::new(workspace_binary("audit-generate"))
            .args([
                "traffic",
                "--url",
                &url,
                "--duration",
                "15s",
                "--concurrency",
                "4",
                "--delay",
                "0.005",
                "--get-ratio",
                "0.2",
                "--seed",
                "5",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        traffic.status.success(),
        "{}",
        String::from_utf8_lossy(&traffic.stderr)
    );
    // One more scrape and rule evaluation after the last request.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let expressions = shipped_expressions();
    assert!(expressions.len() > 15, "{expressions:?}");
    for expression in &expressions {
        let result = query(&prometheus, expression).await;
        assert!(!result.is_empty(), "no data for {expression}");
    }
    let ratio: f64 = query(&prometheus, "audit:http_error_ratio:rate5m").await[0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (0.05..=0.16).contains(&ratio),
        "error ratio {ratio} with failure.chance 0.1"
    );
}

fn promtool(arguments: &[&str]) -> (bool, String) {
    let output = Command::new("promtool")
        .args(arguments)
        .current_dir(deploy_directory().join("prometheus"))
        .output()
        .expect("promtool (Debian package prometheus) must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn the_alert_rules_pass_their_promtool_unit_tests() {
    let (ok, output) = promtool(&["test", "rules", "alerts_test.yml"]);

    assert!(ok, "{output}");
}

#[test]
fn the_shipped_prometheus_config_is_valid() {
    let (ok, output) = promtool(&["check", "config", "prometheus.yml"]);

    assert!(ok, "{output}");
}
