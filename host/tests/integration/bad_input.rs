//! Hostile input from clients: an event stamped far in the future is
//! quarantined as `future_timestamp` and never moves a watermark, so it cannot
//! make later events late — not in the run that saw it, nor after a restart
//! (which rebuilds the watermarks from silver).

use crate::common;

/// A valid event `i` at 2026-01-05T10:mm:ss.
fn event(i: usize) -> String {
    event_at(i, &format!("2026-01-05T10:{:02}:{:02}Z", i / 60, i % 60))
}

fn event_at(i: usize, timestamp: &str) -> String {
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
    let quarantined = common::rows(
        &lake,
        "SELECT layer, reason, CAST(raw AS VARCHAR) AS raw FROM quarantine",
    )
    .await;
    let expected =
        serde_json::json!({"layer": "silver", "reason": "future_timestamp", "raw": future});
    assert_eq!(quarantined, vec![expected.to_string()]);
}
