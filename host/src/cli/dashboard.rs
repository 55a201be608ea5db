//! `sluice dashboard`: serves the web dashboard over a lake, read-only,
//! beside a running `sluice run` or on a lake at rest (the demo's), until
//! Ctrl-C or SIGTERM, or for `--for-secs` seconds.

use std::process::ExitCode;
use std::time::Duration;

use sluice::config::{Config, DASHBOARD_LISTEN};

#[derive(clap::Args)]
pub struct DashboardArgs {
    /// Address to serve on (overrides `dashboard.listen`; loopback only).
    #[arg(long)]
    listen: Option<String>,
    /// Stop after this many seconds (scripts and tests); default: run until stopped.
    #[arg(long)]
    for_secs: Option<u64>,
}

pub async fn run(
    config: &Config,
    lake: sluice::lake::Lake,
    args: &DashboardArgs,
) -> anyhow::Result<ExitCode> {
    let mut listen = args
        .listen
        .clone()
        .unwrap_or_else(|| config.dashboard.listen.clone());
    if listen.is_empty() {
        // Off for `sluice run` is not off when asked for by name.
        listen = DASHBOARD_LISTEN.to_string();
    }
    sluice::config::DashboardConfig {
        listen: listen.clone(),
    }
    .validate(&[])?;
    let listener = sluice::web::bind(&listen)
        .await
        .map_err(|e| anyhow::anyhow!("dashboard.listen: cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let mut stop = sluice::service::stop_on_signals();
    let for_secs = args.for_secs;
    let shutdown = async move {
        let limit = async {
            match for_secs {
                Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {}
            () = limit => {}
        }
    };
    eprintln!("sluice: dashboard on http://{addr}/ (read-only; Ctrl-C stops it)");
    sluice::web::serve(
        listener,
        lake,
        (config.registry_dir(), config.lake_options.clone()),
        sluice::web::Live::default(),
        shutdown,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}
