#!/usr/bin/env bash
# `sam local invoke` without Docker: runs one file of events/ through the built host binary of its
# function (target/debug/<binary>) under a local Lambda Runtime API, and prints its response
# (the function's own log and metric lines go to stderr).
#   scripts/invoke.sh events/users-list.json
# Self-contained: a throw-away FerretDB and moto on ports of their own, a user pool, the
# connection string's secret in moto (the function reads it at cold start, as deployed), the
# indexes, and the fixtures the event names. With Docker, `sam build` and then
# `sam local invoke -e events/<x>.json <Function>` do the same against the arm64 build.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
[ $# -eq 1 ] && [ -f "$1" ] || { echo "usage: scripts/invoke.sh events/<event>.json" >&2; exit 2; }
event=$1

use_throwaway_stack "${INVOKE_FERRETDB_PORT:-27417}" "${INVOKE_MOTO_PORT:-5417}"

cargo build --locked --bins >&2
bash scripts/ferretdb.sh build >&2
bash scripts/venv.sh >/dev/null
bash scripts/ferretdb.sh start >&2
bash scripts/moto.sh start >&2
API=target/debug/local-api
export MONGODB_URI="mongodb://127.0.0.1:${FERRETDB_PORT}/" MONGODB_DATABASE="invoke"
export MOTO_URL="http://127.0.0.1:${MOTO_PORT}" COGNITO_POOL_NAME="invoke"
set -a; eval "$("$API" bootstrap)"; set +a
use_local_kms "$API"
"$API" migrate setup >/dev/null
"$API" invoke "$event"
