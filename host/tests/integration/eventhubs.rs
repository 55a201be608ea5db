//! Live test against Azure Event Hubs through its Kafka endpoint: runs when
//! `EVENTHUBS_CONNECTION_STRING` and `EVENTHUBS_HUB` are set, and prints why it
//! skipped otherwise (a cloud service cannot be started by `.ci/run`).

use std::process::Command;
use std::time::Duration;

use crate::common;
use crate::kafka::{Sim, sluice_run, terminate, wait_for_bronze, watch};

/// `(namespace host, hub)` from the environment, or why the test skips.
fn live_hub() -> Result<(String, String), String> {
    let conn = std::env::var("EVENTHUBS_CONNECTION_STRING")
        .map_err(|_| "EVENTHUBS_CONNECTION_STRING is not set".to_string())?;
    let hub = std::env::var("EVENTHUBS_HUB")
        .map_err(|_| "EVENTHUBS_HUB (the event hub's name) is not set".to_string())?;
    let host = conn
        .split(';')
        .find_map(|part| part.trim().strip_prefix("Endpoint=sb://"))
        .map(|h| h.trim_end_matches('/').to_string())
        .ok_or("the connection string has no Endpoint=sb://…")?;
    Ok((host, hub))
}

/// The `[kafka]` security settings for the Event Hubs endpoint, as env.
fn sasl(cmd: &mut Command) -> &mut Command {
    cmd.env("SLUICE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
        .env("SLUICE_KAFKA__SASL_MECHANISM", "PLAIN")
        .env("SLUICE_KAFKA__SASL_USERNAME", "$ConnectionString")
        .env(
            "SLUICE_KAFKA__SASL_PASSWORD_ENV",
            "EVENTHUBS_CONNECTION_STRING",
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_event_hubs_kafka_endpoint_round_trip() {
    let (host, hub) = match live_hub() {
        Ok(found) => found,
        Err(reason) => {
            eprintln!("skipping the live Event Hubs (Kafka endpoint) test: {reason}");
            return;
        }
    };
    let broker = format!("{host}:9093");
    let sim = Sim {
        seed: uuid::Uuid::new_v4().as_u128() as u64,
        events: 2_000,
        faults: 0.0,
    };
    // Event Hubs creates hubs in the portal, not through Kafka admin calls.
    let mut produce = sim.command(&broker, &hub, 0);
    let output = sasl(&mut produce).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut run = sluice_run(&lake, &broker, &hub, 5_000);
    run.env("SLUICE_KAFKA__GROUP", "$Default");
    let mut child = sasl(&mut run).spawn().unwrap();
    let _watch = watch(&mut child, "eventhubs");
    wait_for_our_events(&lake, &sim).await;
    terminate(child);
}

/// The hub may hold older events too: waits for at least `sim`'s count in
/// bronze, then until each of its events is in silver (5 minutes at most).
pub async fn wait_for_our_events(lake: &std::path::Path, sim: &Sim) {
    wait_for_bronze(lake, sim.events as usize, Duration::from_secs(300)).await;
    let ids: Vec<String> = sim
        .lines()
        .iter()
        .filter_map(|l| common::parse(l).map(|e| format!("'{}'", e.id)))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let found = common::count(
            lake,
            &format!(
                "SELECT COUNT(*) FROM silver_events WHERE event_id IN ({})",
                ids.join(",")
            ),
        )
        .await as usize;
        if found == ids.len() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{found} of {} events arrived",
            ids.len()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
