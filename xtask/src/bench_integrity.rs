//! Tamper evidence in `cargo xtask bench`: what sealing costs ingest, how far
//! checkpoints lag commits, how fast proofs and the verifier are.
//!
//! 1. 100-event POSTs into a fresh database, sealing off then on, each on a fresh
//!    server, side by side; while sealing is on, a probe posts one event every 200 ms
//!    and times from its 201 to the first 200 of its `/api/event/{id}/proof` (which
//!    needs a signed checkpoint holding it): the commit-to-checkpoint lag; another
//!    posts one every 100 ms and times each to its arrival on a live tail.
//! 2. On the 10M-event read table: the first round seals it whole (events/s), then
//!    wrk asks for proofs of random events, then `audit-server verify` checks it all.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::bench::{
    BenchEnvironment, BenchPlan, PORT, curl, fresh_database, post_script, start_server,
    write_server_config,
};
use crate::command::last_output_line;
use crate::cpu::{CpuPerRequest, CpuSample};
use crate::probe_client::{HttpConnection, PsqlSession};
use crate::wrk::{WrkResult, run_wrk, wrk_command};

/// Clients asking for proofs at once.
pub(crate) const PROOF_CLIENTS: u32 = 4;
pub(crate) const SEALED_DATABASE: &str = "audit_bench_sealed";

/// A checkpoint signing key made for the run, and its verifier key.
pub(crate) struct BenchKey {
    file: PathBuf,
    verifier: String,
}

impl BenchKey {
    pub(crate) fn create(context: &BenchEnvironment) -> anyhow::Result<Self> {
        let file = context.directory.join("checkpoint.key");
        let _ = std::fs::remove_file(&file);
        let mut command = Command::new(context.binaries.join("audit-server"));
        command
            .args(["keygen", "--name", "bench.audit/log", "--out"])
            .arg(&file);
        context.record(&command);
        let verifier = last_output_line(&mut command)?;
        Ok(Self { file, verifier })
    }

    /// The bench's server config for `dsn`, with sealing on.
    fn sealed_config(&self, context: &BenchEnvironment, dsn: &str) -> anyhow::Result<PathBuf> {
        let path = write_server_config(context, dsn, "off")?;
        let mut text = std::fs::read_to_string(&path)?;
        text.push_str(&format!(
            "[integrity]\nsigning_key_file = \"{}\"\n",
            self.file.display()
        ));
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

/// One ingest run's figures.
pub(crate) struct IngestRun {
    pub result: WrkResult,
    pub cpu: CpuPerRequest,
}

/// Sealing off, then on: 100-event POSTs, and the lags the probe measured while on.
pub(crate) struct SealedIngest {
    pub off: IngestRun,
    pub on: IngestRun,
    pub lags_ms: Vec<f64>,
    /// From a probe event's 201 to its arrival on a live tail, and how many probes
    /// were posted.
    pub tail_ms: Vec<f64>,
    pub tail_probes: usize,
    /// Rows the sealer read per event it sealed (1 when no row was read twice).
    pub reads_per_sealed: f64,
    /// Leaves the sealer took from seal batches, per event sealed.
    pub batched_per_sealed: f64,
}

pub(crate) fn ingest_with_sealing(
    context: &BenchEnvironment,
    plan: &BenchPlan,
    key: &BenchKey,
) -> anyhow::Result<SealedIngest> {
    let connections = (32 / plan.connection_divisor).max(1);
    let script = post_script(&context.directory, 100)?;
    let url = format!("http://127.0.0.1:{PORT}/api/event");
    let mut runs = Vec::new();
    let mut lags_ms = Vec::new();
    let mut tail = (Vec::new(), 0);
    let mut reads_per_sealed = f64::NAN;
    let mut batched_per_sealed = f64::NAN;
    for sealed in [false, true] {
        let dsn = fresh_database(context, SEALED_DATABASE)?;
        let config = if sealed {
            key.sealed_config(context, &dsn)?
        } else {
            write_server_config(context, &dsn, "off")?
        };
        let mut server = start_server(context, &config)?;
        let stop = Arc::new(AtomicBool::new(false));
        let probe = sealed.then(|| {
            let (stop, dsn) = (stop.clone(), dsn.clone());
            std::thread::spawn(move || probe_lags(&stop, &dsn))
        });
        let tail_probe = sealed.then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || probe_tail(&stop))
        });
        let mut command = wrk_command(&url, Some(&script), connections, plan.run_seconds);
        context.record(&command);
        let before = CpuSample::take(server.id())?;
        let result = run_wrk(&mut command)?;
        let after = CpuSample::take(server.id())?;
        stop.store(true, Ordering::Relaxed);
        if let Some(probe) = probe {
            lags_ms = probe
                .join()
                .map_err(|_| anyhow::anyhow!("the lag probe panicked"))??;
            if let Some(tail_probe) = tail_probe {
                tail = tail_probe
                    .join()
                    .map_err(|_| anyhow::anyhow!("the tail probe panicked"))??;
            }
            let metrics = curl(&["-sf", &format!("http://127.0.0.1:{PORT}/metrics")])?;
            let sealed_events = metric_value(&metrics, "integrity_sealed_events_total")?;
            reads_per_sealed = metric_value(&metrics, "integrity_read_rows_total")? / sealed_events;
            batched_per_sealed =
                metric_value(&metrics, "integrity_batched_leaves_total")? / sealed_events;
        }
        let _ = server.kill();
        let _ = server.wait();
        let requests = result.requests_per_second * f64::from(plan.run_seconds);
        runs.push(IngestRun {
            cpu: before.per_request(&after, requests),
            result,
        });
    }
    let on = runs.pop().context("no sealed run")?;
    let off = runs.pop().context("no unsealed run")?;
    Ok(SealedIngest {
        off,
        on,
        lags_ms,
        tail_ms: tail.0,
        tail_probes: tail.1,
        reads_per_sealed,
        batched_per_sealed,
    })
}

/// `cargo xtask bench-sealing`: [`ingest_with_sealing`] `rounds` times, between two
/// measures of the raw COPY ceiling, for side-by-side comparisons of the sealer.
pub(crate) fn bench_sealing(rounds: u32) -> anyhow::Result<()> {
    let context = BenchEnvironment::prepare()?;
    let plan = BenchPlan::full(None);
    let key = BenchKey::create(&context)?;
    let before = crate::bench::measure_ceiling(&context, plan.ceiling_rows)?;
    let mut runs = Vec::new();
    for round in 1..=rounds {
        let sealed = ingest_with_sealing(&context, &plan, &key)?;
        println!("round {round}: sealing off then on");
        runs.push(sealed);
    }
    let after = crate::bench::measure_ceiling(&context, plan.ceiling_rows)?;
    let ceiling = f64::midpoint(before, after);
    println!("raw COPY ceiling: {ceiling:.0} rows/s ({before:.0} before, {after:.0} after)");
    for (round, sealed) in runs.iter().enumerate() {
        println!("round {}:", round + 1);
        print!("{}", crate::bench::sealed_ingest_lines(sealed, ceiling)?);
    }
    Ok(())
}

/// Posts one probe event of `application` with payload `{"n": n}`; returns after its
/// 201, that is after its commit.
fn post_probe(http: &mut HttpConnection, application: &str, n: u64) -> anyhow::Result<()> {
    let body = format!(
        r#"[{{"event_ts":"2023-12-05T12:55:52.805022Z","application_name":"{application}","event_kind":"Probe","payload":{{"n":{n}}}}}]"#
    );
    let (status, answer) = http.request("POST", "/api/event", Some(&body))?;
    if status != 201 {
        bail!("a probe's POST was answered {status}: {answer}");
    }
    Ok(())
}

/// Posts one event every 100 ms and times each from its 201 to its arrival on a live
/// tail (`GET /api/event/stream`, through `curl -N`) that follows only these events.
fn probe_tail(stop: &AtomicBool) -> anyhow::Result<(Vec<f64>, usize)> {
    let mut stream = Command::new("curl")
        .args([
            "-sN",
            &format!("http://127.0.0.1:{PORT}/api/event/stream?application_name=tail-probe"),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot run curl")?;
    let stdout = stream.stdout.take().context("curl has no output")?;
    let (arrivals, arrived) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The event as a page renders it, with the payload sent: {"n":N}.
            let n = line
                .split_once("\"payload\":{\"n\":")
                .and_then(|(_, rest)| rest.split('}').next())
                .and_then(|digits| digits.parse::<u64>().ok());
            if let Some(n) = n {
                let _ = arrivals.send((n, Instant::now()));
            }
        }
    });
    // The stream starts at the tree's size when it opens: open it before the first.
    std::thread::sleep(Duration::from_millis(500));
    let mut posted = std::collections::HashMap::new();
    let mut n = 0u64;
    let mut http = HttpConnection::new(&format!("127.0.0.1:{PORT}"));
    while !stop.load(Ordering::Relaxed) {
        post_probe(&mut http, "tail-probe", n)?;
        posted.insert(n, Instant::now());
        n += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // The last probes' time to arrive.
    std::thread::sleep(Duration::from_secs(3));
    let _ = stream.kill();
    let _ = stream.wait();
    let _ = reader.join();
    let latencies = arrived
        .try_iter()
        .filter_map(|(n, at)| {
            posted
                .get(&n)
                .map(|sent| at.saturating_duration_since(*sent))
        })
        .map(|latency| latency.as_secs_f64() * 1000.0)
        .collect();
    Ok((latencies, posted.len()))
}

/// The value of an unlabelled sample in a Prometheus exposition.
fn metric_value(exposition: &str, name: &str) -> anyhow::Result<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .with_context(|| format!("no {name} in the metrics"))
}

/// Posts one event at a time and times each until its proof is served.
fn probe_lags(stop: &AtomicBool, dsn: &str) -> anyhow::Result<Vec<f64>> {
    let mut lags = Vec::new();
    let mut n = 0u64;
    let mut http = HttpConnection::new(&format!("127.0.0.1:{PORT}"));
    let mut psql = PsqlSession::open(dsn)?;
    while !stop.load(Ordering::Relaxed) {
        // The probe's id is above the sequence's value now: only the ids drawn while
        // it is posted are looked at to find it.
        let before = psql.value(
            "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM events_id_seq",
        )?;
        post_probe(&mut http, "lag-probe", n)?;
        n += 1;
        let committed = Instant::now();
        let id: i64 = psql
            .value(&format!(
                "SELECT max(id) FROM events WHERE id > {before} AND application_name = 'lag-probe'"
            ))?
            .parse()
            .context("the probe's event is not in the table")?;
        let proof = format!("/api/event/{id}/proof");
        loop {
            let (status, _) = http.request("GET", &proof, None)?;
            if status == 200 {
                lags.push(committed.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if committed.elapsed() > Duration::from_secs(60) {
                bail!("event {id} had no proof within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(lags)
}

/// The sealed 10M-event table's figures.
pub(crate) struct TreeFigures {
    pub rows: u64,
    pub seal_seconds: f64,
    /// One client, then [`PROOF_CLIENTS`].
    pub proof_alone: WrkResult,
    pub proof: WrkResult,
    pub verify_line: String,
    pub verify_rate: f64,
    /// The export's figures, measured on the same server (issue 15).
    pub export_report: String,
}

/// Seals the read table whole, then measures proofs and the verifier on it.
pub(crate) fn proofs_and_verifier(
    context: &BenchEnvironment,
    plan: &BenchPlan,
    read_dsn: &str,
    key: &BenchKey,
) -> anyhow::Result<TreeFigures> {
    let config = key.sealed_config(context, read_dsn)?;
    let started = Instant::now();
    let mut server = start_server(context, &config)?;
    let rows = plan.read_rows;
    loop {
        if let Ok(note) = curl(&["-sf", &format!("http://127.0.0.1:{PORT}/api/checkpoint")])
            && note
                .lines()
                .nth(1)
                .and_then(|size| size.parse::<u64>().ok())
                >= Some(rows)
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("the read table was not sealed within 30 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let seal_seconds = started.elapsed().as_secs_f64();
    let script = proof_script(&context.directory, rows)?;
    // Latency figures: one client alone, then few enough that requests seldom queue
    // for the cores.
    let mut runs = Vec::new();
    for connections in [1, PROOF_CLIENTS] {
        let mut command = wrk_command(
            &format!("http://127.0.0.1:{PORT}/api/event"),
            Some(&script),
            connections,
            plan.run_seconds,
        );
        context.record(&command);
        runs.push(run_wrk(&mut command)?);
    }
    let proof = runs.pop().context("no proof run")?;
    let proof_alone = runs.pop().context("no proof run")?;
    // The server on the read table is up: the export is measured here too.
    let export_report = crate::bench_export::export_figures(server.id(), read_dsn, rows)?;
    let _ = server.kill();
    let _ = server.wait();
    let mut verify = Command::new(context.binaries.join("audit-server"));
    verify
        .arg("--config")
        .arg(&config)
        .args(["verify", "--key", &key.verifier]);
    context.record(&verify);
    let verify_line = last_output_line(&mut verify)?;
    let verify_rate = verify_line
        .rsplit_once('(')
        .and_then(|(_, rate)| rate.split_whitespace().next())
        .and_then(|rate| rate.parse().ok())
        .context("no events/s in the verifier's summary")?;
    if !verify_line.starts_with("OK") {
        bail!("the verifier failed on the bench table: {verify_line}");
    }
    Ok(TreeFigures {
        rows,
        seal_seconds,
        proof_alone,
        proof,
        verify_line,
        verify_rate,
        export_report,
    })
}

/// A wrk script asking for the proof of a random one of the first `rows` ids.
fn proof_script(directory: &Path, rows: u64) -> anyhow::Result<PathBuf> {
    let script = format!(
        "request = function()\n  return wrk.format(\"GET\", \"/api/event/\" .. math.random(1, {rows}) .. \"/proof\")\nend\n"
    );
    let path = directory.join("proof.lua");
    std::fs::write(&path, script)?;
    Ok(path)
}

/// The `fraction` quantile of some samples (nearest rank).
pub(crate) fn quantile(samples: &[f64], fraction: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let wanted = fraction * sorted.len() as f64;
    let rank = (1..=sorted.len())
        .find(|rank| *rank as f64 >= wanted)
        .unwrap_or(sorted.len());
    sorted[rank - 1]
}
