//! Hostile but small inputs (issue 14): an image that trips its decoder, weights files whose
//! headers declare far more than they hold, weights of the wrong type, and a weights folder
//! setting that is not a folder. Each is refused with a message naming it, quickly and
//! without allocating what the header claims; the rest of the work goes on.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use candle_core::Device;
use cnn_explorer::model::Arch;
use cnn_explorer::weights::loading::{load_backbone, read_tensors};
use common::cat_photo;
use common::run::cnn_explorer_with as cnn_explorer;

/// Records the largest single allocation made on each thread, so a test can tell that a
/// tensor a header declares was never materialised.
struct LargestAllocation;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// The largest allocation `f` makes on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ------------------------------------------------------------------ hand-made .pth files

/// One tensor of a hand-made `.pth`: a view of `storage` (f32 or i64 values) with `shape`
/// and `stride`.
struct PthTensor<'a> {
    name: &'a str,
    shape: &'a [i32],
    stride: &'a [i32],
    storage: Storage,
}

enum Storage {
    Float(Vec<f32>),
    Long(Vec<i64>),
}

/// A zip `.pth` as `torch.save(state_dict)` writes it: `archive/data.pkl`, a protocol-2
/// pickle of `{name: _rebuild_tensor_v2(storage, 0, shape, stride, False, OrderedDict())}`,
/// and each storage's bytes in `archive/data/KEY`.
fn write_pth(path: &Path, tensors: &[PthTensor]) {
    let mut pickle = vec![0x80, 0x02, b'}', b'('];
    let text = |pickle: &mut Vec<u8>, s: &str| {
        pickle.push(b'X');
        pickle.extend((s.len() as u32).to_le_bytes());
        pickle.extend(s.as_bytes());
    };
    let int = |pickle: &mut Vec<u8>, v: i32| {
        pickle.push(b'J');
        pickle.extend(v.to_le_bytes());
    };
    for (key, t) in tensors.iter().enumerate() {
        text(&mut pickle, t.name);
        pickle.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        text(&mut pickle, "storage");
        let (class, numel) = match &t.storage {
            Storage::Float(v) => ("FloatStorage", v.len()),
            Storage::Long(v) => ("LongStorage", v.len()),
        };
        pickle.extend(format!("ctorch\n{class}\n").as_bytes());
        text(&mut pickle, &key.to_string());
        text(&mut pickle, "cpu");
        int(&mut pickle, numel as i32);
        pickle.extend(b"tQ");
        int(&mut pickle, 0);
        for dims in [t.shape, t.stride] {
            pickle.push(b'(');
            for &d in dims {
                int(&mut pickle, d);
            }
            pickle.push(b't');
        }
        pickle.extend(b"\x89ccollections\nOrderedDict\n)RtR");
    }
    pickle.extend(b"u.");

    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut entry = |name: &str, bytes: &[u8]| {
        zip.start_file(format!("archive/{name}"), stored).unwrap();
        zip.write_all(bytes).unwrap();
    };
    entry("data.pkl", &pickle);
    entry("byteorder", b"little");
    for (key, t) in tensors.iter().enumerate() {
        let bytes: Vec<u8> = match &t.storage {
            Storage::Float(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Storage::Long(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        };
        entry(&format!("data/{key}"), &bytes);
    }
    entry("version", b"3\n");
    zip.finish().unwrap();
}

/// 2^24 elements: a 64 MB f32 tensor from one stored float.
const HUGE: i32 = 1 << 24;

/// Each tensor is a stride-0 view of one float: a file of under 2 KB that materialises to
/// 64 MB per tensor. Only what the model asks for is read, after its shape is checked, so
/// nothing near that size is ever allocated.
#[test]
fn stride_0_views_in_a_pth_are_not_materialised() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.pth");
    let one = || Storage::Float(vec![0.5]);
    let view = |name| PthTensor {
        name,
        shape: &[HUGE],
        stride: &[0],
        storage: one(),
    };
    write_pth(
        &path,
        &[
            view("conv1.weight"),
            view("bn1.weight"),
            view("fc.weight"),
            view("unused.junk"),
        ],
    );
    assert!(std::fs::metadata(&path).unwrap().len() < 2048);
    let (result, largest) =
        largest_allocation(|| load_backbone(Arch::ResNet18, &path, &Device::Cpu));
    let err = result.err().expect("refused").to_string();
    assert!(err.contains("hostile.pth"), "{err}");
    assert!(err.contains("shape mismatch for conv1.weight"), "{err}");
    assert!(largest < 8 << 20, "allocated {largest} bytes at once");

    // The right shape as a stride-0 view is read at the model's size only; unused tensors
    // are never read, however large they claim to be.
    let path = dir.path().join("partial.pth");
    write_pth(
        &path,
        &[
            PthTensor {
                name: "conv1.weight",
                shape: &[64, 3, 7, 7],
                stride: &[0, 0, 0, 0],
                storage: one(),
            },
            view("unused.junk"),
        ],
    );
    let (result, largest) =
        largest_allocation(|| load_backbone(Arch::ResNet18, &path, &Device::Cpu));
    let err = result.err().expect("refused").to_string();
    assert!(err.contains("bn1"), "the next tensor is missing: {err}");
    assert!(largest < 8 << 20, "allocated {largest} bytes at once");

    // Reading a whole file (tests, tools) stops at a total no model needs.
    let path = dir.path().join("bomb.pth");
    let names: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    let views: Vec<PthTensor> = names.iter().map(|n| view(n)).collect();
    write_pth(&path, &views);
    let err = read_tensors(&path).unwrap_err().to_string();
    assert!(err.contains("more than the weights of any model"), "{err}");
}

/// Integer tensors the model needs are refused naming them (they used to be dropped, so the
/// error blamed a missing tensor), and NaN weights are refused instead of giving `null`
/// probabilities.
#[test]
fn integer_and_nan_weights_are_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ints.pth");
    write_pth(
        &path,
        &[PthTensor {
            name: "conv1.weight",
            shape: &[64, 3, 7, 7],
            stride: &[0, 0, 0, 0],
            storage: Storage::Long(vec![1]),
        }],
    );
    let err = load_backbone(Arch::ResNet18, &path, &Device::Cpu)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("ints.pth") && err.contains("tensor conv1.weight holds I64"),
        "{err}"
    );

    let path = dir.path().join("nan.pth");
    write_pth(
        &path,
        &[PthTensor {
            name: "conv1.weight",
            shape: &[64, 3, 7, 7],
            stride: &[0, 0, 0, 0],
            storage: Storage::Float(vec![f32::NAN]),
        }],
    );
    let err = load_backbone(Arch::ResNet18, &path, &Device::Cpu)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("nan.pth") && err.contains("conv1.weight") && err.contains("NaN"),
        "{err}"
    );
}

// ------------------------------------------------------------------ a decoder that panics

/// An uncompressed 8-bit RGB TIFF of `w x h` pixels stored as `tile x tile` tiles, one plane
/// per colour (PlanarConfiguration 2): valid (Pillow reads it), but the tiff crate asserts.
fn tiled_planar_tiff(w: u32, h: u32, tile: u32) -> Vec<u8> {
    let tiles = w.div_ceil(tile) * h.div_ceil(tile) * 3;
    let entries = 11u32;
    let bits_at = 8 + 2 + entries * 12 + 4;
    let offsets_at = bits_at + 6;
    let counts_at = offsets_at + 4 * tiles;
    let data_at = counts_at + 4 * tiles;
    let mut out = b"II\x2a\x00\x08\x00\x00\x00".to_vec();
    out.extend((entries as u16).to_le_bytes());
    for (tag, kind, count, value) in [
        (256u16, 4u16, 1u32, w),
        (257, 4, 1, h),
        (258, 3, 3, bits_at),
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (277, 3, 1, 3),
        (284, 3, 1, 2),
        (322, 4, 1, tile),
        (323, 4, 1, tile),
        (324, 4, tiles, offsets_at),
        (325, 4, tiles, counts_at),
    ] {
        out.extend(tag.to_le_bytes());
        out.extend(kind.to_le_bytes());
        out.extend(count.to_le_bytes());
        out.extend(value.to_le_bytes());
    }
    out.extend(0u32.to_le_bytes());
    out.extend([8, 0, 8, 0, 8, 0]);
    for i in 0..tiles {
        out.extend((data_at + i * tile * tile).to_le_bytes());
    }
    for _ in 0..tiles {
        out.extend((tile * tile).to_le_bytes());
    }
    out.resize(out.len() + (tiles * tile * tile) as usize, 128);
    out
}

/// The decoder's panic is an error naming the file, printed once and without a panic
/// message; the other photo is still classified.
#[test]
fn a_photo_that_panics_its_decoder_is_skipped_with_a_clear_error() {
    let weights = common::efficientnet_weights();
    let dir = tempfile::tempdir().unwrap();
    let tiff = dir.path().join("planar.tif");
    std::fs::write(&tiff, tiled_planar_tiff(40, 24, 16)).unwrap();
    let o = cnn_explorer(
        &[
            "predict",
            "--model",
            "efficientnet-lite0",
            "--weights",
            weights.to_str().unwrap(),
            "--json",
            tiff.to_str().unwrap(),
            cat_photo().to_str().unwrap(),
        ],
        &[],
    );
    let err = text(&o.stderr);
    assert!(!o.status.success(), "a photo failed: {err}");
    assert_ne!(o.status.code(), Some(101), "exited as a panic: {err}");
    assert!(
        err.contains("planar.tif") && err.contains("decoder failed"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        text(&o.stdout).lines().count(),
        1,
        "the cat is still classified"
    );
}

// ------------------------------------------------------------------ the weights folder

#[test]
fn a_weights_dir_setting_that_is_a_file_or_empty_is_handled() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    let cat = cat_photo();
    let args = [
        "predict",
        "--model",
        "efficientnet-lite0",
        cat.to_str().unwrap(),
    ];
    let o = cnn_explorer(
        &args,
        &[("CNN_EXPLORER_WEIGHTS_DIR", file.to_str().unwrap())],
    );
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!(
            "CNN_EXPLORER_WEIGHTS_DIR={} is a file, not a folder",
            file.display()
        )),
        "{err}"
    );

    // The window says the same before it opens (it needs no display to refuse).
    let o = cnn_explorer(
        &["--model", "efficientnet-lite0"],
        &[("CNN_EXPLORER_WEIGHTS_DIR", file.to_str().unwrap())],
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("is a file, not a folder"),
        "{}",
        text(&o.stderr)
    );

    // Empty means unset: the default folder, not the current one.
    let o = Command::new(env!("CARGO_BIN_EXE_cnn-explorer"))
        .args(["predict", cat.to_str().unwrap()])
        .env("CNN_EXPLORER_WEIGHTS_DIR", "")
        .env("RUST_LOG", "warn")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = text(&o.stderr);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights");
    assert!(
        o.status.success()
            || err.contains(&format!("found in {}", repo.display()))
            || err.contains("found in weights"),
        "{err}"
    );
}
