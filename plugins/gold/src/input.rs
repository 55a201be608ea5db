//! Reads the accepted `silver_events` rows the host feeds gold, by column
//! name, into borrowed events.

use sluice_plugin_sdk::TransformError;
use sluice_plugin_sdk::arrow_array::cast::AsArray;
use sluice_plugin_sdk::arrow_array::types::{Int64Type, TimestampMicrosecondType};
use sluice_plugin_sdk::arrow_array::{
    Array, Int64Array, LargeStringArray, RecordBatch, StringArray, StringViewArray,
    TimestampMicrosecondArray,
};
use sluice_plugin_sdk::arrow_schema::{DataType, TimeUnit};

use crate::calendar;

/// The event types gold distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Login,
    FeatureUsed,
    SessionEnd,
    PlanChanged,
    /// Counted as activity, nothing more (silver accepts no other type).
    Other,
}

impl Kind {
    fn of(event_type: &str) -> Kind {
        match event_type {
            "login" => Kind::Login,
            "feature_used" => Kind::FeatureUsed,
            "session_end" => Kind::SessionEnd,
            "plan_changed" => Kind::PlanChanged,
            _ => Kind::Other,
        }
    }
}

/// One accepted event, borrowing the input batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event<'a> {
    pub event_id: &'a str,
    pub kind: Kind,
    /// Microseconds since the epoch, UTC.
    pub time: i64,
    pub user_id: &'a str,
    pub account_id: &'a str,
    pub plan: &'a str,
    pub session_id: &'a str,
    pub feature: Option<&'a str>,
    pub platform: Option<&'a str>,
    pub duration_ms: Option<i64>,
    pub items: Option<i64>,
    pub to_plan: Option<&'a str>,
}

impl Event<'_> {
    /// Days since the epoch of the event's UTC date.
    pub(crate) fn day(&self) -> i32 {
        calendar::day_of(self.time)
    }

    pub(crate) fn date_key(&self) -> i32 {
        calendar::date_key(self.day())
    }

    /// Orders events by time, then id, so "first" never depends on row order.
    pub(crate) fn order(&self) -> (i64, &str) {
        (self.time, self.event_id)
    }
}

/// Reads every input row.
pub(crate) fn events(batch: &RecordBatch) -> Result<Vec<Event<'_>>, TransformError> {
    let required = |name| Strings::find(batch, name, true);
    let optional = |name| Strings::find(batch, name, false);
    let (event_id, event_type) = (required("event_id")?, required("event_type")?);
    let (user_id, account_id) = (required("user_id")?, required("account_id")?);
    let (plan, session_id) = (required("plan")?, required("session_id")?);
    let (feature, platform, to_plan) = (
        optional("feature")?,
        optional("platform")?,
        optional("to_plan")?,
    );
    let time = timestamps(batch, "event_time")?;
    let (duration_ms, items) = (integers(batch, "duration_ms")?, integers(batch, "items")?);
    let value = |a: &Int64Array, i| a.is_valid(i).then(|| a.value(i));
    Ok((0..batch.num_rows())
        .map(|i| Event {
            event_id: event_id.value(i),
            kind: Kind::of(event_type.value(i)),
            time: time.value(i),
            user_id: user_id.value(i),
            account_id: account_id.value(i),
            plan: plan.value(i),
            session_id: session_id.value(i),
            feature: feature.get(i),
            platform: platform.get(i),
            duration_ms: value(duration_ms, i),
            items: value(items, i),
            to_plan: to_plan.get(i),
        })
        .collect())
}

fn column<'a>(
    batch: &'a RecordBatch,
    name: &str,
    required: bool,
) -> Result<&'a dyn Array, TransformError> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| bad(format!("gold expects a `{name}` column in silver_events")))?;
    if required && column.null_count() > 0 {
        return Err(bad(format!("column `{name}` must not hold nulls")));
    }
    Ok(column.as_ref())
}

fn bad(message: String) -> TransformError {
    TransformError::BadInput(message)
}

fn timestamps<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a TimestampMicrosecondArray, TransformError> {
    let column = column(batch, name, true)?;
    match column.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            Ok(column.as_primitive::<TimestampMicrosecondType>())
        }
        other => Err(bad(format!("`{name}` must be a µs timestamp, got {other}"))),
    }
}

fn integers<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Int64Array, TransformError> {
    let column = column(batch, name, false)?;
    column.as_primitive_opt::<Int64Type>().ok_or_else(|| {
        bad(format!(
            "`{name}` must be int64, got {}",
            column.data_type()
        ))
    })
}

/// A string column in whichever layout the host read it as (Delta readers
/// may hand back views or large strings).
enum Strings<'a> {
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
}

impl<'a> Strings<'a> {
    fn find(batch: &'a RecordBatch, name: &str, required: bool) -> Result<Self, TransformError> {
        let column = column(batch, name, required)?;
        match column.data_type() {
            DataType::Utf8 => Ok(Strings::Utf8(column.as_string())),
            DataType::LargeUtf8 => Ok(Strings::Large(column.as_string())),
            DataType::Utf8View => Ok(Strings::View(column.as_string_view())),
            other => Err(bad(format!("`{name}` must be a string, got {other}"))),
        }
    }

    /// The value of a column checked to hold no nulls.
    fn value(&self, i: usize) -> &'a str {
        match self {
            Strings::Utf8(a) => a.value(i),
            Strings::Large(a) => a.value(i),
            Strings::View(a) => a.value(i),
        }
    }

    fn get(&self, i: usize) -> Option<&'a str> {
        let valid = match self {
            Strings::Utf8(a) => a.is_valid(i),
            Strings::Large(a) => a.is_valid(i),
            Strings::View(a) => a.is_valid(i),
        };
        valid.then(|| self.value(i))
    }
}
