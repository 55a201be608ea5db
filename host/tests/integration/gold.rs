//! The whole pipeline on events with duplicates, late and malformed ones:
//! every gold table equals an independent computation over the same input.

use crate::common::{self, Expected, GOLD_QUERIES};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_equals_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    // The independent sample first (its event times are older), then a
    // simulated stream with 4 % duplicates, 4 % late and 2 % malformed.
    let mut lines = common::sample_lines();
    lines.extend(common::simulated_lines(7, 30_000, 0.04));
    let file = dir.path().join("events.ndjson");
    common::write_lines(&file, &lines);
    let lake = dir.path().join("lake");
    let config = common::replay_config(&lake, vec![file], 4_000);
    let totals = common::run_to_end(&config).await;

    let lateness = config.lateness.allowed_secs as i64 * 1_000_000;
    let expected = Expected::compute(&lines, lateness);
    assert!(
        expected.duplicates > 500 && expected.late > 50 && expected.malformed > 200,
        "the input exercises every fault"
    );
    assert_eq!(totals.events as usize, lines.len());
    assert_eq!(totals.accepted as usize, expected.accepted.len());

    let bronze = common::count(&lake, "SELECT COUNT(*) FROM bronze_events").await;
    let silver = common::count(&lake, "SELECT COUNT(*) FROM silver_events").await;
    let distinct = common::count(&lake, "SELECT COUNT(DISTINCT event_id) FROM silver_events").await;
    assert_eq!(bronze as usize, lines.len(), "bronze keeps every record");
    assert_eq!(silver as usize, expected.accepted.len());
    assert_eq!(distinct, silver, "silver holds each event once");

    let reasons = common::rows(
        &lake,
        "SELECT reason, COUNT(*) AS n FROM quarantine GROUP BY reason",
    )
    .await;
    let by_reason: std::collections::BTreeMap<String, i64> = reasons
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(r).unwrap();
            (
                v["reason"].as_str().unwrap().to_string(),
                v["n"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_reason.get("duplicate").copied().unwrap_or(0) as usize,
        expected.duplicates,
        "{by_reason:?}"
    );
    assert_eq!(
        by_reason.get("late").copied().unwrap_or(0) as usize,
        expected.late,
        "{by_reason:?}"
    );
    let malformed: i64 = by_reason
        .iter()
        .filter(|(r, _)| !matches!(r.as_str(), "duplicate" | "late"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(malformed as usize, expected.malformed, "{by_reason:?}");
    for reason in by_reason.keys() {
        assert!(
            !reason.starts_with("plugin_"),
            "no plugin failed: {by_reason:?}"
        );
    }
    let raw_kept = common::count(
        &lake,
        "SELECT COUNT(*) FROM quarantine WHERE length(raw) > 0",
    )
    .await;
    assert_eq!(
        raw_kept,
        by_reason.values().sum::<i64>(),
        "every quarantined event keeps its raw bytes"
    );

    common::assert_gold_matches(&lake, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_over_the_same_files_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lines = common::simulated_lines(11, 3_000, 0.02);
    let file = dir.path().join("events.ndjson");
    common::write_lines(&file, &lines);
    let lake = dir.path().join("lake");
    let config = common::replay_config(&lake, vec![file], 1_000);
    common::run_to_end(&config).await;
    let before: Vec<Vec<String>> = futures_rows(&lake).await;
    let totals = common::run_to_end(&config).await;
    assert_eq!(
        totals.events, 0,
        "positions resume after the committed lines"
    );
    assert_eq!(futures_rows(&lake).await, before);
}

async fn futures_rows(lake: &std::path::Path) -> Vec<Vec<String>> {
    let mut all = vec![common::rows(lake, "SELECT event_id FROM silver_events").await];
    for (_, sql) in GOLD_QUERIES {
        all.push(common::rows(lake, sql).await);
    }
    all
}
