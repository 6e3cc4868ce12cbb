#!/usr/bin/env bash
# The one test command: builds and starts everything the tests need, runs every test, and
# stops what it started, whether the tests pass or not.
#   1. builds (first run) or reuses FerretDB, and makes or reuses the Python venv;
#   2. starts a throw-away FerretDB and moto on their own loopback ports;
#   3. runs the Rust suites (unit, integration, events, the isolation property);
#   4. lints template.yaml with cfn-lint, then runs schemathesis against the local API.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

# Ports of their own, so that a running local stack (scripts/run.sh) is left alone.
export FERRETDB_PORT="${TEST_FERRETDB_PORT:-27117}"
export FERRETDB_DEBUG_PORT=$((FERRETDB_PORT + 1))
export MOTO_PORT="${TEST_MOTO_PORT:-5117}"

cleanup() {
  local status=$?
  bash scripts/ferretdb.sh stop >/dev/null 2>&1 || true
  bash scripts/moto.sh stop >/dev/null 2>&1 || true
  rm -rf "${CACHE}/ferretdb-data/${FERRETDB_PORT}"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Tools in the background while cargo builds: both are mostly downloads on a first run.
bash scripts/ferretdb.sh build >"${RUN_DIR}/ferretdb-build.log" 2>&1 &
ferret_build=$!
bash scripts/venv.sh >"${RUN_DIR}/venv.log" 2>&1 &
venv_build=$!

log "building the workspace and its tests"
cargo build --workspace --all-targets --locked

wait "$ferret_build" || { cat "${RUN_DIR}/ferretdb-build.log" >&2; exit 1; }
wait "$venv_build" || { cat "${RUN_DIR}/venv.log" >&2; exit 1; }

rm -rf "${CACHE}/ferretdb-data/${FERRETDB_PORT}"
bash scripts/ferretdb.sh start
bash scripts/moto.sh start
export TEST_MONGODB_URI="mongodb://127.0.0.1:${FERRETDB_PORT}/"
export TEST_MOTO_URL="http://127.0.0.1:${MOTO_PORT}"

log "running the Rust test suites"
# The tests wait on I/O far more than on CPU: more threads than cores keeps both busy.
cargo test --workspace --locked -- --test-threads="${TEST_THREADS:-6}" --show-output
