//! Running the real binary and reading what it printed.

use std::process::{Command, Output};

/// Runs `cnn-explorer` with `args` and extra environment `env` (quiet logs).
pub fn cnn_explorer_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cnn-explorer"));
    command.args(args).env("RUST_LOG", "warn");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("the binary runs")
}

/// Runs `cnn-explorer` with `args` (quiet logs).
pub fn cnn_explorer(args: &[&str]) -> Output {
    cnn_explorer_with(args, &[])
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
