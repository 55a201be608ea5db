//! One raw event parsed in a single borrowed pass: known fields are typed
//! loosely (a wrong JSON type is a validation error, not a parse error) and
//! unknown fields are kept as raw JSON text.
//!
//! The `Deserialize` impls are written by hand because derive can only keep
//! unknown fields through `#[serde(flatten)]`, which buffers every field and
//! cannot hold a borrowed `RawValue`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;

/// A JSON value where a string or an integer is expected, keeping just enough
/// of anything else to say what it was.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool,
    Int(i64),
    /// A float, or an integer outside `i64`.
    OtherNumber,
    Str(Cow<'a, str>),
    Array,
    Object,
}

impl Json<'_> {
    /// The JSON type, worded for a quarantine detail.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool => "a boolean",
            Json::Int(_) => "an integer",
            Json::OtherNumber => "a non-integer number",
            Json::Str(_) => "a string",
            Json::Array => "an array",
            Json::Object => "an object",
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Json<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Json::OtherNumber, Json::Int))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Json::OtherNumber)
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }
    // Only strings with escapes land here: they cannot be borrowed.
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Json::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Json::Object)
    }
}

/// A map key, borrowed from the input unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A JSON object kept as its entries, in input order, values as raw text.
pub(crate) type Entries<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// Rejects a repeated key: an object with one makes its meaning ambiguous.
fn push_unique<'a, E: de::Error>(
    entries: &mut Entries<'a>,
    key: Cow<'a, str>,
    value: &'a RawValue,
) -> Result<(), E> {
    if entries.iter().any(|(k, _)| *k == key) {
        return Err(E::custom(format_args!("duplicate field `{key}`")));
    }
    entries.push((key, value));
    Ok(())
}

/// Top-level string fields of the event contract, in validation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    EventId,
    EventType,
    Timestamp,
    UserId,
    AccountId,
    Plan,
    SessionId,
    Feature,
    Platform,
    Country,
    AppVersion,
}

impl Field {
    #[cfg(test)]
    pub(crate) const ALL: [Field; 11] = [
        Field::EventId,
        Field::EventType,
        Field::Timestamp,
        Field::UserId,
        Field::AccountId,
        Field::Plan,
        Field::SessionId,
        Field::Feature,
        Field::Platform,
        Field::Country,
        Field::AppVersion,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Field::EventId => "event_id",
            Field::EventType => "event_type",
            Field::Timestamp => "timestamp",
            Field::UserId => "user_id",
            Field::AccountId => "account_id",
            Field::Plan => "plan",
            Field::SessionId => "session_id",
            Field::Feature => "feature",
            Field::Platform => "platform",
            Field::Country => "country",
            Field::AppVersion => "app_version",
        }
    }

    /// A `match` rather than a search of `ALL`: this runs for every key.
    fn from_name(name: &str) -> Option<Field> {
        Some(match name {
            "event_id" => Field::EventId,
            "event_type" => Field::EventType,
            "timestamp" => Field::Timestamp,
            "user_id" => Field::UserId,
            "account_id" => Field::AccountId,
            "plan" => Field::Plan,
            "session_id" => Field::SessionId,
            "feature" => Field::Feature,
            "platform" => Field::Platform,
            "country" => Field::Country,
            "app_version" => Field::AppVersion,
            _ => return None,
        })
    }
}

/// Properties the silver schema lifts into columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prop {
    Method,
    DurationMs,
    Items,
    FromPlan,
    ToPlan,
}

impl Prop {
    #[cfg(test)]
    pub(crate) const ALL: [Prop; 5] = [
        Prop::Method,
        Prop::DurationMs,
        Prop::Items,
        Prop::FromPlan,
        Prop::ToPlan,
    ];

    /// Dotted path, as quarantine details name it.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Prop::Method => "properties.method",
            Prop::DurationMs => "properties.duration_ms",
            Prop::Items => "properties.items",
            Prop::FromPlan => "properties.from_plan",
            Prop::ToPlan => "properties.to_plan",
        }
    }

    fn from_name(name: &str) -> Option<Prop> {
        Some(match name {
            "method" => Prop::Method,
            "duration_ms" => Prop::DurationMs,
            "items" => Prop::Items,
            "from_plan" => Prop::FromPlan,
            "to_plan" => Prop::ToPlan,
            _ => return None,
        })
    }
}

/// What kind of JSON value a parsed member or record was.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `null`, or (for a member) absent.
    #[default]
    Null,
    Object,
    /// Some other JSON type, worded for a quarantine detail.
    Other(&'static str),
}

/// Something filled in place from a JSON object's entries.
trait FillFromMap<'a> {
    fn fill<A: MapAccess<'a>>(&mut self, map: A) -> Result<(), A::Error>;
}

/// Parses one JSON value: an object fills the target in place (so its
/// buffers are reused from record to record); anything else is only named.
struct ShapeSeed<'s, T>(&'s mut T);

impl<'a, T: FillFromMap<'a>> DeserializeSeed<'a> for ShapeSeed<'_, T> {
    type Value = Shape;

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<Shape, D::Error> {
        // `deserialize_any` parses a non-object to its end, so `[1,` is
        // reported as invalid JSON rather than as "not an object".
        deserializer.deserialize_any(self)
    }
}

impl<'a, T: FillFromMap<'a>> Visitor<'a> for ShapeSeed<'_, T> {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'a>>(self, map: A) -> Result<Shape, A::Error> {
        self.0.fill(map)?;
        Ok(Shape::Object)
    }
    fn visit_unit<E>(self) -> Result<Shape, E> {
        Ok(Shape::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Other("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Other("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Other("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Other("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::Other("a string"))
    }
    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<Shape, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Shape::Other("an array"))
    }
}

/// The `properties` member of an event.
#[derive(Debug, Default)]
pub(crate) struct Properties<'a> {
    /// `Null` when absent.
    pub(crate) shape: Shape,
    /// Every entry when an object, in input order.
    pub(crate) entries: Entries<'a>,
    /// The lifted properties, parsed; indexed by `Prop as usize`.
    known: [Option<Json<'a>>; 5],
}

impl<'a> Properties<'a> {
    /// A lifted property; `None` when absent or when properties is not an object.
    pub(crate) fn get(&self, prop: Prop) -> Option<&Json<'a>> {
        self.known[prop as usize].as_ref()
    }

    fn clear(&mut self) {
        self.shape = Shape::Null;
        self.entries.clear();
        self.known = Default::default();
    }
}

impl<'a> FillFromMap<'a> for Properties<'a> {
    fn fill<A: MapAccess<'a>>(&mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key()? {
            let raw: &'a RawValue = map.next_value()?;
            if let Some(prop) = Prop::from_name(&key) {
                // A second parse of a few bytes: the raw text is kept for the
                // re-serialised `properties` column.
                self.known[prop as usize] =
                    Some(serde_json::from_str(raw.get()).map_err(de::Error::custom)?);
            }
            push_unique(&mut self.entries, key, raw)?;
        }
        Ok(())
    }
}

/// An event object as received; one is reused for every record of a batch.
#[derive(Debug, Default)]
pub(crate) struct RawEvent<'a> {
    /// Indexed by `Field as usize`; `None` when absent.
    fields: [Option<Json<'a>>; 11],
    pub(crate) properties: Properties<'a>,
    /// Unknown top-level fields, in input order.
    pub(crate) extra: Entries<'a>,
}

impl<'a> RawEvent<'a> {
    pub(crate) fn get(&self, field: Field) -> Option<&Json<'a>> {
        self.fields[field as usize].as_ref()
    }

    /// Parses one record into `self`, reusing its buffers. `Ok` says whether
    /// the record was an object; errors are serde_json's (invalid JSON,
    /// duplicate keys).
    pub(crate) fn parse(&mut self, bytes: &'a [u8]) -> Result<Shape, serde_json::Error> {
        self.fields = Default::default();
        self.properties.clear();
        self.extra.clear();
        // One UTF-8 check per record is cheaper than serde_json's per string.
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Err(utf8_error(bytes));
        };
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let shape = ShapeSeed(self).deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(shape)
    }
}

/// serde_json's own message for a record that is not UTF-8.
fn utf8_error(bytes: &[u8]) -> serde_json::Error {
    // Only strings may hold non-ASCII bytes, and parsing them into values
    // checks them, so this always fails; the fallback is for safety.
    serde_json::from_slice::<serde_json::Value>(bytes)
        .err()
        .unwrap_or_else(|| de::Error::custom("invalid UTF-8"))
}

impl<'a> FillFromMap<'a> for RawEvent<'a> {
    fn fill<A: MapAccess<'a>>(&mut self, mut map: A) -> Result<(), A::Error> {
        let mut seen_properties = false;
        while let Some(Key(key)) = map.next_key()? {
            if let Some(field) = Field::from_name(&key) {
                let slot = &mut self.fields[field as usize];
                if slot.is_some() {
                    return Err(de::Error::duplicate_field(field.name()));
                }
                *slot = Some(map.next_value()?);
            } else if key == "properties" {
                if seen_properties {
                    return Err(de::Error::duplicate_field("properties"));
                }
                seen_properties = true;
                self.properties.shape = map.next_value_seed(ShapeSeed(&mut self.properties))?;
            } else {
                let raw: &'a RawValue = map.next_value()?;
                push_unique(&mut self.extra, key, raw)?;
            }
        }
        Ok(())
    }
}

/// Appends `entries` as one compact JSON object.
pub(crate) fn write_compact_object(entries: &Entries<'_>, out: &mut String) {
    out.push('{');
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_key(key, out);
        out.push(':');
        write_compact(value.get(), out);
    }
    out.push('}');
}

#[expect(
    clippy::ptr_arg,
    reason = "the variant tells whether the key had escapes in the input"
)]
fn write_key(key: &Cow<'_, str>, out: &mut String) {
    match key {
        // A borrowed key had no escapes in the input, so it needs none now
        // (JSON strings cannot hold raw control characters).
        Cow::Borrowed(k) => {
            out.push('"');
            out.push_str(k);
            out.push('"');
        }
        Cow::Owned(k) => {
            out.push_str(&serde_json::to_string(k).expect("a string always serialises"));
        }
    }
}

/// Appends valid JSON text without the whitespace between tokens.
pub(crate) fn write_compact(json: &str, out: &mut String) {
    let is_space = |b: u8| matches!(b, b' ' | b'\n' | b'\r' | b'\t');
    // The producers in practice send compact JSON: copy it whole.
    if !json.bytes().any(is_space) {
        out.push_str(json);
        return;
    }
    let (mut in_string, mut escaped) = (false, false);
    let mut start = 0;
    for (i, b) in json.bytes().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if is_space(b) {
            out.push_str(&json[start..i]);
            start = i + 1;
        }
    }
    out.push_str(&json[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> RawEvent<'_> {
        let mut event = RawEvent::default();
        assert_eq!(event.parse(json.as_bytes()).unwrap(), Shape::Object);
        event
    }

    fn shape(json: &[u8]) -> Result<Shape, serde_json::Error> {
        RawEvent::default().parse(json)
    }

    #[test]
    fn borrows_plain_strings_and_owns_escaped_ones() {
        let e = event(r#"{"user_id":"u_1","account_id":"a\"1"}"#);
        assert!(matches!(
            e.get(Field::UserId),
            Some(Json::Str(Cow::Borrowed("u_1")))
        ));
        assert_eq!(
            e.get(Field::AccountId),
            Some(&Json::Str(Cow::Owned("a\"1".into())))
        );
    }

    #[test]
    fn keeps_wrong_types_for_validation() {
        let e = event(r#"{"user_id":5,"plan":["pro"],"feature":{"a":1},"country":null}"#);
        assert_eq!(e.get(Field::UserId), Some(&Json::Int(5)));
        assert_eq!(e.get(Field::Plan), Some(&Json::Array));
        assert_eq!(e.get(Field::Feature), Some(&Json::Object));
        assert_eq!(e.get(Field::Country), Some(&Json::Null));
        assert_eq!(e.get(Field::EventId), None);
    }

    #[test]
    fn lifts_known_properties_and_keeps_all() {
        let e = event(r#"{"properties":{"duration_ms":12,"x":[1, 2],"to_plan":"pro"}}"#);
        assert_eq!(e.properties.shape, Shape::Object);
        assert_eq!(e.properties.get(Prop::DurationMs), Some(&Json::Int(12)));
        assert_eq!(
            e.properties.get(Prop::ToPlan),
            Some(&Json::Str("pro".into()))
        );
        let mut out = String::new();
        write_compact_object(&e.properties.entries, &mut out);
        assert_eq!(out, r#"{"duration_ms":12,"x":[1,2],"to_plan":"pro"}"#);
    }

    #[test]
    fn names_a_non_object_properties() {
        assert_eq!(
            event(r#"{"properties":[1]}"#).properties.shape,
            Shape::Other("an array")
        );
        assert_eq!(
            event(r#"{"properties":null}"#).properties.shape,
            Shape::Null
        );
        assert_eq!(event("{}").properties.shape, Shape::Null);
    }

    #[test]
    fn reuse_forgets_the_previous_record() {
        let lines: [&[u8]; 2] = [
            br#"{"user_id":"u","properties":{"items":1},"x":1}"#,
            br#"{"event_id":"e"}"#,
        ];
        let mut e = RawEvent::default();
        e.parse(lines[0]).unwrap();
        e.parse(lines[1]).unwrap();
        assert_eq!(e.get(Field::UserId), None);
        assert_eq!(e.properties.get(Prop::Items), None);
        assert_eq!(e.properties.shape, Shape::Null);
        assert!(e.properties.entries.is_empty() && e.extra.is_empty());
    }

    #[test]
    fn field_names_round_trip() {
        for field in Field::ALL {
            assert_eq!(Field::from_name(field.name()), Some(field));
        }
        for prop in Prop::ALL {
            assert_eq!(
                Prop::from_name(&prop.path()["properties.".len()..]),
                Some(prop)
            );
        }
    }

    #[test]
    fn compaction_keeps_spaces_inside_strings() {
        let mut out = String::new();
        write_compact("{ \"a b\" : \"c \\\" d\" ,\n \"e\":[ 1 ] }", &mut out);
        assert_eq!(out, r#"{"a b":"c \" d","e":[1]}"#);
    }

    #[test]
    fn escaped_keys_are_reescaped() {
        let e = event(r#"{"we\"ird":1,"plain":"x"}"#);
        let mut out = String::new();
        write_compact_object(&e.extra, &mut out);
        assert_eq!(out, r#"{"we\"ird":1,"plain":"x"}"#);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        for json in [
            r#"{"user_id":"a","user_id":"b"}"#,
            r#"{"x":1,"x":2}"#,
            r#"{"properties":{"items":1,"items":2}}"#,
            r#"{"properties":null,"properties":{}}"#,
        ] {
            let err = shape(json.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("duplicate field"), "{json}: {err}");
        }
    }

    #[test]
    fn non_objects_are_named_and_truncation_is_invalid() {
        assert_eq!(shape(b"[1,2]").unwrap(), Shape::Other("an array"));
        assert_eq!(shape(b"\"x\"").unwrap(), Shape::Other("a string"));
        assert_eq!(shape(b"null").unwrap(), Shape::Null);
        assert!(shape(b"[1,").is_err());
        assert!(shape(b"{\"a\":1} x").is_err());
    }

    #[test]
    fn invalid_utf8_gets_serde_json_message() {
        let err = shape(b"{\"x\":\"\xff\"}").unwrap_err();
        assert!(err.to_string().contains("line 1 column"), "{err}");
        // Even inside an unknown field, which is otherwise kept unparsed.
        assert!(shape(b"{\"user_id\":\"u\",\"x\":[\"\xc3\"]}").is_err());
    }
}
