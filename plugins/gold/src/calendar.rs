//! Proleptic Gregorian calendar arithmetic on days since 1970-01-01, for
//! `date_key` and `dim_date` without a date library in the Wasm module.

const MICROS_PER_DAY: i64 = 86_400_000_000;

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub year: i32,
    pub month: i32,
    pub day: i32,
}

/// The UTC day (days since the epoch) of a microsecond timestamp.
pub(crate) fn day_of(micros: i64) -> i32 {
    // Event times come from 4-digit-year timestamps, so this fits.
    micros.div_euclid(MICROS_PER_DAY) as i32
}

/// The date of a day, by Howard Hinnant's `civil_from_days`.
pub(crate) fn civil(days: i32) -> Civil {
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year: year as i32,
        month: month as i32,
        day: day as i32,
    }
}

/// `yyyymmdd` as an integer, the star schema's date key.
pub(crate) fn date_key(days: i32) -> i32 {
    let d = civil(days);
    d.year * 10_000 + d.month * 100 + d.day
}

/// Monday = 0 … Sunday = 6; 1970-01-01 was a Thursday.
fn weekday_index(days: i32) -> usize {
    (i64::from(days) + 3).rem_euclid(7) as usize
}

pub(crate) fn weekday(days: i32) -> &'static str {
    WEEKDAYS[weekday_index(days)]
}

pub(crate) fn is_weekend(days: i32) -> bool {
    weekday_index(days) >= 5
}

pub(crate) fn quarter(month: i32) -> i32 {
    (month - 1) / 3 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ymd(year: i32, month: i32, day: i32) -> Civil {
        Civil { year, month, day }
    }

    #[test]
    fn known_dates() {
        assert_eq!(civil(0), ymd(1970, 1, 1));
        assert_eq!(civil(-1), ymd(1969, 12, 31));
        assert_eq!(civil(11_016), ymd(2000, 2, 29));
        assert_eq!(civil(20_458), ymd(2026, 1, 5));
        assert_eq!(date_key(20_458), 20_260_105);
        assert_eq!(weekday(0), "Thursday");
        assert_eq!(weekday(20_458), "Monday");
        assert!(is_weekend(20_463) && !is_weekend(20_462)); // Sat 10th, Fri 9th
        assert_eq!(day_of(-1), -1);
        assert_eq!([1, 3, 4, 12].map(quarter), [1, 1, 2, 4]);
    }

    /// Walks 1600–2400 day by day: every step is the next calendar day.
    #[test]
    fn consecutive_days_follow_the_calendar() {
        let is_leap = |y: i32| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let month_len = |y, m| match m {
            2 if is_leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut prev = civil(-135_140); // 1600-01-01
        assert_eq!(prev, ymd(1600, 1, 1));
        for days in -135_139..157_000 {
            let next = civil(days);
            let expected = if prev.day < month_len(prev.year, prev.month) {
                ymd(prev.year, prev.month, prev.day + 1)
            } else if prev.month < 12 {
                ymd(prev.year, prev.month + 1, 1)
            } else {
                ymd(prev.year + 1, 1, 1)
            };
            assert_eq!(next, expected, "day {days}");
            prev = next;
        }
    }
}
