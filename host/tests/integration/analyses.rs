//! The analyses (retention, stickiness, active days, feature adoption and
//! first use, lifecycle, the business charts) equal this test's own
//! computation over the accepted events: after a run over simulated events
//! with duplicates, late and malformed ones; after a late event that moves
//! an earlier cohort; and after a replay that undoes it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use serde_json::{Value, json};
use sluice::analyses::{Filter, PlanFilter};
use sluice::lifecycle::ReplayFrom;
use sluice::runtime::Layer;

use crate::common::{self, Event, Expected};

/// Days since 1970-01-01, as the lake's rows show a DATE.
fn epoch_days(day: NaiveDate) -> i64 {
    (day - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days()
}

fn day_of(micros: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap()
        .date_naive()
}

fn monday(day: NaiveDate) -> NaiveDate {
    day - Days::new(u64::from(day.weekday().num_days_from_monday()))
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// Floats to six decimals, so a last-bit difference in a quotient is no
/// failure but a wrong count or share still is.
fn normalized(rows: impl IntoIterator<Item = Value>) -> Vec<String> {
    fn fix(v: Value) -> Value {
        match v {
            Value::Number(n) if n.is_f64() => json!(format!("{:.6}", n.as_f64().unwrap())),
            Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, fix(v))).collect()),
            other => other,
        }
    }
    let mut out: Vec<String> = rows.into_iter().map(|v| fix(v).to_string()).collect();
    out.sort();
    out
}

async fn actual(lake: &std::path::Path, sql: &str) -> Vec<String> {
    normalized(
        common::rows(lake, sql)
            .await
            .iter()
            .map(|r| serde_json::from_str(r).unwrap()),
    )
}

const SEGMENTS: [&str; 3] = ["all", "free", "paid"];

/// What the analyses must say, computed from the accepted events alone.
struct Analyses<'a> {
    events: &'a [Event],
    /// (user, plan, day) with any accepted event.
    active: BTreeSet<(String, String, NaiveDate)>,
    /// user → (cohort week, segment).
    cohorts: BTreeMap<String, (NaiveDate, &'static str)>,
}

impl<'a> Analyses<'a> {
    fn new(events: &'a [Event]) -> Self {
        let active: BTreeSet<_> = events
            .iter()
            .map(|e| (e.user.clone(), e.plan.clone(), day_of(e.time)))
            .collect();
        let mut first: BTreeMap<&str, &Event> = BTreeMap::new();
        for e in events {
            let earlier =
                |f: &&Event| (e.time, &e.account, &e.plan) < (f.time, &f.account, &f.plan);
            if first.get(e.user.as_str()).is_none_or(earlier) {
                first.insert(&e.user, e);
            }
        }
        let cohorts = first
            .into_iter()
            .map(|(user, e)| {
                let segment = if e.plan == "free" { "free" } else { "paid" };
                (user.to_string(), (monday(day_of(e.time)), segment))
            })
            .collect();
        Analyses {
            events,
            active,
            cohorts,
        }
    }

    fn in_segment(&self, user: &str, segment: &str) -> bool {
        segment == "all" || self.cohorts[user].1 == segment
    }

    /// Users active in the week starting `week` (any plan).
    fn active_in_week(&self, week: NaiveDate) -> BTreeSet<&str> {
        self.active
            .iter()
            .filter(|(_, _, d)| monday(*d) == week)
            .map(|(u, _, _)| u.as_str())
            .collect()
    }

    fn weeks(&self) -> BTreeSet<NaiveDate> {
        self.active.iter().map(|(_, _, d)| monday(*d)).collect()
    }

    /// Plans with an `all` that stands for every plan.
    fn plans_and_all(&self) -> Vec<String> {
        let mut plans: BTreeSet<String> = self.active.iter().map(|(_, p, _)| p.clone()).collect();
        plans.insert("all".into());
        plans.into_iter().collect()
    }

    fn under(plan: &str, p: &str) -> bool {
        plan == "all" || plan == p
    }

    fn retention(&self) -> Vec<String> {
        let mut rows = Vec::new();
        for segment in SEGMENTS {
            let mut members: BTreeMap<NaiveDate, Vec<&str>> = BTreeMap::new();
            for (user, (cohort, _)) in &self.cohorts {
                if self.in_segment(user, segment) {
                    members.entry(*cohort).or_default().push(user);
                }
            }
            for (cohort, users) in &members {
                for week in self.weeks().into_iter().filter(|w| w >= cohort) {
                    let active_then = self.active_in_week(week);
                    let active = users.iter().filter(|u| active_then.contains(*u)).count();
                    rows.push(json!({
                        "cohort_week": epoch_days(*cohort), "segment": segment,
                        "week_number": (week - *cohort).num_days() / 7,
                        "cohort_users": users.len(), "active_users": active,
                        "active_pct": round(100.0 * active as f64 / users.len() as f64, 1),
                    }));
                }
            }
        }
        normalized(rows)
    }

    fn stickiness(&self) -> Vec<String> {
        let days: BTreeSet<NaiveDate> = self.active.iter().map(|(_, _, d)| *d).collect();
        let mut rows = Vec::new();
        for day in days {
            for plan in self.plans_and_all() {
                let within = |n: i64| -> BTreeSet<&str> {
                    self.active
                        .iter()
                        .filter(|(_, p, _)| Self::under(&plan, p))
                        .filter(|(_, _, d)| *d <= day && (day - *d).num_days() < n)
                        .map(|(u, _, _)| u.as_str())
                        .collect()
                };
                let (dau, wau, mau) = (within(1).len(), within(7).len(), within(30).len());
                if mau == 0 {
                    continue;
                }
                rows.push(
                    json!({"day": epoch_days(day), "plan": plan, "dau": dau, "wau": wau,
                    "mau": mau, "dau_mau": round(dau as f64 / mau as f64, 3)}),
                );
            }
        }
        normalized(rows)
    }

    fn active_days(&self) -> Vec<String> {
        let mut days: BTreeMap<(NaiveDate, String, &str), BTreeSet<NaiveDate>> = BTreeMap::new();
        for (user, plan, day) in &self.active {
            for p in [plan.as_str(), "all"] {
                days.entry((monday(*day), p.to_string(), user.as_str()))
                    .or_default()
                    .insert(*day);
            }
        }
        let mut histogram: BTreeMap<(NaiveDate, String, usize), usize> = BTreeMap::new();
        for ((week, plan, _), d) in days {
            *histogram.entry((week, plan, d.len())).or_default() += 1;
        }
        normalized(histogram.into_iter().map(|((week, plan, n), users)| {
            json!({"week": epoch_days(week), "plan": plan, "active_days": n, "users": users})
        }))
    }

    fn feature_adoption(&self) -> Vec<String> {
        let mut used: BTreeMap<(NaiveDate, String, String), (BTreeSet<&str>, i64)> =
            BTreeMap::new();
        for e in self.events.iter().filter(|e| e.kind == "feature_used") {
            for p in [e.plan.as_str(), "all"] {
                let key = (
                    monday(day_of(e.time)),
                    e.feature.clone().unwrap(),
                    p.to_string(),
                );
                let entry = used.entry(key).or_default();
                entry.0.insert(&e.user);
                entry.1 += 1;
            }
        }
        let active = |week: NaiveDate, plan: &str| {
            self.active
                .iter()
                .filter(|(_, p, d)| monday(*d) == week && Self::under(plan, p))
                .map(|(u, _, _)| u.as_str())
                .collect::<BTreeSet<_>>()
                .len()
        };
        normalized(
            used.into_iter()
                .map(|((week, feature, plan), (users, uses))| {
                    let (n, of) = (users.len(), active(week, &plan));
                    json!({"week": epoch_days(week), "feature": feature, "plan": plan, "users": n,
                "active_users": of, "reach_pct": round(100.0 * n as f64 / of as f64, 1),
                "uses": uses, "uses_per_user": round(uses as f64 / n as f64, 2)})
                }),
        )
    }

    fn feature_first_use(&self) -> Vec<String> {
        let mut first: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for e in self.events.iter().filter(|e| e.kind == "feature_used") {
            let at = first
                .entry((&e.user, e.feature.as_deref().unwrap()))
                .or_insert(e.time);
            *at = (*at).min(e.time);
        }
        normalized(first.into_iter().map(|((user, feature), at)| {
            json!({"user_id": user, "feature": feature, "first_used_at": at,
                "first_use_date": epoch_days(day_of(at))})
        }))
    }

    fn lifecycle(&self) -> Vec<String> {
        let weeks = self.weeks();
        let last = *weeks.iter().max().unwrap();
        let candidates: BTreeSet<NaiveDate> = weeks
            .iter()
            .flat_map(|w| [*w, *w + Days::new(7)])
            .filter(|w| *w <= last)
            .collect();
        let mut rows = Vec::new();
        for segment in SEGMENTS {
            for &week in &candidates {
                let now = self.active_in_week(week);
                let before = self.active_in_week(week - Days::new(7));
                let (mut new, mut returning, mut resurrected, mut dormant) = (0, 0, 0, 0);
                for (user, (cohort, _)) in &self.cohorts {
                    if !self.in_segment(user, segment) {
                        continue;
                    }
                    let (active, was) =
                        (now.contains(user.as_str()), before.contains(user.as_str()));
                    match (active, was) {
                        (true, _) if *cohort == week => new += 1,
                        (true, true) => returning += 1,
                        (true, false) => resurrected += 1,
                        (false, true) => dormant += 1,
                        (false, false) => {}
                    }
                }
                if new + returning + resurrected + dormant > 0 {
                    rows.push(json!({"week": epoch_days(week), "segment": segment,
                        "new_users": new, "returning_users": returning,
                        "resurrected_users": resurrected, "dormant_users": dormant}));
                }
            }
        }
        normalized(rows)
    }

    /// `top_features` for paid plans within `days` (inclusive).
    fn top_paid_features(&self, days: (NaiveDate, NaiveDate)) -> Vec<String> {
        let mut by: BTreeMap<&str, (i64, BTreeSet<&str>)> = BTreeMap::new();
        for e in self
            .events
            .iter()
            .filter(|e| e.kind == "feature_used" && e.plan != "free")
        {
            let day = day_of(e.time);
            if day < days.0 || day > days.1 {
                continue;
            }
            let entry = by.entry(e.feature.as_deref().unwrap()).or_default();
            entry.0 += 1;
            entry.1.insert(&e.user);
        }
        let mut ranked: Vec<_> = by.into_iter().collect();
        ranked.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
        ranked
            .into_iter()
            .take(10)
            .map(|(f, (events, users))| {
                json!({"feature": f, "events": events, "users": users.len()}).to_string()
            })
            .collect()
    }
}

const VIEWS: [&str; 6] = [
    "retention",
    "stickiness",
    "active_days",
    "feature_adoption",
    "feature_first_use",
    "lifecycle",
];

async fn assert_analyses_match(lake: &std::path::Path, events: &[Event]) {
    let expected = Analyses::new(events);
    for view in VIEWS {
        let want = match view {
            "retention" => expected.retention(),
            "stickiness" => expected.stickiness(),
            "active_days" => expected.active_days(),
            "feature_adoption" => expected.feature_adoption(),
            "feature_first_use" => expected.feature_first_use(),
            "lifecycle" => expected.lifecycle(),
            _ => unreachable!(),
        };
        assert!(!want.is_empty(), "{view}: the events exercise it");
        let got = actual(lake, &format!("SELECT * FROM {view}")).await;
        common::assert_same_rows(view, &got, &want);
    }
    // A business chart, filtered: paid plans in the second week.
    let days = (
        NaiveDate::from_ymd_opt(2026, 1, 12).unwrap(),
        NaiveDate::from_ymd_opt(2026, 1, 18).unwrap(),
    );
    let filter = Filter {
        from: Some(days.0),
        to: Some(days.1),
        plan: PlanFilter::Paid,
    };
    let lake = sluice::lake::Lake::local(lake).unwrap();
    let batches = sluice::query::analysis(&lake, "top_features", &filter)
        .await
        .unwrap();
    let got: Vec<String> = batches
        .iter()
        .flat_map(sluice::plugin_test::row_maps)
        .map(|m| Value::Object(m).to_string())
        .collect();
    assert_eq!(
        got,
        expected.top_paid_features(days),
        "top_features, ordered"
    );
}

/// A user nobody saw before, on a paid plan, on the first simulated day:
/// arriving after three weeks of events, it is late by weeks.
fn late_newcomer() -> String {
    json!({"event_id": "5f0e9a52-7c1d-4d8e-9b0a-1c2d3e4f5a6b", "user_id": "u_999999",
        "account_id": "acct_99999", "plan": "pro", "event_type": "login",
        "session_id": "s_00000000000000aa", "timestamp": "2026-01-05T09:00:00.000Z",
        "platform": "web", "country": "DE", "app_version": "5.12.0",
        "properties": {"method": "password"}})
    .to_string()
}

fn paid_first_cohort(rows: &[String]) -> i64 {
    rows.iter()
        .map(|r| serde_json::from_str::<Value>(r).unwrap())
        .find(|r| {
            r["segment"] == "paid"
                && r["week_number"] == 0
                && r["cohort_week"] == epoch_days(NaiveDate::from_ymd_opt(2026, 1, 5).unwrap())
        })
        .map(|r| r["cohort_users"].as_i64().unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyses_equal_an_independent_computation_through_late_events_and_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let config = sluice_simulator::SimConfig {
        seed: 12,
        events: 12_000,
        accounts: 60,
        users_per_account: 5,
        days: 21,
        duplicate_fraction: 0.03,
        late_fraction: 0.03,
        malformed_fraction: 0.015,
        ..Default::default()
    };
    let lines: Vec<String> = sluice_simulator::Simulator::new(config)
        .unwrap()
        .map(|e| e.line)
        .collect();
    let first = dir.path().join("events.ndjson");
    common::write_lines(&first, &lines);
    let lake = dir.path().join("lake");
    let mut config = common::replay_config(&lake, vec![first.clone()], 3_000);
    config.dashboard.listen = String::new();
    common::run_to_end(&config).await;
    let lateness = config.lateness.allowed_secs as i64 * 1_000_000;
    let expected = Expected::compute(&lines, lateness);
    let faults = (expected.duplicates, expected.late, expected.malformed);
    assert!(
        faults.0 > 30 && faults.1 > 100 && faults.2 > 50,
        "duplicates, late, malformed: {faults:?}"
    );
    assert_analyses_match(&lake, &expected.accepted).await;
    let before = paid_first_cohort(&actual(&lake, "SELECT * FROM retention").await);

    // A late event the lateness bound lets in changes the first cohort.
    let late = vec![late_newcomer()];
    let second = dir.path().join("late.ndjson");
    common::write_lines(&second, &late);
    let mut lenient = common::replay_config(&lake, vec![first, second], 3_000);
    lenient.dashboard.listen = String::new();
    lenient.lateness.allowed_secs = 100 * 86_400;
    let totals = common::run_to_end(&lenient).await;
    assert_eq!(
        (totals.events, totals.accepted),
        (1, 1),
        "only the late line is new"
    );
    let mut with_late = expected.accepted.clone();
    with_late.push(common::parse(&late[0]).unwrap());
    assert_analyses_match(&lake, &with_late).await;
    let retention = actual(&lake, "SELECT * FROM retention").await;
    assert_eq!(
        paid_first_cohort(&retention),
        before + 1,
        "the late user joined week 0"
    );

    // A replay under the default bound finds the same event late after all.
    let (mut pipeline, mut lifecycle, _) =
        sluice::service::open_with_lifecycle(&config).await.unwrap();
    lifecycle
        .replay(&mut pipeline, Layer::Silver, ReplayFrom::Batch(1))
        .await
        .unwrap();
    drop(pipeline);
    let all: Vec<String> = lines.iter().chain(&late).cloned().collect();
    let replayed = Expected::compute(&all, lateness);
    assert_eq!(replayed.accepted.len(), expected.accepted.len());
    assert_analyses_match(&lake, &replayed.accepted).await;
    let retention = actual(&lake, "SELECT * FROM retention").await;
    assert_eq!(paid_first_cohort(&retention), before);
}
