//! Every good line satisfies the event contract, and sessions are coherent.

mod common;

use std::collections::HashSet;

use chrono::Duration;
use common::{faulty, good_events, group_by, parse_strict, run};
use sluice_simulator::{EventKind, SimConfig};

#[test]
fn every_good_and_duplicate_line_satisfies_the_contract() {
    let stream = run(faulty(20_000, 0.05));
    let mut checked = 0;
    for e in &stream {
        if !matches!(e.kind, EventKind::Malformed(_)) {
            parse_strict(&e.line).unwrap_or_else(|r| panic!("{:?} {r:?}: {}", e.kind, e.line));
            checked += 1;
        }
    }
    assert!(checked > 18_000, "only {checked} good lines");
}

#[test]
fn the_documented_example_shape_is_what_we_emit() {
    let stream = run(SimConfig {
        events: 50,
        ..SimConfig::default()
    });
    let first = &stream[0].line;
    assert!(first.starts_with("{\"event_id\":\""), "{first}");
    let order = [
        "event_id",
        "user_id",
        "account_id",
        "plan",
        "event_type",
        "session_id",
        "timestamp",
        "platform",
        "country",
        "app_version",
        "properties",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|k| first.find(&format!("\"{k}\":")).expect(k))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "field order: {first}"
    );
    // A clean stream starts with a login: sessions open before they do anything.
    assert_eq!(parse_strict(first).unwrap().event_type, "login");
}

#[test]
fn event_ids_are_unique_across_good_and_malformed_lines() {
    let stream = run(faulty(20_000, 0.05));
    let mut ids = HashSet::new();
    for e in &stream {
        if e.kind == EventKind::Duplicate {
            continue;
        }
        // Malformed lines that still carry an id must not reuse a good one.
        let Some(pos) = e.line.find("event_id") else {
            continue;
        };
        let after = pos + "event_id".len();
        let start = after
            + e.line[after..]
                .find(|c: char| c.is_ascii_hexdigit())
                .unwrap_or(0);
        if let Some(id) = e
            .line
            .get(start..start + 36)
            .filter(|id| uuid::Uuid::parse_str(id).is_ok())
        {
            assert!(ids.insert(id.to_owned()), "id {id} reused: {}", e.line);
        }
    }
    assert!(ids.len() > 18_000);
}

#[test]
fn sessions_are_login_then_features_then_end() {
    let stream = run(faulty(20_000, 0.05));
    let events = good_events(&stream);
    let sessions = group_by(&events, |e| &e.session_id);
    let mut ended = 0;
    for (id, mut evs) in sessions {
        evs.sort_by_key(|e| e.ts);
        let logins = evs.iter().filter(|e| e.event_type == "login").count();
        let ends = evs.iter().filter(|e| e.event_type == "session_end").count();
        // Late hold-backs and the stream's end can drop a session's first or last event.
        assert!(
            logins <= 1 && ends <= 1,
            "session {id}: {logins} logins, {ends} ends"
        );
        assert!(
            evs.iter()
                .all(|e| e.user_id == evs[0].user_id && e.platform == evs[0].platform)
        );
        if logins == 1 {
            assert_eq!(
                evs[0].event_type, "login",
                "session {id} does not start with login"
            );
        }
        if ends == 1 {
            assert_eq!(
                evs.last().unwrap().event_type,
                "session_end",
                "session {id}"
            );
        }
        for w in evs.windows(2) {
            assert!(
                w[0].ts < w[1].ts,
                "session {id}: timestamps must strictly increase"
            );
        }
        if logins == 1 && ends == 1 {
            let end = evs.last().unwrap();
            let length = (end.ts - evs[0].ts).num_milliseconds() as u64;
            assert_eq!(end.prop_u64("duration_ms"), length, "session {id}");
            ended += 1;
        }
    }
    assert!(ended > 1_500, "only {ended} complete sessions");
}

#[test]
fn normal_lines_arrive_in_event_time_order_over_the_configured_days() {
    let cfg = SimConfig {
        events: 20_000,
        ..SimConfig::default()
    };
    let start = cfg.start;
    let stream = run(cfg);
    let events = good_events(&stream);
    assert!(stream.iter().all(|e| e.kind == EventKind::Normal));
    assert!(
        events.windows(2).all(|w| w[0].ts <= w[1].ts),
        "not in event-time order"
    );
    assert!(events[0].ts >= start);
    let last = events.last().unwrap().ts;
    assert!(
        last > start + Duration::days(2) && last < start + Duration::days(4),
        "3 simulated days ended at {last}"
    );
}
