//! Folds one batch of events into pre-aggregated rows per gold table, one row
//! per grain key in key order, so output never depends on the order of input
//! rows. The host folds these rows into the stored tables.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hash;
use std::sync::Arc;

/// A fast hasher without a random seed (plugins are pure). Not
/// `rustc_hash::FxHashMap`: that needs the crate's `std` feature, which
/// would rebuild wasmtime's dependencies with other features.
type FxHashMap<K, V> = std::collections::HashMap<K, V, rustc_hash::FxBuildHasher>;

use sluice_plugin_sdk::arrow_array::{
    ArrayRef, BooleanArray, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};

use crate::input::{Event, Kind};
use crate::{calendar, catalog};

/// Column builders from row values; every gold column is one of these.
fn strings<'a>(values: impl IntoIterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn optional_strings<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<StringArray>())
}

fn int32s(values: impl IntoIterator<Item = i32>) -> ArrayRef {
    Arc::new(Int32Array::from_iter_values(values))
}

fn int64s(values: impl IntoIterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(values))
}

fn booleans(values: impl IntoIterator<Item = bool>) -> ArrayRef {
    Arc::new(values.into_iter().map(Some).collect::<BooleanArray>())
}

fn dates(values: impl IntoIterator<Item = i32>) -> ArrayRef {
    Arc::new(Date32Array::from_iter_values(values))
}

fn timestamps(values: impl IntoIterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter_values(values).with_timezone("UTC"))
}

/// Sum-able counters of a group of events.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    events: i64,
    logins: i64,
    feature_events: i64,
    session_ends: i64,
}

impl Counts {
    fn add(&mut self, event: &Event<'_>) {
        self.events += 1;
        match event.kind {
            Kind::Login => self.logins += 1,
            Kind::FeatureUsed => self.feature_events += 1,
            Kind::SessionEnd => self.session_ends += 1,
            Kind::PlanChanged | Kind::Other => {}
        }
    }
}

/// Earliest and latest event time of a group.
#[derive(Debug, Clone, Copy)]
struct Span {
    first: i64,
    last: i64,
}

impl Span {
    fn new(time: i64) -> Self {
        Span {
            first: time,
            last: time,
        }
    }

    fn add(&mut self, time: i64) {
        self.first = self.first.min(time);
        self.last = self.last.max(time);
    }
}

/// The groups in key order. Grouping in a hash map and sorting once is
/// cheaper than keeping a tree ordered on every insert (string keys made
/// `BTreeMap` comparisons the plugin's largest cost); the order is the same.
fn sorted<K: Ord + Hash, V>(groups: FxHashMap<K, V>) -> Vec<(K, V)> {
    let mut rows: Vec<(K, V)> = groups.into_iter().collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    rows
}

/// Keeps the earliest of the events offered (by time, then event id).
fn keep_earliest<'e, 'a>(slot: &mut &'e Event<'a>, event: &'e Event<'a>) {
    if event.order() < slot.order() {
        *slot = event;
    }
}

/// `fact_feature_usage`: `feature_used` events per (date, feature, user, plan).
pub(crate) fn fact_feature_usage(events: &[Event<'_>]) -> Vec<ArrayRef> {
    #[derive(Default)]
    struct Usage {
        events: i64,
        duration_ms: i64,
        items: i64,
        span: Option<Span>,
    }
    let mut groups: FxHashMap<(i32, &str, &str, &str), Usage> = FxHashMap::default();
    for e in events.iter().filter(|e| e.kind == Kind::FeatureUsed) {
        // Silver guarantees a feature here; without one there is no grain.
        let Some(feature) = e.feature else { continue };
        let usage = groups
            .entry((e.date_key(), feature, e.user_id, e.plan))
            .or_default();
        usage.events += 1;
        usage.duration_ms += e.duration_ms.unwrap_or(0);
        usage.items += e.items.unwrap_or(0);
        usage.span.get_or_insert(Span::new(e.time)).add(e.time);
    }
    let groups = sorted(groups);
    let keys = || groups.iter().map(|(k, _)| k);
    let values = || groups.iter().map(|(_, u)| u);
    let span = |u: &Usage| u.span.expect("a group has an event");
    vec![
        int32s(keys().map(|k| k.0)),
        strings(keys().map(|k| k.1)),
        strings(keys().map(|k| k.2)),
        strings(keys().map(|k| k.3)),
        int64s(values().map(|u| u.events)),
        int64s(values().map(|u| u.duration_ms)),
        int64s(values().map(|u| u.items)),
        timestamps(values().map(|u| span(u).first)),
        timestamps(values().map(|u| span(u).last)),
    ]
}

/// `fact_sessions`: one row per session; attributes of its earliest event.
pub(crate) fn fact_sessions(events: &[Event<'_>]) -> Vec<ArrayRef> {
    struct Session<'e, 'a> {
        first: &'e Event<'a>,
        span: Span,
        counts: Counts,
        duration_ms: i64,
    }
    let mut sessions: FxHashMap<&str, Session> = FxHashMap::default();
    for e in events {
        let session = sessions.entry(e.session_id).or_insert_with(|| Session {
            first: e,
            span: Span::new(e.time),
            counts: Counts::default(),
            duration_ms: 0,
        });
        keep_earliest(&mut session.first, e);
        session.span.add(e.time);
        session.counts.add(e);
        if e.kind == Kind::SessionEnd {
            session.duration_ms += e.duration_ms.unwrap_or(0);
        }
    }
    let sessions = sorted(sessions);
    let rows = sessions.iter().map(|(_, s)| s);
    vec![
        strings(sessions.iter().map(|(id, _)| *id)),
        strings(rows.clone().map(|s| s.first.user_id)),
        strings(rows.clone().map(|s| s.first.account_id)),
        strings(rows.clone().map(|s| s.first.plan)),
        optional_strings(rows.clone().map(|s| s.first.platform)),
        int32s(rows.clone().map(|s| s.first.date_key())),
        timestamps(rows.clone().map(|s| s.span.first)),
        timestamps(rows.clone().map(|s| s.span.last)),
        int64s(rows.clone().map(|s| s.counts.events)),
        int64s(rows.clone().map(|s| s.counts.feature_events)),
        int64s(rows.clone().map(|s| s.counts.session_ends)),
        int64s(rows.map(|s| s.duration_ms)),
    ]
}

/// `fact_user_daily`: activity per (date, user, plan).
pub(crate) fn fact_user_daily(events: &[Event<'_>]) -> Vec<ArrayRef> {
    struct Day<'e, 'a> {
        first: &'e Event<'a>,
        counts: Counts,
        feature_duration_ms: i64,
    }
    let mut days: FxHashMap<(i32, &str, &str), Day> = FxHashMap::default();
    for e in events {
        let day = days
            .entry((e.date_key(), e.user_id, e.plan))
            .or_insert_with(|| Day {
                first: e,
                counts: Counts::default(),
                feature_duration_ms: 0,
            });
        keep_earliest(&mut day.first, e);
        day.counts.add(e);
        if e.kind == Kind::FeatureUsed {
            day.feature_duration_ms += e.duration_ms.unwrap_or(0);
        }
    }
    let days = sorted(days);
    let keys = || days.iter().map(|(k, _)| k);
    let rows = days.iter().map(|(_, d)| d);
    vec![
        int32s(keys().map(|k| k.0)),
        strings(keys().map(|k| k.1)),
        strings(keys().map(|k| k.2)),
        strings(rows.clone().map(|d| d.first.account_id)),
        int64s(rows.clone().map(|d| d.counts.events)),
        int64s(rows.clone().map(|d| d.counts.logins)),
        int64s(rows.clone().map(|d| d.counts.feature_events)),
        int64s(rows.map(|d| d.feature_duration_ms)),
    ]
}

/// `dim_user` observations: each user's earliest event as a sighting, and
/// every plan change. Sorted by user, time, sighting before change, event.
pub(crate) fn dim_user(events: &[Event<'_>]) -> Vec<ArrayRef> {
    // Unordered: the rows are sorted below.
    let mut earliest: FxHashMap<&str, &Event> = FxHashMap::default();
    for e in events {
        keep_earliest(earliest.entry(e.user_id).or_insert(e), e);
    }
    // (user_id, observed_at, is_change, event_id, account_id, plan)
    let mut rows: Vec<(&str, i64, bool, &str, &str, &str)> = earliest
        .values()
        .map(|e| (e.user_id, e.time, false, e.event_id, e.account_id, e.plan))
        .collect();
    rows.extend(
        events
            .iter()
            .filter(|e| e.kind == Kind::PlanChanged)
            // Silver requires `to_plan` on plan changes.
            .filter_map(|e| {
                let to_plan = e.to_plan?;
                Some((e.user_id, e.time, true, e.event_id, e.account_id, to_plan))
            }),
    );
    rows.sort_unstable();
    vec![
        strings(rows.iter().map(|r| r.0)),
        strings(rows.iter().map(|r| r.4)),
        strings(rows.iter().map(|r| r.5)),
        timestamps(rows.iter().map(|r| r.1)),
        booleans(rows.iter().map(|r| r.2)),
    ]
}

/// `dim_feature`: every used feature with its catalog attributes.
pub(crate) fn dim_feature(events: &[Event<'_>]) -> Vec<ArrayRef> {
    let mut features: BTreeMap<&str, Span> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == Kind::FeatureUsed) {
        if let Some(feature) = e.feature {
            features
                .entry(feature)
                .or_insert(Span::new(e.time))
                .add(e.time);
        }
    }
    let attributes = || features.keys().map(|f| catalog::feature(f));
    vec![
        strings(features.keys().copied()),
        strings(attributes().map(|a| a.0)),
        booleans(attributes().map(|a| a.1)),
        timestamps(features.values().map(|s| s.first)),
        timestamps(features.values().map(|s| s.last)),
    ]
}

/// `dim_date`: calendar attributes of every event date.
pub(crate) fn dim_date(events: &[Event<'_>]) -> Vec<ArrayRef> {
    let days: BTreeSet<i32> = events.iter().map(Event::day).collect();
    let civil = || days.iter().map(|d| calendar::civil(*d));
    vec![
        int32s(days.iter().map(|d| calendar::date_key(*d))),
        dates(days.iter().copied()),
        int32s(civil().map(|c| c.year)),
        int32s(civil().map(|c| calendar::quarter(c.month))),
        int32s(civil().map(|c| c.month)),
        int32s(civil().map(|c| c.day)),
        strings(days.iter().map(|d| calendar::weekday(*d))),
        booleans(days.iter().map(|d| calendar::is_weekend(*d))),
    ]
}

/// `dim_plan`: every plan events were on or changed to.
pub(crate) fn dim_plan(events: &[Event<'_>]) -> Vec<ArrayRef> {
    let plans: BTreeSet<&str> = events
        .iter()
        .flat_map(|e| [Some(e.plan), e.to_plan])
        .flatten()
        .collect();
    let attributes = || plans.iter().map(|p| catalog::plan(p));
    vec![
        strings(plans.iter().copied()),
        strings(attributes().map(|a| a.0)),
        int32s(attributes().map(|a| a.1)),
        booleans(attributes().map(|a| a.2)),
    ]
}

/// Wraps columns as a batch of the table's declared schema.
pub(crate) fn batch(
    schema: Arc<sluice_plugin_sdk::arrow_schema::Schema>,
    columns: Vec<ArrayRef>,
) -> Result<RecordBatch, String> {
    RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
}
