//! Tests of folder scans: layouts, links, shared files, odd names.

use super::*;

fn touch(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn class_folders_with_bad_files_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let pets = dir.path().join("PetImages");
    touch(&pets.join("Cat/1.jpg"), b"x");
    touch(&pets.join("Cat/2.jpg"), b"");
    touch(&pets.join("Cat/Thumbs.db"), b"x");
    touch(&pets.join("Dog/a/3.png"), b"x");
    touch(&pets.join("Dog/.hidden.jpg"), b"x");
    let d = scan(dir.path(), ScanOptions::default()).unwrap();
    assert_eq!(d.layout, Layout::ClassFolders);
    assert_eq!(d.classes, ["Cat", "Dog"]);
    assert_eq!(d.class_counts(), [1, 1]);
    assert_eq!(d.skipped.len(), 2, "{:?}", d.skipped);
}

#[test]
fn oxford_names_and_cat_dog_grouping() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "Abyssinian_1.jpg",
        "Abyssinian_2.jpg",
        "great_pyrenees_10.jpg",
        "README",
    ] {
        touch(&dir.path().join("images").join(name), b"x");
    }
    let d = scan(dir.path(), ScanOptions::default()).unwrap();
    assert_eq!(d.layout, Layout::OxfordPets);
    assert_eq!(d.classes, ["Abyssinian", "great_pyrenees"]);
    assert_eq!(d.class_counts(), [2, 1]);
    assert_eq!(d.skipped.len(), 1);
    let d = scan(dir.path(), ScanOptions { cats_vs_dogs: true }).unwrap();
    assert_eq!(d.classes, ["cat", "dog"]);
}

#[test]
fn refuses_one_class_an_empty_class_and_an_empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    let err = scan(dir.path(), ScanOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("0 classes"), "{err}");
    touch(&dir.path().join("cat/1.jpg"), b"x");
    let err = scan(dir.path(), ScanOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 class:"), "{err}");
    touch(&dir.path().join("dog/1.jpg"), b"");
    let err = scan(dir.path(), ScanOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("class 'dog'") && err.contains("no usable"),
        "{err}"
    );
    let err = scan(&dir.path().join("nope"), ScanOptions::default()).unwrap_err();
    assert!(err.to_string().contains("not a folder"));
}

#[cfg(unix)]
fn link(target: &str, at: &Path) {
    std::os::unix::fs::symlink(target, at).unwrap();
}

#[cfg(unix)]
fn reasons(d: &Dataset) -> String {
    d.skipped
        .iter()
        .map(|s| format!("{}: {}\n", s.path.display(), s.reason))
        .collect()
}

/// Issue 14: `cat/up -> ..` took in every photo again under `cat` (dogs labelled cats, the
/// same files on both sides of the split).
#[cfg(unix)]
#[test]
fn a_link_to_the_dataset_folder_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    touch(&dir.path().join("cat/1.jpg"), b"x");
    touch(&dir.path().join("dog/2.jpg"), b"x");
    touch(&dir.path().join("dog/3.jpg"), b"x");
    link("..", &dir.path().join("cat/up"));
    link("../..", &dir.path().join("dog/top"));
    let d = scan(dir.path(), ScanOptions::default()).unwrap();
    assert_eq!(d.class_counts(), [1, 2], "{:?}", d.items);
    let why = reasons(&d);
    assert!(
        why.contains("cat/up: a link back to the dataset folder"),
        "{why}"
    );
    assert!(why.contains("dog/top: a link back"), "{why}");
}

/// Issue 14: two links to `.` made the walk exponential (memory without end).
#[cfg(unix)]
#[test]
fn links_to_the_same_folder_are_walked_once() {
    let dir = tempfile::tempdir().unwrap();
    touch(&dir.path().join("cat/1.jpg"), b"x");
    touch(&dir.path().join("cat/sub/2.jpg"), b"x");
    touch(&dir.path().join("dog/3.jpg"), b"x");
    for name in ["a", "b"] {
        link(".", &dir.path().join("cat").join(name));
        link(".", &dir.path().join("cat/sub").join(name));
    }
    link("../sub", &dir.path().join("cat/sub/again"));
    let d = scan(dir.path(), ScanOptions::default()).unwrap();
    assert_eq!(d.class_counts(), [2, 1], "{:?}", d.items);
    assert_eq!(d.skipped.len(), 5, "{}", reasons(&d));
}

/// A file reached twice in one class counts once; one reached from two classes (or a
/// class folder inside another) is in neither, named in the skipped list.
#[cfg(unix)]
#[test]
fn each_file_counts_once_and_shared_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    touch(&root.join("cat/1.jpg"), b"x");
    touch(&root.join("cat/2.jpg"), b"x");
    touch(&root.join("dog/3.jpg"), b"x");
    touch(&root.join("dog/4.jpg"), b"x");
    link("1.jpg", &root.join("cat/again.jpg"));
    std::fs::hard_link(root.join("cat/2.jpg"), root.join("cat/hard.jpg")).unwrap();
    link("../dog/4.jpg", &root.join("cat/stolen.jpg"));
    link("../dog", &root.join("cat/dogs"));
    link("cat", &root.join("kitty"));
    let d = scan(root, ScanOptions::default()).unwrap();
    assert_eq!(d.classes, ["cat", "dog"]);
    let names: Vec<_> = d
        .items
        .iter()
        .map(|i| i.path.strip_prefix(root).unwrap())
        .collect();
    assert_eq!(
        names,
        [
            Path::new("cat/1.jpg"),
            Path::new("cat/2.jpg"),
            Path::new("dog/3.jpg")
        ]
    );
    let why = reasons(&d);
    for expected in [
        "cat/again.jpg: the same file as",
        "cat/hard.jpg: the same file as",
        "cat/stolen.jpg: the same file is in classes 'cat' and 'dog'",
        "dog/4.jpg: the same file is in classes",
        "cat/dogs: a link to the class folder 'dog'",
        "kitty: the same folder as class 'cat'",
    ] {
        assert!(why.contains(expected), "{expected} in\n{why}");
    }
}

/// Issue 14: `caf\xE9` and `caf\xE8` both read "caf\u{FFFD}" and became one class.
#[cfg(target_os = "linux")]
#[test]
fn class_names_that_are_not_utf8_stay_distinct() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    for (name, n) in [(&b"caf\xe9"[..], 1), (&b"caf\xe8"[..], 2)] {
        let class = dir.path().join(OsStr::from_bytes(name));
        for i in 0..n {
            touch(&class.join(format!("{i}.jpg")), b"x");
        }
    }
    let d = scan(dir.path(), ScanOptions::default()).unwrap();
    assert_eq!(d.classes, ["caf\\xE8", "caf\\xE9"]);
    assert_eq!(d.class_counts(), [2, 1]);
}

/// A FIFO named like a photo is skipped without being opened, and said to be one.
#[cfg(unix)]
#[test]
fn a_fifo_among_the_photos_is_skipped_as_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    touch(&dir.path().join("cat/1.jpg"), b"x");
    touch(&dir.path().join("dog/2.jpg"), b"x");
    let fifo = dir.path().join("cat/pipe.jpg");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: mkfifo is missing");
        return;
    }
    let d = scan(dir.path(), ScanOptions::default()).unwrap();
    assert_eq!(d.class_counts(), [1, 1]);
    let why = reasons(&d);
    assert!(
        why.contains("pipe.jpg: is not a regular file (a FIFO"),
        "{why}"
    );
}
