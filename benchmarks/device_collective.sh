#!/usr/bin/env bash
# The collective data plane on the GPU machine (issue 26), in two parts, each its own device call:
#   functional  gloo on CUDA tensors (benchmarks/device_collective.py): every scheme's coded,
#               coefficient-folded GPU accumulators allreduced equal the direct fp64 sum within
#               1e-6, replicas bit-identical. One GPU: a functional check; NCCL figures across
#               GPUs are still to come.
#   versus      the 16-core acceptance, once `gcode bench versus --data-plane` exists: mlp-wide,
#               8 workers, 40 steps of one model per row, both planes against DDP, no injection
#               and bursty, with coordinator_bytes_per_round in every gcode row and, on the
#               collective plane, where a decode's seconds go (plane_s_per_decode: fold,
#               allreduce, step, check, as a worker timed them).
#   zero        the same collective rows with --zero 1 (ZeRO-1: reduce-scatter, shard step,
#               all-gather), no injection and bursty, beside zero=0's in the versus part.
# Usage: benchmarks/device_collective.sh OUT_DIR [functional] [versus] [zero]   (default: functional)
# JSON lands in OUT_DIR; copy it to benchmarks/results/.
set -u
out=${1:?usage: device_collective.sh OUT_DIR [functional] [versus]}
shift
want=" ${*:-functional} "
py=${PYTHON:-python3}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "cores: $(nproc); torch: $($py -c 'import torch; print(torch.__version__)')"
if [[ $want == *" functional "* ]]; then
  timeout 300 $py benchmarks/device_collective.py --world 4 --out "$out/device_collective.json"
fi
if [[ $want == *" versus "* || $want == *" zero "* ]]; then
  if ! $py -m gcode bench versus --help | grep -q -- --data-plane; then
    echo "versus: gcode bench versus has no --data-plane on this checkout; skipped"
  else
    run() {  # name, then gcode bench versus flags
      local name=$1; shift
      timeout ${LIMIT:-150} $py -m gcode bench versus --model mlp-wide --workers 8 --out "$out/tmp/$name" \
        "$@" 2>&1 | grep -E "^\| |Best|^Stragglers" | tail -14
      cp "$out/tmp/$name"/bench_versus_*.json "$out/versus_$name.json" 2>/dev/null
    }
    if [[ $want == *" versus "* ]]; then
      # the acceptance first (no injection: uncoded >= 0.95x DDP; bursty: the best exact one-model
      # scheme >= 1.4x DDP; coordinator_bytes_per_round <= 64 KB), then the star's bytes beside it
      run mlp-wide-collective-none --data-plane collective --inject none --schemes uncoded,gc-s1,uncoded-pipelined
      run mlp-wide-collective --data-plane collective --schemes uncoded,gc-s2-earliest,gc-s2-earliest-arrival
      LIMIT=${STAR_LIMIT:-120} run mlp-wide-star-none --data-plane star --inject none --schemes uncoded
      LIMIT=${STAR_LIMIT:-120} run mlp-wide-star --data-plane star --schemes uncoded,gc-s2-earliest
    fi
    if [[ $want == *" zero "* ]]; then
      run mlp-wide-collective-zero1-none --data-plane collective --zero 1 --inject none --schemes uncoded
      run mlp-wide-collective-zero1 --data-plane collective --zero 1 --schemes uncoded,gc-s2-earliest
    fi
    rm -rf "$out/tmp"
    for f in "$out"/versus_*.json; do
      [[ -e $f ]] && $py -c 'import json, sys
d = json.load(open(sys.argv[1]))
for r in d["rows"]:
    if r.get("scheme") != "ddp":
        phases = {k: round(1e3 * v, 1) for k, v in (r.get("plane_s_per_decode") or {}).items()}
        print(sys.argv[1].rsplit("/", 1)[-1], r.get("row") or r.get("scheme"), r.get("data_plane"),
              "vs_ddp", round(r.get("vs_ddp") or 0, 3), "coordinator_bytes_per_round",
              r.get("coordinator_bytes_per_round"), "overhead_ms", round(1e3 * (r.get("overhead_s_per_round") or 0), 1),
              "decode_ms_by_phase", phases)' "$f"
    done
  fi
fi
