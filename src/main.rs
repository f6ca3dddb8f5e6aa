//! The `cnn-explorer` binary: parses the command line; no command opens the window.

use std::process::ExitCode;

use clap::Parser;
use cnn_explorer::cli::{run, Cli};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = if cli.command.is_none() {
        let models = cnn_explorer::weights::catalogue_status(&cnn_explorer::weights::weights_dir());
        cnn_explorer::ui::run_placeholder_window(models)
    } else {
        run(cli)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
