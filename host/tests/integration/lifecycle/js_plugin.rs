//! A transform in JavaScript, end to end: the example under
//! `plugins/examples/js-silver-rule` is built with npm (componentize-js),
//! passes its fixtures through `sluice plugin test`, is deployed with its
//! fixtures to a running host and serves live events.

use std::path::Path;
use std::process::Command;

use serde_json::json;
use sluice::lifecycle::Fixtures;

use super::{Host, host_config};
use crate::common;

/// Where npm is, or why the test cannot run (a failure when CI asks for
/// every service).
fn npm_or_skip() -> Option<&'static str> {
    let found = Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("npm");
    }
    assert!(
        std::env::var_os("SLUICE_TEST_REQUIRE_SERVICES").is_none(),
        "npm is required for the JavaScript plugin test"
    );
    eprintln!("skipping the JavaScript plugin test: npm is not installed");
    None
}

fn run(dir: &Path, program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn event(id: &str, account: &str) -> String {
    json!({
        "event_id": id, "user_id": "u_1", "account_id": account, "plan": "free",
        "event_type": "login", "session_id": "s_1", "timestamp": "2026-01-05T09:00:00Z",
        "platform": "web", "country": "US", "app_version": "5.12.0",
        "properties": {"method": "password"}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_javascript_silver_rule_builds_passes_its_fixtures_and_serves_live_events() {
    let Some(npm) = npm_or_skip() else { return };
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples/js-silver-rule");
    run(
        &example,
        npm,
        &["ci", "--no-audit", "--no-fund", "--loglevel=error"],
    );
    run(&example, npm, &["run", "build"]);
    let wasm = example.join("dist/js_silver_rule.wasm");
    let fixtures = example.join("fixtures");
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let (events, expected) = (
        fixtures.join("events.ndjson"),
        fixtures.join("expected.ndjson"),
    );
    common::run_ok(
        Command::new(sluice)
            .args(["plugin", "test"])
            .arg(&wasm)
            .arg("--fixtures")
            .arg(&events)
            .arg("--expect")
            .arg(&expected),
    );

    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let host = Host::start(host_config(&lake)).await;
    let fixtures = Fixtures {
        events: std::fs::read_to_string(&events).unwrap(),
        expected: std::fs::read_to_string(&expected).unwrap(),
    };
    let change = host
        .deploy_with(
            "silver",
            std::fs::read(&wasm).unwrap(),
            false,
            Some(fixtures),
        )
        .await
        .unwrap();
    assert_eq!(change.name, "js-silver-rule");
    let lines = vec![
        event("js-1", "acct_01"),
        event("js-2", "test_acme"),
        event("js-3", "acct_02"),
        "{not json".to_string(),
    ];
    host.send(&lines, 2).await;
    host.stop().await;

    let producers = common::rows(
        &lake,
        "SELECT event_id, producer FROM silver_events ORDER BY event_id",
    )
    .await;
    let by_js = |id: &str| json!({"event_id": id, "producer": "js-silver-rule@0.1.0"}).to_string();
    assert_eq!(producers, vec![by_js("js-1"), by_js("js-3")]);
    let reasons = common::rows(
        &lake,
        "SELECT reason, producer FROM quarantine ORDER BY reason",
    )
    .await;
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("test_account")),
        "{reasons:?}"
    );
}
