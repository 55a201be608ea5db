//! Hostile plugins are contained: an infinite loop, unbounded allocation, a
//! panic and output that lies about its schema each cost one batch, which
//! lands in quarantine with the reason; the host keeps going.

use deltalake::arrow::array::{Array, RecordBatch, StringArray};

use crate::common;

fn event(i: usize, note: &str) -> String {
    serde_json::json!({
        "event_id": format!("e{i:05}"), "user_id": "u_1", "account_id": "a_1", "plan": "free",
        "event_type": "login", "session_id": format!("s_{}", i / 10),
        "timestamp": format!("2026-01-05T10:{:02}:{:02}Z", i / 60, i % 60),
        "properties": {"method": "password"}, "note": note
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_silver_plugins_cost_one_batch_each_and_the_host_lives() {
    let dir = tempfile::tempdir().unwrap();
    let triggers = [
        "",
        "HOSTILE_LOOP",
        "",
        "HOSTILE_ALLOC",
        "HOSTILE_PANIC",
        "HOSTILE_SCHEMA",
        "",
    ];
    let mut lines = Vec::new();
    for (chunk, trigger) in triggers.iter().enumerate() {
        for j in 0..10 {
            let i = chunk * 10 + j;
            lines.push(event(i, if j == 4 { trigger } else { "" }));
        }
    }
    let file = dir.path().join("events.ndjson");
    common::write_lines(&file, &lines);
    let lake = dir.path().join("lake");
    let mut config = common::replay_config(&lake, vec![file], 10);
    config.plugins.silver = Some(env!("SLUICE_PLUGIN_HOSTILE").into());
    config.plugins.batch_timeout_ms = 1_000;
    config.plugins.memory_mb = 64;
    let totals = common::run_to_end(&config).await;

    let bronze_batches =
        common::count(&lake, "SELECT COUNT(DISTINCT batch_id) FROM bronze_events").await;
    assert_eq!(bronze_batches, 7);
    assert!(
        (1..=7).contains(&totals.batches),
        "refine steps: {}",
        totals.batches
    );
    assert_eq!(totals.accepted, 30, "the three good batches are accepted");
    let reasons = common::rows(
        &lake,
        "SELECT reason, layer, COUNT(*) AS n FROM quarantine GROUP BY reason, layer",
    )
    .await;
    let expected: Vec<String> = [
        "plugin_bad_output",
        "plugin_out_of_memory",
        "plugin_timeout",
        "plugin_trap",
    ]
    .iter()
    .map(|r| serde_json::json!({"reason": r, "layer": "silver", "n": 10}).to_string())
    .collect();
    let mut expected = expected;
    expected.sort();
    assert_eq!(reasons, expected);
    let bronze = common::count(&lake, "SELECT COUNT(*) FROM bronze_events").await;
    assert_eq!(
        bronze, 70,
        "bronze keeps the hostile batches' raw events too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_a_component_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"\0asm not really").unwrap();
    let runtime = sluice::runtime::Runtime::new(None).unwrap();
    let err = runtime
        .load_file(&bogus, Default::default())
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("bogus.wasm"), "{err:#}");
    // A real component for the wrong layer is refused at configuration.
    let silver = runtime
        .load(
            sluice::runtime::embedded::default_plugin(sluice::runtime::Layer::Silver),
            Default::default(),
        )
        .unwrap();
    let err = sluice::pipeline::plugins::check_layer(&silver, sluice::runtime::Layer::Gold, None)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("silver plugin, configured for gold"),
        "{err}"
    );
}

/// The `extra` column of a silver output: where `HOSTILE_ENTROPY` writes
/// what it observed.
fn observed(outputs: &std::collections::BTreeMap<String, RecordBatch>) -> String {
    let rows = &outputs["silver_events"];
    let extra = rows.column_by_name("extra").unwrap();
    let extra = extra.as_any().downcast_ref::<StringArray>().unwrap();
    extra.value(0).to_string()
}

#[test]
fn plugins_see_frozen_clocks_and_randomness_seeded_by_their_input() {
    let runtime = sluice::runtime::Runtime::new(None).unwrap();
    let hostile = std::path::Path::new(env!("SLUICE_PLUGIN_HOSTILE"));
    let plugin = runtime.load_file(hostile, Default::default()).unwrap();
    let batch = |lines: &[String]| {
        let records = sluice::plugin_test::fixture_records("entropy", lines.join("\n").as_bytes());
        sluice::plugin_test::layer_input(&runtime, sluice::runtime::Layer::Silver, &records)
            .unwrap()
    };
    let input = batch(&[event(0, "HOSTILE_ENTROPY"), event(1, "")]);
    let first = plugin.transform(&input).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = plugin.transform(&input).unwrap();
    assert!(
        observed(&first).starts_with("wall=0 "),
        "the wall clock is stopped at the epoch: {}",
        observed(&first)
    );
    assert_eq!(first, second, "the same batch gives identical output");
    let other = plugin
        .transform(&batch(&[event(2, "HOSTILE_ENTROPY")]))
        .unwrap();
    let random = |s: String| s.split("random=").nth(1).unwrap().to_string();
    assert_ne!(
        random(observed(&first)),
        random(observed(&other)),
        "randomness is seeded per input, not one constant"
    );
}

/// A plugin blocked inside a host call (a WASI sleep of an hour), where
/// epoch interruption cannot reach it, still costs only its batch: the
/// pipeline stops waiting after the time budget, quarantines the batch as a
/// timeout, refines the others, and the binary exits without waiting for the
/// sleeping thread.
#[test]
fn a_plugin_asleep_in_a_host_call_is_timed_out_and_the_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut lines = vec![event(0, "HOSTILE_SLEEP")];
    lines.extend((1..=10).map(|i| event(i, "")));
    let file = dir.path().join("events.ndjson");
    common::write_lines(&file, &lines);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--listen", "", "--replay"])
        .arg(&file)
        .arg("--lake")
        .arg(&lake)
        .env("SLUICE_PLUGINS__SILVER", env!("SLUICE_PLUGIN_HOSTILE"))
        .env("SLUICE_PLUGINS__BATCH_TIMEOUT_MS", "1000")
        .env("SLUICE_BATCH__MAX_EVENTS", "1")
        .env("SLUICE_CACHE_DIR", dir.path().join("cache"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Far below the hour the plugin sleeps (compiling the plugins included).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the run still waits for the sleeping plugin");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(status.success(), "{status}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let silver = rt.block_on(common::count(&lake, "SELECT COUNT(*) FROM silver_events"));
    assert_eq!(silver, 10, "every other event is refined");
    let quarantined = rt.block_on(common::rows(&lake, "SELECT reason FROM quarantine"));
    assert_eq!(
        quarantined,
        vec![r#"{"reason":"plugin_timeout"}"#.to_string()]
    );
}
