//! Weekly rhythm of session starts in a user's local time: busy working
//! hours, quiet nights, a small evening bump and calmer weekends.

use std::f64::consts::LN_2;

use crate::catalog::COUNTRIES;

const SLOT_MS: i64 = 15 * 60_000;
const SLOTS_PER_DAY: i64 = 96;
const SLOTS_PER_WEEK: i64 = 7 * SLOTS_PER_DAY;
/// 1970-01-01 was a Thursday; shifting by three days makes slot 0 a Monday.
const EPOCH_WEEKDAY_SLOTS: i64 = 3 * SLOTS_PER_DAY;

/// Relative session-start intensity per 15-minute slot of a local week, max 1.
pub(crate) struct Diurnal {
    table: Vec<f64>,
}

impl Diurnal {
    pub fn new() -> Self {
        let raw: Vec<f64> = (0..SLOTS_PER_WEEK)
            .map(|slot| {
                let hour = (slot % SLOTS_PER_DAY) as f64 / 4.0 + 0.125;
                let weekend = slot / SLOTS_PER_DAY >= 5;
                local_intensity(hour, weekend)
            })
            .collect();
        let max = raw.iter().copied().fold(f64::MIN, f64::max);
        Self {
            table: raw.into_iter().map(|w| w / max).collect(),
        }
    }

    /// Intensity at a local wall-clock instant given as milliseconds since the epoch.
    pub fn weight(&self, local_ms: i64) -> f64 {
        let slot = (local_ms.div_euclid(SLOT_MS) + EPOCH_WEEKDAY_SLOTS).rem_euclid(SLOTS_PER_WEEK);
        self.table[slot as usize]
    }

    /// Average intensity over `[start_ms, start_ms + span_ms)` for a user base
    /// spread over countries by `country_share`; it calibrates the start rate.
    pub fn mean_weight(&self, start_ms: i64, span_ms: i64, country_share: &[f64]) -> f64 {
        let slots = (span_ms / SLOT_MS).max(1);
        let mut total = 0.0;
        for (country, share) in COUNTRIES.iter().zip(country_share) {
            let offset = country.utc_offset_min * 60_000;
            let sum: f64 = (0..slots)
                .map(|i| self.weight(start_ms + offset + i * SLOT_MS + SLOT_MS / 2))
                .sum();
            total += share * sum / slots as f64;
        }
        total.max(f64::MIN_POSITIVE)
    }
}

/// Unnormalised intensity at a local hour (0..24): a broad working-day peak
/// around 13:30, a late-evening bump, and weekends at about a third.
fn local_intensity(hour: f64, weekend: bool) -> f64 {
    let work = (-((hour - 13.5) / 4.0).powi(2)).exp();
    let evening = 0.15 * (-((hour - 21.0) / 1.5).powi(2) * LN_2).exp();
    let night_floor = 0.06;
    let day = night_floor + 0.92 * work + evening;
    if weekend { 0.35 * day } else { day }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn afternoon_is_busier_than_night_and_weekends() {
        let d = Diurnal::new();
        let hour = 3_600_000;
        // 2026-01-05 is a Monday.
        let monday = 1_767_571_200_000i64;
        assert!(d.weight(monday + 14 * hour) > 5.0 * d.weight(monday + 3 * hour));
        let saturday = monday + 5 * 24 * hour;
        assert!(d.weight(monday + 14 * hour) > 2.0 * d.weight(saturday + 14 * hour));
        assert!((d.table.iter().copied().fold(0.0, f64::max) - 1.0).abs() < 1e-12);
    }
}
