//! The explorer window's flows, headless with egui_kittest, found by role and label: a photo
//! analysed by the real EfficientNet-Lite0 through the real worker thread, a layer switched, a
//! channel opened and walked with the keys, dropped files (good and bad), and the first-run
//! download panel fed by a local HTTP server standing in for the network, and every tab's
//! settings kept for the next run.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cnn_explorer::ui::settings::{DeviceChoice, Settings};
use cnn_explorer::ui::train::map::Projection;
use cnn_explorer::ui::{AppOptions, ExplorerApp};
use cnn_explorer::worker::WorkerConfig;
use common::window::{real_model_options, real_weights_dir, start, wait_for};
use eframe::egui;
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;

fn has_label(h: &Harness<'static, ExplorerApp>, label: &str) -> bool {
    h.query_all_by_label(label).next().is_some()
}

fn has_text(h: &Harness<'static, ExplorerApp>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

fn explorer_on_the_cat() -> Harness<'static, ExplorerApp> {
    let mut h = start(real_model_options());
    wait_for(&mut h, "the cat's predictions", |h| {
        has_label(h, "1. Egyptian cat")
    });
    h
}

#[derive(Debug)]
struct DroppedPath(PathBuf);

impl egui::DroppedFile for DroppedPath {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn drop_file(h: &mut Harness<'static, ExplorerApp>, path: &Path) {
    h.input_mut()
        .dropped_files
        .push(Arc::new(DroppedPath(path.to_path_buf())));
    h.step();
}

#[test]
fn a_photo_is_analysed_then_layers_and_channels_are_explored() {
    let mut h = explorer_on_the_cat();
    let analysis = h.state().analysis().expect("an analysis is shown");
    assert_eq!(analysis.photo_name, "chelsea.png");
    assert_eq!(analysis.layers.len(), 19, "stem, 16 blocks, head, logits");
    assert!(has_label(&h, "2. tabby") && has_label(&h, "3. tiger cat"));
    assert!(
        has_text(&h, "stem: 32 channels of 112×112"),
        "the first layer is shown first"
    );

    // Switch layer from the list.
    h.get_by_label("block3").click();
    wait_for(&mut h, "block3's grid", |h| {
        has_text(h, "block: 40 channels of 28×28")
    });
    assert!(has_label(&h, "channel 39") && !has_label(&h, "channel 40"));

    // Open a channel: it is drawn over the photo, with an opacity slider and values on hover.
    h.get_by_label("channel 5").click();
    wait_for(&mut h, "channel 5 opened", |h| {
        has_text(h, "Channel 5 of 40")
    });
    assert!(has_label(&h, "Overlay opacity"));
    h.get_by_label("channel 5 over the photo").hover();
    wait_for(&mut h, "the value under the pointer", |h| {
        has_text(h, "activation at (x ")
    });

    // Keys: → next channel, Esc back to the grid, ↑ previous layer, ↓ next layer.
    h.key_press(egui::Key::ArrowRight);
    wait_for(&mut h, "channel 6 after →", |h| {
        has_text(h, "Channel 6 of 40")
    });
    h.key_press(egui::Key::Escape);
    wait_for(&mut h, "the grid after Esc", |h| has_label(h, "channel 0"));
    h.key_press(egui::Key::ArrowUp);
    wait_for(&mut h, "block2 after ↑", |h| {
        has_text(h, "block: 24 channels of 56×56")
    });
    for _ in 0..30 {
        h.key_press(egui::Key::ArrowDown);
    }
    wait_for(&mut h, "the logits after ↓s", |h| {
        has_text(h, "logits: 1000 units")
    });
    assert!(
        has_text(&h, "unit 285 (Egyptian cat)"),
        "the strongest logit is named"
    );
}

#[test]
fn dropped_photos_are_analysed_and_a_bad_one_keeps_the_last() {
    let mut h = explorer_on_the_cat();
    let dir = tempfile::tempdir().unwrap();

    let flipped = dir.path().join("cat-flipped.jpg");
    image::open(common::cat_photo())
        .unwrap()
        .fliph()
        .to_rgb8()
        .save(&flipped)
        .unwrap();
    drop_file(&mut h, &flipped);
    wait_for(&mut h, "the dropped photo", |h| {
        h.state()
            .analysis()
            .is_some_and(|a| a.photo_name == "cat-flipped.jpg")
    });
    assert!(has_text(&h, "cat"), "a mirrored cat is still a cat");

    let bad = dir.path().join("notes.jpg");
    std::fs::write(&bad, "these are notes, not a photo").unwrap();
    drop_file(&mut h, &bad);
    wait_for(&mut h, "the error", |h| {
        has_text(h, "Could not open notes.jpg")
    });
    let notice = h.state().notice().unwrap().to_string();
    assert!(notice.contains("not an image"), "{notice}");
    assert_eq!(h.state().analysis().unwrap().photo_name, "cat-flipped.jpg");
    assert!(
        has_label(&h, "cat-flipped.jpg"),
        "the previous photo stays on screen"
    );
    assert!(!h.state().is_busy());
}

/// Serves `file` at `/NAME` like a weights mirror; the first request trickles (so it can be
/// cancelled), the later ones go at full speed.
fn serve_weights(file: PathBuf) -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let slow = Arc::new(AtomicBool::new(true));
    let slow_flag = slow.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let file = file.clone();
            let slow = slow_flag.swap(false, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut request = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                reader.read_line(&mut request).unwrap();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) <= 2 {
                        break;
                    }
                }
                let wanted = format!("/{}", file.file_name().unwrap().to_string_lossy());
                if request.split_whitespace().nth(1) != Some(wanted.as_str()) {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return;
                }
                let body = std::fs::read(&file).unwrap();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for chunk in body.chunks(if slow { 16 * 1024 } else { 1 << 20 }) {
                    if stream.write_all(chunk).is_err() {
                        return;
                    }
                    if slow {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            });
        }
    });
    (url, slow)
}

#[test]
fn first_run_offers_downloads_cancels_and_then_installs_a_model() {
    let weights = tempfile::tempdir().unwrap();
    let (mirror, _) = serve_weights(common::efficientnet_weights());
    let mut h = start(AppOptions {
        worker: WorkerConfig {
            weights_dir: weights.path().to_path_buf(),
            mirror: Some(mirror),
            ..WorkerConfig::default()
        },
        ..AppOptions::default()
    });
    h.run_steps(3);
    assert!(has_label(&h, "Welcome to cnn-explorer"));
    // A newcomer is pointed at the small model first, and at the lesson's; the table stays.
    assert!(has_label(&h, "Quick start: EfficientNet-Lite0, 19 MB"));
    assert!(has_label(&h, "The lesson's network: VGG-16, 553 MB"));
    assert!(has_label(&h, "Download vgg16") && has_label(&h, "Download vgg19"));
    assert!(has_label(&h, "553 MB"), "sizes are shown");

    // The first download trickles: cancel it part-way.
    h.get_by_label("Download efficientnet-lite0").click();
    wait_for(&mut h, "download progress", |h| {
        has_text(h, "Downloading efficientnet-lite0")
    });
    wait_for(&mut h, "some bytes", |h| has_text(h, "MB of 19 MB"));
    h.get_by_label("Cancel download").click();
    wait_for(&mut h, "the cancel notice", |h| has_text(h, "cancelled"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let leftovers = || std::fs::read_dir(weights.path()).unwrap().count();
    while leftovers() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(leftovers(), 0, "a cancelled download leaves nothing behind");
    assert!(
        has_label(&h, "Download efficientnet-lite0"),
        "the panel offers it again"
    );

    // The quick start completes; the model loads and the bundled photo is analysed.
    h.get_by_label("Quick start: EfficientNet-Lite0, 19 MB")
        .click();
    wait_for(&mut h, "the cat's predictions", |h| {
        has_label(h, "1. Egyptian cat")
    });
    assert!(weights.path().join("efficientnet-lite0.pth").is_file());
    assert_eq!(
        h.state().settings().model.as_deref(),
        Some("efficientnet-lite0")
    );
    assert_eq!(h.state().model().unwrap().name, "efficientnet-lite0");
}

#[test]
fn offline_the_quick_start_says_what_to_do_in_a_message_that_fits_the_window() {
    let weights = tempfile::tempdir().unwrap();
    // A port nothing listens on: the connection is refused, as offline.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let mirror = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    // A weights folder deep enough that its path would run off an 800-px window.
    let deep = weights
        .path()
        .join("a-rather-long-folder-name-for-course-materials/week-3-pretrained-networks");
    let mut h = Harness::builder()
        .with_size([800.0, 600.0])
        .build_eframe(|cc| {
            ExplorerApp::with_settings(
                &cc.egui_ctx,
                cnn_explorer::ui::settings::Settings::default(),
                AppOptions {
                    worker: WorkerConfig {
                        weights_dir: deep.clone(),
                        mirror: Some(mirror),
                        ..WorkerConfig::default()
                    },
                    ..AppOptions::default()
                },
            )
            .unwrap()
        });
    h.run_steps(3);
    h.get_by_label("Quick start: EfficientNet-Lite0, 19 MB")
        .click();
    wait_for(&mut h, "the download's failure", |h| {
        h.state().notice().is_some_and(|n| n.contains("offline"))
    });
    let notice = h.state().notice().unwrap().to_string();
    assert!(notice.contains("press Download again"), "{notice}");
    assert!(
        !notice.contains("error sending request"),
        "no chain of causes: {notice}"
    );
    // Shown wrapped within the window (the path in it elided in the middle), whole on hover.
    let shown = h
        .query_all_by_label_contains("Could not download efficientnet-lite0")
        .next()
        .expect("the message is shown");
    let rect = shown.rect();
    assert!(
        rect.right() <= 800.0,
        "the message ends at x = {}",
        rect.right()
    );
    assert!(
        rect.height() > 20.0,
        "it wraps onto several lines: {rect:?}"
    );
    // A label's text is its accesskit value.
    let label = shown.accesskit_node().value().unwrap_or_default();
    assert!(label.contains('…'), "the long path is elided: {label}");
    assert!(label.ends_with("efficientnet-lite0.pth."), "{label}");
}

#[test]
fn every_tab_says_what_it_shows_and_f1_lists_the_keys() {
    use cnn_explorer::ui::lesson::lesson;
    use cnn_explorer::ui::tab::Tab;
    let mut h = explorer_on_the_cat();
    for tab in Tab::ALL {
        h.get_by_label(tab.label()).click();
        h.run_steps(3);
        assert!(has_label(&h, "What am I seeing?"), "{tab:?}");
        assert!(has_label(&h, lesson(tab)), "{tab:?} explains itself");
    }
    assert!(lesson(Tab::Attack).contains("4/255"));
    assert!(!has_text(&h, "show or hide this list"));
    h.key_press(egui::Key::F1);
    h.run_steps(2);
    assert!(has_text(&h, "show or hide this list"), "F1 opens the keys");
    assert!(has_text(&h, "Explore: back from a channel to all of them"));
    h.key_press(egui::Key::F1);
    h.run_steps(2);
    assert!(!has_text(&h, "show or hide this list"), "and closes them");
}

/// eframe's storage, in memory.
#[derive(Default)]
struct MemoryStorage(std::collections::HashMap<String, String>);

impl eframe::Storage for MemoryStorage {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }
    fn flush(&mut self) {}
}

#[test]
fn the_model_and_device_chosen_in_the_window_are_kept_for_the_next_run() {
    use eframe::App;
    let options = || AppOptions {
        worker: WorkerConfig {
            weights_dir: real_weights_dir(),
            ..WorkerConfig::default()
        },
        ..AppOptions::default()
    };
    let mut h = start(options());
    wait_for(&mut h, "the cat's predictions", |h| {
        has_label(h, "1. Egyptian cat")
    });
    assert_eq!(h.state().settings().device, DeviceChoice::Auto);
    h.get_by_label("Device").click();
    h.run_steps(2);
    h.get_by_label("cpu").click();
    wait_for(&mut h, "the model reloaded on the CPU", |h| {
        h.state().settings().device == DeviceChoice::Cpu
            && !h.state().is_busy()
            && h.state().analysis().is_some()
    });
    let mut storage = MemoryStorage::default();
    h.state_mut().save(&mut storage);
    drop(h);

    // A new run reads the same storage, as eframe does at start.
    let storage: &'static MemoryStorage = Box::leak(Box::new(storage));
    let mut again = Harness::builder()
        .with_size([1400.0, 900.0])
        .build_eframe(|cc| {
            cc.storage = Some(storage);
            ExplorerApp::new(cc, options()).expect("the app starts")
        });
    wait_for(&mut again, "the cat's predictions", |h| {
        has_label(h, "1. Egyptian cat")
    });
    assert_eq!(again.state().settings().device, DeviceChoice::Cpu);
    assert_eq!(
        again.state().settings().model.as_deref(),
        Some("efficientnet-lite0")
    );
    assert_eq!(
        again.get_by_label("Device").value().as_deref(),
        Some("cpu"),
        "the device picker shows the saved choice"
    );
}

#[test]
fn a_model_that_fails_to_load_leaves_the_working_one_in_place() {
    let weights = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::efficientnet_weights(),
        weights.path().join("efficientnet-lite0.pth"),
    )
    .unwrap();
    std::fs::write(
        weights.path().join("vgg16.safetensors"),
        b"not a safetensors file",
    )
    .unwrap();
    let mut h = start(AppOptions {
        worker: WorkerConfig {
            weights_dir: weights.path().to_path_buf(),
            ..WorkerConfig::default()
        },
        model: Some("efficientnet-lite0".into()),
        ..AppOptions::default()
    });
    wait_for(&mut h, "the cat's predictions", |h| {
        has_label(h, "1. Egyptian cat")
    });
    h.get_by_label("Model").click();
    h.run_steps(2);
    h.get_by_label("vgg16").click();
    wait_for(&mut h, "the load error", |h| {
        has_text(h, "Could not load vgg16")
    });
    let notice = h.state().notice().unwrap().to_string();
    assert!(
        notice.contains("vgg16.safetensors"),
        "names the file: {notice}"
    );
    assert!(
        notice.contains("Still using efficientnet-lite0"),
        "{notice}"
    );
    assert_eq!(
        h.state().settings().model.as_deref(),
        Some("efficientnet-lite0")
    );
    assert_eq!(
        h.get_by_label("Model").value().as_deref(),
        Some("efficientnet-lite0")
    );

    // The old model still answers.
    let dir = tempfile::tempdir().unwrap();
    let flipped = dir.path().join("flipped.png");
    image::open(common::cat_photo())
        .unwrap()
        .flipv()
        .save(&flipped)
        .unwrap();
    drop_file(&mut h, &flipped);
    wait_for(&mut h, "the dropped photo", |h| {
        h.state()
            .analysis()
            .is_some_and(|a| a.photo_name == "flipped.png")
    });
}

#[test]
fn dreams_pause_resume_and_stop_and_a_channel_can_be_dreamed_from_the_explorer() {
    let mut h = explorer_on_the_cat();
    h.get_by_label("Dream").click();
    h.run_steps(2);
    h.get_by_role_and_label(egui::accesskit::Role::TextInput, "Class")
        .focus();
    h.run_steps(2);
    h.get_by_role_and_label(egui::accesskit::Role::TextInput, "Class")
        .type_text("zebra");
    h.run_steps(2);
    h.get_by_label("340: zebra").click();
    h.get_by_label("112").click();
    h.run_steps(1);
    h.get_by_label("Start").click();
    wait_for(&mut h, "a few dream steps", |h| {
        h.state().dream_panel().history().len() >= 3
    });
    assert!(h
        .state()
        .dream_panel()
        .image()
        .is_some_and(|i| i.width == 112));
    h.get_by_label("Pause").click();
    h.run_steps(2);
    std::thread::sleep(Duration::from_millis(300));
    h.run_steps(2);
    let paused_at = h.state().dream_panel().history().len();
    std::thread::sleep(Duration::from_millis(600));
    h.run_steps(2);
    assert!(
        h.state().dream_panel().history().len() <= paused_at + 1,
        "no progress while paused"
    );
    h.get_by_label("Resume").click();
    wait_for(&mut h, "progress after resume", |h| {
        h.state().dream_panel().history().len() >= paused_at + 2
    });
    h.get_by_label("Stop").click();
    wait_for(&mut h, "the stopped dream", |h| {
        !h.state().dream_panel().is_running()
    });
    assert!(has_text(&h, "Done:"), "a stopped dream keeps its image");

    // From the explorer: open a channel and dream it.
    h.get_by_label("Explore").click();
    h.run_steps(2);
    h.get_by_label("block3").click();
    h.run_steps(2);
    h.get_by_label("channel 5").click();
    h.run_steps(2);
    h.get_by_label("Dream this channel").click();
    wait_for(&mut h, "the channel dream", |h| {
        h.state().dream_panel().history().len() >= 2
    });
    assert_eq!(h.state().tab(), cnn_explorer::ui::app::Tab::Dream);
    assert!(has_text(&h, "Dreaming channel 5 of block3"));
    h.get_by_label("Stop").click();
    wait_for(&mut h, "the stopped dream", |h| {
        !h.state().dream_panel().is_running()
    });
}

#[test]
fn the_dream_flag_opens_the_dream_tab_and_dreams_once_the_model_is_loaded() {
    let mut h = start(AppOptions {
        dream: true,
        ..real_model_options()
    });
    assert_eq!(h.state().tab(), cnn_explorer::ui::app::Tab::Dream);
    assert!(h.state().dream_panel().is_running(), "waiting to start");
    wait_for(&mut h, "the dream's first steps", |h| {
        h.state().dream_panel().history().len() >= 2
    });
    h.get_by_label("Stop").click();
    wait_for(&mut h, "the stopped dream", |h| {
        !h.state().dream_panel().is_running()
    });
    assert!(h.state().dream_panel().image().is_some());
}

#[test]
fn the_attack_flag_turns_the_cat_into_a_dog_within_4_of_255_and_shows_inside_the_network() {
    let mut h = start(AppOptions {
        attack: true,
        ..real_model_options()
    });
    assert_eq!(h.state().tab(), cnn_explorer::ui::app::Tab::Attack);
    assert!(h.state().attack_panel().is_running(), "waiting to start");
    assert!(has_text(&h, "Chosen: golden retriever (207)"));
    wait_for(&mut h, "the attack's result", |h| {
        h.state().attack_panel().result().is_some()
    });
    let r = h.state().attack_panel().result().unwrap();
    assert!(
        r.success && r.linf <= 4,
        "success {}, L-inf {}",
        r.success,
        r.linf
    );
    assert!(has_text(&h, "Success after"));
    assert!(has_text(&h, "Adversarial: golden retriever"));
    assert!(has_text(&h, "PSNR"));
    // Inside the network: the four Grad-CAMs and one bar per layer, stem to logits.
    assert!(has_text(&h, "Inside the network"));
    assert!(has_text(&h, "Grad-CAM of\nEgyptian cat"));
    assert!(has_text(&h, "Grad-CAM of\ngolden retriever"));
    assert!(has_text(&h, "How much each layer changed"));
    let f = r.fooling.as_ref().expect("a targeted attack's look inside");
    assert_eq!(f.changes.first().map(|c| c.layer.as_str()), Some("stem"));
    assert_eq!(f.changes.last().map(|c| c.layer.as_str()), Some("logits"));
    // The button path: one untargeted FGSM step replaces the result.
    h.get_by_label("FGSM (untargeted)").click();
    wait_for(&mut h, "the FGSM result", |h| {
        h.state()
            .attack_panel()
            .result()
            .is_some_and(|r| r.steps == 1)
    });
}

#[test]
fn a_head_trains_on_a_dropped_folder_with_live_curves_and_serves_the_predictions_panel() {
    let data = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let heads = tempfile::tempdir().unwrap();
    // Two classes drawn alike: the head must confuse them, so the gallery has photos.
    common::shapes::make_dataset(
        data.path(),
        &[("disc", 0), ("square", 1), ("square-too", 1)],
        24,
    );
    let mut h = start(AppOptions {
        worker: WorkerConfig {
            weights_dir: real_weights_dir(),
            feature_cache: Some(cache.path().to_path_buf()),
            ..WorkerConfig::default()
        },
        model: Some("efficientnet-lite0".into()),
        ..AppOptions::default()
    });
    wait_for(&mut h, "the cat's predictions", |h| {
        has_label(h, "1. Egyptian cat")
    });

    // Dropping a folder opens the Train tab on it, with its classes counted.
    drop_file(&mut h, data.path());
    wait_for(&mut h, "the folder's classes", |h| {
        h.state().train_panel().scanned().is_some()
    });
    assert_eq!(h.state().tab(), cnn_explorer::ui::app::Tab::Train);
    assert!(has_text(&h, "74 photos in 3 classes (class folders)"));
    assert!(has_label(&h, "square-too"));
    assert!(has_text(&h, "1 files skipped"), "the empty file");

    // Save into the test's folder.
    let out = heads.path().join("shapes.safetensors");
    h.get_by_role_and_label(egui::accesskit::Role::TextInput, "Save to")
        .focus();
    h.run_steps(1);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.run_steps(1);
    h.get_by_role_and_label(egui::accesskit::Role::TextInput, "Save to")
        .type_text(&format!("{}", out.display()));
    h.run_steps(1);
    // Start and cancel at once: the run stops and says so.
    h.get_by_label("Start training").click();
    wait_for(&mut h, "the Cancel button", |h| has_label(h, "Cancel"));
    h.get_by_label("Cancel").click();
    wait_for(&mut h, "the cancelled run", |h| {
        !h.state().train_panel().is_running()
    });
    assert!(
        h.state().train_panel().status().starts_with("Cancelled"),
        "{}",
        h.state().train_panel().status()
    );

    // Train for real.
    h.get_by_label("Start training").click();
    wait_for(&mut h, "some epochs, live", |h| {
        !h.state().train_panel().epoch_rows().is_empty()
    });
    wait_for(&mut h, "the finished training", |h| {
        h.state().train_panel().report().is_some()
    });
    let report = h.state().train_panel().report().unwrap().clone();
    assert_eq!(report.epochs.len(), 10);
    assert_eq!(report.unreadable.len(), 2, "truncated JPEG and text file");
    assert_eq!(report.classes, ["disc", "square", "square-too"]);
    let disc_right =
        report.confusion[0][0] as f32 / report.confusion[0].iter().sum::<usize>() as f32;
    assert!(disc_right >= 0.99, "discs are easy: {:?}", report.confusion);
    assert_eq!(report.predictions.len(), report.val_count);
    assert_eq!(report.map.len(), report.train_count + report.val_count);
    assert!(has_text(&h, "Dataset map"));
    // The t-SNE map starts by itself, is shown as it forms, and ends with a point per photo;
    // "PCA" switches back.
    wait_for(&mut h, "the t-SNE map", |h| {
        h.state()
            .train_panel()
            .map_view()
            .is_some_and(|m| m.tsne_done())
    });
    {
        let m = h.state().train_panel().map_view().unwrap();
        assert_eq!(m.projection(), Projection::Tsne);
        assert_eq!(m.tsne_points().len(), report.map.len());
    }
    assert!(has_text(&h, "t-SNE done"));
    h.get_by_label("PCA").scroll_to_me();
    h.run_steps(6);
    h.get_by_label("PCA").click();
    h.run_steps(4);
    let m = h.state().train_panel().map_view().unwrap();
    assert_eq!(m.projection(), Projection::Pca);
    let mistakes: Vec<_> = report
        .predictions
        .iter()
        .filter(|p| p.is_mistake())
        .collect();
    assert!(
        !mistakes.is_empty(),
        "the two square classes look alike: {report:?}"
    );
    assert!(out.is_file() && out.with_extension("json").is_file());
    assert!(has_text(&h, "Validation accuracy"));
    assert!(has_label(&h, "confusion matrix"));
    assert!(has_text(&h, "Per class") && has_label(&h, "precision") && has_label(&h, "F1"));
    assert_eq!(h.state().head().map(|h| h.name.as_str()), Some("shapes"));

    // The gallery starts with the top losses, surest mistake first, each with its thumbnail.
    assert!(has_text(&h, "Top losses"));
    let worst = mistakes
        .iter()
        .max_by(|a, b| a.loss().total_cmp(&b.loss()))
        .unwrap();
    let shown = h.state().train_panel().review_shown();
    assert_eq!(shown.len(), mistakes.len().min(60));
    assert_eq!(shown[0].0, worst.path);
    assert!(shown.iter().all(|(_, thumb)| *thumb), "{shown:?}");

    // A click on a confusion cell lists exactly that cell's photos (thumbnails on request).
    let (t, p) = (worst.truth, worst.predicted);
    let matrix = h.get_by_label("confusion matrix").rect();
    let k = report.classes.len() as f32;
    // The cells' side as the heatmap picks it: the width left by the names, 40 at most.
    let cell = ((matrix.width() - 110.0) / k).min(40.0);
    let at = matrix.min
        + egui::vec2(
            110.0 + (p as f32 + 0.5) * cell,
            16.0 + (t as f32 + 0.5) * cell,
        );
    h.hover_at(at);
    for pressed in [true, false] {
        h.event(egui::Event::PointerButton {
            pos: at,
            button: egui::PointerButton::Primary,
            pressed,
            modifiers: egui::Modifiers::default(),
        });
    }
    h.run_steps(2);
    let mut expected: Vec<_> = report
        .predictions
        .iter()
        .filter(|x| x.truth == t && x.predicted == p)
        .map(|x| x.path.clone())
        .collect();
    expected.truncate(60);
    let mut listed: Vec<_> = h
        .state()
        .train_panel()
        .review_shown()
        .into_iter()
        .map(|s| s.0)
        .collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected, "cell ({t}, {p})");
    assert!(has_text(
        &h,
        &format!(
            "True {}, predicted {}",
            report.classes[t], report.classes[p]
        )
    ));
    wait_for(&mut h, "the cell's thumbnails", |h| {
        h.state().train_panel().review_shown().iter().all(|s| s.1)
    });
    h.get_by_label("Show the top losses").click();
    h.run_steps(2);
    assert_eq!(h.state().train_panel().review_shown()[0].0, worst.path);

    // The surest mistake, looked at closely: the head's Grad-CAM for both classes, then it
    // opens in Explore, classified by the head.
    let first = worst;
    let caption = format!(
        "{} {:.0}%\nseen as",
        report.classes[first.truth],
        first.probability(first.truth) * 100.0
    );
    // Below the dataset map: scrolled to first.
    h.query_all_by_label_contains(&caption)
        .next()
        .unwrap()
        .scroll_to_me();
    h.run_steps(3);
    h.query_all_by_label_contains(&caption)
        .next()
        .unwrap()
        .click();
    wait_for(&mut h, "both classes' maps", |h| {
        has_text(h, &format!("true: {} (", report.classes[first.truth]))
            && has_text(
                h,
                &format!("seen as: {} (", report.classes[first.predicted]),
            )
    });
    h.get_by_label("Open in Explore").click();
    wait_for(&mut h, "the mistake in Explore", |h| {
        h.state()
            .analysis()
            .is_some_and(|a| first.path.ends_with(&a.photo_name) && a.head.is_some())
    });
    assert_eq!(h.state().tab(), cnn_explorer::ui::app::Tab::Explore);
    assert!(h.state().shows_head_predictions());
    let top = h.state().analysis().unwrap().head.as_ref().unwrap().top[0].clone();
    assert_eq!(top.label, report.classes[first.predicted]);
    assert!(has_label(&h, &format!("1. {}", top.label)));
    // No save from the window may write over the photo, the head or the weights in use.
    let open = cnn_explorer::ui::widgets::open_files(&h.ctx);
    for file in [
        &first.path,
        &out,
        &out.with_extension("json"),
        &common::efficientnet_weights(),
    ] {
        assert!(
            open.contains(file),
            "{} is not guarded: {open:?}",
            file.display()
        );
    }

    // The switch goes back to ImageNet's classes.
    h.get_by_label("ImageNet").click();
    h.run_steps(2);
    assert!(!h.state().shows_head_predictions());
    assert!(!has_label(&h, &format!("1. {}", top.label)));
}

#[test]
fn backbones_are_compared_on_the_train_tabs_folder_in_a_table_with_charts() {
    let weights = tempfile::tempdir().unwrap();
    // EfficientNet-Lite0 and a random ResNet-18: the window's flow is what is tested.
    common::install_two_models(weights.path());
    let data = tempfile::tempdir().unwrap();
    common::shapes::make_dataset(
        data.path(),
        &[("disc", 0), ("square", 1), ("stripes", 2)],
        8,
    );
    let mut h = start(AppOptions {
        worker: WorkerConfig {
            weights_dir: weights.path().to_path_buf(),
            feature_cache: None,
            ..WorkerConfig::default()
        },
        model: Some("efficientnet-lite0".into()),
        ..AppOptions::default()
    });
    wait_for(&mut h, "the cat's predictions", |h| {
        has_label(h, "1. Egyptian cat")
    });
    drop_file(&mut h, data.path());
    wait_for(&mut h, "the folder's classes", |h| {
        h.state().train_panel().scanned().is_some()
    });
    // Both installed models are ticked.
    assert!(has_label(&h, "efficientnet-lite0") && has_label(&h, "resnet18"));
    h.get_by_label("Compare").click();
    wait_for(&mut h, "the comparison's progress", |h| {
        has_label(h, "Cancel comparison")
    });
    wait_for(&mut h, "the finished comparison", |h| {
        !h.state().train_panel().is_running()
    });
    let rows = h.state().train_panel().comparison().rows().to_vec();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.is_ok()), "{rows:?}");
    let counts = |r: &cnn_explorer::worker::ComparisonRow| {
        r.as_ref().map(|r| (r.train_photos, r.val_photos)).ok()
    };
    assert_eq!(counts(&rows[0]), counts(&rows[1]), "the same split");
    assert!(has_text(&h, "Backbone comparison"));
    assert!(has_label(&h, "Validation accuracy (%)"));
    assert!(has_label(&h, "Feature time per photo (ms)"));
    assert!(has_label(&h, "11.7 M"), "ResNet-18's parameters");
}

#[test]
fn every_tabs_settings_are_saved_and_restored() {
    use cnn_explorer::ui::settings::{AttackSettings, DreamSettings, TrainSettings};
    use eframe::App;
    let weights = tempfile::tempdir().unwrap();
    let options = || AppOptions {
        worker: WorkerConfig {
            weights_dir: weights.path().to_path_buf(),
            ..WorkerConfig::default()
        },
        ..AppOptions::default()
    };
    let mut chosen = Settings::default();
    chosen.explore.tile_size = 128.0;
    chosen.dream = DreamSettings {
        size: 112,
        steps: 50,
        ..DreamSettings::default()
    };
    chosen.attack = AttackSettings {
        eps: 8.0,
        target: Some(1),
        ..AttackSettings::default()
    };
    chosen.train = TrainSettings {
        hidden: 64,
        ..TrainSettings::default()
    };
    chosen.train.head.epochs = 3;
    chosen.train.head.mlp_hidden = Some(64);
    let mut h = Harness::builder()
        .with_size([1400.0, 900.0])
        .build_eframe(|cc| {
            ExplorerApp::with_settings(&cc.egui_ctx, chosen.clone(), options())
                .expect("the app starts")
        });
    h.run_steps(2);
    assert_eq!(
        h.state().settings(),
        chosen,
        "each tab starts from its saved settings"
    );
    let mut storage = MemoryStorage::default();
    h.state_mut().save(&mut storage);
    drop(h);
    let storage: &'static MemoryStorage = Box::leak(Box::new(storage));
    let again = Harness::builder()
        .with_size([1400.0, 900.0])
        .build_eframe(|cc| {
            cc.storage = Some(storage);
            ExplorerApp::new(cc, options()).expect("the app starts")
        });
    assert_eq!(again.state().settings(), chosen, "and finds them again");
}

/// A Save from the window over the photo it shows is refused with a message, and the photo
/// is kept (the window's saves are checked against the files it has open).
#[test]
fn saving_over_the_photo_shown_is_refused() {
    let weights = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("v.png");
    std::fs::copy(common::cat_photo(), &photo).unwrap();
    let before = std::fs::read(&photo).unwrap();
    let mut h = start(AppOptions {
        worker: WorkerConfig {
            weights_dir: weights.path().to_path_buf(),
            ..WorkerConfig::default()
        },
        photo: Some(photo.clone()),
        ..AppOptions::default()
    });
    h.run_steps(2);
    let open = cnn_explorer::ui::widgets::open_files(&h.ctx);
    assert_eq!(open.as_slice(), std::slice::from_ref(&photo));
    let image = cnn_explorer::worker::RgbaImage {
        width: 1,
        height: 1,
        rgba: vec![0, 0, 0, 255],
    };
    let err = cnn_explorer::ui::widgets::save_png(&image, &photo, &open).unwrap_err();
    assert!(err.contains("is a file open in the window"), "{err}");
    assert_eq!(std::fs::read(&photo).unwrap(), before);
}

/// The window on the cat with small gallery dreams (32 px, 2 steps: the flow, not the
/// pictures, is under test) cached in `cache`.
fn gallery_window(cache: &Path, gallery_at_start: bool) -> Harness<'static, ExplorerApp> {
    let mut settings = Settings::default();
    settings.explore.gallery_size = 32;
    settings.explore.gallery_steps = 2;
    let options = AppOptions {
        worker: WorkerConfig {
            weights_dir: real_weights_dir(),
            gallery_cache: Some(cache.to_path_buf()),
            ..WorkerConfig::default()
        },
        model: Some("efficientnet-lite0".into()),
        gallery: gallery_at_start,
        ..AppOptions::default()
    };
    Harness::builder()
        .with_size([1400.0, 900.0])
        .build_eframe(|cc| {
            ExplorerApp::with_settings(&cc.egui_ctx, settings, options).expect("the app starts")
        })
}

#[test]
fn a_layer_gallery_is_dreamed_in_the_background_and_shown_beside_a_channel() {
    let cache = tempfile::tempdir().unwrap();
    let mut h = gallery_window(cache.path(), false);
    wait_for(&mut h, "the cat's predictions", |h| {
        has_label(h, "1. Egyptian cat")
    });
    assert!(has_text(&h, "stem: 32 channels of 112×112"));
    h.get_by_label("Dream gallery").click();
    wait_for(&mut h, "the gallery's progress and Cancel", |h| {
        has_label(h, "Cancel") || has_text(h, "32 channels: 32 dreamed")
    });
    wait_for(&mut h, "the whole gallery", |h| {
        has_text(h, "32 channels: 32 dreamed, 0 from the cache")
    });
    assert!(has_label(&h, "dream of channel 0") && has_label(&h, "dream of channel 31"));
    assert!(
        !has_label(&h, "channel 0"),
        "the dreams stand in for the maps"
    );

    // A dream opens its channel: the map over the photo and the dream side by side.
    h.get_by_label("dream of channel 3").click();
    wait_for(&mut h, "channel 3 opened", |h| {
        has_text(h, "Channel 3 of 32")
    });
    assert!(has_label(&h, "channel 3 over the photo") && has_label(&h, "dream of channel 3"));

    // Back to the grid, the feature maps again; a second gallery comes from the cache.
    h.key_press(egui::Key::Escape);
    wait_for(&mut h, "the grid", |h| has_label(h, "Feature maps"));
    h.get_by_label("Feature maps").click();
    wait_for(&mut h, "the feature maps", |h| has_label(h, "channel 0"));
    h.get_by_label("Dream gallery").click();
    wait_for(&mut h, "the cached gallery", |h| {
        has_text(h, "32 channels: 0 dreamed, 32 from the cache")
    });
}

#[test]
fn the_gallery_asked_for_at_start_dreams_the_first_layer_shown() {
    let cache = tempfile::tempdir().unwrap();
    let mut h = gallery_window(cache.path(), true);
    wait_for(&mut h, "the stem's gallery without a click", |h| {
        has_text(h, "32 channels: 32 dreamed, 0 from the cache")
    });
    assert!(has_label(&h, "dream of channel 31"));
}

/// The class button "NAME NN%" of "Where it looks".
#[test]
fn a_channels_dataset_examples_come_from_the_train_folder_and_open_their_photo() {
    let data = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    common::shapes::make_dataset(
        data.path(),
        &[("disc", 0), ("square", 1), ("square-too", 1)],
        4,
    );
    let mut h = start(AppOptions {
        worker: WorkerConfig {
            weights_dir: real_weights_dir(),
            examples_cache: Some(cache.path().to_path_buf()),
            ..WorkerConfig::default()
        },
        model: Some("efficientnet-lite0".into()),
        ..AppOptions::default()
    });
    wait_for(&mut h, "the cat's predictions", |h| {
        has_label(h, "1. Egyptian cat")
    });
    // Before any folder: the strip says where examples come from.
    h.get_by_label("channel 5").click();
    wait_for(&mut h, "channel 5 opened", |h| {
        has_text(h, "Channel 5 of 32")
    });
    assert!(has_label(&h, "Choose folder…"));
    assert!(has_text(&h, "Pick a folder of photos"));

    // The Train tab's folder, once read, is offered in Explore.
    drop_file(&mut h, data.path());
    wait_for(&mut h, "the folder's classes", |h| {
        h.state().train_panel().scanned().is_some()
    });
    h.get_by_label("Explore").click();
    wait_for(&mut h, "channel 5 again", |h| {
        has_text(h, "Channel 5 of 32")
    });
    let name = data
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    h.get_by_label(&format!("Find them in {name}")).click();
    wait_for(&mut h, "the examples", |h| {
        has_label_prefix(h, "example 7: ")
    });
    assert!(has_text(&h, "that excite channel 5 most"));
    assert!(has_text(&h, "what one cell of stem sees (3 px"));
    // The next channel's are there at once (the whole layer was searched).
    h.key_press(egui::Key::ArrowRight);
    wait_for(&mut h, "channel 6's examples", |h| {
        has_text(h, "that excite channel 6 most")
    });

    // Clicking one opens its photo in Explore.
    let label = h
        .query_all_by_label_contains("example 0: ")
        .next()
        .and_then(|n| n.accesskit_node().label())
        .expect("a first example");
    let photo = label.trim_start_matches("example 0: ").to_string();
    h.get_by_label(&label).click();
    wait_for(&mut h, "the example's photo", |h| {
        h.state().analysis().is_some_and(|a| a.photo_name == photo)
    });
}

fn has_label_prefix(h: &Harness<'static, ExplorerApp>, prefix: &str) -> bool {
    h.query_all_by_label_contains(prefix).next().is_some()
}

fn class_button<'t>(h: &'t Harness<'static, ExplorerApp>, name: &'t str) -> egui_kittest::Node<'t> {
    h.query_all(egui_kittest::kittest::by().predicate(move |n| {
        n.label()
            .is_some_and(|l| l.starts_with(&format!("{name} ")) && l.ends_with('%'))
    }))
    .next()
    .unwrap_or_else(|| panic!("no class button for {name}"))
}

#[test]
fn where_it_looks_maps_the_top_class_then_another_and_all_methods_can_be_cancelled() {
    let mut h = explorer_on_the_cat();
    h.get_by_label("Where it looks").click();
    wait_for(&mut h, "the top class's Grad-CAM", |h| {
        has_text(h, "Grad-CAM of “Egyptian cat”")
    });
    assert!(has_text(&h, "Deletion") && has_text(&h, "Insertion"));
    assert!(
        has_text(&h, "layer head, 7×7 map"),
        "the last convolutional layer"
    );

    // Another class of the top five: its map replaces the first.
    class_button(&h, "tabby").click();
    wait_for(&mut h, "tabby's Grad-CAM", |h| {
        has_text(h, "Grad-CAM of “tabby”")
    });

    // All methods side by side; cancelled, the unfinished ones say so and nothing runs.
    h.get_by_label("Compare all methods").click();
    h.step();
    assert!(has_label(&h, "Cancel"));
    h.get_by_label("Cancel").click();
    wait_for(&mut h, "the cancel", |h| !has_label(h, "Cancel"));
    assert!(has_text(&h, "not computed (cancelled)"));
    assert!(
        has_text(&h, "Grad-CAM of “tabby”"),
        "the single map stays shown"
    );
}
