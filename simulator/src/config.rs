//! Simulator knobs ([`SimConfig`]) and their validation ([`SimConfigError`]).

use std::time::Duration;

use chrono::{DateTime, Datelike, TimeZone, Utc};

/// Everything that shapes a simulated stream. Same config ⇒ same bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Seed of every random draw; the only source of variation.
    pub seed: u64,
    /// Lines the simulator yields, all kinds (normal, duplicate, late, malformed) counted.
    pub events: u64,
    /// Number of customer accounts.
    pub accounts: u32,
    /// Users in each account.
    pub users_per_account: u32,
    /// Event time of the start of the simulated period.
    pub start: DateTime<Utc>,
    /// Length of the simulated period; sets the session rate so `events` spread over it.
    pub days: u32,
    /// Share of lines that re-send an earlier good line verbatim.
    pub duplicate_fraction: f64,
    /// Share of lines that arrive out of order, older than the stream's time.
    pub late_fraction: f64,
    /// Share of lines that are broken in one of the [`crate::MalformedKind`] ways.
    pub malformed_fraction: f64,
    /// Smallest lateness (event time) of a late line.
    pub late_min: Duration,
    /// Largest lateness (event time) of a late line.
    pub late_max: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            events: 10_000,
            accounts: 200,
            users_per_account: 5,
            start: Utc
                .with_ymd_and_hms(2026, 1, 5, 0, 0, 0)
                .single()
                .expect("2026-01-05T00:00:00Z is a valid instant"),
            days: 3,
            duplicate_fraction: 0.0,
            late_fraction: 0.0,
            malformed_fraction: 0.0,
            late_min: Duration::from_secs(60),
            late_max: Duration::from_secs(6 * 3600),
        }
    }
}

/// Upper bounds that keep millisecond arithmetic and 4-digit years safe.
const MAX_DAYS: u32 = 36_500;
const MAX_USERS: u64 = 10_000_000;
const MAX_LATENESS: Duration = Duration::from_secs(30 * 24 * 3600);

/// A config value the simulator cannot honour; every variant names its field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimConfigError {
    #[error("{field} must be at least 1")]
    Zero { field: &'static str },
    #[error("{field} must be a number within [0, 1], got {value}")]
    FractionOutOfRange { field: &'static str, value: f64 },
    #[error("duplicate_fraction + late_fraction + malformed_fraction = {sum} must not exceed 1")]
    FractionSum { sum: f64 },
    #[error(
        "duplicate_fraction + late_fraction + malformed_fraction = 1 leaves no normal events, \
         but duplicate and late lines are made from normal ones"
    )]
    NoNormalEvents,
    #[error("late_min ({min:?}) must not exceed late_max ({max:?})")]
    LateRange { min: Duration, max: Duration },
    #[error("late_max ({0:?}) must not exceed 30 days")]
    LateMaxTooLarge(Duration),
    #[error("days ({0}) must not exceed {MAX_DAYS}")]
    DaysTooLarge(u32),
    #[error("accounts × users_per_account ({0}) must not exceed {MAX_USERS}")]
    TooManyUsers(u64),
    #[error("start ({0}) and the simulated period must lie within years 1970..=9999")]
    StartOutOfRange(DateTime<Utc>),
}

impl SimConfigError {
    /// The config field (or field group) at fault, as spelled in [`SimConfig`].
    pub fn field(&self) -> &'static str {
        match self {
            Self::Zero { field } | Self::FractionOutOfRange { field, .. } => field,
            Self::FractionSum { .. } | Self::NoNormalEvents => {
                "duplicate_fraction + late_fraction + malformed_fraction"
            }
            Self::LateRange { .. } => "late_min",
            Self::LateMaxTooLarge(_) => "late_max",
            Self::DaysTooLarge(_) => "days",
            Self::TooManyUsers(_) => "users_per_account",
            Self::StartOutOfRange(_) => "start",
        }
    }
}

impl SimConfig {
    /// Checks every knob; the first problem found is returned.
    pub fn validate(&self) -> Result<(), SimConfigError> {
        self.validate_counts()?;
        self.validate_fractions()?;
        self.validate_lateness()?;
        self.validate_period()
    }

    fn validate_counts(&self) -> Result<(), SimConfigError> {
        let counts = [
            ("events", self.events),
            ("accounts", u64::from(self.accounts)),
            ("users_per_account", u64::from(self.users_per_account)),
            ("days", u64::from(self.days)),
        ];
        if let Some((field, _)) = counts.iter().find(|(_, v)| *v == 0) {
            return Err(SimConfigError::Zero { field });
        }
        let users = u64::from(self.accounts) * u64::from(self.users_per_account);
        if users > MAX_USERS {
            return Err(SimConfigError::TooManyUsers(users));
        }
        Ok(())
    }

    fn validate_fractions(&self) -> Result<(), SimConfigError> {
        let fractions = [
            ("duplicate_fraction", self.duplicate_fraction),
            ("late_fraction", self.late_fraction),
            ("malformed_fraction", self.malformed_fraction),
        ];
        for (field, value) in fractions {
            // `contains` is false for NaN, so NaN is rejected here too.
            if !(0.0..=1.0).contains(&value) {
                return Err(SimConfigError::FractionOutOfRange { field, value });
            }
        }
        let sum = self.duplicate_fraction + self.late_fraction + self.malformed_fraction;
        // A little slack so 0.3 + 0.3 + 0.4 is not refused for rounding.
        if sum > 1.0 + 1e-9 {
            return Err(SimConfigError::FractionSum { sum });
        }
        let derived = self.duplicate_fraction + self.late_fraction;
        if derived > 0.0 && sum >= 1.0 - 1e-9 {
            return Err(SimConfigError::NoNormalEvents);
        }
        Ok(())
    }

    fn validate_lateness(&self) -> Result<(), SimConfigError> {
        if self.late_min > self.late_max {
            return Err(SimConfigError::LateRange {
                min: self.late_min,
                max: self.late_max,
            });
        }
        if self.late_max > MAX_LATENESS {
            return Err(SimConfigError::LateMaxTooLarge(self.late_max));
        }
        Ok(())
    }

    fn validate_period(&self) -> Result<(), SimConfigError> {
        if self.days > MAX_DAYS {
            return Err(SimConfigError::DaysTooLarge(self.days));
        }
        // Sessions may run a little past the period; leave a year of headroom.
        let last_year = self.start.year() + (self.days / 365) as i32 + 1;
        if self.start.year() < 1970 || last_year > 9999 {
            return Err(SimConfigError::StartOutOfRange(self.start));
        }
        Ok(())
    }
}
