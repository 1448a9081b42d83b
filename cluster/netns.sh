#!/usr/bin/env bash
# cluster/netns.sh: Ray nodes on THIS machine, each in its own network namespace with its link
# limited by tc, one command run beside the head, then everything torn down.  --help for more.
set -uo pipefail

usage() {
    cat <<'EOF'
Usage: cluster/netns.sh [OPTIONS] -- COMMAND [ARGS...]

Build an emulated multi-node network on this machine: a head namespace PREFIX0 and worker
namespaces PREFIX1..PREFIXN, joined by a bridge that lives in a namespace of its own (PREFIXbr),
each node's link limited to RATE both ways by tc's tbf qdisc. Node i has address 10.77.0.(i+1)
on its link; these addresses exist only inside the namespaces, and no namespace has a route
anywhere else. A Ray head (HEAD_CPUS CPUs) starts in PREFIX0 and a Ray worker node in each
other namespace; COMMAND then runs in PREFIX0 with

  RAY_ADDRESS=10.77.0.1:6379  GCODE_NETNS_HEAD_IP=10.77.0.1  GCODE_NETNS_RATE=RATE
  GCODE_NETNS_NODE_IPS="10.77.0.2 ... 10.77.0.(N+1)"  (the worker nodes)

A Python driver there connects with ray.init(address=os.environ["RAY_ADDRESS"],
_node_ip_address=os.environ["GCODE_NETNS_HEAD_IP"]). On exit (success, error, timeout, Ctrl-C)
every process inside the namespaces is stopped (SIGTERM, then SIGKILL) and the namespaces are
deleted. It never runs `ray stop`. tc's netem (latency) is not assumed: the links have bandwidth
limits only; model latency in the simulator (gcode simulate --network).

Options:
  --nodes N          worker nodes (default 4)
  --rate RATE        each node's link, as tc writes rates (default 1gbit; e.g. 200mbit, 10gbit)
  --cpus-per-node C  logical CPUs of each worker node (default 1)
  --head-cpus C      logical CPUs of the head node (default 0: the driver's node only)
  --start-batch B    worker nodes started at once (default 4; fewer on a loaded machine)
  --timeout S        bound in seconds on everything: setup, COMMAND, teardown (default 900)
  --prefix P         namespace prefix, 2-6 of [a-z0-9] starting with a letter (default gx<pid mod 1000>)
  --temp-dir DIR     an empty dir for Ray's files, node<i>/ per node (default a fresh /tmp/gnx.XXXXXX)
  --keep-temp        keep the temp dir (Ray logs) after a successful run (always kept after a failure)
  -h, --help         this text

Needs root, iproute2 (ip, tc) and the tbf qdisc. Executables: $GCODE_PYTHON if set, else
<repo>/.venv/bin/python, else python3; ray from the same directory, else PATH. The checkout's root
is put first on PYTHONPATH. Exit status: COMMAND's (124 when --timeout ends it); 2 for usage
errors; 3 when the network or the cluster could not be set up.

Example (the collective measurements of docs/COLLECTIVE.md):
  cluster/netns.sh --nodes 4 --rate 1gbit -- .venv/bin/python benchmarks/netns_collective.py
EOF
}

die() { echo "netns.sh: error: $*" >&2; exit "${2:-2}"; }
log() { echo "netns.sh: $*" >&2; }

NODES=4 RATE=1gbit CPUS=1 HEAD_CPUS=0 BATCH=4 TIMEOUT=900 PREFIX="gx$(( $$ % 1000 ))" TEMP_DIR="" KEEP_TEMP=0
CMD=()
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
need_val() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --nodes) need_val "$@"; NODES=$2; shift 2 ;;
        --rate) need_val "$@"; RATE=$2; shift 2 ;;
        --cpus-per-node) need_val "$@"; CPUS=$2; shift 2 ;;
        --head-cpus) need_val "$@"; HEAD_CPUS=$2; shift 2 ;;
        --start-batch) need_val "$@"; BATCH=$2; shift 2 ;;
        --timeout) need_val "$@"; TIMEOUT=$2; shift 2 ;;
        --prefix) need_val "$@"; PREFIX=$2; shift 2 ;;
        --temp-dir) need_val "$@"; TEMP_DIR=$2; shift 2 ;;
        --keep-temp) KEEP_TEMP=1; shift ;;
        --) shift; CMD=("$@"); break ;;
        *) die "unknown option '$1' (the command goes after '--'; see --help)" ;;
    esac
done
[[ ${#CMD[@]} -gt 0 ]] || die "no command: cluster/netns.sh [OPTIONS] -- COMMAND (see --help)"
is_uint "$NODES" && (( NODES >= 1 && NODES <= 200 )) || die "--nodes must be an integer in 1..200, got '$NODES'"
[[ "$RATE" =~ ^[0-9]+(\.[0-9]+)?(bit|kbit|mbit|gbit)$ ]] ||
    die "--rate must be a number and a unit among bit, kbit, mbit, gbit (e.g. 1gbit), got '$RATE'"
is_uint "$CPUS" && (( CPUS >= 1 )) || die "--cpus-per-node must be an integer >= 1, got '$CPUS'"
is_uint "$HEAD_CPUS" || die "--head-cpus must be an integer >= 0, got '$HEAD_CPUS'"
is_uint "$BATCH" && (( BATCH >= 1 )) || die "--start-batch must be an integer >= 1, got '$BATCH'"
is_uint "$TIMEOUT" && (( TIMEOUT >= 30 )) || die "--timeout must be whole seconds >= 30, got '$TIMEOUT'"
[[ "$PREFIX" =~ ^[a-z][a-z0-9]{1,5}$ ]] || die "--prefix must be 2-6 of [a-z0-9] starting with a letter, got '$PREFIX'"
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces and tc)" 3
command -v ip >/dev/null && command -v tc >/dev/null || die "needs iproute2 (ip and tc)" 3
if ip netns list | awk '{print $1}' | grep -qE "^${PREFIX}([0-9]+|br)$"; then
    die "namespaces ${PREFIX}* already exist (another run?); pick another --prefix" 3
fi

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
if [[ -n "${GCODE_PYTHON:-}" ]]; then PY=$GCODE_PYTHON
elif [[ -x "$REPO/.venv/bin/python" ]]; then PY="$REPO/.venv/bin/python"
else PY=$(command -v python3) || die "no python3"; fi
BIN_DIR=$(dirname "$PY")
if [[ -x "$BIN_DIR/ray" ]]; then RAY="$BIN_DIR/ray"
else RAY=$(command -v ray) || die "no ray executable next to $PY or on PATH"; fi

# tbf needs a burst of at least one timer tick of traffic: 1 ms at RATE, at least 32 KiB
rate_bps=$("$PY" -c 'import re,sys; v,u=re.fullmatch(r"([0-9.]+)([a-z]+)",sys.argv[1]).groups()
print(int(float(v)*{"bit":1,"kbit":1e3,"mbit":1e6,"gbit":1e9}[u]))' "$RATE")
BURST=$(( rate_bps / 8 / 1000 ))
(( BURST < 32768 )) && BURST=32768

# ---------------------------------------------------------------- state + teardown
if [[ -z "$TEMP_DIR" ]]; then
    TEMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gnx.XXXXXX") || die "mktemp failed" 3
else
    mkdir -p "$TEMP_DIR" && [[ -z "$(ls -A "$TEMP_DIR")" ]] || die "--temp-dir $TEMP_DIR must be an empty dir"
fi
STATUS=0 CLEANED=0 WATCHDOG=""
namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${PREFIX}([0-9]+|br)$"; }
teardown() {
    [[ $CLEANED -eq 1 ]] && return
    CLEANED=1
    trap '' INT TERM HUP
    [[ -n "$WATCHDOG" ]] && kill "$WATCHDOG" 2>/dev/null
    local ns pids left=""
    for sig in TERM KILL; do
        for ns in $(namespaces); do
            pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
            [[ -n "${pids// /}" ]] && kill -s "$sig" $pids 2>/dev/null
        done
        [[ $sig == TERM ]] && for _ in $(seq 1 30); do  # up to 3 s for a clean exit
            left=""; for ns in $(namespaces); do left+=$(ip netns pids "$ns" 2>/dev/null); done
            [[ -z "$left" ]] && break; sleep 0.1
        done
    done
    sleep 0.3
    for ns in $(namespaces); do
        if [[ -n "$(ip netns pids "$ns" 2>/dev/null)" ]]; then
            log "error: processes survived in $ns"
            [[ $STATUS -eq 0 ]] && STATUS=4
        fi
        ip netns del "$ns" 2>/dev/null || log "error: could not delete namespace $ns"
    done
    [[ -z "$(namespaces)" ]] && log "removed namespaces ${PREFIX}0..${PREFIX}${NODES} and ${PREFIX}br"
    if [[ $STATUS -eq 0 && $KEEP_TEMP -eq 0 ]]; then rm -rf "$TEMP_DIR"
    else log "Ray logs kept in $TEMP_DIR/node*/session_latest/logs"; fi
}
on_exit() { local rc=$?; [[ $STATUS -eq 0 ]] && STATUS=$rc; teardown; exit "$STATUS"; }
trap on_exit EXIT
trap 'STATUS=130; log "interrupted, tearing down"; exit 130' INT
on_term() {
    if [[ -e "$TEMP_DIR/.timed_out" ]]; then STATUS=124; log "--timeout ${TIMEOUT}s reached, tearing down"
    else STATUS=143; log "stopped by a signal, tearing down"; fi
    exit "$STATUS"
}
trap on_term TERM HUP
( trap 'kill $nap 2>/dev/null; exit 0' TERM
  sleep "$TIMEOUT" & nap=$!; wait $nap; touch "$TEMP_DIR/.timed_out"; kill -TERM $$ ) >/dev/null 2>&1 &
WATCHDOG=$!

# ---------------------------------------------------------------- network
addr() { echo "10.77.0.$(( $1 + 1 ))"; }
BR="${PREFIX}br"
ip netns add "$BR" && ip -n "$BR" link add br0 type bridge && ip -n "$BR" link set br0 up &&
    ip -n "$BR" link set lo up || die "cannot create the bridge namespace $BR" 3
for ((i = 0; i <= NODES; i++)); do
    ns="$PREFIX$i"
    { ip netns add "$ns" &&
      ip link add "v$PREFIX$i" type veth peer name "b$PREFIX$i" &&
      ip link set "v$PREFIX$i" netns "$ns" && ip link set "b$PREFIX$i" netns "$BR" &&
      ip -n "$ns" link set "v$PREFIX$i" name eth0 &&
      ip -n "$ns" addr add "$(addr "$i")/24" dev eth0 &&
      ip -n "$ns" link set eth0 up && ip -n "$ns" link set lo up &&
      ip -n "$BR" link set "b$PREFIX$i" master br0 && ip -n "$BR" link set "b$PREFIX$i" up &&
      ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$RATE" burst "$BURST" latency 100ms &&
      ip netns exec "$BR" tc qdisc add dev "b$PREFIX$i" root tbf rate "$RATE" burst "$BURST" latency 100ms
    } || die "cannot set up node $i (namespace $ns)" 3
done
log "network: ${PREFIX}0 (head, $(addr 0)) and $NODES nodes ${PREFIX}1..${PREFIX}${NODES}, $RATE per link (burst $BURST B)"

# ---------------------------------------------------------------- Ray
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
HEAD="$(addr 0):6379"
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
start() {  # $1: node index; rest: ray start arguments
    local i=$1; shift
    mkdir -p "$TEMP_DIR/node$i"
    in_ns "$PREFIX$i" env RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1 "$RAY" start --node-ip-address "$(addr "$i")" \
        --temp-dir "$TEMP_DIR/node$i" --disable-usage-stats "$@" >"$TEMP_DIR/start$i.log" 2>&1 ||
        { tail -n 20 "$TEMP_DIR/start$i.log" >&2; die "ray start failed on node $i" 3; }
}
start 0 --head --port 6379 --num-cpus "$HEAD_CPUS" --include-dashboard false
# worker nodes start BATCH at a time: Ray gives a raylet 30 s to register, which a loaded machine
# starting many at once can miss
starters=()
for ((i = 1; i <= NODES; i++)); do
    start "$i" --address "$HEAD" --num-cpus "$CPUS" &
    starters+=($!)
    if (( ${#starters[@]} >= BATCH || i == NODES )); then
        for job in "${starters[@]}"; do wait "$job" || die "a worker node did not start" 3; done
        starters=()
    fi
done
log "Ray: head $HEAD, worker nodes up"

# ---------------------------------------------------------------- the command
ips=""; for ((i = 1; i <= NODES; i++)); do ips+="${ips:+ }$(addr "$i")"; done
in_ns "${PREFIX}0" env RAY_ADDRESS="$HEAD" GCODE_NETNS_HEAD_IP="$(addr 0)" GCODE_NETNS_RATE="$RATE" \
    GCODE_NETNS_NODE_IPS="$ips" RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1 "${CMD[@]}" &
CMD_PID=$!
wait "$CMD_PID"
STATUS=$?
[[ $STATUS -eq 0 ]] || log "the command exited with status $STATUS"
exit "$STATUS"
