#!/usr/bin/env bash
# Builds the CUDA binary (`cargo build --release --features cuda`) on a machine with no CUDA
# toolkit installed, from NVIDIA's PyPI wheels: nvcc, the CUDA headers and CCCL, and the
# runtime libraries the binary links against (cudart, nvrtc, curand, cublas, cublasLt). The
# driver library (libcuda) comes with the NVIDIA driver, which a build machine may not have:
# it is replaced at link time by a stub that exports the driver API's symbol names, so the
# binary records `libcuda.so.1` as needed and uses the real driver on the machine it runs on.
#
# Not part of CI (it compiles candle's CUDA kernels: tens of minutes on 2 cores).
#
#   scripts/build-cuda.sh                 # toolkit under .cuda/, binary in target-cuda/release
#   CUDA_COMPUTE_CAP=80 scripts/build-cuda.sh   # another GPU generation (default 90, Hopper)
#
# Environment knobs: CUDA_VENV (where the wheels go, default .cuda/venv), CARGO_TARGET_DIR
# (default target-cuda), CUDA_COMPUTE_CAP (default 90), CUDARC_CUDA_VERSION (default 13040:
# cudarc 0.19 knows CUDA up to 13.4, and the 13.x driver API it binds is the same).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

venv=${CUDA_VENV:-$root/.cuda/venv}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target-cuda}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13040}

# 1. The toolkit from PyPI (CUDA 13 wheels put everything under nvidia/cu13).
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check \
    nvidia-cuda-nvcc nvidia-cuda-runtime nvidia-cuda-cccl nvidia-cuda-nvrtc \
    nvidia-curand nvidia-cublas
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cuda=$site/nvidia/cu13
if [ ! -x "$cuda/bin/nvcc" ]; then
    echo "error: nvcc not found at $cuda/bin/nvcc after installing nvidia-cuda-nvcc" >&2
    exit 1
fi

# 2. Unversioned library names for the linker (the wheels ship only libX.so.N), and the
#    driver stub.
links=$root/.cuda/lib
mkdir -p "$links"
for lib in cudart nvrtc curand cublas cublasLt; do
    found=$(find "$cuda/lib" -maxdepth 1 -name "lib$lib.so.*" | sort | head -n 1)
    if [ -z "$found" ]; then
        echo "error: lib$lib.so.* missing from $cuda/lib" >&2
        exit 1
    fi
    ln -sf "$found" "$links/lib$lib.so"
done
cudarc=$(cargo metadata --format-version 1 --features cuda 2>/dev/null |
    "$venv/bin/python" -c 'import json,sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "cudarc":
        print(p["manifest_path"].rsplit("/", 1)[0])')
if [ -z "$cudarc" ]; then
    echo "error: cudarc's sources not found (run \`cargo fetch\` first)" >&2
    exit 1
fi
# Every driver entry point cudarc can call: a stub function per name is enough to link.
grep -o 'load::<_F>("cu[A-Za-z0-9_]*")' "$cudarc/src/driver/sys/mod.rs" |
    sed 's/.*("\(.*\)")/void \1(void) {}/' | sort -u >"$links/cuda_stub.c"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$links/libcuda.so" "$links/cuda_stub.c"

# 3. The build. CUDA_ROOT tells cudarc and candle's kernel builder where the toolkit is.
export CUDA_ROOT=$cuda CUDA_PATH=$cuda CUDA_HOME=$cuda
export PATH=$cuda/bin:$PATH
export LIBRARY_PATH=$links${LIBRARY_PATH:+:$LIBRARY_PATH}
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$links"
cargo build --release --features cuda "$@"

bin=$CARGO_TARGET_DIR/release/cnn-explorer
echo
echo "built $bin"
echo "it needs at run time: the NVIDIA driver (libcuda.so.1) and, on the library path, the"
echo "CUDA 13 runtime libraries (libcudart.so.13, libnvrtc.so.13, libcurand.so.10,"
echo "libcublas.so.13, libcublasLt.so.13), for example from the same wheels:"
echo "  LD_LIBRARY_PATH=$cuda/lib $bin bench --device cuda"
