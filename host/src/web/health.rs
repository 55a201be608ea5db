//! `/api/health`: how the pipeline is doing, from the lake (tier positions,
//! events per second in and out of each tier, quarantine by reason over
//! time, committed positions, the plugins that served) and, inside `sluice
//! run`, from the live service (source lag, a shadow run's report).
//! `/api/quarantine/samples`: quarantined rows with their raw bytes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use deltalake::datafusion::prelude::SessionContext;
use serde_json::{Map, Value, json};

use super::{Dashboard, error};
use crate::lifecycle::Control;
use crate::lifecycle::registry::{Entry, Registry};

/// Width of one throughput and quarantine bucket.
const BUCKET_SECS: i64 = 10;
/// Buckets shown: the last ten minutes of activity.
const BUCKETS: i64 = 60;
/// How long the plugin status may take (the pipeline answers between steps).
const STATUS_WAIT: Duration = Duration::from_secs(2);
/// Most quarantine samples one request returns.
const MAX_SAMPLES: usize = 200;
const LAYERS: [&str; 3] = ["bronze", "silver", "gold"];

pub(super) async fn health(State(dashboard): State<Arc<Dashboard>>) -> Response {
    match report(&dashboard).await {
        Ok(value) => Json(value).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
    }
}

async fn report(d: &Dashboard) -> anyhow::Result<Value> {
    let tiers = crate::pipeline::tier_positions(&d.lake).await?;
    let ctx = d.session().await?;
    let end = window_end(&ctx).await;
    let (location, options) = &d.registry;
    let history = Registry::read_history(location, options).await;
    let shadow = shadow(d, &history).await;
    let behind = |ahead: i64, tier: i64| (ahead - tier).max(0);
    Ok(json!({
        "live": d.live.control.is_some(),
        "tiers": [
            {"tier": "bronze", "position": tiers.bronze, "behind": 0},
            {"tier": "silver", "position": tiers.silver, "behind": behind(tiers.bronze, tiers.silver)},
            {"tier": "gold", "position": tiers.refined, "behind": behind(tiers.silver, tiers.refined)},
        ],
        "bucket_secs": BUCKET_SECS,
        "throughput": throughput(&ctx, end).await,
        "quarantine": quarantine(&ctx, end).await,
        "partitions": partitions(d).await,
        "plugins": plugins(&ctx).await,
        "history": history,
        "shadow": shadow,
    }))
}

/// Rows of `sql` as JSON maps (timestamps as microseconds); none if the
/// tables are not there yet.
async fn rows(ctx: &SessionContext, sql: &str) -> Vec<Map<String, Value>> {
    let answer = match ctx.sql(sql).await {
        Ok(df) => df.collect().await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(batches) => batches
            .iter()
            .flat_map(crate::plugin_test::row_maps)
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "dashboard health query failed");
            Vec::new()
        }
    }
}

fn int(row: &Map<String, Value>, key: &str) -> i64 {
    row.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn text(row: &Map<String, Value>, key: &str) -> String {
    row.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The bucket of the newest activity (bronze ingest or a gold commit):
/// the charts end there, so a lake at rest still shows its last run.
async fn window_end(ctx: &SessionContext) -> i64 {
    let mut micros = crate::time::now_micros();
    let mut newest = 0;
    for sql in [
        "SELECT CAST(MAX(ingest_time) AS BIGINT) AS t FROM bronze_events",
        "SELECT CAST(MAX(committed_at) AS BIGINT) AS t FROM pipeline_batches",
    ] {
        newest = rows(ctx, sql)
            .await
            .iter()
            .map(|r| int(r, "t"))
            .fold(newest, i64::max);
    }
    if newest > 0 {
        micros = newest;
    }
    micros.div_euclid(BUCKET_SECS * 1_000_000)
}

fn bucket_time(bucket: i64) -> String {
    crate::time::format_micros(bucket * BUCKET_SECS * 1_000_000)
}

/// Events per second into and out of each tier, per bucket: bronze takes
/// and keeps every record; silver takes refined events and passes on the
/// accepted ones; gold takes the accepted ones into its tables.
async fn throughput(ctx: &SessionContext, end: i64) -> Vec<Value> {
    let start = end - BUCKETS + 1;
    let per = BUCKET_SECS * 1_000_000;
    let bronze = rows(
        ctx,
        &format!(
            "SELECT CAST(ingest_time AS BIGINT) / {per} AS bucket, COUNT(*) AS n \
             FROM bronze_events WHERE CAST(ingest_time AS BIGINT) >= {} GROUP BY 1",
            start * per
        ),
    )
    .await;
    let steps = rows(
        ctx,
        &format!(
            "SELECT CAST(committed_at AS BIGINT) / {per} AS bucket, SUM(events) AS events, \
             SUM(accepted) AS accepted FROM pipeline_batches \
             WHERE CAST(committed_at AS BIGINT) >= {} GROUP BY 1",
            start * per
        ),
    )
    .await;
    let received: HashMap<i64, i64> = bronze
        .iter()
        .map(|r| (int(r, "bucket"), int(r, "n")))
        .collect();
    let refined: HashMap<i64, (i64, i64)> = steps
        .iter()
        .map(|r| (int(r, "bucket"), (int(r, "events"), int(r, "accepted"))))
        .collect();
    let rate = |n: i64| n as f64 / BUCKET_SECS as f64;
    (start..=end)
        .map(|bucket| {
            let n = received.get(&bucket).copied().unwrap_or(0);
            let (events, accepted) = refined.get(&bucket).copied().unwrap_or((0, 0));
            json!({
                "t": bucket_time(bucket),
                "bronze": {"in": rate(n), "out": rate(n)},
                "silver": {"in": rate(events), "out": rate(accepted)},
                "gold": {"in": rate(accepted), "out": rate(accepted)},
            })
        })
        .collect()
}

/// Quarantined events per reason and bucket, and in all.
async fn quarantine(ctx: &SessionContext, end: i64) -> Value {
    let start = end - BUCKETS + 1;
    let per = BUCKET_SECS * 1_000_000;
    let recent = rows(
        ctx,
        &format!(
            "SELECT CAST(quarantined_at AS BIGINT) / {per} AS bucket, reason, COUNT(*) AS n \
             FROM quarantine WHERE CAST(quarantined_at AS BIGINT) >= {} GROUP BY 1, 2",
            start * per
        ),
    )
    .await;
    let totals = rows(
        ctx,
        "SELECT reason, COUNT(*) AS events FROM quarantine GROUP BY reason \
         ORDER BY events DESC, reason",
    )
    .await;
    let mut by_bucket: BTreeMap<i64, BTreeMap<String, i64>> = BTreeMap::new();
    for row in &recent {
        by_bucket
            .entry(int(row, "bucket"))
            .or_default()
            .insert(text(row, "reason"), int(row, "n"));
    }
    let points: Vec<Value> = (start..=end)
        .map(|bucket| {
            let counts = by_bucket.remove(&bucket).unwrap_or_default();
            json!({"t": bucket_time(bucket), "counts": counts})
        })
        .collect();
    json!({"totals": totals, "points": points})
}

/// Each source partition's committed position, and its lag where the
/// running service measures one (Kafka, Event Hubs, with `[metrics]` on).
async fn partitions(d: &Dashboard) -> Vec<Value> {
    let positions = match crate::layers::bronze::committed_positions(&d.lake).await {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "dashboard: no positions");
            return Vec::new();
        }
    };
    let lags = d
        .live
        .metrics
        .as_ref()
        .map(|m| source_lags(&m.render()))
        .unwrap_or_default();
    let mut out: Vec<_> = positions.into_iter().collect();
    out.sort();
    out.into_iter()
        .map(|((source, partition), offset)| {
            let lag = lags.get(&(source.clone(), partition.clone()));
            json!({"source": source, "partition": partition, "committed": offset, "lag": lag})
        })
        .collect()
}

/// `sluice_source_lag_events{source=…,partition=…} N` lines of a
/// Prometheus text rendering, by source and partition.
fn source_lags(text: &str) -> HashMap<(String, String), i64> {
    let mut lags = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("sluice_source_lag_events{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels.split(',').find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        if let (Some(source), Some(partition), Ok(lag)) = (
            label("source"),
            label("partition"),
            value.trim().parse::<f64>(),
        ) {
            lags.insert((source, partition), lag as i64);
        }
    }
    lags
}

/// Per layer, the plugin versions that served, from `pipeline_batches`
/// (each gold step records them): the batches each served and since when;
/// the last is the active one.
async fn plugins(ctx: &SessionContext) -> Vec<Value> {
    let served = rows(
        ctx,
        "SELECT plugins, MIN(batch_id) AS from_batch, MAX(batch_id) AS to_batch, \
         MIN(committed_at) AS since FROM pipeline_batches GROUP BY plugins ORDER BY from_batch",
    )
    .await;
    LAYERS
        .iter()
        .enumerate()
        .map(|(i, layer)| {
            let mut versions: Vec<Value> = Vec::new();
            for row in &served {
                let plugins = text(row, "plugins");
                let producer = plugins.split(',').nth(i).unwrap_or_default().to_string();
                let same = versions
                    .last()
                    .is_some_and(|v| v["plugin"].as_str() == Some(producer.as_str()));
                if same {
                    let last = versions.last_mut().expect("checked");
                    last["to_batch"] = json!(int(row, "to_batch"));
                } else {
                    versions.push(json!({
                        "plugin": producer,
                        "from_batch": int(row, "from_batch"),
                        "to_batch": int(row, "to_batch"),
                        "since": crate::time::format_micros(int(row, "since")),
                    }));
                }
            }
            let active = versions.last().map(|v| v["plugin"].clone());
            json!({"layer": layer, "active": active, "served": versions})
        })
        .collect()
}

/// Layers whose latest change started a shadow run.
fn shadowed_layers(history: &[Entry]) -> Vec<String> {
    let mut last: BTreeMap<&str, &str> = BTreeMap::new();
    for entry in history.iter().filter(|e| e.action.name() != "refused") {
        last.insert(&entry.layer, entry.action.name());
    }
    last.into_iter()
        .filter(|(_, action)| *action == "shadow")
        .map(|(layer, _)| layer.to_string())
        .collect()
}

/// The shadow run's report, asked of the pipeline only while the history
/// says one runs (asking waits for a step boundary).
async fn shadow(d: &Dashboard, history: &[Entry]) -> Value {
    let Some(control) = &d.live.control else {
        return Value::Null;
    };
    if shadowed_layers(history).is_empty() {
        return Value::Null;
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    if control.send(Control::Status { reply }).await.is_err() {
        return Value::Null;
    }
    match tokio::time::timeout(STATUS_WAIT, answer).await {
        Ok(Ok(Ok(status))) => {
            let reports: Vec<Value> = status
                .layers
                .into_iter()
                .filter(|l| l.shadow.is_some())
                .map(|l| json!({"layer": l.layer, "report": l.shadow}))
                .collect();
            json!(reports)
        }
        _ => json!({"pending": "the pipeline did not answer in time; next refresh"}),
    }
}

/// Quarantined rows of one reason, newest first, raw bytes as base64 and
/// as lossy text (the page shows them as text, never as markup).
pub(super) async fn quarantine_samples(
    State(dashboard): State<Arc<Dashboard>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let reason = params.get("reason").map(String::as_str).unwrap_or_default();
    if reason.is_empty()
        || reason.len() > 64
        || !reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return error(
            StatusCode::BAD_REQUEST,
            "`reason` must be a quarantine reason such as invalid_json",
        );
    }
    let limit = params
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, MAX_SAMPLES);
    let sql = format!(
        "SELECT quarantined_at, layer, reason, detail, raw, source, source_partition, \
         source_offset, batch_id FROM quarantine WHERE reason = '{reason}' \
         ORDER BY quarantined_at DESC, source_offset DESC LIMIT {limit}"
    );
    let answer = match dashboard.session().await {
        Ok(ctx) => crate::query::sql_in(&ctx, &sql).await,
        Err(e) => Err(e),
    };
    let batches = match answer {
        Ok(b) => b,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
    };
    let samples: Vec<Value> = batches.iter().flat_map(sample_rows).collect();
    Json(samples).into_response()
}

fn sample_rows(batch: &deltalake::arrow::array::RecordBatch) -> Vec<Value> {
    use deltalake::arrow::array::{Array, BinaryArray};
    use deltalake::arrow::datatypes::DataType;
    // Readers may hand back a view or large variant.
    let raw = batch
        .column_by_name("raw")
        .and_then(|c| deltalake::arrow::compute::cast(c, &DataType::Binary).ok())
        .and_then(|c| c.as_any().downcast_ref::<BinaryArray>().cloned());
    crate::plugin_test::row_maps(batch)
        .into_iter()
        .enumerate()
        .map(|(i, mut row)| {
            let bytes = raw
                .as_ref()
                .filter(|r| !r.is_null(i))
                .map(|r| r.value(i).to_vec())
                .unwrap_or_default();
            row.insert(
                "quarantined_at".into(),
                json!(crate::time::format_micros(int(&row, "quarantined_at"))),
            );
            row.insert(
                "raw_base64".into(),
                json!(base64::engine::general_purpose::STANDARD.encode(&bytes)),
            );
            row.insert("raw".into(), json!(String::from_utf8_lossy(&bytes)));
            Value::Object(row)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_lines_are_read_whatever_the_label_order() {
        let text = "# TYPE sluice_source_lag_events gauge\n\
                    sluice_source_lag_events{source=\"kafka\",partition=\"events/0\"} 12\n\
                    sluice_source_lag_events{partition=\"hub/1\",source=\"eventhubs\"} 3\n\
                    sluice_batches_total 4\n";
        let lags = source_lags(text);
        assert_eq!(lags[&("kafka".into(), "events/0".into())], 12);
        assert_eq!(lags[&("eventhubs".into(), "hub/1".into())], 3);
        assert_eq!(lags.len(), 2);
    }
}
