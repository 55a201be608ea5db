//! Several `sluice run` instances sharing one topic's partitions: a kill -9
//! of the one running silver and gold is taken over (partitions and
//! refining), a late joiner is handed its share; every record once.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use super::{
    Sim, Watch, assert_exactly_once, plain, shared_broker, sluice_run, terminate, unique_topic,
    wait_for_bronze, watch,
};

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
    let (a, a_watch) = start("a");
    let (b, b_watch) = start("b");
    let limit = Duration::from_secs(120);
    let a_claim = a_watch.claims.recv_timeout(limit).expect("a claims");
    let b_claim = b_watch.claims.recv_timeout(limit).expect("b claims");
    assert_eq!(
        (owned(&a_claim), owned(&b_claim)),
        (2, 2),
        "the instances share the four partitions"
    );
    // Both ingest (each commits bronze under its own writer id); one of
    // them refines: that one is killed, so the other must take over its
    // partitions and silver and gold.
    wait_for_writers(&lake, 2, limit).await;
    let deadline = Instant::now() + limit;
    let a_leads = loop {
        if a_watch.batches.try_recv().is_ok() {
            break true;
        }
        if b_watch.batches.try_recv().is_ok() {
            break false;
        }
        assert!(Instant::now() < deadline, "neither instance refines");
        std::thread::sleep(Duration::from_millis(100));
    };
    let ((mut leader, _), (survivor, survivor_watch)) = if a_leads {
        ((a, a_watch), (b, b_watch))
    } else {
        ((b, b_watch), (a, a_watch))
    };
    while survivor_watch.batches.try_recv().is_ok() {}

    leader.kill().unwrap(); // SIGKILL, mid-stream
    leader.wait().unwrap();
    let killed = Instant::now();
    let takeover = loop {
        let line = survivor_watch
            .claims
            .recv_timeout(Duration::from_secs(30))
            .expect("the survivor takes over the killed leader's partitions");
        if owned(&line) == 4 {
            break killed.elapsed();
        }
    };
    eprintln!("the survivor took over the partitions {takeover:?} after the kill");
    assert!(
        takeover < Duration::from_secs(10),
        "takeover took {takeover:?}"
    );
    lines.extend(produce_sim(&broker, &topic, 22, 6_000));
    survivor_watch
        .batches
        .recv_timeout(limit)
        .expect("the survivor runs silver and gold now");
    wait_for_bronze(&lake, lines.len(), Duration::from_secs(240)).await;
    terminate(survivor);
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
    wait_for_writers(&lake, 2, limit).await;
    wait_for_bronze(&lake, lines.len(), Duration::from_secs(240)).await;
    terminate(a);
    terminate(b);
    assert_exactly_once(&lake, &lines).await;
}
