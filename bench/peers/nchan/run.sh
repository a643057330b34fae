#!/usr/bin/env bash
# Runs an nginx + nchan instance for eventcast-bench, separate from the system
# nginx: its own config, pid file, logs and temp paths in a per-port directory.
#
#   bench/peers/nchan/run.sh start PORT [REDIS_URL]   start in the background, wait until ready
#   bench/peers/nchan/run.sh stop PORT                 stop it (SIGQUIT, then SIGTERM/SIGKILL)
#   bench/peers/nchan/run.sh run PORT [REDIS_URL]     run in the foreground (exec; Ctrl-C stops)
#   bench/peers/nchan/run.sh config PORT [REDIS_URL]  print the rendered config
#
# Endpoints: ws://127.0.0.1:PORT/sub/<topic> (WebSocket subscriber),
# POST http://127.0.0.1:PORT/pub/<topic> (publisher), GET /healthz.
# Memory mode without REDIS_URL; with REDIS_URL (redis://HOST:PORT, one node)
# messages go through Redis, so two instances on different ports relay to
# each other. The instance directory is ${NCHAN_RUN_DIR:-${TMPDIR:-/tmp}/eventcast-nchan}-PORT.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() { sed -n '4,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

cmd="${1:-}"
port="${2:-}"
redis_url="${3:-}"
[[ -n "$cmd" && "$port" =~ ^[0-9]+$ ]] || usage

NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
MODULE="${NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}"
dir="${NCHAN_RUN_DIR:-${TMPDIR:-/tmp}/eventcast-nchan}-$port"

render() {
    [[ -x "$NGINX" ]] || { echo "nginx not found: run bench/peers/install.sh" >&2; exit 1; }
    [[ -f "$MODULE" ]] || { echo "nchan module $MODULE not found: run bench/peers/install.sh" >&2; exit 1; }
    local storage=""
    if [[ -n "$redis_url" ]]; then
        storage="nchan_redis_url \"$redis_url\"; nchan_use_redis on;"
    fi
    mkdir -p "$dir"
    sed -e "s|@PREFIX@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@MODULE@|$MODULE|g" \
        -e "s|@STORAGE@|$storage|g" "$here/nginx.conf.template" > "$dir/nginx.conf"
    "$NGINX" -t -q -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' 2> "$dir/config-test.log" || {
        cat "$dir/config-test.log" >&2
        exit 1
    }
}

ready() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

case "$cmd" in
    config)
        render
        cat "$dir/nginx.conf"
        ;;
    run)
        render
        ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
        exec "$NGINX" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;'
        ;;
    start)
        if [[ -f "$dir/nginx.pid" ]] && kill -0 "$(cat "$dir/nginx.pid")" 2>/dev/null; then
            echo "nchan already running on port $port (pid $(cat "$dir/nginx.pid"))" >&2
            exit 1
        fi
        render
        ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
        # daemon off: nginx stays this background job's process (no double fork).
        setsid "$NGINX" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' \
            > "$dir/stdout.log" 2>&1 < /dev/null &
        echo $! > "$dir/launcher.pid"
        if ! ready; then
            echo "nchan did not come up on port $port; $dir/error.log:" >&2
            tail -20 "$dir/error.log" >&2 || true
            exit 1
        fi
        echo "nchan listening on 127.0.0.1:$port (master pid $(cat "$dir/nginx.pid" 2> /dev/null || cat "$dir/launcher.pid"), dir $dir${redis_url:+, redis $redis_url})"
        ;;
    stop)
        # The master's pid as nginx wrote it, else the one recorded at start.
        pid=""
        [[ -f "$dir/nginx.pid" ]] && pid="$(cat "$dir/nginx.pid")"
        [[ -z "$pid" && -f "$dir/launcher.pid" ]] && pid="$(cat "$dir/launcher.pid")"
        if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
            echo "nchan on port $port is not running" >&2
            rm -f "$dir/launcher.pid"
            exit 0
        fi
        kill -QUIT "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            sleep 1
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$dir/launcher.pid"
        echo "nchan on port $port stopped"
        ;;
    *)
        usage
        ;;
esac
