//! Shared test helpers: a strict contract parser and stream generation.
// Each integration test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};
use sluice_simulator::catalog::{EVENT_TYPES, FEATURES, LOGIN_METHODS, PLATFORMS};
use sluice_simulator::{EventKind, MalformedKind, SimConfig, SimEvent, Simulator};

/// Why the strict parser refused a line.
#[derive(Debug, Clone, PartialEq)]
pub enum Reject {
    NotJson,
    NotObject,
    Missing(&'static str),
    WrongType(&'static str),
    BadValue(&'static str, String),
    UnknownEventType(String),
    BadTimestamp(String),
    NegativeDuration,
}

/// A line that satisfies the contract.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub event_id: String,
    pub user_id: String,
    pub account_id: String,
    pub plan: String,
    pub event_type: String,
    pub feature: Option<String>,
    pub session_id: String,
    pub ts: DateTime<Utc>,
    pub platform: String,
    pub country: String,
    pub app_version: String,
    pub properties: Map<String, Value>,
}

impl Parsed {
    pub fn ts_ms(&self) -> i64 {
        self.ts.timestamp_millis()
    }

    pub fn prop_u64(&self, key: &str) -> u64 {
        self.properties[key].as_u64().expect("validated")
    }

    pub fn prop_str(&self, key: &str) -> &str {
        self.properties[key].as_str().expect("validated")
    }
}

pub const PLANS: [&str; 3] = ["free", "pro", "enterprise"];

pub fn plan_tier(plan: &str) -> usize {
    PLANS.iter().position(|p| *p == plan).expect("valid plan")
}

/// Parses one line and checks every rule of the event contract.
pub fn parse_strict(line: &str) -> Result<Parsed, Reject> {
    let value: Value = serde_json::from_str(line).map_err(|_| Reject::NotJson)?;
    let obj = value.as_object().ok_or(Reject::NotObject)?;

    let event_id = string(obj, "event_id")?;
    let uuid = uuid::Uuid::parse_str(&event_id)
        .map_err(|_| Reject::BadValue("event_id", event_id.clone()))?;
    check(uuid.get_version_num() == 4, "event_id", &event_id)?;
    let user_id = string(obj, "user_id")?;
    check(prefixed_digits(&user_id, "u_", 6), "user_id", &user_id)?;
    let account_id = string(obj, "account_id")?;
    check(
        prefixed_digits(&account_id, "acct_", 5),
        "account_id",
        &account_id,
    )?;
    let plan = string(obj, "plan")?;
    check(PLANS.contains(&plan.as_str()), "plan", &plan)?;
    let event_type = string(obj, "event_type")?;
    if !EVENT_TYPES.contains(&event_type.as_str()) {
        return Err(Reject::UnknownEventType(event_type));
    }
    let feature = match obj.get("feature") {
        None => None,
        Some(Value::String(f)) => Some(f.clone()),
        Some(_) => return Err(Reject::WrongType("feature")),
    };
    let is_feature = event_type == "feature_used";
    check(
        feature.is_some() == is_feature,
        "feature",
        &format!("{feature:?}"),
    )?;
    if let Some(f) = &feature {
        check(FEATURES.contains(&f.as_str()), "feature", f)?;
    }
    let session_id = string(obj, "session_id")?;
    let hex = session_id.strip_prefix("s_").unwrap_or("");
    let hex_ok = hex.len() == 16
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    check(hex_ok, "session_id", &session_id)?;
    let ts_text = string(obj, "timestamp")?;
    let ts = parse_timestamp(&ts_text).ok_or(Reject::BadTimestamp(ts_text.clone()))?;
    let platform = string(obj, "platform")?;
    check(
        PLATFORMS.contains(&platform.as_str()),
        "platform",
        &platform,
    )?;
    let country = string(obj, "country")?;
    check(
        country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase()),
        "country",
        &country,
    )?;
    let app_version = string(obj, "app_version")?;
    let parts: Vec<&str> = app_version.split('.').collect();
    let version_ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    check(version_ok, "app_version", &app_version)?;
    let properties = obj
        .get("properties")
        .ok_or(Reject::Missing("properties"))?
        .as_object()
        .ok_or(Reject::WrongType("properties"))?
        .clone();
    check_properties(&event_type, &plan, &properties)?;

    Ok(Parsed {
        event_id,
        user_id,
        account_id,
        plan,
        event_type,
        feature,
        session_id,
        ts,
        platform,
        country,
        app_version,
        properties,
    })
}

fn check_properties(
    event_type: &str,
    plan: &str,
    props: &Map<String, Value>,
) -> Result<(), Reject> {
    let keys: Vec<&str> = props.keys().map(String::as_str).collect();
    match event_type {
        "login" => {
            check(keys == ["method"], "properties", &format!("{keys:?}"))?;
            let method = props["method"]
                .as_str()
                .ok_or(Reject::WrongType("method"))?;
            check(LOGIN_METHODS.contains(&method), "method", method)
        }
        "feature_used" => {
            check(keys.len() == 2, "properties", &format!("{keys:?}"))?;
            non_negative(props, "duration_ms")?;
            non_negative(props, "items")
        }
        "session_end" => {
            check(keys == ["duration_ms"], "properties", &format!("{keys:?}"))?;
            non_negative(props, "duration_ms")
        }
        "plan_changed" => {
            let from = props
                .get("from_plan")
                .and_then(Value::as_str)
                .ok_or(Reject::Missing("from_plan"))?;
            let to = props
                .get("to_plan")
                .and_then(Value::as_str)
                .ok_or(Reject::Missing("to_plan"))?;
            check(
                PLANS.contains(&from) && PLANS.contains(&to) && from != to,
                "plan_changed",
                &format!("{from}->{to}"),
            )?;
            check(to == plan, "plan", plan)
        }
        other => Err(Reject::UnknownEventType(other.to_owned())),
    }
}

fn non_negative(props: &Map<String, Value>, key: &'static str) -> Result<(), Reject> {
    match props.get(key) {
        None => Err(Reject::Missing(key)),
        Some(v) if v.as_u64().is_some() => Ok(()),
        Some(v) if v.as_i64().is_some_and(|n| n < 0) => Err(Reject::NegativeDuration),
        Some(_) => Err(Reject::WrongType(key)),
    }
}

/// Exactly `YYYY-MM-DDTHH:MM:SS.mmmZ`, nothing looser.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if text.len() != 24 || !text.ends_with('Z') {
        return None;
    }
    NaiveDateTime::parse_from_str(&text[..23], "%Y-%m-%dT%H:%M:%S%.3f")
        .ok()
        .map(|t| t.and_utc())
}

fn string(obj: &Map<String, Value>, key: &'static str) -> Result<String, Reject> {
    match obj.get(key) {
        None => Err(Reject::Missing(key)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Reject::WrongType(key)),
    }
}

fn check(ok: bool, field: &'static str, value: &str) -> Result<(), Reject> {
    if ok {
        Ok(())
    } else {
        Err(Reject::BadValue(field, value.to_owned()))
    }
}

fn prefixed_digits(s: &str, prefix: &str, digits: usize) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() >= digits && rest.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `reject` is the refusal a line of malformed `kind` must get.
pub fn rejection_matches(kind: MalformedKind, reject: &Reject) -> bool {
    match kind {
        MalformedKind::TruncatedJson | MalformedKind::Garbage => *reject == Reject::NotJson,
        MalformedKind::MissingUserId => *reject == Reject::Missing("user_id"),
        MalformedKind::UnknownEventType => matches!(reject, Reject::UnknownEventType(_)),
        MalformedKind::UnparsableTimestamp => matches!(reject, Reject::BadTimestamp(_)),
        MalformedKind::NegativeDuration => *reject == Reject::NegativeDuration,
    }
}

pub fn run(cfg: SimConfig) -> Vec<SimEvent> {
    Simulator::new(cfg).expect("valid config").collect()
}

/// Config with every fault at `fraction`.
pub fn faulty(events: u64, fraction: f64) -> SimConfig {
    SimConfig {
        events,
        duplicate_fraction: fraction,
        late_fraction: fraction,
        malformed_fraction: fraction,
        ..SimConfig::default()
    }
}

/// Good events (normal and late, not duplicates) parsed, in arrival order.
pub fn good_events(stream: &[SimEvent]) -> Vec<Parsed> {
    stream
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Normal | EventKind::Late))
        .map(|e| parse_strict(&e.line).unwrap_or_else(|r| panic!("{r:?}: {}", e.line)))
        .collect()
}

/// Groups parsed events by a key, keeping arrival order inside groups.
pub fn group_by(events: &[Parsed], key: impl Fn(&Parsed) -> &str) -> HashMap<String, Vec<&Parsed>> {
    let mut groups: HashMap<String, Vec<&Parsed>> = HashMap::new();
    for e in events {
        groups.entry(key(e).to_owned()).or_default().push(e);
    }
    groups
}
