//! The `cnn-explorer` binary: parses the command line; no command opens the window.

use std::process::ExitCode;

use clap::Parser;
use cnn_explorer::cli::{run, Cli};
use cnn_explorer::ui::{run_app, AppOptions, ScreenshotRequest};

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
        open_window(&cli)
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

fn open_window(cli: &Cli) -> anyhow::Result<()> {
    let args = &cli.window;
    run_app(AppOptions {
        photo: args.photo.clone(),
        model: args.model.clone(),
        device: cli.device,
        layer: args.layer.clone(),
        channel: args.channel,
        screenshot: args.screenshot.clone().map(|path| ScreenshotRequest {
            path,
            outcome: Default::default(),
            timeout: std::time::Duration::from_secs(120),
        }),
        ..Default::default()
    })
}
