#!/usr/bin/env bash
# Tracker speed and accuracy side by side with OpenCV's calcOpticalFlowPyrLK on the same frames
# (512x384, 24 frames, 15x15 grid, window 21, 3 levels, one thread each). Not a test.
#
#   LK_SPEED=path/to/lk_speed PYTHON=path/to/python3 crates/magma-traces/benches/lk_vs_opencv.sh OUT_DIR [SCENE...]
#
# LK_SPEED is the `lk_speed` example built with the crate optimised (see its doc comment);
# PYTHON needs opencv-python-headless and numpy. Prints one JSON line per scene for each side.
set -euo pipefail
out=${1:?usage: lk_vs_opencv.sh OUT_DIR [SCENE...]}
shift
scenes=("${@:-pan}")
here=$(dirname "$0")
for scene in "${scenes[@]}"; do
  "${LK_SPEED:?set LK_SPEED to the built lk_speed example}" "$out/$scene" "$scene"
  OMP_NUM_THREADS=1 "${PYTHON:-python3}" "$here/opencv_lk.py" "$out/$scene" | tr -d '\n '
  echo
done
