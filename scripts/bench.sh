#!/usr/bin/env bash
# Cold start, warm latency and peak memory of the release Lambda binaries, each under a local
# Runtime API (scripts/bench/lambda_start.py) against a throw-away FerretDB on loopback.
# Numbers go in issue notes; no test asserts timings.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
export FERRETDB_PORT="${BENCH_FERRETDB_PORT:-27217}"
export FERRETDB_DEBUG_PORT=$((FERRETDB_PORT + 1))
cleanup() {
  local status=$?
  bash scripts/ferretdb.sh stop >/dev/null 2>&1 || true
  rm -rf "${CACHE}/ferretdb-data/${FERRETDB_PORT}"
  exit "$status"
}
trap cleanup EXIT

cargo build --locked --release -p tenants -p migrations
cargo build --locked --bin local-api
bash scripts/ferretdb.sh start
export MONGODB_URI="mongodb://127.0.0.1:${FERRETDB_PORT}/" MONGODB_DATABASE="bench"
target/debug/local-api migrate setup >/dev/null
python3 scripts/bench/lambda_start.py target/release/tenants events/tenants-list.json --runs "${RUNS:-10}" --invocations 20
python3 scripts/bench/lambda_start.py target/release/migrations events/migrations-status.json --runs "${RUNS:-10}" --invocations 5
