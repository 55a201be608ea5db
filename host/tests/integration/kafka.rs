//! Through a real Kafka-protocol broker (tansu, started by `.ci/run`):
//! simulator → topic with 4 partitions → `sluice run` → gold equals the
//! independent computation; a broker restarted mid-stream loses and
//! duplicates nothing.

use std::io::BufRead;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{self, Expected, GOLD_QUERIES};

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
        let port = free_port();
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

/// A child's committed batches and partition claims, as they happen.
pub struct Watch {
    pub batches: mpsc::Receiver<()>,
    pub claims: mpsc::Receiver<String>,
    /// The `/metrics` URL, if the child serves one.
    pub metrics: mpsc::Receiver<String>,
}

/// Forwards the child's stderr to the test's, signalling batches and claims.
pub fn watch(child: &mut Child, tag: &'static str) -> Watch {
    let stderr = child.stderr.take().unwrap();
    let (batch_tx, batches) = mpsc::channel();
    let (claim_tx, claims) = mpsc::channel();
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
            if line.contains("claimed partitions") || line.contains("handed partitions over") {
                let _ = claim_tx.send(line.clone());
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
        claims,
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
    let bronze = common::count(lake, "SELECT COUNT(*) FROM bronze_events").await;
    let distinct = common::count(
        lake,
        "SELECT COUNT(*) FROM (SELECT DISTINCT source_partition, source_offset FROM bronze_events)",
    )
    .await;
    assert_eq!(bronze as usize, lines.len(), "bronze holds every record");
    assert_eq!(distinct, bronze, "no record is in bronze twice");
    let expected = Expected::compute(lines, LATENESS_SECS * 1_000_000);
    let silver = common::count(lake, "SELECT COUNT(*) FROM silver_events").await;
    assert_eq!(silver as usize, expected.accepted.len());
    for (table, sql) in GOLD_QUERIES {
        let actual = common::rows(lake, sql).await;
        common::assert_same_rows(table, &actual, &expected.table(table));
    }
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
            cells.len() == 4 && cells.iter().all(|c| c.parse::<i64>().is_ok())
        })
        .count();
    assert_eq!(rows, 4, "one line per partition: {report}");
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

/// A backlog of four partitions spanning two days of event time, read with
/// one hour of allowed lateness: each partition is judged on its own, so
/// silver and gold equal the per-partition computation however the source
/// interleaved the partitions (a single watermark would have called the
/// early events of a partition read after another "late").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_judged_late_per_partition_not_by_read_order() {
    let Some(broker) = shared_broker() else {
        return;
    };
    const HOUR_SECS: i64 = 3_600;
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("watermark");
    let sim = Sim {
        seed: 21,
        events: 16_000,
        faults: 0.03,
    };
    sim.produce(&broker, &topic);
    let lines = sim.lines();
    let lake = dir.path().join("lake");
    let mut child = sluice_run(&lake, &broker, &topic, 4_000)
        .env("SLUICE_LATENESS__ALLOWED_SECS", HOUR_SECS.to_string())
        .spawn()
        .unwrap();
    let _watch = watch(&mut child, "run");
    wait_for_bronze(&lake, lines.len(), Duration::from_secs(180)).await;
    terminate(child);

    let streams = bronze_lines(
        &lake,
        "SELECT source_partition, raw FROM bronze_events ORDER BY source_partition, source_offset",
    )
    .await;
    assert_eq!(streams.len(), 4, "four partitions");
    let mut all: Vec<String> = streams.iter().flatten().cloned().collect();
    let mut produced = lines.clone();
    all.sort();
    produced.sort();
    assert_eq!(all, produced, "bronze holds exactly the produced lines");
    assert_no_id_in_two_partitions(&streams);

    let expected = Expected::compute_streams(&streams, HOUR_SECS * 1_000_000);
    assert!(
        expected.late > 0,
        "some events are late within their partition"
    );
    let silver = common::count(&lake, "SELECT COUNT(*) FROM silver_events").await;
    assert_eq!(silver as usize, expected.accepted.len());
    let late = common::count(
        &lake,
        "SELECT COUNT(*) FROM quarantine WHERE layer = 'silver' AND reason = 'late'",
    )
    .await;
    assert_eq!(late as usize, expected.late);
    for (table, sql) in GOLD_QUERIES {
        let actual = common::rows(&lake, sql).await;
        common::assert_same_rows(table, &actual, &expected.table(table));
    }
    let arrival = bronze_lines(
        &lake,
        "SELECT 'all', raw FROM bronze_events ORDER BY batch_id, batch_row",
    )
    .await;
    let single = Expected::compute_streams(&arrival, HOUR_SECS * 1_000_000);
    eprintln!(
        "late: {} judged per partition; one watermark over the read order would have said {}",
        expected.late, single.late
    );
}

/// Raw bronze lines grouped by the first column of `sql` (in query order).
async fn bronze_lines(lake: &Path, sql: &str) -> Vec<Vec<String>> {
    use deltalake::arrow::array::{Array, BinaryArray, StringArray};
    use deltalake::arrow::compute::cast;
    use deltalake::arrow::datatypes::DataType;
    let lake = sluice::lake::Lake::local(lake).unwrap();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for b in sluice::query::sql(&lake, sql).await.unwrap() {
        let keys = cast(b.column(0), &DataType::Utf8).unwrap();
        let keys = keys.as_any().downcast_ref::<StringArray>().unwrap();
        let raw = cast(b.column(1), &DataType::Binary).unwrap();
        let raw = raw.as_any().downcast_ref::<BinaryArray>().unwrap();
        for i in 0..b.num_rows() {
            let line = String::from_utf8_lossy(raw.value(i)).into_owned();
            match groups.last_mut() {
                Some((key, lines)) if key == keys.value(i) => lines.push(line),
                _ => groups.push((keys.value(i).to_string(), vec![line])),
            }
        }
    }
    groups.into_iter().map(|(_, lines)| lines).collect()
}

/// Copies of an event (the simulator's duplicates) share its user and so
/// its partition; the per-partition expectation relies on that.
fn assert_no_id_in_two_partitions(streams: &[Vec<String>]) {
    let mut partition_of = std::collections::HashMap::new();
    for (p, lines) in streams.iter().enumerate() {
        for ev in lines.iter().filter_map(|l| common::parse(l)) {
            let first = *partition_of.entry(ev.id.clone()).or_insert(p);
            assert_eq!(first, p, "event {} is in two partitions", ev.id);
        }
    }
}

/// The `owned=N` of a claim log line.
fn owned(line: &str) -> usize {
    plain(line)
        .split_whitespace()
        .find_map(|w| w.strip_prefix("owned="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no owned= in {line}"))
}

/// Produces `events` simulated events (2 % faults) into `topic`; returns
/// their lines.
fn produce_sim(broker: &str, topic: &str, seed: u64, events: u64) -> Vec<String> {
    let sim = Sim {
        seed,
        events,
        faults: 0.02,
    };
    sim.produce(broker, topic);
    sim.lines()
}

/// A `sluice run` sharing `topic`'s partitions with other instances on `lake`.
fn shared_instance(lake: &Path, broker: &str, topic: &str, tag: &'static str) -> (Child, Watch) {
    let mut child = sluice_run(lake, broker, topic, 1_000)
        .env("SLUICE_KAFKA__SHARE_PARTITIONS", "true")
        .spawn()
        .unwrap();
    let watch = watch(&mut child, tag);
    (child, watch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_partitions_and_survive_a_kill_9() {
    let Some(broker) = shared_broker() else {
        return;
    };
    shared_with_a_kill_9(&broker).await;
}

pub async fn shared_with_a_kill_9(broker: &str) {
    let broker = broker.to_string();
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("shared");
    let mut lines = produce_sim(&broker, &topic, 21, 12_000);
    let lake = dir.path().join("lake");
    let start = |tag: &'static str| shared_instance(&lake, &broker, &topic, tag);
    let (mut a, a_watch) = start("a");
    let (b, b_watch) = start("b");
    let limit = Duration::from_secs(120);
    let a_claim = a_watch.claims.recv_timeout(limit).expect("a claims");
    let b_claim = b_watch.claims.recv_timeout(limit).expect("b claims");
    assert_eq!(
        (owned(&a_claim), owned(&b_claim)),
        (2, 2),
        "the instances share the four partitions"
    );
    a_watch.batches.recv_timeout(limit).expect("a commits");
    b_watch.batches.recv_timeout(limit).expect("b commits");

    a.kill().unwrap(); // SIGKILL, mid-stream
    a.wait().unwrap();
    let killed = Instant::now();
    let takeover = loop {
        let line = b_watch
            .claims
            .recv_timeout(Duration::from_secs(30))
            .expect("b takes over a's partitions");
        if owned(&line) == 4 {
            break killed.elapsed();
        }
    };
    eprintln!("b took over a's partitions {takeover:?} after the kill");
    assert!(
        takeover < Duration::from_secs(10),
        "takeover took {takeover:?}"
    );

    lines.extend(produce_sim(&broker, &topic, 22, 6_000));
    wait_for_bronze(&lake, lines.len(), Duration::from_secs(240)).await;
    terminate(b);
    assert_exactly_once(&lake, &lines).await;
}

/// `a` owns all four partitions; `b` joins: `a` hands two over once what it
/// read from them is committed, `b` resumes them from the lake; more events
/// follow. Every record once, gold equal to the computation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_joins_later_is_handed_its_share() {
    let Some(broker) = shared_broker() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("join");
    let mut lines = produce_sim(&broker, &topic, 31, 8_000);
    let lake = dir.path().join("lake");
    let start = |tag: &'static str| shared_instance(&lake, &broker, &topic, tag);
    let limit = Duration::from_secs(120);
    let (a, a_watch) = start("a");
    let a_claim = a_watch.claims.recv_timeout(limit).expect("a claims");
    assert_eq!(owned(&a_claim), 4, "alone, a takes every partition");
    a_watch.batches.recv_timeout(limit).expect("a commits");

    let (b, b_watch) = start("b");
    let owned_by = |watch: &Watch, want: usize, who: &str| loop {
        let line = watch
            .claims
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{who} does not reach {want} partitions"));
        if owned(&line) == want {
            break;
        }
    };
    owned_by(&a_watch, 2, "a");
    owned_by(&b_watch, 2, "b");

    lines.extend(produce_sim(&broker, &topic, 32, 6_000));
    b_watch.batches.recv_timeout(limit).expect("b commits");
    wait_for_bronze(&lake, lines.len(), Duration::from_secs(240)).await;
    terminate(a);
    terminate(b);
    assert_exactly_once(&lake, &lines).await;
}

/// Benchmark, not a check: a backlog of `SLUICE_BENCH_EVENTS` (default
/// 300,000) simulated events in a 4-partition topic drained by `sluice run`
/// through every layer into Delta. Prints events/s and the consumer lag
/// over time. Run with
/// `cargo test -p sluice --test integration kafka_benchmark -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run explicitly"]
async fn kafka_benchmark() {
    let Some(broker) = shared_broker() else {
        return;
    };
    let events: u64 = std::env::var("SLUICE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let batch: usize = std::env::var("SLUICE_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("bench");
    let sim = Sim {
        seed: 77,
        events,
        faults: 0.01,
    };
    // With SLUICE_BENCH_RATE (events/s) the events are produced while the
    // pipeline runs; without, they are a backlog produced first.
    let rate: Option<f64> = std::env::var("SLUICE_BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok());
    let producer = match rate {
        None => {
            let produced = Instant::now();
            sim.produce(&broker, &topic);
            println!(
                "produced {events} events to 4 partitions in {:.1} s",
                produced.elapsed().as_secs_f64()
            );
            None
        }
        Some(rate) => {
            // The simulator creates the topic before it produces; give it a
            // moment so the run finds all four partitions.
            let child = sim
                .command(&broker, &topic, 4)
                .args(["--rate", &rate.to_string()])
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_secs(1));
            println!("producing {events} events at {rate} events/s");
            Some(child)
        }
    };
    let lake = dir.path().join("lake");
    let mut child = sluice_run(&lake, &broker, &topic, batch)
        .env("SLUICE_LOG", "sluice=info,sluice::metrics=info")
        .env("SLUICE_KAFKA__LAG_REPORT_MS", "1000")
        .spawn()
        .unwrap();
    let started = Instant::now();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<(f64, String)>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send((started.elapsed().as_secs_f64(), line));
        }
    });
    let mut committed = 0u64;
    let mut first_batch = None;
    let mut lag = Vec::new();
    while committed < events {
        let (t, line) = rx
            .recv_timeout(Duration::from_secs(300))
            .expect("the run goes on");
        if line.contains("batch committed") {
            first_batch.get_or_insert(t);
            committed += field(&line, "events");
        } else if line.contains("kafka lag total") {
            lag.push((t, field(&line, "total")));
        }
    }
    let wall = started.elapsed().as_secs_f64();
    terminate(child);
    if let Some(mut p) = producer {
        p.wait().unwrap();
    }
    let since_first = wall - first_batch.unwrap_or(0.0);
    println!(
        "drained {committed} events in {wall:.1} s from start ({:.0} events/s), \
         {since_first:.1} s from the first batch",
        committed as f64 / wall
    );
    println!("| t (s) | consumer lag (events) |");
    for (t, l) in lag {
        println!("| {t:.0} | {l} |");
    }
    let bronze = common::count(&lake, "SELECT COUNT(*) FROM bronze_events").await;
    assert_eq!(bronze as u64, events);
}

/// The numeric `name=` field of a log line.
fn field(line: &str, name: &str) -> u64 {
    let prefix = format!("{name}=");
    plain(line)
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&prefix))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
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
