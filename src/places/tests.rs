use super::*;

fn conventional(root: &str) -> Conventional {
    let root = Path::new(root);
    Conventional {
        local_data: root.join("local"),
        data: root.join("roaming"),
        cache: root.join("cache"),
    }
}

fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| OsString::from(v))
    }
}

#[test]
fn without_overrides_every_place_is_the_os_convention() {
    let c = conventional("home");
    let places = Places::resolve(env(&[]), &c, None);
    assert_eq!(places.weights, c.local_data.join("weights"));
    assert_eq!(places.heads, c.data.join("heads"));
    assert_eq!(places.cache, c.cache);
    assert_eq!(places.settings, c.data.join("app.ron"));
    assert_eq!(places.features_cache(), c.cache.join("features"));
    assert_eq!(places.gallery_cache(), c.cache.join("gallery"));
    assert_eq!(places.examples_cache(), c.cache.join("examples"));
}

#[test]
fn each_override_moves_its_place_only() {
    let c = conventional("home");
    let places = Places::resolve(
        env(&[(WEIGHTS_VAR, "w"), (HEADS_VAR, "h")]),
        &c,
        Some(Path::new("checkout/weights")),
    );
    assert_eq!(
        places.weights,
        Path::new("w"),
        "the override beats the checkout"
    );
    assert_eq!(places.heads, Path::new("h"));
    assert_eq!(places.cache, c.cache);
    let places = Places::resolve(env(&[(CACHE_VAR, "c"), (STATE_VAR, "s")]), &c, None);
    assert_eq!(places.weights, c.local_data.join("weights"));
    assert_eq!(places.features_cache(), Path::new("c").join("features"));
    assert_eq!(places.settings, Path::new("s").join("app.ron"));
}

#[test]
fn an_empty_override_counts_as_unset() {
    let c = conventional("home");
    let empty = [
        (WEIGHTS_VAR, ""),
        (HEADS_VAR, ""),
        (CACHE_VAR, ""),
        (STATE_VAR, ""),
    ];
    assert_eq!(
        Places::resolve(env(&empty), &c, None),
        Places::resolve(env(&[]), &c, None)
    );
}

#[test]
fn the_checkout_weights_folder_is_used_when_nothing_overrides_it() {
    let c = conventional("home");
    let places = Places::resolve(env(&[]), &c, Some(Path::new("checkout/weights")));
    assert_eq!(places.weights, Path::new("checkout/weights"));
    assert_eq!(
        places.heads,
        c.data.join("heads"),
        "heads stay the user's own"
    );
}

#[test]
fn this_test_binary_counts_as_a_checkout_build_unless_cross_built() {
    // `cargo test` runs it from target/, and the repository has a weights/ folder.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    if manifest.is_absolute() {
        assert_eq!(checkout_weights(), Some(manifest.join("weights")));
    } else {
        // Built on Linux for Windows (run under Wine): `/work/...` names no drive there.
        assert_eq!(checkout_weights(), None);
    }
}

/// Non-ASCII user names and folders are kept as they are (no lossy conversion on the way).
#[test]
fn non_ascii_folders_survive() {
    let c = conventional("Zoë Ødegård/Документы");
    let places = Places::resolve(env(&[(HEADS_VAR, "kopf-köpfe")]), &c, None);
    assert!(places.weights.starts_with("Zoë Ødegård/Документы"));
    assert_eq!(places.heads, Path::new("kopf-köpfe"));
    assert_eq!(
        places.settings.file_name().and_then(|n| n.to_str()),
        Some("app.ron")
    );
}

#[cfg(target_os = "linux")]
#[test]
fn linux_follows_xdg_and_home() {
    let c = Conventional::of_this_os().expect("a home folder");
    let home = std::env::var_os("HOME").map(PathBuf::from).expect("HOME");
    let xdg = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| home.join(default))
    };
    assert_eq!(c.data, xdg("XDG_DATA_HOME", ".local/share").join(APP));
    assert_eq!(c.local_data, c.data);
    assert_eq!(c.cache, xdg("XDG_CACHE_HOME", ".cache").join(APP));
}

/// Where eframe kept the settings before: the same file, so a user's settings carry over.
#[cfg(any(target_os = "linux", target_os = "windows", target_os = "macos"))]
#[test]
fn settings_stay_where_eframe_kept_them() {
    let c = Conventional::of_this_os().expect("a home folder");
    let places = Places::resolve(env(&[]), &c, None);
    assert_eq!(
        Some(places.settings),
        eframe::storage_dir(APP).map(|d| d.join("app.ron"))
    );
}

#[cfg(target_os = "windows")]
#[test]
fn windows_uses_appdata_and_localappdata() {
    let c = Conventional::of_this_os().expect("a user profile");
    let local = std::env::var_os("LOCALAPPDATA")
        .map(PathBuf::from)
        .expect("LOCALAPPDATA");
    let roaming = std::env::var_os("APPDATA")
        .map(PathBuf::from)
        .expect("APPDATA");
    assert_eq!(c.local_data, local.join(APP).join("data"));
    assert_eq!(c.data, roaming.join(APP).join("data"));
    assert_eq!(c.cache, local.join(APP).join("cache"));
    let shown = Places::resolve(env(&[]), &c, None)
        .weights
        .display()
        .to_string();
    assert!(!shown.contains('/'), "{shown} mixes separators");
    assert!(shown.ends_with(r"\cnn-explorer\data\weights"), "{shown}");
}

#[cfg(target_os = "windows")]
#[test]
fn windows_drive_letters_and_unc_overrides_are_kept_whole() {
    let c = Conventional::of_this_os().expect("a user profile");
    for dir in [r"D:\models", r"\\server\share\models", r"\\?\C:\very\long"] {
        let places = Places::resolve(env(&[(WEIGHTS_VAR, dir)]), &c, None);
        assert_eq!(places.weights, Path::new(dir));
        let file = places.weights.join("efficientnet-lite0.pth");
        assert_eq!(
            file.display().to_string(),
            format!(r"{dir}\efficientnet-lite0.pth")
        );
    }
}

#[cfg(target_os = "macos")]
#[test]
fn macos_uses_application_support_and_caches() {
    let c = Conventional::of_this_os().expect("a home folder");
    let home = std::env::var_os("HOME").map(PathBuf::from).expect("HOME");
    assert_eq!(c.data, home.join("Library/Application Support").join(APP));
    assert_eq!(c.local_data, c.data);
    assert_eq!(c.cache, home.join("Library/Caches").join(APP));
}
