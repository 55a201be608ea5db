//! Builds the default plugins for wasm32-wasip2 so the host can embed them:
//! `sluice` then works out of the box with no separate plugin build step.
//!
//! The nested cargo uses its own target directory (`target/wasm`) because the
//! outer build holds the lock on the main one.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "build/wasm_target.rs"]
mod wasm_target;

/// Embedded default plugins.
const PLUGINS: [&str; 3] = ["bronze", "silver", "gold"];
/// Plugins only tests use (their paths are exported, not embedded).
const TEST_PLUGINS: [&str; 5] = [
    "hostile",
    "silver_next",
    "silver_strict",
    "silver_buggy",
    "silver_wide",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for watched in ["wit", "plugins", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=SLUICE_SKIP_PLUGIN_BUILD");
    if std::env::var_os("SLUICE_SKIP_PLUGIN_BUILD").is_some_and(|v| !v.is_empty()) {
        // For `cargo check` while a plugin does not compile: embeds empty
        // placeholders, so the binary cannot run plugins.
        return embed_placeholders();
    }
    ensure_wasm_target();
    // Separate invocations and target dirs: the test plugins link the
    // default ones as libraries without their exports (feature unification
    // would undo that), and their cdylib artifacts would overwrite the real ones.
    let main_target = main_target_dir(&root);
    export_paths(
        &build_plugins(&root, &main_target.join("wasm"), &PLUGINS),
        &PLUGINS,
    );
    export_paths(
        &build_plugins(&root, &main_target.join("wasm-test"), &TEST_PLUGINS),
        &TEST_PLUGINS,
    );
}

/// Fails at once, not after the long host build, when the plugins cannot be
/// built; adds the target itself where rustup can.
fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").ok();
    match wasm_target::ensure_wasm_target(&rustc, "rustup", toolchain.as_deref()) {
        Ok(Some(done)) => println!("cargo:warning={done}"),
        Ok(None) => {}
        Err(why) => panic!("{why}"),
    }
}

fn export_paths(out_dir: &Path, plugins: &[&str]) {
    for plugin in plugins {
        let file = out_dir.join(format!("sluice_plugin_{plugin}.wasm"));
        assert!(
            file.exists(),
            "plugin {plugin} was not built: {}",
            file.display()
        );
        println!(
            "cargo:rustc-env=SLUICE_PLUGIN_{}={}",
            plugin.to_uppercase(),
            file.display()
        );
    }
}

fn main_target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// Builds `plugins` into `target_dir`; returns the directory of the `.wasm` files.
fn build_plugins(root: &Path, target_dir: &Path, plugins: &[&str]) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--profile", "wasm", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(target_dir);
    for plugin in plugins {
        cmd.args(["-p", &format!("sluice-plugin-{}", plugin.replace('_', "-"))]);
    }
    // The outer build's flags are for the host target, not for wasm.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo to build the plugins");
    assert!(status.success(), "building the plugins {plugins:?} failed");
    target_dir.join("wasm32-wasip2").join("wasm")
}

fn embed_placeholders() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("placeholder.wasm");
    std::fs::write(&out, b"").unwrap();
    for plugin in PLUGINS.iter().chain(&TEST_PLUGINS) {
        println!(
            "cargo:rustc-env=SLUICE_PLUGIN_{}={}",
            plugin.to_uppercase(),
            out.display()
        );
    }
}
