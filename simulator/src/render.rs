//! Hand-rolled NDJSON writer: appends an event as one JSON object, optionally
//! tampered with one contract violation. All catalog strings are plain ASCII
//! without quotes or backslashes, so nothing needs escaping.

use uuid::Builder;

use crate::catalog::{APP_VERSIONS, COUNTRIES, FEATURE_SPECS, LOGIN_METHODS, PLATFORMS};
use crate::event::{Event, Payload};

/// A single deliberate contract violation to write into an otherwise good line.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tamper<'a> {
    None,
    OmitUserId,
    EventType(&'a str),
    Timestamp(&'a str),
    NegativeDuration(i64),
}

/// Appends `ev` as JSON (no trailing newline) to `out`.
pub(crate) fn write_event(out: &mut String, ev: &Event, tamper: Tamper<'_>) {
    out.push_str("{\"event_id\":\"");
    push_uuid(out, ev.id);
    if !matches!(tamper, Tamper::OmitUserId) {
        out.push_str("\",\"user_id\":\"u_");
        push_padded(out, u64::from(ev.user), 6);
    }
    out.push_str("\",\"account_id\":\"acct_");
    push_padded(out, u64::from(ev.account), 5);
    out.push_str("\",\"plan\":\"");
    out.push_str(ev.plan.as_str());
    out.push_str("\",\"event_type\":\"");
    out.push_str(match tamper {
        Tamper::EventType(name) => name,
        _ => event_type(&ev.payload),
    });
    if let Payload::FeatureUsed { feature, .. } = ev.payload {
        out.push_str("\",\"feature\":\"");
        out.push_str(FEATURE_SPECS[usize::from(feature)].name);
    }
    out.push_str("\",\"session_id\":\"s_");
    push_hex64(out, ev.session_id);
    out.push_str("\",\"timestamp\":\"");
    match tamper {
        Tamper::Timestamp(text) => out.push_str(text),
        _ => push_timestamp(out, ev.ts_ms),
    }
    out.push_str("\",\"platform\":\"");
    out.push_str(PLATFORMS[usize::from(ev.platform)]);
    out.push_str("\",\"country\":\"");
    out.push_str(COUNTRIES[usize::from(ev.country)].code);
    out.push_str("\",\"app_version\":\"");
    out.push_str(APP_VERSIONS[usize::from(ev.app_version)]);
    out.push_str("\",\"properties\":");
    write_properties(out, &ev.payload, tamper);
    out.push('}');
}

fn event_type(payload: &Payload) -> &'static str {
    match payload {
        Payload::Login { .. } => "login",
        Payload::FeatureUsed { .. } => "feature_used",
        Payload::SessionEnd { .. } => "session_end",
        Payload::PlanChanged { .. } => "plan_changed",
    }
}

fn write_properties(out: &mut String, payload: &Payload, tamper: Tamper<'_>) {
    match *payload {
        Payload::Login { method } => {
            out.push_str("{\"method\":\"");
            out.push_str(LOGIN_METHODS[usize::from(method)]);
            out.push_str("\"}");
        }
        Payload::FeatureUsed {
            duration_ms, items, ..
        } => {
            out.push_str("{\"duration_ms\":");
            push_duration(out, duration_ms, tamper);
            out.push_str(",\"items\":");
            push_u64(out, items);
            out.push('}');
        }
        Payload::SessionEnd { duration_ms } => {
            out.push_str("{\"duration_ms\":");
            push_duration(out, duration_ms, tamper);
            out.push('}');
        }
        Payload::PlanChanged { from, to } => {
            out.push_str("{\"from_plan\":\"");
            out.push_str(from.as_str());
            out.push_str("\",\"to_plan\":\"");
            out.push_str(to.as_str());
            out.push_str("\"}");
        }
    }
}

fn push_duration(out: &mut String, duration_ms: u64, tamper: Tamper<'_>) {
    match tamper {
        Tamper::NegativeDuration(value) => push_i64(out, value),
        _ => push_u64(out, duration_ms),
    }
}

pub(crate) fn push_uuid(out: &mut String, random: [u8; 16]) {
    let mut buf = [0u8; 36];
    let uuid = Builder::from_random_bytes(random).into_uuid();
    out.push_str(uuid.hyphenated().encode_lower(&mut buf));
}

/// Appends `n` in decimal.
pub(crate) fn push_u64(out: &mut String, n: u64) {
    push_padded(out, n, 1);
}

fn push_i64(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_u64(out, n.unsigned_abs());
}

/// Appends `n` in decimal, left-padded with zeros to at least `width` digits.
pub(crate) fn push_padded(out: &mut String, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut pos = buf.len();
    while n > 0 {
        pos -= 1;
        buf[pos] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let start = pos.min(buf.len() - width.clamp(1, buf.len()));
    out.push_str(std::str::from_utf8(&buf[start..]).expect("ASCII digits"));
}

/// Appends `n` as exactly 16 lowercase hex digits.
fn push_hex64(out: &mut String, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    out.push_str(std::str::from_utf8(&buf).expect("ASCII hex"));
}

/// Appends an RFC 3339 UTC timestamp with milliseconds, e.g. `2026-01-05T09:30:00.250Z`.
pub(crate) fn push_timestamp(out: &mut String, ts_ms: i64) {
    let days = ts_ms.div_euclid(86_400_000);
    let ms_of_day = ts_ms.rem_euclid(86_400_000) as u64;
    let (year, month, day) = civil_from_days(days);
    push_padded(out, year.max(0) as u64, 4);
    out.push('-');
    push_padded(out, u64::from(month), 2);
    out.push('-');
    push_padded(out, u64::from(day), 2);
    out.push('T');
    push_padded(out, ms_of_day / 3_600_000, 2);
    out.push(':');
    push_padded(out, ms_of_day / 60_000 % 60, 2);
    out.push(':');
    push_padded(out, ms_of_day / 1000 % 60, 2);
    out.push('.');
    push_padded(out, ms_of_day % 1000, 3);
    out.push('Z');
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`), cheaper than going through chrono for every event.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, SecondsFormat};

    #[test]
    fn timestamps_match_chrono() {
        // A spread of instants including leap days and century boundaries.
        let samples = [
            0i64,
            951_782_400_000,
            1_767_571_200_000,
            1_709_164_800_123,
            4_107_542_399_999,
            253_402_300_799_999,
        ];
        for ms in samples
            .into_iter()
            .chain((0..2000).map(|i| i * 7_919_993_177))
        {
            let mut ours = String::new();
            push_timestamp(&mut ours, ms);
            let expected = DateTime::from_timestamp_millis(ms)
                .unwrap()
                .to_rfc3339_opts(SecondsFormat::Millis, true);
            assert_eq!(ours, expected, "ms = {ms}");
        }
    }

    #[test]
    fn numbers_pad_and_hex() {
        let mut s = String::new();
        push_padded(&mut s, 123, 6);
        push_u64(&mut s, 0);
        push_padded(&mut s, 1_234_567, 5);
        assert_eq!(s, "00012301234567");
        let mut h = String::new();
        push_hex64(&mut h, 0x0123_4567_89ab_cdef);
        assert_eq!(h, "0123456789abcdef");
    }
}
