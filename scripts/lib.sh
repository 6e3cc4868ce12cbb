# shellcheck shell=bash
# Shared settings for the local stack scripts. Sourced, never run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ROOT}/.cache"
RUN_DIR="${CACHE}/run"
mkdir -p "${RUN_DIR}"

FERRETDB_VERSION="1.24.2"
FERRETDB_PORT="${FERRETDB_PORT:-27017}"
FERRETDB_DEBUG_PORT="${FERRETDB_DEBUG_PORT:-$((FERRETDB_PORT + 1))}"
MOTO_PORT="${MOTO_PORT:-5000}"
LOCAL_API_PORT="${LOCAL_API_PORT:-3000}"
AWS_REGION="${AWS_REGION:-us-east-1}"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }

# Waits for a command to succeed, at most $1 tries of 0.2 s. A bounded poll on a real condition,
# not a sleep used as synchronisation.
wait_for() {
  local tries=$1; shift
  for _ in $(seq "$tries"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  return 1
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Stops the process recorded in a pid file: TERM, then KILL if it does not go within 5 s.
stop_pidfile() {
  local pidfile=$1
  if pid_alive "$pidfile"; then
    local pid; pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# Starts a command in the background, records its pid, and waits (bounded) until the function
# named by $4 succeeds. On failure it prints the log, stops the process and exits.
start_daemon() {
  local name=$1 pidfile=$2 logfile=$3 ready=$4; shift 4
  "$@" >"$logfile" 2>&1 &
  echo $! >"$pidfile"
  if ! wait_for 150 "$ready"; then
    log "$name did not become ready; its log:"; cat "$logfile" >&2
    stop_pidfile "$pidfile"; exit 1
  fi
}

# Runs the local API as a deployed function reads its database: the connection string from
# (moto's) Secrets Manager, never from MONGODB_URI. Seeds the secret from MONGODB_URI first.
# Clearly fake credentials; moto is every AWS endpoint. Run it in the background (`&`): it execs
# the API, so that `$!` is the API's own pid.
serve_local_api() {
  local api=$1; shift
  local secret
  secret=$("$api" secret)
  exec env -u MONGODB_URI "$secret" AWS_REGION="${AWS_REGION}" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
    AWS_ENDPOINT_URL_SECRETS_MANAGER="${MOTO_URL}" AWS_ENDPOINT_URL_KMS="${MOTO_URL}" CORS_ALLOWED_ORIGIN="${CORS_ALLOWED_ORIGIN:-http://127.0.0.1:3000}" "$@" "$api" serve
}

# Runs this script's FerretDB and moto on ports of their own ($1 and $2), so that a running local
# stack (scripts/run.sh) is left alone, and stops them and removes their data on exit.
use_throwaway_stack() {
  export FERRETDB_PORT=$1 MOTO_PORT=$2
  export FERRETDB_DEBUG_PORT=$((FERRETDB_PORT + 1))
  trap throwaway_cleanup EXIT
}
throwaway_cleanup() {
  local status=$?
  stop_stack
  rm -rf "${CACHE}/ferretdb-data/${FERRETDB_PORT}"
  exit "$status"
}

# The personal-data master key in moto's KMS, for every local-api command after it: exports
# KMS_KEY_ID and moto as the KMS endpoint (clearly fake credentials). Given a recorded id ($2,
# optional) that moto no longer has, moto's KMS lost its key material (it keeps it in memory
# only): a new key is made and KMS_KEY_REPLACED is set to the old id.
use_local_kms() {
  local api=$1 recorded=${2:-}
  local kms_env
  kms_env=$("$api" kms-key "$recorded")
  unset KMS_KEY_REPLACED
  set -a; eval "$kms_env"; set +a
  export AWS_ENDPOINT_URL_KMS="${MOTO_URL}" AWS_REGION="${AWS_REGION}" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
}

# Stops what scripts/run.sh and scripts/test.sh start: the local API (if $api_pid is set),
# moto and FerretDB on the current ports. Never fails, so that it is safe in an EXIT trap.
stop_stack() {
  if [ -n "${api_pid:-}" ]; then kill "$api_pid" 2>/dev/null || true; wait "$api_pid" 2>/dev/null || true; fi
  bash "${ROOT}/scripts/moto.sh" stop >/dev/null 2>&1 || true
  bash "${ROOT}/scripts/ferretdb.sh" stop >/dev/null 2>&1 || true
}
