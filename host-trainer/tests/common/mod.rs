//! Running the built `ldl` binary from the integration tests.
#![allow(dead_code)] // each test binary uses a part

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// Runs `ldl ARGS` (no backtraces in its error messages).
pub fn ldl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ldl"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .output()
        .expect("run ldl")
}

/// Runs `ldl ARGS` with `RUST_BACKTRACE=1`, as a developer's shell may have it.
pub fn ldl_with_backtraces(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ldl"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .expect("run ldl")
}

/// Runs `ldl ARGS`, which must succeed and print JSON.
pub fn ok_json(args: &[&str]) -> Value {
    let out = ldl(args);
    assert!(
        out.status.success(),
        "ldl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("ldl {args:?}: not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Runs `ldl ARGS`, which must fail with exit code 1 (no panic) and say every one of `needles`.
pub fn fails_with(args: &[&str], needles: &[&str]) {
    let out = ldl(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "ldl {args:?}: {err}");
    assert!(!err.contains("panicked"), "ldl {args:?} panicked: {err}");
    for n in needles {
        assert!(err.contains(n), "ldl {args:?}: {n:?} not in: {err}");
    }
}

/// A path as an argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
