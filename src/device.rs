//! Picks the compute device (CUDA, Metal or CPU) and describes it for the user.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::error::{Error, Result};

/// Which device the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA if this build has it and a GPU answers, then Metal, then the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
    Metal,
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda),
            "metal" => Ok(Self::Metal),
            other => Err(format!(
                "unknown device '{other}' (choose auto, cpu, cuda or metal)"
            )),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Metal => "metal",
        })
    }
}

/// Opens the device for `choice`; an explicit choice that this build or machine lacks is an
/// error, `Auto` falls back to the CPU.
pub fn select_device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => open_cuda(),
        DeviceChoice::Metal => open_metal(),
        DeviceChoice::Auto => {
            if let Ok(device) = open_cuda() {
                return Ok(device);
            }
            if let Ok(device) = open_metal() {
                return Ok(device);
            }
            Ok(Device::Cpu)
        }
    }
}

fn open_cuda() -> Result<Device> {
    if !candle_core::utils::cuda_is_available() {
        return Err(Error::Device(
            "this build has no CUDA support; rebuild with `--features cuda`".into(),
        ));
    }
    Device::new_cuda(0).map_err(|e| Error::Device(format!("no usable CUDA GPU: {e}")))
}

fn open_metal() -> Result<Device> {
    if !candle_core::utils::metal_is_available() {
        return Err(Error::Device(
            "this build has no Metal support; rebuild with `--features metal`".into(),
        ));
    }
    Device::new_metal(0).map_err(|e| Error::Device(format!("no usable Metal GPU: {e}")))
}

/// A one-line description of `device` for logs and the window ("CPU (2 threads, avx512)").
pub fn describe_device(device: &Device) -> String {
    match device {
        Device::Cpu => {
            let threads = candle_core::utils::get_num_threads();
            let simd = if candle_core::utils::has_accelerate() {
                ", Accelerate"
            } else if candle_core::utils::has_mkl() {
                ", MKL"
            } else {
                ""
            };
            format!("CPU ({threads} threads{simd})")
        }
        Device::Cuda(_) => "CUDA GPU 0".to_string(),
        Device::Metal(_) => "Metal GPU 0".to_string(),
    }
}
