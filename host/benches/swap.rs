//! Swap pause: how long live batches wait while a silver plugin is swapped
//! in (deploy) and out (rollback) at a batch boundary, through the same
//! lifecycle path the admin API uses, against the time of a batch.
//!
//! `cargo bench -p sluice --bench swap -- [--swaps N] [--batch N]`
//! Prints figures; asserts nothing about speed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::config::Config;
use sluice::lifecycle::{Change, Control, Lifecycle, Validator};
use sluice::runtime::{Layer, Runtime};
use sluice::sources::RawRecord;

fn arg(name: &str, default: usize) -> usize {
    let argv: Vec<String> = std::env::args().collect();
    argv.windows(2)
        .find(|p| p[0] == name)
        .map(|p| p[1].parse().expect("a number"))
        .unwrap_or(default)
}

fn records(lines: &[String], first_offset: usize) -> Vec<RawRecord> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| RawRecord {
            payload: bytes::Bytes::from(l.clone()),
            source: "bench".into(),
            partition: "p".into(),
            offset: (first_offset + i) as i64,
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let swaps = arg("--swaps", 20);
    let batch = arg("--batch", 20_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        lake: dir.path().join("lake"),
        ..Default::default()
    };
    let sim = sluice_simulator::SimConfig {
        events: (batch * (swaps * 2 + 1)) as u64,
        ..Default::default()
    };
    let lines: Vec<String> = sluice_simulator::Simulator::new(sim)
        .expect("sim")
        .map(|e| e.line)
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let runtime = Arc::new(Runtime::new(Some(config.cache_dir())).unwrap());
        let validator = Validator::new(runtime, &config);
        let mut lifecycle = Lifecycle::open(validator.clone(), &config).await.unwrap();
        let plugins = lifecycle.load_plugins().await.unwrap();
        let mut pipeline = sluice::service::open_pipeline_with(&config, plugins)
            .await
            .unwrap();
        let next = std::fs::read(env!("SLUICE_PLUGIN_SILVER_NEXT")).unwrap();
        let (mut pauses, mut batches) = (Vec::new(), Vec::new());
        for (i, chunk) in lines.chunks(batch).enumerate() {
            let started = Instant::now();
            pipeline
                .process(records(chunk, i * batch), || {})
                .await
                .unwrap();
            batches.push(started.elapsed());
            if i >= swaps * 2 {
                break;
            }
            let (reply, answer) = tokio::sync::oneshot::channel();
            let control = if i % 2 == 0 {
                let candidate = validator
                    .validate(Layer::Silver, next.clone(), None)
                    .unwrap();
                Control::Deploy {
                    layer: Layer::Silver,
                    candidate,
                    shadow: false,
                    reply,
                }
            } else {
                Control::Rollback {
                    layer: Layer::Silver,
                    reply,
                }
            };
            lifecycle.handle(&mut pipeline, control).await;
            let change: Change = answer.await.unwrap().unwrap();
            pauses.push(Duration::from_micros(change.pause_micros));
        }
        pauses.sort();
        batches.sort();
        let median_batch = percentile(&batches, 0.5);
        println!(
            "{} swaps (deploy/rollback of silver) between batches of {batch} events",
            pauses.len()
        );
        println!(
            "swap pause: median {:?}, p90 {:?}, max {:?}",
            percentile(&pauses, 0.5),
            percentile(&pauses, 0.9),
            pauses.last().unwrap()
        );
        println!(
            "batch time: median {median_batch:?}; median pause / median batch = {:.4}",
            percentile(&pauses, 0.5).as_secs_f64() / median_batch.as_secs_f64()
        );
    });
}
