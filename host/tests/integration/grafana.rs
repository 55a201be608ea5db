//! `docs/grafana-dashboard.json` is a dashboard Grafana can import, and
//! every metric its queries name is one Sluice records.

use std::collections::BTreeSet;

#[test]
fn the_grafana_dashboard_names_only_recorded_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("docs/grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let recorded = std::fs::read_to_string(root.join("host/src/metrics.rs")).unwrap();
    let mut named = BTreeSet::new();
    for panel in panels {
        assert!(panel["title"].is_string() && panel["gridPos"].is_object());
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for metric in metric_names(expr) {
                named.insert(metric);
            }
        }
    }
    for metric in &named {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| metric.strip_suffix(s))
            .unwrap_or(metric);
        assert!(
            recorded.contains(&format!("\"{base}\"")),
            "{metric} is not recorded by host/src/metrics.rs"
        );
    }
    for needed in [
        "sluice_tier_position",
        "sluice_event_to_gold_seconds_bucket",
        "sluice_events_quarantined_total",
        "sluice_source_lag_events",
    ] {
        assert!(named.contains(needed), "{needed} has a panel");
    }
}

/// The `sluice_…` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("sluice_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}
