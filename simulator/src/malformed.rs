//! Broken lines: each [`MalformedKind`] turns a generated event into one
//! specific contract violation, like the ones real producers send.

use rand::Rng;

use crate::event::Event;
use crate::render::{Tamper, push_timestamp, push_u64, push_uuid, write_event};

/// How a malformed line is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MalformedKind {
    /// A good line cut off before its closing brace (a torn write).
    TruncatedJson,
    /// Valid JSON without the required `user_id`.
    MissingUserId,
    /// Valid JSON whose `event_type` is not in the contract, e.g. `"featureUsed"`.
    UnknownEventType,
    /// Valid JSON whose `timestamp` is not RFC 3339, e.g. `"2026/01/05 10:00:00"`.
    UnparsableTimestamp,
    /// Valid JSON with a negative `properties.duration_ms`.
    NegativeDuration,
    /// A line that is not JSON at all (proxy error pages, log lines, binary junk).
    Garbage,
}

impl MalformedKind {
    /// Every kind, in a fixed order.
    pub const ALL: [MalformedKind; 6] = [
        MalformedKind::TruncatedJson,
        MalformedKind::MissingUserId,
        MalformedKind::UnknownEventType,
        MalformedKind::UnparsableTimestamp,
        MalformedKind::NegativeDuration,
        MalformedKind::Garbage,
    ];

    /// A short snake_case name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            MalformedKind::TruncatedJson => "truncated_json",
            MalformedKind::MissingUserId => "missing_user_id",
            MalformedKind::UnknownEventType => "unknown_event_type",
            MalformedKind::UnparsableTimestamp => "unparsable_timestamp",
            MalformedKind::NegativeDuration => "negative_duration",
            MalformedKind::Garbage => "garbage",
        }
    }
}

/// Misspelt or invented event types seen from buggy or outdated clients.
const UNKNOWN_EVENT_TYPES: [&str; 7] = [
    "featureUsed",
    "logout!!",
    "LOGIN",
    "feature-used",
    "page_view",
    "SessionEnd",
    "",
];

/// Timestamps no RFC 3339 parser accepts; the `{}` ones are derived from the event.
const FIXED_BAD_TIMESTAMPS: [&str; 4] = [
    "2026-13-45T25:61:00.000Z",
    "yesterday",
    "",
    "Mon Jan  5 10:00:00 2026",
];

/// Whole lines that are not JSON at all.
const GARBAGE: [&str; 5] = [
    "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    "ERROR upstream connection reset by peer",
    "}{",
    "undefined",
    "\u{FFFD}\u{FFFD}PK\u{FFFD}binary\u{FFFD}",
];

/// Appends a broken rendering of `ev` to `out` and reports how it is broken.
pub(crate) fn write_malformed<R: Rng>(out: &mut String, ev: &Event, rng: &mut R) -> MalformedKind {
    let kind = pick_kind(ev, rng);
    match kind {
        MalformedKind::TruncatedJson => {
            write_event(out, ev, Tamper::None);
            // Any proper prefix of an object lacks its closing brace.
            let keep = rng.random_range(out.len() / 4..out.len() - 1);
            out.truncate(keep);
        }
        MalformedKind::MissingUserId => write_event(out, ev, Tamper::OmitUserId),
        MalformedKind::UnknownEventType => {
            let name = UNKNOWN_EVENT_TYPES[rng.random_range(0..UNKNOWN_EVENT_TYPES.len())];
            write_event(out, ev, Tamper::EventType(name));
        }
        MalformedKind::UnparsableTimestamp => {
            let text = bad_timestamp(ev.ts_ms, rng);
            write_event(out, ev, Tamper::Timestamp(&text));
        }
        MalformedKind::NegativeDuration => {
            let real = ev.duration_ms().unwrap_or(0).min(i64::MAX as u64) as i64;
            let negative = -rng.random_range(1..=real.max(1));
            write_event(out, ev, Tamper::NegativeDuration(negative));
        }
        MalformedKind::Garbage => write_garbage(out, ev, rng),
    }
    kind
}

/// Chooses uniformly among the kinds that apply: only events that carry a
/// duration can have a negative one.
fn pick_kind<R: Rng>(ev: &Event, rng: &mut R) -> MalformedKind {
    let applicable = if ev.duration_ms().is_some() {
        &MalformedKind::ALL[..]
    } else {
        &[
            MalformedKind::TruncatedJson,
            MalformedKind::MissingUserId,
            MalformedKind::UnknownEventType,
            MalformedKind::UnparsableTimestamp,
            MalformedKind::Garbage,
        ][..]
    };
    applicable[rng.random_range(0..applicable.len())]
}

/// A timestamp in a wrong format, mostly the event's own time mis-rendered.
fn bad_timestamp<R: Rng>(ts_ms: i64, rng: &mut R) -> String {
    let mut good = String::with_capacity(24);
    push_timestamp(&mut good, ts_ms);
    match rng.random_range(0..4) {
        // Slashes and a space, as a locale-formatted client clock would send.
        0 => format!("{} {}", good[..10].replace('-', "/"), &good[11..19]),
        // Epoch milliseconds as a string.
        1 => {
            let mut s = String::new();
            push_u64(&mut s, ts_ms.max(0) as u64);
            s
        }
        // Missing the zone designator and separator.
        2 => good[..19].replace('T', ""),
        _ => FIXED_BAD_TIMESTAMPS[rng.random_range(0..FIXED_BAD_TIMESTAMPS.len())].to_owned(),
    }
}

fn write_garbage<R: Rng>(out: &mut String, ev: &Event, rng: &mut R) {
    if rng.random_bool(0.3) {
        // A key=value log line that slipped into the event stream; it keeps the id.
        out.push_str("event_id=");
        push_uuid(out, ev.id);
        out.push_str(" level=info msg=\"event accepted\"");
    } else {
        out.push_str(GARBAGE[rng.random_range(0..GARBAGE.len())]);
    }
}
