//! Live test of the Event Hubs AMQP source: `sluice simulate --to
//! eventhubs://…` then `sluice run` with `[eventhubs]`. Runs when
//! `EVENTHUBS_CONNECTION_STRING` and `EVENTHUBS_HUB` are set and prints why
//! it skipped otherwise (a cloud service cannot be started by `.ci/run`).

use std::process::Command;

use crate::kafka::{Sim, sluice_run, terminate, watch};

/// `sluice simulate --to eventhubs://<hub>` for `sim`'s settings.
fn simulate(sim: &Sim, hub: &str) -> Command {
    let c = sim.config();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("simulate")
        .args(["--to", &format!("eventhubs://{hub}")])
        .args(["--seed", &c.seed.to_string()])
        .args(["--events", &c.events.to_string()])
        .args(["--accounts", &c.accounts.to_string()])
        .args(["--users-per-account", &c.users_per_account.to_string()])
        .args(["--days", &c.days.to_string()]);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_event_hubs_amqp_round_trip() {
    let hub = match (
        std::env::var("EVENTHUBS_CONNECTION_STRING"),
        std::env::var("EVENTHUBS_HUB"),
    ) {
        (Ok(_), Ok(hub)) => hub,
        _ => {
            eprintln!(
                "skipping the live Event Hubs (AMQP) test: \
                 EVENTHUBS_CONNECTION_STRING and EVENTHUBS_HUB are not both set"
            );
            return;
        }
    };
    let sim = Sim {
        seed: uuid::Uuid::new_v4().as_u128() as u64,
        events: 2_000,
        faults: 0.0,
    };
    let output = simulate(&sim, &hub).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // The Kafka source stays off (no brokers); the hub is read over AMQP,
    // with checkpoints in Azurite when `.ci/run` (or a developer) started it.
    let mut run = sluice_run(&lake, "", "unused", 5_000);
    run.env("SLUICE_EVENTHUBS__HUB", &hub);
    if let Ok(blob) = std::env::var("SLUICE_TEST_AZURITE_BLOB") {
        run.env("SLUICE_EVENTHUBS__CHECKPOINT_URL", blob)
            .env(
                "SLUICE_EVENTHUBS__CHECKPOINT_CONTAINER",
                format!("live-{}", uuid::Uuid::new_v4().simple()),
            )
            .env(
                "SLUICE_EVENTHUBS__CHECKPOINT_KEY_ENV",
                "SLUICE_TEST_AZURITE_KEY",
            )
            .env(
                "SLUICE_TEST_AZURITE_KEY",
                crate::checkpoint_store::AZURITE_KEY,
            );
    }
    let mut child = run.spawn().unwrap();
    let _watch = watch(&mut child, "eventhubs-amqp");
    crate::eventhubs::wait_for_our_events(&lake, &sim).await;
    terminate(child);
}
