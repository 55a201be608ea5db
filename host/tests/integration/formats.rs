//! `sluice query` and `sluice report` print tables, CSV, JSON and NDJSON:
//! parsing any of them gives back the values the table shows, with CSV
//! quoting, nulls and timestamps intact.

use std::process::Command;

use chrono::DateTime;
use serde_json::Value;

use crate::common;

/// Columns of every kind the lake holds, a string needing CSV quotes, and
/// nulls.
const QUERY: &str = "SELECT user_id, plan, date_key, events, \
    CAST(events AS DOUBLE) / 3 AS third, first_used_at, \
    feature || ', \"quoted\"' AS awkward, \
    CASE WHEN events > 1 THEN NULL ELSE feature END AS sometimes \
    FROM fact_feature_usage ORDER BY date_key, feature, user_id, plan LIMIT 300";

fn sluice_query(lake: &std::path::Path, format: &str) -> String {
    common::run_ok(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["query", QUERY, "--format", format, "--lake"])
            .arg(lake),
    )
}

/// One cell in a form every format agrees on: numbers by value, times by
/// instant, null as empty.
fn canonical(cell: &str) -> String {
    if let Ok(n) = cell.parse::<f64>() {
        return format!("number {n}");
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(cell) {
        return format!("time {}", t.timestamp_micros());
    }
    format!("text {cell}")
}

fn json_cell(value: &Value) -> String {
    match value {
        Value::Null => canonical(""),
        Value::String(s) => canonical(s),
        other => canonical(&other.to_string()),
    }
}

/// The pretty table: header and rows between `|`.
fn parse_table(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = text.lines().filter(|l| l.starts_with('|')).map(|l| {
        l.trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect::<Vec<_>>()
    });
    let header = lines.next().expect("a header");
    (header, lines.collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_and_report_formats_round_trip_to_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    common::write_lines(&file, &common::simulated_lines(23, 2_500, 0.02));
    let lake = dir.path().join("lake");
    let mut config = common::replay_config(&lake, vec![file], 1_000);
    config.dashboard.listen = String::new();
    common::run_to_end(&config).await;

    let (header, table) = parse_table(&sluice_query(&lake, "table"));
    assert_eq!(header[0], "user_id");
    assert!(table.len() > 100, "{} rows", table.len());
    let want: Vec<Vec<String>> = table
        .iter()
        .map(|r| r.iter().map(|c| canonical(c)).collect())
        .collect();
    assert!(
        want.iter().any(|r| r[7] == canonical("")) && want.iter().any(|r| r[7] != canonical("")),
        "some nulls, some values"
    );

    let csv = sluice_query(&lake, "csv");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let csv_header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(csv_header, header);
    let from_csv: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(canonical).collect())
        .collect();
    assert_eq!(from_csv, want, "CSV gives the table's values");
    assert!(csv.contains("\"\""), "quotes inside a field are doubled");

    let json: Vec<serde_json::Map<String, Value>> =
        serde_json::from_str(&sluice_query(&lake, "json")).unwrap();
    let ndjson: Vec<serde_json::Map<String, Value>> = sluice_query(&lake, "ndjson")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json, ndjson);
    for row in &json {
        assert!(
            row["events"].is_i64() && row["third"].is_f64(),
            "typed: {row:?}"
        );
    }
    let from_json: Vec<Vec<String>> = json
        .iter()
        .map(|row| header.iter().map(|h| json_cell(&row[h.as_str()])).collect())
        .collect();
    assert_eq!(from_json, want, "JSON gives the table's values");

    // The report: every section, in order, with the rows of its query.
    let report = common::run_ok(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["report", "--format", "json", "--lake"])
            .arg(&lake),
    );
    let sections: Vec<Value> = serde_json::from_str(&report).unwrap();
    assert_eq!(sections.len(), sluice::query::REPORT.len());
    for (section, (title, sql)) in sections.iter().zip(sluice::query::REPORT) {
        assert_eq!(section["section"], title);
        let rows = common::rows(&lake, sql).await;
        assert_eq!(
            section["rows"].as_array().unwrap().len(),
            rows.len(),
            "{title}"
        );
    }
    let report_csv = common::run_ok(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["report", "--format", "csv", "--lake"])
            .arg(&lake),
    );
    let titles: Vec<&str> = report_csv
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .collect();
    let expected: Vec<&str> = sluice::query::REPORT.iter().map(|(t, _)| *t).collect();
    assert_eq!(titles, expected);
}
