# Sourced by the device_*.sh scripts (device_versus.sh uses only pack_results): run one `gcode
# bench versus` into $out, sample GPU utilisation, pack results. Needs $out, $py and the array
# $common (flags every run of the script shares).
run() {  # name, timeout seconds, then gcode bench versus flags
  local name=$1 limit=$2; shift 2
  echo "$name $(date +%s.%N)" >> "$out/run_starts.txt"
  timeout "$limit" $py -m gcode bench versus "${common[@]}" --out "$out/tmp/$name" "$@" 2>&1 \
    | grep -E "^\| |Best" | tail -10
  cp "$out/tmp/$name"/bench_versus_*.json "$out/versus_$name.json" 2>/dev/null
}
start_gpu_sampling() {  # every GPU's utilisation every 200 ms, matched to runs by time
  nvidia-smi --query-gpu=timestamp,index,utilization.gpu --format=csv,noheader -lms 200 \
    > "$out/gpu_util.csv" 2>/dev/null &
  smi=$!
}
pack_results() {  # one archive: the device machine returns only a few files per call
  rm -rf "$out/tmp"
  (cd "$out" && shopt -s nullglob && files=(*.json *.jsonl *.csv *.txt) &&
    tar czf results.tgz --remove-files -- "${files[@]}")
}
stop_gpu_sampling() {
  echo "end $(date +%s.%N)" >> "$out/run_starts.txt"
  kill "$smi"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
}
