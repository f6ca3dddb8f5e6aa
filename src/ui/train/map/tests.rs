//! The map's controls and legend, drawn alone: Stop keeps the epoch reached and Compute
//! starts a fresh job; the legend names every class (37 of them) and brings one forward.

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;

use super::*;
use crate::ui::command::{AppCommand, JobIds};

/// `n` points spread over `classes` classes, every fifth a validation mistake.
fn points(n: usize, classes: usize) -> Vec<MapPoint> {
    (0..n)
        .map(|i| MapPoint {
            path: PathBuf::from(format!("photo{i}.png")),
            truth: i % classes,
            xy: [i as f32, (i * 7 % 13) as f32],
            predicted: (i % 5 == 0).then_some((i + 1) % classes),
        })
        .collect()
}

struct State {
    view: MapView,
    ids: JobIds,
    sent: Vec<AppCommand>,
}

/// The t-SNE jobs among `sent`, with their cancel tokens.
fn tsne_jobs(sent: &[AppCommand]) -> Vec<(JobId, CancelToken)> {
    sent.iter()
        .filter_map(|c| match c {
            AppCommand::Worker(Command::Tsne { job, cancel, .. }) => Some((*job, cancel.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn stopping_the_tsne_keeps_the_epoch_reached_and_it_can_be_computed_again() {
    let pts = points(40, 3);
    let ids = JobIds::default();
    let mut commands = Commands::new(ids.clone());
    let view = MapView::new(&pts, &mut commands);
    let sent = commands.into_queue();
    let jobs = tsne_jobs(&sent);
    let [(job, cancel)] = &jobs[..] else {
        panic!("one t-SNE job at start, got {sent:?}");
    };
    let (job, cancel) = (*job, cancel.clone());
    let mut h = Harness::new_ui_state(
        |ui, s: &mut State| {
            let mut commands = Commands::new(s.ids.clone());
            s.view.controls(ui, &mut commands);
            s.sent.extend(commands.into_queue());
        },
        State {
            view,
            ids,
            sent: Vec::new(),
        },
    );
    let formed: Vec<[f32; 2]> = (0..40).map(|i| [i as f32, 1.0]).collect();
    h.state_mut().view.on_event(Event::TsneProgress {
        job,
        epoch: 250,
        epochs: 1000,
        points: formed.clone(),
    });
    h.run();
    assert!(h.query_by_label("t-SNE epoch 250/1000").is_some());
    h.get_by_label("Stop").click();
    h.run();
    assert!(cancel.is_cancelled(), "Stop cancels the job");
    assert!(h.query_by_label("Stop").is_none());
    assert!(h.query_by_label("stopping...").is_some());

    h.state_mut().view.on_event(Event::Cancelled { job });
    h.run();
    assert!(h
        .query_by_label("t-SNE stopped at epoch 250/1000")
        .is_some());
    let view = &h.state().view;
    assert_eq!(
        view.projection(),
        Projection::Tsne,
        "the partial map stays shown"
    );
    assert_eq!(view.tsne_points(), formed.as_slice());
    assert!(view.tsne_progress().is_none() && !view.tsne_done());

    h.get_by_label("Compute t-SNE again").click();
    h.run();
    let again = tsne_jobs(&h.state().sent);
    assert_eq!(again.len(), 1, "one fresh job");
    assert!(again[0].0 > job && !again[0].1.is_cancelled());
    assert_eq!(
        h.state().view.tsne_progress(),
        Some((0, TsneOptions::default().epochs))
    );
    // The old job's late answers are not taken for the new one's.
    assert!(!h.state().view.owns(job) && h.state().view.owns(again[0].0));
}

#[test]
fn the_legend_names_all_37_classes_and_a_click_brings_one_forward() {
    let classes: Vec<String> = (0..37).map(|c| format!("breed{c}")).collect();
    let pts = points(111, 37);
    let mut commands = Commands::new(JobIds::default());
    let view = MapView::new(&pts, &mut commands);
    let mut h = Harness::builder()
        .with_size(egui::vec2(1000.0, 700.0))
        .build_ui_state(
            |ui, view: &mut MapView| {
                let mut commands = Commands::new(JobIds::default());
                dataset_map(ui, view, &classes, &pts, &HashMap::new(), &mut commands);
            },
            view,
        );
    h.run();
    for c in 0..37 {
        assert!(
            h.query_by_label(&format!("breed{c} (3)")).is_some(),
            "class {c} in the legend"
        );
    }
    h.get_by_label("breed20 (3)").click();
    h.run();
    assert_eq!(h.state().picked, Some(20));
    h.get_by_label("breed20 (3)").click();
    h.run();
    assert_eq!(h.state().picked, None, "a second click clears it");
}
