//! Gold on a hand-built silver batch (exact rows per table), its declared
//! tables, and the `sluice plugin test` fixture.

use std::sync::Arc;

use serde_json::{Value, json};
use sluice_plugin_gold::{Gold, output_schema, table_names};
use sluice_plugin_sdk::arrow_array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, StringViewArray,
};
use sluice_plugin_sdk::arrow_schema::{DataType, Field, Schema};
use sluice_plugin_sdk::{MergeOp, Plugin, TransformError, WriteMode, ipc};
use sluice_plugin_silver::fixture::{self, render_row};

const FIXTURE_EVENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/events.ndjson");
const FIXTURE_EXPECTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/expected.ndjson");

/// 2026-01-09 (a Friday) and 2026-01-10 (a Saturday), as days since the epoch.
const FRI: i64 = 20_462;
const SAT: i64 = 20_463;

/// Microseconds of `day` at `hh:mm`, UTC.
fn at(day: i64, hh: i64, mm: i64) -> i64 {
    ((day * 24 + hh) * 60 + mm) * 60_000_000
}

/// One silver row; unset optional columns are null.
#[derive(Clone, Default)]
struct Ev {
    id: &'static str,
    event_type: &'static str,
    time: i64,
    user: &'static str,
    account: &'static str,
    plan: &'static str,
    session: &'static str,
    feature: Option<&'static str>,
    platform: Option<&'static str>,
    duration_ms: Option<i64>,
    items: Option<i64>,
    from_plan: Option<&'static str>,
    to_plan: Option<&'static str>,
}

fn ev(id: &'static str, event_type: &'static str, time: i64, user: u8, plan: &'static str) -> Ev {
    let (user, account) = match user {
        1 => ("u1", "acct1"),
        2 => ("u2", "acct2"),
        _ => ("u3", "acct3"),
    };
    Ev {
        id,
        event_type,
        time,
        user,
        account,
        plan,
        platform: Some("web"),
        ..Ev::default()
    }
}

impl Ev {
    fn session(self, session: &'static str) -> Self {
        Ev { session, ..self }
    }
    fn feature(self, feature: &'static str, duration_ms: Option<i64>, items: Option<i64>) -> Self {
        Ev {
            feature: Some(feature),
            duration_ms,
            items,
            ..self
        }
    }
    fn duration(self, duration_ms: i64) -> Self {
        Ev {
            duration_ms: Some(duration_ms),
            ..self
        }
    }
    fn platform(self, platform: Option<&'static str>) -> Self {
        Ev { platform, ..self }
    }
    fn change(self, from: &'static str, to: &'static str) -> Self {
        Ev {
            from_plan: Some(from),
            to_plan: Some(to),
            ..self
        }
    }
}

/// The hand-built batch: two days, three users, a plan change, a session of
/// two events at the same instant (tie broken by event id), an unknown feature.
fn events() -> Vec<Ev> {
    vec![
        ev("e01", "login", at(FRI, 9, 0), 1, "free").session("s1"),
        ev("e02", "feature_used", at(FRI, 9, 1), 1, "free")
            .session("s1")
            .feature("search", Some(1000), Some(2)),
        ev("e03", "feature_used", at(FRI, 9, 2), 1, "free")
            .session("s1")
            .feature("search", None, Some(1)),
        ev("e04", "feature_used", at(FRI, 9, 3), 1, "free")
            .session("s1")
            .feature("teleport", Some(500), None),
        ev("e05", "session_end", at(FRI, 9, 10), 1, "free")
            .session("s1")
            .duration(600_000),
        ev("e06", "login", at(FRI, 10, 0), 2, "free")
            .session("s2")
            .platform(Some("ios")),
        ev("e07", "plan_changed", at(FRI, 10, 5), 2, "pro")
            .session("s2")
            .change("free", "pro"),
        ev("e08", "feature_used", at(FRI, 10, 6), 2, "pro")
            .session("s2")
            .feature("api_key_create", Some(2000), Some(1)),
        ev("e09", "login", at(SAT, 8, 0), 1, "free")
            .session("s3")
            .platform(None),
        ev("e10", "feature_used", at(SAT, 8, 1), 1, "free")
            .session("s3")
            .platform(None)
            .feature("search", Some(300), Some(0)),
        ev("e12", "login", at(SAT, 12, 0), 3, "enterprise").session("s4"),
        ev("e11", "feature_used", at(SAT, 12, 0), 3, "enterprise")
            .session("s4")
            .platform(Some("android"))
            .feature("search", Some(100), Some(1)),
    ]
}

/// Rows as the host feeds gold: silver's columns minus `input_row`, plus
/// `batch_id` and `producer`.
fn silver_batch(events: &[Ev]) -> RecordBatch {
    let strings = |f: fn(&Ev) -> Option<&'static str>| -> ArrayRef {
        Arc::new(events.iter().map(f).collect::<StringArray>())
    };
    let ints = |f: fn(&Ev) -> Option<i64>| -> ArrayRef {
        Arc::new(events.iter().map(f).collect::<Int64Array>())
    };
    let schema = sluice_plugin_silver::silver_events_schema();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("event_id", strings(|e| Some(e.id))),
        ("event_type", strings(|e| Some(e.event_type))),
        (
            "event_time",
            Arc::new(
                sluice_plugin_sdk::arrow_array::TimestampMicrosecondArray::from_iter_values(
                    events.iter().map(|e| e.time),
                )
                .with_timezone("UTC"),
            ),
        ),
        (
            "event_date",
            Arc::new(
                sluice_plugin_sdk::arrow_array::Date32Array::from_iter_values(
                    events
                        .iter()
                        .map(|e| e.time.div_euclid(86_400_000_000) as i32),
                ),
            ),
        ),
        ("user_id", strings(|e| Some(e.user))),
        ("account_id", strings(|e| Some(e.account))),
        ("plan", strings(|e| Some(e.plan))),
        ("session_id", strings(|e| Some(e.session))),
        ("feature", strings(|e| e.feature)),
        ("platform", strings(|e| e.platform)),
        ("country", strings(|_| Some("US"))),
        ("app_version", strings(|_| Some("5.12.0"))),
        ("method", strings(|_| None)),
        ("duration_ms", ints(|e| e.duration_ms)),
        ("items", ints(|e| e.items)),
        ("from_plan", strings(|e| e.from_plan)),
        ("to_plan", strings(|e| e.to_plan)),
        ("properties", strings(|_| None)),
        ("extra", strings(|_| None)),
        ("batch_id", ints(|_| Some(7))),
        ("producer", strings(|_| Some("test"))),
    ];
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, column)| match schema.field_with_name(name) {
            Ok(field) => field.clone(),
            Err(_) => Field::new(*name, column.data_type().clone(), false),
        })
        .collect();
    let fields_match_silver = fields.len() == schema.fields().len() + 1; // - input_row + 2
    assert!(
        fields_match_silver,
        "test batch out of date with silver_events"
    );
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, c)| c).collect(),
    )
    .unwrap()
}

/// Runs gold; returns each emitted table's rows as JSON objects.
fn run(batch: &RecordBatch) -> Vec<(String, Vec<Value>)> {
    Gold::transform(batch)
        .expect("transform")
        .into_iter()
        .map(|(table, rows)| {
            let values = (0..rows.num_rows())
                .map(|i| {
                    let line: Value = serde_json::from_str(&render_row(&table, &rows, i)).unwrap();
                    line["row"].clone()
                })
                .collect();
            (table, values)
        })
        .collect()
}

fn rows_of<'a>(outputs: &'a [(String, Vec<Value>)], table: &str) -> &'a [Value] {
    &outputs.iter().find(|(t, _)| t == table).expect(table).1
}

#[test]
fn info_declares_eight_tables_with_their_modes() {
    let info = Gold::info();
    assert_eq!(info.name, "sluice-gold");
    assert!(matches!(info.layer, sluice_plugin_sdk::Layer::Gold));
    let names: Vec<&str> = info.outputs.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "fact_feature_usage",
            "fact_sessions",
            "fact_user_daily",
            "fact_daily_active_users",
            "dim_user",
            "dim_feature",
            "dim_date",
            "dim_plan",
        ]
    );
    assert_eq!(names, table_names());
    for spec in &info.outputs {
        let (declared, _) = ipc::read_all(&spec.schema).unwrap();
        assert_eq!(Some(declared), output_schema(&spec.name), "{}", spec.name);
        // Daily facts by day, so a MERGE rewrites only the days it touches;
        // a partition column must be a merge key (it never changes).
        let expected: &[&str] = match spec.name.as_str() {
            "fact_feature_usage" | "fact_user_daily" => &["date_key"],
            _ => &[],
        };
        assert_eq!(spec.partition_by, expected, "{}", spec.name);
        if let WriteMode::Merge(merge) = &spec.mode {
            for column in &spec.partition_by {
                assert!(merge.keys.contains(column), "{}: {column}", spec.name);
            }
        }
    }
}

/// (keys, measures with ops, order_by) of a merge table.
fn merge_spec(table: &str) -> (Vec<String>, Vec<(String, MergeOp)>, Option<String>) {
    let info = Gold::info();
    let spec = info.outputs.iter().find(|t| t.name == table).unwrap();
    let WriteMode::Merge(merge) = &spec.mode else {
        panic!("{table} is not merged")
    };
    let measures = merge
        .measures
        .iter()
        .map(|m| (m.column.clone(), m.op))
        .collect();
    (merge.keys.clone(), measures, merge.order_by.clone())
}

fn columns(table: &str) -> Vec<String> {
    let schema = output_schema(table).unwrap();
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// A merge table's expected declaration: name, keys, measures, order_by.
type MergeCase = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, MergeOp)],
    Option<&'static str>,
);

#[test]
fn merge_tables_declare_keys_measures_and_ops() {
    use MergeOp::{Any, First, Max, Min, Sum};
    let cases: [MergeCase; 6] = [
        (
            "fact_feature_usage",
            &["date_key", "feature", "user_id", "plan"],
            &[
                ("events", Sum),
                ("total_duration_ms", Sum),
                ("total_items", Sum),
                ("first_used_at", Min),
                ("last_used_at", Max),
            ],
            None,
        ),
        (
            "fact_sessions",
            &["session_id"],
            &[
                ("user_id", Any),
                ("account_id", Any),
                ("plan", First),
                ("platform", First),
                ("date_key", First),
                ("started_at", Min),
                ("ended_at", Max),
                ("events", Sum),
                ("feature_events", Sum),
                ("session_ends", Sum),
                ("duration_ms", Sum),
            ],
            Some("started_at"),
        ),
        (
            "fact_user_daily",
            &["date_key", "user_id", "plan"],
            &[
                ("account_id", Any),
                ("events", Sum),
                ("sessions", Sum),
                ("feature_events", Sum),
                ("duration_ms", Sum),
            ],
            None,
        ),
        (
            "dim_feature",
            &["feature"],
            &[
                ("category", Any),
                ("is_advanced", Any),
                ("first_used_at", Min),
                ("last_used_at", Max),
            ],
            None,
        ),
        (
            "dim_date",
            &["date_key"],
            &[
                ("date", Any),
                ("year", Any),
                ("quarter", Any),
                ("month", Any),
                ("day", Any),
                ("weekday", Any),
                ("is_weekend", Any),
            ],
            None,
        ),
        (
            "dim_plan",
            &["plan"],
            &[("display_name", Any), ("tier", Any), ("is_paid", Any)],
            None,
        ),
    ];
    for (table, keys, measures, order_by) in cases {
        let (k, m, o) = merge_spec(table);
        assert_eq!(k, keys, "{table} keys");
        let expected: Vec<(String, MergeOp)> = measures
            .iter()
            .map(|(c, op)| (c.to_string(), *op))
            .collect();
        assert_eq!(m, expected, "{table} measures");
        assert_eq!(o.as_deref(), order_by, "{table} order_by");
        // Keys first, then measures, and nothing else.
        let mut declared: Vec<String> = k.clone();
        declared.extend(m.iter().map(|(c, _)| c.clone()));
        assert_eq!(columns(table), declared, "{table} columns");
    }
}

#[test]
fn scd2_and_derived_tables_are_declared() {
    let info = Gold::info();
    let mode = |name: &str| &info.outputs.iter().find(|t| t.name == name).unwrap().mode;
    let WriteMode::Scd2(scd2) = mode("dim_user") else {
        panic!("dim_user is scd2")
    };
    assert_eq!(scd2.key, "user_id");
    assert_eq!(scd2.tracked, ["account_id", "plan"]);
    assert_eq!(
        (scd2.at.as_str(), scd2.is_change.as_str()),
        ("observed_at", "is_change")
    );
    assert_eq!(
        columns("dim_user"),
        ["user_id", "account_id", "plan", "observed_at", "is_change"]
    );
    let WriteMode::Derived(derived) = mode("fact_daily_active_users") else {
        panic!("fact_daily_active_users is derived")
    };
    assert_eq!(
        derived.sql,
        "SELECT date_key, plan, COUNT(*) AS active_users, SUM(events) AS events, \
         SUM(sessions) AS sessions, SUM(feature_events) AS feature_events \
         FROM fact_user_daily GROUP BY date_key, plan"
    );
    assert_eq!(derived.keys, ["date_key", "plan"]);
    assert_eq!(derived.scope, "date_key");
    let schema = output_schema("fact_daily_active_users").unwrap();
    let shape: Vec<(&str, &DataType, bool)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type(), f.is_nullable()))
        .collect();
    assert_eq!(
        shape,
        [
            ("date_key", &DataType::Int32, false),
            ("plan", &DataType::Utf8, false),
            ("active_users", &DataType::Int64, false),
            ("events", &DataType::Int64, false),
            ("sessions", &DataType::Int64, false),
            ("feature_events", &DataType::Int64, false),
        ]
    );
}

#[test]
fn emitted_batches_match_declared_schemas() {
    for batch in [silver_batch(&events()), silver_batch(&[])] {
        let outputs = Gold::transform(&batch).unwrap();
        let emitted: Vec<&str> = outputs.iter().map(|(t, _)| t.as_str()).collect();
        let expected: Vec<&str> = table_names()
            .into_iter()
            .filter(|t| *t != "fact_daily_active_users")
            .collect();
        assert_eq!(emitted, expected, "every table but the derived one");
        for (table, rows) in &outputs {
            assert_eq!(Some(rows.schema()), output_schema(table), "{table}");
        }
    }
}

#[test]
fn timestamps_and_nullability_follow_the_contract() {
    let schema = output_schema("fact_sessions").unwrap();
    for field in schema.fields() {
        assert_eq!(
            field.is_nullable(),
            field.name() == "platform",
            "{}",
            field.name()
        );
    }
    let started = schema.field_with_name("started_at").unwrap();
    assert_eq!(
        started.data_type(),
        &sluice_plugin_sdk::schemas::timestamp_type()
    );
}

#[test]
fn fact_feature_usage_rows() {
    let out = run(&silver_batch(&events()));
    let row = |date_key, feature, user, plan, n, dur, items, first, last| {
        json!({"date_key": date_key, "feature": feature, "user_id": user, "plan": plan,
               "events": n, "total_duration_ms": dur, "total_items": items,
               "first_used_at": first, "last_used_at": last})
    };
    assert_eq!(
        rows_of(&out, "fact_feature_usage"),
        [
            row(
                20260109,
                "api_key_create",
                "u2",
                "pro",
                1,
                2000,
                1,
                at(FRI, 10, 6),
                at(FRI, 10, 6)
            ),
            // A null duration counts 0; a null item count too.
            row(
                20260109,
                "search",
                "u1",
                "free",
                2,
                1000,
                3,
                at(FRI, 9, 1),
                at(FRI, 9, 2)
            ),
            row(
                20260109,
                "teleport",
                "u1",
                "free",
                1,
                500,
                0,
                at(FRI, 9, 3),
                at(FRI, 9, 3)
            ),
            row(
                20260110,
                "search",
                "u1",
                "free",
                1,
                300,
                0,
                at(SAT, 8, 1),
                at(SAT, 8, 1)
            ),
            row(
                20260110,
                "search",
                "u3",
                "enterprise",
                1,
                100,
                1,
                at(SAT, 12, 0),
                at(SAT, 12, 0)
            ),
        ]
    );
}

#[test]
fn fact_sessions_rows() {
    let out = run(&silver_batch(&events()));
    let row = |session,
               user,
               account,
               plan,
               platform: Option<&str>,
               date_key,
               span: (i64, i64),
               counts: [i64; 4]| {
        json!({"session_id": session, "user_id": user, "account_id": account, "plan": plan,
               "platform": platform, "date_key": date_key,
               "started_at": span.0, "ended_at": span.1, "events": counts[0],
               "feature_events": counts[1], "session_ends": counts[2], "duration_ms": counts[3]})
    };
    assert_eq!(
        rows_of(&out, "fact_sessions"),
        [
            row(
                "s1",
                "u1",
                "acct1",
                "free",
                Some("web"),
                20260109,
                (at(FRI, 9, 0), at(FRI, 9, 10)),
                [5, 3, 1, 600_000]
            ),
            // The plan at the session's first event, before the change.
            row(
                "s2",
                "u2",
                "acct2",
                "free",
                Some("ios"),
                20260109,
                (at(FRI, 10, 0), at(FRI, 10, 6)),
                [3, 1, 0, 0]
            ),
            row(
                "s3",
                "u1",
                "acct1",
                "free",
                None,
                20260110,
                (at(SAT, 8, 0), at(SAT, 8, 1)),
                [2, 1, 0, 0]
            ),
            // Two events at 12:00: e11 sorts first, so its platform wins.
            row(
                "s4",
                "u3",
                "acct3",
                "enterprise",
                Some("android"),
                20260110,
                (at(SAT, 12, 0), at(SAT, 12, 0)),
                [2, 1, 0, 0]
            ),
        ]
    );
}

#[test]
fn fact_user_daily_rows() {
    let out = run(&silver_batch(&events()));
    let row = |date_key, user, plan, account, counts: [i64; 4]| {
        json!({"date_key": date_key, "user_id": user, "plan": plan, "account_id": account,
               "events": counts[0], "sessions": counts[1], "feature_events": counts[2],
               "duration_ms": counts[3]})
    };
    assert_eq!(
        rows_of(&out, "fact_user_daily"),
        [
            // Feature durations only: the session_end's 600 000 ms is not here.
            row(20260109, "u1", "free", "acct1", [5, 1, 3, 1500]),
            row(20260109, "u2", "free", "acct2", [1, 1, 0, 0]),
            row(20260109, "u2", "pro", "acct2", [2, 0, 1, 2000]),
            row(20260110, "u1", "free", "acct1", [2, 1, 1, 300]),
            row(20260110, "u3", "enterprise", "acct3", [2, 1, 1, 100]),
        ]
    );
}

#[test]
fn dim_user_rows() {
    let out = run(&silver_batch(&events()));
    let row = |user, account, plan, observed_at, is_change| {
        json!({"user_id": user, "account_id": account, "plan": plan,
               "observed_at": observed_at, "is_change": is_change})
    };
    assert_eq!(
        rows_of(&out, "dim_user"),
        [
            row("u1", "acct1", "free", at(FRI, 9, 0), false),
            row("u2", "acct2", "free", at(FRI, 10, 0), false),
            row("u2", "acct2", "pro", at(FRI, 10, 5), true),
            row("u3", "acct3", "enterprise", at(SAT, 12, 0), false),
        ]
    );
}

#[test]
fn dimension_rows() {
    let out = run(&silver_batch(&events()));
    assert_eq!(
        rows_of(&out, "dim_feature"),
        [
            json!({"feature": "api_key_create", "category": "admin", "is_advanced": true,
                   "first_used_at": at(FRI, 10, 6), "last_used_at": at(FRI, 10, 6)}),
            json!({"feature": "search", "category": "core", "is_advanced": false,
                   "first_used_at": at(FRI, 9, 1), "last_used_at": at(SAT, 12, 0)}),
            json!({"feature": "teleport", "category": "other", "is_advanced": false,
                   "first_used_at": at(FRI, 9, 3), "last_used_at": at(FRI, 9, 3)}),
        ]
    );
    assert_eq!(
        rows_of(&out, "dim_date"),
        [
            json!({"date_key": 20260109, "date": FRI, "year": 2026, "quarter": 1, "month": 1,
                   "day": 9, "weekday": "Friday", "is_weekend": false}),
            json!({"date_key": 20260110, "date": SAT, "year": 2026, "quarter": 1, "month": 1,
                   "day": 10, "weekday": "Saturday", "is_weekend": true}),
        ]
    );
    assert_eq!(
        rows_of(&out, "dim_plan"),
        [
            json!({"plan": "enterprise", "display_name": "Enterprise", "tier": 2, "is_paid": true}),
            json!({"plan": "free", "display_name": "Free", "tier": 0, "is_paid": false}),
            json!({"plan": "pro", "display_name": "Pro", "tier": 1, "is_paid": true}),
        ]
    );
}

#[test]
fn output_does_not_depend_on_row_order() {
    let mut reversed = events();
    reversed.reverse();
    assert_eq!(run(&silver_batch(&events())), run(&silver_batch(&reversed)));
}

#[test]
fn columns_are_found_by_name_in_any_string_layout() {
    let batch = silver_batch(&events());
    // Reverse the columns and hand `user_id` over as a view array.
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()).rev() {
        if field.name() == "user_id" {
            let values = column.as_any().downcast_ref::<StringArray>().unwrap();
            let view: StringViewArray = values.iter().collect();
            fields.push(Field::new("user_id", DataType::Utf8View, false));
            columns.push(Arc::new(view));
        } else {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
        }
    }
    let shuffled = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    assert_eq!(run(&shuffled), run(&batch));
}

#[test]
fn malformed_input_is_bad_input() {
    let batch = silver_batch(&events());
    let without_plan = {
        let keep: Vec<usize> = (0..batch.num_columns())
            .filter(|i| batch.schema().field(*i).name() != "plan")
            .collect();
        batch.project(&keep).unwrap()
    };
    let Err(TransformError::BadInput(message)) = Gold::transform(&without_plan) else {
        panic!("a missing column is bad input")
    };
    assert!(message.contains("plan"), "{message}");

    let batch = silver_batch(&events());
    let index = batch.schema().index_of("user_id").unwrap();
    let mut columns = batch.columns().to_vec();
    columns[index] = Arc::new(StringArray::from(vec![None::<&str>; batch.num_rows()]));
    let nullable_schema = Schema::new(
        batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    );
    let nulls = RecordBatch::try_new(Arc::new(nullable_schema), columns).unwrap();
    assert!(matches!(
        Gold::transform(&nulls),
        Err(TransformError::BadInput(_))
    ));
}

#[test]
fn ipc_path_gives_the_same_rows() {
    let batch = silver_batch(&events());
    let wire = sluice_plugin_sdk::run_ipc::<Gold>(&ipc::write_batch(&batch).unwrap()).unwrap();
    let native = Gold::transform(&batch).unwrap();
    assert_eq!(wire.len(), native.len());
    for (w, (table, rows)) in wire.iter().zip(&native) {
        assert_eq!(&w.table, table);
        assert_eq!(&ipc::read_single(&w.ipc).unwrap(), rows);
    }
}

/// Runs the fixture as `sluice plugin test` does: lines → silver → gold.
fn fixture_outputs() -> Vec<sluice_plugin_sdk::TableRows> {
    let lines = std::fs::read(FIXTURE_EVENTS).expect("fixture events");
    let silver = fixture::run_silver(&lines);
    let quarantined = silver.iter().find(|(t, _)| t == "quarantine").unwrap();
    assert_eq!(
        quarantined.1.num_rows(),
        0,
        "gold fixture events must all be valid"
    );
    Gold::transform(&fixture::gold_input(&silver)).expect("gold transform")
}

#[test]
fn fixture_expectation_is_up_to_date() {
    let expected = std::fs::read_to_string(FIXTURE_EXPECTED).expect("fixture expectation");
    let actual = fixture::expected_file(&fixture_outputs());
    for (i, (a, e)) in actual.lines().zip(expected.lines()).enumerate() {
        assert_eq!(a, e, "line {} of fixtures/expected.ndjson", i + 1);
    }
    assert_eq!(actual.lines().count(), expected.lines().count());
}

/// Rewrites the fixture expectation from the plugin's current output. Check
/// the diff by hand before committing it.
#[test]
#[ignore = "rewrites fixtures/expected.ndjson"]
fn regenerate_fixture_expectation() {
    let expected = fixture::expected_file(&fixture_outputs());
    std::fs::write(FIXTURE_EXPECTED, expected).expect("write expectation");
}
