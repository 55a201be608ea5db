//! Start-up recovery: find where each tier stopped, rebuild host state as
//! of the last refined batch, and finish what was left: silver is recomputed
//! from there (a table keeps only rows of batches it does not hold), an
//! interrupted gold step is redone over exactly its range, then the rest.

use anyhow::Context as _;
use deltalake::arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::compute::kernels::cmp::{gt_eq, lt_eq};
use deltalake::arrow::compute::{and, filter_record_batch};
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::prelude::SessionContext;

use super::silver_tier::SilverCommitted;
use super::{
    BatchReport, Pipeline, STAGE_BRONZE, STAGE_DONE, STAGE_GOLD, STAGE_PLAN, STAGE_SILVER,
};
use crate::lake;
use crate::layers::silver::{DedupState, TimeBounds};
use crate::layers::{BATCH_ID, bronze, quarantine, silver};

pub(super) async fn recover(pipeline: &mut Pipeline) -> anyhow::Result<()> {
    let bounds = pipeline.silver.bounds;
    let last_done = pipeline
        .gold_ref()?
        .batches
        .committed(STAGE_DONE)
        .await?
        .unwrap_or(0);
    let last_bronze = [
        pipeline.silver.bronze.committed(STAGE_BRONZE).await?,
        pipeline.silver.quarantine.committed(STAGE_BRONZE).await?,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0);
    let ctx = SessionContext::new();
    lake::register(&ctx, bronze::TABLE, pipeline.silver.bronze.delta()).await?;
    lake::register(&ctx, silver::TABLE, pipeline.silver.silver.delta()).await?;
    lake::register(&ctx, quarantine::TABLE, pipeline.silver.quarantine.delta()).await?;
    pipeline.silver.dedup = restore_dedup(&ctx, last_done, bounds).await?;
    pipeline.silver.next_batch = last_done + 1;
    pipeline.gold_mut()?.next_batch = last_done + 1;
    let gold_end = interrupted_gold_end(pipeline).await?;
    let end = last_bronze.max(gold_end);
    pipeline.slots.set_next_bronze(last_done.max(end) + 1);
    if end <= last_done {
        return Ok(());
    }
    let steps = unfinished_steps(last_done, gold_end, end);
    tracing::warn!(
        last_done,
        last_bronze,
        ?steps,
        "refining what a previous run left unrefined"
    );
    pipeline.silver.written_by_earlier_run = end;
    let rows = bronze_batches(&ctx, last_done + 1, end, pipeline.silver.bronze.schema()).await?;
    let slots = pipeline.slots.clone();
    let silver = pipeline
        .silver
        .refine(&slots, last_done + 1, end, &rows, false)
        .await?
        .context("a step that may not split was split")?;
    let gold = pipeline.gold_mut()?;
    for (first, last) in steps {
        let step = SilverCommitted {
            first,
            last,
            rows: rows_between(&silver.rows, first, last)?,
            report: recovered_report(&silver, &rows, first, last)?,
            ingest_micros: Vec::new(),
        };
        let report = gold.step(&slots, vec![step]).await?;
        tracing::info!(first, last, accepted = report.accepted, "recovered step");
    }
    Ok(())
}

/// The end of a gold step that wrote some tables but not its
/// `pipeline_batches` row: the highest step any gold write carries, or a
/// previous leader announced (`gold_tier.rs`).
async fn interrupted_gold_end(pipeline: &Pipeline) -> anyhow::Result<i64> {
    let gold = pipeline.gold_ref()?;
    let written = [
        gold.quarantine.committed(STAGE_GOLD).await?,
        gold.gold.last_committed(STAGE_GOLD).await?,
        gold.batches.committed(STAGE_PLAN).await?,
    ];
    Ok(written.into_iter().flatten().max().unwrap_or(0))
}

/// The gold steps that finish refining: first the interrupted one over
/// exactly its range (its tables must see the same rows again, or a table
/// that already holds it would be skipped while another gets more), then
/// the rest in one step.
fn unfinished_steps(last_done: i64, interrupted_end: i64, last_bronze: i64) -> Vec<(i64, i64)> {
    let mut steps = Vec::new();
    let mut next = last_done + 1;
    if interrupted_end >= next {
        steps.push((next, interrupted_end));
        next = interrupted_end + 1;
    }
    if last_bronze >= next {
        steps.push((next, last_bronze));
    }
    steps
}

/// Rows whose bronze batch is in `first..=last`.
pub(super) fn rows_between(
    rows: &RecordBatch,
    first: i64,
    last: i64,
) -> anyhow::Result<RecordBatch> {
    let ids = rows
        .column_by_name(BATCH_ID)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .with_context(|| format!("rows lack an int64 `{BATCH_ID}`"))?;
    let keep = and(
        &gt_eq(ids, &Int64Array::new_scalar(first))?,
        &lt_eq(ids, &Int64Array::new_scalar(last))?,
    )?;
    Ok(filter_record_batch(rows, &keep)?)
}

/// The figures of a recovered gold step: its bronze and silver rows; the
/// recomputed silver step's quarantine counts go with the last step.
fn recovered_report(
    silver: &SilverCommitted,
    bronze_rows: &RecordBatch,
    first: i64,
    last: i64,
) -> anyhow::Result<BatchReport> {
    Ok(BatchReport {
        batch: last,
        first_batch: first,
        events: rows_between(bronze_rows, first, last)?.num_rows(),
        accepted: rows_between(&silver.rows, first, last)?.num_rows(),
        quarantined: if last == silver.last {
            silver.report.quarantined.clone()
        } else {
            Default::default()
        },
        millis: 0,
    })
}

/// Each tier's position as the lake holds it: the last bronze batch the
/// ingest tier committed, the last one with silver (or silver quarantine)
/// rows, and the last one the gold tier finished (refined).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierPositions {
    pub bronze: i64,
    pub silver: i64,
    pub refined: i64,
}

impl TierPositions {
    /// Bronze batches committed but not yet in gold.
    pub fn lag(&self) -> i64 {
        (self.bronze - self.refined).max(0)
    }
}

/// Reads [`TierPositions`] from the tables' app transactions.
pub async fn tier_positions(lake: &lake::Lake) -> anyhow::Result<TierPositions> {
    let version = |table: Option<deltalake::DeltaTable>, stage: &'static str| async move {
        let Some(t) = table else {
            return Ok::<_, anyhow::Error>(0);
        };
        let v = t
            .snapshot()?
            .transaction_version(t.log_store().as_ref(), stage)
            .await?;
        Ok(v.unwrap_or(0))
    };
    let bronze = version(lake.open(bronze::TABLE).await?, STAGE_BRONZE).await?;
    let failed = version(lake.open(quarantine::TABLE).await?, STAGE_BRONZE).await?;
    let refined = version(lake.open(super::BATCHES_TABLE).await?, STAGE_DONE).await?;
    let silver = version(lake.open(silver::TABLE).await?, STAGE_SILVER).await?;
    let silver_rejects = version(lake.open(quarantine::TABLE).await?, STAGE_SILVER).await?;
    Ok(TierPositions {
        bronze: bronze.max(failed).max(refined),
        // A silver step with no rows leaves no trace; gold follows silver.
        silver: silver.max(silver_rejects).max(refined),
        refined,
    })
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
    bounds: TimeBounds,
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
            let start = newest.value(i).saturating_sub(bounds.lateness_micros);
            oldest_window = Some(oldest_window.map_or(start, |o| o.min(start)));
        }
    }
    let Some(oldest_window) = oldest_window else {
        return Ok(DedupState::new(
            bounds.lateness_micros,
            bounds.max_future_micros,
        ));
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
        bounds.lateness_micros,
        bounds.max_future_micros,
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

/// The stored bronze rows of batches `first..=last`, in arrival order.
pub(super) async fn bronze_batches(
    ctx: &SessionContext,
    first: i64,
    last: i64,
    schema: &deltalake::arrow::datatypes::SchemaRef,
) -> anyhow::Result<deltalake::arrow::array::RecordBatch> {
    let rows = query(
        ctx,
        &format!(
            "SELECT * FROM bronze_events WHERE batch_id BETWEEN {first} AND {last} \
             ORDER BY batch_id, {}",
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

#[cfg(test)]
mod tests {
    use super::unfinished_steps;

    #[test]
    fn an_interrupted_step_is_redone_over_exactly_its_range() {
        assert_eq!(unfinished_steps(4, 9, 12), vec![(5, 9), (10, 12)]);
        assert_eq!(unfinished_steps(4, 9, 9), vec![(5, 9)]);
        assert_eq!(unfinished_steps(4, 3, 7), vec![(5, 7)]);
        assert_eq!(unfinished_steps(4, 0, 4), Vec::<(i64, i64)>::new());
    }
}
