//! Replay from bronze on a running host: after a buggy version, and a replay
//! interrupted by a crash that the next start finishes.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_after_a_buggy_version_gives_what_the_fixed_one_would_have() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let host = Host::start(host_config(&lake)).await;
    let all = common::simulated_lines(34, 4_500, 0.04);
    let (a, rest) = all.split_at(1_500);
    let (b, c) = rest.split_at(1_500);
    host.send(a, 250).await;
    let buggy = test_plugin(env!("SLUICE_PLUGIN_SILVER_BUGGY"));
    let from = host
        .deploy("silver", &buggy, false)
        .await
        .unwrap()
        .from_batch;
    host.send(b, 250).await;
    let upper = "SELECT COUNT(*) FROM silver_events WHERE feature <> lower(feature)";
    assert!(common::count(&lake, upper).await > 0, "the bug shows");
    let before_sql = format!("SELECT * FROM silver_events WHERE batch_id < {from}");
    let before = common::rows(&lake, &before_sql).await;
    host.rollback("silver").await;
    let report: ReplayReport = host
        .admin
        .post(
            "/v1/replay",
            &ReplayRequest {
                layer: "silver".into(),
                from_batch: Some(from),
                since: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(report.from_batch, from);
    host.send(c, 250).await;
    host.stop().await;

    assert_eq!(common::count(&lake, upper).await, 0);
    assert_eq!(
        common::rows(&lake, &before_sql).await,
        before,
        "rows before the range changed"
    );
    assert_pipeline_matches(&lake, &all).await;
    let buggy_rows = "SELECT COUNT(*) FROM silver_events WHERE producer LIKE '%buggy%'";
    assert_eq!(common::count(&lake, buggy_rows).await, 0);

    // Offline, by time, gold only: a rebuild from the same silver changes nothing.
    let stdout = common::run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "replay",
                "--layer",
                "gold",
                "--since",
                "2000-01-01T00:00:00Z",
                "--offline",
            ])
            .arg("--lake")
            .arg(&lake),
    );
    let report: ReplayReport = serde_json::from_str(&stdout).unwrap();
    assert_eq!((report.layer.as_str(), report.from_batch), ("gold", 1));
    assert_pipeline_matches(&lake, &all).await;
}

/// A replay killed between replacing silver and replacing gold is finished
/// by the next start, before any new batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_replay_is_finished_on_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let events = dir.path().join("events.ndjson");
    let lines = common::simulated_lines(35, 2_000, 0.04);
    common::write_lines(&events, &lines);
    let mut buggy = common::replay_config(&lake, vec![events], 500);
    buggy.plugins.silver = Some(env!("SLUICE_PLUGIN_SILVER_BUGGY").into());
    common::run_to_end(&buggy).await;
    let upper = "SELECT COUNT(*) FROM dim_feature WHERE feature <> lower(feature)";
    assert!(
        common::count(&lake, upper).await > 0,
        "the bug shows in gold"
    );

    // Replay with the default silver plugin, aborted after silver.
    let sluice = |args: &[&str], failpoint: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(args).arg("--lake").arg(&lake);
        if let Some(point) = failpoint {
            cmd.env("SLUICE_FAILPOINT", point);
        }
        cmd.output().unwrap()
    };
    let replay = [
        "replay",
        "--layer",
        "silver",
        "--from-batch",
        "1",
        "--offline",
    ];
    let crashed = sluice(&replay, Some("replay-silver-replaced:1"));
    assert!(!crashed.status.success(), "the failpoint aborts the replay");
    let silver_upper = "SELECT COUNT(*) FROM silver_events WHERE feature <> lower(feature)";
    assert_eq!(
        common::count(&lake, silver_upper).await,
        0,
        "silver was replaced"
    );
    assert!(common::count(&lake, upper).await > 0, "gold was not yet");

    // Any start finishes it: here a run with nothing to ingest.
    let restarted = sluice(&["run", "--listen", ""], None);
    assert!(
        restarted.status.success(),
        "{}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    assert_pipeline_matches(&lake, &lines).await;
}
