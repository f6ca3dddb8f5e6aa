//! Build script: for Windows targets, compiles the `.exe`'s resources into the binary: its
//! icon (Explorer, the taskbar, a shortcut) and the name and version Explorer's "Details" tab
//! shows. For other targets it does nothing. The icon is cosmetic, so a machine without a
//! resource compiler gets a warning and a plain `.exe`, not a failed build.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=assets/windows/cnn-explorer.ico");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("windows") {
        return;
    }
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let (Some(out), Some(root)) = (
        std::env::var_os("OUT_DIR").map(PathBuf::from),
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
    ) else {
        println!("cargo:warning=no OUT_DIR or CARGO_MANIFEST_DIR: the .exe gets no icon");
        return;
    };
    // Written here rather than kept in the repository, so the version is Cargo.toml's.
    let icon = root.join("assets").join("windows").join("cnn-explorer.ico");
    let icon = icon.display().to_string().replace('\\', "\\\\");
    let numbers = format!(
        "{},{},{},0",
        var("CARGO_PKG_VERSION_MAJOR"),
        var("CARGO_PKG_VERSION_MINOR"),
        var("CARGO_PKG_VERSION_PATCH")
    );
    let version = var("CARGO_PKG_VERSION");
    let rc = format!(
        r#"1 ICON "{icon}"
1 VERSIONINFO
FILEVERSION {numbers}
PRODUCTVERSION {numbers}
BEGIN
  BLOCK "StringFileInfo"
  BEGIN
    BLOCK "040904B0"
    BEGIN
      VALUE "FileDescription", "cnn-explorer: see inside a pretrained convolutional network"
      VALUE "ProductName", "cnn-explorer"
      VALUE "FileVersion", "{version}"
      VALUE "ProductVersion", "{version}"
      VALUE "OriginalFilename", "cnn-explorer.exe"
      VALUE "LegalCopyright", "MIT OR Apache-2.0"
    END
  END
  BLOCK "VarFileInfo"
  BEGIN
    VALUE "Translation", 0x409, 1200
  END
END
"#
    );
    let rc_path = out.join("cnn-explorer.rc");
    if let Err(e) = std::fs::write(&rc_path, rc) {
        println!(
            "cargo:warning=cannot write {}: {e}; the .exe gets no icon",
            rc_path.display()
        );
        return;
    }
    if let Err(e) = embed_resource::compile(&rc_path, embed_resource::NONE).manifest_optional() {
        println!("cargo:warning=the .exe's icon was not compiled in: {e}");
    }
}
