#!/usr/bin/env bash
# Makes the downloadable files in dist/, for students without Rust:
#   cnn-explorer-VERSION-windows-x86_64.zip   cnn-explorer.exe, assets, licences, README.txt
#   cnn-explorer-VERSION-linux-x86_64.tar.gz  cnn-explorer, assets, licences, README.txt
# each with THIRD-PARTY.txt (the crates built in, with their licences), and SHA256SUMS.
#
#   scripts/release.sh                # both
#   PLATFORMS=linux scripts/release.sh
#
# Cross-builds Windows from Linux: `rustup target add x86_64-pc-windows-gnu` and Debian's
# gcc-mingw-w64-x86-64 (see scripts/windows-check.sh, which also runs the result under Wine).
# The binaries are stripped (no symbols: a third of the size). macOS builds need Apple's SDK,
# so they are made on a Mac: README.md, "On a Mac".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
platforms=${PLATFORMS:-"windows linux"}
version=$(cargo metadata --no-deps --format-version 1 \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["packages"][0]["version"])')
dist=$root/dist
mkdir -p "$dist"

# Text for README.txt's "Start" and "Where files go", per platform.
start_windows='Unzip the folder, then double-click cnn-explorer.exe. Windows SmartScreen may say it
does not know the app (it is not signed): "More info", then "Run anyway". From a Command
Prompt or PowerShell in the folder: .\cnn-explorer.exe (Windows 10 or 11, 64-bit).'
places_windows='  weights   %LOCALAPPDATA%\cnn-explorer\data\weights   (large; stays on this computer)
  heads     %APPDATA%\cnn-explorer\data\heads          (heads you train)
  caches    %LOCALAPPDATA%\cnn-explorer\cache          (safe to delete)
  settings  %APPDATA%\cnn-explorer\data\app.ron'
start_linux='Unpack and run: tar xzf cnn-explorer-*.tar.gz && cd cnn-explorer-* && ./cnn-explorer
Needs a desktop session (X11 or Wayland) with OpenGL 2 or later (Mesa is enough), and
glibc @GLIBC@ or newer (`ldd --version` prints yours; Ubuntu 22.04 and Debian 12 have it).'
places_linux='  weights   ~/.local/share/cnn-explorer/weights   (large)
  heads     ~/.local/share/cnn-explorer/heads     (heads you train)
  caches    ~/.cache/cnn-explorer                 (safe to delete)
  settings  ~/.local/share/cnn-explorer/app.ron
(XDG_DATA_HOME and XDG_CACHE_HOME move them as usual.)'

package() { # platform target binary-name
    local platform=$1 target=$2 exe=$3
    local name=cnn-explorer-$version-$platform-x86_64
    local stage=$dist/stage/$name
    echo "== $name"
    if [ "$target" = x86_64-unknown-linux-gnu ]; then
        cargo build --release
        built=target/release/$exe
    else
        cargo build --release --target "$target"
        built=target/$target/release/$exe
    fi
    rm -rf "$stage"
    mkdir -p "$stage/assets"
    cp "$built" "$stage/$exe"
    if [ "$platform" = windows ]; then
        x86_64-w64-mingw32-strip "$stage/$exe"
    else
        strip "$stage/$exe"
    fi
    cp assets/chelsea.png assets/icon.png assets/imagenet_classes.txt assets/README.md "$stage/assets/"
    cp LICENSE-MIT LICENSE-APACHE "$stage/"
    cargo metadata --format-version 1 --filter-platform "$target" 2>/dev/null \
        | python3 scripts/release/third_party.py "$target" > "$stage/THIRD-PARTY.txt"
    local start places glibc
    if [ "$platform" = windows ]; then
        start=$start_windows places=$places_windows
    else
        # The newest glibc symbol version the binary needs.
        glibc=$(objdump -T "$stage/$exe" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1 | cut -d_ -f2)
        start=${start_linux//@GLIBC@/$glibc} places=$places_linux
    fi
    python3 - "$stage/README.txt" "$version" "$platform" "$exe" "$start" "$places" <<'EOF'
import sys
out, version, platform, exe, start, places = sys.argv[1:]
text = open("scripts/release/README.txt", encoding="utf-8").read()
for key, value in {"VERSION": version, "PLATFORM": platform.capitalize() + ", x86_64",
                   "EXE": exe, "START": start, "PLACES": places}.items():
    text = text.replace(f"@{key}@", value)
# Windows' Notepad reads either, but CRLF is what a Windows user's tools expect.
newline = "\r\n" if platform == "windows" else "\n"
open(out, "w", encoding="utf-8", newline=newline).write(text)
EOF
    rm -f "$dist/$name".{zip,tar.gz}
    if [ "$platform" = windows ]; then
        # Deflated (python's `-m zipfile -c` would only store).
        python3 - "$dist/stage" "$name" "$dist/$name.zip" <<'EOF'
import os, sys, zipfile
stage, name, out = sys.argv[1:]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    for folder, _, files in os.walk(os.path.join(stage, name)):
        for f in sorted(files):
            path = os.path.join(folder, f)
            z.write(path, os.path.relpath(path, stage))
EOF
        echo "$dist/$name.zip: $(du -h "$dist/$name.zip" | cut -f1) ($(stat -c %s "$dist/$name.zip") bytes)"
    else
        tar -C "$dist/stage" --owner=0 --group=0 -czf "$dist/$name.tar.gz" "$name"
        echo "$dist/$name.tar.gz: $(du -h "$dist/$name.tar.gz" | cut -f1) ($(stat -c %s "$dist/$name.tar.gz") bytes)"
    fi
}

for platform in $platforms; do
    case $platform in
        windows) package windows x86_64-pc-windows-gnu cnn-explorer.exe ;;
        linux) package linux x86_64-unknown-linux-gnu cnn-explorer ;;
        *) echo "unknown platform $platform (windows, linux)" >&2; exit 2 ;;
    esac
done
rm -rf "$dist/stage"
(cd "$dist" && sha256sum -- *.zip *.tar.gz 2>/dev/null > SHA256SUMS || true)
echo "== dist/"
ls -l "$dist"
