//! An automatic rollback is written to the registry before the step it
//! reruns commits: the real binary, killed by a failpoint right after that
//! commit, restarts with the restored version, not the one that failed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice::admin::client::AdminClient;
use sluice::config::Config;
use sluice::lifecycle::Status;
use sluice::lifecycle::registry::{Action, Registry};

use super::{Host, TOKEN, host_config, panic_event, silver_version, test_plugin};

/// Polls the admin API until it answers (the binary is up).
async fn wait_for_admin(admin: &AdminClient) -> Status {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(status) = admin.get::<Status>("/v1/plugins").await {
            return status;
        }
        assert!(Instant::now() < deadline, "the binary did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_automatic_rollback_survives_a_crash_right_after_the_rerun_commits() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let (collector, admin_port) = (crate::common::free_port(), crate::common::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--lake"])
        .arg(&lake)
        .args(["--listen", &format!("127.0.0.1:{collector}")])
        .env("SLUICE_ADMIN__LISTEN", format!("127.0.0.1:{admin_port}"))
        .env("SLUICE_ADMIN_TOKEN", TOKEN)
        .env("SLUICE_CACHE_DIR", dir.path().join("cache"))
        .env("SLUICE_BATCH__LINGER_MS", "50")
        // Bronze batch 1 is the request below: abort once its silver step,
        // rerun by the restored version, is committed.
        .env("SLUICE_FAILPOINT", "silver-committed:1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let admin = AdminClient::new(&format!("http://127.0.0.1:{admin_port}"), TOKEN);
    let v1 = silver_version(&wait_for_admin(&admin).await);
    let hostile = std::fs::read(test_plugin(env!("SLUICE_PLUGIN_HOSTILE"))).unwrap();
    let request = sluice::admin::DeployRequest {
        wasm_base64: {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(hostile)
        },
        shadow: false,
        fixtures: None,
    };
    let _: sluice::lifecycle::Change = admin
        .post("/v1/plugins/silver/deploy", &request)
        .await
        .unwrap();
    let events: Vec<String> = (0..40)
        .map(|i| panic_event(i, if i == 20 { "HOSTILE_PANIC" } else { "" }))
        .collect();
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{collector}/v1/events"))
        .body(events.join("\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the failpoint was not reached");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "the failpoint aborts the process");

    let config = Config {
        lake: lake.clone(),
        ..Default::default()
    };
    let registry = Registry::open(&config.registry_dir(), &config.lake_options)
        .await
        .unwrap();
    let last = registry.history().last().unwrap().clone();
    assert_eq!(last.action, Action::AutoRollback, "{last:?}");

    let host = Host::start(host_config(&lake)).await;
    assert_eq!(silver_version(&host.status().await), v1);
    host.settle().await;
    host.stop().await;
    let silver = crate::common::count(&lake, "SELECT COUNT(*) FROM silver_events").await;
    assert_eq!(
        silver, 40,
        "the restored version refined the whole step, once"
    );
}
