//! Statistical shape of a clean stream: plan-dependent feature use, upgrades,
//! Zipf-like feature popularity, session length and day/night load.

mod common;

use std::collections::HashMap;

use chrono::Timelike;
use common::{Parsed, good_events, group_by, plan_tier, run};
use sluice_simulator::SimConfig;
use sluice_simulator::catalog::{FEATURES, is_advanced_feature};

fn clean(events: u64) -> Vec<Parsed> {
    good_events(&run(SimConfig {
        events,
        ..SimConfig::default()
    }))
}

#[test]
fn paid_plans_use_advanced_features_far_more_than_free() {
    let events = clean(40_000);
    let share = |paid: bool| {
        let used: Vec<&Parsed> = events
            .iter()
            .filter(|e| e.event_type == "feature_used" && (e.plan != "free") == paid)
            .collect();
        let advanced = used
            .iter()
            .filter(|e| is_advanced_feature(e.feature.as_deref().unwrap()))
            .count();
        (advanced as f64 / used.len() as f64, used.len())
    };
    let (free, free_n) = share(false);
    let (paid, paid_n) = share(true);
    assert!(
        free_n > 5_000 && paid_n > 5_000,
        "{free_n} free, {paid_n} paid feature events"
    );
    assert!(
        free < 0.01,
        "free users use advanced features {:.2}% of the time",
        free * 100.0
    );
    assert!(
        paid > 0.04,
        "paid users use advanced features only {:.2}%",
        paid * 100.0
    );
    assert!(paid > 5.0 * free, "paid {paid:.4} vs free {free:.4}");
    let free_sso = events
        .iter()
        .filter(|e| e.plan == "free" && e.feature.as_deref() == Some("sso_configure"))
        .count();
    assert_eq!(free_sso, 0, "free plans cannot configure SSO");
}

#[test]
fn upgrades_happen_and_later_events_carry_the_new_plan() {
    let events = clean(30_000);
    let changes: Vec<&Parsed> = events
        .iter()
        .filter(|e| e.event_type == "plan_changed")
        .collect();
    assert!(
        changes.len() >= 3,
        "only {} plan changes in 30k events",
        changes.len()
    );
    let by_account = group_by(&events, |e| &e.account_id);
    for change in &changes {
        let (from, to) = (change.prop_str("from_plan"), change.prop_str("to_plan"));
        assert_eq!(
            plan_tier(to),
            plan_tier(from) + 1,
            "{from} -> {to} is not an upgrade"
        );
        for e in &by_account[&change.account_id] {
            if e.ts > change.ts {
                // The user and their colleagues are on the new plan (or a later upgrade).
                assert!(
                    plan_tier(&e.plan) >= plan_tier(to),
                    "{} after upgrade to {to}: {:?}",
                    e.plan,
                    e
                );
            } else if e.ts < change.ts {
                assert!(
                    plan_tier(&e.plan) <= plan_tier(from),
                    "{} before upgrade from {from}",
                    e.plan
                );
            }
        }
        let later_same_user = events
            .iter()
            .filter(|e| e.user_id == change.user_id && e.ts > change.ts)
            .count();
        assert!(
            later_same_user > 0,
            "no events after the upgrade of {}",
            change.user_id
        );
    }
}

#[test]
fn feature_popularity_is_zipf_like() {
    let events = clean(20_000);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for e in events.iter().filter_map(|e| e.feature.as_deref()) {
        *counts.entry(e).or_default() += 1;
    }
    let top = counts[FEATURES[0]];
    assert!(
        counts.values().all(|&c| c <= top),
        "{} is not the most used",
        FEATURES[0]
    );
    assert!(top > 2 * counts[FEATURES[4]], "head not heavy: {counts:?}");
    assert!(
        counts[FEATURES[4]] > 2 * counts[FEATURES[16]],
        "tail not light: {counts:?}"
    );
    assert!(counts.len() >= 18, "only {} features used", counts.len());
}

#[test]
fn sessions_average_about_six_features_lasting_seconds_to_minutes() {
    let events = clean(20_000);
    let sessions = group_by(&events, |e| &e.session_id);
    let features = events
        .iter()
        .filter(|e| e.event_type == "feature_used")
        .count();
    let mean = features as f64 / sessions.len() as f64;
    assert!(
        (4.5..=7.5).contains(&mean),
        "mean {mean:.2} features per session"
    );
    let mut lengths: Vec<u64> = events
        .iter()
        .filter(|e| e.event_type == "session_end")
        .map(|e| e.prop_u64("duration_ms"))
        .collect();
    lengths.sort_unstable();
    let median = lengths[lengths.len() / 2];
    assert!(
        (30_000..=1_800_000).contains(&median),
        "median session {median} ms"
    );
}

#[test]
fn load_follows_a_day_night_curve() {
    let events = clean(20_000);
    let mut per_hour = [0usize; 24];
    for e in events.iter().filter(|e| e.event_type == "login") {
        per_hour[e.ts.hour() as usize] += 1;
    }
    let (max, min) = (
        *per_hour.iter().max().unwrap(),
        *per_hour.iter().min().unwrap(),
    );
    assert!(
        max > 3 * min.max(1),
        "logins per UTC hour too flat: {per_hour:?}"
    );
}

#[test]
fn most_accounts_are_free_and_few_enterprise() {
    let events = clean(20_000);
    let mut first_plan: HashMap<&str, &str> = HashMap::new();
    for e in &events {
        first_plan.entry(&e.account_id).or_insert(&e.plan);
    }
    let count = |p: &str| first_plan.values().filter(|&&v| v == p).count();
    let (free, pro, ent) = (count("free"), count("pro"), count("enterprise"));
    assert!(
        free > pro && pro > ent && ent > 0,
        "free {free}, pro {pro}, enterprise {ent}"
    );
}
