//! Plugins deployed once for a fleet: two instances sharing a topic and a
//! lake on Azurite keep one plugin registry in that lake. A deploy, a
//! shadow run and a rollback through either instance's admin API reach the
//! other at its next step boundary; each instance's `plugin list` (the
//! admin API's status) shows what every instance runs; and the events
//! ingested meanwhile are in the lake once, gold as computed.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use sluice::admin::DeployRequest;
use sluice::admin::client::AdminClient;
use sluice::lifecycle::registry::Action;
use sluice::lifecycle::{Change, Status};
use sluice::pipeline::Totals;

use super::shared::produce_sim;
use super::{LATENESS_SECS, assert_exactly_once_in, shared_broker, unique_topic};

const TOKEN: &str = "fleet-admin-token-0123456789";

/// One `sluice run` of the fleet, in this process, with its admin API.
struct Member {
    admin: AdminClient,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<Totals>>,
}

impl Member {
    async fn start(url: &str, broker: &str, topic: &str, cache: &Path) -> Member {
        let mut config = crate::azurite::azure_config(url, cache, Vec::new());
        config.kafka.brokers = broker.into();
        config.kafka.topic = topic.into();
        config.kafka.group = format!("{topic}-group");
        config.kafka.share_partitions = true;
        config.lateness.allowed_secs = LATENESS_SECS as u64;
        config.batch.max_events = 500;
        config.admin.listen = "127.0.0.1:0".into();
        config.admin.token = Some(TOKEN.into());
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let ready = move |ready| {
                let _ = ready_tx.send(ready);
            };
            sluice::service::run(&config, stop_rx, ready, |_| {}).await
        });
        let ready: sluice::service::Ready = ready_rx.await.expect("the instance started");
        let admin_url = format!("http://{}", ready.admin.unwrap());
        Member {
            admin: AdminClient::new(&admin_url, TOKEN),
            stop,
            task,
        }
    }

    async fn status(&self) -> Status {
        self.admin.get("/v1/plugins").await.unwrap()
    }

    async fn deploy(&self, layer: &str, wasm: &str, shadow: bool) -> Change {
        use base64::Engine as _;
        let request = DeployRequest {
            wasm_base64: base64::engine::general_purpose::STANDARD
                .encode(std::fs::read(wasm).unwrap()),
            shadow,
            fixtures: None,
        };
        let path = format!("/v1/plugins/{layer}/deploy");
        self.admin.post(&path, &request).await.unwrap()
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task
            .await
            .unwrap()
            .expect("the instance stopped cleanly");
    }
}

/// `layer`'s active plugin (`name@version`) and shadow candidate, as the
/// instance itself reports them.
fn layer_of(status: &Status, layer: &str) -> (String, bool) {
    let l = status.layers.iter().find(|l| l.layer == layer).unwrap();
    (format!("{}@{}", l.name, l.version), l.shadow.is_some())
}

/// Polls `check` until it holds, or fails naming `what`.
async fn until<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within a minute");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What `sluice status` prints for the lake at `url` on Azurite.
fn status_report(url: &str) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["status", "--lake", url])
        .env("SLUICE_LAKE_OPTIONS__AZURE_STORAGE_USE_EMULATOR", "true")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_change_through_one_instance_reaches_the_fleet() {
    let Some(broker) = shared_broker() else {
        return;
    };
    if crate::azurite::service("AZURITE_BLOB_STORAGE_URL", "Azurite").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("fleetplugins");
    let url = crate::azurite::lake_url();
    let mut lines = produce_sim(&broker, &topic, 51, 3_000);
    let a = Member::start(&url, &broker, &topic, &dir.path().join("a")).await;
    let b = Member::start(&url, &broker, &topic, &dir.path().join("b")).await;
    until("both instances list each other", || async {
        a.status().await.instances.len() == 2 && b.status().await.instances.len() == 2
    })
    .await;
    let (embedded, _) = layer_of(&a.status().await, "silver");

    // Deployed through `a`: `b` runs it too, and both say so in the list.
    let deployed = a
        .deploy("silver", env!("SLUICE_PLUGIN_SILVER_NEXT"), false)
        .await;
    let next = format!("{}@{}", deployed.name, deployed.version);
    assert_ne!(next, embedded);
    until("b follows a's deploy", || async {
        layer_of(&b.status().await, "silver").0 == next
    })
    .await;
    until("the list shows the deploy on both", || async {
        let instances = b.status().await.instances;
        instances.len() == 2
            && instances.iter().all(|i| {
                i.layers
                    .iter()
                    .any(|l| l.layer == "silver" && l.plugin == next)
            })
    })
    .await;
    lines.extend(produce_sim(&broker, &topic, 52, 2_000));

    // A shadow run started through `b` runs on `a`; stopped through `a`,
    // it stops on `b`.
    b.deploy("silver", env!("SLUICE_PLUGIN_SILVER_STRICT"), true)
        .await;
    until("a follows b's shadow run", || async {
        layer_of(&a.status().await, "silver").1
    })
    .await;
    let _: Option<serde_json::Value> = a.admin.delete("/v1/plugins/silver/shadow").await.unwrap();
    until("b stops the shadow run a stopped", || async {
        !layer_of(&b.status().await, "silver").1
    })
    .await;

    // Rolled back through `b`: `a` goes back to the embedded plugin.
    let _: Change = b
        .admin
        .post("/v1/plugins/silver/rollback", &serde_json::json!({}))
        .await
        .unwrap();
    until("a follows b's rollback", || async {
        layer_of(&a.status().await, "silver").0 == embedded
    })
    .await;

    // `sluice status`, from anywhere that reads the lake, lists what each
    // live instance runs.
    let ids: Vec<String> = a
        .status()
        .await
        .instances
        .into_iter()
        .map(|i| i.instance)
        .collect();
    assert_eq!(ids.len(), 2);
    until("sluice status lists what both run", || async {
        let report = status_report(&url);
        let running: Vec<&str> = report
            .lines()
            .skip_while(|l| !l.starts_with("plugins running"))
            .skip(1)
            .collect();
        ids.iter().all(|id| {
            running
                .iter()
                .any(|l| l.starts_with(id.as_str()) && l.contains(&format!("silver {embedded}")))
        })
    })
    .await;

    // One history, in one order, naming who did what.
    let history = a.status().await.history;
    let actions: Vec<Action> = history.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [
            Action::Deploy,
            Action::Shadow,
            Action::ShadowStop,
            Action::Rollback
        ],
        "{history:?}"
    );
    assert_ne!(history[0].instance, history[1].instance, "{history:?}");
    assert_eq!(history[0].instance, history[2].instance, "{history:?}");
    assert_eq!(b.status().await.history.len(), history.len());

    lines.extend(produce_sim(&broker, &topic, 53, 2_000));
    let lake = sluice::lake::Lake::open_root(Path::new(&url), &crate::azurite::emulator_options())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let have = crate::common::count_in(&lake, "SELECT COUNT(*) FROM bronze_events").await;
        if have as usize >= lines.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bronze holds {have} of {}",
            lines.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    b.stop().await;
    a.stop().await;
    assert_exactly_once_in(&lake, &lines).await;
}
