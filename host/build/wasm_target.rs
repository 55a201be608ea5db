//! Makes sure the toolchain that builds the host can also build the plugins
//! for `wasm32-wasip2`, before any long build starts.
//!
//! rustup adds the targets of `rust-toolchain.toml` only when it installs a
//! toolchain, not to one that already exists (a machine image may link its
//! `stable` as the pinned version), so the build adds the target itself.
//! Shared by `build.rs` and a test that exercises it against a fake sysroot.

use std::path::Path;
use std::process::Command;

/// The target the plugins are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Whether `libdir` (what `rustc --print target-libdir --target …` names)
/// holds an installed standard library.
pub fn target_installed(libdir: &Path) -> bool {
    std::fs::read_dir(libdir).is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libcore-") && name.ends_with(".rlib")
        })
    })
}

/// The library directory `rustc` would use for the wasm target.
pub fn target_libdir(rustc: &str) -> Result<std::path::PathBuf, String> {
    let output = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .map_err(|e| format!("running {rustc} --print target-libdir: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{rustc} --print target-libdir --target {WASM_TARGET} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().into())
}

/// The command that adds the target to `toolchain` (the one rustup says is
/// in use; `None` outside rustup).
pub fn add_target_command(toolchain: Option<&str>) -> Vec<String> {
    let mut args = vec!["rustup".to_string(), "target".into(), "add".into()];
    if let Some(toolchain) = toolchain {
        args.extend(["--toolchain".into(), toolchain.into()]);
    }
    args.push(WASM_TARGET.into());
    args
}

/// Checks the target and, when it is missing, adds it with `rustup` (the
/// program of that name). Returns what it did, or the one command to run by
/// hand.
pub fn ensure_wasm_target(
    rustc: &str,
    rustup: &str,
    toolchain: Option<&str>,
) -> Result<Option<String>, String> {
    if target_installed(&target_libdir(rustc)?) {
        return Ok(None);
    }
    let command = add_target_command(toolchain);
    let shown = command.join(" ");
    let status = Command::new(rustup).args(&command[1..]).status();
    let hint = format!(
        "the {WASM_TARGET} target is not installed for the toolchain in use and `{shown}` did not add it; run it by hand, then build again"
    );
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => return Err(format!("{hint} ({status})")),
        Err(e) => return Err(format!("{hint} ({e})")),
    }
    if !target_installed(&target_libdir(rustc)?) {
        return Err(hint);
    }
    Ok(Some(format!("added the {WASM_TARGET} target: {shown}")))
}
