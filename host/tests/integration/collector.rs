//! The HTTP collector over real HTTP: 202 only once events are durable in
//! bronze, 413 for oversized bodies, 400 with a reason for non-NDJSON, and a
//! graceful stop that commits what was accepted.

use serde_json::json;

use crate::common;

fn event(i: usize) -> String {
    json!({
        "event_id": format!("h{i:04}"), "user_id": "u_7", "account_id": "a_7", "plan": "pro",
        "event_type": "feature_used", "feature": "search", "session_id": "s_h",
        "timestamp": format!("2026-02-01T08:00:{:02}Z", i % 60),
        "properties": {"duration_ms": 100, "items": 1}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_acknowledges_only_durable_events_and_refuses_bad_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut config = common::replay_config(&lake, Vec::new(), 10_000);
    config.collector.listen = "127.0.0.1:0".into();
    config.collector.max_body_bytes = 64 * 1024;
    let (url, stop_tx, service) = start_collector(config).await;
    // No connection reuse: the server may close a connection after a 413.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    let mut body: Vec<String> = (0..49).map(event).collect();
    body.push("{\"event_id\": \"broken".into());
    let response = client
        .post(&url)
        .body(body.join("\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let answer: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(answer["accepted"], 50);
    let durable = common::count(
        &lake,
        "SELECT COUNT(*) FROM bronze_events WHERE source = 'http'",
    )
    .await;
    assert_eq!(durable, 50, "acknowledged events are already in bronze");

    let array = format!("[{}, {}, {}]", event(100), event(101), event(102));
    let response = client.post(&url).body(array).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 202);

    let huge = (0..2_000).map(event).collect::<Vec<_>>().join("\n");
    let response = client.post(&url).body(huge).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 413);

    let response = client
        .post(&url)
        .body("hello world\nthis is not ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let answer: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert!(
        answer["error"].as_str().unwrap().contains("neither NDJSON"),
        "{answer}"
    );

    stop_tx.send(true).unwrap();
    let totals = service.await.unwrap().unwrap();
    assert_eq!(totals.events, 53);
    assert_eq!(totals.accepted, 52);
    assert_eq!(
        common::count(&lake, "SELECT COUNT(*) FROM silver_events").await,
        52
    );
    let reasons = common::rows(&lake, "SELECT reason FROM quarantine").await;
    assert_eq!(reasons, vec![json!({"reason": "invalid_json"}).to_string()]);
}

/// Starts `sluice run` in-process with the collector on; returns its URL.
pub async fn start_collector(
    config: sluice::config::Config,
) -> (
    String,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<anyhow::Result<sluice::pipeline::Totals>>,
) {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let service = tokio::spawn(async move {
        sluice::service::run(
            &config,
            stop,
            move |ready| {
                let _ = addr_tx.send(ready.collector.unwrap());
            },
            |_| {},
        )
        .await
    });
    let url = format!("http://{}/v1/events", addr_rx.await.unwrap());
    (url, stop_tx, service)
}

/// The ingest tier acknowledges from bronze and never waits for silver or
/// gold: while the silver plugin spins on one batch until its time budget
/// ends (twice: it is retried once), other producers' requests are
/// committed and answered; and the collector is one stream, so the lake
/// keeps one position for it however many requests came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_do_not_wait_for_silver_or_gold() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut config = common::replay_config(&lake, Vec::new(), 10_000);
    config.collector.listen = "127.0.0.1:0".into();
    config.plugins.silver = Some(env!("SLUICE_PLUGIN_HOSTILE").into());
    config.plugins.batch_timeout_ms = 4_000;
    config.batch.linger_ms = 5;
    let (url, stop_tx, service) = start_collector(config).await;
    let client = reqwest::Client::new();

    let mut hostile: serde_json::Value = serde_json::from_str(&event(0)).unwrap();
    hostile["note"] = "HOSTILE_LOOP".into();
    let response = client
        .post(&url)
        .body(hostile.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    // The refine tier now spins for at least 8 s on that batch. Ten more
    // producers post one event each, one after the other.
    for i in 1..=10 {
        let response = client.post(&url).body(event(i)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 202, "request {i}");
    }
    let refined = common::count(&lake, "SELECT COUNT(*) FROM pipeline_batches").await;
    assert_eq!(
        refined, 0,
        "all eleven were acknowledged before the refine tier finished its first step"
    );
    let durable = common::count(&lake, "SELECT COUNT(*) FROM bronze_events").await;
    assert_eq!(durable, 11, "each acknowledged event is in bronze");

    stop_tx.send(true).unwrap();
    let totals = service.await.unwrap().unwrap();
    assert_eq!(totals.events, 11);
    assert_eq!(
        totals.accepted, 10,
        "only the batch that made silver spin is lost to it"
    );
    let timeouts = common::count(
        &lake,
        "SELECT COUNT(*) FROM quarantine WHERE reason = 'plugin_timeout'",
    )
    .await;
    assert_eq!(
        timeouts, 1,
        "the spinning batch held only the hostile event"
    );
    let partitions = common::rows(
        &lake,
        "SELECT source_partition, MIN(source_offset) AS lo, MAX(source_offset) AS hi \
         FROM bronze_events GROUP BY source_partition",
    )
    .await;
    assert_eq!(
        partitions,
        vec![json!({"source_partition": "collector", "lo": 0, "hi": 10}).to_string()],
        "one stream for the collector, offsets in request order"
    );
}

/// A line that is not UTF-8 costs only itself: the body is accepted, the
/// line lands in quarantine with its exact bytes, its neighbours in silver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_is_not_utf8_is_quarantined_alone() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut config = common::replay_config(&lake, Vec::new(), 10_000);
    config.collector.listen = "127.0.0.1:0".into();
    let (url, stop_tx, service) = start_collector(config).await;
    let bad: &[u8] = b"{\"event_id\": \"\xff\xfe\"}";
    let mut body = event(1).into_bytes();
    body.push(b'\n');
    body.extend_from_slice(bad);
    body.push(b'\n');
    body.extend_from_slice(event(2).as_bytes());
    let response = reqwest::Client::new()
        .post(&url)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    stop_tx.send(true).unwrap();
    let totals = service.await.unwrap().unwrap();
    assert_eq!((totals.events, totals.accepted), (3, 2));
    let raw = common::rows(&lake, "SELECT encode(raw, 'hex') AS raw FROM quarantine").await;
    let hex: String = bad.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        raw,
        vec![json!({"raw": hex}).to_string()],
        "the exact bytes are kept"
    );
}
