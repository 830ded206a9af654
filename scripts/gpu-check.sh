#!/usr/bin/env bash
# GPU check of the CUDA `magma` build. Runs ON the GPU machine (no Rust, no network), from the repo
# root, with the binary that scripts/build-cuda.sh packed into devprobe/:
#
#   run(command="bash scripts/gpu-check.sh", carry=["devprobe"], timeout_s=480)
#
# Steps (each appends its stderr to $OUT/steps.log and writes its JSON to $OUT/<step>.json; a
# failing step is reported and the next one still runs; at most 8 files come back from $OUT):
#   1. parity-f32:  fixture-model parity on CUDA in f32 against the manifest tolerances, plus the
#                   CUDA depthwise-conv kernel against the CPU kernel;
#   2. parity-bf16: the same in bf16 with the looser stated bounds, greedy-token agreement reported;
#   3. bench:       `magma bench` with the Magma-8B preset and random weights on CUDA in bf16
#                   (skipped when this binary has no such preset);
#   4. reference:   scripts/gpu_reference.py, the PyTorch speed of the same architecture.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
out="${OUT:-$repo/gpu-check-out}"
mkdir -p "$out"
magma="$repo/devprobe/magma"
[[ -x "$magma" ]] || { echo "no $magma: run scripts/build-cuda.sh here and carry devprobe/" >&2; exit 2; }

# CUDA libraries: the toolkit install's lib64 first (cuBLAS, cuRAND, cudart, NVRTC of CUDA 13),
# then the PyTorch venv's nvidia wheels; libcuda.so.1 comes from the driver on the default path.
lib_dirs=()
for nvcc_dir in "$(dirname "$(command -v nvcc 2>/dev/null || echo /nonexistent/nvcc)")" /usr/local/cuda/bin; do
  [[ -d "$nvcc_dir/../lib64" ]] && lib_dirs+=("$(cd "$nvcc_dir/../lib64" && pwd)")
done
while IFS= read -r dir; do lib_dirs+=("$dir"); done < <(
  python3 -c 'import glob, os, site
for base in site.getsitepackages():
    for d in sorted(glob.glob(os.path.join(base, "nvidia", "*", "lib")) + glob.glob(os.path.join(base, "nvidia", "cu13", "lib"))):
        print(d)' 2>/dev/null)
LD_LIBRARY_PATH="$(IFS=:; echo "${lib_dirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH

{
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  cat devprobe/BUILD-INFO 2>/dev/null
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  echo "--- ldd"
  ldd "$magma" 2>&1
} >"$out/env.txt"
cat "$out/env.txt"

status=0
step() {
  local name="$1"; shift
  local start=$SECONDS
  echo "== $name: $*"
  echo "== $name: $*" >>"$out/steps.log"
  if "$@" >"$out/$name.json" 2>"$out/$name.err"; then
    echo "   ok ($((SECONDS - start)) s)"
  else
    echo "   FAILED with $? ($((SECONDS - start)) s); last lines of its stderr:"
    tail -n 15 "$out/$name.err"
    status=1
  fi
  cat "$out/$name.err" >>"$out/steps.log"
  rm -f "$out/$name.err"
  [[ -s "$out/$name.json" ]] || rm -f "$out/$name.json"
}

fixtures=tests/fixtures/magma-parity
step parity-f32 "$magma" parity --fixtures "$fixtures" --device cuda --dtype f32 --json
step parity-bf16 "$magma" parity --fixtures "$fixtures" --device cuda --dtype bf16 --json
for f in parity-f32 parity-bf16; do
  [[ -f "$out/$f.json" ]] && python3 - "$out/$f.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['device']} {r['dtype']}: {'PASSED' if r['passed'] else 'FAILED'}")
for c in r["cases"]:
    vf = c["vision_features"]["max_abs_diff"] if c["vision_features"] else None
    print(f"  {c['model']:<18} {c['case']:<16} vision {vf if vf is None else f'{vf:.2e}'}  "
          f"logits {c['logits']['max_abs_diff']:.2e}  greedy {c['greedy_matched']}/{c['greedy_total']}  {c['ms']:.0f} ms")
for k in r["kernels"]:
    print(f"  depthwise k{k['kernel']} {k['shape_nhwc']}: max|d| {k['comparison']['max_abs_diff']:.2e} ok={k['comparison']['ok']}")
EOF
done

# `magma bench model --preset` or `magma bench --preset`, whichever this binary has
bench_cmd=()
for sub in "bench model" "bench"; do
  # shellcheck disable=SC2086
  if "$magma" $sub --help 2>/dev/null | grep -q -- '--preset'; then bench_cmd=("$magma" $sub); break; fi
done
if ((${#bench_cmd[@]})); then
  step bench "${bench_cmd[@]}" --preset magma-8b --random-weights --device cuda --dtype bf16 --json
  [[ -f "$out/bench.json" ]] && cat "$out/bench.json"
else
  echo "== bench: skipped (this magma's bench has no --preset)"
fi

echo "== reference: python3 scripts/gpu_reference.py"
start=$SECONDS
if OUT="$out" PYTHONUNBUFFERED=1 python3 scripts/gpu_reference.py >"$out/reference.txt" 2>&1; then
  echo "   ok ($((SECONDS - start)) s)"
  tail -n 12 "$out/reference.txt"
else
  echo "   FAILED ($((SECONDS - start)) s)"
  tail -n 15 "$out/reference.txt"
  status=1
fi
exit "$status"
