//! Reading weights files (safetensors, PyTorch `.pth` in the zip or legacy pickle format) and
//! building backbones from them, with a clear error for a file that is truncated, corrupt or
//! of another model. timm's VGG names are mapped to torchvision's on the way in.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::{Init, VarBuilder};
use rand::{Rng, SeedableRng};

use super::file::{StoredType, WeightsFile};
use crate::error::{Error, Result};
use crate::model::efficientnet_lite::{EfficientNetLite, EfficientNetLiteConfig};
use crate::model::mobilenet_v3::{MobileNetV3, MobileNetV3Config};
use crate::model::resnet::{ResNet, ResNetConfig};
use crate::model::vgg::{Vgg, VggConfig};
use crate::model::{Arch, Backbone};

/// Most elements [`read_tensors`] materialises from one file: a quarter more than VGG-19's
/// 143.7 million parameters (a hostile `.pth` can declare views far larger than the file).
pub const MAX_FILE_ELEMENTS: usize = 180_000_000;

/// Reads every floating-point tensor of a weights file as f32 on the CPU, by name (for tests
/// and tools; models load only the tensors they use, see [`load_backbone`]).
///
/// Integer `num_batches_tracked` counters are skipped (they are not parameters); any other
/// tensor that is not floating point, or holds a NaN or infinity, is refused naming it, and
/// at most [`MAX_FILE_ELEMENTS`] elements are read.
pub fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let file = WeightsFile::open(path)?;
    let mut budget = MAX_FILE_ELEMENTS;
    let mut out = HashMap::new();
    for name in file.names() {
        let counter = name.ends_with("num_batches_tracked");
        if counter && matches!(file.info(name), Some((StoredType::Other(_), _))) {
            continue;
        }
        out.insert(name.to_string(), file.read_any(name, &mut budget)?);
    }
    Ok(out)
}

/// Renames timm's VGG parameters (`pre_logits.fc1` as a 7x7 convolution, `pre_logits.fc2`,
/// `head.fc`) to torchvision's (`classifier.0/3/6` as linear layers); other names pass through.
fn timm_vgg_to_torchvision(
    mut tensors: HashMap<String, Tensor>,
) -> Result<HashMap<String, Tensor>> {
    for (timm, tv) in [
        ("pre_logits.fc1", "classifier.0"),
        ("pre_logits.fc2", "classifier.3"),
        ("head.fc", "classifier.6"),
    ] {
        if let Some(w) = tensors.remove(&format!("{timm}.weight")) {
            let out = w.dim(0)?;
            if out == 0 || w.rank() < 2 {
                return Err(Error::Invalid(format!(
                    "{timm}.weight has shape {:?}: not a layer's weights",
                    w.dims()
                )));
            }
            let w = w.reshape((out, w.elem_count() / out))?;
            tensors.insert(format!("{tv}.weight"), w);
        }
        if let Some(b) = tensors.remove(&format!("{timm}.bias")) {
            tensors.insert(format!("{tv}.bias"), b);
        }
    }
    Ok(tensors)
}

/// Builds `arch` from parameters under the names its module expects.
pub fn build_backbone(arch: Arch, vb: VarBuilder) -> candle_core::Result<Box<dyn Backbone>> {
    Ok(match arch {
        Arch::Vgg16 => Box::new(Vgg::new(vb, VggConfig::vgg16())?),
        Arch::Vgg19 => Box::new(Vgg::new(vb, VggConfig::vgg19())?),
        Arch::EfficientNetLite0 => {
            Box::new(EfficientNetLite::new(vb, EfficientNetLiteConfig::lite0())?)
        }
        Arch::EfficientNetLite1 => {
            Box::new(EfficientNetLite::new(vb, EfficientNetLiteConfig::lite1())?)
        }
        Arch::EfficientNetLite2 => {
            Box::new(EfficientNetLite::new(vb, EfficientNetLiteConfig::lite2())?)
        }
        Arch::ResNet18 => Box::new(ResNet::new(vb, ResNetConfig::resnet18())?),
        Arch::ResNet50 => Box::new(ResNet::new(vb, ResNetConfig::resnet50())?),
        Arch::MobileNetV3Large => Box::new(MobileNetV3::new(vb, MobileNetV3Config::large_100())?),
    })
}

/// Prepares the tensors of a weights file for `arch`'s module (renames, device).
pub fn tensors_for(
    arch: Arch,
    tensors: HashMap<String, Tensor>,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let tensors = match arch {
        Arch::Vgg16 | Arch::Vgg19 => timm_vgg_to_torchvision(tensors)?,
        // timm and torchvision name ResNets alike.
        Arch::EfficientNetLite0
        | Arch::EfficientNetLite1
        | Arch::EfficientNetLite2
        | Arch::ResNet18
        | Arch::ResNet50
        | Arch::MobileNetV3Large => tensors,
    };
    tensors
        .into_iter()
        .map(|(k, v)| Ok((k, v.to_device(device)?)))
        .collect()
}

/// Loads `arch` from the weights file at `path` onto `device`.
///
/// Only the tensors the model uses are read, each after its shape has been checked against
/// the model's (so a hostile header cannot make us allocate more than the model needs). A file
/// of another model, or with missing or mis-shaped tensors, is refused with an error naming
/// the file and the first tensor that did not fit; a tensor that is not floating point or
/// holds a NaN or infinity, naming the tensor.
pub fn load_backbone(arch: Arch, path: &Path, device: &Device) -> Result<Box<dyn Backbone>> {
    load_checked(arch, path, device, |vb| build_backbone(arch, vb))
}

/// [`load_backbone`] with the model built by `build` (tests build reduced widths this way).
fn load_checked<T>(
    arch: Arch,
    path: &Path,
    device: &Device,
    build: impl FnOnce(VarBuilder) -> candle_core::Result<T>,
) -> Result<T> {
    let file = WeightsFile::open(path)?;
    let first_error = Arc::new(Mutex::new(None));
    let backend = FileBackend {
        aliases: aliases_for(arch, &file),
        file,
        first_error: first_error.clone(),
    };
    let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone());
    let built = build(vb);
    let recorded = first_error.lock().unwrap_or_else(|e| e.into_inner()).take();
    match (built, recorded) {
        (Ok(backbone), _) => Ok(backbone),
        // A bad value or an unreadable tensor is the file's fault, not a model mismatch.
        (Err(_), Some(error)) => Err(error),
        (Err(e), None) => Err(Error::weights(
            path,
            format!("does not hold {arch} weights: {e}"),
        )),
    }
}

/// The model's name for a tensor → the file's, for tensors stored under another name (and
/// layout: `true` when only the element count must agree).
fn aliases_for(arch: Arch, file: &WeightsFile) -> HashMap<String, (String, bool)> {
    let mut aliases = HashMap::new();
    if matches!(arch, Arch::Vgg16 | Arch::Vgg19) {
        // timm's VGG: `pre_logits.fc1` and `.fc2` are 7x7 and 1x1 convolutions where
        // torchvision has linear layers (`classifier.0` and `.3`); `head.fc` is `classifier.6`.
        for (timm, tv, reshape) in [
            ("pre_logits.fc1", "classifier.0", true),
            ("pre_logits.fc2", "classifier.3", true),
            ("head.fc", "classifier.6", false),
        ] {
            for part in ["weight", "bias"] {
                let (timm, tv) = (format!("{timm}.{part}"), format!("{tv}.{part}"));
                if !file.contains(&tv) && file.contains(&timm) {
                    aliases.insert(tv, (timm, reshape && part == "weight"));
                }
            }
        }
    }
    aliases
}

/// Tensors read from a [`WeightsFile`] as the model asks for them, by shape.
struct FileBackend {
    file: WeightsFile,
    aliases: HashMap<String, (String, bool)>,
    /// The first error that is the file's fault (a bad value, an unreadable tensor), kept to
    /// be reported as it is rather than as "does not hold ... weights".
    first_error: Arc<Mutex<Option<Error>>>,
}

impl FileBackend {
    fn stored_name<'a>(&'a self, name: &'a str) -> (&'a str, bool) {
        match self.aliases.get(name) {
            Some((stored, reshape)) => (stored.as_str(), *reshape),
            None => (name, false),
        }
    }
}

impl candle_nn::var_builder::SimpleBackend for FileBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let (stored, reshape) = self.stored_name(name);
        if !self.file.contains(stored) {
            return Err(candle_core::Error::Msg(format!(
                "the file has no tensor {name}"
            )));
        }
        match self.file.read(stored, s.dims(), reshape) {
            Ok(t) => t.to_dtype(dtype)?.to_device(dev),
            Err(error) => {
                let message = match &error {
                    Error::Weights { reason, .. } => reason.clone(),
                    other => other.to_string(),
                };
                // A shape mismatch means another model; the rest is about this file.
                if !message.starts_with("shape mismatch") {
                    let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
                    first.get_or_insert(error);
                }
                Err(candle_core::Error::Msg(message))
            }
        }
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        Err(candle_core::Error::Msg(format!(
            "weights are read by shape; {name} was asked for without one"
        )))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.file.contains(self.stored_name(name).0)
    }
}

/// `arch` with random weights of the right shapes (He-normal convolutions and linear layers,
/// batch-norm variances in [0.5, 1.5]): for timing and for shapes when no weights are present.
pub fn random_backbone(arch: Arch, device: &Device, seed: u64) -> Result<Box<dyn Backbone>> {
    let backend: Box<dyn candle_nn::var_builder::SimpleBackend> = Box::new(RandomWeights {
        rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
    });
    let vb = VarBuilder::from_backend(backend, DType::F32, device.clone());
    Ok(build_backbone(arch, vb)?)
}

/// `arch` with all-zero weights: for layer shapes, quickly, when no weights are present.
pub fn zero_backbone(arch: Arch, device: &Device) -> Result<Box<dyn Backbone>> {
    Ok(build_backbone(arch, VarBuilder::zeros(DType::F32, device))?)
}

struct RandomWeights {
    rng: Mutex<rand::rngs::StdRng>,
}

impl candle_nn::var_builder::SimpleBackend for RandomWeights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let dims = s.dims().to_vec();
        let n = s.elem_count();
        let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
        let mut rng = self
            .rng
            .lock()
            .map_err(|_| candle_core::Error::Msg("random weights lock poisoned".into()))?;
        let values: Vec<f32> = if name.ends_with("running_var") {
            (0..n).map(|_| rng.random_range(0.5..1.5)).collect()
        } else if dims.len() == 1 {
            (0..n).map(|_| rng.random_range(-0.1..0.1)).collect()
        } else {
            let std = (2.0 / fan_in as f32).sqrt();
            (0..n)
                .map(|_| {
                    // Box-Muller: a normal sample from two uniforms.
                    let (u1, u2): (f32, f32) = (rng.random_range(1e-7..1.0), rng.random());
                    std * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
                })
                .collect()
        };
        Tensor::from_vec(values, dims, dev)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        Err(candle_core::Error::Msg(format!(
            "random weights need a shape for {name}"
        )))
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// timm's own VGG checkpoints (the catalogue's) hold fc6 and fc7 as 7x7 and 1x1
    /// convolutions: both load, through the same checks as any weights file, and give the
    /// logits of the same weights under torchvision's names.
    #[test]
    fn timm_vgg_checkpoints_load_through_the_checked_path() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let config = || VggConfig {
            widths: [8, 16, 24, 32, 32],
            hidden: 64,
            num_classes: 10,
            ..VggConfig::vgg16()
        };
        let load = |file: &str| {
            load_checked(Arch::Vgg16, &fixtures.join(file), &Device::Cpu, |vb| {
                Vgg::new(vb, config())
            })
            .unwrap()
        };
        let timm = load("vgg16_tiny_timm.safetensors");
        let tv = load("vgg16_tiny_tv.safetensors");
        let x = Tensor::randn(0f32, 1.0, (1, 3, 64, 64), &Device::Cpu).unwrap();
        let (a, b) = (timm.forward(&x).unwrap(), tv.forward(&x).unwrap());
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }

    /// Found by fuzzing: a timm VGG `fc1` of shape [0, 2, 7, 7] divided by zero.
    #[test]
    fn an_empty_timm_vgg_layer_is_refused_not_divided_by() {
        let mut tensors = HashMap::new();
        let empty = Tensor::zeros((0, 2, 7, 7), DType::F32, &Device::Cpu).unwrap();
        tensors.insert("pre_logits.fc1.weight".to_string(), empty);
        let err = tensors_for(Arch::Vgg16, tensors, &Device::Cpu)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("pre_logits.fc1.weight has shape"), "{err}");
    }
}
