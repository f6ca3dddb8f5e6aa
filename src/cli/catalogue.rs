//! `models`, `fetch` and `paths`: the model catalogue, its downloads and where files live.

use std::sync::Arc;

use crate::weights::download::{fetch_model, DownloadControl};
use crate::weights::{self, catalogue_status, find_model};

/// `models`: the catalogue with each model's size, source and presence.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelsArgs {
    /// A JSON list of `{"name", "arch", "size_bytes", "source", "present"}`.
    #[arg(long)]
    pub json: bool,
}

impl ModelsArgs {
    /// Prints the catalogue.
    pub fn run(self) -> anyhow::Result<()> {
        let dir = weights::weights_dir();
        let rows = catalogue_status(&dir);
        if self.json {
            return super::print_json_pretty(&rows);
        }
        println!("weights folder: {}", dir.display());
        for m in rows {
            println!(
                "{:<20} {:<20} {:>7.1} MB  {:<9} {}",
                m.name,
                m.arch.to_string(),
                m.size_bytes as f64 / 1e6,
                if m.present { "present" } else { "absent" },
                m.source
            );
        }
        Ok(())
    }
}

/// `fetch`: download one model's weights.
#[derive(Debug, Clone, clap::Args)]
pub struct FetchArgs {
    /// Model name (see `models`).
    pub model: String,
    /// Download again even if the weights are present.
    #[arg(long)]
    pub force: bool,
}

impl FetchArgs {
    /// Downloads the weights into the weights folder, with a progress bar.
    pub fn run(self) -> anyhow::Result<()> {
        let spec = find_model(&self.model)?;
        let dir = weights::weights_dir();
        if spec.is_present_in(&dir) && !self.force {
            println!(
                "{} is already present at {}",
                spec.name,
                spec.path_in(&dir).display()
            );
            return Ok(());
        }
        eprintln!("downloading {} from {}", spec.name, spec.source.describe());
        let bar = indicatif::ProgressBar::new(spec.size_bytes);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let progress_bar = bar.clone();
        let control = DownloadControl {
            progress: Arc::new(move |done, total| {
                if let Some(total) = total {
                    progress_bar.set_length(total);
                }
                progress_bar.set_position(done);
            }),
            ..DownloadControl::default()
        };
        let result = fetch_model(spec, &dir, &control);
        bar.finish_and_clear();
        let path = result?;
        println!("saved {} to {}", spec.name, path.display());
        Ok(())
    }
}

/// `paths`: where the weights, heads, caches and settings live (see [`crate::places`]).
#[derive(Debug, Clone, clap::Args)]
pub struct PathsArgs {
    /// `{"weights", "heads", "cache", "settings"}`, each a path.
    #[arg(long)]
    pub json: bool,
}

impl PathsArgs {
    /// Prints the places, with the variable that moves each.
    pub fn run(self) -> anyhow::Result<()> {
        use crate::places::{Places, CACHE_VAR, HEADS_VAR, STATE_VAR, WEIGHTS_VAR};
        let places = Places::current();
        if self.json {
            return super::print_json_pretty(&places);
        }
        let settings_dir = places.settings.parent().unwrap_or(&places.settings);
        for (what, path, var) in [
            ("weights", places.weights.as_path(), WEIGHTS_VAR),
            ("heads", places.heads.as_path(), HEADS_VAR),
            ("caches", places.cache.as_path(), CACHE_VAR),
            ("settings", settings_dir, STATE_VAR),
        ] {
            println!("{what:<9} {}  ({var} moves it)", path.display());
        }
        Ok(())
    }
}
