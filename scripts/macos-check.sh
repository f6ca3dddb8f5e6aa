#!/usr/bin/env bash
# The macOS check that runs without a Mac: clippy (so every line of ours type-checks, the
# cfg(target_os = "macos") code and the Metal feature included) for Apple silicon, with
# warnings as errors.
#
#   scripts/macos-check.sh                     # aarch64-apple-darwin
#   TARGET=x86_64-apple-darwin scripts/macos-check.sh
#
# Two dependencies compile C in their build scripts (aws-lc-sys, blake3), which needs Apple's
# SDK. A check links nothing, so a stand-in compiler that writes empty objects lets their
# build scripts finish; nothing built this way can run. A real build happens on a Mac (README,
# "On a Mac").
set -euo pipefail
cd "$(dirname "$0")/.."
target=${TARGET:-aarch64-apple-darwin}
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
fake=$PWD/target/macos-check/bin
mkdir -p "$fake"
cat > "$fake/cc" <<'SH'
#!/bin/sh
# Stands in for Apple's clang in a check-only build: an empty object where one is asked for.
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        -o) out=$2; shift ;;
        -E) exit 0 ;;
    esac
    shift
done
[ -n "$out" ] && : > "$out"
exit 0
SH
cat > "$fake/ar" <<'SH'
#!/bin/sh
# An empty archive where one is asked for: the check never links.
for a in "$@"; do case "$a" in *.a) printf '!<arch>\n' > "$a"; exit 0 ;; esac; done
exit 0
SH
chmod +x "$fake/cc" "$fake/ar"
var=${target//-/_}
env "CC_$var=$fake/cc" "CXX_$var=$fake/cc" "AR_$var=$fake/ar" \
    cargo clippy --target "$target" --features metal --all-targets -- -D warnings
echo "macOS ($target, --features metal): clippy clean"
