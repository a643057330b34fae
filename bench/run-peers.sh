#!/usr/bin/env bash
# Eventcast side by side with Socket.IO 4 (+ @socket.io/redis-adapter) and
# nginx + nchan (issue 6), in one run, under the same load, on this machine.
#
#   bench/run-peers.sh
#
# 1. installs the peers if missing (bench/peers/install.sh), builds the release
#    binaries, and a Python venv with matplotlib for the charts (target/peers-bench/venv);
# 2. runs the scenarios, each against freshly started servers, servers pinned to
#    SERVER_CPUS (taskset) and the load generator to BENCH_CPUS:
#      fanout  1 topic, FANOUT_SUBS subscribers (1k/5k/15k), rate stepped up
#      topics  TOPICS topics x TOPIC_SUBS subscribers, uniform publishing, stepped up
#      latency LATENCY_DELIVERIES deliveries/s in two shapes, each with its floor (no
#              server, one core writing a ready frame to each connection): LATENCY_SUBS
#              subscribers (a large fan-out per event) and LATENCY_SMALL_SUBS (many
#              small fan-outs, the same deliveries/s)
#      idle    IDLE_CONNS idle connections: server RSS per connection
#      redis   two instances over Redis (Eventcast: Redis Cluster of
#              e2e/redis-cluster.sh; peers: one redis-server), publish on A,
#              subscribe on B: fan-out stepped up (REDIS_SUBS), and latency with
#              REDIS_SUBS and LATENCY_SMALL_SUBS subscribers
# 3. writes bench/results/peers.csv and PNG charts, and the Markdown table between
#    the markers <!-- peers-bench:begin --> / <!-- peers-bench:end --> in BENCHMARKS.md
#    (bench/peers/report.py). Raw JSON, logs and the exact commands go to target/peers-bench/.
#
# Environment overrides (defaults in brackets):
#   SYSTEMS [eventcast socketio nchan]   SCENARIOS [fanout topics latency idle redis]
#   FANOUT_SUBS [1000 5000 15000]        FANOUT_DELIVERIES [25000,...,1600000] (deliveries/s steps)
#   STEP_SECS [5]  MAX_P99_MS [50] (the "sustained" limit)  STEP_LIMIT_P99_MS [1000] (steps stop beyond it)
#   TOPICS [5000]  TOPIC_SUBS [2]  TOPIC_RATES [2000,...] (events/s steps)
#   LATENCY_SUBS [1000]  LATENCY_SMALL_SUBS [100] (0: that shape is not run)
#   LATENCY_DELIVERIES [50000]  LATENCY_SECS [20]
#   IDLE_CONNS [15000]  REDIS_SUBS [1000]  PAYLOAD [100]  HTTP_CONNS [16]
#   SERVER_CPUS [0]  BENCH_CPUS [1]  BENCH_THREADS [1]  SOURCE_ADDRS [127.0.0.2-127.0.0.50]
#   REDIS_CLUSTER_BASE_PORT [7500]  REDIS_CLUSTER_DIR [/tmp/ec-redis-bench]  PEER_REDIS_PORT [7600]
#   OUT [bench/results]  RAW [target/peers-bench]  BENCHMARKS [BENCHMARKS.md]  REPORT_ONLY=1 (redo
#   the CSV/charts/table from RAW)  SKIP_INSTALL=1  SKIP_BUILD=1
#   SIDECAR [target/release/eventcast-sidecar] (another build, for before/after runs)
# A quick smoke run:
#   FANOUT_SUBS=200 FANOUT_DELIVERIES=2000,4000 STEP_SECS=2 TOPICS=50 TOPIC_RATES=200 \
#   LATENCY_SECS=3 LATENCY_DELIVERIES=5000 IDLE_CONNS=500 REDIS_SUBS=100 LATENCY_SUBS=100 LATENCY_SMALL_SUBS=20 \
#   OUT=target/peers-smoke RAW=target/peers-smoke/raw BENCHMARKS=target/peers-smoke/B.md bench/run-peers.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SYSTEMS=${SYSTEMS:-eventcast socketio nchan}
SCENARIOS=${SCENARIOS:-fanout topics latency idle redis}
FANOUT_SUBS=${FANOUT_SUBS:-1000 5000 15000}
FANOUT_DELIVERIES=${FANOUT_DELIVERIES:-25000,37500,50000,75000,100000,150000,200000,300000,400000,600000,800000,1200000,1600000}
STEP_SECS=${STEP_SECS:-5}
MAX_P99_MS=${MAX_P99_MS:-50}
STEP_LIMIT_P99_MS=${STEP_LIMIT_P99_MS:-1000}
TOPICS=${TOPICS:-5000}
TOPIC_SUBS=${TOPIC_SUBS:-2}
TOPIC_RATES=${TOPIC_RATES:-2000,5000,7500,10000,12500,15000,17500,20000,25000,30000,35000,40000,45000,50000,60000,70000,80000}
LATENCY_SUBS=${LATENCY_SUBS:-1000}
LATENCY_SMALL_SUBS=${LATENCY_SMALL_SUBS:-100}
LATENCY_DELIVERIES=${LATENCY_DELIVERIES:-50000}
LATENCY_SECS=${LATENCY_SECS:-20}
IDLE_CONNS=${IDLE_CONNS:-15000}
REDIS_SUBS=${REDIS_SUBS:-1000}
PAYLOAD=${PAYLOAD:-100}
HTTP_CONNS=${HTTP_CONNS:-16}
SERVER_CPUS=${SERVER_CPUS:-0}
BENCH_CPUS=${BENCH_CPUS:-1}
BENCH_THREADS=${BENCH_THREADS:-1}
SOURCE_ADDRS=${SOURCE_ADDRS:-127.0.0.2-127.0.0.50}
export REDIS_CLUSTER_BASE_PORT=${REDIS_CLUSTER_BASE_PORT:-7500}
export REDIS_CLUSTER_DIR=${REDIS_CLUSTER_DIR:-/tmp/ec-redis-bench}
PEER_REDIS_PORT=${PEER_REDIS_PORT:-7600}
OUT=$(realpath -m "${OUT:-$ROOT/bench/results}")
RAW=$(realpath -m "${RAW:-$ROOT/target/peers-bench}")
BENCHMARKS=$(realpath -m "${BENCHMARKS:-$ROOT/BENCHMARKS.md}")
VENV=${VENV:-$ROOT/target/peers-bench/venv}
MATPLOTLIB_VERSION=3.9.2

# Instance A serves the memory scenarios and is the publish side with Redis; B is
# the subscribe side with Redis.
EC_A=(127.0.0.1:18180 127.0.0.1:17170 127.0.0.1:19190)
EC_B=(127.0.0.1:18280 127.0.0.1:17270 127.0.0.1:19290)
SIO_A=13100 SIO_B=13200
NCHAN_A=18190 NCHAN_B=18290

SIDECAR=${SIDECAR:-$ROOT/target/release/eventcast-sidecar}
BENCH=$ROOT/target/release/eventcast-bench
SIO_SERVER=$ROOT/bench/peers/socketio/server.js
NCHAN_RUN=$ROOT/bench/peers/nchan/run.sh
NCHAN_RUN_DIR=$RAW/nchan
export NCHAN_RUN_DIR

log() { echo "run-peers: $*" >&2; }
die() {
    log "$*"
    exit 1
}

# ---------------------------------------------------------------- servers --
# Every process started here is recorded and stopped by stop_servers (also on exit).
SERVER_PIDS=()   # sidecars, node servers, peer redis-server
NCHAN_PORTS=()   # nchan instances (stopped through run.sh)
CLUSTER_UP=""

stop_servers() {
    local pid port
    for pid in "${SERVER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${SERVER_PIDS[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SERVER_PIDS=()
    for port in "${NCHAN_PORTS[@]}"; do
        "$NCHAN_RUN" stop "$port" >/dev/null 2>&1 || true
    done
    NCHAN_PORTS=()
}

stop_cluster() {
    if [[ -n "$CLUSTER_UP" ]]; then
        bash "$ROOT/e2e/redis-cluster.sh" stop >/dev/null 2>&1 || true
        CLUSTER_UP=""
    fi
}

cleanup() {
    stop_servers
    stop_cluster
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# GET PATH on HOST:PORT answers 200 (bash /dev/tcp, in a subshell so that a reset
# connection cannot end this script).
http_ok() {
    local hostport=$1 path=$2 status
    status=$(
        exec 2>/dev/null
        exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}" || exit 1
        printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&3 || exit 1
        read -r -t 2 _ code _ <&3 && echo "$code"
    ) || true
    [[ "$status" == 200 ]]
}

# Nothing may listen on a port before its server starts (a leftover would answer
# in its place).
require_free() {
    local port
    for port in "$@"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            die "port $port is in use (a leftover server? see ss -ltnp); set other ports or stop it"
        fi
    done
}

# Server logs are numbered in start order: LOGF=RAW/logs/server-N-NAME.log
# (a variable, not a command substitution, so that the count is kept).
STARTS=0
server_log() {
    STARTS=$((STARTS + 1))
    LOGF=$RAW/logs/server-$STARTS-$1.log
}

wait_ready() { # wait_ready PID HOST:PORT PATH LOG
    local pid=$1 hostport=$2 path=$3 logf=$4
    for _ in $(seq 1 120); do
        http_ok "$hostport" "$path" && return 0
        kill -0 "$pid" 2>/dev/null || { tail -20 "$logf" >&2; die "server pid $pid exited (log $logf)"; }
        sleep 0.25
    done
    tail -20 "$logf" >&2
    die "server on $hostport not ready after 30 s (log $logf)"
}

# Pins a command to the server core(s). Background servers call taskset directly
# (not through this function) so that $! is the server's own pid.
on_server_cpus() { taskset -c "$SERVER_CPUS" "$@"; }

# start_eventcast NAME PUBLIC LOCAL METRICS MANIFESTS [sidecar args...] -> STARTED_PID
start_eventcast() {
    local name=$1 public=$2 local_api=$3 metrics=$4 manifests=$5
    shift 5
    local logf
    server_log "$name"
    logf=$LOGF
    require_free "${public##*:}" "${local_api##*:}" "${metrics##*:}"
    taskset -c "$SERVER_CPUS" "$SIDECAR" --manifests "$manifests" --public "$public" --local "$local_api" \
        --metrics "$metrics" --log warn "$@" >"$logf" 2>&1 &
    STARTED_PID=$!
    SERVER_PIDS+=("$STARTED_PID")
    wait_ready "$STARTED_PID" "$public" /readyz "$logf"
}

# start_socketio NAME PORT [REDIS_URL] -> STARTED_PID
start_socketio() {
    local name=$1 port=$2 redis=${3:-}
    local logf
    server_log "$name"
    logf=$LOGF
    require_free "$port"
    PORT=$port HOST=127.0.0.1 REDIS_URL=$redis taskset -c "$SERVER_CPUS" node "$SIO_SERVER" >"$logf" 2>&1 &
    STARTED_PID=$!
    SERVER_PIDS+=("$STARTED_PID")
    wait_ready "$STARTED_PID" "127.0.0.1:$port" /healthz "$logf"
}

# start_nchan PORT [REDIS_URL] -> STARTED_PID (the worker process, which holds the connections)
start_nchan() {
    local port=$1 redis=${2:-} master worker=""
    require_free "$port"
    NCHAN_PORTS+=("$port")
    on_server_cpus "$NCHAN_RUN" start "$port" ${redis:+"$redis"} >&2
    # nginx writes its pid file and forks the worker just after it listens.
    for _ in $(seq 1 100); do
        master=$(cat "$NCHAN_RUN_DIR-$port/nginx.pid" 2>/dev/null || true)
        if [[ $master =~ ^[0-9]+$ ]]; then
            worker=$(pgrep -P "$master" | head -1 || true)
            [[ -n "$worker" ]] && break
        fi
        sleep 0.1
    done
    [[ -n "$worker" ]] || die "no nginx worker under master ${master:-?} (port $port)"
    http_ok "127.0.0.1:$port" /healthz || die "nchan on $port does not answer /healthz"
    STARTED_PID=$worker
}

start_peer_redis() { # -> STARTED_PID
    local logf
    server_log "redis-$PEER_REDIS_PORT"
    logf=$LOGF
    require_free "$PEER_REDIS_PORT"
    taskset -c "$SERVER_CPUS" redis-server --port "$PEER_REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --dir "$RAW" >"$logf" 2>&1 &
    STARTED_PID=$!
    SERVER_PIDS+=("$STARTED_PID")
    for _ in $(seq 1 50); do
        [[ $(redis-cli -p "$PEER_REDIS_PORT" ping 2>/dev/null || true) == PONG ]] && return 0
        sleep 0.1
    done
    die "redis-server on $PEER_REDIS_PORT did not start (log $logf)"
}

start_cluster() { # -> CLUSTER_PIDS (comma-separated)
    if [[ -z "$CLUSTER_UP" ]]; then
        CLUSTER_UP=1
        on_server_cpus bash "$ROOT/e2e/redis-cluster.sh" start >"$RAW/logs/redis-cluster.log" 2>&1 ||
            { tail -20 "$RAW/logs/redis-cluster.log" >&2; die "Redis Cluster did not start"; }
    fi
    CLUSTER_PIDS=$(cat "$REDIS_CLUSTER_DIR"/*/redis.pid | paste -sd, -)
}

# start_system SYSTEM BACKEND [MANIFESTS] -> WS PUB SERVER_PID (holds the
# subscribers) CPU_PIDS (every server-side process, for the CPU figure)
start_system() {
    local system=$1 backend=$2 manifests=${3:-$RAW/manifests-one} a b redis
    case "$system/$backend" in
    eventcast/memory)
        start_eventcast eventcast-a "${EC_A[@]}" "$manifests"
        SERVER_PID=$STARTED_PID CPU_PIDS=$STARTED_PID
        WS="ws://${EC_A[0]}/v1/ws" PUB="http://${EC_A[1]}"
        ;;
    eventcast/redis)
        start_cluster
        local nodes
        nodes=$(bash "$ROOT/e2e/redis-cluster.sh" nodes)
        start_eventcast eventcast-a "${EC_A[@]}" "$manifests" --redis-cluster "$nodes" --namespace peers-bench
        a=$STARTED_PID
        start_eventcast eventcast-b "${EC_B[@]}" "$manifests" --redis-cluster "$nodes" --namespace peers-bench
        b=$STARTED_PID
        SERVER_PID=$b CPU_PIDS="$a,$b,$CLUSTER_PIDS"
        WS="ws://${EC_B[0]}/v1/ws" PUB="http://${EC_A[1]}"
        ;;
    socketio/memory)
        start_socketio socketio-a "$SIO_A"
        SERVER_PID=$STARTED_PID CPU_PIDS=$STARTED_PID
        WS="ws://127.0.0.1:$SIO_A/socket.io/?EIO=4&transport=websocket" PUB="http://127.0.0.1:$SIO_A"
        ;;
    socketio/redis)
        start_peer_redis
        redis=$STARTED_PID
        start_socketio socketio-a "$SIO_A" "redis://127.0.0.1:$PEER_REDIS_PORT"
        a=$STARTED_PID
        start_socketio socketio-b "$SIO_B" "redis://127.0.0.1:$PEER_REDIS_PORT"
        b=$STARTED_PID
        SERVER_PID=$b CPU_PIDS="$a,$b,$redis"
        WS="ws://127.0.0.1:$SIO_B/socket.io/?EIO=4&transport=websocket" PUB="http://127.0.0.1:$SIO_A"
        ;;
    nchan/memory)
        start_nchan "$NCHAN_A"
        SERVER_PID=$STARTED_PID CPU_PIDS=$STARTED_PID
        WS="ws://127.0.0.1:$NCHAN_A/sub/{topic}" PUB="http://127.0.0.1:$NCHAN_A"
        ;;
    nchan/redis)
        start_peer_redis
        redis=$STARTED_PID
        start_nchan "$NCHAN_A" "redis://127.0.0.1:$PEER_REDIS_PORT"
        a=$STARTED_PID
        start_nchan "$NCHAN_B" "redis://127.0.0.1:$PEER_REDIS_PORT"
        b=$STARTED_PID
        SERVER_PID=$b CPU_PIDS="$a,$b,$redis"
        WS="ws://127.0.0.1:$NCHAN_B/sub/{topic}" PUB="http://127.0.0.1:$NCHAN_A"
        ;;
    *) die "unknown system/backend $system/$backend" ;;
    esac
}

# ------------------------------------------------------------------ bench --
# run_bench NAME SYSTEM BACKEND SCENARIO SUBSCRIBERS TOPICS -- BENCH ARGS...
# Runs the load generator pinned to BENCH_CPUS, JSON to RAW/json/NAME.json, progress
# to the terminal and RAW/logs/NAME.log; records the run in RAW/runs.tsv. A failed
# run is recorded too (the report shows it) and the script goes on.
run_bench() {
    local name=$1 system=$2 backend=$3 scenario=$4 subs=$5 topics=$6
    shift 7
    local cmd=(taskset -c "$BENCH_CPUS" "$BENCH" --threads "$BENCH_THREADS" "$@" --json)
    local shown="" arg
    for arg in "${cmd[@]}"; do # copy-pasteable: quote what the shell would interpret
        arg=${arg//$ROOT\//}
        [[ $arg =~ ^[A-Za-z0-9_./:,=+-]+$ ]] || arg="'$arg'"
        shown+="${shown:+ }$arg"
    done
    echo >&2
    log "=== $name: $shown"
    printf '%s\t%s\n' "$name" "$shown" >>"$RAW/commands.tsv"
    local status=ok
    if ! RUST_LIB_BACKTRACE=0 "${cmd[@]}" >"$RAW/json/$name.json" 2> >(tee "$RAW/logs/$name.log" >&2); then
        status=failed
        log "$name failed (log $RAW/logs/$name.log)"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$system" "$backend" "$scenario" "$subs" "$topics" "$status" \
        >>"$RAW/runs.tsv"
}

# Step rates (events/s) for a list of deliveries/s targets and a subscriber count.
rates_for() { # rates_for DELIVERIES_CSV SUBSCRIBERS
    tr ',' '\n' <<<"$1" | awk -v n="$2" 'NF { r = $1 / n; printf "%s%.6g", sep, r; sep = "," }'
}

scenario_fanout() { # scenario_fanout SYSTEM
    local system=$1 subs
    for subs in $FANOUT_SUBS; do
        start_system "$system" memory
        run_bench "fanout-$system-$subs" "$system" memory fanout "$subs" 1 -- \
            fanout --system "$system" --ws "$WS" --publish "$PUB" --topic bench --subscribers "$subs" \
            --source-addrs "$SOURCE_ADDRS" --step --rates "$(rates_for "$FANOUT_DELIVERIES" "$subs")" \
            --duration "$STEP_SECS" --max-p99-ms "$STEP_LIMIT_P99_MS" --payload-bytes "$PAYLOAD" \
            --http-conns 4 --server-pid "$CPU_PIDS"
        stop_servers
    done
}

scenario_topics() {
    local system=$1 subs=$((TOPICS * TOPIC_SUBS))
    start_system "$system" memory "$RAW/manifests-many"
    run_bench "topics-$system" "$system" memory topics "$subs" "$TOPICS" -- \
        fanout --system "$system" --ws "$WS" --publish "$PUB" --topic bench --topics "$TOPICS" \
        --subscribers "$subs" --source-addrs "$SOURCE_ADDRS" --step --rates "$TOPIC_RATES" \
        --duration "$STEP_SECS" --max-p99-ms "$STEP_LIMIT_P99_MS" --payload-bytes "$PAYLOAD" \
        --http-conns "$HTTP_CONNS" --server-pid "$CPU_PIDS"
    stop_servers
}

# Subscriber counts of the latency runs of BACKEND, the large fan-out first.
latency_shapes() { # latency_shapes BACKEND
    local large=$LATENCY_SUBS
    [[ $1 == redis ]] && large=$REDIS_SUBS
    echo "$large"
    if [[ -n $LATENCY_SMALL_SUBS && $LATENCY_SMALL_SUBS != 0 && $LATENCY_SMALL_SUBS != "$large" ]]; then
        echo "$LATENCY_SMALL_SUBS"
    fi
}

# Every latency shape of BACKEND, each on freshly started servers. The first (large)
# shape's run is named latency-BACKEND-SYSTEM, the others latency-BACKEND-SYSTEM-SUBS.
scenario_latency() { # scenario_latency SYSTEM [BACKEND]
    local system=$1 backend=${2:-memory} subs name large=""
    for subs in $(latency_shapes "$backend"); do
        name=latency-$backend-$system
        [[ -z $large ]] && large=$subs
        [[ $subs == "$large" ]] || name+=-$subs
        start_system "$system" "$backend"
        run_bench "$name" "$system" "$backend" latency "$subs" 1 -- \
            fanout --system "$system" --ws "$WS" --publish "$PUB" --topic bench --subscribers "$subs" \
            --source-addrs "$SOURCE_ADDRS" --rate "$(rates_for "$LATENCY_DELIVERIES" "$subs")" \
            --duration "$LATENCY_SECS" --payload-bytes "$PAYLOAD" --http-conns 4 --server-pid "$CPU_PIDS"
        stop_servers
    done
}

# The floor of each memory latency shape: no server, one pinned core writing a ready
# frame to each of SUBS loopback connections (eventcast-bench floor). Named floor for
# the large shape, floor-SUBS for the others.
floor_latency() {
    local sender=${SERVER_CPUS%%[,-]*} receiver=${BENCH_CPUS%%[,-]*} subs name
    for subs in $(latency_shapes memory); do
        name=floor
        [[ $subs == "$LATENCY_SUBS" ]] || name+=-$subs
        local cmd=(taskset -c "$sender,$receiver" "$BENCH" floor --conns "$subs"
            --rate "$(rates_for "$LATENCY_DELIVERIES" "$subs")" --duration "$LATENCY_SECS"
            --sender-cpu "$sender" --receiver-cpu "$receiver" --json)
        local shown=${cmd[*]}
        shown=${shown//$ROOT\//}
        echo >&2
        log "=== $name: $shown"
        printf '%s\t%s\n' "$name" "$shown" >>"$RAW/commands.tsv"
        local status=ok
        "${cmd[@]}" >"$RAW/json/$name.json" 2> >(tee "$RAW/logs/$name.log" >&2) || status=failed
        printf '%s\tfloor\tmemory\tfloor\t%s\t1\t%s\n' "$name" "$subs" "$status" >>"$RAW/runs.tsv"
    done
}

scenario_idle() {
    local system=$1
    start_system "$system" memory
    run_bench "idle-$system" "$system" memory idle "$IDLE_CONNS" 1 -- \
        idle --system "$system" --ws "$WS" --topic bench --connections "$IDLE_CONNS" \
        --source-addrs "$SOURCE_ADDRS" --server-pid "$SERVER_PID" --settle 3 --hold 2
    stop_servers
}

scenario_redis() {
    local system=$1
    start_system "$system" redis
    run_bench "fanout-redis-$system" "$system" redis fanout "$REDIS_SUBS" 1 -- \
        fanout --system "$system" --ws "$WS" --publish "$PUB" --topic bench --subscribers "$REDIS_SUBS" \
        --source-addrs "$SOURCE_ADDRS" --step --rates "$(rates_for "$FANOUT_DELIVERIES" "$REDIS_SUBS")" \
        --duration "$STEP_SECS" --max-p99-ms "$STEP_LIMIT_P99_MS" --payload-bytes "$PAYLOAD" \
        --http-conns 4 --server-pid "$CPU_PIDS"
    stop_servers
    # Fresh instances for each latency run (the step run may have left them saturated).
    scenario_latency "$system" redis
}

# ------------------------------------------------------------ preparation --
write_manifests() {
    mkdir -p "$RAW/manifests-one" "$RAW/manifests-many"
    # History as nchan keeps it (nchan_message_buffer_length 10, nchan_message_timeout
    # 60s in bench/peers/nchan): a longer one costs Eventcast heap growth nchan does not pay.
    local topic='apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: NAME}
spec:
  name: NAME
  access: {subscribe: {anonymous: true}}
  retention: {maxEvents: 10, maxAge: 1m}'
    echo "${topic//NAME/bench}" >"$RAW/manifests-one/bench.yaml"
    {
        echo "# $TOPICS topics bench-0 .. bench-$((TOPICS - 1)), written by bench/run-peers.sh"
        for ((i = 0; i < TOPICS; i++)); do
            echo "---"
            echo "${topic//NAME/bench-$i}"
        done
    } >"$RAW/manifests-many/topics.yaml"
}

write_meta() {
    local f=$RAW/meta.env
    {
        echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (with local changes)')"
        echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//') x $(nproc)"
        echo "memory=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
        echo "kernel=$(uname -sr)"
        echo "rustc=$(rustc --version 2>/dev/null | cut -d' ' -f2)"
        echo "node=$(node --version)"
        echo "socketio=$(node -p 'require(process.argv[1]).version' "$ROOT/bench/peers/socketio/node_modules/socket.io/package.json")"
        echo "redis_adapter=$(node -p 'require(process.argv[1]).version' "$ROOT/bench/peers/socketio/node_modules/@socket.io/redis-adapter/package.json")"
        echo "nginx=$(nginx -v 2>&1 | sed 's|.*nginx/||')"
        echo "nchan=$(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null || echo '?')"
        echo "redis=$(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"
        echo "nofile=$(ulimit -Hn)"
        echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
        echo "busy_start=$(cpu_busy)"
        echo "settings=SERVER_CPUS=$SERVER_CPUS BENCH_CPUS=$BENCH_CPUS BENCH_THREADS=$BENCH_THREADS STEP_SECS=$STEP_SECS MAX_P99_MS=$MAX_P99_MS STEP_LIMIT_P99_MS=$STEP_LIMIT_P99_MS PAYLOAD=$PAYLOAD"
        echo "max_p99_ms=$MAX_P99_MS"
        echo "latency_deliveries=$LATENCY_DELIVERIES"
        echo "redis_subs=$REDIS_SUBS"
        echo "idle_conns=$IDLE_CONNS"
        echo "topics=$TOPICS"
        echo "topic_subs=$TOPIC_SUBS"
    } >"$f"
}

# Busy and total jiffies of the whole machine (first line of /proc/stat).
cpu_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }

ensure_venv() {
    if ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
        log "creating $VENV with matplotlib $MATPLOTLIB_VERSION"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q "matplotlib==$MATPLOTLIB_VERSION"
    fi
}

report() {
    "$VENV/bin/python" "$ROOT/bench/peers/report.py" --raw "$RAW" --out "$OUT" --benchmarks "$BENCHMARKS"
}

# ------------------------------------------------------------------- main --
mkdir -p "$OUT" "$RAW"
ensure_venv
if [[ -n "${REPORT_ONLY:-}" ]]; then
    report
    exit 0
fi
[[ -n "${SKIP_INSTALL:-}" ]] || bash "$ROOT/bench/peers/install.sh"
[[ -n "${SKIP_BUILD:-}" ]] || cargo build --release -p eventcast-sidecar -p eventcast-bench
for bin in "$SIDECAR" "$BENCH"; do
    [[ -x "$bin" ]] || die "missing $bin (build it or unset SKIP_BUILD)"
done
command -v taskset >/dev/null || die "taskset (util-linux) is needed"

# Every connection is a file descriptor of the server and of the load generator
# (separate processes, each under the hard limit).
ulimit -n "$(ulimit -Hn)"
for n in $FANOUT_SUBS "$IDLE_CONNS" $((TOPICS * TOPIC_SUBS)); do
    ((n + 500 <= $(ulimit -n))) || log "warning: $n connections + headroom exceed the open file limit $(ulimit -n)"
done

rm -rf "$RAW/json" "$RAW/logs" "$RAW/runs.tsv" "$RAW/commands.tsv"
mkdir -p "$RAW/json" "$RAW/logs"
write_manifests
write_meta
started=$SECONDS
for scenario in $SCENARIOS; do
    for system in $SYSTEMS; do
        case $scenario in
        fanout | topics | latency | idle | redis) "scenario_$scenario" "$system" ;;
        *) die "unknown scenario $scenario (fanout topics latency idle redis)" ;;
        esac
    done
    if [[ $scenario == latency ]]; then floor_latency; fi
done
{
    echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "busy_end=$(cpu_busy)"
    echo "elapsed_s=$((SECONDS - started))"
} >>"$RAW/meta.env"
stop_servers
stop_cluster
report
log "done in $((SECONDS - started)) s: $OUT, $BENCHMARKS (raw: $RAW)"
