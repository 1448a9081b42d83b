#!/usr/bin/env bash
# The 2-GPU runs of the README's GPU table (issue: eight GPUs, one worker each): one worker and
# one DDP rank per GPU (NCCL), ResNet-18 and ResNet-50, no injection and bursty injection
# (lam=1: two workers). JSON lands in $1; rebuild tables with benchmarks/versus_report.py DIR.
set -u
out=${1:?usage: device_gpu2.sh OUT_DIR}
mkdir -p "$out/tmp"
py=${PYTHON:-python3}
run() {  # name, then gcode bench versus flags
  local name=$1; shift
  echo "$name $(date +%s.%N)" >> "$out/run_starts.txt"
  timeout 170 $py -m gcode bench versus --workers 2 --gpus-per-worker 1 --jobs 20 \
    --out "$out/tmp/$name" "$@" 2>&1 | grep -E "^\| |Best" | tail -8
  cp "$out/tmp/$name"/bench_versus_*.json "$out/versus_$name.json" 2>/dev/null
}
# GPU utilisation of every GPU, every 200 ms, for the whole script (matched to runs by time)
nvidia-smi --query-gpu=timestamp,index,utilization.gpu --format=csv,noheader -lms 200 \
  > "$out/gpu_util.csv" 2>/dev/null &
smi=$!
for model in resnet18 resnet50; do
  run "$model-2gpu-none" --model $model --inject none --schemes uncoded,uncoded-pipelined,gc-s1
  run "$model-2gpu" --model $model --inject-param lam=1 \
    --schemes uncoded,gc-s1,gc-s1-pipelined,uncoded-pipelined
done
echo "end $(date +%s.%N)" >> "$out/run_starts.txt"
kill $smi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
rm -rf "$out/tmp"
