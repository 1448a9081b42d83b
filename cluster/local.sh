#!/usr/bin/env bash
# cluster/local.sh: a multi-node Ray cluster on THIS machine (loopback only), one gcode train run
# on it, then a scoped teardown of exactly what this script started.  `cluster/local.sh --help`.
set -uo pipefail

usage() {
    cat <<'EOF'
Usage: cluster/local.sh [OPTIONS] [-- GCODE_TRAIN_ARGS...]

Start a Ray head plus N worker "nodes" on this machine, all bound to loopback addresses
(head 127.0.0.2, workers 127.0.0.3, 127.0.0.4, ...), run
    gcode train --address <head>:<port> GCODE_TRAIN_ARGS...
against that cluster, and on exit (success, error, Ctrl-C, SIGTERM) stop only the Ray
processes this script started.  Nothing binds or contacts a non-loopback address.

Examples:
  cluster/local.sh --nodes 2 -- --workers 4 --jobs 6 --json
  cluster/local.sh --nodes 3 --cpus-per-node 2 -- --workers 6 --scheme msgc --B 1 --W 2 --lam 2
  cluster/local.sh --auth token --nodes 2 -- --workers 4 --jobs 10
  cluster/local.sh --hold --nodes 2        # keep the cluster up until Ctrl-C (use it yourself)

Options:
  --nodes N            worker nodes (default 2); node i listens on 127.0.0.(2+i)
  --cpus-per-node C    logical CPUs each worker node advertises, an integer (default 1).
                       gcode gives each worker actor min(1, free CPUs / workers) CPUs, so
                       --workers larger than the CPU total means fractional CPUs per actor
  --head-cpus C        logical CPUs of the head node (default 0: like the cloud configs, the
                       head runs the driver only and no gcode worker actors)
  --head-ip IP         head address (default 127.0.0.2; must be a 127.x.y.z address)
  --port P             GCS port of the head (default: a free port on the head address)
  --temp-dir DIR       an empty dir for Ray's files: the head's, and node<i>/ for worker node i
                       (default: a fresh /tmp/gcl.XXXXXX; keep it short, Ray's socket paths
                       are length-limited). Processes are identified by their session and
                       this dir, never by name
  --keep-temp          keep the temp dir (Ray logs) after a successful run; it is always kept,
                       and its path printed, after a failure
  --auth MODE          disabled (default) or token.  token: RAY_AUTH_MODE=token for every node
                       and the driver; the token is $RAY_AUTH_TOKEN or the file
                       $RAY_AUTH_TOKEN_PATH if set, else a fresh random token written to
                       <temp-dir>/auth_token (~/.ray/auth_token is never read or written)
  --grace S            seconds each teardown stage waits after SIGTERM before SIGKILL (default 3)
  --start-timeout S    bound on each `ray start` (default 90)
  --hold               start the cluster, print its address and environment, and wait for
                       Ctrl-C instead of running gcode train (e.g. to run gcode train or a
                       Python driver yourself with the printed RAY_ADDRESS)
  --installed          run the installed gcode package instead of this checkout's (by default
                       the checkout's root is put first on PYTHONPATH of every node and the
                       driver, so a fresh clone runs its own code)
  -h, --help           this text

Executables: $GCODE if set, else <repo>/.venv/bin/gcode, else `gcode` on PATH; `ray` is taken
from the same directory as gcode, else PATH.

Token auth: local runs default to RAY_AUTH_MODE=disabled (docs/OPERATING.md: with the mode
unset, `ray start --head` turns auth on only when ~/.ray/auth_token happens to exist, which
makes behaviour depend on the machine).  On real clusters keep auth on: see cluster/README.md.

Teardown: each `ray start` runs in its own Unix session; on exit the script signals (raylets,
then the other Ray daemons and workers, then the GCS; SIGTERM, then SIGKILL after --grace)
only processes of those sessions or whose command line names this run's temp dir, checks that
none survived, and removes the temp dir.  It never runs `ray stop`, which would stop every Ray
instance of the user on the machine.

Exit status: gcode train's (130 on Ctrl-C, 143 on SIGTERM); 2 for usage errors; 3 when the
cluster failed to start; 4 when a started process survived teardown.
EOF
}

die() { echo "local.sh: error: $*" >&2; exit "${2:-2}"; }
log() { echo "local.sh: $*" >&2; }

# ---------------------------------------------------------------- arguments
NODES=2 CPUS_PER_NODE=1 HEAD_CPUS=0 HEAD_IP=127.0.0.2 PORT="" TEMP_DIR="" KEEP_TEMP=0
AUTH=disabled GRACE=3 START_TIMEOUT=90 HOLD=0 INSTALLED=0
TRAIN_ARGS=()
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
need_val() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --nodes) need_val "$@"; NODES=$2; shift 2 ;;
        --cpus-per-node) need_val "$@"; CPUS_PER_NODE=$2; shift 2 ;;
        --head-cpus) need_val "$@"; HEAD_CPUS=$2; shift 2 ;;
        --head-ip) need_val "$@"; HEAD_IP=$2; shift 2 ;;
        --port) need_val "$@"; PORT=$2; shift 2 ;;
        --temp-dir) need_val "$@"; TEMP_DIR=$2; shift 2 ;;
        --keep-temp) KEEP_TEMP=1; shift ;;
        --auth) need_val "$@"; AUTH=$2; shift 2 ;;
        --grace) need_val "$@"; GRACE=$2; shift 2 ;;
        --start-timeout) need_val "$@"; START_TIMEOUT=$2; shift 2 ;;
        --hold) HOLD=1; shift ;;
        --installed) INSTALLED=1; shift ;;
        --) shift; TRAIN_ARGS=("$@"); break ;;
        *) die "unknown option '$1' (gcode train arguments go after '--'; see --help)" ;;
    esac
done
is_uint "$NODES" && (( NODES >= 1 && NODES <= 250 )) ||
    die "--nodes must be an integer in 1..250, got '$NODES'"
is_uint "$CPUS_PER_NODE" && (( CPUS_PER_NODE >= 1 )) ||
    die "--cpus-per-node must be an integer >= 1 (ray start takes whole CPUs), got '$CPUS_PER_NODE'"
is_uint "$HEAD_CPUS" || die "--head-cpus must be an integer >= 0, got '$HEAD_CPUS'"
is_uint "$GRACE" || die "--grace must be whole seconds, got '$GRACE'"
is_uint "$START_TIMEOUT" && (( START_TIMEOUT >= 1 )) ||
    die "--start-timeout must be whole seconds >= 1, got '$START_TIMEOUT'"
[[ -z "$PORT" ]] || { is_uint "$PORT" && (( PORT >= 1024 && PORT <= 65535 )); } ||
    die "--port must be in 1024..65535, got '$PORT'"
[[ "$HEAD_IP" =~ ^127\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] ||
    die "--head-ip must be a loopback address 127.x.y.z, got '$HEAD_IP'"
case "$AUTH" in disabled|token) ;; *) die "--auth must be 'disabled' or 'token', got '$AUTH'" ;; esac
if [[ $HOLD -eq 0 ]]; then
    for a in ${TRAIN_ARGS[@]+"${TRAIN_ARGS[@]}"}; do
        [[ "$a" == --address || "$a" == --address=* ]] &&
            die "do not pass --address after '--': local.sh sets it to its own head"
    done
fi
# worker node i (1-based) gets 127.0.0.(2+i), or the next addresses after the head's last octet
HEAD_LAST=${HEAD_IP##*.}
HEAD_PREFIX=${HEAD_IP%.*}
(( HEAD_LAST + NODES <= 254 )) || die "--nodes $NODES does not fit after $HEAD_IP in $HEAD_PREFIX.0/24"

# ---------------------------------------------------------------- executables
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
if [[ -n "${GCODE:-}" ]]; then
    [[ -x "$GCODE" ]] || GCODE_RESOLVED=$(command -v "$GCODE" 2>/dev/null) ||
        die "GCODE=$GCODE is not an executable"
    GCODE=${GCODE_RESOLVED:-$GCODE}
elif [[ -x "$REPO/.venv/bin/gcode" ]]; then
    GCODE="$REPO/.venv/bin/gcode"
elif command -v gcode >/dev/null 2>&1; then
    GCODE=$(command -v gcode)
else
    die "no gcode executable: create $REPO/.venv and 'pip install torch==2.13.0 -e .' there\
 (see cluster/README.md), put gcode on PATH, or set GCODE=/path/to/gcode"
fi
BIN_DIR=$(dirname "$GCODE")
if [[ -x "$BIN_DIR/ray" ]]; then RAY="$BIN_DIR/ray"
elif command -v ray >/dev/null 2>&1; then RAY=$(command -v ray)
else die "no ray executable next to $GCODE or on PATH: pip install 'ray>=2.9' into gcode's environment"; fi
if [[ -x "$BIN_DIR/python" ]]; then PY="$BIN_DIR/python"
elif command -v python3 >/dev/null 2>&1; then PY=$(command -v python3)
else die "no python next to $GCODE or on PATH"; fi

if command -v timeout >/dev/null 2>&1; then TIMEOUT=(timeout -k 5 "$START_TIMEOUT")
elif command -v gtimeout >/dev/null 2>&1; then TIMEOUT=(gtimeout -k 5 "$START_TIMEOUT")  # macOS coreutils
else TIMEOUT=(); log "warning: no timeout command; --start-timeout is not enforced"; fi

# ---------------------------------------------------------------- state + teardown
if [[ -z "$TEMP_DIR" ]]; then
    TEMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gcl.XXXXXX") || die "mktemp failed"
else
    mkdir -p "$TEMP_DIR" || die "cannot create --temp-dir $TEMP_DIR"
    [[ -z "$(ls -A "$TEMP_DIR" 2>/dev/null)" ]] ||
        die "--temp-dir $TEMP_DIR is not empty (it identifies this run's processes)"
fi
TEMP_DIR=$(cd "$TEMP_DIR" && pwd -P)
(( ${#TEMP_DIR} <= 30 )) ||
    log "warning: --temp-dir is long (${#TEMP_DIR} chars); Ray's socket paths may pass the 107-byte limit"
SIDS=()          # session ids of the `ray start` calls (each is the leader's pid)
STARTERS=()      # pids of `ray start` calls in flight
DRIVER_PID=""
HOLD_SLEEP=""
STATUS=0
CLEANED=0

# pids that belong to this run: members of one of our `ray start` sessions, plus (should Ray ever
# detach a daemon from its session) Ray processes naming our temp dir on their command line.
# Never this script's own process group (its subshells, the driver, whoever launched us).
MY_PGID=$(ps -o pgid= -p $$ | tr -d ' ')
our_pids() {
    local sid_re="" s
    for s in ${SIDS[@]+"${SIDS[@]}"}; do sid_re+="${sid_re:+|}$s"; done
    ps -eo pid=,pgid=,sid=,args= 2>/dev/null |
    GCL_DIR="$TEMP_DIR" GCL_SIDS="^(${sid_re:-NONE})\$" GCL_PGID="$MY_PGID" awk '
        $2 == ENVIRON["GCL_PGID"] { next }
        $3 ~ ENVIRON["GCL_SIDS"] { print $1; next }
        { line = $0 " "; dir = ENVIRON["GCL_DIR"] }
        (index(line, dir "/") || index(line, dir " ")) &&
            line ~ /ray\/core\/src|site-packages\/ray\/|ray::|-m ray[.]/ { print $1 }'
}
# our pids whose short name (comm) matches / does not match a regex
pids_where() {  # $1: "match"|"nomatch"  $2: comm regex
    local p comm
    for p in $(our_pids); do
        comm=$(cat "/proc/$p/comm" 2>/dev/null || ps -o comm= -p "$p" 2>/dev/null) || continue
        if [[ "$1" == match ]]; then [[ "$comm" =~ $2 ]] && echo "$p"
        else [[ "$comm" =~ $2 ]] || echo "$p"; fi
    done
}
stop_stage() {  # $@: pids; SIGTERM, wait up to GRACE s, SIGKILL what is left
    [[ $# -gt 0 ]] || return 0
    kill -TERM "$@" 2>/dev/null
    local deadline=$((SECONDS + GRACE)) alive
    while :; do
        alive=()
        for p in "$@"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
        [[ ${#alive[@]} -eq 0 ]] && return 0
        (( SECONDS >= deadline )) && break
        sleep 0.2
    done
    kill -KILL "${alive[@]}" 2>/dev/null
    sleep 0.2
}
teardown() {
    [[ $CLEANED -eq 1 ]] && return
    CLEANED=1
    trap '' INT TERM HUP
    [[ -n "$HOLD_SLEEP" ]] && kill "$HOLD_SLEEP" 2>/dev/null
    # `ray start` calls still in flight (Ctrl-C during startup): stop them first, so that no
    # daemon appears after the sweep below.  A session's leader is the `ray start` process itself.
    local t_end=$((SECONDS + 10)) busy p s
    while :; do
        collect_sids
        busy=0
        for p in ${STARTERS[@]+"${STARTERS[@]}"}; do kill -0 "$p" 2>/dev/null && busy=1; done
        [[ $busy -eq 0 ]] && break
        for s in ${SIDS[@]+"${SIDS[@]}"}; do  # only a live leader of that very session
            [[ "$(ps -o sid= -p "$s" 2>/dev/null | tr -d ' ')" == "$s" ]] && kill -TERM "$s" 2>/dev/null
        done
        (( SECONDS >= t_end )) && break
        sleep 0.2
    done
    if [[ -n "$DRIVER_PID" ]] && kill -0 "$DRIVER_PID" 2>/dev/null; then
        log "stopping gcode train (pid $DRIVER_PID)"
        kill -INT "$DRIVER_PID" 2>/dev/null   # KeyboardInterrupt: it disconnects from Ray
        local t_drv=$((SECONDS + 10))
        while kill -0 "$DRIVER_PID" 2>/dev/null && (( SECONDS < t_drv )); do sleep 0.2; done
        stop_stage "$DRIVER_PID"
    fi
    local t0=$SECONDS
    if [[ ${#SIDS[@]} -gt 0 || -d "$TEMP_DIR" ]]; then
        # the order of `ray stop`: raylets, then everything else, then the GCS
        stop_stage $(pids_where match '^raylet$')
        stop_stage $(pids_where nomatch '^gcs_server$')
        stop_stage $(pids_where match '.')
        local left
        left=$(our_pids | tr '\n' ' ')
        if [[ -n "${left// /}" ]]; then
            log "error: processes of this run survived teardown: $left"
            [[ $STATUS -eq 0 ]] && STATUS=4
        elif [[ ${#SIDS[@]} -gt 0 ]]; then
            log "stopped the local cluster in $((SECONDS - t0))s (sessions ${SIDS[*]})"
        fi
    fi
    if [[ $STATUS -eq 0 && $KEEP_TEMP -eq 0 ]]; then
        rm -rf "$TEMP_DIR"
    elif [[ -d "$TEMP_DIR" ]]; then
        log "Ray logs kept in $TEMP_DIR/session_latest/logs (head) and $TEMP_DIR/node*/session_latest/logs"
    fi
}
on_exit() { local rc=$?; [[ $STATUS -eq 0 ]] && STATUS=$rc; teardown; exit "$STATUS"; }
on_signal() {
    STATUS=$1
    [[ $HOLD -eq 1 && -z "$DRIVER_PID" && ${#STARTERS[@]} -eq 0 ]] && STATUS=0  # --hold ends with Ctrl-C
    log "caught signal, tearing down"
    exit "$STATUS"
}
trap on_exit EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

# ---------------------------------------------------------------- environment
export RAY_AUTH_MODE=$AUTH
export RAY_USAGE_STATS_ENABLED=0
if [[ "$AUTH" == token ]]; then
    if [[ -z "${RAY_AUTH_TOKEN:-}" && -z "${RAY_AUTH_TOKEN_PATH:-}" ]]; then
        (umask 077 && "$PY" -c 'import secrets; print(secrets.token_hex(32))' >"$TEMP_DIR/auth_token") ||
            die "cannot write $TEMP_DIR/auth_token" 3
        export RAY_AUTH_TOKEN_PATH="$TEMP_DIR/auth_token"
    elif [[ -n "${RAY_AUTH_TOKEN_PATH:-}" && ! -s "$RAY_AUTH_TOKEN_PATH" ]]; then
        die "RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH is not a non-empty file"
    fi
fi
if [[ $INSTALLED -eq 0 && -f "$REPO/gcode/__init__.py" ]]; then
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
fi

free_port() {  # $1: address to bind; prints a port free there right now
    "$PY" -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$1"
}
# run "$@" as the leader of a new session; its pid (= the session id) goes to file $1
SESSION_PY='import os, sys
try:
    os.setsid()
except OSError:                         # already a group leader: fork, the child leads
    pid = os.fork()
    if pid:
        _, st = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(st) & 0xFF)
    os.setsid()
with open(sys.argv[1], "w") as f:
    f.write(str(os.getpid()))
os.execvp(sys.argv[2], sys.argv[2:])'
start_node() {  # $1: label; rest: ray start args.  The session id lands in $TEMP_DIR/.sid.<label>
    local label=$1; shift
    local rc=0 t0=$SECONDS
    ${TIMEOUT[@]+"${TIMEOUT[@]}"} "$PY" -c "$SESSION_PY" "$TEMP_DIR/.sid.$label" "$RAY" start "$@" \
        >"$TEMP_DIR/.start.$label.log" 2>&1 || rc=$?
    if [[ $rc -eq 130 || $rc -eq 143 || $rc -eq 137 ]]; then
        log "ray start for $label interrupted"
        return 3
    elif [[ $rc -ne 0 ]]; then
        tail -n 30 "$TEMP_DIR/.start.$label.log" >&2
        [[ $rc -eq 124 ]] && rc="$rc: timed out after ${START_TIMEOUT}s"
        log "error: ray start for $label failed (exit $rc)"
        return 3
    fi
    log "$label up in $((SECONDS - t0))s"
}
collect_sids() {
    local f
    SIDS=()
    for f in "$TEMP_DIR"/.sid.*; do [[ -s "$f" ]] && SIDS+=("$(cat "$f")"); done
}

# ---------------------------------------------------------------- cluster
[[ -n "$PORT" ]] || PORT=$(free_port "$HEAD_IP") ||
    die "cannot bind $HEAD_IP (is the loopback interface up?)" 3
ADDRESS="$HEAD_IP:$PORT"
COMMON=(--disable-usage-stats --min-worker-port 0 --max-worker-port 0)
log "head $ADDRESS (${HEAD_CPUS} CPUs), $NODES worker node(s) x $CPUS_PER_NODE CPU(s)," \
    "temp dir $TEMP_DIR, auth $AUTH"
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 start_node head --head --node-ip-address "$HEAD_IP" --port "$PORT" \
    --num-cpus "$HEAD_CPUS" --include-dashboard false \
    --ray-client-server-port "$(free_port "$HEAD_IP")" \
    --dashboard-agent-listen-port "$(free_port "$HEAD_IP")" --temp-dir "$TEMP_DIR" "${COMMON[@]}" &
STARTERS=($!)   # in the background, so that a signal is handled at once (bash defers traps
wait "${STARTERS[0]}" || { STATUS=3; exit 3; }  # while a foreground command runs)
STARTERS=()
collect_sids
# Worker nodes start in parallel, 4 at a time; each has its own temp dir under $TEMP_DIR (nodes
# sharing one session dir race for the same socket names when they start together).
wait_starters() {
    local p failed=0
    for p in ${STARTERS[@]+"${STARTERS[@]}"}; do wait "$p" || failed=1; done
    STARTERS=()
    collect_sids
    [[ $failed -eq 0 ]] || { STATUS=3; exit 3; }
}
for ((i = 1; i <= NODES; i++)); do
    ip="$HEAD_PREFIX.$((HEAD_LAST + i))"
    mkdir -p "$TEMP_DIR/node$i"
    # a worker node refuses to start when RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (set by test suites)
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1 start_node "node$i" --address "$ADDRESS" --node-ip-address "$ip" \
        --num-cpus "$CPUS_PER_NODE" --dashboard-agent-listen-port "$(free_port "$ip")" \
        --temp-dir "$TEMP_DIR/node$i" "${COMMON[@]}" &
    STARTERS+=($!)
    (( ${#STARTERS[@]} < 4 && i < NODES )) || wait_starters
done
export RAY_ADDRESS=$ADDRESS
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0  # the driver resolves its own address to loopback

if [[ $HOLD -eq 1 ]]; then
    log "cluster up. In another shell:"
    printf '  export RAY_ADDRESS=%q RAY_AUTH_MODE=%q' "$ADDRESS" "$AUTH"
    [[ -n "${RAY_AUTH_TOKEN_PATH:-}" ]] && printf ' RAY_AUTH_TOKEN_PATH=%q' "$RAY_AUTH_TOKEN_PATH"
    [[ -n "${PYTHONPATH:-}" ]] && printf ' PYTHONPATH=%q' "$PYTHONPATH"
    printf '\n  %q train --address %q --workers 4 --jobs 10\n' "$GCODE" "$ADDRESS"
    log "Ctrl-C stops the cluster"
    while :; do sleep 3600 & HOLD_SLEEP=$!; wait $HOLD_SLEEP; done
fi

# ---------------------------------------------------------------- the run
log "$GCODE train --address $ADDRESS ${TRAIN_ARGS[*]+${TRAIN_ARGS[*]}}"
# in the background so that signals reach the trap at once; bash makes background commands ignore
# SIGINT, so restore it: Ctrl-C (or teardown's SIGINT) then stops the driver with KeyboardInterrupt
RESTORE_SIGINT='import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])'
"$PY" -c "$RESTORE_SIGINT" "$GCODE" train --address "$ADDRESS" ${TRAIN_ARGS[@]+"${TRAIN_ARGS[@]}"} &
DRIVER_PID=$!
wait "$DRIVER_PID"
STATUS=$?
DRIVER_PID=""
[[ $STATUS -eq 0 ]] || log "gcode train exited with status $STATUS"
exit "$STATUS"
