//! Silver on hand-written events, the independent sample file and the
//! `sluice plugin test` fixture.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use sluice_plugin_sdk::arrow_array::RecordBatch;
use sluice_plugin_sdk::arrow_array::cast::AsArray;
use sluice_plugin_sdk::arrow_array::types::UInt32Type;
use sluice_plugin_sdk::{Plugin, TransformError, WriteMode, ipc};
use sluice_plugin_silver::fixture::{self, bronze_rows, records, render_row};
use sluice_plugin_silver::{
    Reason, SILVER_EVENTS, Silver, quarantine_schema, silver_events_schema,
};

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/samples/events-independent.ndjson"
);
const FIXTURE_EVENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/events.ndjson");
const FIXTURE_EXPECTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/expected.ndjson");

/// A complete, valid event to derive test lines from.
const VALID: &str = r#"{"event_id":"e-1","user_id":"u_1","account_id":"acct_1","plan":"pro","event_type":"feature_used","feature":"search","session_id":"s_1","timestamp":"2026-01-05T10:00:00.123Z","platform":"web","country":"US","app_version":"5.12.0","properties":{"duration_ms":1500,"items":2}}"#;

/// Runs silver on raw records; returns (`silver_events`, `quarantine`).
fn run(records: &[&[u8]]) -> (RecordBatch, RecordBatch) {
    let outputs = Silver::transform(&bronze_rows(records)).expect("transform");
    let tables: Vec<&str> = outputs.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tables, [SILVER_EVENTS, "quarantine"]);
    (outputs[0].1.clone(), outputs[1].1.clone())
}

fn row_json(batch: &RecordBatch, row: usize) -> Value {
    let line: Value = serde_json::from_str(&render_row("t", batch, row)).unwrap();
    line["row"].clone()
}

/// The one accepted row of `line`, as JSON (fixture format).
fn accept(line: &str) -> Value {
    let (events, quarantine) = run(&[line.as_bytes()]);
    assert_eq!(quarantine.num_rows(), 0, "{line} was quarantined: {:?}", {
        (quarantine.num_rows() > 0).then(|| row_json(&quarantine, 0))
    });
    assert_eq!(events.num_rows(), 1);
    row_json(&events, 0)
}

/// The (reason, detail) `line` is quarantined with.
fn reject(line: &[u8]) -> (String, String) {
    let (events, quarantine) = run(&[line]);
    assert_eq!(
        events.num_rows(),
        0,
        "{} was accepted",
        String::from_utf8_lossy(line)
    );
    let row = row_json(&quarantine, 0);
    (
        row["reason"].as_str().unwrap().to_string(),
        row["detail"].as_str().unwrap().to_string(),
    )
}

/// `VALID` with top-level fields replaced (`null` removes them).
fn with(changes: Value) -> String {
    edit(VALID, |event| {
        for (key, value) in changes.as_object().unwrap() {
            match value {
                Value::Null => event.remove(key),
                v => event.insert(key.clone(), v.clone()),
            };
        }
    })
}

fn edit(line: &str, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut event: Value = serde_json::from_str(line).unwrap();
    f(event.as_object_mut().unwrap());
    event.to_string()
}

fn input_rows(batch: &RecordBatch) -> Vec<u32> {
    let column = batch.column_by_name("input_row").unwrap();
    column.as_primitive::<UInt32Type>().values().to_vec()
}

#[test]
fn info_declares_both_append_outputs() {
    let info = Silver::info();
    assert_eq!(info.name, "sluice-silver");
    assert!(matches!(info.layer, sluice_plugin_sdk::Layer::Silver));
    let names: Vec<&str> = info.outputs.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, [SILVER_EVENTS, "quarantine"]);
    for (spec, schema) in info
        .outputs
        .iter()
        .zip([silver_events_schema(), quarantine_schema()])
    {
        assert!(matches!(spec.mode, WriteMode::Append), "{}", spec.name);
        let (declared, _) = ipc::read_all(&spec.schema).unwrap();
        assert_eq!(declared, schema, "{}", spec.name);
    }
    assert_eq!(info.outputs[0].partition_by, ["event_date"]);
    assert!(info.outputs[1].partition_by.is_empty());
}

#[test]
fn emitted_schemas_match_declared() {
    let (events, quarantine) = run(&[VALID.as_bytes(), b"{"]);
    assert_eq!(events.schema(), silver_events_schema());
    assert_eq!(quarantine.schema(), quarantine_schema());
    // Empty batches too: the host always gets both tables.
    let (events, quarantine) = run(&[]);
    assert_eq!((events.num_rows(), quarantine.num_rows()), (0, 0));
    assert_eq!(events.schema(), silver_events_schema());
}

#[test]
fn valid_event_round_trips_every_column() {
    let row = accept(VALID);
    assert_eq!(
        row,
        json!({
            "input_row": 0,
            "event_id": "e-1",
            "event_type": "feature_used",
            "event_time": 1_767_607_200_123_000_i64,
            "event_date": 20_458,
            "user_id": "u_1",
            "account_id": "acct_1",
            "plan": "pro",
            "session_id": "s_1",
            "feature": "search",
            "platform": "web",
            "country": "US",
            "app_version": "5.12.0",
            "method": null,
            "duration_ms": 1500,
            "items": 2,
            "from_plan": null,
            "to_plan": null,
            "properties": "{\"duration_ms\":1500,\"items\":2}",
            "extra": null,
        })
    );
}

#[test]
fn plan_changed_and_login_lift_their_properties() {
    let row = accept(&with(json!({
        "event_type": "plan_changed", "feature": null,
        "properties": {"from_plan": "free", "to_plan": "pro"}
    })));
    assert_eq!(
        (&row["from_plan"], &row["to_plan"]),
        (&json!("free"), &json!("pro"))
    );
    assert_eq!(row["feature"], Value::Null);
    let row = accept(&with(json!({
        "event_type": "login", "feature": null, "properties": {"method": "sso"}
    })));
    assert_eq!(row["method"], "sso");
    assert_eq!(row["duration_ms"], Value::Null);
}

#[test]
fn unknown_fields_land_in_extra_and_unknown_properties_stay() {
    let line = VALID
        .replace(r#""plan":"pro","#, r#""plan":"pro","experiment":"b","#)
        .replace(
            r#""items":2}"#,
            r#""items":2,"source":"shortcut"},"ab":{"arm":[1,2],"w":null}"#,
        );
    let row = accept(&line);
    // Compact, in input order.
    assert_eq!(
        row["extra"],
        r#"{"experiment":"b","ab":{"arm":[1,2],"w":null}}"#
    );
    assert_eq!(
        row["properties"],
        r#"{"duration_ms":1500,"items":2,"source":"shortcut"}"#
    );
    assert_eq!(
        accept(VALID)["extra"],
        Value::Null,
        "null when there is none"
    );
}

#[test]
fn extra_keeps_raw_json_text_compacted() {
    let line = VALID.replace(
        r#""plan":"pro","#,
        "\"plan\":\"pro\", \"x\" : [ 1.50 , \"a  b\" ],\n\"y\":1e3,",
    );
    let row = accept(&line);
    // Numbers keep their spelling: the plugin never re-encodes unknown values.
    assert_eq!(row["extra"], r#"{"x":[1.50,"a  b"],"y":1e3}"#);
}

#[test]
fn strings_are_trimmed_and_codes_normalised() {
    let row = accept(&with(json!({
        "event_id": " e-1 ", "user_id": "\tu_1", "feature": " search ",
        "platform": " IOS ", "country": "fr ", "app_version": "", "event_type": " feature_used ",
        "timestamp": " 2026-01-05T10:00:00Z "
    })));
    assert_eq!(row["event_id"], "e-1");
    assert_eq!(row["user_id"], "u_1");
    assert_eq!(row["feature"], "search");
    assert_eq!(row["platform"], "ios");
    assert_eq!(row["country"], "FR");
    assert_eq!(
        row["app_version"],
        Value::Null,
        "empty optional string is null"
    );
    assert_eq!(row["event_type"], "feature_used");
}

#[test]
fn timestamps_are_converted_to_utc_microseconds() {
    let micros = |ts: &str| {
        let row = accept(&with(json!({ "timestamp": ts })));
        (
            row["event_time"].as_i64().unwrap(),
            row["event_date"].as_i64().unwrap(),
        )
    };
    let base = 1_767_607_200_000_000; // 2026-01-05T10:00:00Z, day 20458
    assert_eq!(micros("2026-01-05T10:00:00Z"), (base, 20_458));
    assert_eq!(micros("2026-01-05T12:00:00+02:00"), (base, 20_458));
    assert_eq!(micros("2026-01-05T10:00:00.5Z"), (base + 500_000, 20_458));
    assert_eq!(
        micros("2026-01-05T10:00:00.123456789Z"),
        (base + 123_456, 20_458)
    );
    // The UTC date, not the producer's local date.
    assert_eq!(
        micros("2026-01-05T23:30:00-02:00"),
        (base + 55_800_000_000, 20_459)
    );
    assert_eq!(micros("2026-01-05T00:30:00+01:00").1, 20_457);
}

#[test]
fn each_rule_is_recognised() {
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (b"  \t ".to_vec(), "empty_record", "record is empty"),
        (b"".to_vec(), "empty_record", "record is empty"),
        (
            br#"{"event_id":"e-1","user_id":"#.to_vec(),
            "invalid_json",
            "EOF while parsing a value at line 1 column 28",
        ),
        (
            b"{\"a\":1} trailing".to_vec(),
            "invalid_json",
            "trailing characters at line 1 column 9",
        ),
        (
            b"[\"login\"]".to_vec(),
            "not_an_object",
            "expected a JSON object, found an array",
        ),
        (
            b"42".to_vec(),
            "not_an_object",
            "expected a JSON object, found a number",
        ),
        (
            b"null".to_vec(),
            "not_an_object",
            "expected a JSON object, found null",
        ),
        (
            with(json!({"user_id": null})).into_bytes(),
            "missing_field",
            "user_id",
        ),
        (
            with(json!({"event_id": ""})).into_bytes(),
            "missing_field",
            "event_id",
        ),
        (
            with(json!({"session_id": "  "})).into_bytes(),
            "missing_field",
            "session_id",
        ),
        (
            with(json!({"timestamp": null})).into_bytes(),
            "missing_field",
            "timestamp",
        ),
        (
            with(json!({"account_id": null})).into_bytes(),
            "missing_field",
            "account_id",
        ),
        (
            with(json!({"plan": null})).into_bytes(),
            "missing_field",
            "plan",
        ),
        (
            with(json!({"event_type": null})).into_bytes(),
            "missing_field",
            "event_type",
        ),
        (
            with(json!({"feature": null})).into_bytes(),
            "missing_field",
            "feature",
        ),
        (
            with(json!({"event_type": "plan_changed", "properties": {"from_plan": "free"}}))
                .into_bytes(),
            "missing_field",
            "properties.to_plan",
        ),
        (
            with(json!({"event_type": "plan_changed", "properties": null})).into_bytes(),
            "missing_field",
            "properties.to_plan",
        ),
        (
            with(json!({"user_id": 42})).into_bytes(),
            "invalid_field",
            "user_id: expected a string, found an integer",
        ),
        (
            with(json!({"plan": "gold"})).into_bytes(),
            "invalid_field",
            r#"plan: "gold" is not one of free|pro|enterprise"#,
        ),
        (
            with(json!({"plan": "Pro"})).into_bytes(),
            "invalid_field",
            r#"plan: "Pro" is not one of free|pro|enterprise"#,
        ),
        (
            with(json!({"country": ["US"]})).into_bytes(),
            "invalid_field",
            "country: expected a string, found an array",
        ),
        (
            with(json!({"properties": [1]})).into_bytes(),
            "invalid_field",
            "properties: expected an object, found an array",
        ),
        (
            with(json!({"properties": {"duration_ms": 1.5}})).into_bytes(),
            "invalid_field",
            "properties.duration_ms: expected an integer, found a non-integer number",
        ),
        (
            with(json!({"properties": {"items": "3"}})).into_bytes(),
            "invalid_field",
            "properties.items: expected an integer, found a string",
        ),
        (
            with(json!({"properties": {"method": true}})).into_bytes(),
            "invalid_field",
            "properties.method: expected a string, found a boolean",
        ),
        (
            with(json!({"properties": {"to_plan": "platinum"}})).into_bytes(),
            "invalid_field",
            r#"properties.to_plan: "platinum" is not one of free|pro|enterprise"#,
        ),
        (
            with(json!({"properties": {"from_plan": "trial", "to_plan": "pro"}})).into_bytes(),
            "invalid_field",
            r#"properties.from_plan: "trial" is not one of free|pro|enterprise"#,
        ),
        (
            with(json!({"properties": {"duration_ms": 9_223_372_036_854_775_808_u64}}))
                .into_bytes(),
            "invalid_field",
            "properties.duration_ms: expected an integer, found a non-integer number",
        ),
        (
            with(json!({"event_type": "featureUsed"})).into_bytes(),
            "unknown_event_type",
            r#"event_type "featureUsed" is not one of login|feature_used|session_end|plan_changed"#,
        ),
        (
            with(json!({"event_type": "LOGIN"})).into_bytes(),
            "unknown_event_type",
            r#"event_type "LOGIN" is not one of login|feature_used|session_end|plan_changed"#,
        ),
        (
            with(json!({"timestamp": "03/05/2025 10:00"})).into_bytes(),
            "invalid_timestamp",
            r#"timestamp "03/05/2025 10:00" is not RFC 3339: premature end of input"#,
        ),
        (
            with(json!({"timestamp": "2026-01-05T10:00:00"})).into_bytes(),
            "invalid_timestamp",
            r#"timestamp "2026-01-05T10:00:00" is not RFC 3339: premature end of input"#,
        ),
        (
            with(json!({"timestamp": "2026-01-05 at 10:00:00Z"})).into_bytes(),
            "invalid_timestamp",
            r#"timestamp "2026-01-05 at 10:00:00Z" is not RFC 3339: input contains invalid characters"#,
        ),
        (
            with(json!({"timestamp": "2026-02-30T10:00:00Z"})).into_bytes(),
            "invalid_timestamp",
            r#"timestamp "2026-02-30T10:00:00Z" is not RFC 3339: input is out of range"#,
        ),
        (
            with(json!({"properties": {"duration_ms": -5, "items": 1}})).into_bytes(),
            "negative_duration",
            "properties.duration_ms is -5",
        ),
        (
            with(json!({"properties": {"duration_ms": 5, "items": -1}})).into_bytes(),
            "negative_items",
            "properties.items is -1",
        ),
        (
            br#"{"event_id":"a","event_id":"b"}"#.to_vec(),
            "invalid_json",
            "duplicate field `event_id` at line 1 column 26",
        ),
    ];
    let failures: Vec<String> = cases
        .into_iter()
        .filter_map(|(line, reason, detail)| {
            let got = reject(&line);
            (got != (reason.to_string(), detail.to_string())).then(|| {
                let text = String::from_utf8_lossy(&line);
                format!("{text}\n  got      {got:?}\n  expected ({reason:?}, {detail:?})")
            })
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn first_failing_rule_wins() {
    let broken = json!({
        "user_id": null, "plan": "gold", "event_type": "nope", "timestamp": "x",
        "properties": {"duration_ms": -1}
    });
    // Drop one problem at a time: the next rule in order takes over.
    let steps = [
        (json!({}), "missing_field"),
        (json!({"user_id": "u"}), "invalid_field"),
        (json!({"user_id": "u", "plan": "pro"}), "unknown_event_type"),
        (
            json!({"user_id": "u", "plan": "pro", "event_type": "login"}),
            "invalid_timestamp",
        ),
        (
            json!({"user_id": "u", "plan": "pro", "event_type": "login",
                   "timestamp": "2026-01-05T10:00:00Z"}),
            "negative_duration",
        ),
    ];
    for (fixes, reason) in steps {
        let mut changes = broken.clone();
        for (k, v) in fixes.as_object().unwrap() {
            changes[k] = v.clone();
        }
        assert_eq!(reject(with(changes).as_bytes()).0, reason, "fixes {fixes}");
    }
    // Within a rule, fields are checked in contract order.
    let line = with(json!({"event_id": null, "session_id": null}));
    assert_eq!(reject(line.as_bytes()).1, "event_id");
}

#[test]
fn long_values_are_cut_in_details() {
    let long = "x".repeat(500);
    let (_, detail) = reject(with(json!({ "event_type": long })).as_bytes());
    assert!(detail.len() < 150, "{detail}");
    assert!(
        detail.contains(&format!("\"{}…\"", "x".repeat(64))),
        "{detail}"
    );
}

#[test]
fn rows_keep_their_input_position() {
    let lines: Vec<&[u8]> = vec![b"{", VALID.as_bytes(), b"", VALID.as_bytes()];
    let (events, quarantine) = run(&lines);
    assert_eq!(input_rows(&events), [1, 3]);
    assert_eq!(input_rows(&quarantine), [0, 2]);
}

#[test]
fn missing_or_mistyped_raw_column_is_bad_input() {
    let batch = bronze_rows(&[b"{}"]);
    let without_raw = batch.project(&[1, 2, 3]).unwrap();
    assert!(matches!(
        Silver::transform(&without_raw),
        Err(TransformError::BadInput(_))
    ));
    // `raw` found by name, wherever it is.
    let moved = batch.project(&[8, 7, 0]).unwrap();
    assert_eq!(Silver::transform(&moved).unwrap()[1].1.num_rows(), 1);
    let wrong_type = batch.project(&[1]).unwrap();
    let renamed = RecordBatch::try_new(
        std::sync::Arc::new(sluice_plugin_sdk::arrow_schema::Schema::new(vec![
            sluice_plugin_sdk::arrow_schema::Field::new(
                "raw",
                sluice_plugin_sdk::arrow_schema::DataType::Utf8,
                false,
            ),
        ])),
        wrong_type.columns().to_vec(),
    )
    .unwrap();
    assert!(matches!(
        Silver::transform(&renamed),
        Err(TransformError::BadInput(_))
    ));
}

#[test]
fn ipc_path_gives_the_same_rows() {
    let input = ipc::write_batch(&bronze_rows(&[VALID.as_bytes(), b"x"])).unwrap();
    let outputs = sluice_plugin_sdk::run_ipc::<Silver>(&input).unwrap();
    let native = Silver::transform(&bronze_rows(&[VALID.as_bytes(), b"x"])).unwrap();
    assert_eq!(outputs.len(), native.len());
    for (wire, (table, batch)) in outputs.iter().zip(&native) {
        assert_eq!(&wire.table, table);
        assert_eq!(&ipc::read_single(&wire.ipc).unwrap(), batch);
    }
}

/// Reads the independent sample, or says why the test is skipped.
fn sample() -> Option<Vec<u8>> {
    match std::fs::read(SAMPLE) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            println!("skipped: sample {SAMPLE} unavailable ({e})");
            None
        }
    }
}

#[test]
fn sample_lines_each_land_in_exactly_one_output() {
    let Some(bytes) = sample() else { return };
    let lines = records(&bytes);
    let (events, quarantine) = run(&lines);
    let mut seen: Vec<u32> = input_rows(&events);
    seen.extend(input_rows(&quarantine));
    seen.sort_unstable();
    assert_eq!(seen, (0..lines.len() as u32).collect::<Vec<_>>());
    // About 0.5 % is malformed: most lines must pass.
    assert!(
        events.num_rows() * 100 > lines.len() * 97,
        "{}",
        events.num_rows()
    );
    assert!(quarantine.num_rows() > 0);
}

#[test]
fn sample_quarantine_reasons_are_known_and_cover_its_defects() {
    let Some(bytes) = sample() else { return };
    let (_, quarantine) = run(&records(&bytes));
    let known: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    let reasons: BTreeSet<String> = (0..quarantine.num_rows())
        .map(|i| {
            row_json(&quarantine, i)["reason"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for reason in &reasons {
        assert!(known.contains(reason.as_str()), "unknown reason {reason}");
    }
    // The defects its README lists.
    for expected in [
        "invalid_json",
        "missing_field",
        "unknown_event_type",
        "invalid_timestamp",
        "negative_duration",
    ] {
        assert!(reasons.contains(expected), "no {expected} in {reasons:?}");
    }
}

#[test]
fn output_is_deterministic() {
    let Some(bytes) = sample() else { return };
    let lines = records(&bytes);
    assert_eq!(run(&lines), run(&lines));
}

#[test]
fn fixture_expectation_is_up_to_date() {
    let events = std::fs::read(FIXTURE_EVENTS).expect("fixture events");
    let expected = std::fs::read_to_string(FIXTURE_EXPECTED).expect("fixture expectation");
    let actual = fixture::expected_file(&fixture::run_silver(&events));
    for (i, (a, e)) in actual.lines().zip(expected.lines()).enumerate() {
        assert_eq!(a, e, "line {} of fixtures/expected.ndjson", i + 1);
    }
    assert_eq!(actual.lines().count(), expected.lines().count());
}

#[test]
fn fixture_covers_every_rule_and_event_type() {
    let events = std::fs::read(FIXTURE_EVENTS).expect("fixture events");
    let outputs = fixture::run_silver(&events);
    let column = |table: usize, name: &str| -> BTreeSet<String> {
        let batch = &outputs[table].1;
        (0..batch.num_rows())
            .map(|i| row_json(batch, i)[name].as_str().unwrap().to_string())
            .collect()
    };
    // `sluice plugin test` skips blank lines, so a fixture has no empty record.
    let reasons: BTreeSet<String> = Reason::ALL
        .iter()
        .filter(|r| **r != Reason::EmptyRecord)
        .map(|r| r.as_str().into())
        .collect();
    assert_eq!(column(1, "reason"), reasons);
    let types: BTreeSet<String> = sluice_plugin_silver::EVENT_TYPES
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(column(0, "event_type"), types);
}

/// Rewrites the fixture expectation from the plugin's current output. Check
/// the diff by hand before committing it.
#[test]
#[ignore = "rewrites fixtures/expected.ndjson"]
fn regenerate_fixture_expectation() {
    let events = std::fs::read(FIXTURE_EVENTS).expect("fixture events");
    let expected = fixture::expected_file(&fixture::run_silver(&events));
    std::fs::write(FIXTURE_EXPECTED, expected).expect("write expectation");
}

/// Native throughput on the sample, repeated; run with `--release`.
#[test]
#[ignore = "benchmark: cargo test --release -- --ignored throughput --nocapture"]
fn throughput() {
    let Some(bytes) = sample() else { return };
    let lines = records(&bytes);
    let batch: Vec<&[u8]> = lines.iter().cycle().take(100_000).copied().collect();
    let input = bronze_rows(&batch);
    let runs = 20;
    let start = std::time::Instant::now();
    for _ in 0..runs {
        std::hint::black_box(Silver::transform(&input).unwrap());
    }
    let per_second = (runs * batch.len()) as f64 / start.elapsed().as_secs_f64();
    println!("silver: {per_second:.0} events/s");
}
