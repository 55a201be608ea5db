//! A plugin scaffolded by `sluice plugin new`, built, tested and deployed
//! the way `docs/writing-plugins.md` tells a newcomer.

use super::*;

/// `plugin new` → `cargo build` → `plugin test` → `plugin deploy`, as the
/// guide tells a newcomer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scaffolded_plugin_builds_passes_its_fixtures_and_deploys() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let run = |args: &[&str], cwd: &Path| {
        common::run_ok(
            std::process::Command::new(sluice)
                .args(args)
                .current_dir(cwd)
                .env("SLUICE_ADMIN_TOKEN", TOKEN),
        )
    };
    run(
        &["plugin", "new", "acme-rules", "--layer", "silver"],
        dir.path(),
    );
    let crate_dir = dir.path().join("acme-rules");
    let wasm = build_scaffold(&crate_dir);
    let wasm = wasm.to_str().unwrap();
    let out = run(
        &[
            "plugin",
            "test",
            wasm,
            "--fixtures",
            "fixtures/events.ndjson",
            "--expect",
            "fixtures/expected.ndjson",
        ],
        &crate_dir,
    );
    assert!(out.contains("rows match"), "{out}");

    let lake = dir.path().join("lake");
    let host = Host::start(host_config(&lake)).await;
    let out = run(
        &[
            "plugin",
            "deploy",
            "silver",
            wasm,
            "--fixtures",
            "fixtures",
            "--admin",
            &host.admin_url,
        ],
        &crate_dir,
    );
    assert!(out.contains("acme-rules@0.1.0"), "{out}");
    let list = run(&["plugin", "list", "--admin", &host.admin_url], &crate_dir);
    assert!(list.contains("acme-rules"), "{list}");
    let mut event: serde_json::Value = serde_json::from_str(&panic_event(1, "")).unwrap();
    event["account_id"] = json!("test_internal");
    host.send(&[event.to_string(), panic_event(2, "")], 10)
        .await;
    host.stop().await;
    let reasons = common::rows(&lake, "SELECT reason FROM quarantine").await;
    assert_eq!(reasons, vec![json!({"reason": "test_account"}).to_string()]);
}

/// Builds the scaffolded crate for wasm32-wasip2 in a target directory kept
/// under the workspace's, so repeated runs reuse compiled dependencies.
fn build_scaffold(crate_dir: &Path) -> PathBuf {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    // Resolve to the versions the workspace is tested with.
    std::fs::copy(lock, crate_dir.join("Cargo.lock")).unwrap();
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(crate_dir)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    common::run_ok(&mut cmd);
    target.join("wasm32-wasip2/release/acme_rules.wasm")
}
