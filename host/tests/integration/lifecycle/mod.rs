//! Plugin lifecycle on a running host, through its real admin API and
//! collector: swaps under load, refused and auto-rolled-back deploys, shadow
//! runs and the watched directory here; replay from bronze and a scaffolded
//! plugin in their own files. `Host` is the harness all of them share.

use std::path::{Path, PathBuf};

use serde_json::json;
use sluice::admin::client::AdminClient;
use sluice::admin::{DeployRequest, ReplayRequest};
use sluice::config::Config;
use sluice::lifecycle::registry::Action;
use sluice::lifecycle::{Change, Fixtures, Status};
use sluice::pipeline::ReplayReport;

use crate::common::{self, Expected};

mod durable_rollback;
mod js_plugin;
mod replay;
mod scaffold;

const TOKEN: &str = "test-admin-token-0123456789";
const LATENESS_MICROS: i64 = 3_600 * 1_000_000;

/// A host running in-process with its collector and admin API on free ports.
struct Host {
    events_url: String,
    admin: AdminClient,
    admin_url: String,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<sluice::pipeline::Totals>>,
    http: reqwest::Client,
}

fn host_config(lake: &Path) -> Config {
    let mut config = common::replay_config(lake, Vec::new(), 400);
    config.collector.listen = "127.0.0.1:0".into();
    config.admin.listen = "127.0.0.1:0".into();
    config.admin.token = Some(TOKEN.into());
    config.batch.linger_ms = 50;
    config
}

impl Host {
    async fn start(config: Config) -> Host {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            sluice::service::run(
                &config,
                stop_rx,
                move |ready| {
                    let _ = ready_tx.send(ready);
                },
                |_| {},
            )
            .await
        });
        let ready = ready_rx.await.expect("the host started");
        let admin_url = format!("http://{}", ready.admin.unwrap());
        Host {
            events_url: format!("http://{}/v1/events", ready.collector.unwrap()),
            admin: AdminClient::new(&admin_url, TOKEN),
            admin_url,
            stop,
            task,
            http: reqwest::Client::new(),
        }
    }

    /// Posts `lines` in requests of `chunk`, each answered once durable in
    /// bronze, then waits until silver and gold have refined them, so what
    /// the test does next happens after them.
    async fn send(&self, lines: &[String], chunk: usize) {
        self.post(lines, chunk).await;
        self.settle().await;
    }

    /// Waits until the refine tier has caught up with the ingest tier.
    async fn settle(&self) {
        for _ in 0..600 {
            let status = self.status().await;
            if status.next_batch == status.next_bronze_batch {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the refine tier did not catch up within a minute");
    }

    /// Posts `lines` in requests of `chunk`, each answered once durable.
    async fn post(&self, lines: &[String], chunk: usize) {
        for part in lines.chunks(chunk) {
            let response = self
                .http
                .post(&self.events_url)
                .body(part.join("\n"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 202, "{:?}", response.text().await);
        }
    }

    async fn status(&self) -> Status {
        self.admin.get("/v1/plugins").await.unwrap()
    }

    async fn deploy(&self, layer: &str, wasm: &Path, shadow: bool) -> anyhow::Result<Change> {
        self.deploy_with(layer, std::fs::read(wasm).unwrap(), shadow, None)
            .await
    }

    async fn deploy_with(
        &self,
        layer: &str,
        wasm: Vec<u8>,
        shadow: bool,
        fixtures: Option<Fixtures>,
    ) -> anyhow::Result<Change> {
        use base64::Engine as _;
        let request = DeployRequest {
            wasm_base64: base64::engine::general_purpose::STANDARD.encode(wasm),
            shadow,
            fixtures,
        };
        self.admin
            .post(&format!("/v1/plugins/{layer}/deploy"), &request)
            .await
    }

    async fn rollback(&self, layer: &str) -> Change {
        self.admin
            .post(&format!("/v1/plugins/{layer}/rollback"), &())
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn silver_version(status: &Status) -> String {
    let silver = status.layers.iter().find(|l| l.layer == "silver").unwrap();
    format!("{}@{}", silver.name, silver.version)
}

fn test_plugin(env_path: &str) -> PathBuf {
    PathBuf::from(env_path)
}

/// Silver, quarantine and gold equal the independent computation.
async fn assert_pipeline_matches(lake: &Path, lines: &[String]) {
    let expected = Expected::compute(lines, LATENESS_MICROS);
    let silver = common::count(lake, "SELECT COUNT(*) FROM silver_events").await;
    assert_eq!(silver as usize, expected.accepted.len(), "silver rows");
    let distinct = common::count(lake, "SELECT COUNT(DISTINCT event_id) FROM silver_events").await;
    assert_eq!(distinct, silver, "duplicate event ids in silver");
    for (reason, n) in [("duplicate", expected.duplicates), ("late", expected.late)] {
        let sql = format!("SELECT COUNT(*) FROM quarantine WHERE reason = '{reason}'");
        assert_eq!(common::count(lake, &sql).await as usize, n, "{reason}");
    }
    let malformed = common::count(
        lake,
        "SELECT COUNT(*) FROM quarantine WHERE layer = 'silver' \
         AND reason NOT IN ('duplicate', 'late')",
    )
    .await;
    assert_eq!(malformed as usize, expected.malformed, "malformed");
    common::assert_gold_matches(lake, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silver_swapped_back_and_forth_under_load_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let host = Host::start(host_config(&lake)).await;
    let v1 = silver_version(&host.status().await);
    let lines = common::simulated_lines(31, 8_000, 0.04);
    let next = test_plugin(env!("SLUICE_PLUGIN_SILVER_NEXT"));
    let swaps = async {
        for _ in 0..3 {
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            let deployed = host.deploy("silver", &next, false).await.unwrap();
            assert_eq!(deployed.version, "0.2.0");
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            let back = host.rollback("silver").await;
            assert_eq!(format!("{}@{}", back.name, back.version), v1);
        }
    };
    tokio::join!(host.send(&lines, 100), swaps);
    let history = host.status().await.history;
    host.stop().await;

    assert_pipeline_matches(&lake, &lines).await;
    // Every silver batch was produced by exactly the version active from
    // the boundary the history gives, and both versions served.
    let per_batch = common::rows(
        &lake,
        "SELECT batch_id, MIN(producer) AS p, COUNT(DISTINCT producer) AS n \
         FROM silver_events GROUP BY batch_id",
    )
    .await;
    let mut served = std::collections::BTreeSet::new();
    for row in &per_batch {
        let v: serde_json::Value = serde_json::from_str(row).unwrap();
        assert_eq!(v["n"], 1, "a batch mixes plugin versions: {row}");
        let batch = v["batch_id"].as_i64().unwrap();
        let active = history
            .iter()
            .rfind(|e| e.layer == "silver" && e.from_batch <= batch)
            .map(|e| format!("{}@{}", e.name, e.version))
            .unwrap_or_else(|| v1.clone());
        assert_eq!(v["p"], json!(active), "batch {batch}");
        served.insert(active);
    }
    assert_eq!(served.len(), 2, "both versions served batches: {served:?}");
    assert_eq!(history.len(), 6);
}

fn panic_event(i: usize, note: &str) -> String {
    json!({
        "event_id": format!("p{i:04}"), "user_id": "u_1", "account_id": "a_1", "plan": "free",
        "event_type": "login", "session_id": "s_1",
        "timestamp": format!("2026-01-05T10:{:02}:{:02}Z", i / 60, i % 60),
        "properties": {"method": "password"}, "note": note
    })
    .to_string()
}

fn fixtures_of(plugin: &str) -> Fixtures {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins")
        .join(plugin)
        .join("fixtures");
    Fixtures {
        events: std::fs::read_to_string(dir.join("events.ndjson")).unwrap(),
        expected: std::fs::read_to_string(dir.join("expected.ndjson")).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_deploys_are_refused_or_rolled_back_and_the_old_version_serves() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut config = host_config(&lake);
    config.plugins.memory_mb = 200;
    let host = Host::start(config.clone()).await;
    let v1 = silver_version(&host.status().await);

    // Without the token, or with a wrong one: 401 and nothing changes.
    let next = std::fs::read(env!("SLUICE_PLUGIN_SILVER_NEXT")).unwrap();
    for token in [None, Some("wrong-token-wrong-token")] {
        let mut request =
            reqwest::Client::new().post(format!("{}/v1/plugins/silver/rollback", host.admin_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        assert_eq!(request.send().await.unwrap().status(), 401);
        let anonymous = reqwest::get(format!("{}/v1/plugins", host.admin_url))
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401);
    }

    let bronze = std::fs::read(env!("SLUICE_PLUGIN_BRONZE")).unwrap();
    let mut wrong_fixtures = fixtures_of("silver");
    wrong_fixtures.expected = wrong_fixtures.expected.replacen("login", "logout", 1);
    let refusals: Vec<(&str, Vec<u8>, Option<Fixtures>, &str)> = vec![
        ("not wasm", b"hello".to_vec(), None, "422"),
        ("core module", b"\0asm\x01\0\0\0".to_vec(), None, "422"),
        (
            "empty component",
            b"\0asm\x0d\0\x01\0".to_vec(),
            None,
            "422",
        ),
        ("bronze plugin", bronze, None, "422"),
        (
            "failing fixtures",
            next.clone(),
            Some(wrong_fixtures),
            "422",
        ),
        (
            "schema change",
            std::fs::read(env!("SLUICE_PLUGIN_SILVER_WIDE")).unwrap(),
            None,
            "409",
        ),
    ];
    for (what, wasm, fixtures, status) in refusals {
        let err = host
            .deploy_with("silver", wasm, false, fixtures)
            .await
            .expect_err(what);
        assert!(err.to_string().starts_with(status), "{what}: {err}");
        assert_eq!(silver_version(&host.status().await), v1, "{what}");
    }
    let status = host.status().await;
    let refused = status
        .history
        .iter()
        .filter(|e| e.action == Action::Refused);
    assert_eq!(refused.count(), 6, "every refusal is in the history");
    assert!(status.history.iter().all(|e| e.action == Action::Refused));

    // A plugin that passes validation but traps on live data is rolled back
    // by the host, and the batch is redone by the previous version.
    let hostile = test_plugin(env!("SLUICE_PLUGIN_HOSTILE"));
    host.deploy("silver", &hostile, false).await.unwrap();
    let events: Vec<String> = (0..40)
        .map(|i| panic_event(i, if i == 20 { "HOSTILE_PANIC" } else { "" }))
        .collect();
    host.send(&events, 40).await;
    let status = host.status().await;
    assert_eq!(silver_version(&status), v1);
    let last = status.history.last().unwrap();
    assert_eq!(last.action, Action::AutoRollback);
    assert!(last.note.contains("sluice-hostile"), "{}", last.note);

    // A good deploy with passing fixtures; its manifest limits are capped.
    let fixtures = Some(fixtures_of("silver"));
    host.deploy_with("silver", next, false, fixtures)
        .await
        .unwrap();
    let status = host.status().await;
    let silver = status.layers.iter().find(|l| l.layer == "silver").unwrap();
    assert_eq!(
        (
            silver.version.as_str(),
            silver.memory_mb,
            silver.batch_timeout_ms
        ),
        ("0.2.0", 200, 20_000)
    );
    host.stop().await;

    let accepted = common::count(&lake, "SELECT COUNT(*) FROM silver_events").await;
    assert_eq!(accepted, 40, "every event accepted despite the trap");
    let producers = common::rows(&lake, "SELECT DISTINCT producer FROM silver_events").await;
    assert_eq!(producers, vec![json!({"producer": v1}).to_string()]);
    let trapped = common::count(&lake, "SELECT COUNT(*) FROM quarantine").await;
    assert_eq!(trapped, 0);

    // The deploy survives a restart.
    let host = Host::start(config).await;
    assert_eq!(silver_version(&host.status().await), "sluice-silver@0.2.0");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shadow_run_reports_the_diff_of_a_changed_rule_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let host = Host::start(host_config(&lake)).await;
    let strict = test_plugin(env!("SLUICE_PLUGIN_SILVER_STRICT"));
    let change = host.deploy("silver", &strict, true).await.unwrap();
    assert_eq!(change.action, Action::Shadow);
    let lines = common::simulated_lines(32, 3_000, 0.04);
    host.send(&lines, 200).await;
    let status = host.status().await;
    let report = status
        .layers
        .iter()
        .find(|l| l.layer == "silver")
        .and_then(|l| l.shadow.clone())
        .expect("a shadow report");

    // The rule applies to what the plugin accepts, before host dedup.
    let parsed: Vec<_> = lines.iter().filter_map(|l| common::parse(l)).collect();
    let refused = parsed
        .iter()
        .filter(|e| e.kind == "feature_used" && e.duration.is_some_and(|d| d > 60_000))
        .count() as u64;
    assert!(refused > 0, "the test data exercises the rule");
    let silver = &report.tables["silver_events"];
    assert_eq!(
        (
            silver.removed,
            silver.added,
            silver.changed,
            silver.unchanged
        ),
        (refused, 0, 0, parsed.len() as u64 - refused)
    );
    assert_eq!(report.tables["quarantine"].added, refused);
    assert_eq!(report.candidate_quarantine["duration_over_limit"], refused);
    assert!(!report.active_quarantine.contains_key("duration_over_limit"));

    // Nothing of the candidate was written; promote makes it active.
    let written = "SELECT COUNT(*) FROM quarantine WHERE reason = 'duration_over_limit'";
    assert_eq!(common::count(&lake, written).await, 0);
    assert_pipeline_matches(&lake, &lines).await;
    let promoted: Change = host
        .admin
        .post("/v1/plugins/silver/promote", &())
        .await
        .unwrap();
    assert_eq!(promoted.action, Action::Promote);
    let more = common::simulated_lines(33, 1_000, 0.0);
    host.send(&more, 200).await;
    host.stop().await;
    let refused_now = more
        .iter()
        .filter_map(|l| common::parse(l))
        .filter(|e| e.kind == "feature_used" && e.duration.is_some_and(|d| d > 60_000))
        .count();
    assert_eq!(common::count(&lake, written).await as usize, refused_now);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_component_dropped_in_the_watched_directory_is_deployed() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let watched = dir.path().join("drop");
    std::fs::create_dir_all(&watched).unwrap();
    let mut config = host_config(&lake);
    config.plugins.watch_dir = Some(watched.clone());
    let host = Host::start(config.clone()).await;
    std::fs::copy(env!("SLUICE_PLUGIN_SILVER_NEXT"), watched.join("next.wasm")).unwrap();
    wait_for_silver(&host, "sluice-silver@0.2.0").await;
    host.stop().await;

    // Dropped while the host is down: deployed at the next start; the file
    // deployed before is still there and is not deployed again.
    std::fs::copy(
        env!("SLUICE_PLUGIN_SILVER_STRICT"),
        watched.join("strict.wasm"),
    )
    .unwrap();
    let host = Host::start(config).await;
    wait_for_silver(&host, "sluice-silver@0.3.0-strict").await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let status = host.status().await;
    let deploys: Vec<&str> = status
        .history
        .iter()
        .filter(|e| e.action == Action::Deploy)
        .map(|e| e.version.as_str())
        .collect();
    assert_eq!(
        deploys,
        ["0.2.0", "0.3.0-strict"],
        "each file deployed once"
    );
    assert_eq!(silver_version(&status), "sluice-silver@0.3.0-strict");
    host.stop().await;
}

async fn wait_for_silver(host: &Host, version: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while silver_version(&host.status().await) != version {
        assert!(
            std::time::Instant::now() < deadline,
            "{version} not deployed in 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
