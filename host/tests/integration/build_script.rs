//! The build script's check for the wasm target, exercised on a toolchain
//! that lacks it: a fake `rustc` whose target library directory is empty and
//! a fake `rustup` that installs into it (or fails), as on a machine whose
//! image already has the pinned toolchain without `wasm32-wasip2`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

#[path = "../../build/wasm_target.rs"]
#[allow(dead_code)]
mod wasm_target;

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A fake sysroot without the target, and a `rustc` that names it.
fn toolchain_without_target(dir: &Path) -> (PathBuf, PathBuf) {
    let libdir = dir.join("sysroot/lib/rustlib/wasm32-wasip2/lib");
    let rustc = script(dir, "rustc", &format!("echo {}", libdir.display()));
    (libdir, rustc)
}

#[test]
fn a_missing_wasm_target_is_added_through_rustup_for_the_toolchain_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let (libdir, rustc) = toolchain_without_target(dir.path());
    let log = dir.path().join("rustup.log");
    let rustup = script(
        dir.path(),
        "rustup",
        &format!(
            "echo \"$@\" > {log}\nmkdir -p {lib}\ntouch {lib}/libcore-0123abcd.rlib",
            log = log.display(),
            lib = libdir.display()
        ),
    );
    let (rustc, rustup) = (rustc.to_str().unwrap(), rustup.to_str().unwrap());
    let done =
        wasm_target::ensure_wasm_target(rustc, rustup, Some("1.95.0-x86_64-unknown-linux-gnu"))
            .unwrap()
            .expect("it says what it did");
    assert!(
        done.contains("rustup target add --toolchain 1.95.0"),
        "{done}"
    );
    let args = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        args.trim(),
        "target add --toolchain 1.95.0-x86_64-unknown-linux-gnu wasm32-wasip2"
    );
    // Now present: nothing more to do.
    assert_eq!(
        wasm_target::ensure_wasm_target(rustc, rustup, None),
        Ok(None)
    );
}

#[test]
fn when_rustup_cannot_add_it_the_build_fails_at_once_with_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let (_, rustc) = toolchain_without_target(dir.path());
    let rustup = script(dir.path(), "rustup", "exit 1");
    let err = wasm_target::ensure_wasm_target(
        rustc.to_str().unwrap(),
        rustup.to_str().unwrap(),
        Some("1.95.0"),
    )
    .unwrap_err();
    assert!(
        err.contains("rustup target add --toolchain 1.95.0 wasm32-wasip2"),
        "{err}"
    );
    assert!(err.contains("run it by hand"), "{err}");
}
