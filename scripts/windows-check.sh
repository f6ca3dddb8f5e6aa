#!/usr/bin/env bash
# The Windows check: cross-builds the Windows binary, runs it under Wine and compares every
# output with the Linux binary's on the same inputs. Runs on Debian/Ubuntu, from the checkout:
#
#   scripts/windows-check.sh            # builds both release binaries, then checks
#   LINUX_BIN=target/debug/cnn-explorer scripts/windows-check.sh   # reuse a Linux build
#   WINDOWS_UNIT_TESTS=0 scripts/windows-check.sh   # without the library's unit tests under Wine
#
# Needs: `rustup target add x86_64-pc-windows-gnu`, Debian's gcc-mingw-w64-x86-64 and wine
# (installed here when missing and this runs as root or with sudo), python3, and for the
# window's screenshot an X server (Xvfb is started when DISPLAY is unset).
# The weights: EfficientNet-Lite0 in the weights folder (fetched by the Linux binary when
# absent). Outputs: target/windows-check/{linux,windows}/, and a summary on stdout.
#
# A harness-only bcryptprimitives.dll goes beside the .exe: Wine 8 lacks ProcessPrng, which
# Rust's standard library calls on Windows (real Windows has it; never shipped).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$root/target/windows-check
target=x86_64-pc-windows-gnu
model=efficientnet-lite0
export DEBIAN_FRONTEND=noninteractive

step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

step "tools"
missing=()
command -v x86_64-w64-mingw32-gcc >/dev/null || missing+=(gcc-mingw-w64-x86-64)
command -v wine >/dev/null || missing+=(wine wine64)
if [ -z "${DISPLAY:-}" ]; then command -v Xvfb >/dev/null || missing+=(xvfb); fi
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" != 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    # With recommends: the set this check was measured with (Wine's own fonts and libraries).
    $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
wine --version

step "build"
start=$SECONDS
cargo build --release --target "$target"
linux_bin=${LINUX_BIN:-}
if [ -z "$linux_bin" ]; then
    cargo build --release
    linux_bin=$root/target/release/cnn-explorer
fi
linux_bin=$(realpath "$linux_bin")
echo "built in $((SECONDS - start)) s"

rm -rf "$work"
mkdir -p "$work/bin" "$work/linux" "$work/windows" "$work/inputs"
cp "target/$target/release/cnn-explorer.exe" "$work/bin/"
x86_64-w64-mingw32-gcc -O2 -shared -o "$work/bin/bcryptprimitives.dll" scripts/windows/bcryptprimitives.c
x86_64-w64-mingw32-gcc -O2 -municode -o "$work/bin/holdopen.exe" scripts/windows/holdopen.c

step "wine prefix (a user profile with non-ASCII letters and a space)"
export WINEPREFIX=$work/wineprefix WINEDEBUG=-all LC_ALL=C.UTF-8
# No Mono or Gecko install prompts; the shim before any built-in DLL of that name.
export WINEDLLOVERRIDES="mscoree,mshtml=;bcryptprimitives=n,b"
wineboot -i >/dev/null 2>&1 || true
wineserver -w
winpath() { winepath -w "$1" 2>/dev/null; }
# The profile's AppData folders moved to C:\users\Zoë Ødegård (Wine names the profile after
# the Unix account): the known-folder lookups the app makes then answer non-ASCII paths.
profile='C:\users\Zoë Ødegård'
mkdir -p "$WINEPREFIX/drive_c/users/Zoë Ødegård/AppData/Local" "$WINEPREFIX/drive_c/users/Zoë Ødegård/AppData/Roaming"
shell_folders='HKCU\Software\Microsoft\Windows\CurrentVersion\Explorer\User Shell Folders'
wine reg add "$shell_folders" /v "Local AppData" /t REG_EXPAND_SZ /d "$profile\AppData\Local" /f >/dev/null
wine reg add "$shell_folders" /v AppData /t REG_EXPAND_SZ /d "$profile\AppData\Roaming" /f >/dev/null
wineserver -w
exe=$work/bin/cnn-explorer.exe
win() { wine "$exe" "$@"; }

# The weights: one folder both binaries read, given to Windows as a drive-letter path.
weights=${CNN_EXPLORER_WEIGHTS_DIR:-$root/weights}
mkdir -p "$weights"
[ -f "$weights/$model.pth" ] || CNN_EXPLORER_WEIGHTS_DIR=$weights "$linux_bin" fetch "$model"
export CNN_EXPLORER_WEIGHTS_DIR=$weights CNN_EXPLORER_CACHE_DIR=$work/linux-cache
export NO_COLOR=1
# Wine passes the environment through; Windows paths for the Windows side.
wenv=(env CNN_EXPLORER_WEIGHTS_DIR="$(winpath "$weights")" CNN_EXPLORER_CACHE_DIR="$(winpath "$work/windows-cache")")

cp assets/chelsea.png "$work/inputs/cat.png"
cp tests/fixtures/images/cmyk.jpg "$work/inputs/cmyk.jpg"
cp tests/fixtures/images/exif_orientation6.jpg "$work/inputs/rotated.jpg"
python3 scripts/windows/compare.py gen-folder "$work/inputs/stripes"
in=$work/inputs

checks=0
agree() { # what kind linux windows [options]
    local what=$1 kind=$2 a=$3 b=$4; shift 4
    printf '%-34s ' "$what"
    python3 scripts/windows/compare.py "$kind" "$a" "$b" "$@" || fail "$what"
    checks=$((checks + 1))
}
# Runs the same command on both sides, in linux/ and windows/; the photos by relative path
# on Linux and by drive-letter path on Windows.
both() { # name args...
    local name=$1; shift
    (cd "$work/linux" && "$linux_bin" "$@" --json > "$name.json" 2> "$name.log") \
        || { cat "$work/linux/$name.log"; fail "linux: $name"; }
    local args=() arg
    for arg in "$@"; do
        if [[ $arg == "$in"/* ]]; then args+=("$(winpath "$arg")"); else args+=("$arg"); fi
    done
    (cd "$work/windows" && "${wenv[@]}" wine "$exe" "${args[@]}" --json > "$name.json" 2> "$name.log") \
        || { cat "$work/windows/$name.log"; fail "windows: $name"; }
    # Wine's console writes CRLF; the JSON compare takes either.
}

step "commands, Linux against Windows"
checks_start=$SECONDS
both models models
agree "models --json" json "$work/linux/models.json" "$work/windows/models.json"
both predict predict --model "$model" "$in/cat.png" "$in/cmyk.jpg" "$in/rotated.jpg"
agree "predict PNG + JPEGs (1e-5)" json "$work/linux/predict.json" "$work/windows/predict.json" --tol 1e-5
both features features --model "$model" --layer block3 "$in/cat.png" -o features.png
agree "features --json (1e-5)" json "$work/linux/features.json" "$work/windows/features.json" --tol 1e-5
agree "features PNG" png "$work/linux/features.png" "$work/windows/features.png"
both dream dream --model "$model" --class tabby --steps 8 --size 128 -o dream.png
agree "dream --json (1e-5)" json "$work/linux/dream.json" "$work/windows/dream.json" --tol 1e-5
agree "dream PNG" png "$work/linux/dream.png" "$work/windows/dream.png" --max-diff "${DREAM_MAX_DIFF:-0}"
both attack attack --model "$model" --target "golden retriever" "$in/cat.png" -o attack.png
agree "attack --json (1e-5)" json "$work/linux/attack.json" "$work/windows/attack.json" --tol 1e-5
agree "attack PNG" png "$work/linux/attack.png" "$work/windows/attack.png"
both train train-head --model "$model" --epochs 3 --val 0.25 --no-cache "$in/stripes" -o head.safetensors
agree "train-head --json (1e-5)" json "$work/linux/train.json" "$work/windows/train.json" --tol 1e-5
# With the feature cache: written by the first run, read by the second, on both sides.
both cache-fill train-head --model "$model" --epochs 3 --val 0.25 "$in/stripes" -o cached.safetensors
both cache-read train-head --model "$model" --epochs 3 --val 0.25 "$in/stripes" -o cached.safetensors
agree "train-head from the feature cache" json "$work/linux/cache-read.json" "$work/windows/cache-read.json" --tol 1e-5
grep -q '"features_from_cache":16' "$work/windows/cache-read.json" || fail "the Windows run did not read its cache"
both predict-head predict --head head.safetensors "$in/stripes/warm/warm_0.png" "$in/stripes/cool/cool_3.png"
agree "predict --head (1e-5)" json "$work/linux/predict-head.json" "$work/windows/predict-head.json" --tol 1e-5
echo "commands took $((SECONDS - checks_start)) s on both sides"

step "Windows paths"
# Where the app keeps things by default, against the profile Wine made (no overrides).
env -u CNN_EXPLORER_WEIGHTS_DIR -u CNN_EXPLORER_CACHE_DIR wine "$exe" paths --json > "$work/windows/paths.json"
local_appdata="$profile\AppData\Local"
appdata="$profile\AppData\Roaming"
python3 - "$work/windows/paths.json" "$local_appdata" "$appdata" <<'EOF'
import json, sys
places = json.load(open(sys.argv[1], encoding="utf-8"))
local, roaming = sys.argv[2], sys.argv[3]
want = {
    "weights": local + r"\cnn-explorer\data\weights",
    "heads": roaming + r"\cnn-explorer\data\heads",
    "cache": local + r"\cnn-explorer\cache",
    "settings": roaming + r"\cnn-explorer\data\app.ron",
}
for key, path in want.items():
    assert places[key] == path, f"{key}: {places[key]!r}, want {path!r}"
    assert "/" not in places[key], f"{key} mixes separators: {places[key]}"
assert "Zoë" in local, f"the profile is not the non-ASCII one: {local}"
print(f"default places under {local} and {roaming}: right, one kind of separator")
EOF
checks=$((checks + 1))
# Used for real: fetch into the default weights folder (from a folder mirror: no network),
# predict and train with the default weights folder and feature cache, all under "Zoë Ødegård".
defaults=(env -u CNN_EXPLORER_WEIGHTS_DIR -u CNN_EXPLORER_CACHE_DIR)
"${defaults[@]}" CNN_EXPLORER_WEIGHTS_MIRROR="$(winpath "$weights")" wine "$exe" fetch "$model" \
    > "$work/windows/fetch.log" 2>&1 || { cat "$work/windows/fetch.log"; fail "fetch into the default folder"; }
(cd "$work/windows" && "${defaults[@]}" wine "$exe" predict --model "$model" --json "$(winpath "$in/cat.png")" \
    > default-predict.json 2>/dev/null) || fail "predict from the default weights folder"
head -1 "$work/linux/predict.json" > "$work/linux/default-predict.json"
agree "predict, default non-ASCII places" json "$work/linux/default-predict.json" "$work/windows/default-predict.json" --tol 1e-5
(cd "$work/windows" && "${defaults[@]}" wine "$exe" train-head --model "$model" --epochs 1 --json \
    "$(winpath "$in/stripes")" -o default-head.safetensors > default-train.json 2>/dev/null) || fail "train with the default cache"
unix_profile="$WINEPREFIX/drive_c/users/Zoë Ødegård/AppData"
ls "$unix_profile/Local/cnn-explorer/data/weights/$model.pth" >/dev/null || fail "no weights in the default folder"
shards=$(find "$unix_profile/Local/cnn-explorer/cache/features" -type f | wc -l)
[ "$shards" -gt 0 ] || fail "no feature cache in the default folder"
echo "weights and $shards feature-cache files under $profile\AppData\Local\cnn-explorer"
checks=$((checks + 1))
# A verbatim (\\?\) path and a forward-slash one name the same photo.
verbatim="\\\\?\\$(winpath "$in/cat.png")"
"${wenv[@]}" wine "$exe" predict --model "$model" --json "$verbatim" "$(winpath "$in/cat.png" | tr '\\' /)" \
    > "$work/windows/verbatim.json" 2>/dev/null || fail "a \\\\?\\ path"
python3 - "$work/windows/verbatim.json" "$work/linux/predict.json" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
cat = json.loads(open(sys.argv[2], encoding="utf-8").readline())
assert len(rows) == 2 and all(r["top"] == cat["top"] for r in rows), rows
print(f"{rows[0]['image']} and {rows[1]['image']}: the cat's classes")
EOF
checks=$((checks + 1))

step "a file held open by another program"
held=$work/windows/held.png
cp "$work/windows/dream.png" "$held"
rm -f "$work/windows/ready" "$work/windows/stop"
wine "$work/bin/holdopen.exe" "$(winpath "$held")" "$(winpath "$work/windows/ready")" "$(winpath "$work/windows/stop")" &
holder=$!
for _ in $(seq 100); do [ -f "$work/windows/ready" ] && break; sleep 0.2; done
[ -f "$work/windows/ready" ] || fail "the holder did not open the file"
set +e
"${wenv[@]}" wine "$exe" attack --model "$model" --target "golden retriever" "$(winpath "$in/cat.png")" -o "$(winpath "$held")" \
    > /dev/null 2> "$work/windows/held.log"
status=$?
set -e
touch "$work/windows/stop"; wait "$holder" || true
tr -d '\r' < "$work/windows/held.log" | grep -v '^device' || true
[ $status -ne 0 ] || fail "saving over a held file reported success"
grep -q "is open in another program" "$work/windows/held.log" || fail "no clear message"
cmp -s "$held" "$work/windows/dream.png" || fail "the held file was changed"
agree "the new file kept beside it" png "$work/linux/attack.png" "$work/windows/held.new.png"

step "the window"
if [ -z "${DISPLAY:-}" ]; then
    Xvfb :93 -screen 0 1600x1000x24 >/dev/null 2>&1 &
    xvfb=$!
    trap 'kill $xvfb 2>/dev/null || true' EXIT
    export DISPLAY=:93
    sleep 2
fi
mkdir -p "$work/state-linux" "$work/state-windows"
CNN_EXPLORER_STATE_DIR=$work/state-linux "$linux_bin" --model "$model" --screenshot "$work/linux/window.png" 2> "$work/linux/window.log" \
    || { cat "$work/linux/window.log"; fail "linux window"; }
"${wenv[@]}" CNN_EXPLORER_STATE_DIR="$(winpath "$work/state-windows")" wine "$exe" --model "$model" \
    --screenshot "$(winpath "$work/windows/window.png")" 2> "$work/windows/window.log" \
    || { cat "$work/windows/window.log"; fail "windows window"; }
for side in linux windows; do
    printf '%-34s ' "window --screenshot ($side)"
    python3 scripts/windows/compare.py png-info "$work/$side/window.png"
done
# Both draw the same window; Wine's light theme differs from the Linux default, so only the
# size is compared here (look at the two PNGs).
python3 - "$work/linux/window.png" "$work/windows/window.png" <<'EOF'
import struct, sys
sizes = [struct.unpack(">II", open(p, "rb").read()[16:24]) for p in sys.argv[1:]]
assert sizes[0] == sizes[1], sizes
print(f"both {sizes[0][0]}x{sizes[0][1]}")
EOF
checks=$((checks + 2))

if [ "${WINDOWS_UNIT_TESTS:-1}" = 1 ]; then
    step "the library's unit tests, under Wine"
    # The cfg(windows) tests (known folders, drive letters and UNC overrides, a held-open
    # save, thread priority) run only here. In release, to share the crates built above.
    tests_exe=$(cargo test --release --target "$target" --lib --no-run --message-format=json 2>/dev/null \
        | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["lib"]:
        print(m["executable"])')
    [ -n "$tests_exe" ] || fail "no unit-test binary"
    cp "$work/bin/bcryptprimitives.dll" "$(dirname "$tests_exe")/"
    (cd "$root" && wine "$tests_exe" 2>&1 | tr -d '\r' | grep -E '^test .*(windows|held_open|below_the_window|places::)|test result|panicked|FAILED|^---- ') \
        | tee "$work/windows/unit-tests.log"
    grep -q "test result: ok" "$work/windows/unit-tests.log" || fail "unit tests under Wine"
    checks=$((checks + 1))
fi

step "done"
echo "$checks checks passed; Windows binary $(du -h "$exe" | cut -f1), $((SECONDS - start)) s in all"
