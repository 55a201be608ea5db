//! `sluice-sim`: writes a simulated SaaS usage stream as NDJSON to stdout or a file.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Parser;
use sluice_simulator::{EventKind, SimConfig, Simulator};

/// Generate deterministic SaaS product-usage events (NDJSON).
#[derive(Parser, Debug)]
#[command(name = "sluice-sim", version)]
struct Args {
    /// Seed of all randomness; same seed and flags ⇒ same output.
    #[arg(long, default_value_t = SimConfig::default().seed)]
    seed: u64,
    /// Lines to write, all kinds counted.
    #[arg(long, default_value_t = SimConfig::default().events)]
    events: u64,
    #[arg(long, default_value_t = SimConfig::default().accounts)]
    accounts: u32,
    #[arg(long, default_value_t = SimConfig::default().users_per_account)]
    users_per_account: u32,
    /// Event time the simulation starts at (RFC 3339).
    #[arg(long, value_parser = parse_start, default_value = "2026-01-05T00:00:00Z")]
    start: DateTime<Utc>,
    /// Simulated days the events spread over.
    #[arg(long, default_value_t = SimConfig::default().days)]
    days: u32,
    #[arg(long, default_value_t = 0.0)]
    duplicate_fraction: f64,
    #[arg(long, default_value_t = 0.0)]
    late_fraction: f64,
    #[arg(long, default_value_t = 0.0)]
    malformed_fraction: f64,
    /// Smallest lateness of a late line, e.g. 250ms, 30s, 1m, 6h.
    #[arg(long, value_parser = parse_duration, default_value = "1m")]
    late_min: Duration,
    /// Largest lateness of a late line.
    #[arg(long, value_parser = parse_duration, default_value = "6h")]
    late_max: Duration,
    /// Output file; stdout when absent.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print no summary on stderr.
    #[arg(long)]
    quiet: bool,
}

impl Args {
    fn config(&self) -> SimConfig {
        SimConfig {
            seed: self.seed,
            events: self.events,
            accounts: self.accounts,
            users_per_account: self.users_per_account,
            start: self.start,
            days: self.days,
            duplicate_fraction: self.duplicate_fraction,
            late_fraction: self.late_fraction,
            malformed_fraction: self.malformed_fraction,
            late_min: self.late_min,
            late_max: self.late_max,
        }
    }
}

fn parse_start(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time: {e}"))
}

/// Parses `<number>[ms|s|m|h|d]`; a bare number is seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {s:?}"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        _ => return Err(format!("unknown unit in {s:?}; use ms, s, m, h or d")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("bad duration {s:?}: {e}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        // `sluice-sim | head` closing the pipe early is not a failure.
        Err(e) if is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut sim = Simulator::new(args.config())?;
    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(File::create(path)?),
        None => Box::new(io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    let started = Instant::now();
    let mut counts = [0u64; 4];
    let mut line = String::with_capacity(512);
    while let Some(kind) = sim.next_line(&mut line) {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        counts[kind_index(kind)] += 1;
    }
    out.flush()?;
    if !args.quiet {
        let secs = started.elapsed().as_secs_f64();
        let total: u64 = counts.iter().sum();
        eprintln!(
            "sluice-sim: {total} lines ({} normal, {} duplicate, {} late, {} malformed) \
             in {secs:.3}s = {:.0} events/s",
            counts[0],
            counts[1],
            counts[2],
            counts[3],
            total as f64 / secs.max(1e-9)
        );
    }
    Ok(())
}

fn kind_index(kind: EventKind) -> usize {
    match kind {
        EventKind::Normal => 0,
        EventKind::Duplicate => 1,
        EventKind::Late => 2,
        EventKind::Malformed(_) => 3,
    }
}
