//! Each default plugin passes its own fixtures through `sluice plugin test`,
//! and a wrong expectation makes the command fail.

use std::path::{Path, PathBuf};
use std::process::Command;

fn plugin_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins")
        .join(name)
}

fn plugin_test(wasm: &str, fixtures: &Path, expect: &Path, cache: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["plugin", "test", wasm, "--fixtures"])
        .arg(fixtures)
        .arg("--expect")
        .arg(expect)
        .env("SLUICE_CACHE_DIR", cache)
        .output()
        .unwrap()
}

#[test]
fn default_plugins_pass_their_fixtures() {
    let cache = tempfile::tempdir().unwrap();
    for (name, wasm) in [
        ("bronze", env!("SLUICE_PLUGIN_BRONZE")),
        ("silver", env!("SLUICE_PLUGIN_SILVER")),
        ("gold", env!("SLUICE_PLUGIN_GOLD")),
    ] {
        let dir = plugin_dir(name).join("fixtures");
        let out = plugin_test(
            wasm,
            &dir.join("events.ndjson"),
            &dir.join("expected.ndjson"),
            cache.path(),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with("ok: "), "{name}: {stdout}");
    }
}

#[test]
fn a_wrong_expectation_fails_and_shows_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = plugin_dir("silver").join("fixtures");
    let expected = std::fs::read_to_string(fixtures.join("expected.ndjson")).unwrap();
    let mut rows: Vec<serde_json::Value> = expected
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let victim = rows
        .iter_mut()
        .find(|r| r["table"] == "silver_events")
        .expect("silver fixtures accept some events");
    victim["row"]["user_id"] = serde_json::json!("somebody_else");
    let wrong = dir.path().join("wrong.ndjson");
    std::fs::write(
        &wrong,
        rows.iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let out = plugin_test(
        env!("SLUICE_PLUGIN_SILVER"),
        &fixtures.join("events.ndjson"),
        &wrong,
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("somebody_else") && stdout.contains("FAILED: 1 differences"),
        "{stdout}"
    );
}
