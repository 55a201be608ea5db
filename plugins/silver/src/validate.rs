//! The silver validation rules. They run in a fixed order and an event is
//! quarantined with the first one it breaks, so the reason does not depend on
//! which of several problems happens to be checked first inside a rule.

use std::borrow::Cow;

use crate::event::{Field, Json, Prop, RawEvent, Shape};

/// Every valid `event_type`, as the event contract spells it.
pub const EVENT_TYPES: [&str; 4] = ["login", "feature_used", "session_end", "plan_changed"];

/// Every valid plan, as the event contract spells it.
pub const PLANS: [&str; 3] = ["free", "pro", "enterprise"];

/// Fields every event needs, in the order `missing_field` checks them.
const REQUIRED: [Field; 7] = [
    Field::EventId,
    Field::EventType,
    Field::Timestamp,
    Field::UserId,
    Field::AccountId,
    Field::Plan,
    Field::SessionId,
];

/// Longest value quoted in a detail; the host keeps the raw record anyway.
const MAX_QUOTED_CHARS: usize = 64;

/// Why a record was quarantined; `as_str` is the `reason` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    EmptyRecord,
    InvalidJson,
    NotAnObject,
    MissingField,
    InvalidField,
    UnknownEventType,
    InvalidTimestamp,
    NegativeDuration,
    NegativeItems,
}

impl Reason {
    /// Every reason, in the order the rules run.
    pub const ALL: [Reason; 9] = [
        Reason::EmptyRecord,
        Reason::InvalidJson,
        Reason::NotAnObject,
        Reason::MissingField,
        Reason::InvalidField,
        Reason::UnknownEventType,
        Reason::InvalidTimestamp,
        Reason::NegativeDuration,
        Reason::NegativeItems,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::EmptyRecord => "empty_record",
            Reason::InvalidJson => "invalid_json",
            Reason::NotAnObject => "not_an_object",
            Reason::MissingField => "missing_field",
            Reason::InvalidField => "invalid_field",
            Reason::UnknownEventType => "unknown_event_type",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::NegativeDuration => "negative_duration",
            Reason::NegativeItems => "negative_items",
        }
    }
}

/// A quarantined record: the rule it broke and a detail for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl Rejection {
    pub(crate) fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

/// An event's fields with the right JSON types, trimmed and normalised.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fields<'b> {
    pub event_id: &'b str,
    /// Not yet checked against [`EVENT_TYPES`].
    pub event_type: &'b str,
    /// Not yet parsed.
    pub timestamp: &'b str,
    pub user_id: &'b str,
    pub account_id: &'b str,
    pub plan: &'static str,
    pub session_id: &'b str,
    pub feature: Option<&'b str>,
    pub platform: Option<Cow<'b, str>>,
    pub country: Option<Cow<'b, str>>,
    pub app_version: Option<&'b str>,
    pub method: Option<&'b str>,
    pub duration_ms: Option<i64>,
    pub items: Option<i64>,
    pub from_plan: Option<&'static str>,
    pub to_plan: Option<&'static str>,
}

/// An event that passed every rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Valid<'b> {
    pub event_type: &'static str,
    /// Microseconds since the epoch, UTC.
    pub event_time: i64,
    pub fields: Fields<'b>,
}

/// Runs every rule after parsing on one event.
pub(crate) fn validate<'b>(event: &'b RawEvent<'_>) -> Result<Valid<'b>, Rejection> {
    check_missing(event)?;
    let fields = typed_fields(event)?;
    let event_type = known_event_type(fields.event_type)?;
    let event_time = event_time(fields.timestamp)?;
    check_not_negative(&fields)?;
    Ok(Valid {
        event_type,
        event_time,
        fields,
    })
}

/// A string field as the rules see it: trimmed, and empty meaning missing.
enum Text<'b> {
    Missing,
    Value(&'b str),
    WrongType(&'static str),
}

fn text<'b>(json: Option<&'b Json<'_>>) -> Text<'b> {
    match json {
        None | Some(Json::Null) => Text::Missing,
        Some(Json::Str(s)) => match trim(s) {
            "" => Text::Missing,
            trimmed => Text::Value(trimmed),
        },
        Some(other) => Text::WrongType(other.kind()),
    }
}

/// `str::trim`, skipping its Unicode scan when both ends are plainly not
/// whitespace, as nearly all values are.
fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(first), Some(last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

fn is_missing(json: Option<&Json<'_>>) -> bool {
    matches!(text(json), Text::Missing)
}

/// `missing_field`: the required fields, then those required by the type.
fn check_missing(event: &RawEvent<'_>) -> Result<(), Rejection> {
    let missing = |name: &str| Err(Rejection::new(Reason::MissingField, name));
    if let Some(field) = REQUIRED.into_iter().find(|f| is_missing(event.get(*f))) {
        return missing(field.name());
    }
    match text(event.get(Field::EventType)) {
        Text::Value("feature_used") if is_missing(event.get(Field::Feature)) => missing("feature"),
        // A non-object `properties` is reported as `invalid_field` instead:
        // saying `to_plan` is missing would hide the actual mistake.
        Text::Value("plan_changed")
            if !matches!(event.properties.shape, Shape::Other(_))
                && is_missing(event.properties.get(Prop::ToPlan)) =>
        {
            missing(Prop::ToPlan.path())
        }
        _ => Ok(()),
    }
}

/// `invalid_field`: JSON types, then plan spellings, field by field.
fn typed_fields<'b>(event: &'b RawEvent<'_>) -> Result<Fields<'b>, Rejection> {
    let required = |field: Field| required_str(event.get(field), field.name());
    let optional = |field: Field| optional_str(event.get(field), field.name());
    let prop = |p: Prop| optional_str(event.properties.get(p), p.path());
    // Initialisers run in the order written, which is the order problems are
    // reported in; a non-object `properties` is reported before its members.
    Ok(Fields {
        event_id: required(Field::EventId)?,
        event_type: required(Field::EventType)?,
        timestamp: required(Field::Timestamp)?,
        user_id: required(Field::UserId)?,
        account_id: required(Field::AccountId)?,
        plan: plan(required(Field::Plan)?, Field::Plan.name())?,
        session_id: required(Field::SessionId)?,
        feature: optional(Field::Feature)?,
        platform: optional(Field::Platform)?.map(lower_case),
        country: optional(Field::Country)?.map(upper_case),
        app_version: optional(Field::AppVersion)?,
        method: properties_object(event).and_then(|_| prop(Prop::Method))?,
        duration_ms: integer(event.properties.get(Prop::DurationMs), Prop::DurationMs)?,
        items: integer(event.properties.get(Prop::Items), Prop::Items)?,
        from_plan: prop(Prop::FromPlan)?
            .map(|p| plan(p, Prop::FromPlan.path()))
            .transpose()?,
        to_plan: prop(Prop::ToPlan)?
            .map(|p| plan(p, Prop::ToPlan.path()))
            .transpose()?,
    })
}

fn invalid_type(name: &str, expected: &str, found: &str) -> Rejection {
    Rejection::new(
        Reason::InvalidField,
        format!("{name}: expected {expected}, found {found}"),
    )
}

fn required_str<'b>(json: Option<&'b Json<'_>>, name: &str) -> Result<&'b str, Rejection> {
    match text(json) {
        Text::Value(s) => Ok(s),
        Text::Missing => Err(Rejection::new(Reason::MissingField, name)),
        Text::WrongType(found) => Err(invalid_type(name, "a string", found)),
    }
}

fn optional_str<'b>(json: Option<&'b Json<'_>>, name: &str) -> Result<Option<&'b str>, Rejection> {
    match text(json) {
        Text::Value(s) => Ok(Some(s)),
        Text::Missing => Ok(None),
        Text::WrongType(found) => Err(invalid_type(name, "a string", found)),
    }
}

fn properties_object(event: &RawEvent<'_>) -> Result<(), Rejection> {
    match event.properties.shape {
        Shape::Other(found) => Err(invalid_type("properties", "an object", found)),
        Shape::Null | Shape::Object => Ok(()),
    }
}

fn integer(json: Option<&Json<'_>>, prop: Prop) -> Result<Option<i64>, Rejection> {
    match json {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Int(v)) => Ok(Some(*v)),
        Some(other) => Err(invalid_type(prop.path(), "an integer", other.kind())),
    }
}

/// Maps a plan to its canonical `'static` spelling, or rejects it.
fn plan(value: &str, name: &str) -> Result<&'static str, Rejection> {
    PLANS.into_iter().find(|p| *p == value).ok_or_else(|| {
        Rejection::new(
            Reason::InvalidField,
            format!(
                "{name}: {} is not one of free|pro|enterprise",
                quoted(value)
            ),
        )
    })
}

/// Codes are ASCII; only allocate when something actually changes.
fn upper_case(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_lowercase) {
        Cow::Owned(s.to_uppercase())
    } else {
        Cow::Borrowed(s)
    }
}

fn lower_case(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_uppercase) {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// `unknown_event_type`: exact, case-sensitive match after trimming.
fn known_event_type(value: &str) -> Result<&'static str, Rejection> {
    EVENT_TYPES
        .into_iter()
        .find(|t| *t == value)
        .ok_or_else(|| {
            Rejection::new(
                Reason::UnknownEventType,
                format!(
                    "event_type {} is not one of {}",
                    quoted(value),
                    EVENT_TYPES.join("|")
                ),
            )
        })
}

/// `invalid_timestamp`: RFC 3339 with `Z` or an offset, to UTC microseconds.
fn event_time(value: &str) -> Result<i64, Rejection> {
    parse_rfc3339_micros(value).map_err(|why| {
        Rejection::new(
            Reason::InvalidTimestamp,
            format!("timestamp {} is not RFC 3339: {why}", quoted(value)),
        )
    })
}

/// Parses an RFC 3339 timestamp to microseconds since the epoch, UTC.
/// Digits past the microsecond are truncated.
pub fn parse_rfc3339_micros(value: &str) -> Result<i64, chrono::ParseError> {
    chrono::DateTime::parse_from_rfc3339(value).map(|t| t.timestamp_micros())
}

/// `negative_duration`, then `negative_items`.
fn check_not_negative(fields: &Fields<'_>) -> Result<(), Rejection> {
    let checks = [
        (
            fields.duration_ms,
            Prop::DurationMs,
            Reason::NegativeDuration,
        ),
        (fields.items, Prop::Items, Reason::NegativeItems),
    ];
    for (value, prop, reason) in checks {
        if let Some(v) = value.filter(|v| *v < 0) {
            return Err(Rejection::new(reason, format!("{} is {v}", prop.path())));
        }
    }
    Ok(())
}

/// A value as a JSON string for a detail, cut to a readable length.
fn quoted(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED_CHARS) {
        None => serde_json::to_string(value),
        Some((cut, _)) => serde_json::to_string(&format!("{}…", &value[..cut])),
    }
    .expect("a string always serialises")
}
