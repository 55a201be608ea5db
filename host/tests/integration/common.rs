//! Shared helpers: event files, running the service, reading tables, and an
//! independent computation of what silver and gold must hold.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Utc};
use serde_json::{Value, json};
use sluice::config::Config;
use sluice::lake::Lake;

/// Lines from the simulator with the given fault fractions.
pub fn simulated_lines(seed: u64, events: u64, faults: f64) -> Vec<String> {
    let config = sluice_simulator::SimConfig {
        seed,
        events,
        accounts: 40,
        users_per_account: 5,
        days: 2,
        duplicate_fraction: faults,
        late_fraction: faults,
        malformed_fraction: faults / 2.0,
        ..Default::default()
    };
    sluice_simulator::Simulator::new(config)
        .unwrap()
        .map(|e| e.line)
        .collect()
}

/// The independent generator's sample, if the shared folder is present.
pub fn sample_lines() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/samples/events-independent.ndjson");
    match std::fs::read_to_string(&path) {
        Ok(text) => text.lines().map(str::to_string).collect(),
        Err(_) => {
            eprintln!(
                "note: {} not found; testing with simulated events only",
                path.display()
            );
            Vec::new()
        }
    }
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// A config for a replay-only run into `lake`.
pub fn replay_config(lake: &Path, files: Vec<PathBuf>, max_events: usize) -> Config {
    let mut config = Config {
        lake: lake.to_path_buf(),
        cache_dir: Some(lake.parent().unwrap().join("cache")),
        replay: files,
        ..Default::default()
    };
    config.collector.listen = String::new();
    config.batch.max_events = max_events;
    config.batch.linger_ms = 200;
    config
}

/// Runs the service in-process until the replay is done.
pub async fn run_to_end(config: &Config) -> sluice::pipeline::Totals {
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    sluice::service::run(config, stop, |_| {}, |_| {})
        .await
        .unwrap()
}

/// Rows of a SQL query over the lake, as sorted JSON strings.
pub async fn rows(lake: &Path, sql: &str) -> Vec<String> {
    rows_in(&Lake::local(lake).unwrap(), sql).await
}

/// Rows of a SQL query over an open lake (local or remote), sorted JSON.
pub async fn rows_in(lake: &Lake, sql: &str) -> Vec<String> {
    let batches = sluice::query::sql(lake, sql).await.unwrap();
    let mut out: Vec<String> = batches
        .iter()
        .flat_map(sluice::plugin_test::row_maps)
        .map(|m| Value::Object(m).to_string())
        .collect();
    out.sort();
    out
}

pub async fn count(lake: &Path, sql: &str) -> i64 {
    count_in(&Lake::local(lake).unwrap(), sql).await
}

/// The single value of a `SELECT COUNT(...)` over an open lake.
pub async fn count_in(lake: &Lake, sql: &str) -> i64 {
    let rows = rows_in(lake, sql).await;
    let v: Value = serde_json::from_str(&rows[0]).unwrap();
    v.as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_i64()
        .unwrap()
}

/// Runs `command` (a `sluice` child, say), fails the test with its stderr
/// unless it succeeds, and returns its stdout.
pub fn run_ok(command: &mut std::process::Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        command.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One accepted event, parsed independently of the plugins.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub time: i64,
    pub user: String,
    pub account: String,
    pub plan: String,
    pub session: String,
    pub feature: Option<String>,
    pub platform: Option<String>,
    pub duration: Option<i64>,
    pub items: Option<i64>,
    pub to_plan: Option<String>,
}

impl Event {
    pub fn date_key(&self) -> i64 {
        let d = DateTime::<Utc>::from_timestamp_micros(self.time).unwrap();
        (d.year() * 10_000 + d.month() as i32 * 100 + d.day() as i32) as i64
    }
}

const TYPES: [&str; 4] = ["login", "feature_used", "session_end", "plan_changed"];
const PLANS: [&str; 3] = ["free", "pro", "enterprise"];

/// The event contract, checked independently: `None` if the line is malformed.
pub fn parse(line: &str) -> Option<Event> {
    let v: Value = serde_json::from_str(line).ok()?;
    let o = v.as_object()?;
    let s = |k: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let kind = s("event_type").filter(|t| TYPES.contains(&t.as_str()))?;
    let time = DateTime::parse_from_rfc3339(&s("timestamp")?)
        .ok()?
        .with_timezone(&Utc)
        .timestamp_micros();
    let plan = s("plan").filter(|p| PLANS.contains(&p.as_str()))?;
    let props = o.get("properties").and_then(Value::as_object);
    let int = |k: &str| -> Option<Option<i64>> {
        match props.and_then(|p| p.get(k)) {
            None | Some(Value::Null) => Some(None),
            Some(v) => v.as_i64().filter(|n| *n >= 0).map(Some),
        }
    };
    let to_plan = props
        .and_then(|p| p.get("to_plan"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let feature = s("feature");
    if kind == "feature_used" && feature.is_none() {
        return None;
    }
    if kind == "plan_changed" && !to_plan.as_deref().is_some_and(|p| PLANS.contains(&p)) {
        return None;
    }
    Some(Event {
        id: s("event_id")?,
        time,
        user: s("user_id")?,
        account: s("account_id")?,
        session: s("session_id")?,
        platform: s("platform").map(|p| p.to_lowercase()),
        duration: int("duration_ms")?,
        items: int("items")?,
        kind,
        plan,
        feature,
        to_plan,
    })
}

/// (date_key, feature, user, plan).
type UsageKey = (i64, String, String, String);
/// account, events, sessions, feature events, feature duration.
type UserDay = (String, i64, i64, i64, i64);

/// What the pipeline must make of `lines`, computed without it.
pub struct Expected {
    pub accepted: Vec<Event>,
    pub duplicates: usize,
    pub late: usize,
    pub malformed: usize,
}

impl Expected {
    /// The host's rule over one stream: `lines` in arrival order.
    pub fn compute(lines: &[String], lateness_micros: i64) -> Expected {
        Self::compute_streams(&[lines.to_vec()], lateness_micros)
    }

    /// The host's rule with one watermark per stream (a partition of a
    /// log), each stream in its own order; ids are deduplicated across all.
    pub fn compute_streams(streams: &[Vec<String>], lateness_micros: i64) -> Expected {
        let mut seen = HashMap::new();
        let mut e = Expected {
            accepted: Vec::new(),
            duplicates: 0,
            late: 0,
            malformed: 0,
        };
        for lines in streams {
            let mut newest: Option<i64> = None;
            for line in lines.iter().filter(|l| !l.trim().is_empty()) {
                let Some(ev) = parse(line) else {
                    e.malformed += 1;
                    continue;
                };
                if newest.is_some_and(|n| ev.time < n - lateness_micros) {
                    e.late += 1;
                } else if seen.contains_key(&ev.id) {
                    e.duplicates += 1;
                } else {
                    seen.insert(ev.id.clone(), ev.time);
                    newest = Some(newest.map_or(ev.time, |n: i64| n.max(ev.time)));
                    e.accepted.push(ev);
                }
            }
        }
        e
    }

    fn sorted(rows: impl IntoIterator<Item = Value>) -> Vec<String> {
        let mut out: Vec<String> = rows.into_iter().map(|v| v.to_string()).collect();
        out.sort();
        out
    }

    pub fn fact_feature_usage(&self) -> Vec<String> {
        let mut groups: BTreeMap<UsageKey, (i64, i64, i64, i64, i64)> = BTreeMap::new();
        for ev in self.accepted.iter().filter(|e| e.kind == "feature_used") {
            let key = (
                ev.date_key(),
                ev.feature.clone().unwrap(),
                ev.user.clone(),
                ev.plan.clone(),
            );
            let g = groups.entry(key).or_insert((0, 0, 0, i64::MAX, i64::MIN));
            g.0 += 1;
            g.1 += ev.duration.unwrap_or(0);
            g.2 += ev.items.unwrap_or(0);
            g.3 = g.3.min(ev.time);
            g.4 = g.4.max(ev.time);
        }
        Self::sorted(groups.into_iter().map(|((d, f, u, p), g)| {
            json!({"date_key": d, "feature": f, "user_id": u, "plan": p, "events": g.0,
                   "total_duration_ms": g.1, "total_items": g.2, "first_used_at": g.3, "last_used_at": g.4})
        }))
    }

    pub fn fact_sessions(&self) -> Vec<String> {
        let mut sessions: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
        for ev in &self.accepted {
            sessions.entry(&ev.session).or_default().push(ev);
        }
        Self::sorted(sessions.into_iter().map(|(id, evs)| {
            let first = evs.iter().min_by_key(|e| (e.time, e.plan.clone())).unwrap();
            let platform = evs.iter().map(|e| (e.time, e.platform.clone())).min().unwrap().1;
            let ends: Vec<_> = evs.iter().filter(|e| e.kind == "session_end").collect();
            json!({"session_id": id, "user_id": evs.iter().map(|e| &e.user).min().unwrap(),
                   "account_id": evs.iter().map(|e| &e.account).min().unwrap(),
                   "plan": first.plan, "platform": platform, "date_key": first.date_key(),
                   "started_at": evs.iter().map(|e| e.time).min().unwrap(),
                   "ended_at": evs.iter().map(|e| e.time).max().unwrap(),
                   "events": evs.len(), "feature_events": evs.iter().filter(|e| e.kind == "feature_used").count(),
                   "session_ends": ends.len(), "duration_ms": ends.iter().map(|e| e.duration.unwrap_or(0)).sum::<i64>()})
        }))
    }

    fn user_daily(&self) -> BTreeMap<(i64, String, String), UserDay> {
        let mut groups = BTreeMap::new();
        for ev in &self.accepted {
            let g = groups
                .entry((ev.date_key(), ev.user.clone(), ev.plan.clone()))
                .or_insert((ev.account.clone(), 0, 0, 0, 0));
            g.0 = g.0.clone().min(ev.account.clone());
            g.1 += 1;
            g.2 += (ev.kind == "login") as i64;
            g.3 += (ev.kind == "feature_used") as i64;
            if ev.kind == "feature_used" {
                g.4 += ev.duration.unwrap_or(0);
            }
        }
        groups
    }

    pub fn fact_user_daily(&self) -> Vec<String> {
        Self::sorted(self.user_daily().into_iter().map(|((d, u, p), g)| {
            json!({"date_key": d, "user_id": u, "plan": p, "account_id": g.0, "events": g.1,
                   "sessions": g.2, "feature_events": g.3, "duration_ms": g.4})
        }))
    }

    pub fn fact_daily_active_users(&self) -> Vec<String> {
        let mut groups: BTreeMap<(i64, String), (i64, i64, i64, i64)> = BTreeMap::new();
        for ((d, _, p), g) in self.user_daily() {
            let a = groups.entry((d, p)).or_default();
            a.0 += 1;
            a.1 += g.1;
            a.2 += g.2;
            a.3 += g.3;
        }
        Self::sorted(groups.into_iter().map(|((d, p), a)| {
            json!({"date_key": d, "plan": p, "active_users": a.0, "events": a.1, "sessions": a.2, "feature_events": a.3})
        }))
    }

    /// SCD2: a version at each user's earliest event, then one per plan change after it.
    pub fn dim_user(&self) -> Vec<String> {
        let mut users: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
        for ev in &self.accepted {
            users.entry(&ev.user).or_default().push(ev);
        }
        let mut rows = Vec::new();
        for (user, evs) in users {
            let first = evs
                .iter()
                .min_by_key(|e| (e.time, e.account.clone(), e.plan.clone()))
                .unwrap();
            let mut versions = vec![(first.time, first.account.clone(), first.plan.clone())];
            let changes: BTreeSet<(i64, String, String)> = evs
                .iter()
                .filter(|e| e.kind == "plan_changed" && e.time > first.time)
                .map(|e| (e.time, e.account.clone(), e.to_plan.clone().unwrap()))
                .collect();
            versions.extend(changes);
            for (i, (from, account, plan)) in versions.iter().enumerate() {
                let to = versions.get(i + 1).map(|v| v.0);
                rows.push(json!({"user_id": user, "account_id": account, "plan": plan,
                                 "valid_from": from, "valid_to": to, "is_current": to.is_none()}));
            }
        }
        Self::sorted(rows)
    }

    pub fn dim_feature(&self) -> Vec<String> {
        let mut groups: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for ev in self.accepted.iter().filter(|e| e.kind == "feature_used") {
            let g = groups
                .entry(ev.feature.clone().unwrap())
                .or_insert((i64::MAX, i64::MIN));
            g.0 = g.0.min(ev.time);
            g.1 = g.1.max(ev.time);
        }
        Self::sorted(
            groups
                .into_iter()
                .map(|(f, g)| json!({"feature": f, "first_used_at": g.0, "last_used_at": g.1})),
        )
    }

    pub fn dim_date(&self) -> Vec<String> {
        let days: BTreeSet<i64> = self.accepted.iter().map(Event::date_key).collect();
        Self::sorted(days.into_iter().map(
            |d| json!({"date_key": d, "year": d / 10_000, "month": d / 100 % 100, "day": d % 100}),
        ))
    }

    pub fn dim_plan(&self) -> Vec<String> {
        let plans: BTreeSet<&str> = self.accepted.iter().map(|e| e.plan.as_str()).collect();
        Self::sorted(plans.into_iter().map(|p| json!({"plan": p})))
    }
}

/// The SQL selecting the columns `Expected` computes, per gold table.
pub const GOLD_QUERIES: [(&str, &str); 8] = [
    ("fact_feature_usage", "SELECT * FROM fact_feature_usage"),
    ("fact_sessions", "SELECT * FROM fact_sessions"),
    ("fact_user_daily", "SELECT * FROM fact_user_daily"),
    (
        "fact_daily_active_users",
        "SELECT * FROM fact_daily_active_users",
    ),
    (
        "dim_user",
        "SELECT user_id, account_id, plan, valid_from, valid_to, is_current FROM dim_user",
    ),
    (
        "dim_feature",
        "SELECT feature, first_used_at, last_used_at FROM dim_feature",
    ),
    (
        "dim_date",
        "SELECT date_key, year, month, day FROM dim_date",
    ),
    ("dim_plan", "SELECT plan FROM dim_plan"),
];

impl Expected {
    pub fn table(&self, name: &str) -> Vec<String> {
        match name {
            "fact_feature_usage" => self.fact_feature_usage(),
            "fact_sessions" => self.fact_sessions(),
            "fact_user_daily" => self.fact_user_daily(),
            "fact_daily_active_users" => self.fact_daily_active_users(),
            "dim_user" => self.dim_user(),
            "dim_feature" => self.dim_feature(),
            "dim_date" => self.dim_date(),
            "dim_plan" => self.dim_plan(),
            other => panic!("no expectation for {other}"),
        }
    }
}

/// Asserts two sorted row lists are equal, showing the first differences.
pub fn assert_same_rows(table: &str, actual: &[String], expected: &[String]) {
    if actual == expected {
        return;
    }
    let a: BTreeSet<_> = actual.iter().collect();
    let e: BTreeSet<_> = expected.iter().collect();
    let missing: Vec<_> = e.difference(&a).take(3).collect();
    let extra: Vec<_> = a.difference(&e).take(3).collect();
    panic!(
        "{table}: {} rows, expected {}\n missing e.g. {missing:#?}\n unexpected e.g. {extra:#?}",
        actual.len(),
        expected.len()
    );
}

/// One Prometheus sample: `name{labels}` as printed, and its value.
pub type Sample = (String, f64);

/// Scrapes a Prometheus text endpoint.
pub async fn scrape(url: &str) -> Vec<Sample> {
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The value of the series named `name` whose labels contain every `label`
/// (`key="value"`); `None` if there is none.
pub fn sample(samples: &[Sample], name: &str, labels: &[&str]) -> Option<f64> {
    samples
        .iter()
        .find(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name && labels.iter().all(|l| rest.contains(l))
        })
        .map(|(_, v)| *v)
}

/// Every gold table of the local `lake` equals `expected`'s computation.
pub async fn assert_gold_matches(lake: &Path, expected: &Expected) {
    assert_gold_matches_in(&Lake::local(lake).unwrap(), expected).await;
}

/// Every gold table of an open `lake` equals `expected`'s computation.
pub async fn assert_gold_matches_in(lake: &Lake, expected: &Expected) {
    for (table, sql) in GOLD_QUERIES {
        assert_same_rows(table, &rows_in(lake, sql).await, &expected.table(table));
    }
}
