//! The client SDKs' own suites — pytest for `sdks/python`, `node --test` for
//! `sdks/typescript` — each against a real `switchyard dev` it starts from this build's
//! binary. Without Python's httpx and pytest, or Node.js ≥ 18, a suite skips loudly
//! locally and fails under `CI=true` (`.ci/run` installs them).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::support::{skip_or_fail, which};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd` in `dir` with this build's binary as SWITCHYARD_BIN; panics with its output
/// unless it succeeds.
fn run_suite(name: &str, mut cmd: Command, dir: &Path) {
    let out = cmd
        .current_dir(dir)
        .env("SWITCHYARD_BIN", env!("CARGO_BIN_EXE_switchyard"))
        .output()
        .unwrap_or_else(|e| panic!("{name}: cannot start: {e}"));
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the {name} suite failed:\n{text}");
    eprintln!("{name}: {}", text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(""));
}

#[test]
fn python_sdk_suite() {
    let Some(python) = which("python3") else {
        return skip_or_fail("python3 is not installed (the Python SDK's suite)");
    };
    let probe = Command::new(&python).args(["-c", "import httpx, pytest"]).output().unwrap();
    if !probe.status.success() {
        return skip_or_fail(
            "Python's httpx and pytest are not installed (pip install httpx pytest)",
        );
    }
    let sdk = root().join("sdks/python");
    let mut cmd = Command::new(python);
    // The working tree's SDK, not an installed copy that may be older.
    cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .env("PYTHONPATH", sdk.join("src"));
    run_suite("Python SDK", cmd, &sdk);
}

#[test]
fn typescript_sdk_suite() {
    let Some(node) = which("node") else {
        return skip_or_fail("Node.js is not installed (the TypeScript SDK's suite)");
    };
    let version = Command::new(&node).arg("--version").output().unwrap();
    let major: u32 = String::from_utf8_lossy(&version.stdout)
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 18 {
        return skip_or_fail("Node.js is older than 18 (the TypeScript SDK's suite)");
    }
    let sdk = root().join("sdks/typescript");
    let build = Command::new(&node).arg("scripts/build.mjs").current_dir(&sdk).output().unwrap();
    assert!(build.status.success(), "build: {}", String::from_utf8_lossy(&build.stderr));
    let tests: Vec<PathBuf> = std::fs::read_dir(sdk.join("test"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".test.js"))
        .collect();
    assert!(tests.len() >= 4, "the TypeScript SDK's test files: {tests:?}");
    let mut cmd = Command::new(node);
    // Two files at a time: each starts its own dev and sandbox, and the rest of the test
    // binary runs beside them on a 2-core machine.
    cmd.args(["--test", "--test-concurrency=2"]).args(&tests);
    run_suite("TypeScript SDK", cmd, &sdk);
}
