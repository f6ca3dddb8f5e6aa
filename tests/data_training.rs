//! The training data path against issue 14's hostile cases. The feature cache and
//! extraction's memory, with a small random-weight EfficientNet-Lite0 on 32x32 views: runs at
//! the same time keep each other's features, a stopped run keeps what it computed, leftovers
//! and dead entries are pruned, the cache stays within its limit, a damaged or hostile cache is
//! refused and recomputed, and peak memory does not grow with the batch times the photos'
//! size. And `train-head` on a folder with links names what it left out.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use candle_core::Device;
use cnn_explorer::inference::LoadedModel;
use cnn_explorer::train::dataset::{scan, Item, ScanOptions};
use cnn_explorer::train::features::{extract, FeatureOptions, Features, DEFAULT_CACHE_MAX_BYTES};
use cnn_explorer::train::{Silent, TrainEvent, TrainObserver};
use cnn_explorer::vision::preprocess::Preprocess;
use cnn_explorer::Error;
use image::{Rgb, RgbImage};

fn tiny_model(dir: &Path, side: u32) -> LoadedModel {
    let spec = cnn_explorer::weights::find_model("efficientnet-lite0").unwrap();
    let weights_path = dir.join("stand-in.pth");
    fs::write(&weights_path, b"the cache key reads its size and time").unwrap();
    LoadedModel {
        spec,
        backbone: cnn_explorer::weights::loading::random_backbone(spec.arch, &Device::Cpu, 1)
            .unwrap(),
        preprocess: Preprocess::imagenet(side),
        device: Device::Cpu,
        weights_path,
    }
}

/// A folder `parent/name` with classes `a` and `b` of `n` small photos each, scanned.
fn photos(parent: &Path, name: &str, n: u8) -> Vec<Item> {
    let root = parent.join(name);
    for (c, class) in ["a", "b"].into_iter().enumerate() {
        fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..n {
            let photo = RgbImage::from_fn(12, 9, |x, y| {
                Rgb([x as u8 * 20 + i * 9, y as u8 * 25, c as u8 * 200])
            });
            photo
                .save(root.join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    scan(&root, ScanOptions::default()).unwrap().items
}

fn options(cache: &Path) -> FeatureOptions {
    FeatureOptions {
        batch_size: 1,
        flip: false,
        cache_dir: Some(cache.to_path_buf()),
        cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
        tap: None,
    }
}

fn run(model: &LoadedModel, items: &[Item], options: &FeatureOptions) -> Features {
    extract(model, items, options, &mut Silent).unwrap()
}

/// Every shard file of the cache, sorted.
fn shards(cache: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(cache)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .flat_map(|e| fs::read_dir(e.path()).unwrap().flatten())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "feat"))
        .collect();
    out.sort();
    out
}

/// The shard of the photos of `folder` (its header names the folder).
fn shard_of(cache: &Path, folder: &Path) -> PathBuf {
    let folder = fs::canonicalize(folder).unwrap();
    let wanted = folder.as_os_str().as_encoded_bytes();
    shards(cache)
        .into_iter()
        .find(|p| {
            let bytes = fs::read(p).unwrap();
            bytes.get(17..17 + wanted.len()) == Some(wanted)
        })
        .unwrap_or_else(|| panic!("no shard of {}", folder.display()))
}

/// Runs another extraction when the first progress report comes, as a second process
/// running at the same time would.
struct Meanwhile<'a> {
    model: &'a LoadedModel,
    items: &'a [Item],
    options: &'a FeatureOptions,
    done: bool,
}

impl TrainObserver for Meanwhile<'_> {
    fn on_event(&mut self, _: TrainEvent<'_>) {
        if !std::mem::replace(&mut self.done, true) {
            run(self.model, self.items, self.options);
        }
    }
}

#[test]
fn runs_at_the_same_time_keep_each_others_features() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), 32);
    let cache = dir.path().join("cache");
    let (one, two) = (photos(dir.path(), "one", 2), photos(dir.path(), "two", 2));
    let options = options(&cache);
    let mut meanwhile = Meanwhile {
        model: &model,
        items: &two,
        options: &options,
        done: false,
    };
    let first = extract(&model, &one, &options, &mut meanwhile).unwrap();
    assert_eq!(first.computed, 4);
    // Before, the first run's final write replaced the file the second had written.
    assert_eq!(run(&model, &two, &options).from_cache, 4);
    let again = run(&model, &one, &options);
    assert_eq!((again.from_cache, again.computed), (4, 0));
    assert_eq!(again.vectors, first.vectors, "read back as computed");
}

/// Stops after `batches` batches: by cancelling, or by panicking (as a killed run would).
struct StopAfter {
    batches: usize,
    panic: bool,
    reports: usize,
}

impl TrainObserver for StopAfter {
    fn on_event(&mut self, _: TrainEvent<'_>) {
        self.reports += 1;
        if self.panic && self.reports > self.batches {
            panic!("stopped on purpose, as a killed run would");
        }
    }

    fn is_cancelled(&self) -> bool {
        self.reports > self.batches
    }
}

#[test]
fn a_stopped_run_keeps_what_it_computed() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), 32);
    let items = photos(dir.path(), "photos", 3);
    for panic in [true, false] {
        let cache = dir.path().join(format!("cache-{panic}"));
        let options = options(&cache);
        let mut stop = StopAfter {
            batches: 2,
            panic,
            reports: 0,
        };
        let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            extract(&model, &items, &options, &mut stop)
        }));
        match stopped {
            Ok(result) => assert!(matches!(result, Err(Error::Cancelled)), "{result:?}"),
            Err(_) => assert!(panic),
        }
        let next = run(&model, &items, &options);
        assert_eq!((next.from_cache, next.computed), (2, 4), "panic: {panic}");
    }
}

#[test]
fn leftovers_and_dead_entries_are_pruned_and_runs_only_append() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), 32);
    let cache = dir.path().join("cache");
    let options = options(&cache);
    let items = photos(dir.path(), "photos", 2);
    run(&model, &items, &options);
    let before = shards(&cache);
    assert_eq!(before.len(), 2, "one shard per photo folder");
    let key_folder = before[0].parent().unwrap().to_path_buf();
    let key = key_folder
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    // What killed runs of this version and of the older one left, and files not ours.
    let leftovers = [
        key_folder.join(".0123456789abcdef01234567.feat.4242.tmp"),
        cache.join(format!("{key}.tmp4242")),
        cache.join(format!("{key}.bin")),
    ];
    for path in &leftovers {
        fs::write(path, b"CNXFEAT1 a large half-written file").unwrap();
    }
    let not_ours = [cache.join("notes.tmp1"), cache.join("notes.bin")];
    for path in &not_ours {
        fs::write(path, b"CNXFEAT1 someone else's").unwrap();
    }

    // A photo added to `b` is appended to its shard: the same file, one record longer.
    let b_shard = shard_of(&cache, &dir.path().join("photos/b"));
    let b_len = fs::metadata(&b_shard).unwrap().len();
    RgbImage::from_pixel(5, 5, Rgb([1, 2, 3]))
        .save(dir.path().join("photos/b/9.png"))
        .unwrap();
    let items = scan(&dir.path().join("photos"), ScanOptions::default())
        .unwrap()
        .items;
    let next = run(&model, &items, &options);
    assert_eq!((next.from_cache, next.computed), (4, 1));
    for path in &leftovers {
        assert!(!path.exists(), "{} was left behind", path.display());
    }
    for path in &not_ours {
        assert!(path.exists(), "{} is not the cache's", path.display());
    }
    let shards_now = shards(&cache);
    assert_eq!(shards_now, before);
    let record = fs::metadata(&b_shard).unwrap().len() - b_len;
    assert!(record > 4 * 1280, "one record appended ({record} bytes)");
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        let (a_ino, b_ino) = (ino(&before[0]), ino(&b_shard));
        run(&model, &items, &options);
        assert_eq!(
            (ino(&before[0]), ino(&b_shard)),
            (a_ino, b_ino),
            "not rewritten"
        );
    }

    // Photos gone: the folder `a` (its shard goes) and two of `b` (its shard is pruned).
    fs::remove_dir_all(dir.path().join("photos/a")).unwrap();
    fs::remove_file(dir.path().join("photos/b/0.png")).unwrap();
    fs::remove_file(dir.path().join("photos/b/1.png")).unwrap();
    let b_only: Vec<Item> = items
        .into_iter()
        .filter(|i| i.path.ends_with("b/9.png"))
        .collect();
    let last = run(&model, &b_only, &options);
    assert_eq!(last.from_cache, 1);
    assert_eq!(
        shards(&cache),
        std::slice::from_ref(&b_shard),
        "the emptied folder's shard went"
    );
    assert_eq!(
        fs::metadata(&b_shard).unwrap().len(),
        b_len - 2 * record + record
    );
}

#[test]
fn the_cache_keeps_within_its_limit_dropping_the_least_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), 32);
    let cache = dir.path().join("cache");
    let mut options = options(&cache);
    let one = photos(dir.path(), "one", 2);
    let two = photos(dir.path(), "two", 2);
    run(&model, &one, &options);
    let one_shards = shards(&cache);
    let bytes: u64 = one_shards
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    options.cache_max_bytes = bytes + bytes / 4;
    run(&model, &two, &options);
    run(&model, &two, &options);
    let now = shards(&cache);
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(now.iter().all(|p| !one_shards.contains(p)), "{now:?}");
    assert_eq!(run(&model, &two, &options).from_cache, 4);
}

#[test]
fn a_damaged_or_hostile_cache_is_refused_and_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), 32);
    let cache = dir.path().join("cache");
    let options = options(&cache);
    let items = photos(dir.path(), "photos", 2);
    let first = run(&model, &items, &options);
    let shard = shards(&cache)[0].clone();
    let whole = fs::read(&shard).unwrap();

    let check = |what: &str, cached: usize| {
        let got = run(&model, &items, &options);
        assert_eq!(got.from_cache, cached, "{what}");
        assert_eq!(got.vectors, first.vectors, "{what}: recomputed the same");
        // Repaired: everything reads back now.
        assert_eq!(run(&model, &items, &options).from_cache, 4, "{what}");
    };
    // The tail of a run killed while appending: the records before it are kept.
    fs::write(&shard, &whole[..whole.len() - 10]).unwrap();
    check("cut short", 3);
    // A changed byte in the last record's numbers: its checksum fails.
    let mut flipped = whole.clone();
    let at = whole.len() - 20;
    flipped[at] ^= 0x40;
    fs::write(&shard, &flipped).unwrap();
    check("bad checksum", 3);
    // Not a cache at all, another width, a header claiming a 4 GB folder name.
    let mut wide = whole.clone();
    wide[8] ^= 1;
    let mut huge = whole.clone();
    huge[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
    for (what, bytes) in [
        ("garbage", b"garbage".to_vec()),
        ("another width", wide),
        ("huge folder name", huge),
        ("empty", Vec::new()),
    ] {
        fs::write(&shard, bytes).unwrap();
        check(what, 2);
    }
    #[cfg(unix)]
    {
        // A FIFO would block a reader that opened it; a link is not followed.
        fs::remove_file(&shard).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&shard).status();
        if made.is_ok_and(|s| s.success()) {
            check("a FIFO", 2);
        }
        let elsewhere = dir.path().join("elsewhere.feat");
        fs::write(&elsewhere, &whole).unwrap();
        fs::remove_file(&shard).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &shard).unwrap();
        check("a link", 2);
        assert_eq!(fs::read(&elsewhere).unwrap(), whole, "not written through");
    }
    // A lock that cannot be taken: no cache, the features are still computed.
    fs::remove_dir_all(&cache).unwrap();
    fs::create_dir_all(cache.join(".lock")).unwrap();
    let got = run(&model, &items, &options);
    assert_eq!((got.from_cache, got.computed), (0, 4));
    assert_eq!(got.vectors, first.vectors);
}

/// Issue 14: "16 large PNGs in a training batch: 3.4 GB". Each photo used to be held at full
/// resolution (twice, with flips) until its whole batch went through the network; now only
/// its network views are, so with two threads the peak stays near two full photos.
#[cfg(target_os = "linux")]
#[test]
fn peak_memory_does_not_grow_with_batch_times_photo_size() {
    const CHILD: &str = "CNN_EXPLORER_TEST_MEMORY_CHILD";
    const NAME: &str = "peak_memory_does_not_grow_with_batch_times_photo_size";
    if let Some(folder) = std::env::var_os(CHILD) {
        return measure_extraction(Path::new(&folder));
    }
    // 16 photos of 2400 x 1600 (11.5 MB each as RGB); smooth, so the files are small.
    let dir = tempfile::tempdir().unwrap();
    for class in ["a", "b"] {
        fs::create_dir_all(dir.path().join(class)).unwrap();
        for i in 0..8u8 {
            RgbImage::from_fn(2400, 1600, |x, y| {
                Rgb([(x / 10) as u8, (y / 7) as u8, i * 30])
            })
            .save(dir.path().join(class).join(format!("{i}.png")))
            .unwrap();
        }
    }
    // Measured in a process of its own: the peak is the whole process's.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let at = text
        .find("peak memory")
        .unwrap_or_else(|| panic!("no measurement in {text}"));
    println!("{}", text[at..].lines().next().unwrap_or_default());
}

#[cfg(target_os = "linux")]
fn measure_extraction(folder: &Path) {
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build_global();
    let scratch = tempfile::tempdir().unwrap();
    let model = tiny_model(scratch.path(), 32);
    let items = scan(folder, ScanOptions::default()).unwrap().items;
    let kib = |field: &str| -> u64 {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    // Resets the peak (VmHWM) to the current use.
    if fs::write("/proc/self/clear_refs", "5").is_err() {
        println!("peak memory: cannot be measured here");
        return;
    }
    let before = kib("VmRSS:");
    let options = FeatureOptions {
        batch_size: 16,
        flip: true,
        cache_dir: None,
        cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
        tap: None,
    };
    let features = run(&model, &items, &options);
    assert_eq!((features.computed, features.failed.len()), (16, 0));
    let growth = (kib("VmHWM:") - before) / 1024;
    println!("peak memory grew by {growth} MB extracting 16 photos of 11.5 MB in one batch");
    assert!(growth < 150, "peak memory grew by {growth} MB");
}

/// Issue 14: a link to the dataset folder inside a class folder gave "98.8% validation
/// accuracy" (every photo relabelled, the same files on both sides of the split).
#[cfg(unix)]
#[test]
fn train_head_leaves_out_links_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (c, class) in ["cat", "dog"].into_iter().enumerate() {
        fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..4u8 {
            RgbImage::from_pixel(40, 30, Rgb([c as u8 * 200, i * 40, 90]))
                .save(data.join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    std::os::unix::fs::symlink("..", data.join("cat/up")).unwrap();
    std::os::unix::fs::symlink("../cat/0.png", data.join("dog/kitty.png")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cnn-explorer"))
        .arg("train-head")
        .arg(&data)
        .args(["--model", "efficientnet-lite0", "--weights"])
        .arg(common::efficientnet_weights())
        .args(["--no-cache", "--epochs", "1", "--val", "0.25", "-o"])
        .arg(dir.path().join("head.safetensors"))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(": 7 photos"), "{stdout}");
    for expected in [
        "cat/up: a link back to the dataset folder",
        "cat/0.png: the same file is in classes 'cat' and 'dog'",
        "dog/kitty.png: the same file is in classes 'cat' and 'dog'",
    ] {
        assert!(stderr.contains(expected), "{expected} in\n{stderr}");
    }
}
