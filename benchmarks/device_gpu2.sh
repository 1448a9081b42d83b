#!/usr/bin/env bash
# The 2-GPU runs of docs/RESULTS.md's two-GPU table (issue: eight GPUs, one worker each): one worker and
# one DDP rank per GPU (NCCL), ResNet-18 and ResNet-50, no injection and bursty injection
# (lam=1: two workers); workers read ahead (--prefetch auto = on for GPU workers), and one
# control run per model does not (--prefetch off). JSON lands in $1/results.tgz; rebuild tables
# with benchmarks/versus_report.py DIR. Further arguments pick runs by name (default: all).
set -u
out=${1:?usage: device_gpu2.sh OUT_DIR [RUN ...]}
shift
want=" $* "
mkdir -p "$out/tmp"
py=${PYTHON:-python3}
common=(--workers 2 --gpus-per-worker 1 --jobs 20)
source "$(dirname "$0")/device_common.sh"
pick() { [[ $want == "  " || $want == *" $1 "* ]] && run "$@"; return 0; }
start_gpu_sampling
for model in resnet18 resnet50; do
  pick "$model-2gpu-ahead-none" 170 --model $model --inject none --schemes uncoded,uncoded-pipelined
  pick "$model-2gpu-noprefetch-none" 170 --model $model --inject none --prefetch off \
    --schemes uncoded,uncoded-pipelined
  pick "$model-2gpu-ahead" 170 --model $model --inject-param lam=1 \
    --schemes uncoded,uncoded-pipelined,gc-s1-pipelined,gc-s1-earliest,gc-s1-earliest-pipelined,gc-s1-earliest-arrival
done
stop_gpu_sampling
pack_results
