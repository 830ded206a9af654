#!/usr/bin/env bash
# Builds the CUDA `magma` binary on a machine WITHOUT a GPU or a CUDA install, and packs it with
# everything `scripts/gpu-check.sh` needs into `devprobe/` (git-ignored), ready to be carried to a
# GPU machine. Recipe and numbers: docs/cuda-build-path (shared notes), summarised here:
#
# 1. NVIDIA's CUDA 13.0u2 toolkit pieces from PyPI, every package pinned (an unpinned nvcc pulls a
#    newer cicc/runtime), into `.cuda-toolkit/` (git-ignored).
# 2. Fix-ups of the wheel layout: `lib64 -> lib` (cudaforge's library folder), unversioned `.so`
#    links (ld resolves `-lcublas` only to `libcublas.so`), and a stub `libcuda.so`: candle-core
#    hard-wires cudarc's `dynamic-linking`, so `-lcuda` must resolve at link time even here. The stub
#    exports every `cu*` symbol of cudarc's bindings and never travels; the GPU machine's driver
#    library is loaded at run time.
# 3. `cargo build --release --features cuda` with CUDA_COMPUTE_CAP=90 (H100/H200: PTX sm_90a).
#
# Environment knobs: CARGO_TARGET_DIR (default /work/target-cuda, outside the repo),
# CUDA_COMPUTE_CAP (default 90), CUDAFORGE_THREADS (parallel nvcc jobs, default 2),
# CUDA_TOOLKIT_DIR (default .cuda-toolkit). A cold build takes ~15 min on 2 cores (12 of them in
# candle-kernels' nvcc phase); rebuilds take under a minute.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

toolkit_dir="${CUDA_TOOLKIT_DIR:-$repo/.cuda-toolkit}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-cuda}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-2}"
probe_dir="$repo/devprobe"

# CUDA 13.0 update 2 component versions; these cuBLAS/cuRAND/cudart match the GPU machine's install.
wheels=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-cccl==13.0.85
  nvidia-cuda-nvrtc==13.0.88
  nvidia-cublas==13.1.0.3
  nvidia-curand==10.4.0.35
)

step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" >&2; }

tk="$toolkit_dir/nvidia/cu13"
if [[ ! -x "$tk/bin/nvcc" ]]; then
  step "installing the pinned CUDA 13.0 wheels into $toolkit_dir"
  python3 -m pip install --quiet --no-deps --target "$toolkit_dir" "${wheels[@]}"
fi
[[ -x "$tk/bin/nvcc" ]] || { echo "nvcc missing under $tk after the install" >&2; exit 1; }

step "fixing up the wheel layout"
[[ -e "$tk/lib64" ]] || ln -s lib "$tk/lib64"
for lib in cudart cublas cublasLt curand nvrtc; do
  versioned="$(cd "$tk/lib" && ls "lib$lib.so."* 2>/dev/null | sort -V | tail -n1)"
  [[ -n "$versioned" ]] || { echo "lib$lib.so.* not found in $tk/lib" >&2; exit 1; }
  ln -sfn "$versioned" "$tk/lib/lib$lib.so"
done

if [[ ! -f "$tk/lib64/stubs/libcuda.so" ]]; then
  step "generating the stub libcuda.so from cudarc's bindings"
  # the cudarc version candle-core resolved (Cargo.lock), whose sources `cargo fetch` unpacks
  cargo fetch --quiet
  cudarc_version="$(awk '/^name = "cudarc"$/ {getline; gsub(/[^0-9.]/, ""); print}' Cargo.lock)"
  bindings="${CARGO_HOME:-$HOME/.cargo}/registry/src/"*"/cudarc-$cudarc_version/src/driver/sys/mod.rs"
  bindings="$(ls $bindings | head -n1)"
  mkdir -p "$tk/lib/stubs"
  stub_c="$tk/lib/stubs/libcuda_stub.c"
  # every stub returns an error code: it only satisfies the linker, it never runs
  grep -oE 'pub unsafe fn cu[A-Za-z0-9_]+' "$bindings" | awk '{print $4}' | sort -u \
    | awk '{print "int " $1 "(void){return 999;}"}' >"$stub_c"
  gcc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$tk/lib/stubs/libcuda.so" "$stub_c"
  echo "stub exports $(wc -l <"$stub_c") cu* symbols" >&2
fi

export CUDA_ROOT="$tk" CUDA_HOME="$tk" CUDA_PATH="$tk" NVCC="$tk/bin/nvcc" PATH="$tk/bin:$PATH"
export LIBRARY_PATH="$tk/lib/stubs:$tk/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"

step "cargo build --release -p magma-cli --features cuda (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, CUDAFORGE_THREADS=$CUDAFORGE_THREADS)"
start=$SECONDS
cargo build --release -p magma-cli --features cuda
echo "build took $((SECONDS - start)) s" >&2

step "packing $probe_dir"
rm -rf "$probe_dir"
mkdir -p "$probe_dir"
cp "$CARGO_TARGET_DIR/release/magma" "$probe_dir/magma"
strip "$probe_dir/magma"
cp scripts/gpu-check.sh scripts/gpu_reference.py "$probe_dir/"
# the fixture models travel with the working tree (tests/fixtures); record what was built from what
{
  echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD -- crates Cargo.toml Cargo.lock || echo ' (+ local changes)')"
  echo "built: $(date -u +%FT%TZ), CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, nvcc $("$tk/bin/nvcc" --version | grep -o 'release [0-9.]*')"
  echo "NEEDED: $(objdump -p "$probe_dir/magma" | awk '/NEEDED/ {printf "%s ", $2}')"
  echo "max GLIBC: $(objdump -T "$probe_dir/magma" | grep -o 'GLIBC_[0-9.]*' | sort -V | tail -n1)"
} >"$probe_dir/BUILD-INFO"
cat "$probe_dir/BUILD-INFO" >&2
ls -l "$probe_dir/magma" >&2
