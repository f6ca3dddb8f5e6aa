//! Reading weights files (safetensors, PyTorch `.pth` in the zip or legacy pickle format) and
//! building backbones from them, with a clear error for a file that is truncated, corrupt or
//! of another model. timm's VGG names are mapped to torchvision's on the way in.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::{Init, VarBuilder};
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::model::efficientnet_lite::EfficientNetLite;
use crate::model::mobilenet_v3::{MobileNetV3, MobileNetV3Config};
use crate::model::resnet::{ResNet, ResNetConfig};
use crate::model::vgg::{Vgg, VggConfig};
use crate::model::{Arch, Backbone};

/// Reads every tensor of a weights file as f32 on the CPU, by name.
pub fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {}
        Ok(meta) if meta.is_dir() => {
            return Err(Error::weights(
                path,
                "is a folder; give the weights file itself",
            ))
        }
        Ok(_) => {
            return Err(Error::weights(
                path,
                "is not a regular file (a FIFO, socket or device)",
            ))
        }
        Err(e) => return Err(Error::weights(path, format!("cannot read it: {e}"))),
    }
    let mut magic = [0u8; 8];
    {
        use std::io::Read;
        let mut file = std::fs::File::open(path).map_err(|e| Error::weights(path, e))?;
        let n = file.read(&mut magic).map_err(|e| Error::weights(path, e))?;
        if n == 0 {
            return Err(Error::weights(path, "the file is empty"));
        }
    }
    // A zip archive (PyTorch >= 1.6) starts with "PK"; a legacy pickle with 0x80 (PROTO).
    let tensors = if magic.starts_with(b"PK") || magic[0] == 0x80 {
        read_pytorch(path)?
    } else {
        candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| {
            Error::weights(
                path,
                format!("not a readable safetensors or PyTorch file (truncated or corrupt?): {e}"),
            )
        })?
    };
    let mut out = HashMap::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let name = name.strip_prefix("module.").unwrap_or(&name).to_string();
        let tensor = tensor.to_dtype(DType::F32)?;
        out.insert(name, tensor);
    }
    Ok(out)
}

fn read_pytorch(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::weights(
            path,
            format!("not a readable PyTorch checkpoint (truncated or corrupt?): {e}"),
        )
    };
    let reader = pytorch_reader::PytorchReader::new(path).map_err(|e| bad(&e))?;
    let mut out = HashMap::new();
    for (name, tensor) in reader.into_tensors() {
        let dtype = match tensor.dtype() {
            pytorch_reader::DType::F32 => DType::F32,
            pytorch_reader::DType::F16 => DType::F16,
            pytorch_reader::DType::BF16 => DType::BF16,
            pytorch_reader::DType::F64 => DType::F64,
            // Integer buffers (BatchNorm's num_batches_tracked) are not parameters.
            _ => continue,
        };
        let shape = tensor.shape().to_vec();
        let bytes = tensor.read().map_err(|e| bad(&e))?;
        let t = Tensor::from_raw_buffer(&bytes, dtype, &shape, &Device::Cpu)?;
        out.insert(name, t);
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
        Arch::EfficientNetLite0 => Box::new(EfficientNetLite::new(vb, 1000)?),
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
        Arch::EfficientNetLite0 | Arch::ResNet18 | Arch::ResNet50 | Arch::MobileNetV3Large => {
            tensors
        }
    };
    tensors
        .into_iter()
        .map(|(k, v)| Ok((k, v.to_device(device)?)))
        .collect()
}

/// Loads `arch` from the weights file at `path` onto `device`.
///
/// A file of another model, or with missing or mis-shaped tensors, is refused with an error
/// naming the file and the first tensor that did not fit.
pub fn load_backbone(arch: Arch, path: &Path, device: &Device) -> Result<Box<dyn Backbone>> {
    let tensors = tensors_for(arch, read_tensors(path)?, device)?;
    let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
    build_backbone(arch, vb)
        .map_err(|e| Error::weights(path, format!("does not hold {arch} weights: {e}")))
}

/// `arch` with random weights of the right shapes (He-normal convolutions and linear layers,
/// batch-norm variances in [0.5, 1.5]): for timing and for shapes when no weights are present.
pub fn random_backbone(arch: Arch, device: &Device, seed: u64) -> Result<Box<dyn Backbone>> {
    let backend: Box<dyn candle_nn::var_builder::SimpleBackend> = Box::new(RandomWeights {
        rng: std::sync::Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
    });
    let vb = VarBuilder::from_backend(backend, DType::F32, device.clone());
    Ok(build_backbone(arch, vb)?)
}

/// `arch` with all-zero weights: for layer shapes, quickly, when no weights are present.
pub fn zero_backbone(arch: Arch, device: &Device) -> Result<Box<dyn Backbone>> {
    Ok(build_backbone(arch, VarBuilder::zeros(DType::F32, device))?)
}

struct RandomWeights {
    rng: std::sync::Mutex<rand::rngs::StdRng>,
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
