//! The lesson inside the app: each tab's "What am I seeing?" (a few plain sentences about what
//! is on screen, collapsible, open until closed) and the keys overlay (F1 or ?).

use eframe::egui;

use super::tab::Tab;

/// What `tab` shows, in plain words.
pub fn lesson(tab: Tab) -> &'static str {
    match tab {
        Tab::Explore => {
            "Each tile is one channel of the chosen layer: a map of where in the photo that \
             channel responds (yellow strong, dark weak). Early layers respond to edges, colours \
             and simple textures; deeper ones to parts (an eye, fur, a wheel) and whole objects, \
             and the last layer's scores are the predictions on the right. Open a channel and \
             hover its map: the box on the photo is what that one cell sees (its receptive \
             field), and it grows layer by layer."
        }
        Tab::Dream => {
            "A dream is the picture the network likes most for a class (or a channel): starting \
             from noise, the image is changed step by step to raise that score. Small random \
             shifts, scales and rotations at each step keep it from cheating with pixel noise, \
             and the total-variation slider smooths it. What you see is what the network has \
             learnt to look for, not a photo it has seen."
        }
        Tab::Attack => {
            "A perturbation is a small change to every pixel, here at most 4/255 of the range: \
             invisible to you, but chosen with the network's own gradients to raise the target \
             class, and decisive for the network. The amplified difference shows what changed; \
             the look inside shows the small change at the input growing layer by layer until \
             the network sees another class."
        }
        Tab::Train => {
            "Transfer learning: the pretrained network, frozen, turns each photo into a feature \
             vector (its last layer, pooled), and a new head learns your classes on those \
             features alone. That is why a few dozen photos per class are enough and training \
             takes seconds. The dataset map shows the features in 2-D: classes that lie apart \
             are easy for the head; the confusion matrix and the mistakes show where it errs."
        }
    }
}

/// The tab's "What am I seeing?", collapsible (egui remembers it per tab, open at first).
pub fn what_am_i_seeing(ui: &mut egui::Ui, tab: Tab) {
    egui::CollapsingHeader::new("What am I seeing?")
        .id_salt(("lesson", tab.label()))
        .default_open(true)
        .show(ui, |ui| {
            ui.add(egui::Label::new(lesson(tab)).wrap());
        });
}

/// The keys, for the help overlay: (keys, what they do).
pub const KEYS: [(&str, &str); 8] = [
    ("F1 or ?", "show or hide this list"),
    ("Ctrl+V", "paste a photo, or a path to one"),
    ("drop a file", "open a photo; drop a folder to train on it"),
    ("Up / Down", "Explore: the previous or next layer"),
    ("Left / Right", "Explore: the previous or next channel"),
    ("Esc", "Explore: back from a channel to all of them"),
    (
        "ctrl + scroll, drag",
        "Train: zoom and move the dataset map",
    ),
    ("double-click", "Train: reset the dataset map's zoom"),
];

/// Toggles the overlay on F1 or ? (when no text field has the keyboard) and draws it.
pub fn help_overlay(ctx: &egui::Context, open: &mut bool) {
    let pressed = !ctx.egui_wants_keyboard_input()
        && ctx.input(|i| {
            i.key_pressed(egui::Key::F1)
                || i.events
                    .iter()
                    .any(|e| matches!(e, egui::Event::Text(t) if t == "?"))
        });
    if pressed {
        *open = !*open;
    }
    egui::Window::new("Keys")
        .open(open)
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, egui::vec2(0.0, 0.0))
        .show(ctx, |ui| {
            egui::Grid::new("keys")
                .num_columns(2)
                .spacing([24.0, 6.0])
                .show(ui, |ui| {
                    for (keys, what) in KEYS {
                        ui.strong(keys);
                        ui.label(what);
                        ui.end_row();
                    }
                });
        });
}
