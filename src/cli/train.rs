//! `train-head`, and the head flags it shares with `compare`: the flags fill the one
//! [`TrainRequest`] the window's Train tab fills too, and a [`TrainLog`] follows the run as
//! the worker's observer does, throttled by [`Throttle`].

use std::io::Write;
use std::path::{Path, PathBuf};

use super::ModelArgs;
use crate::device::DeviceChoice;
use crate::output::{check_output, write_atomic};
use crate::progress::Throttle;
use crate::train::features::default_cache_dir;
use crate::train::pipeline::{train_on_folder, TrainOutcome};
use crate::train::{TrainEvent, TrainObserver, TrainRequest};

/// How a head trains (`train-head`, `compare`).
#[derive(Debug, Clone, clap::Args)]
pub struct HeadArgs {
    #[arg(long, default_value_t = 10, value_parser = super::ranges::count)]
    pub epochs: usize,
    /// Share of each class kept for validation.
    #[arg(long = "val", default_value_t = 0.2, value_parser = super::ranges::share)]
    pub val_fraction: f64,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-3, value_parser = super::ranges::rate)]
    pub lr: f64,
    #[arg(long, default_value_t = 1e-4, value_parser = super::ranges::decay)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 32, value_parser = super::ranges::count)]
    pub batch_size: usize,
    /// Seed of the split, the initial weights and the shuffling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A hidden layer of this width (with ReLU and dropout) instead of a linear head.
    #[arg(long, value_parser = super::ranges::hidden_units)]
    pub mlp: Option<usize>,
    /// The hidden layer's dropout probability (with --mlp).
    #[arg(
        long,
        default_value_t = TrainRequest::DEFAULT_DROPOUT,
        requires = "mlp",
        value_parser = parse_dropout
    )]
    pub dropout: f32,
    /// Also train on each photo flipped left-right.
    #[arg(long)]
    pub flip: bool,
    /// Oxford-IIIT Pet: two classes, cat and dog, instead of 37 breeds.
    #[arg(long)]
    pub cats_vs_dogs: bool,
    /// Compute every feature again, without reading or writing the cache.
    #[arg(long)]
    pub no_cache: bool,
}

/// A dropout probability, 0 (none) up to but not including 1.
fn parse_dropout(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(p) if (0.0..1.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "'{s}' is not a dropout probability (0 up to 1, 1 excluded)"
        )),
    }
}

impl HeadArgs {
    /// The training request these flags describe, on the photos of `dir`.
    pub fn request(&self, dir: &Path) -> TrainRequest {
        TrainRequest {
            dir: dir.to_path_buf(),
            cats_vs_dogs: self.cats_vs_dogs,
            val_fraction: self.val_fraction,
            epochs: self.epochs,
            lr: self.lr,
            weight_decay: self.weight_decay,
            batch_size: self.batch_size,
            seed: self.seed,
            mlp_hidden: self.mlp,
            dropout: self.dropout,
            flip: self.flip,
            ..TrainRequest::default()
        }
    }

    /// Where features are cached (`None` with `--no-cache`).
    pub fn feature_cache(&self) -> Option<PathBuf> {
        (!self.no_cache).then(default_cache_dir)
    }
}

/// `train-head`: train, save, report.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainHeadArgs {
    /// The folder of labelled photos: class sub-folders, Oxford-IIIT Pet or PetImages.
    pub dir: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub head: HeadArgs,
    /// Also train the backbone's last convolutional block (VGG: conv5_1-3; ResNet: layer4's
    /// last block; EfficientNet-Lite: the head convolution; MobileNetV3 has none), from its
    /// pretrained weights; its inputs are not cached.
    #[arg(long)]
    pub fine_tune: bool,
    /// The block's learning rate as a fraction of the head's.
    #[arg(long, default_value_t = 0.1, value_parser = super::ranges::rate)]
    pub fine_tune_lr_factor: f64,
    /// Where to save the head (its description goes next to it as .json).
    #[arg(short, long, default_value = "head.safetensors")]
    pub output: PathBuf,
    /// Also write the split as JSON (classes, and each side's paths with their class), e.g.
    /// to train the same split elsewhere.
    #[arg(long)]
    pub split_out: Option<PathBuf>,
    /// Also make the dataset map by t-SNE (after training; the PCA map always comes): its
    /// points, KL divergence and (up to 5,000 photos) how well it and the PCA map keep each
    /// photo's 5 nearest neighbours (trustworthiness).
    #[arg(long)]
    pub tsne: bool,
    /// One JSON object per line: the dataset, each epoch, the result.
    #[arg(long)]
    pub json: bool,
}

impl TrainHeadArgs {
    /// The training request these flags describe.
    pub fn request(&self) -> TrainRequest {
        TrainRequest {
            fine_tune: self.fine_tune,
            fine_tune_lr_factor: self.fine_tune_lr_factor,
            output: self.output.clone(),
            ..self.head.request(&self.dir)
        }
    }

    /// Where this run writes: the head, its description and the split, if asked.
    fn outputs(&self, request: &TrainRequest) -> Vec<PathBuf> {
        let json = request.output.with_extension("json");
        [
            Some(request.output.clone()),
            Some(json),
            self.split_out.clone(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Trains the head, saves it (and the split, if asked) and prints the result.
    pub fn run(self, device: DeviceChoice) -> anyhow::Result<()> {
        let request = self.request();
        let config = crate::train::pipeline::TrainConfig {
            tsne_input: self.tsne,
            ..request.config(self.head.feature_cache())
        };
        // Folders and devices are refused at once; the folder's photos once it is read.
        let outputs = self.outputs(&request);
        for path in &outputs {
            check_output(path, &[])?;
        }
        let model = self.model.open(device)?;
        let mut log = TrainLog::new(self.json).guarding(outputs);
        let outcome = train_on_folder(&model, &request.dir, &config, &mut log);
        log.check()?;
        let outcome = outcome?;
        let json_path = outcome
            .head
            .save(&request.output, model.spec.name, &model.preprocess)?;
        if let Some(path) = &self.split_out {
            write_split(&outcome, path)?;
        }
        let best = &outcome.head.metrics[outcome.head.best_epoch];
        let scores = crate::train::metrics::per_class(&outcome.confusion);
        let top_losses: Vec<_> = crate::train::review::top_losses(&outcome.predictions, 10)
            .into_iter()
            .map(|i| &outcome.predictions[i])
            .collect();
        let tsne = self
            .tsne
            .then(|| tsne_map(&outcome, self.json))
            .transpose()?;
        if self.json {
            let top_losses: Vec<_> = top_losses
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "path": p.path.to_string_lossy(),
                        "truth": p.truth,
                        "predicted": p.predicted,
                        "loss": p.loss(),
                        "p_truth": p.probability(p.truth),
                        "p_predicted": p.probability(p.predicted),
                    })
                })
                .collect();
            return super::print_json(&serde_json::json!({
                "event": "done",
                "val_acc": outcome.val_accuracy,
                "best_epoch": best.epoch,
                "train": outcome.split.train.len(),
                "val": outcome.split.val.len(),
                "failed": outcome.failed.len(),
                "skipped": outcome.dataset.skipped.len(),
                "features_from_cache": outcome.features_from_cache,
                "features_computed": outcome.features_computed,
                "images_per_s": outcome.images_per_s,
                "confusion": outcome.confusion,
                "precision": scores.precision,
                "recall": scores.recall,
                "f1": scores.f1,
                "most_confused": crate::train::metrics::most_confused(&outcome.confusion, 10),
                "top_losses": top_losses,
                "map": outcome.map.iter().map(|&(i, [x, y])| {
                    let item = &outcome.dataset.items[i];
                    serde_json::json!({"path": item.path.to_string_lossy(), "class": item.class, "x": x, "y": y})
                }).collect::<Vec<_>>(),
                "tsne": tsne.as_ref().map(|t| serde_json::json!({
                    "points": t.map.points,
                    "kl_divergence": t.map.kl_divergence,
                    "perplexity": t.map.perplexity,
                    "trustworthiness": t.trustworthiness.map(|[pca, tsne]| {
                        serde_json::json!({"k": TRUST_K, "pca": pca, "tsne": tsne})
                    }),
                })),
                "head": request.output.to_string_lossy(),
            }));
        }
        for f in &outcome.failed {
            eprintln!("skipped {}: {}", f.path.display(), f.reason);
        }
        println!(
            "best epoch {}: validation accuracy {:.1}% ({} train, {} validation photos; {} \
             skipped, each named above; features: {} computed at {:.1} images/s, {} from the cache)",
            best.epoch,
            outcome.val_accuracy * 100.0,
            outcome.split.train.len(),
            outcome.split.val.len(),
            outcome.failed.len() + outcome.dataset.skipped.len(),
            outcome.features_computed,
            outcome.images_per_s,
            outcome.features_from_cache
        );
        println!("per class (validation): precision, recall, F1, photos");
        for (c, name) in outcome
            .head
            .classes
            .iter()
            .enumerate()
            .take(scores.f1.len())
        {
            println!(
                "  {name:<24} {:>5.1}% {:>5.1}% {:>5.3} {:>5}",
                scores.precision[c] * 100.0,
                scores.recall[c] * 100.0,
                scores.f1[c],
                scores.support[c]
            );
        }
        let name = |c: usize| outcome.head.classes.get(c).map_or("?", String::as_str);
        for p in crate::train::metrics::most_confused(&outcome.confusion, 5) {
            println!(
                "most confused: {}, seen as {} ({} photos)",
                name(p.truth),
                name(p.predicted),
                p.count
            );
        }
        for p in top_losses.iter().take(5) {
            println!(
                "top loss {:.2}: {} is {} ({:.0}%), seen as {} ({:.0}%)",
                p.loss(),
                p.path.display(),
                name(p.truth),
                p.probability(p.truth) * 100.0,
                name(p.predicted),
                p.probability(p.predicted) * 100.0
            );
        }
        if let Some(t) = &tsne {
            println!(
                "t-SNE map of {} photos: KL divergence {:.3} at perplexity {}{}",
                t.map.points.len(),
                t.map.kl_divergence,
                t.map.perplexity,
                t.trustworthiness
                    .map(|[pca, tsne]| format!(
                        "; trustworthiness ({TRUST_K} neighbours) {tsne:.3}, PCA's {pca:.3}"
                    ))
                    .unwrap_or_default()
            );
        }
        println!(
            "saved {} and {}",
            request.output.display(),
            json_path.display()
        );
        Ok(())
    }
}

/// Neighbours the maps' trustworthiness is measured with.
const TRUST_K: usize = 5;
/// Photos beyond which trustworthiness (exact, quadratic) is not measured.
const TRUST_MAX: usize = 5000;

/// A t-SNE map with its quality.
struct TsneMap {
    map: crate::train::tsne::Tsne,
    /// [PCA's, t-SNE's] trustworthiness at [`TRUST_K`], on the reduced features.
    trustworthiness: Option<[f64; 2]>,
}

/// The outcome's t-SNE map, progress on stderr (or as JSON lines) about once a second.
fn tsne_map(outcome: &TrainOutcome, json: bool) -> anyhow::Result<TsneMap> {
    use crate::train::tsne::{trustworthiness, tsne_2d, TsneOptions};
    let input = &outcome.map_input;
    let mut throttle = Throttle::terminal();
    let map = tsne_2d(input, &TsneOptions::default(), &mut |p| {
        if throttle.ready(p.epoch == p.epochs) {
            if json {
                let line =
                    serde_json::json!({"event": "tsne", "epoch": p.epoch, "epochs": p.epochs});
                // A closed stdout shows when the result is printed.
                let _ = super::print_json(&line);
            } else {
                eprintln!("t-SNE epoch {}/{}", p.epoch, p.epochs);
            }
        }
        true
    })
    .map_err(|e| anyhow::anyhow!("the t-SNE map: {e}"))?;
    let trust = (map.points.len() <= TRUST_MAX).then(|| {
        let pca: Vec<[f32; 2]> = outcome.map.iter().map(|&(_, xy)| xy).collect();
        [
            trustworthiness(&input.x, input.dim, &pca, TRUST_K),
            trustworthiness(&input.x, input.dim, &map.points, TRUST_K),
        ]
    });
    Ok(TsneMap {
        map,
        trustworthiness: trust,
    })
}

/// Writes the split of `outcome` as JSON to `path`.
fn write_split(outcome: &TrainOutcome, path: &Path) -> anyhow::Result<()> {
    let side = |indices: &[usize]| -> Vec<serde_json::Value> {
        let items = &outcome.dataset.items;
        indices
            .iter()
            .map(|&i| serde_json::json!({"path": items[i].path.to_string_lossy(), "class": items[i].class}))
            .collect()
    };
    let split = serde_json::json!({
        "classes": outcome.dataset.classes,
        "train": side(&outcome.split.train),
        "val": side(&outcome.split.val),
    });
    let text = serde_json::to_string_pretty(&split)?;
    let items = &outcome.dataset.items;
    let photos: Vec<&Path> = items.iter().map(|i| i.path.as_path()).collect();
    // The error names the path (once) whatever failed: a full disk, a missing folder.
    Ok(write_atomic(path, &photos, |w| {
        Ok(w.write_all(text.as_bytes())?)
    })?)
}

/// The command line's training observer: the dataset and each epoch on stdout (text or JSON
/// lines), feature progress on stderr at most once a second.
///
/// A JSON line that cannot be written stops the run (the observer cancels it); [`Self::check`]
/// then returns that error in place of the cancellation.
pub struct TrainLog {
    json: bool,
    throttle: Throttle,
    failed: Option<anyhow::Error>,
    /// Outputs that must not be any photo of the folder (checked when it has been read,
    /// before any feature is computed).
    outputs: Vec<PathBuf>,
}

impl TrainLog {
    /// A log printing text, or JSON lines with `json`.
    pub fn new(json: bool) -> Self {
        Self {
            json,
            throttle: Throttle::terminal(),
            failed: None,
            outputs: Vec::new(),
        }
    }

    /// This log, stopping the run when one of `outputs` is a photo of the folder.
    pub fn guarding(self, outputs: Vec<PathBuf>) -> Self {
        Self { outputs, ..self }
    }

    /// The error that stopped the run, if printing one of its events failed.
    pub fn check(&mut self) -> anyhow::Result<()> {
        self.failed.take().map_or(Ok(()), Err)
    }

    fn print(&mut self, event: TrainEvent<'_>) -> anyhow::Result<()> {
        match event {
            TrainEvent::Scanned(d) => {
                let photos: Vec<&Path> = d.items.iter().map(|i| i.path.as_path()).collect();
                for path in &self.outputs {
                    check_output(path, &photos)?;
                }
                let counts = d.class_counts();
                if self.json {
                    return super::print_json(&serde_json::json!({
                        "event": "dataset", "root": d.root.to_string_lossy(), "layout": d.layout,
                        "classes": d.classes, "counts": counts, "skipped": d.skipped.len(),
                    }));
                }
                println!(
                    "{} ({}): {} photos",
                    d.root.display(),
                    d.layout,
                    d.items.len()
                );
                for (name, n) in d.classes.iter().zip(&counts) {
                    println!("  {name:<30} {n:>6}");
                }
                if !d.skipped.is_empty() {
                    for s in &d.skipped {
                        eprintln!("skipped {}: {}", s.path.display(), s.reason);
                    }
                    println!(
                        "  skipped {} (each with its reason on stderr)",
                        d.skipped.len()
                    );
                }
            }
            TrainEvent::Features(p) => {
                if self.throttle.ready(p.done == p.total) {
                    eprintln!(
                        "features {}/{} ({} cached), {:.1} images/s, ETA {:.0} s",
                        p.done, p.total, p.cached, p.images_per_s, p.eta_s
                    );
                }
            }
            TrainEvent::Step { .. } => {}
            TrainEvent::Epoch(m) => {
                if self.json {
                    return super::print_json(&super::json_event("epoch", m)?);
                }
                println!(
                    "epoch {:>3}: train loss {:.4} acc {:.1}%  val loss {:.4} acc {:.1}%",
                    m.epoch,
                    m.train_loss,
                    m.train_acc * 100.0,
                    m.val_loss,
                    m.val_acc * 100.0
                );
            }
        }
        Ok(())
    }
}

impl TrainObserver for TrainLog {
    fn on_event(&mut self, event: TrainEvent<'_>) {
        if self.failed.is_none() {
            if let Err(e) = self.print(event) {
                self.failed = Some(e);
            }
        }
    }

    fn is_cancelled(&self) -> bool {
        self.failed.is_some()
    }
}
