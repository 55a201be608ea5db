//! `sluice simulate --to kafka://host:port/topic`: produces the simulator's
//! events keyed by `user_id`, so one user's events stay in one partition, in
//! order.

use std::time::Duration;

use anyhow::Context as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice::sources::kafka::{KafkaConfig, ensure_topic};
use sluice_simulator::Simulator;

/// Deliveries in flight before the producer waits for acknowledgements.
const IN_FLIGHT: usize = 10_000;

/// `kafka://host:port/topic` as a [`KafkaConfig`] with the security settings
/// of `security` (the config's `[kafka]` section: plaintext unless set, e.g.
/// SASL_SSL for the Event Hubs Kafka endpoint).
pub fn parse_target(to: &str, security: &KafkaConfig) -> anyhow::Result<KafkaConfig> {
    let rest = to
        .strip_prefix("kafka://")
        .context("a Kafka target looks like kafka://host:port/topic")?;
    let (brokers, topic) = rest
        .split_once('/')
        .filter(|(b, t)| !b.is_empty() && !t.is_empty())
        .context("a Kafka target looks like kafka://host:port/topic")?;
    let config = KafkaConfig {
        brokers: brokers.to_string(),
        topic: topic.to_string(),
        ..security.clone()
    };
    config.validate()?;
    Ok(config)
}

/// The `user_id` of an event line, if it has one.
pub(super) fn user_key(line: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Keyed {
        user_id: Option<serde_json::Value>,
    }
    let keyed: Keyed = serde_json::from_str(line).ok()?;
    match keyed.user_id? {
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// Produces every event and waits until the broker has acknowledged all of
/// them. `partitions` creates the topic first if it is missing.
pub async fn produce(
    config: &KafkaConfig,
    simulator: Simulator,
    partitions: Option<i32>,
    rate: f64,
) -> anyhow::Result<u64> {
    if let Some(n) = partitions {
        ensure_topic(config, n).await?;
    }
    let producer: FutureProducer = config
        .client_config()
        .set("linger.ms", "5")
        .set("enable.idempotence", "false")
        .create()?;
    let start = std::time::Instant::now();
    let mut pending = Vec::with_capacity(IN_FLIGHT);
    let mut sent = 0u64;
    for event in simulator {
        let key = user_key(&event.line);
        let mut record = FutureRecord::to(&config.topic).payload(event.line.as_bytes());
        if let Some(key) = &key {
            record = record.key(key.as_bytes());
        }
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| anyhow::anyhow!("queueing an event for {}: {e}", config.topic))?;
        pending.push(delivery);
        sent += 1;
        if pending.len() >= IN_FLIGHT {
            settle(&mut pending).await?;
        }
        if rate > 0.0 && sent.is_multiple_of(256) {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            tokio::time::sleep(due.saturating_sub(start.elapsed())).await;
        }
    }
    settle(&mut pending).await?;
    Ok(sent)
}

async fn settle(pending: &mut Vec<rdkafka::producer::DeliveryFuture>) -> anyhow::Result<()> {
    for delivery in pending.drain(..) {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => anyhow::bail!("the broker refused an event: {e}"),
            Err(_) => anyhow::bail!("the producer went away before delivering"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_keys() {
        let plain = KafkaConfig::default();
        let c = parse_target("kafka://127.0.0.1:9092/events", &plain).unwrap();
        assert_eq!(
            (c.brokers.as_str(), c.topic.as_str()),
            ("127.0.0.1:9092", "events")
        );
        assert!(parse_target("kafka://127.0.0.1:9092", &plain).is_err());
        assert_eq!(user_key(r#"{"user_id":"u7","x":1}"#).as_deref(), Some("u7"));
        assert_eq!(user_key("not json"), None);
    }
}
