//! `sluice warehouse init|load`: apply the warehouse DDL, or load gold once.

use std::process::ExitCode;

use anyhow::Context as _;
use sluice::config::Config;
use sluice::sinks::warehouse::Loader;

#[derive(clap::Subcommand)]
pub enum WarehouseCommand {
    /// Create the warehouse schema, tables and load state (idempotent).
    Init,
    /// Load what changed in gold since the last load, once.
    Load,
}

async fn loader(config: &Config) -> anyhow::Result<Loader> {
    // Refuse a missing kind or connection before compiling any plugin.
    config
        .warehouse
        .dialect()?
        .context("no warehouse configured: set [warehouse] kind = \"postgres\" or \"synapse\"")?;
    config.warehouse.connection()?;
    // The gold tables of the active gold plugin, deployed ones included.
    let plugins = sluice::service::active_plugins(config).await?;
    sluice::service::warehouse_loader(config, plugins.gold.meta())?
        .context("no warehouse configured: set [warehouse] kind = \"postgres\" or \"synapse\"")
}

pub async fn run(config: Config, command: &WarehouseCommand) -> anyhow::Result<ExitCode> {
    let mut loader = loader(&config).await?;
    match command {
        WarehouseCommand::Init => {
            loader.init().await?;
            eprintln!("sluice: warehouse schema ready");
        }
        WarehouseCommand::Load => {
            let lake = sluice::service::open_lake(&config).await?;
            loader.init().await?;
            let loads = loader.load(&lake).await?;
            for l in &loads {
                println!(
                    "{}: version {} -> {}, {} rows upserted, {} deleted",
                    l.table, l.from_version, l.to_version, l.upserted, l.deleted
                );
            }
            if loads.is_empty() {
                println!("nothing new to load");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
