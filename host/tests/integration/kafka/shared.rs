//! Several `sluice run` instances sharing one topic through its consumer
//! group: the broker assigns the partitions, the owner of partition 0
//! refines; a `kill -9` of the refining instance, a late joiner, and a fleet
//! of three on an Azurite lake; every record once, gold as computed.
//!
//! tansu 0.6.0 (the CI broker) does not hand a crashed member's partitions
//! to the survivors: after the session timeout the survivor is told its own
//! assignment is lost, and the group is only balanced again when a member
//! joins (seen with librdkafka's cooperative-sticky and range assignors).
//! Apache Kafka moves them after `kafka.session_timeout_ms`. So after a
//! `kill -9` these tests restart the killed instance, as an operator (or an
//! orchestrator) would, and assert what holds on any broker: nothing lost,
//! nothing twice. Correctness never waits on the broker's failover: the
//! bronze fence and the refine epoch hold without it.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use super::{
    Sim, Watch, assert_exactly_once, assert_exactly_once_in, plain, shared_broker, sluice_run,
    terminate, unique_topic, wait_for_bronze, watch,
};

/// How long the group waits for a silent (killed) instance.
const SESSION_TIMEOUT_MS: &str = "6000";

/// Waits until `n` instances have committed to bronze: each commit names
/// its writer in an app transaction `sluice-bronze@<writer>`.
async fn wait_for_writers(lake: &Path, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let writers = bronze_writers(lake);
        if writers.len() >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} instances committed to bronze after {limit:?}",
            writers.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The writer ids in bronze's commit files.
fn bronze_writers(lake: &Path) -> std::collections::BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(lake.join("bronze_events/_delta_log")) else {
        return Default::default();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .flat_map(|text| {
            text.split("\"appId\":\"sluice-bronze@")
                .skip(1)
                .map(|rest| rest.split('"').next().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The `owned=N` of an assignment log line.
fn owned(line: &str) -> usize {
    plain(line)
        .split_whitespace()
        .find_map(|w| w.strip_prefix("owned="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no owned= in {line}"))
}

/// Waits until `watch`'s instance owns `want` partitions.
fn owns(watch: &Watch, want: usize, who: &str, limit: Duration) {
    owns_where(
        watch,
        |n| n == want,
        &format!("{who} does not own {want} partitions"),
        limit,
    );
}

/// Waits until `watch`'s instance owns some partitions: where the broker's
/// incremental rebalances may pass through uneven shares (three members on
/// six partitions), what matters is that the instance was given work.
fn owns_some(watch: &Watch, who: &str, limit: Duration) {
    owns_where(watch, |n| n > 0, &format!("{who} owns no partition"), limit);
}

fn owns_where(watch: &Watch, wanted: impl Fn(usize) -> bool, failure: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = watch
            .assignments
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("{failure} after {limit:?}"));
        if wanted(owned(&line)) {
            return;
        }
    }
}

/// Produces `events` simulated events (2 % faults) into `topic` (4
/// partitions); returns their lines.
pub(super) fn produce_sim(broker: &str, topic: &str, seed: u64, events: u64) -> Vec<String> {
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
        .env("SLUICE_KAFKA__SESSION_TIMEOUT_MS", SESSION_TIMEOUT_MS)
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
    let limit = Duration::from_secs(120);
    let (a, a_watch) = start("a");
    let (b, b_watch) = start("b");
    owns(&a_watch, 2, "a", limit);
    owns(&b_watch, 2, "b", limit);
    // The backlog may be gone before the second joins: more events, so
    // that both ingest (each commits bronze under its own writer id).
    lines.extend(produce_sim(&broker, &topic, 23, 6_000));
    wait_for_writers(&lake, 2, limit).await;
    // The owner of partition 0 refines: that one is killed.
    let deadline = Instant::now() + limit;
    let (mut a_leads, mut b_leads) = (false, false);
    while a_leads == b_leads {
        assert!(
            Instant::now() < deadline,
            "not exactly one instance refines"
        );
        std::thread::sleep(Duration::from_millis(100));
        a_leads = a_watch.roles.try_iter().last().unwrap_or(a_leads);
        b_leads = b_watch.roles.try_iter().last().unwrap_or(b_leads);
    }
    let ((mut leader, _), (survivor, survivor_watch)) = if a_leads {
        ((a, a_watch), (b, b_watch))
    } else {
        ((b, b_watch), (a, a_watch))
    };
    while survivor_watch.assignments.try_recv().is_ok() {}
    leader.kill().unwrap(); // SIGKILL, mid-stream
    leader.wait().unwrap();
    // Once the session times out the group moves on: Apache Kafka assigns
    // the killed leader's partitions to the survivor, tansu revokes the
    // survivor's own (see the module doc). Either way it says so.
    survivor_watch
        .assignments
        .recv_timeout(Duration::from_secs(60))
        .expect("the group notices the killed instance");

    // Restarted, it joins the group again; the partitions are spread over
    // both live instances and one of them refines, from where the killed
    // leader stopped.
    let (restarted, restarted_watch) = start("restarted");
    owns(&restarted_watch, 2, "the restarted instance", limit);
    lines.extend(produce_sim(&broker, &topic, 22, 6_000));
    wait_for_bronze(&lake, lines.len(), Duration::from_secs(240)).await;
    terminate(restarted);
    terminate(survivor);
    assert_exactly_once(&lake, &lines).await;
    let epochs = leader_epochs(&lake);
    assert!(
        epochs >= 2,
        "the refine role was taken again after the kill"
    );

    // `sluice status` lists the three instances that wrote bronze, with
    // the partitions they committed, and the refine role's last holder.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["status", "--lake"])
        .arg(&lake)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    let instances: Vec<&str> = report
        .lines()
        .skip_while(|l| !l.starts_with("instances"))
        .skip(2)
        .take_while(|l| !l.starts_with("refine role"))
        .collect();
    assert_eq!(instances.len(), 3, "a, b and the restarted one:\n{report}");
    let partitions = format!("kafka:{topic}/");
    assert!(
        instances.iter().all(|l| l.contains(&partitions)),
        "each names the partitions it committed:\n{report}"
    );
    let role = report
        .lines()
        .find(|l| l.starts_with("refine role: epoch"))
        .unwrap_or_else(|| panic!("no refine role in:\n{report}"));
    assert!(role.contains(&format!("epoch {epochs},")), "{role}");
    let holder = role.rsplit(' ').next().unwrap();
    assert!(
        instances.iter().any(|l| l.starts_with(holder)),
        "the holder is one of the instances: {role}"
    );
}

/// How many times the refine role was taken: the distinct epochs of
/// `sluice-leader` in `pipeline_batches`' commits.
fn leader_epochs(lake: &Path) -> usize {
    let marker = "\"appId\":\"sluice-leader\",\"version\":";
    std::fs::read_dir(lake.join("pipeline_batches/_delta_log"))
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .flat_map(|text| {
            text.split(marker)
                .skip(1)
                .filter_map(|rest| rest.split([',', '}']).next()?.parse::<i64>().ok())
                .collect::<Vec<_>>()
        })
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// `a` owns all four partitions; `b` joins: the group revokes two from `a`
/// and assigns them to `b`, which resumes them from the lake; more events
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
    owns(&a_watch, 4, "a, alone,", limit);
    a_watch.batches.recv_timeout(limit).expect("a refines");

    let (b, b_watch) = start("b");
    owns(&a_watch, 2, "a", Duration::from_secs(60));
    owns(&b_watch, 2, "b", Duration::from_secs(60));

    lines.extend(produce_sim(&broker, &topic, 32, 6_000));
    wait_for_writers(&lake, 2, limit).await;
    wait_for_bronze(&lake, lines.len(), Duration::from_secs(240)).await;
    terminate(a);
    terminate(b);
    assert_exactly_once(&lake, &lines).await;
}

/// The fleet: three `sluice run` processes on one lake in Azure
/// (Azurite), one topic of 6 partitions, events produced all along. One
/// starts, two join, one is killed with `kill -9` and restarted, another is
/// stopped gracefully; bronze holds every record once and silver,
/// quarantine and gold equal the computation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_three_on_an_azure_lake_loses_and_doubles_nothing() {
    let Some(broker) = shared_broker() else {
        return;
    };
    let Some(endpoint) = crate::azurite::service("AZURITE_BLOB_STORAGE_URL", "Azurite") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("fleet");
    let url = crate::azurite::lake_url();
    let start = |tag: &'static str| {
        let mut child = sluice_run(Path::new(&url), &broker, &topic, 1_000)
            .env("SLUICE_KAFKA__SHARE_PARTITIONS", "true")
            .env("SLUICE_KAFKA__SESSION_TIMEOUT_MS", SESSION_TIMEOUT_MS)
            .env("SLUICE_LAKE_OPTIONS__AZURE_STORAGE_USE_EMULATOR", "true")
            .env("AZURITE_BLOB_STORAGE_URL", &endpoint)
            .env("SLUICE_CACHE_DIR", dir.path().join(format!("cache-{tag}")))
            .spawn()
            .unwrap();
        let watch = watch(&mut child, tag);
        (child, watch)
    };
    let limit = Duration::from_secs(120);
    let mut lines = Vec::new();
    let mut producers = Vec::new();
    let mut produce = |seed: u64| {
        let sim = Sim {
            seed,
            events: 4_000,
            faults: 0.02,
        };
        producers.push(sim.command(&broker, &topic, 6).spawn().unwrap());
        lines.extend(sim.lines());
    };
    produce(41);
    let (a, a_watch) = start("a");
    owns(&a_watch, 6, "a, alone,", limit);
    produce(42);
    let (mut b, b_watch) = start("b");
    let (c, c_watch) = start("c");
    owns_some(&b_watch, "b", limit);
    owns_some(&c_watch, "c", limit);
    produce(43);
    std::thread::sleep(Duration::from_secs(2));
    while a_watch.assignments.try_recv().is_ok() {}
    b.kill().unwrap(); // SIGKILL, mid-stream
    b.wait().unwrap();
    produce(44);
    a_watch
        .assignments
        .recv_timeout(Duration::from_secs(60))
        .expect("the group notices the killed instance");
    let (b2, b2_watch) = start("b2");
    owns_some(&b2_watch, "b restarted", limit);
    produce(45);
    terminate(c); // gracefully, mid-stream: its partitions go to the others
    produce(46);
    for mut producer in producers {
        assert!(producer.wait().unwrap().success(), "a producer failed");
    }
    let lake = sluice::lake::Lake::open_root(Path::new(&url), &crate::azurite::emulator_options())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let have = common_count(&lake).await;
        if have >= lines.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bronze holds {have} of {} records",
            lines.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    terminate(a);
    terminate(b2);
    assert_exactly_once_in(&lake, &lines).await;
}

async fn common_count(lake: &sluice::lake::Lake) -> usize {
    crate::common::count_in(lake, "SELECT COUNT(*) FROM bronze_events").await as usize
}
