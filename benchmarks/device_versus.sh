#!/usr/bin/env bash
# The measured runs behind docs/RESULTS.md's "gcode against torch DDP" and GPU tables, on a machine with
# >= 16 cores and a GPU (JSON results and each gcode row's per-round logs land in
# $1/results.tgz; tables and plots are rebuilt from the JSON with
# `python benchmarks/versus_report.py DIR`). Further arguments pick runs by name (default: all).
set -u
out=${1:?usage: device_versus.sh OUT_DIR [RUN ...]}
shift
want=" ${*:-gpu mlp-wide-none mlp-wide-none-cpu mlp-wide mlp mlp-none mlp-none-cpu resnet18-gpu resnet18-cpu resnet18-cpu-lam3 resnet18-cpu-gap15 resnet18-cpu-arrival resnet18-cpu-cyclic resnet18-cpu-arrival-gap10} "
mkdir -p "$out/tmp"
py=${PYTHON:-python3}
BURSTY=uncoded,gc-s2,gc-s2-earliest,msgc-earliest,msgc-gap,uncoded-pipelined,gc-s2-earliest-pipelined,msgc-earliest-pipelined,msgc-gap-pipelined,gc-s2-earliest-arrival,msgc-gap-arrival
NONE=uncoded,gc-s1,uncoded-pipelined,gc-s1-pipelined
run() {  # name, then gcode bench versus flags (LIMIT: seconds, default 400; REPEATS: --repeats)
  local name=$1; shift
  [[ $want == *" $name "* ]] || return 0
  timeout ${LIMIT:-400} $py -m gcode bench versus --out "$out/tmp/$name" ${REPEATS:+--repeats $REPEATS} \
    --log-dir "$out/tmp/$name/logs" "$@" 2>&1 | grep -E "^\| |Best|^Stragglers" | tail -14
  cp "$out/tmp/$name"/bench_versus_*.json "$out/versus_$name.json" 2>/dev/null
  for log in "$out/tmp/$name"/logs/*.jsonl; do
    [[ -e $log ]] && cp "$log" "$out/versus_$name.$(basename "$log" .jsonl).rounds.jsonl"
  done
}
if [[ $want == *" gpu "* ]]; then
  timeout 300 $py benchmarks/bench_gpu.py --jobs 10 --out "$out/tmp/gpu" 2>&1 | grep -E "^\||GC-FR"
  cp "$out"/tmp/gpu/*.json "$out/" 2>/dev/null
fi
run mlp-wide-none --model mlp-wide --inject none --schemes $NONE
run mlp-wide-none-cpu --model mlp-wide --inject none --schemes $NONE --coordinator-device cpu
run mlp-wide --model mlp-wide --schemes $BURSTY
run mlp --model mlp --schemes $BURSTY
run mlp-none --model mlp --inject none --schemes $NONE
run mlp-none-cpu --model mlp --inject none --schemes $NONE --coordinator-device cpu
run resnet18-gpu --model resnet18 --gpus-per-worker 0.125 --jobs 20 \
  --schemes uncoded,gc-s2-earliest,msgc-earliest,msgc-gap,uncoded-pipelined,gc-s2-earliest-pipelined
# one CPU step of ResNet-18 takes seconds: 16 steps of DDP and one gcode row fill a 10-minute
# call, so each M-SGC row has a run (and a call) of its own: for the injected (1,2,2), and for
# (1,2,3), which has the same load at n = 8
LIMIT=590 run resnet18-cpu --model resnet18 --jobs 16 --schemes msgc-gap-pipelined
LIMIT=590 run resnet18-cpu-lam3 --model resnet18 --jobs 16 --schemes msgc-lam3-gap-pipelined
# the gap above the on-time workers' spread (about 1.5 s of a 10 s round on these machines)
LIMIT=590 run resnet18-cpu-gap15 --model resnet18 --jobs 16 --gap 0.15 --schemes msgc-gap-pipelined
# the same with dispatch at arrival: arrived workers start their next round instead of idling
# until the cut (gcode train --dispatch arrival)
LIMIT=590 run resnet18-cpu-arrival --model resnet18 --jobs 16 --gap 0.15 --schemes msgc-gap-arrival
# the same with M-SGC's cyclic code: 96 samples a worker a round against FR's 102-103
LIMIT=590 run resnet18-cpu-cyclic --model resnet18 --jobs 16 --gap 0.15 --schemes msgc-cyclic-gap-arrival
# at arrival with the gap the replays of the three calls above favour (sim_replay_live.py --policy);
# run in two calls (results: versus_resnet18-cpu-arrival-gap10 and -gap10b)
LIMIT=590 run resnet18-cpu-arrival-gap10 --model resnet18 --jobs 16 --gap 0.1 --schemes msgc-gap-arrival
source "$(dirname "$0")/device_common.sh"
pack_results
