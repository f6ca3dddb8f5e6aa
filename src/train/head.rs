//! A classifier head trained on frozen-backbone features, saved and loaded with its metadata.
//!
//! The head is `Linear(D, classes)` or `Linear(D, hidden) -> ReLU -> Dropout -> Linear(hidden,
//! classes)`, trained with AdamW on cross-entropy in shuffled mini-batches. The weights of the
//! epoch with the best validation accuracy are the ones kept. With [`FineTune`], the
//! backbone's last convolutional block trains too (see [`super::finetune`]) and is saved with
//! the head.

mod checks;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{AdamW, Module, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use super::finetune::{BlockInfo, TrainableBlock};
use super::observe::{TrainEvent, TrainObserver};
use super::split::SplitMix64;
use crate::error::{Error, Result};
use crate::model::LastBlock;
use crate::vision::preprocess::Preprocess;

pub use checks::{check_size, head_parameters, MAX_HEAD_PARAMETERS};

/// The head's architecture.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum HeadKind {
    /// `Linear(D, classes)`.
    Linear,
    /// `Linear(D, hidden) -> ReLU -> Dropout(dropout) -> Linear(hidden, classes)`.
    Mlp { hidden: usize, dropout: f32 },
}

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub kind: HeadKind,
    /// Passes over the training examples (at least one runs).
    pub epochs: usize,
    /// AdamW's learning rate.
    pub lr: f64,
    /// AdamW's weight decay.
    pub weight_decay: f64,
    /// Examples per optimiser step.
    pub batch_size: usize,
    /// Seed of the initial weights and the shuffling.
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            kind: HeadKind::Linear,
            epochs: 10,
            lr: 1e-3,
            weight_decay: 1e-4,
            batch_size: 32,
            seed: 0,
        }
    }
}

pub use super::observe::EpochMetrics;

/// Features as rows: `x` `[n, dim]` with labels `y`.
#[derive(Debug, Clone, Default)]
pub struct Examples {
    pub x: Vec<f32>,
    pub y: Vec<u32>,
}

impl Examples {
    /// How many examples (rows).
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// A trained head: its weights, what it classifies, and how it trained.
#[derive(Debug, Clone)]
pub struct Head {
    pub kind: HeadKind,
    pub dim: usize,
    pub classes: Vec<String>,
    /// Named weights (`fc1.weight`, ...), CPU f32.
    pub weights: HashMap<String, Tensor>,
    pub metrics: Vec<EpochMetrics>,
    /// Index into `metrics` of the epoch whose weights were kept.
    pub best_epoch: usize,
    /// The fine-tuned last block the head's features go through (weights `block.*`).
    pub block: Option<BlockInfo>,
}

/// Fine-tuning settings for [`train`]: the examples are then `block`'s inputs.
#[derive(Debug, Clone, Copy)]
pub struct FineTune<'a> {
    /// The backbone's last block, with its pretrained weights.
    pub block: &'a LastBlock,
    /// `[C, H, W]` of the block's input.
    pub input_shape: [usize; 3],
    /// The block learns at the head's learning rate times this.
    pub lr_factor: f64,
}

/// What is saved next to the weights (`head.json` for `head.safetensors`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadInfo {
    pub kind: HeadKind,
    pub dim: usize,
    pub classes: Vec<String>,
    /// The backbone whose pooled features the head takes (a model name).
    pub backbone: String,
    /// The preprocessing the features were made with.
    pub preprocess: SavedPreprocess,
    pub metrics: Vec<EpochMetrics>,
    pub best_epoch: usize,
    /// The fine-tuned block, if any (older heads have none).
    #[serde(default)]
    pub block: Option<BlockInfo>,
}

/// A head's preprocessing as its description records it.
///
/// Heads saved before this was structured data hold a free-text description (the `Debug`
/// text of the settings, or anything a script wrote); they still load, as [`Self::Described`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SavedPreprocess {
    /// The exact settings (heads saved by this version).
    Settings(Preprocess),
    /// A description only (older heads).
    Described(String),
}

impl SavedPreprocess {
    /// The exact settings, where the description holds them.
    pub fn settings(&self) -> Option<&Preprocess> {
        match self {
            Self::Settings(p) => Some(p),
            Self::Described(_) => None,
        }
    }
}

fn build(kind: HeadKind, dim: usize, classes: usize, vb: VarBuilder) -> Result<Net> {
    Ok(match kind {
        HeadKind::Linear => Net {
            fc1: candle_nn::linear(dim, classes, vb.pp("fc"))?,
            fc2: None,
            dropout: 0.0,
        },
        HeadKind::Mlp { hidden, dropout } => Net {
            fc1: candle_nn::linear(dim, hidden, vb.pp("fc1"))?,
            fc2: Some(candle_nn::linear(hidden, classes, vb.pp("fc2"))?),
            dropout,
        },
    })
}

struct Net {
    fc1: candle_nn::Linear,
    fc2: Option<candle_nn::Linear>,
    dropout: f32,
}

impl Net {
    /// Logits `[B, classes]` of features `[B, dim]`.
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.fc1.forward(x)?;
        let Some(fc2) = &self.fc2 else {
            return Ok(h);
        };
        let mut h = h.relu()?;
        if train && self.dropout > 0.0 {
            h = candle_nn::ops::dropout(&h, self.dropout)?;
        }
        Ok(fc2.forward(&h)?)
    }
}

/// Logits `[n, classes]` of examples `x` `[n, width]`, through the block when there is one.
fn logits(net: &Net, block: Option<&TrainableBlock>, x: &Tensor, train: bool) -> Result<Tensor> {
    match block {
        Some(b) => net.forward(&b.forward(x)?, train),
        None => net.forward(x, train),
    }
}

/// Examples evaluated at once (a fine-tuned block's activations are large).
const EVAL_BATCH: usize = 64;

/// Mean cross-entropy and accuracy of `net` (after `block`) on `data`, `width` wide.
fn evaluate(
    net: &Net,
    block: Option<&TrainableBlock>,
    data: &Examples,
    width: usize,
) -> Result<(f32, f32, Vec<u32>)> {
    if data.is_empty() {
        return Ok((0.0, 0.0, Vec::new()));
    }
    let mut loss_sum = 0f64;
    let mut predicted = Vec::with_capacity(data.len());
    for (xs, ys) in data
        .x
        .chunks(EVAL_BATCH * width)
        .zip(data.y.chunks(EVAL_BATCH))
    {
        let x = Tensor::from_slice(xs, (ys.len(), width), &Device::Cpu)?;
        let y = Tensor::from_slice(ys, ys.len(), &Device::Cpu)?;
        let logits = logits(net, block, &x, false)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?.to_scalar::<f32>()?;
        loss_sum += f64::from(loss) * ys.len() as f64;
        predicted.extend(logits.argmax(D::Minus1)?.to_vec1::<u32>()?);
    }
    let loss = (loss_sum / data.len() as f64) as f32;
    let correct = predicted
        .iter()
        .zip(&data.y)
        .filter(|(p, y)| p == y)
        .count();
    Ok((loss, correct as f32 / data.len() as f32, predicted))
}

/// What a head trains on: `train` and `val` examples, rows of `dim`-wide pooled features (or,
/// when fine-tuning, of the block's inputs), labelled with indices into `classes`.
#[derive(Debug, Clone, Copy)]
pub struct TrainData<'a> {
    pub train: &'a Examples,
    pub val: &'a Examples,
    /// Width of the pooled features the head itself reads.
    pub dim: usize,
    pub classes: &'a [String],
}

/// Trains a head on `data`, validating on `data.val` after each epoch; with `fine_tune` the
/// examples are the block's inputs and the block trains too. `observer` gets each optimiser
/// step ([`TrainEvent::Step`]) and each epoch's metrics ([`TrainEvent::Epoch`]), and is asked
/// before every step whether to stop.
pub fn train(
    data: &TrainData,
    options: &TrainOptions,
    fine_tune: Option<FineTune>,
    observer: &mut dyn TrainObserver,
) -> Result<Head> {
    let TrainData {
        train,
        val,
        dim,
        classes,
    } = *data;
    if train.is_empty() {
        return Err(Error::Invalid("no training examples".into()));
    }
    // Refused before anything is allocated: `--mlp 100000000` would ask for 512 GB.
    check_size(options.kind, dim, classes.len()).map_err(Error::Invalid)?;
    if let Some(&label) = train
        .y
        .iter()
        .chain(&val.y)
        .find(|&&y| y as usize >= classes.len())
    {
        return Err(Error::Invalid(format!(
            "label {label} is not one of the {} classes",
            classes.len()
        )));
    }
    let width = fine_tune.map_or(dim, |f| f.input_shape.iter().product());
    if train.x.len() != train.len() * width || val.x.len() != val.len() * width {
        return Err(Error::Invalid(format!("features are not {width} wide")));
    }
    let device = Device::Cpu;
    // Candle's own initialisers draw from a global generator: seed ours instead.
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let net = build(options.kind, dim, classes.len(), vb)?;
    let mut rng = SplitMix64::new(options.seed);
    reinitialise(&varmap, &mut rng)?;
    let params = |lr| ParamsAdamW {
        lr,
        weight_decay: options.weight_decay,
        ..Default::default()
    };
    let mut opt = AdamW::new(varmap.all_vars(), params(options.lr))?;
    // The block starts from the pretrained weights and moves more slowly than the new head.
    let block_vars = VarMap::new();
    let block = fine_tune
        .map(|f| TrainableBlock::new(f.block, f.input_shape, &block_vars))
        .transpose()?;
    let mut block_opt = fine_tune
        .map(|f| AdamW::new(block_vars.all_vars(), params(options.lr * f.lr_factor)))
        .transpose()?;
    let snapshot_all = || -> Result<HashMap<String, Tensor>> {
        let mut weights = snapshot(&varmap)?;
        weights.extend(snapshot(&block_vars)?);
        Ok(weights)
    };
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut metrics = Vec::new();
    let (mut best, mut best_acc, mut best_loss) = (0, f32::NEG_INFINITY, f32::INFINITY);
    let mut best_weights = snapshot_all()?;
    let mut step = 0;
    for epoch in 1..=options.epochs.max(1) {
        rng.shuffle(&mut order);
        let (mut loss_sum, mut correct) = (0f64, 0usize);
        for batch in order.chunks(options.batch_size.max(1)) {
            if observer.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let mut xb = Vec::with_capacity(batch.len() * width);
            for &i in batch {
                xb.extend_from_slice(&train.x[i * width..(i + 1) * width]);
            }
            let yb: Vec<u32> = batch.iter().map(|&i| train.y[i]).collect();
            let x = Tensor::from_vec(xb, (batch.len(), width), &device)?;
            let y = Tensor::from_slice(&yb, batch.len(), &device)?;
            let logits = logits(&net, block.as_ref(), &x, true)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            let grads = loss.backward()?;
            opt.step(&grads)?;
            if let Some(o) = &mut block_opt {
                o.step(&grads)?;
            }
            let loss = loss.to_scalar::<f32>()?;
            loss_sum += f64::from(loss) * batch.len() as f64;
            let predicted = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            correct += predicted.iter().zip(&yb).filter(|(p, y)| p == y).count();
            step += 1;
            observer.on_event(TrainEvent::Step { step, loss });
        }
        let (val_loss, val_acc, _) = evaluate(&net, block.as_ref(), val, width)?;
        let m = EpochMetrics {
            epoch,
            train_loss: (loss_sum / train.len() as f64) as f32,
            train_acc: correct as f32 / train.len() as f32,
            val_loss,
            val_acc,
        };
        observer.on_event(TrainEvent::Epoch(&m));
        // With no validation set the last epoch is kept; equal accuracies (common on small
        // sets) go to the lower validation loss.
        let better = val_acc > best_acc || (val_acc == best_acc && val_loss < best_loss);
        if val.is_empty() || better {
            best = metrics.len();
            (best_acc, best_loss) = (val_acc, val_loss);
            best_weights = snapshot_all()?;
        }
        metrics.push(m);
    }
    Ok(Head {
        kind: options.kind,
        dim,
        classes: classes.to_vec(),
        weights: best_weights,
        metrics,
        best_epoch: best,
        block: block.map(|b| b.info().clone()),
    })
}

/// PyTorch's default `nn.Linear` initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
/// weights and biases, from our seeded generator (so a seed gives the same head every time).
fn reinitialise(varmap: &VarMap, rng: &mut SplitMix64) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::Invalid("head weights poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    // fan_in of a layer is its weight's second dimension; biases share their layer's.
    let fan_in = |name: &str| -> usize {
        let weight = name
            .rsplit_once('.')
            .map_or(name.to_string(), |(l, _)| format!("{l}.weight"));
        data.get(&weight)
            .and_then(|w| w.dims().get(1).copied())
            .unwrap_or(1)
    };
    for name in names {
        let var = &data[name];
        let bound = 1.0 / (fan_in(name) as f64).sqrt();
        let values: Vec<f32> = (0..var.elem_count())
            .map(|_| ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * bound)
            .map(|v| v as f32)
            .collect();
        var.set(&Tensor::from_vec(values, var.shape(), var.device())?)?;
    }
    Ok(())
}

fn snapshot(varmap: &VarMap) -> Result<HashMap<String, Tensor>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::Invalid("head weights poisoned".into()))?;
    data.iter()
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?)))
        .collect()
}

impl Head {
    fn net(&self) -> Result<Net> {
        let vb = VarBuilder::from_tensors(self.weights.clone(), DType::F32, &Device::Cpu);
        build(self.kind, self.dim, self.classes.len(), vb)
    }

    fn trained_block(&self) -> Result<Option<TrainableBlock>> {
        self.block
            .as_ref()
            .map(|info| TrainableBlock::from_weights(info, &self.weights))
            .transpose()
    }

    /// How wide one example is: the block's input size when fine-tuned, else `dim`.
    pub fn input_width(&self) -> usize {
        self.block.as_ref().map_or(self.dim, BlockInfo::input_len)
    }

    /// Logits `[n, classes]` of examples `x` `[n, input_width]` (CPU, f32), differentiable
    /// with respect to `x`: the score an attribution map of one of the head's classes explains.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        logits(&self.net()?, self.trained_block()?.as_ref(), x, false)
    }

    /// Class probabilities `[n, classes]` (row-major) of examples `x` `[n, input_width]`:
    /// pooled features, or the fine-tuned block's inputs.
    pub fn probabilities(&self, x: &[f32]) -> Result<Vec<f32>> {
        let width = self.input_width().max(1);
        if !x.len().is_multiple_of(width) {
            return Err(Error::Invalid(format!(
                "the head takes inputs of {width} values per photo{}; got {} values",
                self.block.as_ref().map_or(String::new(), |b| format!(
                    " (its fine-tuned block's input {:?} from {})",
                    b.input_shape, b.input_tap
                )),
                x.len()
            )));
        }
        let x = Tensor::from_slice(x, (x.len() / width, width), &Device::Cpu)?;
        let logits = logits(&self.net()?, self.trained_block()?.as_ref(), &x, false)?;
        Ok(candle_nn::ops::softmax_last_dim(&logits)?
            .flatten_all()?
            .to_vec1()?)
    }

    /// Accuracy, predictions and the confusion matrix (`[true][predicted]`) on `data`.
    pub fn evaluate(&self, data: &Examples) -> Result<(f32, Vec<u32>, Vec<Vec<usize>>)> {
        let block = self.trained_block()?;
        let (_, acc, predicted) = evaluate(&self.net()?, block.as_ref(), data, self.input_width())?;
        let k = self.classes.len();
        let mut confusion = vec![vec![0; k]; k];
        for (&p, &y) in predicted.iter().zip(&data.y) {
            let cell = confusion
                .get_mut(y as usize)
                .and_then(|row| row.get_mut(p as usize))
                .ok_or_else(|| Error::Invalid(format!("label {y} is not one of {k} classes")))?;
            *cell += 1;
        }
        Ok((acc, predicted, confusion))
    }

    /// The description saved beside the weights, for features of model `backbone` made with
    /// `preprocess`.
    pub fn info(&self, backbone: &str, preprocess: &Preprocess) -> HeadInfo {
        HeadInfo {
            kind: self.kind,
            dim: self.dim,
            classes: self.classes.clone(),
            backbone: backbone.to_string(),
            preprocess: SavedPreprocess::Settings(*preprocess),
            metrics: self.metrics.clone(),
            best_epoch: self.best_epoch,
            block: self.block.clone(),
        }
    }

    /// Saves the weights to `path` (safetensors) and [`HeadInfo`] next to it (`.json`), each
    /// written to a temporary file and renamed, so a crash never leaves half a head.
    pub fn save(&self, path: &Path, backbone: &str, preprocess: &Preprocess) -> Result<PathBuf> {
        let info = self.info(backbone, preprocess);
        let json_path = path.with_extension("json");
        if json_path == path {
            return Err(Error::Invalid(format!(
                "{}: a head is saved as .safetensors (its description goes beside it as .json)",
                path.display()
            )));
        }
        // Never renamed over a folder, FIFO or device (as root, `-o /dev/null` would replace it).
        crate::output::check_output(path, &[])?;
        crate::output::check_output(&json_path, &[])?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::Output {
                path: dir.to_path_buf(),
                reason: format!("cannot create the folder: {e}"),
            })?;
        }
        let json = serde_json::to_string_pretty(&info).map_err(|e| Error::Output {
            path: json_path.clone(),
            reason: e.to_string(),
        })?;
        // Both written in full before either replaces a file: never half a head.
        crate::output::write_atomic_files(&[path, &json_path], &[], |i, temp| match i {
            0 => Ok(candle_core::safetensors::save(&self.weights, temp)?),
            _ => Ok(std::fs::write(temp, &json)?),
        })?;
        Ok(json_path)
    }

    /// Loads a head saved by [`Head::save`], checking weights against the description.
    pub fn load(path: &Path) -> Result<(Head, HeadInfo)> {
        let json_path = path.with_extension("json");
        let bad = |reason: String| Error::Invalid(format!("head {}: {reason}", path.display()));
        // A description is a few kB; a FIFO or device is refused, not waited on.
        let text = crate::input::read_regular(&json_path, 16 << 20)
            .and_then(|b| String::from_utf8(b).map_err(|_| "is not UTF-8 text".to_string()))
            .map_err(|e| bad(format!("{}: {e}", json_path.display())))?;
        let info: HeadInfo = serde_json::from_str(&text).map_err(|e| {
            bad(format!(
                "{} is not a head description: {e}",
                json_path.display()
            ))
        })?;
        if !info.metrics.is_empty() && info.best_epoch >= info.metrics.len() {
            return Err(bad(format!(
                "{}: best_epoch {} is not one of its {} epochs",
                json_path.display(),
                info.best_epoch,
                info.metrics.len()
            )));
        }
        // Read as a regular file within the largest head's size (a FIFO is not waited on).
        let bytes = crate::input::read_regular(path, checks::MAX_HEAD_FILE_BYTES).map_err(bad)?;
        let weights = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| bad(format!("cannot read the weights: {}", Error::from(e))))?;
        drop(bytes);
        let mismatch = |reason: String| {
            bad(format!(
                "the weights do not match {}: {reason}",
                json_path.display()
            ))
        };
        let weights = checks::check_weights(
            info.kind,
            info.dim,
            info.classes.len(),
            info.block.as_ref(),
            weights,
        )
        .map_err(mismatch)?;
        let head = Head {
            kind: info.kind,
            dim: info.dim,
            classes: info.classes.clone(),
            weights,
            metrics: info.metrics.clone(),
            best_epoch: info.best_epoch,
            block: info.block.clone(),
        };
        head.net().map_err(|e| mismatch(e.to_string()))?;
        head.trained_block().map_err(|e| mismatch(e.to_string()))?;
        Ok((head, info))
    }
}

#[cfg(test)]
mod tests;
