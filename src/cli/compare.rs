//! `compare`: the same head on the same split with several backbones, as a table and text bar
//! charts (or one JSON line per model).

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::bail;

use super::train::HeadArgs;
use crate::device::{select_device, DeviceChoice};
use crate::progress::Throttle;
use crate::train::compare::{
    compare_backbones, CompareEntry, CompareEvent, CompareObserver, CompareRow,
};
use crate::train::TrainEvent;
use crate::weights::{self, ModelSpec};

/// `compare`: each model's row as it finishes, then the table and the charts.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// The folder of labelled photos (as for train-head).
    pub dir: PathBuf,
    /// Models to compare, comma-separated (default: every model whose weights are in the
    /// weights folder).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    #[command(flatten)]
    pub head: HeadArgs,
    /// One JSON object per line: each model's result as it finishes.
    #[arg(long)]
    pub json: bool,
}

impl CompareArgs {
    /// The models to compare: those named, else every one whose weights are present.
    fn models(&self, weights_dir: &std::path::Path) -> anyhow::Result<Vec<&'static ModelSpec>> {
        let specs: Vec<&'static ModelSpec> = if self.models.is_empty() {
            weights::CATALOGUE
                .iter()
                .filter(|m| m.is_present_in(weights_dir))
                .collect()
        } else {
            self.models
                .iter()
                .map(|n| weights::find_model(n.trim()))
                .collect::<Result<_, _>>()?
        };
        if specs.is_empty() {
            bail!(
                "no model's weights are in {} (download some with `cnn-explorer fetch NAME`, \
                 or name them with --models)",
                weights_dir.display()
            );
        }
        Ok(specs)
    }

    /// Trains the head with each model and prints the comparison; fails when no model could
    /// be trained.
    pub fn run(self, device: DeviceChoice) -> anyhow::Result<()> {
        let weights_dir = weights::weights_dir();
        let specs = self.models(&weights_dir)?;
        let device = select_device(device)?;
        let config = self
            .head
            .request(&self.dir)
            .config(self.head.feature_cache());
        let mut log = CompareLog {
            json: self.json,
            throttle: Throttle::terminal(),
            failed: None,
        };
        let entries =
            compare_backbones(&specs, &self.dir, &weights_dir, &config, &device, &mut log);
        if let Some(e) = log.failed.take() {
            return Err(e);
        }
        let entries = entries?;
        if !self.json {
            print!("{}", comparison_table(&entries));
        }
        if entries.iter().all(|e| e.row().is_none()) {
            bail!("no model could be trained");
        }
        Ok(())
    }
}

/// The comparison's observer: each model's start, feature progress (at most once a second)
/// and epochs on stderr; each finished entry as a JSON line with `--json`. A line that cannot
/// be written stops the comparison, as [`super::train::TrainLog`] does.
struct CompareLog {
    json: bool,
    throttle: Throttle,
    failed: Option<anyhow::Error>,
}

impl CompareObserver for CompareLog {
    fn on_event(&mut self, event: CompareEvent<'_>) {
        match event {
            CompareEvent::Started {
                model,
                index,
                total,
            } => {
                self.throttle.reset();
                eprintln!("[{}/{total}] {model}", index + 1);
            }
            CompareEvent::Train(TrainEvent::Features(p)) => {
                if self.throttle.ready(p.done == p.total) {
                    eprintln!(
                        "  features {}/{} ({} cached), {:.1} images/s",
                        p.done, p.total, p.cached, p.images_per_s
                    );
                }
            }
            CompareEvent::Train(TrainEvent::Epoch(m)) => {
                eprintln!("  epoch {:>3}: val acc {:.1}%", m.epoch, m.val_acc * 100.0)
            }
            CompareEvent::Train(_) => {}
            CompareEvent::Finished(entry) => {
                if self.json {
                    if let Err(e) = super::print_json(entry) {
                        self.failed.get_or_insert(e);
                    }
                } else if let Some(error) = entry.error() {
                    eprintln!("  {}: {error}", entry.model);
                }
            }
        }
    }

    fn is_cancelled(&self) -> bool {
        self.failed.is_some()
    }
}

/// The comparison as a text table with bar charts of accuracy and feature time.
fn comparison_table(entries: &[CompareEntry]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<20} {:>9} {:>12} {:>11} {:>10} {:>6}  split",
        "model", "val acc", "ms/photo", "parameters", "weights", "dim"
    );
    for e in entries {
        match &e.result {
            Ok(r) => {
                let _ = writeln!(
                    out,
                    "{:<20} {:>8.1}% {:>12.1} {:>10.1}M {:>8.1} MB {:>6}  {}/{}",
                    r.model,
                    r.val_accuracy * 100.0,
                    r.feature_ms_per_image,
                    r.parameters as f64 / 1e6,
                    r.weights_bytes as f64 / 1e6,
                    r.embedding_dim,
                    r.train_photos,
                    r.val_photos
                );
            }
            Err(error) => {
                let _ = writeln!(out, "{:<20} {error}", e.model);
            }
        }
    }
    let rows: Vec<&CompareRow> = entries.iter().filter_map(CompareEntry::row).collect();
    let slowest = rows
        .iter()
        .map(|r| r.feature_ms_per_image)
        .fold(0.0, f64::max);
    let bar = |fraction: f64| "█".repeat((fraction.clamp(0.0, 1.0) * 40.0).round() as usize);
    let _ = writeln!(out, "\nvalidation accuracy");
    for r in &rows {
        let _ = writeln!(
            out,
            "  {:<20} {} {:.1}%",
            r.model,
            bar(f64::from(r.val_accuracy)),
            r.val_accuracy * 100.0
        );
    }
    let _ = writeln!(out, "feature time per photo");
    for r in &rows {
        let _ = writeln!(
            out,
            "  {:<20} {} {:.1} ms",
            r.model,
            bar(r.feature_ms_per_image / slowest.max(1e-9)),
            r.feature_ms_per_image
        );
    }
    out
}
