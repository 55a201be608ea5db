//! `sluice status`: per source partition, the position committed in the lake
//! and, for Kafka, the broker's high watermark and the lag between them.

use std::process::ExitCode;

use sluice::config::Config;
use sluice::pipeline::shared::lake_positions;
use sluice::sources::kafka;

pub async fn run(config: &Config, lake: &sluice::lake::Lake) -> anyhow::Result<ExitCode> {
    let positions = lake_positions(lake).await?;
    if config.kafka.enabled() {
        let k = config.kafka.clone();
        let marks = tokio::task::spawn_blocking(move || kafka::watermarks(&k)).await??;
        println!(
            "kafka topic {} on {}",
            config.kafka.topic, config.kafka.brokers
        );
        println!(
            "{:>9}  {:>12}  {:>14}  {:>10}",
            "partition", "committed", "high watermark", "lag"
        );
        let mut total = 0;
        for (id, (low, high)) in &marks {
            let name = kafka::partition_name(&config.kafka.topic, *id);
            let committed = positions.get(&(kafka::SOURCE.to_string(), name)).copied();
            let lag = kafka::lag(committed, *low, *high);
            total += lag;
            let shown = committed.map_or("-".to_string(), |c| c.to_string());
            println!("{id:>9}  {shown:>12}  {high:>14}  {lag:>10}");
        }
        println!("total lag: {total} events");
    }
    let others: Vec<_> = positions
        .iter()
        .filter(|((source, _), _)| source != kafka::SOURCE)
        .collect();
    if !others.is_empty() {
        println!("other sources: {} partitions committed", others.len());
    }
    Ok(ExitCode::SUCCESS)
}
