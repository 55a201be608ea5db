//! Fault injection for crash tests: with `SLUICE_FAILPOINT=<point>:<batch>`
//! the process aborts (no cleanup, like `kill -9`) when batch `<batch>`
//! reaches `<point>`. Points: `bronze-committed` (ingest tier);
//! `silver-committed` (silver tier, a step covering `<batch>`);
//! `gold-tables` (after the merged gold tables, before the derived ones)
//! and `before-done` (gold tier, a step covering `<batch>`);
//! `replay-silver-replaced` (a replay from that batch, before gold).

/// Aborts the process if `SLUICE_FAILPOINT` names this point and batch.
pub fn reached(point: &str, batch: i64) {
    reached_in(point, batch, batch);
}

/// Aborts the process if `SLUICE_FAILPOINT` names this point and a batch
/// in `first..=last` (a refine step).
pub fn reached_in(point: &str, first: i64, last: i64) {
    static SPEC: std::sync::OnceLock<Option<(String, i64)>> = std::sync::OnceLock::new();
    let spec = SPEC.get_or_init(|| {
        let value = std::env::var("SLUICE_FAILPOINT").ok()?;
        let (name, at) = value.split_once(':')?;
        Some((name.to_string(), at.parse().ok()?))
    });
    if spec
        .as_ref()
        .is_some_and(|(name, at)| name == point && (first..=last).contains(at))
    {
        eprintln!("failpoint {point} reached at batches {first}..={last}: aborting");
        std::process::abort();
    }
}
