//! `sluice status`: per source partition, the position committed in the lake
//! and, for Kafka and Event Hubs, the newest position the broker or hub holds
//! and the lag between them; who owns each Event Hubs partition; how far
//! each tier of the pipeline is; the fleet's instances and their plugins.

use std::process::ExitCode;

use sluice::config::Config;
use sluice::layers::bronze::committed_positions;
use sluice::lifecycle::registry::{RUNNING_EVERY, Registry, Running};
use sluice::sources::blob_checkpoints::BlobCheckpointStore;
use sluice::sources::{eventhubs, kafka};

pub async fn run(config: &Config, lake: &sluice::lake::Lake) -> anyhow::Result<ExitCode> {
    let positions = committed_positions(lake).await?;
    let tiers = sluice::pipeline::tier_positions(lake).await?;
    println!("{:<11}  {:>12}  {:>10}", "tier", "last batch", "lag");
    println!("{:<11}  {:>12}  {:>10}", "bronze", tiers.bronze, "-");
    let behind = |ahead: i64, tier: i64| (ahead - tier).max(0);
    println!(
        "{:<11}  {:>12}  {:>10}",
        "silver",
        tiers.silver,
        behind(tiers.bronze, tiers.silver)
    );
    println!(
        "{:<11}  {:>12}  {:>10}",
        "gold",
        tiers.refined,
        behind(tiers.silver, tiers.refined)
    );
    if config.kafka.enabled() {
        let k = config.kafka.clone();
        let marks = tokio::task::spawn_blocking(move || kafka::watermarks(&k)).await??;
        println!(
            "kafka topic {} on {}",
            config.kafka.topic, config.kafka.brokers
        );
        println!(
            "{:>9}  {:>12}  {:>14}  {:>10}  {:>10}",
            "partition", "committed", "high watermark", "lag", "gap"
        );
        let (mut total, mut gaps) = (0, 0);
        for (id, (low, high)) in &marks {
            let name = kafka::partition_name(&config.kafka.topic, *id);
            let committed = positions.get(&(kafka::SOURCE.to_string(), name)).copied();
            let lag = kafka::lag(committed, *low, *high);
            let gap = kafka::gap(committed, *low);
            total += lag;
            gaps += gap;
            let shown = committed.map_or("-".to_string(), |c| c.to_string());
            println!("{id:>9}  {shown:>12}  {high:>14}  {lag:>10}  {gap:>10}");
        }
        println!("total lag: {total} events");
        if gaps > 0 {
            println!(
                "gap: {gaps} events after the lake's positions were deleted by retention \
                 before they were read; the next run resumes at the oldest offset left"
            );
        }
    }
    let mut complete = true;
    if config.eventhubs.enabled() {
        print_eventhubs_owners(config).await?;
        // The hub may be out of reach while the lake and the store are not:
        // say so and show the rest.
        let lag = tokio::time::timeout(HUB_ANSWER, print_eventhubs_lag(config, &positions)).await;
        let failed = match lag {
            Ok(result) => result.err(),
            Err(_) => Some(anyhow::anyhow!("no answer in {} s", HUB_ANSWER.as_secs())),
        };
        if let Some(e) = failed {
            println!("event hub lag unavailable: {e:#}");
            complete = false;
        }
    }
    print_fleet(lake).await?;
    print_running(config).await?;
    let others: Vec<_> = positions
        .iter()
        .filter(|((source, _), _)| source != kafka::SOURCE && source != eventhubs::SOURCE)
        .collect();
    if !others.is_empty() {
        println!("other sources: {} partitions committed", others.len());
    }
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How long `status` waits for the hub to answer the lag query.
const HUB_ANSWER: std::time::Duration = std::time::Duration::from_secs(15);

/// A moment as the tables here print it (UTC, to the second), or `-`.
fn utc_second(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or("-".to_string(), |t| {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    })
}

/// Bronze commits looked at for the instances list.
const RECENT_COMMITS: u64 = 500;

/// The instances that committed to bronze lately (several on a shared
/// lake) and who holds the refine role, from the lake's logs.
async fn print_fleet(lake: &sluice::lake::Lake) -> anyhow::Result<()> {
    let fleet = sluice::pipeline::fleet::fleet(lake, RECENT_COMMITS).await?;
    if fleet.writers.is_empty() {
        return Ok(());
    }
    println!("instances (bronze writers in the last {RECENT_COMMITS} commits)");
    println!(
        "{:<32}  {:>7}  {:<24}  partitions",
        "instance", "commits", "last commit (UTC)"
    );
    for w in &fleet.writers {
        let last = utc_second(
            w.last_commit_ms
                .and_then(chrono::DateTime::from_timestamp_millis),
        );
        let partitions: Vec<&str> = w.partitions.iter().map(String::as_str).collect();
        println!(
            "{:<32}  {:>7}  {last:<24}  {}",
            w.id,
            w.commits,
            partitions.join(" ")
        );
    }
    match &fleet.leader {
        Some((epoch, holder)) => println!("refine role: epoch {epoch}, taken by {holder}"),
        None => println!("refine role: not claimed (a single instance refines its own lake)"),
    }
    Ok(())
}

/// What each live instance runs, as it last told the plugin registry
/// (instances say it on every change and every `RUNNING_EVERY`).
async fn print_running(config: &Config) -> anyhow::Result<()> {
    let location = config.registry_dir();
    let Some(registry) = Registry::open_existing(&location, &config.lake_options).await? else {
        return Ok(());
    };
    let live_since = chrono::Utc::now() - RUNNING_EVERY * 3;
    let running: Vec<Running> = registry
        .running()
        .await?
        .into_iter()
        .filter(|r| {
            chrono::DateTime::parse_from_rfc3339(&r.seen).is_ok_and(|seen| seen >= live_since)
        })
        .collect();
    if running.is_empty() {
        return Ok(());
    }
    println!(
        "plugins running (instances seen in the last {} s)",
        (RUNNING_EVERY * 3).as_secs()
    );
    for r in &running {
        let layers: Vec<String> = r
            .layers
            .iter()
            .map(|l| format!("{} {}", l.layer, l.plugin))
            .collect();
        println!("{:<32}  {}", r.instance, layers.join(", "));
    }
    Ok(())
}

/// Who owns each partition of the hub, from the checkpoint store (no hub
/// connection needed); owners are the lake's instance ids.
async fn print_eventhubs_owners(config: &Config) -> anyhow::Result<()> {
    let hubs = &config.eventhubs;
    let Some(location) = hubs.store_location() else {
        return Ok(());
    };
    eventhubs::install_tls_provider();
    let store = BlobCheckpointStore::new(&location)?;
    let scope = eventhubs::Scope::of(hubs, &hubs.namespace()?);
    let expiry = std::time::Duration::from_secs(hubs.ownership_expiry_secs);
    let owners = eventhubs::owners(&store, &scope, expiry).await?;
    println!(
        "event hub {}: partition owners (checkpoint store; claims expire after {} s)",
        hubs.hub, hubs.ownership_expiry_secs
    );
    println!(
        "{:>9}  {:<32}  {:<19}  state",
        "partition", "owner", "renewed (UTC)"
    );
    for o in &owners {
        let renewed = utc_second(o.renewed.map(chrono::DateTime::from));
        let state = match (&o.owner, o.live) {
            (None, _) => "handed back",
            (Some(_), true) => "live",
            (Some(_), false) => "expired",
        };
        println!(
            "{:>9}  {:<32}  {renewed:<19}  {state}",
            o.partition,
            o.owner.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

async fn print_eventhubs_lag(
    config: &Config,
    positions: &sluice::sources::Positions,
) -> anyhow::Result<()> {
    eventhubs::install_tls_provider();
    let hub = &config.eventhubs.hub;
    let client = config.eventhubs.consumer().await?;
    let lags = eventhubs::partition_lags(&client, hub, positions).await?;
    println!(
        "event hub {hub} (consumer group {})",
        config.eventhubs.consumer_group
    );
    println!(
        "{:>9}  {:>12}  {:>14}  {:>10}",
        "partition", "committed", "last enqueued", "lag"
    );
    for l in &lags {
        let shown = l.committed.map_or("-".to_string(), |c| c.to_string());
        println!(
            "{:>9}  {shown:>12}  {:>14}  {:>10}",
            l.id, l.last_enqueued, l.lag
        );
    }
    let total: i64 = lags.iter().map(|l| l.lag).sum();
    println!("total lag: {total} events");
    Ok(())
}
