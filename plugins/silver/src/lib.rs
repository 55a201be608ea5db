//! Default silver transform: parses and validates each bronze record's JSON
//! event into typed `silver_events` rows, and quarantines the rest with a reason.
//!
//! Deduplication and lateness are not done here: the host applies them to
//! this plugin's output, so replays give the same rows.

mod event;
#[cfg(not(target_arch = "wasm32"))]
pub mod fixture;
mod validate;

use std::sync::{Arc, OnceLock};

use sluice_plugin_sdk::arrow_array::builder::{
    Date32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder, UInt32Builder,
};
use sluice_plugin_sdk::arrow_array::cast::AsArray;
use sluice_plugin_sdk::arrow_array::{Array, ArrayRef, RecordBatch};
use sluice_plugin_sdk::arrow_schema::{DataType, Field, Schema};
use sluice_plugin_sdk::schemas::{self, INPUT_ROW, QUARANTINE, timestamp_type};
use sluice_plugin_sdk::{Layer, Plugin, PluginInfo, TableRows, TransformError, WriteMode};

use event::{RawEvent, Shape};
pub use validate::{EVENT_TYPES, PLANS, Reason, Rejection, parse_rfc3339_micros};
use validate::{Valid, validate};

/// Name of the table of accepted events.
pub const SILVER_EVENTS: &str = "silver_events";

/// Name of the input column holding each record's bytes.
pub const RAW: &str = "raw";

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The default silver plugin.
pub struct Silver;

/// Schema of `silver_events` rows as emitted; the host strips `input_row`.
pub fn silver_events_schema() -> Arc<Schema> {
    static SCHEMA: OnceLock<Arc<Schema>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let utf8 = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
            Arc::new(Schema::new(vec![
                Field::new(INPUT_ROW, DataType::UInt32, false),
                utf8("event_id", false),
                utf8("event_type", false),
                Field::new("event_time", timestamp_type(), false),
                Field::new("event_date", DataType::Date32, false),
                utf8("user_id", false),
                utf8("account_id", false),
                utf8("plan", false),
                utf8("session_id", false),
                utf8("feature", true),
                utf8("platform", true),
                utf8("country", true),
                utf8("app_version", true),
                utf8("method", true),
                Field::new("duration_ms", DataType::Int64, true),
                Field::new("items", DataType::Int64, true),
                utf8("from_plan", true),
                utf8("to_plan", true),
                utf8("properties", true),
                utf8("extra", true),
            ]))
        })
        .clone()
}

/// Schema of `quarantine` rows as emitted (the contract's shape).
pub fn quarantine_schema() -> Arc<Schema> {
    schemas::quarantine_output()
}

impl Plugin for Silver {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "sluice-silver".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            layer: Layer::Silver,
            description: "Validated, typed product-usage events; the rest quarantined".into(),
            outputs: vec![
                sluice_plugin_sdk::table(
                    SILVER_EVENTS,
                    "Validated product-usage events, one row per accepted event",
                    &silver_events_schema(),
                    &["event_date"],
                    WriteMode::Append,
                ),
                sluice_plugin_sdk::table(
                    QUARANTINE,
                    "Records rejected by silver validation, with the first rule broken",
                    &quarantine_schema(),
                    &[],
                    WriteMode::Append,
                ),
            ],
            limits: sluice_plugin_sdk::ResourceLimits::HOST_DEFAULTS,
        }
    }

    fn transform(input: &RecordBatch) -> Result<Vec<TableRows>, TransformError> {
        let raw = RawColumn::find(input)?;
        let mut accepted = SilverBuilder::with_capacity(raw.len(), raw.value_bytes());
        let mut rejected = QuarantineBuilder::default();
        let mut event = RawEvent::default();
        for row in 0..raw.len() {
            let row_id = u32::try_from(row)
                .map_err(|_| TransformError::BadInput("batch exceeds u32::MAX rows".into()))?;
            if let Err(why) = process(raw.value(row), row_id, &mut event, &mut accepted) {
                rejected.append(row_id, &why);
            }
        }
        Ok(vec![
            (SILVER_EVENTS.to_string(), accepted.finish()?),
            (QUARANTINE.to_string(), rejected.finish()?),
        ])
    }
}

/// Parses, validates and appends one record; the error is its quarantine row.
/// `event` is scratch space reused from record to record.
fn process<'a>(
    raw: Option<&'a [u8]>,
    row: u32,
    event: &mut RawEvent<'a>,
    out: &mut SilverBuilder,
) -> Result<(), Rejection> {
    let bytes = raw.unwrap_or_default().trim_ascii();
    if bytes.is_empty() {
        return Err(Rejection::new(Reason::EmptyRecord, "record is empty"));
    }
    match event.parse(bytes) {
        Ok(Shape::Object) => {}
        Ok(Shape::Null) => return Err(not_an_object("null")),
        Ok(Shape::Other(kind)) => return Err(not_an_object(kind)),
        Err(e) => return Err(Rejection::new(Reason::InvalidJson, e.to_string())),
    }
    let valid = validate(event)?;
    out.append(row, &valid, event);
    Ok(())
}

fn not_an_object(kind: &str) -> Rejection {
    Rejection::new(
        Reason::NotAnObject,
        format!("expected a JSON object, found {kind}"),
    )
}

/// The `raw` input column, whichever binary layout the host sent.
enum RawColumn<'a> {
    Binary(&'a sluice_plugin_sdk::arrow_array::BinaryArray),
    LargeBinary(&'a sluice_plugin_sdk::arrow_array::LargeBinaryArray),
    View(&'a sluice_plugin_sdk::arrow_array::BinaryViewArray),
}

impl<'a> RawColumn<'a> {
    /// Finds `raw` by name: the host appends columns (`batch_id`, `producer`).
    fn find(input: &'a RecordBatch) -> Result<Self, TransformError> {
        let column = input.column_by_name(RAW).ok_or_else(|| {
            TransformError::BadInput(format!("silver expects a `{RAW}` column in bronze_events"))
        })?;
        match column.data_type() {
            DataType::Binary => Ok(RawColumn::Binary(column.as_binary())),
            DataType::LargeBinary => Ok(RawColumn::LargeBinary(column.as_binary())),
            DataType::BinaryView => Ok(RawColumn::View(column.as_binary_view())),
            other => Err(TransformError::BadInput(format!(
                "`{RAW}` must be binary, got {other}"
            ))),
        }
    }

    fn len(&self) -> usize {
        match self {
            RawColumn::Binary(a) => a.len(),
            RawColumn::LargeBinary(a) => a.len(),
            RawColumn::View(a) => a.len(),
        }
    }

    /// Total bytes, to size the output string buffers once.
    fn value_bytes(&self) -> usize {
        match self {
            RawColumn::Binary(a) => a.values().len(),
            RawColumn::LargeBinary(a) => a.values().len(),
            RawColumn::View(a) => a.total_buffer_bytes_used(),
        }
    }

    fn value(&self, row: usize) -> Option<&'a [u8]> {
        match self {
            RawColumn::Binary(a) => a.is_valid(row).then(|| a.value(row)),
            RawColumn::LargeBinary(a) => a.is_valid(row).then(|| a.value(row)),
            RawColumn::View(a) => a.is_valid(row).then(|| a.value(row)),
        }
    }
}

/// Column builders of `silver_events`, in schema order.
struct SilverBuilder {
    input_row: UInt32Builder,
    event_id: StringBuilder,
    event_type: StringBuilder,
    event_time: TimestampMicrosecondBuilder,
    event_date: Date32Builder,
    user_id: StringBuilder,
    account_id: StringBuilder,
    plan: StringBuilder,
    session_id: StringBuilder,
    feature: StringBuilder,
    platform: StringBuilder,
    country: StringBuilder,
    app_version: StringBuilder,
    method: StringBuilder,
    duration_ms: Int64Builder,
    items: Int64Builder,
    from_plan: StringBuilder,
    to_plan: StringBuilder,
    properties: StringBuilder,
    extra: StringBuilder,
    /// Reused buffer for the JSON columns.
    scratch: String,
}

impl SilverBuilder {
    fn with_capacity(rows: usize, raw_bytes: usize) -> Self {
        // Ids are short; the JSON columns share at most the raw bytes.
        let short = || StringBuilder::with_capacity(rows, rows * 24);
        SilverBuilder {
            input_row: UInt32Builder::with_capacity(rows),
            event_id: StringBuilder::with_capacity(rows, rows * 36),
            event_type: short(),
            event_time: TimestampMicrosecondBuilder::with_capacity(rows)
                .with_data_type(timestamp_type()),
            event_date: Date32Builder::with_capacity(rows),
            user_id: short(),
            account_id: short(),
            plan: short(),
            session_id: short(),
            feature: short(),
            platform: short(),
            country: short(),
            app_version: short(),
            method: short(),
            duration_ms: Int64Builder::with_capacity(rows),
            items: Int64Builder::with_capacity(rows),
            from_plan: StringBuilder::new(),
            to_plan: StringBuilder::new(),
            properties: StringBuilder::with_capacity(rows, raw_bytes / 8),
            extra: StringBuilder::new(),
            scratch: String::new(),
        }
    }

    fn append(&mut self, row: u32, valid: &Valid<'_>, event: &RawEvent<'_>) {
        let f = &valid.fields;
        self.input_row.append_value(row);
        self.event_id.append_value(f.event_id);
        self.event_type.append_value(valid.event_type);
        self.event_time.append_value(valid.event_time);
        self.event_date.append_value(utc_days(valid.event_time));
        self.user_id.append_value(f.user_id);
        self.account_id.append_value(f.account_id);
        self.plan.append_value(f.plan);
        self.session_id.append_value(f.session_id);
        self.feature.append_option(f.feature);
        self.platform.append_option(f.platform.as_deref());
        self.country.append_option(f.country.as_deref());
        self.app_version.append_option(f.app_version);
        self.method.append_option(f.method);
        self.duration_ms.append_option(f.duration_ms);
        self.items.append_option(f.items);
        self.from_plan.append_option(f.from_plan);
        self.to_plan.append_option(f.to_plan);
        self.append_json(event);
    }

    /// `properties` re-serialised compactly; `extra` null when there is none.
    fn append_json(&mut self, event: &RawEvent<'_>) {
        if event.properties.shape == Shape::Object {
            self.scratch.clear();
            event::write_compact_object(&event.properties.entries, &mut self.scratch);
            self.properties.append_value(&self.scratch);
        } else {
            self.properties.append_null();
        }
        if event.extra.is_empty() {
            self.extra.append_null();
        } else {
            self.scratch.clear();
            event::write_compact_object(&event.extra, &mut self.scratch);
            self.extra.append_value(&self.scratch);
        }
    }

    fn finish(mut self) -> Result<RecordBatch, TransformError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.input_row.finish()),
            Arc::new(self.event_id.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.event_time.finish()),
            Arc::new(self.event_date.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.account_id.finish()),
            Arc::new(self.plan.finish()),
            Arc::new(self.session_id.finish()),
            Arc::new(self.feature.finish()),
            Arc::new(self.platform.finish()),
            Arc::new(self.country.finish()),
            Arc::new(self.app_version.finish()),
            Arc::new(self.method.finish()),
            Arc::new(self.duration_ms.finish()),
            Arc::new(self.items.finish()),
            Arc::new(self.from_plan.finish()),
            Arc::new(self.to_plan.finish()),
            Arc::new(self.properties.finish()),
            Arc::new(self.extra.finish()),
        ];
        RecordBatch::try_new(silver_events_schema(), columns)
            .map_err(|e| TransformError::Internal(format!("silver_events: {e}")))
    }
}

/// Column builders of `quarantine`.
#[derive(Default)]
struct QuarantineBuilder {
    input_row: UInt32Builder,
    reason: StringBuilder,
    detail: StringBuilder,
}

impl QuarantineBuilder {
    fn append(&mut self, row: u32, why: &Rejection) {
        self.input_row.append_value(row);
        self.reason.append_value(why.reason.as_str());
        self.detail.append_value(&why.detail);
    }

    fn finish(mut self) -> Result<RecordBatch, TransformError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.input_row.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.detail.finish()),
        ];
        RecordBatch::try_new(quarantine_schema(), columns)
            .map_err(|e| TransformError::Internal(format!("quarantine: {e}")))
    }
}

/// The UTC date (days since the epoch) of a microsecond timestamp.
fn utc_days(micros: i64) -> i32 {
    // Timestamps come from 4-digit-year RFC 3339 text, so the day fits i32.
    micros.div_euclid(MICROS_PER_DAY) as i32
}

#[cfg(all(target_arch = "wasm32", feature = "export"))]
sluice_plugin_sdk::export_plugin!(Silver);
