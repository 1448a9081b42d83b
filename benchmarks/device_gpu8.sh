#!/usr/bin/env bash
# The runs of the eight-GPU issue, on one machine with 8 GPUs: one worker and one DDP rank per
# GPU (DDP over NCCL), ResNet-18 and ResNet-50, global batch 512 and 1024; no injection, the
# default bursty injection, and the bundled Lambda trace scaled so that a straggler is about
# three steps late (--time-scale auto). JSON lands in $1 with GPU utilisation samples; rebuild
# tables with `python benchmarks/versus_report.py DIR`. Further arguments pick models.
set -u
out=${1:?usage: device_gpu8.sh OUT_DIR [resnet18] [resnet50]}
shift
models=${*:-resnet18 resnet50}
mkdir -p "$out/tmp"
py=${PYTHON:-python3}
trace=traces/lambda-cnn-w256-r30-canada.csv
coded=uncoded,gc-s1,gc-s2-earliest,msgc-earliest,uncoded-pipelined,gc-s2-earliest-pipelined,msgc-earliest-pipelined
run() {  # name, then gcode bench versus flags
  local name=$1; shift
  echo "$name $(date +%s.%N)" >> "$out/run_starts.txt"
  timeout 900 $py -m gcode bench versus --workers 8 --gpus-per-worker 1 --jobs 40 \
    --out "$out/tmp/$name" "$@" 2>&1 | grep -E "^\| |Best" | tail -10
  cp "$out/tmp/$name"/bench_versus_*.json "$out/versus_$name.json" 2>/dev/null
}
nvidia-smi --query-gpu=timestamp,index,utilization.gpu --format=csv,noheader -lms 200 \
  > "$out/gpu_util.csv" 2>/dev/null &
smi=$!
for model in $models; do
  for batch in 512 1024; do
    run "$model-b$batch-none" --model $model --batch-size $batch --inject none \
      --schemes uncoded,uncoded-pipelined,gc-s1,gc-s1-pipelined
    run "$model-b$batch-bursty" --model $model --batch-size $batch --schemes $coded
    run "$model-b$batch-trace" --model $model --batch-size $batch --schemes $coded \
      --inject-trace $trace --time-scale auto
  done
done
echo "end $(date +%s.%N)" >> "$out/run_starts.txt"
kill $smi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
rm -rf "$out/tmp"
