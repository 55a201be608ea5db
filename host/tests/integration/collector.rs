//! The HTTP collector over real HTTP: 202 only once events are durable in
//! bronze, 413 for oversized bodies, 400 with a reason for non-NDJSON, and a
//! graceful stop that commits what was accepted. Hostile clients: slow
//! heads and bodies are cut off, connections over the cap and requests a
//! stalled pipeline cannot take are answered 503 with `Retry-After`, ingest
//! can require bearer tokens, and browsers are refused unless their origin
//! is configured.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// Starts the collector with a silver plugin that spins on its first batch
/// until its time budget ends (4 s, twice: it is retried once), and posts
/// the event that makes it spin.
async fn start_with_silver_stalled(
    config: &mut sluice::config::Config,
) -> (
    String,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<anyhow::Result<sluice::pipeline::Totals>>,
    reqwest::Client,
) {
    config.collector.listen = "127.0.0.1:0".into();
    config.plugins.silver = Some(env!("SLUICE_PLUGIN_HOSTILE").into());
    config.plugins.batch_timeout_ms = 4_000;
    config.batch.linger_ms = 5;
    let (url, stop_tx, service) = start_collector(config.clone()).await;
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
    (url, stop_tx, service, client)
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
    let (url, stop_tx, service, client) = start_with_silver_stalled(&mut config).await;
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

/// `host:port` of a collector URL.
fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// Reads until the server closes the connection (or resets it); what it
/// sent before, if anything.
async fn until_closed(mut stream: impl AsyncReadExt + Unpin) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        seen.extend_from_slice(&buf[..n]);
    }
    seen
}

/// How long a test waits for something that, before the fix, never came.
const PATIENCE: Duration = Duration::from_secs(5);

/// The `event_id`s in bronze, sorted.
async fn bronze_ids(lake: &std::path::Path) -> Vec<String> {
    let mut ids: Vec<String> = common::rows(
        lake,
        "SELECT CAST(raw AS VARCHAR) AS raw FROM bronze_events",
    )
    .await
    .iter()
    .map(|row| {
        let row: serde_json::Value = serde_json::from_str(row).unwrap();
        let raw: serde_json::Value = serde_json::from_str(row["raw"].as_str().unwrap()).unwrap();
        raw["event_id"].as_str().unwrap().to_string()
    })
    .collect();
    ids.sort();
    ids
}

/// A client that sends its request head a byte at a time is disconnected
/// after `header_timeout_ms`, long before its head is complete, and so is
/// one that connects and sends nothing; a normal client is served
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_is_cut_off_after_the_header_timeout_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut config = common::replay_config(&lake, Vec::new(), 10_000);
    config.collector.listen = "127.0.0.1:0".into();
    config.collector.header_timeout_ms = 500;
    let (url, stop_tx, service) = start_collector(config).await;
    let addr = addr_of(&url);

    let idle = TcpStream::connect(&addr).await.unwrap();
    let (slow_read, mut slow_write) = TcpStream::connect(&addr).await.unwrap().into_split();
    // 100 bytes at 10 a second: ten seconds to send the head.
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: collector\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(50)
    );
    let dripping = tokio::spawn(async move {
        for byte in head.bytes() {
            if slow_write.write_all(&[byte]).await.is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    });

    let response = reqwest::Client::new()
        .post(&url)
        .body(event(1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202, "a normal client is served");

    tokio::time::timeout(PATIENCE, until_closed(slow_read))
        .await
        .expect("the slowloris is disconnected");
    let completed = tokio::time::timeout(PATIENCE, dripping)
        .await
        .unwrap()
        .unwrap();
    assert!(!completed, "cut off before its head was complete");
    tokio::time::timeout(PATIENCE, until_closed(idle))
        .await
        .expect("a connection that sends nothing is closed too");

    stop_tx.send(true).unwrap();
    service.await.unwrap().unwrap();
    assert_eq!(bronze_ids(&lake).await, vec!["h0001"]);
}

/// A body that stops arriving is answered 408 after `body_timeout_ms` and
/// its connection closed; nothing of it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut config = common::replay_config(&lake, Vec::new(), 10_000);
    config.collector.listen = "127.0.0.1:0".into();
    config.collector.body_timeout_ms = 500;
    let (url, stop_tx, service) = start_collector(config).await;

    let mut stream = TcpStream::connect(addr_of(&url)).await.unwrap();
    let partial = event(1);
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: collector\r\nContent-Length: {}\r\n\r\n{}",
        partial.len() + 100,
        partial
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = tokio::time::timeout(PATIENCE, until_closed(stream))
        .await
        .expect("answered and closed, not left hanging");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    stop_tx.send(true).unwrap();
    let totals = service.await.unwrap().unwrap();
    assert_eq!(totals.events, 0);
}

/// Over `max_connections`, a connection is answered 503 with `Retry-After`
/// at once instead of waiting unanswered; once a slot frees up, requests
/// are served again. The refused request's event is not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_at_once_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut config = common::replay_config(&lake, Vec::new(), 10_000);
    config.collector.listen = "127.0.0.1:0".into();
    config.collector.max_connections = 2;
    let (url, stop_tx, service) = start_collector(config).await;
    let addr = addr_of(&url);
    // Two clients take both slots with half a request head each. The
    // server accepts connections in the order they were made.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"POST /v1/events HTTP/1.1\r\n")
            .await
            .unwrap();
        held.push(stream);
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    let response = tokio::time::timeout(PATIENCE, client.post(&url).body(event(1)).send())
        .await
        .expect("answered at once, not left hanging")
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");

    drop(held);
    let mut status = 0;
    let started = std::time::Instant::now();
    while status != 202 && started.elapsed() < PATIENCE {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let response = client.post(&url).body(event(2)).send().await.unwrap();
        status = response.status().as_u16();
    }
    assert_eq!(status, 202, "served again once the slots are free");

    stop_tx.send(true).unwrap();
    service.await.unwrap().unwrap();
    assert_eq!(bronze_ids(&lake).await, vec!["h0002"]);
}

/// While the refine tier is stalled, the ingest tier runs ahead by four
/// batches and then the pipeline's channel fills: requests are answered 503
/// with `Retry-After` within `ack_timeout_ms` instead of hanging, and the
/// answer says truthfully whether the events were handed over. Those
/// refused before ("nothing was stored") are not in bronze; those refused
/// after ("may have been stored") are, once the pipeline moves again, and a
/// retry of them is deduplicated on `event_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_pipeline_answers_503_with_retry_after_and_says_what_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut config = common::replay_config(&lake, Vec::new(), 1);
    config.collector.ack_timeout_ms = 1_500;
    let (url, stop_tx, service, client) = start_with_silver_stalled(&mut config).await;
    // The refine tier spins on that batch for 8 s or more; the ingest tier
    // may run three one-event batches further ahead.
    for i in 1..=3 {
        let response = client.post(&url).body(event(i)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 202, "request {i}");
    }
    let (status, retry_after, error) = post(&client, &url, 4).await;
    assert_eq!((status, retry_after.as_str()), (503, "5"));
    assert!(
        error.contains("may have been stored") && error.contains("event_id"),
        "{error}"
    );

    // Now the channel fills; the rest cannot even be handed over.
    let answers = futures::future::join_all((100..140).map(|i| post(&client, &url, i))).await;
    let mut refused = Vec::new();
    let mut maybe = vec![format!("h{:04}", 4)];
    for (i, (status, retry_after, error)) in (100..140).zip(answers) {
        assert_eq!((status, retry_after.as_str()), (503, "5"), "{error}");
        if error.contains("nothing was stored") {
            refused.push(format!("h{i:04}"));
        } else {
            assert!(error.contains("may have been stored"), "{error}");
            maybe.push(format!("h{i:04}"));
        }
    }
    assert!(!refused.is_empty(), "the channel is bounded");

    stop_tx.send(true).unwrap();
    service.await.unwrap().unwrap();
    let stored = bronze_ids(&lake).await;
    for id in &refused {
        assert!(!stored.contains(id), "{id} was refused yet stored");
    }
    for id in &maybe {
        assert!(
            stored.contains(id),
            "{id} was handed over: stored once the stall ended"
        );
    }
    assert_eq!(stored.len(), 4 + maybe.len());
}

/// Posts event `i`; its status, `Retry-After` and error message.
async fn post(client: &reqwest::Client, url: &str, i: usize) -> (u16, String, String) {
    let response = client.post(url).body(event(i)).send().await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    let error = body["error"].as_str().unwrap_or_default().to_string();
    (status, retry_after, error)
}

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

/// `sluice run` with a collector reachable from other machines and no
/// authentication is refused at start, naming the field.
#[test]
fn a_collector_open_to_the_network_without_auth_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = sluice()
        .args(["run", "--listen", "0.0.0.0:0", "--lake"])
        .arg(dir.path().join("lake"))
        .env("SLUICE_CACHE_DIR", dir.path().join("cache"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Refused while reading the config, before any plugin is compiled.
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("`sluice run` started a collector open to the network without auth");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("collector.listen"), "{stderr}");
    assert!(stderr.contains("collector.auth"), "{stderr}");
}

/// With `collector.auth = "bearer"`, the real binary answers 401 to a
/// request without a token or with a wrong one, and stores none of their
/// events; either of two tokens in `SLUICE_COLLECTOR_TOKENS` is accepted
/// (rotation), and no token ever shows in its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_needs_one_of_the_bearer_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let (old, new) = ("old-token-4f7d1c9a2b", "new-token-8e3a6b0c5d");
    let mut child = sluice()
        .args(["run", "--listen", "127.0.0.1:0", "--lake"])
        .arg(&lake)
        .env("SLUICE_CACHE_DIR", dir.path().join("cache"))
        .env("SLUICE_COLLECTOR__AUTH", "bearer")
        .env("SLUICE_COLLECTOR_TOKENS", format!("{old},{new}"))
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    let mut line = String::new();
    while !line.contains("collecting on") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "exited: {said}");
        said.push_str(&line);
    }
    let url = line.split_whitespace().last().unwrap().to_string();
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        rest
    });

    let client = reqwest::Client::new();
    let send = |i: usize, auth: Option<String>| {
        let mut request = client.post(&url).body(event(i));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send()
    };
    let response = send(1, None).await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let response = send(2, Some("Bearer new-token-8e3a6b0c5e".into()))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let response = send(3, Some(format!("Basic {new}"))).await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let response = send(4, Some(format!("Bearer {new}"))).await.unwrap();
    assert_eq!(response.status().as_u16(), 202, "the second token works");
    let response = send(5, Some(format!("Bearer {old}"))).await.unwrap();
    assert_eq!(response.status().as_u16(), 202, "and so does the first");
    let health = client
        .get(url.replace("/v1/events", "/health"))
        .send()
        .await;
    assert_eq!(
        health.unwrap().status().as_u16(),
        200,
        "health needs no token"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());
    said.push_str(&rest.join().unwrap());
    assert!(!said.contains("token-"), "a token was printed: {said}");
    assert_eq!(bronze_ids(&lake).await, vec!["h0004", "h0005"]);
}

/// Without `cors_origins`, a browser's preflight and its simple
/// `text/plain` post from any origin are refused (403, no CORS headers) and
/// nothing is stored, while requests without `Origin` are served; with the
/// origin configured, its preflight is answered and its posts are accepted
/// with `Access-Control-Allow-Origin`, and other origins are still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_are_refused_unless_their_origin_is_configured() {
    let page = "https://app.example.com";
    let client = reqwest::Client::new();
    let preflight = |url: &str, origin: &str| {
        client
            .request(reqwest::Method::OPTIONS, url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let simple = |url: &str, origin: &str, i: usize| {
        client
            .post(url)
            .header("origin", origin)
            .header("content-type", "text/plain")
            .body(event(i))
            .send()
    };

    for cors_origins in [vec![], vec![page.to_string()]] {
        let configured = !cors_origins.is_empty();
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        let mut config = common::replay_config(&lake, Vec::new(), 10_000);
        config.collector.listen = "127.0.0.1:0".into();
        config.collector.cors_origins = cors_origins;
        let (url, stop_tx, service) = start_collector(config).await;

        let evil = "http://evil.example";
        let response = preflight(&url, evil).await.unwrap();
        assert_eq!(response.status().as_u16(), 403);
        assert!(
            !response
                .headers()
                .contains_key("access-control-allow-origin")
        );
        let response = simple(&url, evil, 1).await.unwrap();
        assert_eq!(response.status().as_u16(), 403);
        assert!(
            !response
                .headers()
                .contains_key("access-control-allow-origin")
        );

        let response = preflight(&url, page).await.unwrap();
        let response2 = simple(&url, page, 2).await.unwrap();
        if configured {
            assert_eq!(response.status().as_u16(), 204);
            assert_eq!(response.headers()["access-control-allow-origin"], page);
            assert_eq!(response.headers()["access-control-allow-methods"], "POST");
            assert_eq!(response2.status().as_u16(), 202);
            assert_eq!(response2.headers()["access-control-allow-origin"], page);
        } else {
            assert_eq!(response.status().as_u16(), 403);
            assert_eq!(response2.status().as_u16(), 403);
        }

        let response = client.post(&url).body(event(3)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 202, "no Origin: not a browser");

        stop_tx.send(true).unwrap();
        service.await.unwrap().unwrap();
        let expected = if configured {
            vec!["h0002", "h0003"]
        } else {
            vec!["h0003"]
        };
        assert_eq!(bronze_ids(&lake).await, expected);
    }
}
