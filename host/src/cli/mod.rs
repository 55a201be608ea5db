//! Command-line interface: one module per subcommand; errors surface here
//! with their context chain and a non-zero exit.

mod analysis;
mod dashboard;
mod demo;
mod maintain;
mod plugin;
mod simulate;
mod simulate_eventhubs;
mod simulate_kafka;
mod status;
mod warehouse;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sluice::config::{Config, Uses};
use sluice::lake::Lake;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Real-time product-usage analytics with WebAssembly transforms"
)]
struct Cli {
    /// TOML config file (every field has a default; SLUICE_* variables override).
    #[arg(long, global = true, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// Lake directory (overrides the config's `lake`).
    #[arg(long, global = true)]
    lake: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: HTTP collector and/or file replay into the pipeline.
    Run(RunArgs),
    /// Simulate usage, run it through the pipeline, print the report.
    Demo(demo::DemoArgs),
    /// Generate simulated usage events.
    Simulate(simulate::SimulateArgs),
    /// Run SQL over the lake's tables (and the analyses' views) and print the result.
    Query {
        /// The SQL statement, e.g. "select count(*) from silver_events".
        sql: String,
        #[arg(long, value_enum, default_value_t)]
        format: sluice::query::Format,
    },
    /// Answer the business questions from the gold tables.
    Report {
        #[arg(long, value_enum, default_value_t)]
        format: sluice::query::Format,
    },
    /// Print one analysis (retention, stickiness, feature adoption, …), filtered.
    Analysis(analysis::AnalysisArgs),
    /// Serve the web dashboard over the lake, read-only, until Ctrl-C.
    Dashboard(dashboard::DashboardArgs),
    /// Committed position and lag per source partition (Kafka: vs the broker).
    Status,
    /// Work with transform plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Recompute silver (from a point on) and all of gold from bronze with
    /// the active plugins, replacing what earlier versions wrote.
    Replay(ReplayArgs),
    /// Load gold into the configured SQL warehouse.
    #[command(subcommand)]
    Warehouse(warehouse::WarehouseCommand),
    /// One round of table maintenance: compact small files, checkpoint,
    /// vacuum files older than the retention; prints files and bytes.
    Maintain(maintain::MaintainArgs),
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// `silver` (silver from the start point, then gold) or `gold`.
    #[arg(long)]
    layer: sluice::runtime::Layer,
    /// Recompute batches committed at or after this time (RFC 3339).
    #[arg(long, conflicts_with = "from_batch")]
    since: Option<String>,
    /// Recompute from this batch on.
    #[arg(long)]
    from_batch: Option<i64>,
    /// Replay in this process on the lake (no host may be running on it)
    /// instead of asking the running host.
    #[arg(long)]
    offline: bool,
    #[command(flatten)]
    admin: plugin::AdminArgs,
}

#[derive(clap::Args)]
struct RunArgs {
    /// NDJSON files or directories to replay (added to the config's `replay`).
    #[arg(long)]
    replay: Vec<PathBuf>,
    /// Collector address (overrides `collector.listen`; "" disables it).
    #[arg(long)]
    listen: Option<String>,
}

pub fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the async runtime");
    let code = match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // A plugin blocked in a host call past its deadline holds a blocking
    // thread the pipeline stopped waiting for: exit without waiting for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}

/// Default log filter: our info lines; delta-rs and its kernel log expected
/// conditions (a table not created yet, binary columns without stats) loudly.
const QUIET_LOGS: &str = "warn,sluice=info,buoyant_kernel=off,deltalake_core=error";

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(QUIET_LOGS));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Config from file and environment, with CLI overrides, validated in the
/// sections the command `uses` only: a section it never reads cannot stop
/// it (the admin token, say, is `run`'s business, not `query`'s).
fn load_config(cli: &Cli, uses: Uses, adjust: impl FnOnce(&mut Config)) -> anyhow::Result<Config> {
    let mut config = Config::read(cli.config.as_deref(), std::env::vars())?;
    if let Some(lake) = &cli.lake {
        config.lake = lake.clone();
    }
    adjust(&mut config);
    config.validate_for(uses)?;
    Ok(config)
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Run(args) => run(&cli, args).await,
        Command::Demo(args) => {
            // A pipeline run like `run`, on replay files of its own.
            let uses = Uses {
                replay: false,
                ..Uses::ALL
            };
            demo::run(load_config(&cli, uses, |_| {})?, cli.lake.is_some(), args).await
        }
        Command::Simulate(args) => {
            // Sending to Kafka or Event Hubs checks that section itself.
            let config = load_config(&cli, Uses::NOTHING, |_| {})?;
            simulate::run(args, &config.kafka, &config.eventhubs).await
        }
        Command::Query { sql, format } => {
            let lake = open_lake(&load_config(&cli, Uses::LAKE, |_| {})?).await?;
            let batches = sluice::query::sql(&lake, sql).await?;
            print!("{}", sluice::query::render(&batches, *format)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { format } => {
            let lake = open_lake(&load_config(&cli, Uses::LAKE, |_| {})?).await?;
            print!("{}", sluice::query::report_as(&lake, *format).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Analysis(args) => {
            let lake = open_lake(&load_config(&cli, Uses::LAKE, |_| {})?).await?;
            analysis::run(&lake, args).await
        }
        Command::Dashboard(args) => {
            let uses = Uses {
                dashboard: true,
                ..Uses::LAKE
            };
            let config = load_config(&cli, uses, |_| {})?;
            dashboard::run(&config, open_lake(&config).await?, args).await
        }
        Command::Status => {
            let uses = Uses {
                kafka: true,
                eventhubs: true,
                ..Uses::LAKE
            };
            let config = load_config(&cli, uses, |_| {})?;
            status::run(&config, &open_lake(&config).await?).await
        }
        Command::Plugin(command) => {
            plugin::run(load_config(&cli, plugin::uses(command), |_| {})?, command).await
        }
        Command::Replay(args) => replay(&cli, args).await,
        Command::Warehouse(command) => {
            // The warehouse, and the active gold plugin for its tables.
            let uses = Uses {
                plugins: true,
                warehouse: true,
                ..Uses::LAKE
            };
            warehouse::run(load_config(&cli, uses, |_| {})?, command).await
        }
        Command::Maintain(args) => {
            let uses = Uses {
                maintenance: true,
                ..Uses::LAKE
            };
            maintain::run(&load_config(&cli, uses, |_| {})?, args).await
        }
    }
}

async fn open_lake(config: &Config) -> anyhow::Result<Lake> {
    anyhow::ensure!(
        sluice::lake::location::is_url(&config.lake) || config.lake.is_dir(),
        "no lake at {} yet: run `sluice demo` or `sluice run` first",
        config.lake.display()
    );
    sluice::service::open_lake(config).await
}

async fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(cli, Uses::ALL, |c| {
        c.replay.extend(args.replay.iter().cloned());
        if let Some(listen) = &args.listen {
            c.collector.listen = listen.clone();
        }
    })?;
    let stop = sluice::service::stop_on_signals();
    let totals = sluice::service::run(
        &config,
        stop,
        |ready| {
            match ready.collector {
                Some(addr) => eprintln!("sluice: collecting on http://{addr}/v1/events"),
                None => eprintln!("sluice: running with the collector disabled"),
            }
            if let Some(addr) = ready.admin {
                eprintln!("sluice: admin API on http://{addr}");
            }
            if let Some(addr) = ready.metrics {
                eprintln!("sluice: metrics on http://{addr}/metrics");
            }
            if let Some(addr) = ready.dashboard {
                eprintln!("sluice: dashboard on http://{addr}/");
            }
        },
        |report| {
            tracing::info!(
                batch = report.batch,
                events = report.events,
                accepted = report.accepted,
                quarantined = report.quarantined_total(),
                millis = report.millis as u64,
                "batch committed"
            )
        },
    )
    .await?;
    eprintln!(
        "sluice: stopped after {} batches, {} events ({} accepted, {} quarantined)",
        totals.batches,
        totals.events,
        totals.accepted,
        totals.quarantined.values().sum::<u64>()
    );
    Ok(ExitCode::SUCCESS)
}

async fn replay(cli: &Cli, args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let request = sluice::admin::ReplayRequest {
        layer: args.layer.to_string(),
        from_batch: args.from_batch,
        since: args.since.clone(),
    };
    anyhow::ensure!(
        request.from_batch.is_some() || request.since.is_some(),
        "give --since <time> or --from-batch <n>"
    );
    let report: sluice::pipeline::ReplayReport = if args.offline {
        // The pipeline and its plugins, without listening or reading input.
        let uses = Uses {
            listeners: false,
            replay: false,
            ..Uses::ALL
        };
        let config = load_config(cli, uses, |_| {})?;
        let from = match (request.from_batch, &request.since) {
            (Some(b), _) => sluice::lifecycle::ReplayFrom::Batch(b),
            (None, Some(since)) => sluice::lifecycle::ReplayFrom::Time(
                chrono::DateTime::parse_from_rfc3339(since)
                    .context("--since")?
                    .timestamp_micros(),
            ),
            (None, None) => unreachable!("checked above"),
        };
        let (mut pipeline, mut lifecycle, _) =
            sluice::service::open_with_lifecycle(&config).await?;
        lifecycle.replay(&mut pipeline, args.layer, from).await?
    } else {
        sluice::admin::client::AdminClient::from_env(&args.admin.url)?
            .post("/v1/replay", &request)
            .await?
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}
