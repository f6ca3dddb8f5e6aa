//! A weights file opened for reading one tensor at a time (safetensors, or PyTorch `.pth` in
//! the zip or legacy pickle format).
//!
//! Opening reads only the header: each tensor's name, element type and shape. A tensor's bytes
//! are read when the model asks for it, and only after its shape has been checked against the
//! one the model needs, so a hostile header cannot make us allocate more than the model's own
//! parameters (a `.pth` of a few hundred bytes can declare stride-0 views of one float that
//! would each fill gigabytes). Every tensor read must be floating point and finite.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// Largest weights file opened: 4 GiB (VGG-19 in f64 is 1.15 GB).
pub const MAX_WEIGHTS_BYTES: u64 = 4 << 30;

/// Largest safetensors JSON header (the format's own limit).
const MAX_SAFETENSORS_HEADER: u64 = 100_000_000;

/// An element type as the file stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredType {
    /// A floating-point type candle reads (F64, F32, F16, BF16).
    Float(DType),
    /// Anything else (integers, booleans, 8-bit floats), by the file's name for it.
    Other(String),
}

impl std::fmt::Display for StoredType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Float(d) => write!(f, "{d:?}"),
            Self::Other(name) => f.write_str(name),
        }
    }
}

/// Where a tensor's bytes are.
enum Data {
    /// A `.pth` tensor, read (and gathered from its strided view) by pytorch-reader.
    Pth(pytorch_reader::Tensor),
    /// A byte range of a safetensors file (from the start of the file).
    Range { offset: u64, len: u64 },
}

/// One tensor of the file, not yet read.
struct Entry {
    /// Its name in the file (before a `module.` prefix is dropped).
    stored_name: String,
    dtype: StoredType,
    shape: Vec<usize>,
    data: Data,
}

/// An open weights file: tensor names, types and shapes; bytes on demand.
pub struct WeightsFile {
    path: PathBuf,
    entries: HashMap<String, Entry>,
    /// The safetensors file, for the byte ranges.
    file: Option<Mutex<File>>,
}

impl std::fmt::Debug for WeightsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightsFile")
            .field("path", &self.path)
            .field("tensors", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl WeightsFile {
    /// Opens the weights file at `path`: a regular file of at most [`MAX_WEIGHTS_BYTES`]
    /// (a folder, FIFO or device is refused before it is opened for reading), whose header
    /// is parsed; no tensor is read yet.
    pub fn open(path: &Path) -> Result<Self> {
        let (mut file, len) = crate::input::open_regular(path, MAX_WEIGHTS_BYTES)
            .map_err(|reason| Error::weights(path, reason))?;
        if len == 0 {
            return Err(Error::weights(path, "the file is empty"));
        }
        let mut magic = Vec::with_capacity(9);
        (&mut file)
            .take(9)
            .read_to_end(&mut magic)
            .map_err(|e| Error::weights(path, format!("cannot read it: {e}")))?;
        // A zip archive (PyTorch >= 1.6) starts with "PK"; a legacy pickle with 0x80 (PROTO).
        // A safetensors header length can start with those bytes too (128 is 0x80), but is
        // followed by the JSON's "{".
        let safetensors = magic.len() == 9
            && magic[8] == b'{'
            && u64::from_le_bytes([
                magic[0], magic[1], magic[2], magic[3], magic[4], magic[5], magic[6], magic[7],
            ]) <= MAX_SAFETENSORS_HEADER;
        let pytorch = !safetensors && (magic.starts_with(b"PK") || magic.first() == Some(&0x80));
        let (entries, file) = if pytorch {
            // pytorch-reader opens the path itself; it was checked to be a regular file.
            drop(file);
            (read_pth_header(path)?, None)
        } else {
            let entries = read_safetensors_header(&mut file, len).map_err(|e| {
                Error::weights(
                    path,
                    format!(
                        "not a readable safetensors or PyTorch file (truncated or corrupt?): {e}"
                    ),
                )
            })?;
            (entries, Some(Mutex::new(file)))
        };
        let mut by_name = HashMap::with_capacity(entries.len());
        for entry in entries {
            let name = entry
                .stored_name
                .strip_prefix("module.")
                .unwrap_or(&entry.stored_name);
            by_name.insert(name.to_string(), entry);
        }
        Ok(Self {
            path: path.to_path_buf(),
            entries: by_name,
            file,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor names (a `module.` prefix dropped).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Whether the file has a tensor `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The stored type and shape of tensor `name`.
    pub fn info(&self, name: &str) -> Option<(&StoredType, &[usize])> {
        self.entries
            .get(name)
            .map(|e| (&e.dtype, e.shape.as_slice()))
    }

    /// Reads tensor `name` as f32 on the CPU, shaped `expected`.
    ///
    /// Before anything is read, the stored shape must be `expected` (or, with `reshape`, hold
    /// as many elements, for a renamed layer stored in another layout) and the type floating
    /// point; after reading, every value must be finite (also once converted to f32).
    pub fn read(&self, name: &str, expected: &[usize], reshape: bool) -> Result<Tensor> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| Error::weights(&self.path, format!("has no tensor {name}")))?;
        let fits = if reshape {
            element_count(&entry.shape) == element_count(expected)
        } else {
            entry.shape == expected
        };
        if !fits {
            return Err(Error::weights(
                &self.path,
                format!(
                    "shape mismatch for {name}: the file has {:?}, the model needs {expected:?}",
                    entry.shape
                ),
            ));
        }
        let tensor = self.materialise(name, entry)?;
        Ok(if reshape {
            tensor.reshape(expected)?
        } else {
            tensor
        })
    }

    /// Reads tensor `name` as f32 on the CPU in its stored shape, within `budget` elements
    /// (counted down), with the type and finiteness checks of [`read`](Self::read).
    pub fn read_any(&self, name: &str, budget: &mut usize) -> Result<Tensor> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| Error::weights(&self.path, format!("has no tensor {name}")))?;
        match element_count(&entry.shape) {
            Some(n) if n <= *budget => *budget -= n,
            _ => {
                return Err(Error::weights(
                    &self.path,
                    format!(
                        "tensor {name} of shape {:?} is more than the weights of any model",
                        entry.shape
                    ),
                ))
            }
        }
        self.materialise(name, entry)
    }

    /// The bytes of `entry`, checked, as an f32 tensor.
    fn materialise(&self, name: &str, entry: &Entry) -> Result<Tensor> {
        let dtype = match &entry.dtype {
            StoredType::Float(d) => *d,
            StoredType::Other(t) => {
                return Err(Error::weights(
                    &self.path,
                    format!("tensor {name} holds {t} values, not floating-point weights"),
                ))
            }
        };
        let bytes = match &entry.data {
            Data::Pth(t) => t.read().map_err(|e| {
                Error::weights(&self.path, format!("cannot read tensor {name}: {e}"))
            })?,
            Data::Range { offset, len } => self.read_range(*offset, *len).map_err(|e| {
                Error::weights(
                    &self.path,
                    format!("cannot read tensor {name} (truncated?): {e}"),
                )
            })?,
        };
        if let Some(index) = first_non_finite(&bytes, dtype) {
            return Err(Error::weights(
                &self.path,
                format!(
                    "tensor {name} has a value that is not a finite f32 (NaN or infinite) \
                     at element {index}"
                ),
            ));
        }
        let tensor = Tensor::from_raw_buffer(&bytes, dtype, &entry.shape, &Device::Cpu)?;
        Ok(tensor.to_dtype(DType::F32)?)
    }

    fn read_range(&self, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let file = self
            .file
            .as_ref()
            .ok_or_else(|| std::io::Error::other("no file to read from"))?;
        let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
        file.seek(SeekFrom::Start(offset))?;
        let mut bytes = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
        file.read_exact(&mut bytes)?;
        Ok(bytes)
    }
}

/// The product of `shape`, or `None` when it overflows.
fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// The index of the first value in `bytes` (native-endian `dtype`) that is NaN or infinite,
/// or that becomes infinite as an f32 (an f64 beyond f32's range).
fn first_non_finite(bytes: &[u8], dtype: DType) -> Option<usize> {
    match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .position(|b| !f32::from_ne_bytes([b[0], b[1], b[2], b[3]]).is_finite()),
        DType::F64 => bytes.chunks_exact(8).position(|b| {
            let v = f64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            !(v as f32).is_finite()
        }),
        // Half floats: all exponent bits set is infinity or NaN.
        DType::F16 => bytes
            .chunks_exact(2)
            .position(|b| u16::from_ne_bytes([b[0], b[1]]) & 0x7C00 == 0x7C00),
        DType::BF16 => bytes
            .chunks_exact(2)
            .position(|b| u16::from_ne_bytes([b[0], b[1]]) & 0x7F80 == 0x7F80),
        _ => None,
    }
}

/// The tensors of a `.pth` checkpoint, unread.
fn read_pth_header(path: &Path) -> Result<Vec<Entry>> {
    let reader = pytorch_reader::PytorchReader::new(path).map_err(|e| {
        Error::weights(
            path,
            format!("not a readable PyTorch checkpoint (truncated or corrupt?): {e}"),
        )
    })?;
    Ok(reader
        .into_tensors()
        .into_iter()
        .map(|(name, tensor)| {
            let dtype = match tensor.dtype() {
                pytorch_reader::DType::F32 => StoredType::Float(DType::F32),
                pytorch_reader::DType::F16 => StoredType::Float(DType::F16),
                pytorch_reader::DType::BF16 => StoredType::Float(DType::BF16),
                pytorch_reader::DType::F64 => StoredType::Float(DType::F64),
                other => StoredType::Other(format!("{other:?}")),
            };
            Entry {
                stored_name: name,
                dtype,
                shape: tensor.shape().to_vec(),
                data: Data::Pth(tensor),
            }
        })
        .collect())
}

/// One tensor of a safetensors header.
#[derive(serde::Deserialize)]
struct SafetensorsInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// The tensors of a safetensors file of `len` bytes, from its header: each one's byte range
/// must lie inside the file and match its type and shape.
fn read_safetensors_header(file: &mut File, len: u64) -> std::result::Result<Vec<Entry>, String> {
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut n = [0u8; 8];
    file.read_exact(&mut n)
        .map_err(|_| "shorter than a safetensors header".to_string())?;
    let header_len = u64::from_le_bytes(n);
    if header_len > MAX_SAFETENSORS_HEADER || header_len.saturating_add(8) > len {
        return Err(format!(
            "a header length of {header_len} bytes does not fit the file"
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| e.to_string())?;
    let header: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| format!("bad header: {e}"))?;
    let data_start = 8 + header_len;
    let data_len = len - data_start;
    let mut entries = Vec::with_capacity(header.len());
    for (name, value) in header {
        if name == "__metadata__" {
            continue;
        }
        let info: SafetensorsInfo =
            serde_json::from_value(value).map_err(|e| format!("tensor {name}: {e}"))?;
        let [begin, end] = info.data_offsets;
        if begin > end || end > data_len {
            return Err(format!(
                "tensor {name}: bytes {begin}..{end} are not inside the file's {data_len} data bytes"
            ));
        }
        let dtype = match info.dtype.as_str() {
            "F64" => StoredType::Float(DType::F64),
            "F32" => StoredType::Float(DType::F32),
            "F16" => StoredType::Float(DType::F16),
            "BF16" => StoredType::Float(DType::BF16),
            other => StoredType::Other(other.to_string()),
        };
        if let StoredType::Float(d) = dtype {
            let want = element_count(&info.shape)
                .and_then(|n| n.checked_mul(d.size_in_bytes()))
                .and_then(|n| u64::try_from(n).ok());
            if want != Some(end - begin) {
                return Err(format!(
                    "tensor {name}: {} bytes for a {} {:?} tensor",
                    end - begin,
                    info.dtype,
                    info.shape
                ));
            }
        }
        entries.push(Entry {
            stored_name: name,
            dtype,
            shape: info.shape,
            data: Data::Range {
                offset: data_start + begin,
                len: end - begin,
            },
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save(path: &Path, tensors: &[(&str, Tensor)]) {
        let map: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        candle_core::safetensors::save(&map, path).unwrap();
    }

    fn f32s(values: &[f32]) -> Tensor {
        Tensor::new(values, &Device::Cpu).unwrap()
    }

    #[test]
    fn tensors_are_read_by_shape_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let ints = Tensor::new(&[1i64, 2, 3], &Device::Cpu).unwrap();
        let half = f32s(&[1.0, 70000.0]).to_dtype(DType::F16).unwrap();
        let big = Tensor::new(&[1e300f64], &Device::Cpu).unwrap();
        save(
            &path,
            &[
                ("module.good", f32s(&[1.0, 2.0, 3.0, 4.0])),
                ("nan", f32s(&[0.0, f32::NAN])),
                ("ints", ints),
                ("half_inf", half),
                ("too_big_for_f32", big),
            ],
        );
        let file = WeightsFile::open(&path).unwrap();
        let good = file.read("good", &[4], false).unwrap();
        assert_eq!(good.to_vec1::<f32>().unwrap(), [1.0, 2.0, 3.0, 4.0]);
        let square = file.read("good", &[2, 2], true).unwrap();
        assert_eq!(square.dims(), [2, 2]);
        let err = file.read("good", &[2, 2], false).unwrap_err().to_string();
        assert!(err.contains("shape mismatch for good"), "{err}");
        assert!(err.contains("w.safetensors"), "{err}");
        let err = file.read("nan", &[2], false).unwrap_err().to_string();
        assert!(err.contains("tensor nan") && err.contains("NaN"), "{err}");
        let err = file.read("ints", &[3], false).unwrap_err().to_string();
        assert!(err.contains("tensor ints holds I64"), "{err}");
        // 70000 is beyond f16's range: stored as infinity.
        assert!(file.read("half_inf", &[2], false).is_err());
        assert!(file.read("too_big_for_f32", &[1], false).is_err());
    }

    #[test]
    fn a_header_pointing_outside_the_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let header = br#"{"w":{"dtype":"F32","shape":[1000000000],"data_offsets":[0,4000000000]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header);
        bytes.extend([0u8; 16]);
        std::fs::write(&path, bytes).unwrap();
        let err = WeightsFile::open(&path).unwrap_err().to_string();
        assert!(err.contains("not inside the file"), "{err}");
    }

    /// A huge (sparse) file is refused from its size before anything is read, instead of
    /// being read whole before its format is looked at.
    #[test]
    fn huge_files_fifos_and_devices_are_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.safetensors");
        let file = File::create(&path).unwrap();
        if file.set_len(MAX_WEIGHTS_BYTES + 1).is_ok() {
            let err = WeightsFile::open(&path).unwrap_err().to_string();
            assert!(err.contains("above the limit"), "{err}");
        }
        // Within the limit but all zeros: refused after its first bytes.
        file.set_len(1 << 30).unwrap();
        let started = std::time::Instant::now();
        let err = WeightsFile::open(&path).unwrap_err().to_string();
        assert!(err.contains("huge.safetensors"), "{err}");
        assert!(
            started.elapsed().as_secs_f64() < 0.2,
            "{:?}",
            started.elapsed()
        );
        #[cfg(unix)]
        {
            let err = WeightsFile::open(Path::new("/dev/zero")).unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
            let fifo = dir.path().join("w.pth");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if made.is_ok_and(|s| s.success()) {
                let err = WeightsFile::open(&fifo).unwrap_err();
                assert!(err.to_string().contains("not a regular file"), "{err}");
            }
        }
    }
}
