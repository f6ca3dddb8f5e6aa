//! The `cnn-explorer` binary: parses the command line; no command opens the window.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use cnn_explorer::cli::{run, Cli};
use cnn_explorer::ui::{run_app, AppOptions, ScreenshotRequest};

/// Keeps freed tensor buffers in the heap for reuse. glibc hands every block over 128 KB back
/// to the kernel when it is freed, so each tensor op paid for fresh zeroed pages (page faults
/// and TLB flushes): an EfficientNet-Lite0 dream step took 314 ms instead of 114 ms.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters; called once before any other thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

/// Keeps library backtraces out of error messages. Under `RUST_BACKTRACE=1` candle captures a
/// stack trace into every error and prints it as part of the message (some twenty frames
/// between "error:" and the reason). `RUST_LIB_BACKTRACE=0` turns those off while a panic
/// still gets its backtrace; a `RUST_LIB_BACKTRACE` the user set is left as it is.
fn quiet_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // Called first in main, before any other thread exists.
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
}

/// Colours in log lines only on a terminal, and never with `NO_COLOR` set (no-color.org):
/// escape codes in a redirected log or a CI capture are noise.
fn log_colours() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

fn main() -> ExitCode {
    keep_freed_memory();
    quiet_library_backtraces();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(log_colours())
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

/// A double-clicked `.exe` gets a console window of its own, empty behind the app's window:
/// closed when no terminal started the app (the console then holds this process alone). From a
/// Command Prompt the console is shared, and kept for the log lines.
#[cfg(windows)]
fn close_own_console() {
    use windows_sys::Win32::System::Console::{FreeConsole, GetConsoleProcessList};
    let mut ids = [0u32; 2];
    // SAFETY: the buffer holds 2 process ids, and its length says so.
    let count = unsafe { GetConsoleProcessList(ids.as_mut_ptr(), ids.len() as u32) };
    if count == 1 {
        // SAFETY: detaches this process from its console; nothing else uses the handle.
        unsafe { FreeConsole() };
    }
}

#[cfg(not(windows))]
fn close_own_console() {}

fn open_window(cli: &Cli) -> anyhow::Result<()> {
    // A misconfigured weights folder would otherwise show as every model "missing".
    cnn_explorer::weights::check_weights_dir()?;
    let args = &cli.window;
    // Refused before the window opens, not two minutes later (the window checks again).
    if let (Some(shot), Some(photo)) = (&args.screenshot, &args.photo) {
        cnn_explorer::output::check_output(shot, &[photo])?;
    }
    // A screenshot run is scripted: its errors must reach the script.
    if args.screenshot.is_none() {
        close_own_console();
    }
    run_app(AppOptions {
        photo: args.photo.clone(),
        model: args.model.clone(),
        device: cli.device,
        layer: args.layer.clone(),
        channel: args.channel,
        gallery: args.gallery,
        explain: args.explain.map(|e| match e {
            cnn_explorer::cli::ExplainAtStart::One(m) => Some(m),
            cnn_explorer::cli::ExplainAtStart::All => None,
        }),
        tab: args.tab,
        deepdream: args.deepdream,
        dream: args.dream,
        attack: args.attack,
        train: args.train.clone(),
        screenshot: args.screenshot.clone().map(|path| ScreenshotRequest {
            path,
            outcome: Default::default(),
            // A dream, DeepDream or gallery at start is waited for longer.
            timeout: std::time::Duration::from_secs(
                if args.dream
                    || args.deepdream
                    || args.gallery
                    || args.attack
                    || args.train.is_some()
                    || args.explain.is_some()
                {
                    600
                } else {
                    120
                },
            ),
        }),
        ..Default::default()
    })
}
