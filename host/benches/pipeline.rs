//! End-to-end benchmark: N simulated events from an NDJSON file through
//! bronze → silver → gold (Wasm plugins, Delta tables), then each layer's
//! plugin timed in Wasm against the same crate compiled natively.
//!
//! `cargo bench -p sluice --bench pipeline -- [--events N] [--batch N]`
//! Prints figures; asserts nothing about speed. With the DuckDB anchor
//! installed (`../shared/anchors/README.md`; `SLUICE_ANCHOR_PYTHON` names its
//! Python, default `/tmp/anchor-venv/bin/python`), it runs the anchor on the
//! same file right after and prints the ratios.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use deltalake::arrow::array::RecordBatch;
use sluice::config::Config;
use sluice::layers::{bronze, silver};
use sluice::runtime::{Layer, Limits, Runtime, embedded};
use sluice_plugin_sdk::Plugin;

// The allocator the `sluice` binary runs with, so the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    events: u64,
    batch: usize,
    layer_sample: usize,
    /// Run the DuckDB anchor beside (`--anchor false` to skip it).
    anchor: bool,
}

fn args() -> Args {
    let mut a = Args {
        events: 2_000_000,
        batch: Config::default().batch.max_events,
        layer_sample: 100_000,
        anchor: true,
    };
    let argv: Vec<String> = std::env::args().collect();
    for pair in argv.windows(2) {
        match pair[0].as_str() {
            "--events" => a.events = pair[1].parse().expect("--events N"),
            "--batch" => a.batch = pair[1].parse().expect("--batch N"),
            "--layer-sample" => a.layer_sample = pair[1].parse().expect("--layer-sample N"),
            "--anchor" => a.anchor = pair[1].parse().expect("--anchor true|false"),
            _ => {}
        }
    }
    a
}

/// (user+system CPU seconds, peak RSS in MiB) of this process so far.
fn cpu_and_peak_rss() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm_kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    (ticks / 100.0, hwm_kb / 1024.0)
}

/// Starts the peak RSS over from the current RSS (Linux: `5` into
/// `/proc/self/clear_refs`), so generating the events does not count.
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        println!("(peak RSS not reset: {e}; it includes generating the events)");
    }
}

fn main() {
    let args = args();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("events.ndjson");
    let sim = sluice_simulator::SimConfig {
        events: args.events,
        accounts: 2_000,
        users_per_account: 5,
        days: 7,
        duplicate_fraction: 0.01,
        late_fraction: 0.005,
        malformed_fraction: 0.005,
        ..Default::default()
    };
    let started = Instant::now();
    let lines: Vec<String> = sluice_simulator::Simulator::new(sim)
        .expect("sim")
        .map(|e| e.line)
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").expect("write events");
    println!(
        "generated {} events ({:.0} MiB) in {:.1?}",
        lines.len(),
        std::fs::metadata(&file).unwrap().len() as f64 / 1048576.0,
        started.elapsed()
    );
    // Only a sample stays in memory: the peak RSS measured is the pipeline's.
    let sample = lines[..args.layer_sample.min(lines.len())].to_vec();
    drop(lines);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut config = Config {
        lake: dir.path().join("lake"),
        cache_dir: Some(dir.path().join("cache")),
        replay: vec![file.clone()],
        ..Default::default()
    };
    config.collector.listen = String::new();
    config.batch.max_events = args.batch;
    // Compile the plugins into the cache first: a running service does that
    // once, at its first start.
    rt.block_on(sluice::service::open_pipeline(&config))
        .expect("warm-up");
    std::fs::remove_dir_all(&config.lake).expect("reset the lake");
    reset_peak_rss();
    let (cpu0, _) = cpu_and_peak_rss();
    let started = Instant::now();
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let totals = rt
        .block_on(sluice::service::run(&config, stop, |_| {}, |_| {}))
        .expect("pipeline run");
    let wall = started.elapsed().as_secs_f64();
    let (cpu1, rss) = cpu_and_peak_rss();
    println!(
        "\n== end to end (file → bronze → silver → gold, Delta on local disk, batch {})",
        args.batch
    );
    println!("events            {}", totals.events);
    println!("accepted          {}", totals.accepted);
    println!("quarantined       {:?}", totals.quarantined);
    println!("wall              {wall:.2} s");
    println!(
        "throughput        {:.0} events/s",
        totals.events as f64 / wall
    );
    println!(
        "CPU               {:.2} s ({:.2} cores busy)",
        cpu1 - cpu0,
        (cpu1 - cpu0) / wall
    );
    println!("peak RSS          {rss:.0} MiB");
    if args.anchor {
        anchor_beside(dir.path(), wall, cpu1 - cpu0, rss);
    }

    layers_wasm_vs_native(&sample);
}

/// Runs the DuckDB medallion anchor on the same events file (the only
/// `.ndjson` in `dir`) under `/usr/bin/time -v` and prints both side by side.
fn anchor_beside(dir: &std::path::Path, wall: f64, cpu: f64, rss_mib: f64) {
    let python = std::env::var("SLUICE_ANCHOR_PYTHON")
        .unwrap_or_else(|_| "/tmp/anchor-venv/bin/python".into());
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/anchors/duckdb_medallion.py");
    if !std::path::Path::new(&python).exists() || !script.exists() {
        println!(
            "\n(anchor skipped: {python} or {} is missing)",
            script.display()
        );
        return;
    }
    let work = dir.join("duckdb-work");
    let output = std::process::Command::new("/usr/bin/time")
        .arg("-v")
        .arg(&python)
        .arg(&script)
        .args(["--threads", "2", "--input"])
        .arg(dir)
        .arg("--work")
        .arg(&work)
        .output()
        .expect("running the anchor");
    let report = String::from_utf8_lossy(&output.stderr);
    let field = |name: &str| -> f64 {
        report
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    let a_wall = wall_seconds(&report);
    let a_cpu = field("User time (seconds):") + field("System time (seconds):");
    let a_rss = field("Maximum resident set size (kbytes):") / 1024.0;
    println!("\n== side by side with the DuckDB anchor (same file, same run)");
    println!(
        "{:<10} {:>9} {:>9} {:>11}",
        "", "wall s", "CPU s", "peak MiB"
    );
    println!("{:<10} {wall:>9.2} {cpu:>9.2} {rss_mib:>11.0}", "sluice");
    println!("{:<10} {a_wall:>9.2} {a_cpu:>9.2} {a_rss:>11.0}", "duckdb");
    println!(
        "{:<10} {:>9.2} {:>9.2} {:>11.2}",
        "ratio",
        wall / a_wall,
        cpu / a_cpu,
        rss_mib / a_rss
    );
    if !output.status.success() {
        println!(
            "(the anchor failed: {})",
            report.lines().last().unwrap_or("")
        );
    }
}

/// "Elapsed (wall clock) time (h:mm:ss or m:ss): 0:10.91" in seconds.
fn wall_seconds(time_report: &str) -> f64 {
    let Some(value) = time_report
        .lines()
        .find(|l| l.contains("Elapsed (wall clock)"))
        .and_then(|l| l.rsplit(' ').next())
    else {
        return f64::NAN;
    };
    value.split(':').fold(0.0, |acc, part| {
        acc * 60.0 + part.parse::<f64>().unwrap_or(f64::NAN)
    })
}

fn time<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    // Best of three, after one warm-up.
    let mut out = f();
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        out = f();
        best = best.min(t.elapsed());
    }
    (best, out)
}

fn layers_wasm_vs_native(lines: &[String]) {
    let runtime = Runtime::new(None).expect("runtime");
    let limits = Limits {
        memory_bytes: 4 << 30,
        batch_timeout: Duration::from_secs(600),
    };
    let load = |l| {
        runtime
            .load(embedded::default_plugin(l), limits)
            .expect("plugin")
    };
    let (b, s, g) = (load(Layer::Bronze), load(Layer::Silver), load(Layer::Gold));
    let records: Vec<_> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| sluice::sources::RawRecord {
            payload: bytes::Bytes::from(l.clone()),
            source: "bench".into(),
            partition: "p".into(),
            offset: i as i64,
        })
        .collect();
    // Ingested now: an ingest time of 0 (1970) would quarantine every
    // event as stamped in the future, and gold would get no rows.
    let raw = bronze::raw_input(&records, sluice::time::now_micros());
    let (bronze_wasm, out) = time(|| b.transform(&raw).expect("bronze"));
    let (bronze_native, _) = time(|| native::<sluice_plugin_bronze::Bronze>(&raw));
    let bronze_rows = bronze::to_stored(&out[bronze::TABLE], 1, "bench");
    let (silver_wasm, out) = time(|| s.transform(&bronze_rows).expect("silver"));
    let (silver_native, _) = time(|| native::<sluice_plugin_silver::Silver>(&bronze_rows));
    // Nothing is late: gold gets every accepted event of the batch.
    let mut dedup = silver::DedupState::new(i64::MAX, silver::DEFAULT_MAX_FUTURE_MICROS);
    let input = bronze::RawColumns::new(&bronze_rows).expect("bronze columns");
    let (accepted, _) =
        silver::deduplicate(&mut dedup, &out[silver::TABLE], &input).expect("dedup");
    let silver_rows = silver::to_stored(&accepted, &bronze_rows, "bench").expect("stored");
    assert!(
        silver_rows.num_rows() > lines.len() * 9 / 10,
        "gold is measured on the batch's events: {} of {} reach it",
        silver_rows.num_rows(),
        lines.len()
    );
    let (gold_wasm, _) = time(|| g.transform(&silver_rows).expect("gold"));
    let (gold_native, _) = time(|| native::<sluice_plugin_gold::Gold>(&silver_rows));
    println!(
        "\n== per layer, {} events per batch (IPC in and out included on both sides)",
        lines.len()
    );
    println!(
        "{:<8} {:>12} {:>12} {:>14} {:>8}",
        "layer", "wasm", "native", "wasm events/s", "ratio"
    );
    for (name, w, n) in [
        ("bronze", bronze_wasm, bronze_native),
        ("silver", silver_wasm, silver_native),
        ("gold", gold_wasm, gold_native),
    ] {
        println!(
            "{name:<8} {:>10.1}ms {:>10.1}ms {:>14.0} {:>7.2}x",
            w.as_secs_f64() * 1e3,
            n.as_secs_f64() * 1e3,
            lines.len() as f64 / w.as_secs_f64(),
            w.as_secs_f64() / n.as_secs_f64()
        );
    }
}

/// The same plugin crate, compiled natively, through the same IPC path.
fn native<P: Plugin>(input: &RecordBatch) -> BTreeMap<String, usize> {
    let ipc = sluice_plugin_sdk::ipc::write_batch(input).expect("ipc");
    sluice_plugin_sdk::run_ipc::<P>(&ipc)
        .expect("native transform")
        .into_iter()
        .map(|t| {
            let rows = sluice_plugin_sdk::ipc::read_single(&t.ipc)
                .expect("ipc")
                .num_rows();
            (t.table, rows)
        })
        .collect()
}
