//! `sluice demo`: simulated usage → pipeline → report, in one process, with
//! no configuration. The README's first command.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use sluice::config::Config;
use sluice_simulator::Simulator;

use super::simulate::{SimulateArgs, write_file};

/// Marks a lake as the demo's own, so a rerun may wipe it.
const DEMO_MARKER: &str = ".sluice-demo";

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Events to simulate.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Fraction of duplicates, and half of it late, a quarter malformed.
    #[arg(long, default_value_t = 0.02)]
    faults: f64,
}

impl DemoArgs {
    fn simulation(&self) -> SimulateArgs {
        SimulateArgs {
            events: self.events,
            seed: self.seed,
            accounts: 400,
            users_per_account: 5,
            days: 28,
            duplicate_fraction: self.faults,
            late_fraction: self.faults / 2.0,
            malformed_fraction: self.faults / 4.0,
            to: "-".into(),
            rate: 0.0,
            request_events: 1_000,
            in_flight: 8,
            partitions: 4,
        }
    }
}

pub async fn run(
    mut config: Config,
    lake_given: bool,
    args: &DemoArgs,
) -> anyhow::Result<ExitCode> {
    let sim = args.simulation();
    prepare_lake(&config.lake, lake_given)?;
    let events_file = config
        .lake
        .parent()
        .unwrap_or(Path::new("."))
        .join("demo-events.ndjson");
    eprintln!(
        "sluice demo: simulating {} events into {}",
        sim.events,
        events_file.display()
    );
    write_file(
        &events_file,
        Simulator::new(sim.sim_config())?,
        0.0,
        sim.events,
    )?;
    config.replay = vec![events_file];
    config.collector.listen = String::new();
    // The demo ends by itself; `sluice dashboard` shows its lake afterwards.
    config.dashboard.listen = String::new();
    let bar = ProgressBar::new(sim.events);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} pipeline {wide_bar} {pos}/{len} events ({per_sec})",
        )
        .expect("valid progress template"),
    );
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let started = std::time::Instant::now();
    let totals = sluice::service::run(&config, stop, |_| {}, |r| bar.inc(r.events as u64)).await?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "Processed {} events in {} batches in {secs:.1}s ({:.0} events/s): {} accepted, quarantined: {:?}",
        totals.events,
        totals.batches,
        totals.events as f64 / secs,
        totals.accepted,
        totals.quarantined
    );
    let lake = sluice::lake::Lake::local(&config.lake)?;
    println!("{}", sluice::query::report(&lake).await?);
    println!("Query the lake yourself: sluice query \"select count(*) from silver_events\"");
    println!(
        "See it in a browser: sluice dashboard (then open http://{}/; Ctrl-C ends it)",
        sluice::config::DASHBOARD_LISTEN
    );
    Ok(ExitCode::SUCCESS)
}

/// Starts from an empty lake: wipes a previous demo's lake, refuses to touch
/// one with other data.
fn prepare_lake(lake: &Path, lake_given: bool) -> anyhow::Result<()> {
    let has_data = lake.is_dir() && std::fs::read_dir(lake)?.next().is_some();
    if has_data {
        if !lake.join(DEMO_MARKER).exists() {
            let hint = if lake_given {
                ""
            } else {
                " (pass --lake to use another directory)"
            };
            bail!(
                "{} holds data the demo did not write; not touching it{hint}",
                lake.display()
            );
        }
        std::fs::remove_dir_all(lake).with_context(|| format!("clearing {}", lake.display()))?;
    }
    std::fs::create_dir_all(lake)?;
    std::fs::write(
        lake.join(DEMO_MARKER),
        "written by `sluice demo`; the next demo may wipe this lake\n",
    )?;
    Ok(())
}
