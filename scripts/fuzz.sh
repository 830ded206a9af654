#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for N seconds each (default 60) and prints the executions
# of each. Needs `cargo install cargo-fuzz` and a nightly toolchain (`FUZZ_TOOLCHAIN=nightly`, the
# default); `FUZZ_TOOLCHAIN=stable` builds with RUSTC_BOOTSTRAP=1 instead (the sanitizer flags are
# nightly features). Corpora grow in fuzz/corpus/<target> (seeded from fuzz/seeds/<target>, small
# files from the fixtures); crashes land in fuzz/artifacts/<target> and make the script fail.
#
#   scripts/fuzz.sh 30              # every target, 30 s each
#   scripts/fuzz.sh 600 chat_request som_boxes
set -euo pipefail
seconds=${1:-60}
shift || true
toolchain=${FUZZ_TOOLCHAIN:-nightly}
if [ "$toolchain" = stable ]; then export RUSTC_BOOTSTRAP=1; fi
cd "$(dirname "$0")/../fuzz"
cargo "+$toolchain" fuzz build
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then mapfile -t targets < <(cargo "+$toolchain" fuzz list); fi
mkdir -p logs
failed=()
printf '%-22s %12s %8s %8s\n' target runs seconds corpus
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  log="logs/$target.log"
  status=ok
  # -timeout: one input taking over 10 s counts as a hang; -rss_limit_mb: a bomb counts as a crash
  if ! cargo "+$toolchain" fuzz run "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 >"$log" 2>&1; then
    status=FAILED
    failed+=("$target")
  fi
  runs=$(grep -o 'Done [0-9]* runs' "$log" | tail -1 | grep -o '[0-9]*' || true)
  [ -n "$runs" ] || runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  printf '%-22s %12s %8s %8s %s\n' "$target" "$runs" "$seconds" "$(ls "corpus/$target" | wc -l)" "$status"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashes or errors in: ${failed[*]} (see fuzz/logs/ and fuzz/artifacts/)" >&2
  exit 1
fi
