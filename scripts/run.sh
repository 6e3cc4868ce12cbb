#!/usr/bin/env bash
# The whole thing, locally, in one command: FerretDB, moto with a bootstrapped user pool and a
# demo superadmin, the migrations `setup`, and the local API on 127.0.0.1:$LOCAL_API_PORT
# (default 3000). Prints a valid token and a curl that creates a tenant. Ctrl-C stops it all.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

DEMO_EMAIL="${DEMO_EMAIL:-ops@platform.example}"
# A clearly fake, local-only password for moto's demo user.
DEMO_PASSWORD="${DEMO_PASSWORD:-Local-Demo-Passw0rd!}"
export MONGODB_DATABASE="${MONGODB_DATABASE:-tenancy}"

api_pid=""
cleanup() {
  local status=$?
  stop_stack
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building the local API"
cargo build --locked --bin local-api
API="${ROOT}/target/debug/local-api"

bash scripts/ferretdb.sh start
bash scripts/moto.sh start
export MONGODB_URI="mongodb://127.0.0.1:${FERRETDB_PORT}/"
export MOTO_URL="http://127.0.0.1:${MOTO_PORT}"

log "bootstrapping the user pool"
pool_env=$("$API" bootstrap)
echo "$pool_env"
set -a; eval "$pool_env"; set +a

log "running the migrations setup"
"$API" migrate setup >/dev/null
"$API" migrate up >/dev/null

token=$("$API" user "$DEMO_EMAIL" "$DEMO_PASSWORD" --superadmin)

cat <<INFO

Local API: http://127.0.0.1:${LOCAL_API_PORT}   (FerretDB ${MONGODB_URI}, moto ${MOTO_URL})

Demo superadmin ${DEMO_EMAIL}; its ID token (valid one hour; rerun this script, or
\`MOTO_URL=${MOTO_URL} ${API} user ${DEMO_EMAIL} '${DEMO_PASSWORD}' --superadmin\`, for another):

export TOKEN='${token}'

Create a tenant (with its admin, user and viewer roles and its admin user):

curl -sS -X POST http://127.0.0.1:${LOCAL_API_PORT}/tenants \\
  -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
  -d '{"name":"Acme Corp","domain":"acme.example","adminEmail":"admin@acme.example","plan":"basic"}'

List tenants:

curl -sS http://127.0.0.1:${LOCAL_API_PORT}/tenants -H "Authorization: Bearer \$TOKEN"

INFO

log "serving; Ctrl-C stops the API, moto and FerretDB"
"$API" serve &
api_pid=$!
wait "$api_pid"
