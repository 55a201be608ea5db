//! `sluice maintain`: one maintenance round over every table of the lake
//! (compaction, checkpoint, vacuum), printing files and bytes per table
//! before and after.

use std::process::ExitCode;
use std::time::Duration;

use sluice::config::Config;
use sluice::lake::{Compaction, Policy, Round, TableReport};

#[derive(clap::Args)]
pub struct MaintainArgs {
    /// Vacuum files removed longer ago than this many hours (overrides
    /// `maintenance.vacuum_retention_hours`).
    #[arg(long)]
    retention_hours: Option<u64>,
    /// Accept a retention below the one-hour floor. Only for a lake no
    /// reader uses meanwhile (tests): readers of older versions lose files.
    #[arg(long)]
    force_retention: bool,
    /// Also compact the tables a running host rewrites (gold). Only while
    /// no `sluice run` writes this lake: nothing orders a rewrite in another
    /// process against a compaction. Without it, gold tables are
    /// checkpointed and vacuumed, and compacted by `sluice run` itself.
    #[arg(long)]
    offline: bool,
}

/// The round these arguments and `config` ask for.
fn policy(config: &Config, args: &MaintainArgs) -> Policy {
    let mut policy = config.maintenance.policy();
    if let Some(hours) = args.retention_hours {
        policy.retention = Duration::from_secs(hours.saturating_mul(3_600));
    }
    policy.force_retention = args.force_retention;
    if !args.offline {
        policy.compact_only = Some(sluice::service::appended_tables());
    }
    policy
}

pub async fn run(config: &Config, args: &MaintainArgs) -> anyhow::Result<ExitCode> {
    let lake = super::open_lake(config).await?;
    let round = lake.maintain(&policy(config, args)).await?;
    print_round(&round);
    for e in &round.failures {
        eprintln!("error: {e}");
    }
    Ok(if round.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_round(round: &Round) {
    println!(
        "{:<24} {:>15} {:>15} {:>23} {:>8} {:>10}  compaction",
        "table", "live files", "stored files", "bytes", "vacuumed", "checkpoint"
    );
    for t in &round.tables {
        print_table(t);
    }
    let before: u64 = round.tables.iter().map(|t| t.before.bytes()).sum();
    let after: u64 = round.tables.iter().map(|t| t.after.bytes()).sum();
    let files = |f: fn(&TableReport) -> usize| round.tables.iter().map(f).sum::<usize>();
    println!(
        "lake: {} -> {} stored data files, {} -> {}",
        files(|t| t.before.data_files),
        files(|t| t.after.data_files),
        human(before),
        human(after)
    );
}

fn print_table(t: &TableReport) {
    let compaction = match &t.compaction {
        Compaction::NotAsked => "not asked (--offline compacts it)".to_string(),
        Compaction::Done { removed: 0, .. } => "nothing to compact".to_string(),
        Compaction::Done { removed, added } => format!("{removed} files into {added}"),
        Compaction::Conflict(e) => format!("lost a conflict, next round: {e}"),
    };
    let checkpoint = t.checkpoint.map_or("-".to_string(), |v| format!("v{v}"));
    println!(
        "{:<24} {:>15} {:>15} {:>23} {:>8} {:>10}  {compaction}",
        t.table,
        format!("{} -> {}", t.live_files.0, t.live_files.1),
        format!("{} -> {}", t.before.data_files, t.after.data_files),
        format!("{} -> {}", human(t.before.bytes()), human(t.after.bytes())),
        t.vacuumed,
        checkpoint,
    );
}

/// Bytes as B, KiB, MiB or GiB with one decimal.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn sizes_read_like_sizes() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
