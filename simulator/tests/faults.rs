//! Duplicate, late and malformed lines appear at the configured rates and
//! each is exactly the fault it claims to be.

mod common;

use std::collections::{HashMap, HashSet};

use chrono::DateTime;
use common::{faulty, parse_strict, rejection_matches, run};
use sluice_simulator::{EventKind, MalformedKind, SimConfig};

fn count(stream: &[sluice_simulator::SimEvent], pred: impl Fn(EventKind) -> bool) -> usize {
    stream.iter().filter(|e| pred(e.kind)).count()
}

#[test]
fn observed_fractions_match_the_configured_ones() {
    let stream = run(faulty(20_000, 0.05));
    let expected = 1_000.0;
    let observed = [
        ("duplicate", count(&stream, |k| k == EventKind::Duplicate)),
        ("late", count(&stream, |k| k == EventKind::Late)),
        (
            "malformed",
            count(&stream, |k| matches!(k, EventKind::Malformed(_))),
        ),
    ];
    for (name, n) in observed {
        let ratio = n as f64 / expected;
        assert!(
            (0.8..=1.2).contains(&ratio),
            "{name}: {n} lines, expected ~{expected}"
        );
    }
    let normal = count(&stream, |k| k == EventKind::Normal);
    assert!((16_500..=17_500).contains(&normal), "{normal} normal lines");
}

#[test]
fn no_faults_by_default() {
    let stream = run(SimConfig::default());
    assert_eq!(stream.len(), 10_000);
    assert!(stream.iter().all(|e| e.kind == EventKind::Normal));
}

#[test]
fn duplicates_repeat_an_earlier_good_line_a_few_to_a_few_hundred_lines_later() {
    let stream = run(faulty(20_000, 0.05));
    let mut first_seen: HashMap<&str, usize> = HashMap::new();
    let mut distances = Vec::new();
    for (i, e) in stream.iter().enumerate() {
        match e.kind {
            EventKind::Normal | EventKind::Late => {
                first_seen.entry(e.line.as_str()).or_insert(i);
            }
            EventKind::Duplicate => {
                let original = first_seen
                    .get(e.line.as_str())
                    .unwrap_or_else(|| panic!("duplicate of nothing earlier: {}", e.line));
                distances.push(i - original);
            }
            EventKind::Malformed(_) => {}
        }
    }
    assert!(!distances.is_empty());
    let (min, max) = (
        distances.iter().min().unwrap(),
        distances.iter().max().unwrap(),
    );
    assert!(
        *min >= 3,
        "a duplicate came only {min} lines after its original"
    );
    assert!(
        *max <= 1_000,
        "a duplicate came {max} lines after its original"
    );
    assert!(
        *max >= 100,
        "duplicates never travel far (max distance {max})"
    );
}

#[test]
fn late_lines_are_older_than_the_stream_by_at_least_late_min() {
    let cfg = faulty(20_000, 0.05);
    let late_min = chrono::Duration::from_std(cfg.late_min).unwrap();
    let stream = run(cfg);
    let mut stream_max = DateTime::<chrono::Utc>::MIN_UTC;
    let mut lateness = Vec::new();
    for e in &stream {
        let Ok(parsed) = parse_strict(&e.line) else {
            continue;
        };
        if e.kind == EventKind::Late {
            let behind = stream_max - parsed.ts;
            assert!(
                behind >= late_min,
                "late line only {behind} behind: {}",
                e.line
            );
            lateness.push(behind.num_minutes());
        }
        stream_max = stream_max.max(parsed.ts);
    }
    // Log-uniform delays between 1 min and 6 h: both sides of a 1 h allowed lateness.
    let within_hour = lateness.iter().filter(|&&m| m < 60).count();
    let beyond_hour = lateness.len() - within_hour;
    assert!(
        within_hour > 200 && beyond_hour > 200,
        "{within_hour} within 1h, {beyond_hour} beyond"
    );
    assert!(
        lateness.iter().all(|&m| m <= 6 * 60 + 30),
        "lateness far beyond late_max"
    );
}

#[test]
fn malformed_lines_are_rejected_for_their_kind() {
    let stream = run(faulty(20_000, 0.05));
    let mut seen = HashSet::new();
    for e in &stream {
        let EventKind::Malformed(kind) = e.kind else {
            continue;
        };
        let reject = parse_strict(&e.line).expect_err(&format!("{kind:?} accepted: {}", e.line));
        assert!(
            rejection_matches(kind, &reject),
            "{kind:?} line rejected as {reject:?}: {}",
            e.line
        );
        if kind == MalformedKind::UnparsableTimestamp {
            // Not only our strict format: no RFC 3339 parser takes it.
            let v: serde_json::Value = serde_json::from_str(&e.line).unwrap();
            let ts = v["timestamp"].as_str().unwrap();
            assert!(DateTime::parse_from_rfc3339(ts).is_err(), "{ts} parses");
        }
        seen.insert(kind);
    }
    for kind in MalformedKind::ALL {
        assert!(
            seen.contains(&kind),
            "no {} line in 1000 malformed",
            kind.as_str()
        );
    }
}

#[test]
fn faults_do_not_change_the_underlying_events() {
    // `events` and `duplicate_fraction` set the session rate, so keep them equal.
    let clean = run(SimConfig {
        events: 20_000,
        ..SimConfig::default()
    });
    let last_clean = parse_strict(&clean.last().unwrap().line).unwrap().ts;
    let clean: HashSet<String> = clean.into_iter().map(|e| e.line).collect();
    let noisy = run(SimConfig {
        events: 20_000,
        late_fraction: 0.1,
        malformed_fraction: 0.1,
        ..SimConfig::default()
    });
    let mut compared = 0;
    for e in noisy
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Normal | EventKind::Late))
    {
        // Holding events back makes the noisy run draw a few more events than the clean one.
        if parse_strict(&e.line).unwrap().ts < last_clean {
            assert!(
                clean.contains(&e.line),
                "fault injection altered an event: {}",
                e.line
            );
            compared += 1;
        }
    }
    assert!(compared > 15_000, "only {compared} events compared");
}

#[test]
fn extreme_fractions_still_yield_exactly_events_lines() {
    let all_bad = run(SimConfig {
        events: 500,
        malformed_fraction: 1.0,
        ..SimConfig::default()
    });
    assert_eq!(all_bad.len(), 500);
    assert!(
        all_bad
            .iter()
            .all(|e| matches!(e.kind, EventKind::Malformed(_)))
    );

    let heavy = run(SimConfig {
        events: 3_000,
        duplicate_fraction: 0.3,
        late_fraction: 0.3,
        malformed_fraction: 0.3,
        ..SimConfig::default()
    });
    assert_eq!(heavy.len(), 3_000);
}
