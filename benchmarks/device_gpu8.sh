#!/usr/bin/env bash
# The runs of the eight-GPU issue, on one machine with 8 GPUs: one worker and one DDP rank per
# GPU (DDP over NCCL), ResNet-18 and ResNet-50, global batch 512 and 1024; no injection, the
# default bursty injection, and the bundled Lambda trace scaled so that a straggler is about
# three steps late (--time-scale auto). JSON lands in $1/results.tgz with GPU utilisation; rebuild
# tables with `python benchmarks/versus_report.py DIR`. Further arguments pick models.
set -u
out=${1:?usage: device_gpu8.sh OUT_DIR [resnet18] [resnet50]}
shift
models=${*:-resnet18 resnet50}
mkdir -p "$out/tmp"
py=${PYTHON:-python3}
trace=traces/lambda-cnn-w256-r30-canada.csv
coded=uncoded,gc-s1,gc-s2-earliest,msgc-earliest,msgc-gap,uncoded-pipelined,gc-s2-earliest-pipelined,msgc-earliest-pipelined,msgc-lam3-gap-pipelined,gc-s2-earliest-arrival,msgc-gap-arrival,uncoded-arrival
common=(--workers 8 --gpus-per-worker 1 --jobs 40)
source "$(dirname "$0")/device_common.sh"
start_gpu_sampling
for model in $models; do
  for batch in 512 1024; do
    run "$model-b$batch-none" 900 --model $model --batch-size $batch --inject none \
      --schemes uncoded,uncoded-pipelined,gc-s1,gc-s1-pipelined
    run "$model-b$batch-bursty" 900 --model $model --batch-size $batch --schemes $coded
    run "$model-b$batch-trace" 900 --model $model --batch-size $batch --schemes $coded \
      --inject-trace $trace --time-scale auto
  done
done
stop_gpu_sampling
pack_results
