//! Silver's host-owned state: event-id deduplication bounded by event-time
//! watermarks, and the lineage columns a stored silver row carries. Runs on
//! the silver plugin's output, in arrival order.
//!
//! A watermark is the newest accepted event time of a stream minus the
//! allowed lateness, advanced event by event. A stream is one partition of
//! an ordered log (a Kafka or Event Hubs partition) or, for the other
//! sources, the whole source: reading a backlog partition by partition must
//! not make one partition's events late because another was read first. So
//! whether an event is accepted, a duplicate or late depends only on the
//! order within its stream, never on how streams interleave or where batch
//! boundaries fall. That is what makes a replay after a crash give the same
//! silver table as an uninterrupted run.
//!
//! An event stamped too far ahead of its arrival (its bronze row's
//! `ingest_time`) is rejected as `future_timestamp` before anything else, so
//! one client with a wrong clock cannot drag a watermark into the future and
//! make every later event late. All arithmetic on times saturates: an extreme
//! lateness or an event near the ends of the i64 range must not wrap around.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use deltalake::arrow::compute::{filter_record_batch, sort_to_indices, take, take_record_batch};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use sluice_plugin_sdk::schemas::INPUT_ROW;

use super::bronze::RawColumns;

pub const TABLE: &str = "silver_events";
/// Columns the host needs in a silver plugin's `silver_events` output.
pub const EVENT_ID: &str = "event_id";
pub const EVENT_TIME: &str = "event_time";
/// Default for how far an event's time may be ahead of its ingest time:
/// one day (`lateness.max_future_secs`), generous for skewed client clocks.
pub const DEFAULT_MAX_FUTURE_MICROS: i64 = 86_400 * 1_000_000;
/// Host-added lineage: the bronze record a silver row came from.
pub const SOURCE_COLUMNS: [&str; 3] = ["source", "source_partition", "source_offset"];

/// The stream (watermark scope) of a record from `source`/`partition`: the
/// partition of an ordered log, else the whole source.
pub fn stream_key(source: &str, partition: &str) -> String {
    if crate::record::is_ordered_log(source) {
        format!("{source}:{partition}")
    } else {
        source.to_string()
    }
}

/// What the host decided for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Duplicate,
    Late {
        watermark: i64,
    },
    /// Event time is after `bound` (ingest time + the allowed future skew).
    Future {
        bound: i64,
    },
}

/// An accepted id: its event time and the stream it came from.
#[derive(Debug, Clone, Copy)]
struct Seen {
    time: i64,
    stream: u32,
}

/// How far an event's time may trail its stream's newest event (lateness)
/// and run ahead of its own arrival (future), in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct TimeBounds {
    pub lateness_micros: i64,
    pub max_future_micros: i64,
}

/// Event ids seen within the lateness window, and the newest event time of
/// each stream.
#[derive(Debug, Default)]
pub struct DedupState {
    seen: HashMap<Box<str>, Seen>,
    stream_ids: HashMap<Box<str>, u32>,
    newest: Vec<Option<i64>>,
    lateness_micros: i64,
    max_future_micros: i64,
}

impl DedupState {
    /// `lateness_micros`: how far behind its stream's newest event an event
    /// may be; `max_future_micros`: how far ahead of its ingest time.
    pub fn new(lateness_micros: i64, max_future_micros: i64) -> Self {
        DedupState {
            lateness_micros,
            max_future_micros,
            ..Default::default()
        }
    }

    /// Rebuilds the state from accepted events (id, event time, stream), as
    /// read back from the silver table.
    pub fn restore(
        lateness_micros: i64,
        max_future_micros: i64,
        accepted: impl IntoIterator<Item = (String, i64, String)>,
    ) -> Self {
        let mut state = DedupState::new(lateness_micros, max_future_micros);
        for (id, time, stream) in accepted {
            let stream = state.stream(&stream);
            state.advance(stream, time);
            state
                .seen
                .insert(id.into_boxed_str(), Seen { time, stream });
        }
        state.prune();
        state
    }

    fn stream(&mut self, key: &str) -> u32 {
        if let Some(&id) = self.stream_ids.get(key) {
            return id;
        }
        let id = self.newest.len() as u32;
        self.newest.push(None);
        self.stream_ids.insert(key.into(), id);
        id
    }

    fn advance(&mut self, stream: u32, time: i64) {
        let newest = &mut self.newest[stream as usize];
        *newest = Some(newest.map_or(time, |n| n.max(time)));
    }

    fn watermark_of(&self, stream: u32) -> Option<i64> {
        self.newest[stream as usize].map(|n| n.saturating_sub(self.lateness_micros))
    }

    /// Events of stream `key` older than this are late.
    pub fn watermark(&self, key: &str) -> Option<i64> {
        self.stream_ids
            .get(key)
            .and_then(|&id| self.watermark_of(id))
    }

    pub fn tracked_ids(&self) -> usize {
        self.seen.len()
    }

    /// Judges one event of stream `key` whose arrival time is unknown and,
    /// if accepted, remembers it.
    pub fn judge(&mut self, id: &str, key: &str, event_time: i64) -> Verdict {
        let stream = self.stream(key);
        self.judge_in(stream, id, event_time, None)
    }

    /// Judges one event of stream `key` that arrived at `ingest` and, if
    /// accepted, remembers it.
    pub fn judge_at(&mut self, id: &str, key: &str, event_time: i64, ingest: i64) -> Verdict {
        let stream = self.stream(key);
        self.judge_in(stream, id, event_time, Some(ingest))
    }

    fn judge_in(&mut self, stream: u32, id: &str, event_time: i64, ingest: Option<i64>) -> Verdict {
        // First: a future event must neither advance the watermark nor
        // claim its id (a later, correctly stamped copy may still come).
        if let Some(ingest) = ingest {
            let bound = ingest.saturating_add(self.max_future_micros);
            if event_time > bound {
                return Verdict::Future { bound };
            }
        }
        if let Some(watermark) = self.watermark_of(stream)
            && event_time < watermark
        {
            return Verdict::Late { watermark };
        }
        if self.seen.contains_key(id) {
            return Verdict::Duplicate;
        }
        self.seen.insert(
            id.into(),
            Seen {
                time: event_time,
                stream,
            },
        );
        self.advance(stream, event_time);
        Verdict::Accept
    }

    /// Forgets ids that can no longer be re-accepted in their stream:
    /// anything older than its watermark is judged late before its id is
    /// looked at. (A copy of an event in another stream is caught while
    /// the first copy is inside its own stream's window.)
    pub fn prune(&mut self) {
        let watermarks: Vec<Option<i64>> = (0..self.newest.len() as u32)
            .map(|s| self.watermark_of(s))
            .collect();
        self.seen
            .retain(|_, seen| watermarks[seen.stream as usize].is_none_or(|w| seen.time >= w));
    }
}

/// Quarantine reason of an event stamped too far after its arrival.
pub const FUTURE_TIMESTAMP: &str = "future_timestamp";

/// Without `ingest_time` in the bronze rows (a custom bronze plugin dropped
/// it) there is nothing deterministic to bound event times by: the wall
/// clock at silver time would differ between a run and its recovery. So the
/// future check is off for those rows; say so once per process.
fn warn_no_ingest_time() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "bronze rows lack `{}`: events cannot be checked for future timestamps",
            super::bronze::INGEST_TIME
        )
    });
}

/// An event the host rejected after the plugin accepted it.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub input_row: u32,
    pub reason: &'static str,
    pub detail: String,
}

/// Splits the plugin's `silver_events` rows into accepted rows (arrival
/// order, `input_row` kept) and rejected ones. `input` is the batch the
/// plugin read, for each row's stream.
pub fn deduplicate(
    state: &mut DedupState,
    rows: &RecordBatch,
    input: &RawColumns,
) -> Result<(RecordBatch, Vec<Rejected>), String> {
    if rows.num_rows() == 0 {
        return Ok((rows.clone(), Vec::new()));
    }
    if !input.has_ingest_time() {
        warn_no_ingest_time();
    }
    let order = rows
        .column_by_name(INPUT_ROW)
        .ok_or("silver_events rows lack `input_row`")?;
    let indices = sort_to_indices(order, None, None).map_err(|e| e.to_string())?;
    let rows = take_record_batch(rows, &indices).map_err(|e| e.to_string())?;
    let input_row = column::<UInt32Array>(&rows, INPUT_ROW)?;
    let ids = column::<StringArray>(&rows, EVENT_ID)?;
    let times = column::<TimestampMicrosecondArray>(&rows, EVENT_TIME)?;
    let mut keep = Vec::with_capacity(rows.num_rows());
    let mut rejected = Vec::new();
    let mut last_stream: Option<(&str, &str, u32)> = None;
    for i in 0..rows.num_rows() {
        let (id, t, row) = (ids.value(i), times.value(i), input_row.value(i));
        if row as usize >= input.len() {
            return Err(format!(
                "silver_events row names input_row {row} of {}",
                input.len()
            ));
        }
        let origin = input.row(row as usize);
        // Rows of one partition come in runs: look the stream up once a run.
        let stream = match last_stream {
            Some((source, partition, stream))
                if (source, partition) == (origin.source, origin.partition) =>
            {
                stream
            }
            _ => {
                let stream = state.stream(&stream_key(origin.source, origin.partition));
                last_stream = Some((origin.source, origin.partition, stream));
                stream
            }
        };
        let verdict = state.judge_in(stream, id, t, input.ingest_time(row as usize));
        keep.push(verdict == Verdict::Accept);
        match verdict {
            Verdict::Accept => {}
            Verdict::Duplicate => rejected.push(Rejected {
                input_row: row,
                reason: "duplicate",
                detail: format!("event_id {id} was already accepted"),
            }),
            Verdict::Late { watermark } => rejected.push(Rejected {
                input_row: row,
                reason: "late",
                detail: format!(
                    "event time {} is before the watermark {}",
                    crate::time::format_micros(t),
                    crate::time::format_micros(watermark)
                ),
            }),
            Verdict::Future { bound } => rejected.push(Rejected {
                input_row: row,
                reason: FUTURE_TIMESTAMP,
                detail: format!(
                    "event time {} is after {} (ingest time + lateness.max_future_secs)",
                    crate::time::format_micros(t),
                    crate::time::format_micros(bound)
                ),
            }),
        }
    }
    state.prune();
    let accepted =
        filter_record_batch(&rows, &BooleanArray::from(keep)).map_err(|e| e.to_string())?;
    Ok((accepted, rejected))
}

/// Schema of `silver_events` as stored: the plugin's without `input_row`,
/// plus the bronze record's position and the host's lineage columns.
pub fn stored_schema(plugin_schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = plugin_schema
        .fields()
        .iter()
        .filter(|f| f.name() != INPUT_ROW)
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(SOURCE_COLUMNS[0], DataType::Utf8, false));
    fields.push(Field::new(SOURCE_COLUMNS[1], DataType::Utf8, false));
    fields.push(Field::new(SOURCE_COLUMNS[2], DataType::Int64, false));
    super::with_lineage_fields(&Schema::new(fields))
}

/// Accepted rows as stored: `input_row` replaced by the source, partition
/// and offset of the bronze row (of `input`) each came from, then
/// `batch_id` (that bronze row's batch, so rows keep their batch whatever
/// step refined them) and `producer`.
pub fn to_stored(
    accepted: &RecordBatch,
    input: &RecordBatch,
    producer: &str,
) -> Result<RecordBatch, String> {
    let rows = column::<UInt32Array>(accepted, INPUT_ROW)?;
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in accepted.schema().fields().iter().zip(accepted.columns()) {
        if field.name() != INPUT_ROW {
            columns.push(column.clone());
        }
    }
    for name in SOURCE_COLUMNS.into_iter().chain([super::BATCH_ID]) {
        let origin = input
            .column_by_name(name)
            .ok_or_else(|| format!("bronze rows lack `{name}`"))?;
        columns.push(take(origin.as_ref(), rows, None).map_err(|e| e.to_string())?);
    }
    let schema = stored_schema(&accepted.schema());
    let n = accepted.num_rows();
    columns.push(Arc::new(StringArray::from(vec![producer; n])));
    RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
}

fn column<'a, T: 'static>(rows: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    let col = rows
        .column_by_name(name)
        .ok_or_else(|| format!("silver_events rows lack `{name}`"))?;
    if col.null_count() > 0 {
        return Err(format!("silver_events column `{name}` has nulls"));
    }
    col.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| format!("silver_events column `{name}` has the wrong type"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;
    use deltalake::arrow::datatypes::TimeUnit;

    use crate::record::RawRecord;

    const MIN: i64 = 60_000_000;
    const DAY: i64 = DEFAULT_MAX_FUTURE_MICROS;
    /// 2026-06-01T00:00:00Z, an ingest time.
    const NOW: i64 = 1_780_272_000_000_000;
    /// 9999-12-31T23:59:59Z, a client clock gone wrong.
    const Y9999: i64 = 253_402_300_799_000_000;

    /// Raw input of `n` HTTP records received at `ingest`.
    fn bronze_rows(n: usize, ingest: i64) -> RecordBatch {
        let records: Vec<RawRecord> = (0..n)
            .map(|i| RawRecord {
                payload: Bytes::from(format!("line {i}")),
                source: "http".into(),
                partition: "req-1".into(),
                offset: i as i64,
            })
            .collect();
        super::super::bronze::raw_input(&records, ingest)
    }

    /// A silver plugin's rows: row `i` is input row `i`, id `e{i}`.
    fn silver_rows(times: &[i64]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new(INPUT_ROW, DataType::UInt32, false),
            Field::new(EVENT_ID, DataType::Utf8, false),
            Field::new(
                EVENT_TIME,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]);
        let n = times.len() as u32;
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(UInt32Array::from_iter_values(0..n)),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("e{i}")),
                )),
                Arc::new(TimestampMicrosecondArray::from(times.to_vec()).with_timezone("UTC")),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_far_future_event_is_rejected_and_moves_no_watermark() {
        let mut s = DedupState::new(10 * MIN, DAY);
        assert_eq!(
            s.judge_at("bad", "http", Y9999, NOW),
            Verdict::Future { bound: NOW + DAY }
        );
        assert_eq!(s.watermark("http"), None, "the watermark did not move");
        assert_eq!(s.judge_at("ok", "http", NOW, NOW), Verdict::Accept);
        assert_eq!(
            s.judge_at("bad", "http", NOW, NOW),
            Verdict::Accept,
            "a rejected future event does not claim its id"
        );
        assert_eq!(
            s.judge_at("skewed", "http", NOW + DAY, NOW),
            Verdict::Accept,
            "exactly max_future ahead is still accepted"
        );
        assert_eq!(
            s.judge("unknown", "http", Y9999),
            Verdict::Accept,
            "no ingest time, no bound"
        );
    }

    #[test]
    fn deduplicate_quarantines_future_events_by_their_bronze_ingest_time() {
        let bronze = bronze_rows(3, NOW);
        let input = RawColumns::new(&bronze).unwrap();
        let mut s = DedupState::new(10 * MIN, DAY);
        let (accepted, rejected) =
            deduplicate(&mut s, &silver_rows(&[Y9999, NOW, NOW + MIN]), &input).unwrap();
        assert_eq!(accepted.num_rows(), 2);
        assert_eq!(rejected.len(), 1);
        assert_eq!(
            (rejected[0].input_row, rejected[0].reason),
            (0, FUTURE_TIMESTAMP)
        );
        assert!(
            rejected[0].detail.contains("9999-12-31"),
            "{}",
            rejected[0].detail
        );
        assert_eq!(s.watermark("http"), Some(NOW + MIN - 10 * MIN));
    }

    #[test]
    fn bronze_rows_without_ingest_time_are_not_bounded() {
        let full = bronze_rows(2, NOW);
        let keep: Vec<usize> = (0..full.num_columns())
            .filter(|&i| full.schema().field(i).name() != super::super::bronze::INGEST_TIME)
            .collect();
        let stripped = full.project(&keep).unwrap();
        let input = RawColumns::new(&stripped).unwrap();
        assert!(!input.has_ingest_time());
        let mut s = DedupState::new(10 * MIN, DAY);
        let (accepted, rejected) =
            deduplicate(&mut s, &silver_rows(&[NOW, Y9999]), &input).unwrap();
        assert_eq!((accepted.num_rows(), rejected.len()), (2, 0));
    }

    #[test]
    fn unbounded_lateness_and_pre_1970_times_do_not_overflow() {
        // What `lateness.allowed_secs = u64::MAX` becomes, saturated.
        let mut s = DedupState::new(i64::MAX, DAY);
        let dec_1969 = -31 * 24 * 60 * MIN;
        assert_eq!(s.judge_at("old", "http", dec_1969, NOW), Verdict::Accept);
        assert_eq!(
            s.watermark("http"),
            Some(i64::MIN),
            "saturated, not wrapped"
        );
        assert_eq!(s.judge_at("new", "http", NOW, NOW), Verdict::Accept);
        assert_eq!(
            s.judge_at("older", "http", dec_1969 - DAY, NOW),
            Verdict::Accept,
            "with unbounded lateness nothing is late"
        );
        s.prune();
        assert_eq!(s.tracked_ids(), 3);
        let restored = DedupState::restore(
            i64::MAX,
            DAY,
            [("old".to_string(), dec_1969, "http".to_string())],
        );
        assert_eq!(restored.watermark("http"), Some(i64::MIN));
        // An unbounded future skew and an event at the end of time.
        let mut s = DedupState::new(10 * MIN, i64::MAX);
        assert_eq!(s.judge_at("end", "http", i64::MAX, NOW), Verdict::Accept);
        assert_eq!(s.judge_at("start", "k", i64::MIN, NOW), Verdict::Accept);
        assert_eq!(s.watermark("k"), Some(i64::MIN));
    }

    #[test]
    fn duplicates_and_late_events_are_judged_by_arrival_order() {
        let mut s = DedupState::new(10 * MIN, DAY);
        assert_eq!(s.judge("a", "http", 100 * MIN), Verdict::Accept);
        assert_eq!(s.judge("a", "http", 100 * MIN), Verdict::Duplicate);
        assert_eq!(
            s.judge("b", "http", 95 * MIN),
            Verdict::Accept,
            "within lateness"
        );
        assert_eq!(
            s.judge("c", "http", 89 * MIN),
            Verdict::Late {
                watermark: 90 * MIN
            }
        );
        assert_eq!(s.judge("d", "http", 120 * MIN), Verdict::Accept);
        assert_eq!(
            s.judge("b", "http", 95 * MIN),
            Verdict::Late {
                watermark: 110 * MIN
            },
            "old duplicate is late"
        );
    }

    #[test]
    fn each_partition_of_a_log_has_its_own_watermark() {
        let (p0, p1) = (stream_key("kafka", "t/0"), stream_key("kafka", "t/1"));
        assert_ne!(p0, p1);
        assert_eq!(
            stream_key("file", "a.ndjson"),
            stream_key("file", "b.ndjson")
        );
        assert_eq!(stream_key("http", "req-1"), stream_key("http", "req-2"));
        let mut s = DedupState::new(10 * MIN, DAY);
        // Partition 0 read far ahead, then partition 1's backlog.
        assert_eq!(s.judge("a", &p0, 500 * MIN), Verdict::Accept);
        assert_eq!(s.judge("b", &p1, 100 * MIN), Verdict::Accept);
        assert_eq!(s.judge("c", &p1, 95 * MIN), Verdict::Accept);
        assert_eq!(
            s.judge("d", &p1, 89 * MIN),
            Verdict::Late {
                watermark: 90 * MIN
            },
            "late within its own partition"
        );
        assert_eq!(
            s.judge("b", &p0, 100 * MIN),
            Verdict::Late {
                watermark: 490 * MIN
            }
        );
        assert_eq!(
            s.judge("a", &p1, 500 * MIN),
            Verdict::Duplicate,
            "a copy in another partition"
        );
        assert_eq!(
            s.watermark(&p1),
            Some(90 * MIN),
            "a rejected copy does not advance its partition"
        );
    }

    #[test]
    fn prune_keeps_only_ids_inside_their_streams_window() {
        let mut s = DedupState::new(10 * MIN, DAY);
        for i in 0..100 {
            s.judge(&format!("e{i}"), "http", i * MIN);
            s.judge(&format!("k{i}"), "kafka:t/0", 1_000 * MIN + i * MIN);
        }
        s.prune();
        assert_eq!(
            s.tracked_ids(),
            22,
            "the last 11 minutes of each stream remain"
        );
        let restored = DedupState::restore(
            10 * MIN,
            DAY,
            (0..100).map(|i| (format!("e{i}"), i * MIN, "http".to_string())),
        );
        assert_eq!(restored.tracked_ids(), 11);
        assert_eq!(restored.watermark("http"), Some(89 * MIN));
        assert_eq!(restored.watermark("kafka:t/0"), None);
    }
}
