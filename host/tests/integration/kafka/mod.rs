//! Through a real Kafka-protocol broker (tansu, started by `.ci/run`):
//! simulator → topic with 4 partitions → `sluice run` → gold equals the
//! independent computation; a broker restarted mid-stream loses and
//! duplicates nothing. The harness (broker, simulator, child processes)
//! lives here; per-partition lateness, sharing partitions among instances
//! and the benchmark have their own files.

use std::io::BufRead;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{self, Expected};

mod bench;
mod fleet_plugins;
mod shared;
mod watermark;

/// Allowed lateness for most of these tests: far beyond the simulated span,
/// so the expectation can be computed from the produced lines as one stream
/// (the per-partition rule has its own test).
const LATENESS_SECS: i64 = 10 * 365 * 86_400;

/// The shared broker's address from `SLUICE_TEST_KAFKA`; `None` (with the
/// reason printed) on a developer machine without one, a panic in CI.
pub fn shared_broker() -> Option<String> {
    match std::env::var("SLUICE_TEST_KAFKA") {
        Ok(addr) if !addr.is_empty() => Some(addr),
        _ => {
            skip_or_fail("SLUICE_TEST_KAFKA is not set (`.ci/run` starts tansu and sets it)");
            None
        }
    }
}

fn skip_or_fail(reason: &str) {
    if std::env::var("SLUICE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("a required service is missing: {reason}");
    }
    eprintln!("skipping: {reason}");
}

/// The tansu binary `.ci/run` installs.
fn tansu_binary() -> Option<PathBuf> {
    let path = std::env::var_os("SLUICE_TEST_TANSU")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/sluice-ci/tansu-0.6.0/bin/tansu"))
        })?;
    if path.is_file() {
        Some(path)
    } else {
        skip_or_fail(&format!("no tansu binary at {}", path.display()));
        None
    }
}

/// A tansu broker of the test's own, on its own port and sqlite file.
pub struct Broker {
    binary: PathBuf,
    dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Broker {
    pub fn start(dir: &Path) -> Option<Broker> {
        let binary = tansu_binary()?;
        let port = common::free_port();
        let mut broker = Broker {
            binary,
            dir: dir.to_path_buf(),
            port,
            child: None,
        };
        std::fs::create_dir_all(dir).unwrap();
        broker.restart();
        Some(broker)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker process (again) over the same storage.
    pub fn restart(&mut self) {
        let url = format!("tcp://{}", self.addr());
        let child = Command::new(&self.binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for_port(self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tansu did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh topic name, so tests sharing a broker never see each other.
pub fn unique_topic(name: &str) -> String {
    format!("sluice-{name}-{}", uuid::Uuid::new_v4().simple())
}

/// The simulator settings both the CLI run and the expectation use.
pub struct Sim {
    pub seed: u64,
    pub events: u64,
    pub faults: f64,
}

impl Sim {
    pub fn config(&self) -> sluice_simulator::SimConfig {
        sluice_simulator::SimConfig {
            seed: self.seed,
            events: self.events,
            accounts: 40,
            users_per_account: 5,
            days: 2,
            duplicate_fraction: self.faults,
            late_fraction: self.faults,
            malformed_fraction: self.faults / 2.0,
            ..Default::default()
        }
    }

    pub fn lines(&self) -> Vec<String> {
        sluice_simulator::Simulator::new(self.config())
            .unwrap()
            .map(|e| e.line)
            .collect()
    }

    /// `sluice simulate --to kafka://…` for these settings; `partitions` > 0
    /// creates the topic with that many partitions if it is missing.
    pub fn command(&self, broker: &str, topic: &str, partitions: u32) -> Command {
        let c = self.config();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.arg("simulate")
            .args(["--to", &format!("kafka://{broker}/{topic}")])
            .args(["--partitions", &partitions.to_string()])
            .args(["--seed", &c.seed.to_string()])
            .args(["--events", &c.events.to_string()])
            .args(["--accounts", &c.accounts.to_string()])
            .args(["--users-per-account", &c.users_per_account.to_string()])
            .args(["--days", &c.days.to_string()])
            .args(["--duplicate-fraction", &c.duplicate_fraction.to_string()])
            .args(["--late-fraction", &c.late_fraction.to_string()])
            .args(["--malformed-fraction", &c.malformed_fraction.to_string()]);
        cmd
    }

    /// Produces the events into `topic`, creating it with 4 partitions.
    pub fn produce(&self, broker: &str, topic: &str) {
        let output = self.command(broker, topic, 4).output().unwrap();
        assert!(
            output.status.success(),
            "simulate failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// `sluice run` consuming `topic` into `lake`, collector off.
pub fn sluice_run(lake: &Path, broker: &str, topic: &str, max_events: usize) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(["run", "--listen", ""])
        .arg("--lake")
        .arg(lake)
        .env("SLUICE_KAFKA__BROKERS", broker)
        .env("SLUICE_KAFKA__TOPIC", topic)
        .env("SLUICE_KAFKA__GROUP", format!("{topic}-group"))
        .env("SLUICE_BATCH__MAX_EVENTS", max_events.to_string())
        .env("SLUICE_BATCH__MAX_WAIT_MS", "200")
        .env("SLUICE_LATENESS__ALLOWED_SECS", LATENESS_SECS.to_string())
        .env("SLUICE_CACHE_DIR", lake.parent().unwrap().join("cache"))
        .env("SLUICE_LOG", "sluice=info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A child's committed batches and partition assignments, as they happen.
pub struct Watch {
    pub batches: mpsc::Receiver<()>,
    /// On a shared lake: true when the instance takes the refine role,
    /// false when its silver and gold stop.
    pub roles: mpsc::Receiver<bool>,
    pub assignments: mpsc::Receiver<String>,
    /// The `/metrics` URL, if the child serves one.
    pub metrics: mpsc::Receiver<String>,
}

/// Forwards the child's stderr to the test's, signalling batches and
/// assignments.
pub fn watch(child: &mut Child, tag: &'static str) -> Watch {
    let stderr = child.stderr.take().unwrap();
    let (batch_tx, batches) = mpsc::channel();
    let (role_tx, roles) = mpsc::channel();
    let (assignment_tx, assignments) = mpsc::channel();
    let (metrics_tx, metrics) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("batch committed") {
                let _ = batch_tx.send(());
                continue;
            }
            if line.contains("took the refine role") {
                let _ = role_tx.send(!line.contains("another instance"));
            }
            if line.contains("silver and gold stopped here") {
                let _ = role_tx.send(false);
            }
            if line.contains("kafka partitions assigned")
                || line.contains("kafka partitions revoked")
            {
                let _ = assignment_tx.send(line.clone());
            }
            if line.contains("metrics on") {
                let url = line.split_whitespace().last().unwrap_or_default();
                let _ = metrics_tx.send(url.to_string());
            }
            eprintln!("[{tag}] {line}");
        }
    });
    Watch {
        batches,
        roles,
        assignments,
        metrics,
    }
}

/// Waits until bronze holds `n` records (or panics after `limit`).
pub async fn wait_for_bronze(lake: &Path, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let have = if lake.join("bronze_events/_delta_log").is_dir() {
            common::count(lake, "SELECT COUNT(*) FROM bronze_events").await as usize
        } else {
            0
        };
        if have >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "bronze holds {have} of {n} records after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// SIGTERM, then the exit status must be success (it drained and committed).
pub fn terminate(mut child: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "sluice run exited with {status}");
}

/// Every record once in bronze, and silver and gold as computed independently.
pub async fn assert_exactly_once(lake: &Path, lines: &[String]) {
    assert_exactly_once_in(&sluice::lake::Lake::local(lake).unwrap(), lines).await;
}

/// [`assert_exactly_once`] for a lake anywhere.
pub async fn assert_exactly_once_in(lake: &sluice::lake::Lake, lines: &[String]) {
    let bronze = common::count_in(lake, "SELECT COUNT(*) FROM bronze_events").await;
    let distinct = common::count_in(
        lake,
        "SELECT COUNT(*) FROM (SELECT DISTINCT source_partition, source_offset FROM bronze_events)",
    )
    .await;
    assert_eq!(bronze as usize, lines.len(), "bronze holds every record");
    assert_eq!(distinct, bronze, "no record is in bronze twice");
    let expected = Expected::compute(lines, LATENESS_SECS * 1_000_000);
    let silver = common::count_in(lake, "SELECT COUNT(*) FROM silver_events").await;
    assert_eq!(silver as usize, expected.accepted.len());
    common::assert_gold_matches_in(lake, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_to_a_four_partition_topic_to_gold() {
    let Some(broker) = shared_broker() else {
        return;
    };
    through_the_broker_to_gold(&broker).await;
}

pub async fn through_the_broker_to_gold(broker: &str) {
    let broker = broker.to_string();
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("gold");
    let sim = Sim {
        seed: 5,
        events: 20_000,
        faults: 0.03,
    };
    sim.produce(&broker, &topic);
    let lines = sim.lines();
    let lake = dir.path().join("lake");
    let mut child = sluice_run(&lake, &broker, &topic, 4_000)
        .env("SLUICE_METRICS__LISTEN", "127.0.0.1:0")
        .env("SLUICE_KAFKA__LAG_REPORT_MS", "200")
        .spawn()
        .unwrap();
    let watch = watch(&mut child, "run");
    let metrics = watch
        .metrics
        .recv_timeout(Duration::from_secs(60))
        .expect("the metrics URL");
    wait_for_bronze(&lake, lines.len(), Duration::from_secs(180)).await;
    assert_lag_metric_reaches_zero(&metrics, &topic).await;
    terminate(child);
    assert_exactly_once(&lake, &lines).await;
    let partitions = common::count(
        &lake,
        "SELECT COUNT(DISTINCT source_partition) FROM bronze_events",
    )
    .await;
    assert_eq!(partitions, 4, "events came from all four partitions");

    // `sluice status`: every partition committed up to its high watermark.
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("status")
        .arg("--lake")
        .arg(&lake)
        .env("SLUICE_KAFKA__BROKERS", &broker)
        .env("SLUICE_KAFKA__TOPIC", &topic)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("total lag: 0 events"), "{report}");
    let rows = report
        .lines()
        .filter(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            // partition, committed, high watermark, lag, gap
            cells.len() == 5 && cells.iter().all(|c| c.parse::<i64>().is_ok())
        })
        .count();
    assert_eq!(rows, 4, "one line per partition: {report}");
    for tier in ["silver", "gold"] {
        let lag = report
            .lines()
            .find(|l| l.split_whitespace().next() == Some(tier))
            .and_then(|l| l.split_whitespace().last());
        assert_eq!(lag, Some("0"), "{tier} caught up: {report}");
    }
}

/// The lag gauge of each of the topic's four partitions, once everything is
/// in bronze, goes to zero (within 30 s).
async fn assert_lag_metric_reaches_zero(metrics: &str, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let samples = common::scrape(metrics).await;
        let lags: Vec<Option<f64>> = (0..4)
            .map(|p| {
                let partition = format!("partition=\"{topic}/{p}\"");
                let labels = ["source=\"kafka\"", partition.as_str()];
                common::sample(&samples, "sluice_source_lag_events", &labels)
            })
            .collect();
        if lags.iter().all(|l| *l == Some(0.0)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "partition lag gauges after 30 s: {lags:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restarted_mid_stream_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut broker) = Broker::start(&dir.path().join("broker")) else {
        return;
    };
    let topic = unique_topic("restart");
    let (before, after) = (
        Sim {
            seed: 9,
            events: 15_000,
            faults: 0.02,
        },
        Sim {
            seed: 10,
            events: 15_000,
            faults: 0.02,
        },
    );
    before.produce(&broker.addr(), &topic);
    let mut lines = before.lines();
    let lake = dir.path().join("lake");
    let mut child = sluice_run(&lake, &broker.addr(), &topic, 1_000)
        .spawn()
        .unwrap();
    let watch = watch(&mut child, "run");
    watch
        .batches
        .recv_timeout(Duration::from_secs(120))
        .expect("a first batch");
    // Away while the pipeline still works through what was fetched: the
    // source retries with backoff and the broker's offset commits fail.
    broker.stop();
    std::thread::sleep(Duration::from_secs(3));
    broker.restart();
    after.produce(&broker.addr(), &topic);
    lines.extend(after.lines());
    wait_for_bronze(&lake, lines.len(), Duration::from_secs(180)).await;
    terminate(child);
    assert_exactly_once(&lake, &lines).await;
}

/// `line` without ANSI colour sequences.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the end of the sequence (a letter).
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
