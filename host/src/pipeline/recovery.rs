//! Start-up recovery: find where the last run stopped, rebuild host state as
//! of the last finished batch, and finish any batch left half-committed.

use deltalake::arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::prelude::SessionContext;

use super::{Pipeline, STAGE_BRONZE, STAGE_DONE};
use crate::lake;
use crate::layers::silver::DedupState;
use crate::layers::{bronze, quarantine, silver};
use crate::sources::Positions;

pub(super) async fn recover(pipeline: &mut Pipeline, lateness_micros: i64) -> anyhow::Result<()> {
    let last_done = pipeline.batches.committed(STAGE_DONE).await?.unwrap_or(0);
    let last_bronze = [
        pipeline.bronze.committed(STAGE_BRONZE).await?,
        pipeline.quarantine.committed(STAGE_BRONZE).await?,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0);
    let ctx = SessionContext::new();
    lake::register(&ctx, bronze::TABLE, pipeline.bronze.delta()).await?;
    lake::register(&ctx, silver::TABLE, pipeline.silver.delta()).await?;
    lake::register(&ctx, quarantine::TABLE, pipeline.quarantine.delta()).await?;
    pipeline.dedup = restore_dedup(&ctx, last_done, lateness_micros).await?;
    pipeline.positions = read_positions(&ctx).await?;
    pipeline.next_batch = last_done.max(last_bronze) + 1;
    if last_bronze > last_done {
        tracing::warn!(
            last_done,
            last_bronze,
            "finishing batches a previous run left half-committed"
        );
    }
    for batch in last_done + 1..=last_bronze {
        let rows = bronze_batch(&ctx, batch, pipeline.bronze.schema()).await?;
        let report = pipeline
            .downstream(batch, rows, None, std::time::Instant::now())
            .await?;
        tracing::info!(batch, accepted = report.accepted, "recovered batch");
    }
    Ok(())
}

pub(super) async fn query(
    ctx: &SessionContext,
    sql: &str,
) -> anyhow::Result<Vec<deltalake::arrow::array::RecordBatch>> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Dedup ids and per-stream watermarks from silver rows of finished batches.
pub(super) async fn restore_dedup(
    ctx: &SessionContext,
    last_done: i64,
    lateness: i64,
) -> anyhow::Result<DedupState> {
    let newest = query(
        ctx,
        &format!(
            "SELECT source, source_partition, CAST(MAX(event_time) AS BIGINT) AS newest \
             FROM silver_events WHERE batch_id <= {last_done} GROUP BY source, source_partition"
        ),
    )
    .await?;
    // The oldest watermark of any stream: no id below it is still tracked.
    let mut oldest_window: Option<i64> = None;
    for b in &newest {
        let newest = int64s(b, 2);
        for i in (0..b.num_rows()).filter(|&i| newest.is_valid(i)) {
            let start = newest.value(i) - lateness;
            oldest_window = Some(oldest_window.map_or(start, |o| o.min(start)));
        }
    }
    let Some(oldest_window) = oldest_window else {
        return Ok(DedupState::new(lateness, silver::DEFAULT_MAX_FUTURE_MICROS));
    };
    let rows = query(
        ctx,
        &format!(
            "SELECT event_id, CAST(event_time AS BIGINT) AS t, source, source_partition \
             FROM silver_events \
             WHERE batch_id <= {last_done} AND CAST(event_time AS BIGINT) >= {oldest_window}"
        ),
    )
    .await?;
    let mut accepted = Vec::new();
    for b in &rows {
        let (ids, times) = (strings(b, 0)?, int64s(b, 1));
        let (sources, partitions) = (strings(b, 2)?, strings(b, 3)?);
        accepted.extend((0..b.num_rows()).map(|i| {
            let stream = silver::stream_key(sources.value(i), partitions.value(i));
            (ids.value(i).to_string(), times.value(i), stream)
        }));
    }
    // Each stream's newest event is among these rows, so its watermark is
    // restored too.
    Ok(DedupState::restore(
        lateness,
        silver::DEFAULT_MAX_FUTURE_MICROS,
        accepted,
    ))
}

fn strings(batch: &RecordBatch, column: usize) -> anyhow::Result<StringArray> {
    let utf8 = cast(batch.column(column), &DataType::Utf8)?;
    Ok(utf8
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to utf8")
        .clone())
}

fn int64s(batch: &RecordBatch, column: usize) -> &Int64Array {
    batch
        .column(column)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("cast to bigint")
}

/// Max committed offset per (source, partition), from bronze and from
/// records quarantined at bronze.
pub(super) async fn read_positions(ctx: &SessionContext) -> anyhow::Result<Positions> {
    let rows = query(
        ctx,
        "SELECT source, source_partition, MAX(source_offset) AS o FROM ( \
           SELECT source, source_partition, source_offset FROM bronze_events \
           UNION ALL SELECT source, source_partition, source_offset FROM quarantine WHERE layer = 'bronze') \
         GROUP BY source, source_partition",
    )
    .await?;
    let mut positions = Positions::new();
    for b in &rows {
        let source = cast(b.column(0), &DataType::Utf8)?;
        let partition = cast(b.column(1), &DataType::Utf8)?;
        let source = source
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to utf8");
        let partition = partition
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to utf8");
        let offset = b
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("offsets are int64");
        for i in 0..b.num_rows() {
            positions.insert(
                (source.value(i).to_string(), partition.value(i).to_string()),
                offset.value(i),
            );
        }
    }
    Ok(positions)
}

/// The stored bronze rows of one batch, in arrival order.
pub(super) async fn bronze_batch(
    ctx: &SessionContext,
    batch: i64,
    schema: &deltalake::arrow::datatypes::SchemaRef,
) -> anyhow::Result<deltalake::arrow::array::RecordBatch> {
    let rows = query(
        ctx,
        &format!(
            "SELECT * FROM bronze_events WHERE batch_id = {batch} ORDER BY {}",
            bronze::BATCH_ROW
        ),
    )
    .await?;
    let mut conformed = Vec::with_capacity(rows.len());
    for b in &rows {
        conformed.push(lake::conform(bronze::TABLE, b, schema)?);
    }
    Ok(deltalake::arrow::compute::concat_batches(
        schema, &conformed,
    )?)
}
