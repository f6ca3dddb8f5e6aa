//! The attack's flows. Through the binary: the attack goes on to the confidence asked for and
//! its JSON says whether it got there, with the probability and the steps; a bad confidence is
//! refused with its range; and an output that cannot be written is refused before any step
//! runs (a missing folder, a path naming a folder, the photo a dream starts from). In the
//! window (headless): the Attack tab shows the photo and its top class before any attack.

mod common;

use std::path::Path;
use std::process::Output;

use cnn_explorer::ui::AppOptions;
use common::run::stderr;
use common::window::{real_model_options, start, wait_for};
use egui_kittest::kittest::Queryable;

/// The binary with the real EfficientNet-Lite0's folder as its weights folder.
fn cnn_explorer(args: &[&str]) -> Output {
    let weights = common::window::real_weights_dir();
    common::run::cnn_explorer_with(
        args,
        &[("CNN_EXPLORER_WEIGHTS_DIR", weights.to_str().unwrap())],
    )
}

fn json(o: &Output) -> serde_json::Value {
    let out = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "should fail; stderr: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    assert!(err.contains(needle), "stderr should name {needle:?}: {err}");
}

fn attack(out: &Path, extra: &[&str]) -> Output {
    let cat = common::cat_photo();
    let args = [
        &[
            "attack",
            cat.to_str().unwrap(),
            "--target",
            "golden retriever",
            "--model",
            "efficientnet-lite0",
            "--json",
            "-o",
            out.to_str().unwrap(),
        ][..],
        extra,
    ]
    .concat();
    cnn_explorer(&args)
}

#[test]
fn the_attack_reports_whether_it_reached_the_confidence() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dog.png");
    let o = attack(&out, &["--steps", "40"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let row = json(&o);
    assert_eq!(row["confidence"].as_f64().unwrap() as f32, 0.9);
    assert_eq!(row["confidence_reached"], true);
    assert_eq!(row["top_label"], "golden retriever");
    assert!(row["prob"].as_f64().unwrap() >= 0.9, "{row}");
    let steps = row["steps"].as_u64().unwrap();
    assert!((1..=40).contains(&steps), "{row}");
    assert_eq!(
        (row["width"].clone(), row["height"].clone()),
        (451.into(), 300.into())
    );
    assert_eq!(image::image_dimensions(&out).unwrap(), (451, 300));

    // One step cannot reach 99%: a failure that says so, and the JSON has the probability.
    let o = attack(&out, &["--steps", "1", "--confidence", "0.99"]);
    assert_clean_failure(&o, "not reached");
    let row = json(&o);
    assert_eq!(row["confidence_reached"], false);
    assert_eq!(row["steps"], 1);
    let prob = row["prob"].as_f64().unwrap();
    assert!((0.0..0.99).contains(&prob), "{row}");
    assert!(
        stderr(&o).contains(&format!("{:.1}%", prob * 100.0)),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_confidence_outside_0_to_1_is_refused_with_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.png");
    for bad in ["0", "1.5", "NaN", "-0.2"] {
        let o = attack(&out, &[&format!("--confidence={bad}")]);
        assert_clean_failure(&o, "0 to 1");
        assert!(!out.exists());
    }
}

/// Each of these outputs used to fail only after every step had run (or, for the photo a
/// dream starts from, to be overwritten by the dream).
#[test]
fn unwritable_outputs_are_refused_before_any_step() {
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("cat.png");
    std::fs::copy(common::cat_photo(), &photo).unwrap();
    let before = std::fs::read(&photo).unwrap();
    let photo_arg = photo.to_str().unwrap();
    let missing = dir.path().join("no-such-folder").join("x.png");
    let missing_arg = missing.to_str().unwrap();
    let folder_slash = format!("{}/", dir.path().join("new-folder").display());
    let dream = |extra: &[&str]| {
        let args = [
            &[
                "dream",
                "--class",
                "zebra",
                "--steps",
                "30",
                "--size",
                "64",
                "--model",
                "efficientnet-lite0",
            ][..],
            extra,
        ]
        .concat();
        cnn_explorer(&args)
    };
    let cases = [
        (dream(&["-o", missing_arg]), "does not exist"),
        (dream(&["-o", &folder_slash]), "names a folder"),
        (
            dream(&["--from", photo_arg, "-o", photo_arg]),
            "is an input",
        ),
        (
            cnn_explorer(&[
                "attack",
                photo_arg,
                "--target",
                "207",
                "--model",
                "efficientnet-lite0",
                "-o",
                missing_arg,
            ]),
            "does not exist",
        ),
    ];
    for (o, needle) in &cases {
        assert_clean_failure(o, needle);
        assert!(
            !stderr(o).contains("step "),
            "steps ran first: {}",
            stderr(o)
        );
    }
    assert_eq!(std::fs::read(&photo).unwrap(), before, "the photo changed");
    assert!(!Path::new(&folder_slash).exists());
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "only the photo is left: {left:?}");
}

#[test]
fn the_attack_tab_shows_the_photo_and_its_top_class_before_any_attack() {
    let mut h = start(AppOptions {
        tab: cnn_explorer::ui::app::Tab::Attack,
        ..real_model_options()
    });
    wait_for(&mut h, "the preview", |h| {
        h.state().attack_panel().preview_top().is_some()
    });
    let top = h.state().attack_panel().preview_top().unwrap().clone();
    assert_eq!(top.label, "Egyptian cat");
    let shown = format!("Egyptian cat ({:.1}%)", top.prob * 100.0);
    assert!(
        h.query_all_by_label_contains(&shown).next().is_some(),
        "{shown} is not shown"
    );
    assert!(h
        .query_all_by_label_contains("chelsea.png")
        .next()
        .is_some());
    assert!(h.state().attack_panel().result().is_none());
}
