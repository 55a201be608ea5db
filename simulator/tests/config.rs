//! `SimConfig::validate` refuses bad knobs and names the field at fault.

use std::time::Duration;

use sluice_simulator::{SimConfig, SimConfigError, Simulator};

fn error_of(cfg: SimConfig) -> SimConfigError {
    let err = cfg.validate().expect_err("config must be refused");
    // Compared as text: a NaN fraction makes the errors themselves unequal.
    let from_new = Simulator::new(cfg).err().map(|e| e.to_string());
    assert_eq!(from_new, Some(err.to_string()));
    err
}

#[test]
fn default_config_is_valid() {
    SimConfig::default().validate().unwrap();
    let cfg = SimConfig::default();
    assert_eq!(
        (cfg.seed, cfg.events, cfg.accounts, cfg.users_per_account),
        (42, 10_000, 200, 5)
    );
    assert_eq!(cfg.start.to_rfc3339(), "2026-01-05T00:00:00+00:00");
    assert_eq!(
        (cfg.days, cfg.late_min, cfg.late_max),
        (3, Duration::from_secs(60), Duration::from_secs(21_600))
    );
}

#[test]
fn bad_configs_name_their_field() {
    let d = SimConfig::default;
    let cases: Vec<(SimConfig, &str)> = vec![
        (SimConfig { events: 0, ..d() }, "events"),
        (SimConfig { accounts: 0, ..d() }, "accounts"),
        (
            SimConfig {
                users_per_account: 0,
                ..d()
            },
            "users_per_account",
        ),
        (SimConfig { days: 0, ..d() }, "days"),
        (
            SimConfig {
                duplicate_fraction: 1.5,
                ..d()
            },
            "duplicate_fraction",
        ),
        (
            SimConfig {
                late_fraction: -0.1,
                ..d()
            },
            "late_fraction",
        ),
        (
            SimConfig {
                malformed_fraction: f64::NAN,
                ..d()
            },
            "malformed_fraction",
        ),
        (
            SimConfig {
                late_min: Duration::from_secs(7_200),
                late_max: Duration::from_secs(60),
                ..d()
            },
            "late_min",
        ),
        (
            SimConfig {
                late_max: Duration::from_secs(40 * 86_400),
                ..d()
            },
            "late_max",
        ),
        (
            SimConfig {
                days: 100_000,
                ..d()
            },
            "days",
        ),
        (
            SimConfig {
                accounts: 100_000,
                users_per_account: 1_000,
                ..d()
            },
            "users_per_account",
        ),
    ];
    for (cfg, field) in cases {
        let err = error_of(cfg);
        assert_eq!(err.field(), field, "{err}");
        assert!(
            err.to_string().contains(field),
            "message {err:?} does not name {field}"
        );
    }
}

#[test]
fn fractions_must_leave_room_for_normal_events() {
    let over = error_of(SimConfig {
        duplicate_fraction: 0.5,
        late_fraction: 0.4,
        malformed_fraction: 0.3,
        ..SimConfig::default()
    });
    assert!(
        matches!(over, SimConfigError::FractionSum { .. }),
        "{over:?}"
    );
    assert!(over.to_string().contains("late_fraction"));

    let none_left = error_of(SimConfig {
        late_fraction: 0.5,
        malformed_fraction: 0.5,
        ..SimConfig::default()
    });
    assert_eq!(none_left, SimConfigError::NoNormalEvents);

    // All-malformed needs no normal events and is allowed.
    SimConfig {
        malformed_fraction: 1.0,
        ..SimConfig::default()
    }
    .validate()
    .unwrap();
}
