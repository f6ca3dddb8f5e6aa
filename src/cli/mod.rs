//! The command line: a thin layer over the library, one clap [`Args`](clap::Args) struct per
//! command, each with its own `run`. A command prints text for people, or JSON (`--json`) for
//! scripts; the JSON shapes are documented in the README and kept stable.
//!
//! | module | commands |
//! |---|---|
//! | [`catalogue`] | `models`, `fetch`, `paths` |
//! | [`predict`] | `predict` (ImageNet classes, or a trained head's) |
//! | [`train`] | `train-head`, and the head flags `compare` shares |
//! | [`compare`] | `compare` |
//! | [`inspect`] | `layers`, `features` |
//! | [`dream`](mod@dream) | `dream` |
//! | [`gallery`] | `gallery` |
//! | [`explain`] | `attack` |
//! | [`deepdream`] | `deepdream` |
//! | [`bench`](mod@bench) | `bench` |

mod args;
pub mod attack;
pub mod bench;
pub mod catalogue;
pub mod compare;
pub mod deepdream;
pub mod dream;
pub mod examples;
pub mod explain;
pub mod export;
pub mod gallery;
pub mod inspect;
pub mod predict;
mod ranges;
pub mod train;

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::device::{describe_device, select_device, DeviceChoice};
use crate::inference::{load_model, LoadedModel};
use crate::weights::{self, best_present_model};

/// See inside a pretrained CNN (VGG, ResNet, EfficientNet-Lite0/1/2, MobileNetV3) and use it for
/// transfer learning. Without a command, opens the app window.
#[derive(Debug, Parser)]
#[command(name = "cnn-explorer", version, about)]
pub struct Cli {
    /// Compute device: auto (CUDA, then Metal, then CPU), cpu, cuda or metal. In the window it
    /// overrides the device chosen last time.
    #[arg(long, global = true)]
    pub device: Option<DeviceChoice>,

    #[command(flatten)]
    pub window: WindowArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options of the window (no command).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WindowArgs {
    /// A photo to open at start (default: the bundled cat).
    pub photo: Option<PathBuf>,
    /// Model to start with (default: the one chosen last time, else the best installed).
    #[arg(long)]
    pub model: Option<String>,
    /// Layer to show first, e.g. conv3_1 or block5.
    #[arg(long)]
    pub layer: Option<String>,
    /// Tab to show first: explore, dream, attack or train.
    #[arg(long, default_value = "explore", value_parser = parse_tab)]
    pub tab: crate::ui::app::Tab,
    /// Channel of that layer to open large over the photo.
    #[arg(long, requires = "layer")]
    pub channel: Option<usize>,
    /// Show the Dream tab and dream its target at once (with the settings saved last time; a
    /// screenshot waits for the dream to finish).
    #[arg(long)]
    pub dream: bool,
    /// Show the Dream tab and DeepDream the photo at once (with the settings saved last time;
    /// a screenshot waits for the dream to finish).
    #[arg(long)]
    pub deepdream: bool,
    /// Show the Attack tab and attack the photo at once (with the settings saved last time,
    /// towards a dog by default); a screenshot waits for the attack.
    #[arg(long)]
    pub attack: bool,
    /// Show the Train tab, read this folder and train a head on it at once (with the settings
    /// saved last time); a screenshot waits for the training and its first thumbnails.
    #[arg(long, value_name = "DIR")]
    pub train: Option<PathBuf>,
    /// Dream the first layer's gallery at start (read from the cache when `gallery` made it);
    /// a screenshot waits for it.
    #[arg(long)]
    pub gallery: bool,
    /// Show Explore's "Where it looks" with this attribution method (grad-cam, saliency, ...;
    /// `all`: every method side by side) for the photo's top class; a screenshot waits for it.
    #[arg(long, value_name = "METHOD|all", value_parser = parse_explain)]
    pub explain: Option<ExplainAtStart>,
    /// Once the photo, its feature maps and predictions are drawn, save the window as this
    /// PNG and quit (exit status 1 if that cannot happen within 2 minutes, 10 with --dream,
    /// --deepdream, --gallery, --attack, --explain or --train).
    #[arg(long, value_name = "PATH")]
    pub screenshot: Option<PathBuf>,
}

/// `--explain`: one method, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExplainAtStart {
    One(crate::explain::attribution::Method),
    All,
}

fn parse_explain(s: &str) -> Result<ExplainAtStart, String> {
    if s.trim() == "all" {
        return Ok(ExplainAtStart::All);
    }
    ranges::method(s).map(ExplainAtStart::One)
}

/// The commands; each variant's struct parses its flags and runs it.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the models with their size, source and whether their weights are present.
    Models(catalogue::ModelsArgs),
    /// Download a model's weights into the weights folder.
    Fetch(catalogue::FetchArgs),
    /// Where this computer keeps the weights, trained heads, caches and settings.
    Paths(catalogue::PathsArgs),
    /// Classify images: the top-K ImageNet classes of each.
    Predict(predict::PredictArgs),
    /// Train a classifier head on a folder of photos (class sub-folders, Oxford-IIIT Pet's
    /// images/Breed_1.jpg, or Cats-vs-Dogs' PetImages) over the frozen backbone's features.
    TrainHead(train::TrainHeadArgs),
    /// Train the same head on the same split of DIR with several backbones and compare them:
    /// validation accuracy, feature time per photo, parameters, weights size.
    Compare(compare::CompareArgs),
    /// List every layer (tap) of a model with its shape for one 224x224 image.
    Layers(inspect::LayersArgs),
    /// Render one layer's channels for an image as a grid PNG, with per-channel means.
    Features(inspect::FeaturesArgs),
    /// Dream a class, a class and not another, a channel, its negative or a neuron: gradient
    /// ascent from noise (Lucid's recipe) until the network sees it; writes a PNG (a grid for
    /// --batch).
    Dream(dream::DreamArgs),
    /// DeepDream a photo: amplify what one layer (or channel) sees in it, octave by octave;
    /// writes a PNG at the photo's aspect ratio.
    #[command(name = "deepdream")]
    DeepDream(deepdream::DeepDreamArgs),
    /// Dream every channel of a layer, small and cached (your own Microscope); writes them as
    /// one grid PNG.
    Gallery(gallery::GalleryArgs),
    /// The photos of a folder that excite each channel of a layer most, cropped around the
    /// strongest cell (its receptive field), cached; writes a sheet, a row per channel.
    Examples(examples::ExamplesArgs),
    /// Adversarial attack: nudge a photo until the network sees the target class (PGD), or
    /// any other class (FGSM with --fgsm); writes the adversarial photo as PNG.
    Attack(attack::AttackArgs),
    /// Where the network looks: an attribution map (Grad-CAM, saliency, Integrated Gradients,
    /// occlusion, ...) of a class for a photo, over the photo as PNG, with its deletion and
    /// insertion scores.
    Explain(explain::ExplainArgs),
    /// Export a trained head with its backbone: `-o model.onnx` (one graph, input `input`
    /// [N, 3, H, W] normalised, output `logits`) or `-o model.safetensors` (timm's names).
    Export(export::ExportArgs),
    /// Time forward passes and dream steps (forward + gradient to the input) per model.
    Bench(bench::BenchArgs),
}

impl Command {
    /// Runs the command on `device`.
    pub fn run(self, device: DeviceChoice) -> anyhow::Result<()> {
        match self {
            Self::Models(args) => args.run(),
            Self::Fetch(args) => args.run(),
            Self::Paths(args) => args.run(),
            Self::Predict(args) => args.run(device),
            Self::TrainHead(args) => args.run(device),
            Self::Compare(args) => args.run(device),
            Self::Layers(args) => args.run(device),
            Self::Features(args) => args.run(device),
            Self::Dream(args) => args.run(device),
            Self::DeepDream(args) => args.run(device),
            Self::Gallery(args) => args.run(device),
            Self::Examples(args) => args.run(device),
            Self::Attack(args) => args.run(device),
            Self::Explain(args) => args.run(device),
            Self::Export(args) => args.run(device),
            Self::Bench(args) => args.run(device),
        }
    }
}

/// Runs a parsed command; `None` (no command) is the caller's to handle (it opens the window).
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(command) => {
            // A weights folder that is a file is named now, not met later as missing weights.
            weights::check_weights_dir()?;
            command.run(cli.device.unwrap_or_default())
        }
        None => Ok(()),
    }
}

/// Which model to run.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Model name (see `models`; default: the best one whose weights are present).
    #[arg(long)]
    pub model: Option<String>,
    /// Weights file to use instead of the weights folder's.
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

impl ModelArgs {
    /// Loads the model these flags name, or the best present one, on `device`.
    pub fn open(&self, device: DeviceChoice) -> anyhow::Result<LoadedModel> {
        let device = select_device(device)?;
        eprintln!("device: {}", describe_device(&device));
        let name = match (&self.model, &self.weights) {
            (Some(name), _) => name.clone(),
            (None, Some(_)) => bail!("--weights needs --model to say which architecture it holds"),
            (None, None) => match best_present_model(&weights::weights_dir()) {
                Some(spec) => spec.name.to_string(),
                None => bail!(
                    "no model weights found in {}; download one with `cnn-explorer fetch \
                     efficientnet-lite0` (19 MB) or `cnn-explorer fetch vgg16` (553 MB)",
                    weights::weights_dir().display()
                ),
            },
        };
        Ok(load_model(&name, self.weights.as_deref(), &device)?)
    }
}

/// Prints `value` as one line of JSON; a value that cannot be written is an error, never an
/// empty line.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string(value).context("could not write the result as JSON")?
    );
    Ok(())
}

/// Prints `value` as indented JSON (the list commands).
pub fn print_json_pretty(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).context("could not write the result as JSON")?
    );
    Ok(())
}

/// `value` as a JSON object with `"event": event` added (the lines of `train-head --json`).
pub fn json_event(event: &str, value: &impl serde::Serialize) -> anyhow::Result<serde_json::Value> {
    let mut row = serde_json::to_value(value).context("could not write the result as JSON")?;
    match row.as_object_mut() {
        Some(object) => {
            object.insert("event".into(), event.into());
            Ok(row)
        }
        None => bail!("the {event} record is not a JSON object"),
    }
}

fn parse_tab(s: &str) -> Result<crate::ui::app::Tab, String> {
    use crate::ui::app::Tab;
    Tab::ALL
        .into_iter()
        .find(|t| t.label().eq_ignore_ascii_case(s))
        .ok_or_else(|| format!("unknown tab '{s}' (explore, dream, attack or train)"))
}
