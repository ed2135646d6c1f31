//! The `jitgate` binary on its own: help for every command and shell completions. The JIT loop
//! against a sidecar is in the sidecar's tests (`jitgate_cli`), which run this same binary: these
//! tests are also what makes cargo build it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_jitgate");

fn jitgate(home: &Path, args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("JITGATE_CONFIG_DIR", home).output().unwrap()
}

#[test]
fn every_command_has_help_and_completions_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["login", "--help"],
        &["request", "--help"],
        &["status", "--help"],
        &["approve", "--help"],
        &["deny", "--help"],
        &["revoke", "--help"],
        &["token", "--help"],
        &["audit", "tail", "--help"],
        &["audit", "verify", "--help"],
        &["completions", "--help"],
    ] {
        let out = jitgate(dir.path(), args);
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Usage: jitgate"), "{args:?}");
    }
    let out = jitgate(dir.path(), &["completions", "bash"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("_jitgate"));
    let out = jitgate(dir.path(), &["status"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("jitgate login"), "not signed in");
}
