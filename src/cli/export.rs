//! `export`: a trained head with its backbone (and fine-tuned block) as one ONNX graph or as
//! safetensors with timm's names.

use std::path::PathBuf;

use super::ModelArgs;
use crate::device::DeviceChoice;
use crate::export::{export_head, ExportFormat};
use crate::train::head::Head;

/// `export HEAD -o model.onnx|model.safetensors`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// The trained head (`.safetensors` from `train-head`, its `.json` beside it).
    pub head: PathBuf,
    /// Where to write: `.onnx` (input `input` [N, 3, H, W] normalised, output `logits`
    /// [N, classes]) or `.safetensors` (timm's names).
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// One JSON object describing what was written.
    #[arg(long)]
    pub json: bool,
}

impl ExportArgs {
    /// Loads the head and its backbone (on the CPU: exporting computes nothing) and writes.
    pub fn run(&self, _device: DeviceChoice) -> anyhow::Result<()> {
        // The format is checked before the backbone loads, so a wrong name fails at once.
        ExportFormat::of_path(&self.output)?;
        let (head, info) = Head::load(&self.head)?;
        let mut args = self.model.clone();
        args.model.get_or_insert(info.backbone.clone());
        let model = args.open(DeviceChoice::Cpu)?;
        let report = export_head(&model, &head, &info, &self.head, &self.output)?;
        if self.json {
            return super::print_json(&report);
        }
        println!(
            "wrote {} ({:.1} MB): {} + {} classes; input [N, 3, {}, {}] normalised with mean \
             {:?}, std {:?}{}",
            report.path.display(),
            report.bytes as f64 / 1e6,
            model.spec.name,
            report.classes.len(),
            report.input_shape[2],
            report.input_shape[3],
            report.mean,
            report.std,
            report
                .timm_model
                .as_ref()
                .map_or(String::new(), |m| format!("; loads into timm's {m}")),
        );
        if !report.timm_setup.is_empty() {
            println!("before load_state_dict, on the timm model:");
            for line in &report.timm_setup {
                println!("    {line}");
            }
        }
        Ok(())
    }
}
