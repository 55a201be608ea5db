//! Hostile input from clients: an event stamped far in the future is
//! quarantined as `future_timestamp` and never moves a watermark, so it cannot
//! make later events late — not in the run that saw it, nor after a restart
//! (which rebuilds the watermarks from silver).

use crate::common;

/// A valid event `i` at 2026-01-05T10:mm:ss.
pub fn event(i: usize) -> String {
    event_at(i, &format!("2026-01-05T10:{:02}:{:02}Z", i / 60, i % 60))
}

pub fn event_at(i: usize, timestamp: &str) -> String {
    serde_json::json!({
        "event_id": format!("e{i:05}"), "user_id": "u_1", "account_id": "a_1", "plan": "free",
        "event_type": "login", "session_id": format!("s_{}", i / 10),
        "timestamp": timestamp, "properties": {"method": "password"}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_future_event_is_quarantined_and_later_events_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let future = event_at(0, "9999-12-31T23:59:59Z");
    let mut first = vec![future.clone()];
    first.extend((1..=20).map(event));
    let first_file = dir.path().join("first.ndjson");
    common::write_lines(&first_file, &first);
    let totals = common::run_to_end(&common::replay_config(&lake, vec![first_file], 7)).await;
    assert_eq!(totals.accepted, 20, "every normal event of the first run");

    // A restart rebuilds dedup state and watermarks from silver.
    let second: Vec<String> = (21..=40).map(event).collect();
    let second_file = dir.path().join("second.ndjson");
    common::write_lines(&second_file, &second);
    let totals = common::run_to_end(&common::replay_config(&lake, vec![second_file], 7)).await;
    assert_eq!(totals.accepted, 20, "every normal event after the restart");

    let silver = common::count(&lake, "SELECT COUNT(*) FROM silver_events").await;
    assert_eq!(silver, 40);
    assert_only_quarantined_is_future(&lake, &future).await;
}

/// The far-future event is the one quarantined row, with its reason and bytes.
async fn assert_only_quarantined_is_future(lake: &std::path::Path, future: &str) {
    let quarantined = common::rows(
        lake,
        "SELECT layer, reason, CAST(raw AS VARCHAR) AS raw FROM quarantine",
    )
    .await;
    let expected =
        serde_json::json!({"layer": "silver", "reason": "future_timestamp", "raw": future});
    assert_eq!(quarantined, vec![expected.to_string()]);
}

/// Lines a hostile or broken client might send, by what is wrong with them.
/// None of them is valid as sent except where the name says otherwise; each
/// must land in silver or in quarantine with a reason.
fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let valid = event(900);
    let mut deep = "[".repeat(10_000);
    deep.push_str(&"]".repeat(10_000));
    let huge = event_at(901, "2026-01-05T10:00:01Z")
        .replace("\"password\"", &format!("\"{}\"", "x".repeat(1 << 20)));
    vec![
        (
            "truncated json",
            valid.as_bytes()[..valid.len() / 2].to_vec(),
        ),
        ("invalid utf-8", b"{\"event_id\":\"e\xff\xfe\"}".to_vec()),
        ("nul bytes", format!("{}\0\0", event(902)).into_bytes()),
        ("1 MiB string field (valid)", huge.into_bytes()),
        ("10,000-deep nesting", deep.into_bytes()),
        (
            "numbers as strings",
            event(903)
                .replace("\"e00903\"", "903")
                .replace("\"2026-01-05T10:15:03Z\"", "\"1767607000\"")
                .into_bytes(),
        ),
        ("array of non-objects", b"[1,2,3]".to_vec()),
        ("bare string", b"\"hello\"".to_vec()),
        (
            "far future",
            event_at(904, "9999-12-31T23:59:59Z").into_bytes(),
        ),
        (
            "pre-1970",
            event_at(905, "1969-07-20T20:17:40Z").into_bytes(),
        ),
        (
            "duplicate keys",
            event(906)
                .replacen("{", "{\"event_id\":\"dup-a\",", 1)
                .into_bytes(),
        ),
    ]
}

/// Every line of the bad-input corpus lands in silver or in quarantine with a
/// reason (nothing lost, nothing doubled), and the good events around it,
/// after it too, are all accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_line_is_accounted_for_and_later_good_events_pass() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let corpus = corpus();
    let mut body = Vec::new();
    for i in 0..10 {
        body.extend_from_slice(event(i).as_bytes());
        body.push(b'\n');
    }
    for (_, line) in &corpus {
        body.extend_from_slice(line);
        body.push(b'\n');
    }
    for i in 10..20 {
        body.extend_from_slice(event(i).as_bytes());
        body.push(b'\n');
    }
    let file = dir.path().join("corpus.ndjson");
    std::fs::write(&file, &body).unwrap();
    let totals = common::run_to_end(&common::replay_config(&lake, vec![file], 8)).await;

    let lines = 20 + corpus.len() as i64;
    let silver = common::count(&lake, "SELECT COUNT(*) FROM silver_events").await;
    let quarantined = common::count(&lake, "SELECT COUNT(*) FROM quarantine").await;
    assert_eq!(silver + quarantined, lines, "each line once: {totals:?}");
    let good = common::count(
        &lake,
        "SELECT COUNT(*) FROM silver_events WHERE event_id LIKE 'e000%'",
    )
    .await;
    assert_eq!(good, 20, "every good event, before and after the bad ones");
    let unexplained = common::count(
        &lake,
        "SELECT COUNT(*) FROM quarantine WHERE reason = '' OR raw IS NULL",
    )
    .await;
    assert_eq!(
        unexplained, 0,
        "every quarantined line has a reason and its bytes"
    );
    // Raw bytes are cast to text only after the filter: some are not UTF-8.
    let future = common::rows(
        &lake,
        "SELECT CAST(raw AS VARCHAR) AS raw FROM quarantine WHERE reason = 'future_timestamp'",
    )
    .await;
    let far_future = String::from_utf8(corpus[8].1.clone()).unwrap();
    assert_eq!(
        future,
        vec![serde_json::json!({"raw": far_future}).to_string()]
    );
    let broken = common::count(
        &lake,
        "SELECT COUNT(*) FROM quarantine \
         WHERE reason IN ('invalid_json', 'invalid_utf8', 'not_an_object')",
    )
    .await;
    assert!(
        broken >= 6,
        "truncated, not UTF-8, NUL-trailed, too deep, array and string lines are malformed: {broken}"
    );
}

/// The trial over HTTP: one event stamped in the year 9999, then a
/// restart, then normal events: all normal events accepted, the bad one
/// quarantined with its reason and raw bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_future_event_over_http_does_not_blind_gold() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut config = common::replay_config(&lake, Vec::new(), 100);
    config.collector.listen = "127.0.0.1:0".into();
    let client = reqwest::Client::new();
    let future = event_at(0, "9999-12-31T23:59:59Z");
    for (run, bodies) in [
        (1, vec![future.clone(), event(1), event(2)]),
        (2, (3..=12).map(event).collect::<Vec<_>>()),
    ] {
        let (url, stop, service) = crate::collector::start_collector(config.clone()).await;
        for body in bodies {
            let response = client.post(&url).body(body).send().await.unwrap();
            assert_eq!(response.status(), 202, "run {run}");
        }
        stop.send(true).unwrap();
        service.await.unwrap().unwrap();
    }
    let silver = common::count(&lake, "SELECT COUNT(*) FROM silver_events").await;
    assert_eq!(
        silver, 12,
        "every normal event, before and after the restart"
    );
    assert_only_quarantined_is_future(&lake, &future).await;
}

/// Forty producers post 16 MiB bodies at once (each larger than a batch's
/// byte budget, so split across batches), while others post single events:
/// every body is acknowledged and lands in bronze, and no event of another
/// producer is quarantined because a body was big.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_concurrent_16_mib_bodies_are_split_and_all_land() {
    const BODIES: usize = 40;
    const LINES: usize = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut config = common::replay_config(&lake, Vec::new(), 50_000);
    config.collector.listen = "127.0.0.1:0".into();
    config.batch.max_bytes = 8 << 20;
    config.collector.ack_timeout_ms = 600_000;
    let (url, stop, service) = crate::collector::start_collector(config).await;
    let blob = "x".repeat(16_000);
    let body = |b: usize| -> String {
        let lines: Vec<String> = (0..LINES)
            .map(|i| {
                // One event time for all: bodies arrive in any order, and
                // none may be late.
                event_at(100_000 + b * LINES + i, "2026-01-05T10:00:00Z").replace(
                    "\"password\"}",
                    &format!("\"password\",\"blob\":\"{blob}\"}}"),
                )
            })
            .collect();
        lines.join("\n")
    };
    let body_len = body(0).len();
    assert!(body_len > 15 << 20 && body_len <= 16 << 20);
    let client = reqwest::Client::new();
    let mut posts = tokio::task::JoinSet::new();
    for b in 0..BODIES {
        let (client, url, body) = (client.clone(), url.clone(), body(b));
        posts.spawn(async move { client.post(&url).body(body).send().await.unwrap().status() });
    }
    for i in 0..20 {
        let (client, url) = (client.clone(), url.clone());
        posts.spawn(async move {
            client
                .post(&url)
                .body(event(i))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    while let Some(status) = posts.join_next().await {
        assert_eq!(status.unwrap(), 202);
    }
    stop.send(true).unwrap();
    service.await.unwrap().unwrap();

    let total = (BODIES * LINES + 20) as i64;
    let bronze = common::count(&lake, "SELECT COUNT(*) FROM bronze_events").await;
    assert_eq!(bronze, total, "every event of every body, once");
    let silver = common::count(&lake, "SELECT COUNT(*) FROM silver_events").await;
    assert_eq!(silver, total, "none quarantined");
    let batches = common::count(&lake, "SELECT COUNT(DISTINCT batch_id) FROM bronze_events").await;
    // Whole bodies would make one batch each; split, batches are full.
    let full_batches = (BODIES * body_len / (8 << 20)) as i64;
    assert!(
        batches >= full_batches,
        "16 MiB bodies are split over batches of 8 MiB: {batches} batches"
    );
}
