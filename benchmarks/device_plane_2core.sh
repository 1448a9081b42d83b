#!/usr/bin/env bash
# Issue 26's 2-core acceptance of the collective data plane, measured on 2 cores of the GPU
# machine (taskset -c 0,1; no GPU visible), because the 2-core development box is shared and
# loaded while it is developed: CPU workers, mlp, 4 workers, 40 one-model steps per row.
#   bursty  --inject-param base=0.3, both planes, the one-model exact schemes against DDP
#   none    --inject none, uncoded on both planes against DDP (the same allreduce)
# Usage: benchmarks/device_plane_2core.sh OUT_DIR ; JSON lands in OUT_DIR (copy it to
# benchmarks/results/). Each row trains one model for 40 steps.
set -u
out=${1:?usage: device_plane_2core.sh OUT_DIR}
py=${PYTHON:-python3}
mkdir -p "$out"
echo "cores used: 0,1 of $(nproc); torch: $($py -c 'import torch; print(torch.__version__)')"
run() {  # name, then gcode bench versus flags
  local name=$1; shift
  CUDA_VISIBLE_DEVICES="" timeout ${LIMIT:-260} taskset -c 0,1 $py -m gcode bench versus --model mlp \
    --workers 4 --coordinator-device cpu --out "$out/tmp/$name" "$@" 2>&1 \
    | grep -E "^\| |Best|vs DDP|Error|error" | tail -16
  cp "$out/tmp/$name"/bench_versus_*.json "$out/versus_2core_$name.json" 2>/dev/null
}
run collective-bursty --data-plane collective --inject-param base=0.3 --schemes uncoded,gc-s1-earliest,gc-s2-earliest,auto
run collective-none --data-plane collective --inject none --schemes uncoded
run star-none --data-plane star --inject none --schemes uncoded
rm -rf "$out/tmp"
