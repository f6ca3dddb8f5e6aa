//! `bench`: forward passes, dream steps and (with `--attribution`) attribution maps timed per
//! model.

use std::path::PathBuf;

use crate::bench::{bench_attribution, bench_backbone, bench_lucid, bench_train_folder, BenchPlan};
use crate::device::{describe_device, select_device, DeviceChoice};
use crate::inference::{backbone_or_stand_in, LoadedModel, StandIn};
use crate::weights::{find_model, CATALOGUE};

/// `bench`: the median time of each measurement, at 224 and 112 pixels.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Model to time (default: every model; absent weights are replaced by random ones).
    #[arg(long)]
    pub model: Option<String>,
    /// Timed calls per measurement (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Untimed calls first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Skip the steps of the real dream (Lucid's recipe, 1 and 4 images at the model's size).
    #[arg(long)]
    pub no_lucid: bool,
    /// Also time every attribution map (Grad-CAM ... occlusion) at the model's size.
    #[arg(long)]
    pub attribution: bool,
    /// Instead: train a head on this folder once, cold (no feature cache, default settings),
    /// and report the time and the process's peak memory (`train_head`, size = photos).
    #[arg(long, value_name = "DIR")]
    pub train: Option<PathBuf>,
    /// With `--train`: exit with status 1 when the peak memory exceeds this many MB.
    #[arg(long, value_name = "MB", requires = "train", value_parser = super::ranges::megabytes)]
    pub max_peak_mb: Option<f64>,
    /// A JSON list of the measurements.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// Times each model on `device`.
    pub fn run(self, device: DeviceChoice) -> anyhow::Result<()> {
        let device = select_device(device)?;
        eprintln!("device: {}", describe_device(&device));
        let specs = match &self.model {
            Some(name) => vec![find_model(name)?],
            None => CATALOGUE.iter().collect(),
        };
        let plan = BenchPlan {
            warmup: self.warmup,
            runs: self.runs,
        };
        let mut records = Vec::new();
        if let Some(dir) = &self.train {
            return self.train_scale(dir, specs, &device);
        }
        for spec in specs {
            let (backbone, real) = backbone_or_stand_in(spec, None, &device, StandIn::Random)?;
            if !real {
                eprintln!(
                    "{}: weights absent, timing random weights of the same shapes",
                    spec.name
                );
            }
            let mut rows = Vec::new();
            for size in [224, 112] {
                rows.extend(bench_backbone(
                    spec.name,
                    backbone.as_ref(),
                    &device,
                    size,
                    plan,
                )?);
            }
            let model = LoadedModel {
                spec,
                backbone,
                preprocess: spec.preprocess,
                device: device.clone(),
                weights_path: spec.path_in(&crate::weights::weights_dir()),
            };
            if !self.no_lucid {
                rows.extend(bench_lucid(&model, spec.preprocess.size, plan)?);
            }
            if self.attribution {
                rows.extend(bench_attribution(&model, plan)?);
            }
            if !self.json {
                for r in &rows {
                    println!(
                        "{:<20} {:<11} {:>4}  {:>9.1} ms",
                        r.model, r.what, r.size, r.median_ms
                    );
                }
            }
            records.extend(rows);
        }
        if self.json {
            super::print_json_pretty(&records)?;
        }
        Ok(())
    }

    /// `--train DIR`: one cold training per model (real weights only: the point is the
    /// memory a real run needs), checked against `--max-peak-mb`.
    fn train_scale(
        &self,
        dir: &std::path::Path,
        specs: Vec<&crate::weights::ModelSpec>,
        device: &candle_core::Device,
    ) -> anyhow::Result<()> {
        let mut records = Vec::new();
        for spec in specs {
            if !spec.path_in(&crate::weights::weights_dir()).is_file() {
                eprintln!("{}: weights absent, skipped", spec.name);
                continue;
            }
            let model = crate::inference::load_model(spec.name, None, device)?;
            let r = bench_train_folder(&model, dir)?;
            if !self.json {
                println!(
                    "{:<20} train_head  {:>6} photos  {:>9.1} s  peak {}",
                    r.model,
                    r.size,
                    r.median_ms / 1e3,
                    r.peak_mb
                        .map_or_else(|| "unknown".into(), |mb| format!("{mb:.0} MB"))
                );
            }
            records.push(r);
        }
        if self.json {
            super::print_json_pretty(&records)?;
        }
        let worst = records.iter().filter_map(|r| r.peak_mb).fold(0.0, f64::max);
        if let Some(bound) = self.max_peak_mb {
            anyhow::ensure!(
                worst <= bound,
                "peak memory {worst:.0} MB is over the bound of {bound:.0} MB"
            );
            eprintln!("peak memory {worst:.0} MB, within the bound of {bound:.0} MB");
        }
        Ok(())
    }
}
