#!/usr/bin/env bash
# Builds release binaries, starts a sidecar on loopback with bench/manifests/
# (topic "bench", anonymous subscribe) and runs three scenarios against it:
#   1. idle:    15,000 idle subscribed connections -> sidecar RSS per connection
#   2. fanout:  5,000 subscribers, publish rate stepped up -> max sustained deliveries/s
#   3. latency: 5,000 subscribers x 20 ev/s = 100,000 deliveries/s -> latency percentiles
# Everything stays on this machine (127.0.0.0/8) and every run is bounded in time.
# Results are printed and saved under target/bench-results/.
#
# Environment overrides: PUBLIC LOCAL METRICS (sidecar listen addresses),
# IDLE_CONNS FANOUT_SUBS FANOUT_RATES STEP_SECS LATENCY_SUBS LATENCY_RATE LATENCY_SECS
# SOURCE_ADDRS BENCH_THREADS JSON=1 (machine-readable output), SKIP_BUILD=1,
# SCENARIOS="idle fanout latency" (subset to run), SIDECAR / BENCH (binary paths).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PUBLIC=${PUBLIC:-127.0.0.1:18080}
LOCAL=${LOCAL:-127.0.0.1:17070}
METRICS=${METRICS:-127.0.0.1:19090}
IDLE_CONNS=${IDLE_CONNS:-15000}
FANOUT_SUBS=${FANOUT_SUBS:-5000}
FANOUT_RATES=${FANOUT_RATES:-10,20,40,80,160,320}
STEP_SECS=${STEP_SECS:-10}
LATENCY_SUBS=${LATENCY_SUBS:-5000}
LATENCY_RATE=${LATENCY_RATE:-20}
LATENCY_SECS=${LATENCY_SECS:-30}
SOURCE_ADDRS=${SOURCE_ADDRS:-127.0.0.2-127.0.0.50}
BENCH_THREADS=${BENCH_THREADS:-2}
SCENARIOS=${SCENARIOS:-idle fanout latency}
OUT=${OUT:-$ROOT/target/bench-results}
mkdir -p "$OUT"

if [[ -z "${SKIP_BUILD:-}" ]]; then
    cargo build --release -p eventcast-sidecar -p eventcast-bench
fi
SIDECAR=${SIDECAR:-$ROOT/target/release/eventcast-sidecar}
BENCH=${BENCH:-$ROOT/target/release/eventcast-bench}
for bin in "$SIDECAR" "$BENCH"; do
    [[ -x "$bin" ]] || { echo "missing $bin" >&2; exit 1; }
done

# Every connection is a file descriptor on both sides.
ulimit -n "$(ulimit -Hn)"
if (( $(ulimit -n) < IDLE_CONNS + 1000 )); then
    echo "warning: open file limit $(ulimit -n) is below $IDLE_CONNS connections + headroom" >&2
fi

"$SIDECAR" --manifests "$ROOT/bench/manifests" --public "$PUBLIC" --local "$LOCAL" \
    --metrics "$METRICS" >"$OUT/sidecar.log" 2>&1 &
SIDECAR_PID=$!
cleanup() {
    kill "$SIDECAR_PID" 2>/dev/null || true
    wait "$SIDECAR_PID" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# GET /readyz on the public listener with bash's /dev/tcp (no curl needed), in a
# subshell so that a reset connection (SIGPIPE) cannot end this script.
ready() {
    local host=${PUBLIC%:*} port=${PUBLIC##*:} status
    status=$(
        exec 2>/dev/null
        exec 3<>"/dev/tcp/$host/$port" || exit 1
        printf 'GET /readyz HTTP/1.0\r\nHost: %s\r\n\r\n' "$PUBLIC" >&3 || exit 1
        read -r -t 2 _ code _ <&3 && echo "$code"
    ) || true
    [[ "$status" == 200 ]]
}
for _ in $(seq 1 60); do
    ready && break
    kill -0 "$SIDECAR_PID" 2>/dev/null || { echo "sidecar exited; log:" >&2; cat "$OUT/sidecar.log" >&2; exit 1; }
    sleep 0.5
done
ready || { echo "sidecar not ready after 30 s; log:" >&2; cat "$OUT/sidecar.log" >&2; exit 1; }
echo "sidecar pid $SIDECAR_PID ready on ws://$PUBLIC/v1/ws, publish http://$LOCAL"

JSON_FLAG=()
[[ -n "${JSON:-}" ]] && JSON_FLAG=(--json)
WS="ws://$PUBLIC/v1/ws"
PUB="http://$LOCAL"

run() {
    local name=$1; shift
    echo
    echo "=== $name: $*"
    "$BENCH" --threads "$BENCH_THREADS" "$@" "${JSON_FLAG[@]}" | tee "$OUT/$name.txt"
}

for scenario in $SCENARIOS; do
    case $scenario in
    idle)
        run idle idle --ws "$WS" --topic bench --connections "$IDLE_CONNS" \
            --source-addrs "$SOURCE_ADDRS" --server-pid "$SIDECAR_PID" --hold 5
        ;;
    fanout)
        run fanout fanout --ws "$WS" --publish "$PUB" --topic bench --subscribers "$FANOUT_SUBS" \
            --source-addrs "$SOURCE_ADDRS" --step --rates "$FANOUT_RATES" --duration "$STEP_SECS" \
            --max-p99-ms 50 --payload-bytes 100
        ;;
    latency)
        run latency fanout --ws "$WS" --publish "$PUB" --topic bench --subscribers "$LATENCY_SUBS" \
            --source-addrs "$SOURCE_ADDRS" --rate "$LATENCY_RATE" --duration "$LATENCY_SECS" \
            --payload-bytes 100
        ;;
    *)
        echo "unknown scenario $scenario" >&2
        exit 2
        ;;
    esac
done
echo
echo "results in $OUT (sidecar log: $OUT/sidecar.log)"
