//! `sluice simulate --to eventhubs://[namespace/]hub`: sends the simulator's
//! events to an Event Hub over AMQP, each user's events to one partition.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use anyhow::Context as _;
use azure_messaging_eventhubs::{EventDataBatchOptions, ProducerClient};
use sluice::sources::eventhubs::{EventHubsConfig, namespace_of};
use sluice_simulator::Simulator;

/// Events buffered per partition before a batch is sent.
const BATCH_EVENTS: usize = 500;

/// `eventhubs://[namespace/]hub` as an [`EventHubsConfig`] whose connection
/// string variable is the one `[eventhubs]` names. A namespace in the target
/// must be the connection string's.
pub fn parse_target(to: &str, base: &EventHubsConfig) -> anyhow::Result<EventHubsConfig> {
    let rest = to
        .strip_prefix("eventhubs://")
        .context("an Event Hubs target looks like eventhubs://[namespace/]hub")?;
    let (namespace, hub) = match rest.trim_end_matches('/').rsplit_once('/') {
        Some((ns, hub)) => (Some(ns), hub),
        None => (None, rest.trim_end_matches('/')),
    };
    anyhow::ensure!(
        !hub.is_empty(),
        "an Event Hubs target looks like eventhubs://[namespace/]hub"
    );
    let config = EventHubsConfig {
        hub: hub.to_string(),
        checkpoint_url: String::new(),
        ..base.clone()
    };
    config.validate()?;
    if let Some(namespace) = namespace {
        let conn = std::env::var(&config.connection_string_env).unwrap_or_default();
        let actual = namespace_of(&conn).unwrap_or_default();
        anyhow::ensure!(
            actual.eq_ignore_ascii_case(namespace),
            "the target's namespace {namespace} is not the connection string's ({actual})"
        );
    }
    Ok(config)
}

/// The partition a user's events go to: a stable hash of the user id.
fn partition_for(key: Option<&str>, partitions: &[String], fallback: usize) -> usize {
    match key {
        Some(key) => {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut hasher);
            (hasher.finish() % partitions.len() as u64) as usize
        }
        None => fallback % partitions.len(),
    }
}

/// Sends every event; returns how many the hub accepted.
pub async fn produce(
    config: &EventHubsConfig,
    simulator: Simulator,
    rate: f64,
) -> anyhow::Result<u64> {
    let conn = std::env::var(&config.connection_string_env)
        .with_context(|| format!("{} is not set", config.connection_string_env))?;
    let producer = ProducerClient::builder()
        .open_with_connection_string(&conn, Some(&config.hub))
        .await
        .map_err(|e| anyhow::anyhow!("opening Event Hub {} to send: {e}", config.hub))?;
    let partitions = producer
        .get_eventhub_properties()
        .await
        .map_err(|e| anyhow::anyhow!("reading Event Hub {}: {e}", config.hub))?
        .partition_ids;
    anyhow::ensure!(
        !partitions.is_empty(),
        "Event Hub {} has no partitions",
        config.hub
    );
    let start = std::time::Instant::now();
    let mut pending: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut sent = 0u64;
    for (i, event) in simulator.enumerate() {
        let key = super::simulate_kafka::user_key(&event.line);
        let p = partition_for(key.as_deref(), &partitions, i);
        let lines = pending.entry(p).or_default();
        lines.push(event.line);
        if lines.len() >= BATCH_EVENTS {
            let lines = std::mem::take(lines);
            sent += send(&producer, &partitions[p], lines).await?;
        }
        if rate > 0.0 && (i as u64 + 1).is_multiple_of(256) {
            let due = Duration::from_secs_f64((i as u64 + 1) as f64 / rate);
            tokio::time::sleep(due.saturating_sub(start.elapsed())).await;
        }
    }
    for (p, lines) in pending {
        sent += send(&producer, &partitions[p], lines).await?;
    }
    producer
        .close()
        .await
        .map_err(|e| anyhow::anyhow!("closing the producer: {e}"))?;
    Ok(sent)
}

/// Sends `lines` to `partition` in order, in as many batches as needed.
async fn send(
    producer: &ProducerClient,
    partition: &str,
    lines: Vec<String>,
) -> anyhow::Result<u64> {
    let options = || EventDataBatchOptions {
        partition_id: Some(partition.to_string()),
        ..Default::default()
    };
    let fail = |e: azure_messaging_eventhubs::EventHubsError| {
        anyhow::anyhow!("sending to partition {partition}: {e}")
    };
    let mut batch = producer.create_batch(Some(options())).await.map_err(fail)?;
    let mut sent = 0u64;
    for line in lines {
        if !batch
            .try_add_event_data(line.clone().into_bytes(), None)
            .map_err(fail)?
        {
            let full = std::mem::replace(
                &mut batch,
                producer.create_batch(Some(options())).await.map_err(fail)?,
            );
            sent += full.len() as u64;
            producer.send_batch(full, None).await.map_err(fail)?;
            anyhow::ensure!(
                batch
                    .try_add_event_data(line.into_bytes(), None)
                    .map_err(fail)?,
                "one event is larger than an Event Hubs batch"
            );
        }
    }
    if !batch.is_empty() {
        sent += batch.len() as u64;
        producer.send_batch(batch, None).await.map_err(fail)?;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_bad_ones_are_refused() {
        // SAFETY: only this test sets this variable, to one value.
        unsafe {
            std::env::set_var(
                "SLUICE_TEST_EH_SIM_CONN",
                "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=x",
            )
        };
        let base = EventHubsConfig {
            connection_string_env: "SLUICE_TEST_EH_SIM_CONN".into(),
            ..Default::default()
        };
        let c = parse_target("eventhubs://events", &base).unwrap();
        assert_eq!(c.hub, "events");
        let c = parse_target("eventhubs://ns.servicebus.windows.net/events", &base).unwrap();
        assert_eq!(c.hub, "events");
        assert!(parse_target("eventhubs://other.servicebus.windows.net/events", &base).is_err());
        assert!(parse_target("eventhubs://", &base).is_err());
        let unset = EventHubsConfig {
            connection_string_env: "SLUICE_TEST_SURELY_UNSET_VARIABLE".into(),
            ..Default::default()
        };
        let err = parse_target("eventhubs://events", &unset)
            .unwrap_err()
            .to_string();
        assert!(err.contains("eventhubs.connection_string_env"), "{err}");
        let ids: Vec<String> = (0..4).map(|i| i.to_string()).collect();
        assert_eq!(
            partition_for(Some("u1"), &ids, 0),
            partition_for(Some("u1"), &ids, 3),
            "one user, one partition"
        );
    }
}
