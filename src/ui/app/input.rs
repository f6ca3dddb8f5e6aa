//! Photos arriving from outside the panels: the "Open…" dialog, files and folders dropped on
//! the window (a folder is a training set), and pasted images or paths.

use std::path::PathBuf;

use eframe::egui::{self, Color32};

use super::ExplorerApp;
use crate::ui::command::{AppCommand, Notice, NoticeKind};
use crate::ui::widgets::PendingPick;
use crate::worker::PhotoSource;

impl ExplorerApp {
    /// Opens the native "Open a photo" dialog (unless it is open).
    pub(super) fn open_photo_dialog(&mut self, ctx: &egui::Context) {
        if self.open_dialog.is_some() {
            return;
        }
        let folder = self.last_folder.clone();
        let pick = move || {
            let mut dialog = rfd::FileDialog::new().set_title("Open a photo").add_filter(
                "Images",
                &["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"],
            );
            if let Some(folder) = folder {
                dialog = dialog.set_directory(folder);
            }
            dialog.pick_file()
        };
        match PendingPick::start(ctx, pick) {
            Ok(pending) => self.open_dialog = Some(pending),
            Err(e) => self.notice = Some(Notice::new(NoticeKind::Input, capitalised(&e))),
        }
    }

    /// Opens the photo picked in the dialog, once it is closed.
    pub(super) fn poll_open_dialog(&mut self, ctx: &egui::Context) {
        match PendingPick::poll_slot(&mut self.open_dialog) {
            None | Some(Ok(None)) => {}
            Some(Ok(Some(path))) => {
                self.last_folder = path.parent().map(|p| p.to_path_buf());
                self.apply_all(ctx, vec![AppCommand::OpenPhoto(PhotoSource::File(path))]);
            }
            Some(Err(e)) => {
                self.notice = Some(Notice::new(
                    NoticeKind::Input,
                    format!("{}.", capitalised(&e)),
                ));
            }
        }
    }

    /// Dropped files and pasted images or paths.
    pub(super) fn handle_input(&mut self, ctx: &egui::Context) {
        let (dropped, events) = ctx.input(|i| (i.raw.dropped_files.clone(), i.events.clone()));
        let mut commands = Vec::new();
        let mut notice = |text: String| {
            commands.push(AppCommand::Notify(Notice::new(NoticeKind::Input, text)));
        };
        let mut opened = Vec::new();
        if let Some(file) = dropped.first() {
            let path = file.path().to_path_buf();
            if dropped.len() > 1 {
                notice(format!(
                    "{} files were dropped: showing the first, {}.",
                    dropped.len(),
                    path.display()
                ));
            }
            if path.is_file() {
                opened.push(AppCommand::OpenPhoto(PhotoSource::File(path)));
            } else if path.is_dir() {
                // A folder is a training set.
                opened.push(AppCommand::TrainOnFolder(path));
            } else {
                // No usable path (e.g. a sandboxed drop): read the bytes instead.
                match file.bytes() {
                    Ok(bytes) => opened.push(AppCommand::OpenPhoto(PhotoSource::Encoded {
                        name: path.display().to_string(),
                        bytes: bytes.into(),
                    })),
                    Err(e) => opened.push(AppCommand::Notify(Notice::new(
                        NoticeKind::PhotoFailed,
                        format!("Could not open {}: {e}", path.display()),
                    ))),
                }
            }
        }
        for event in events {
            match event {
                egui::Event::PasteImage(image) => {
                    let rgba: Vec<u8> = image
                        .pixels
                        .iter()
                        .flat_map(|c| c.to_srgba_unmultiplied())
                        .collect();
                    opened.push(AppCommand::OpenPhoto(PhotoSource::Pixels {
                        name: "pasted image".into(),
                        width: image.size[0],
                        height: image.size[1],
                        rgba: rgba.into(),
                    }));
                }
                egui::Event::Paste(text) if !ctx.egui_wants_keyboard_input() => {
                    let text = text.trim();
                    let path = PathBuf::from(text.strip_prefix("file://").unwrap_or(text));
                    if path.is_file() {
                        opened.push(AppCommand::OpenPhoto(PhotoSource::File(path)));
                    } else {
                        opened.push(AppCommand::Notify(Notice::new(
                            NoticeKind::Input,
                            "The clipboard holds neither an image nor the path of a file.",
                        )));
                    }
                }
                _ => {}
            }
        }
        commands.extend(opened);
        self.apply_all(ctx, commands);
    }
}

/// "cannot open the file dialog: …" as the start of a sentence.
fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// While files are dragged over the window: a veil that says what dropping does.
pub(super) fn drop_highlight(ctx: &egui::Context) {
    let hovering = ctx.input(|i| !i.raw.hovered_files.is_empty());
    if !hovering {
        return;
    }
    let painter = ctx.layer_painter(egui::LayerId::new(
        egui::Order::Foreground,
        egui::Id::unique("drop"),
    ));
    let rect = ctx.content_rect().shrink(6.0);
    painter.rect_filled(rect, 12.0, Color32::from_black_alpha(160));
    painter.rect_stroke(
        rect,
        12.0,
        egui::Stroke::new(3.0, ctx.global_style().visuals.selection.bg_fill),
        egui::StrokeKind::Inside,
    );
    painter.text(
        rect.center(),
        egui::Align2::CENTER_CENTER,
        "Drop the photo to see what the network makes of it",
        egui::FontId::proportional(24.0),
        Color32::WHITE,
    );
}
