//! Crash safety: `kill -9` the service at several points mid-stream, restart
//! it, and silver and gold end up exactly as after an uninterrupted run.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::{self, GOLD_QUERIES};

const BATCH: &str = "1500";

fn sluice_run(lake: &Path, file: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(["run", "--listen", "", "--replay"])
        .arg(file)
        .arg("--lake")
        .arg(lake)
        .env("SLUICE_BATCH__MAX_EVENTS", BATCH)
        .env("SLUICE_CACHE_DIR", lake.parent().unwrap().join("cache"))
        .env("SLUICE_LOG", "sluice=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Starts the service and kills it with SIGKILL once its ingest tier has
/// committed `after_batches` bronze batches plus a few milliseconds, while
/// the refine tier is somewhere behind.
/// Returns false if the run finished before the kill point.
fn run_and_kill(lake: &Path, file: &Path, after_batches: usize, extra_ms: u64) -> bool {
    let mut child = sluice_run(lake, file).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("bronze batch committed") && tx.send(()).is_err() {
                break;
            }
        }
    });
    for _ in 0..after_batches {
        if rx.recv_timeout(Duration::from_secs(120)).is_err() {
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "service failed before the kill point: {status}"
            );
            return false;
        }
    }
    std::thread::sleep(Duration::from_millis(extra_ms));
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    still_running
}

/// Runs until the failpoint aborts the process; asserts it did.
fn run_into_failpoint(lake: &Path, file: &Path, failpoint: &str) {
    let output = sluice_run(lake, file)
        .env("SLUICE_FAILPOINT", failpoint)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the run passed {failpoint} without aborting: {stderr}"
    );
    assert!(stderr.contains("failpoint"), "{failpoint}: {stderr}");
}

fn run_to_completion(lake: &Path, file: &Path) {
    let output = sluice_run(lake, file).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Whether the lake holds silver rows of a bronze batch gold has not
/// refined yet.
async fn silver_is_ahead_of_gold(lake: &Path) -> bool {
    let last = |table: &str| format!("SELECT COALESCE(MAX(batch_id), 0) AS b FROM {table}");
    let silver = common::count(lake, &last("silver_events")).await;
    let gold = common::count(lake, &last("pipeline_batches")).await;
    silver > gold
}

async fn snapshot(lake: &Path) -> Vec<Vec<String>> {
    let mut all = vec![
        common::rows(lake, "SELECT event_id, event_type, user_id, plan, CAST(event_time AS BIGINT) AS t FROM silver_events").await,
        common::rows(lake, "SELECT reason, COUNT(*) AS n FROM quarantine GROUP BY reason").await,
    ];
    for (_, sql) in GOLD_QUERIES {
        all.push(common::rows(lake, sql).await);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_gives_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let lines = common::simulated_lines(23, 40_000, 0.03);
    let file = dir.path().join("events.ndjson");
    common::write_lines(&file, &lines);

    let reference = dir.path().join("reference");
    run_to_completion(&reference, &file);

    let crashed = dir.path().join("crashed");
    // The tiers run concurrently, so most interruptions leave silver ahead
    // of gold (and bronze ahead of both): count those that did.
    let mut silver_ahead = 0;
    // First abort at exact points between the commits of one step (each
    // restart finishes the half-committed step, then runs into the next)...
    for failpoint in [
        "bronze-committed:2",
        "silver-committed:3",
        "gold-tables:4",
        "before-done:5",
        "silver-committed:9",
        "gold-tables:11",
    ] {
        run_into_failpoint(&crashed, &file, failpoint);
        silver_ahead += silver_is_ahead_of_gold(&crashed).await as usize;
    }
    // ...then kill -9 at moments the test does not choose.
    let mut kills = 0;
    for (after, extra_ms) in [(1, 5), (2, 40), (2, 0), (3, 120)] {
        kills += run_and_kill(&crashed, &file, after, extra_ms) as usize;
        silver_ahead += silver_is_ahead_of_gold(&crashed).await as usize;
    }
    assert!(
        kills >= 3,
        "the service was killed mid-stream {kills} times"
    );
    assert!(
        silver_ahead >= 1,
        "no interruption found silver ahead of gold: the tiers did not run concurrently"
    );
    run_to_completion(&crashed, &file);

    let (want, got) = (snapshot(&reference).await, snapshot(&crashed).await);
    assert!(!want[0].is_empty());
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        let name = if i < 2 {
            ["silver_events", "quarantine"][i]
        } else {
            GOLD_QUERIES[i - 2].0
        };
        common::assert_same_rows(name, g, w);
    }
    let bronze = common::count(&crashed, "SELECT COUNT(*) FROM bronze_events").await;
    assert_eq!(
        bronze as usize,
        lines.len(),
        "bronze holds every line exactly once"
    );
}
