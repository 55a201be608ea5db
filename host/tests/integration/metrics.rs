//! The Prometheus endpoint of a running `sluice run`: its counters agree
//! with the independent computation over the events it was sent.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, Expected};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_every_event_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--listen", "127.0.0.1:0", "--lake"])
        .arg(&lake)
        .env("SLUICE_CACHE_DIR", dir.path().join("cache"))
        .env("SLUICE_METRICS__LISTEN", "127.0.0.1:0")
        .env("SLUICE_BATCH__MAX_EVENTS", "500")
        .env("SLUICE_BATCH__MAX_WAIT_MS", "200")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (mut collector, mut metrics) = (None, None);
    while collector.is_none() || metrics.is_none() {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "exited early");
        let url = line
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_string();
        if line.contains("collecting on") {
            collector = Some(url);
        } else if line.contains("metrics on") {
            metrics = Some(url);
        }
    }
    std::thread::spawn(move || for _ in stderr.lines() {});
    let (collector, metrics) = (collector.unwrap(), metrics.unwrap());

    let lines = common::simulated_lines(12, 3_000, 0.04);
    let client = reqwest::Client::new();
    for chunk in lines.chunks(500) {
        let response = client
            .post(&collector)
            .body(chunk.join("\n"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
    }
    // A request is answered once bronze holds it; the batch's figures are
    // recorded when all its layers are committed, a moment later.
    let samples = settled(&metrics, lines.len()).await;
    let value = |name: &str, labels: &[&str]| common::sample(&samples, name, labels);
    let expected = Expected::compute(&lines, 3_600_000_000);
    assert_eq!(
        value("sluice_events_accepted_total", &[]),
        Some(expected.accepted.len() as f64)
    );
    assert_eq!(
        value("sluice_events_quarantined_total", &["reason=\"duplicate\""]),
        Some(expected.duplicates as f64)
    );
    assert_eq!(
        value("sluice_events_quarantined_total", &["reason=\"late\""]),
        Some(expected.late as f64)
    );
    let quarantined: f64 = samples
        .iter()
        .filter(|(s, _)| s.starts_with("sluice_events_quarantined_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        quarantined as usize,
        expected.duplicates + expected.late + expected.malformed
    );
    // Refine steps take every bronze batch committed since the last one,
    // so there may be fewer steps than bronze batches, never more.
    let steps = value("sluice_batches_total", &[]).unwrap();
    assert_eq!(value("sluice_batch_seconds_count", &[]), Some(steps));
    let bronze = value("sluice_tier_position", &["tier=\"bronze\""]).unwrap();
    assert!(
        bronze >= 6.0,
        "3000 events in bronze batches of at most 500"
    );
    assert!(
        (1.0..=bronze).contains(&steps),
        "{steps} steps, {bronze} bronze batches"
    );
    for tier in ["silver", "gold"] {
        let label = format!("tier=\"{tier}\"");
        let position = value("sluice_tier_position", &[label.as_str()]);
        assert_eq!(
            position,
            Some(bronze),
            "{tier} has refined every bronze batch"
        );
    }
    assert_eq!(
        value("sluice_event_to_gold_seconds_count", &[]),
        Some(bronze),
        "one latency sample per bronze batch"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
}

/// Scrapes until `sluice_events_total` reaches `events` (at most 30 s).
async fn settled(url: &str, events: usize) -> Vec<common::Sample> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let samples = common::scrape(url).await;
        let total = common::sample(&samples, "sluice_events_total", &[]);
        if total == Some(events as f64) {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "events counted: {total:?} of {events}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_bad_metrics_address_is_refused_naming_the_field() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--listen", ""])
        .env("SLUICE_METRICS__LISTEN", "everywhere")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("metrics.listen"), "{stderr}");
}
