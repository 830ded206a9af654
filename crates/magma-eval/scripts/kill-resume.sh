#!/usr/bin/env bash
# Kills `magma eval run` with SIGKILL mid-run, reruns it, and checks that every record was
# answered exactly once (no loss, no duplicates) and that the rerun only answered the rest.
# Usage: crates/magma-eval/scripts/kill-resume.sh [path/to/magma]   (default: target/debug/magma)
set -euo pipefail
MAGMA=${1:-target/debug/magma}
SAMPLES=$(cd "$(dirname "$0")/../samples" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp "$SAMPLES/pope/COCO_val2014_000000000073.jpg" "$WORK/"
for i in $(seq 1 40); do
  printf '{"question_id": %d, "image": "COCO_val2014_000000000073.jpg", "text": "Is there a thing %d in the image?", "label": "%s", "category": "random"}\n' \
    "$i" "$i" "$([ $((i % 2)) = 0 ] && echo yes || echo no)"
done > "$WORK/data.jsonl"
run() { "$MAGMA" eval run --benchmark pope --data "$WORK/data.jsonl" --out "$WORK/out" --max-new-tokens 400 "$@"; }
# the binary itself in the background (not a shell function: its subshell would take the kill)
"$MAGMA" eval run --benchmark pope --data "$WORK/data.jsonl" --out "$WORK/out" --max-new-tokens 400 > "$WORK/first.log" 2>&1 &
PID=$!
for _ in $(seq 1 300); do
  [ "$(cat "$WORK/out/predictions.jsonl" 2>/dev/null | wc -l)" -ge 5 ] && break
  sleep 0.1
done
kill -9 "$PID"; wait "$PID" 2>/dev/null || true
BEFORE=$(wc -l < "$WORK/out/predictions.jsonl")
run --json > "$WORK/second.json" 2> "$WORK/second.log" || { cat "$WORK/second.log"; exit 1; }
python3 - "$WORK" "$BEFORE" <<'PY'
import json, re, sys
work, before = sys.argv[1], int(sys.argv[2])
ids = [json.loads(l)["question_id"] for l in open(f"{work}/out/predictions.jsonl")]
assert sorted(ids) == list(range(1, 41)), f"lost or duplicated records: {sorted(ids)}"
log = open(f"{work}/second.log").read()
m = re.search(r"(\d+) answered now, (\d+) resumed", log)
assert m and int(m.group(1)) + int(m.group(2)) == 40 and int(m.group(2)) >= before, log
print(f"killed after {before} predictions; rerun answered {m.group(1)}, resumed {m.group(2)}; 40 unique predictions")
PY
