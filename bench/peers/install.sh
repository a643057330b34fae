#!/usr/bin/env bash
# Installs the peers eventcast-bench compares against (issue 6), if missing:
#   - nginx (nginx-light, else nginx) + libnginx-mod-nchan   (apt)
#   - redis-server                                            (apt)
#   - Socket.IO 4 + @socket.io/redis-adapter + redis client   (npm, into bench/peers/socketio/node_modules)
# Idempotent: installs only what is missing. Needs root (or sudo) for apt and
# node/npm on PATH for Socket.IO. The system nginx service is not used: the
# bench starts its own instances with bench/peers/nchan/run.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so

as_root() {
    if [[ "$(id -u)" == 0 ]]; then
        "$@"
    elif command -v sudo > /dev/null; then
        sudo "$@"
    else
        echo "need root to run: $*" >&2
        return 1
    fi
}

apt_pkgs=()
if ! command -v nginx > /dev/null && [[ ! -x /usr/sbin/nginx ]]; then
    if apt-cache show nginx-light > /dev/null 2>&1; then apt_pkgs+=(nginx-light); else apt_pkgs+=(nginx); fi
fi
[[ -f "$NCHAN_MODULE" ]] || apt_pkgs+=(libnginx-mod-nchan)
command -v redis-server > /dev/null || apt_pkgs+=(redis-server)

if ((${#apt_pkgs[@]})); then
    echo "apt: installing ${apt_pkgs[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${apt_pkgs[@]}"
    # The bench runs its own nginx/redis instances; leave the system services as they were
    # installed (Debian starts them; stop them if you need the ports or the CPU).
else
    echo "apt: nginx, nchan and redis-server already installed"
fi

sio="$here/socketio"
if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
    echo "node and npm are needed for the Socket.IO peer (apt-get install nodejs npm, or nodesource)" >&2
    exit 1
fi
have_modules() {
    (cd "$sio" && node -e 'for (const m of ["socket.io", "@socket.io/redis-adapter", "redis"]) require.resolve(m)') 2> /dev/null
}
# Reinstall when a module is missing or package.json changed since the last install.
if have_modules && [[ ! "$sio/package.json" -nt "$sio/node_modules/.package-lock.json" ]]; then
    echo "npm: Socket.IO peer dependencies already installed"
else
    echo "npm: installing Socket.IO peer dependencies"
    # `npm ci` installs the exact versions of package-lock.json.
    if [[ -f "$sio/package-lock.json" ]]; then
        (cd "$sio" && npm ci --no-audit --no-fund)
    else
        (cd "$sio" && npm install --no-audit --no-fund)
    fi
fi

echo "versions:"
echo "  $(nginx -v 2>&1 || true)"
echo "  nchan $(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2> /dev/null || echo '?')"
echo "  $(redis-server --version 2> /dev/null | cut -d' ' -f1-3 || true)"
echo "  node $(node --version), socket.io $(node -p 'require(process.argv[1]).version' "$sio/node_modules/socket.io/package.json")"
