#!/usr/bin/env bash
# The whole thing, locally, in one command: FerretDB, moto with a bootstrapped user pool and a
# demo superadmin, the migrations `setup`, and the local API on 127.0.0.1:$LOCAL_API_PORT
# (default 3000), with a demo tenant whose admin was invited through Cognito. Prints tokens for
# the superadmin and the tenant admin, and curls to try. Ctrl-C stops it all.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

DEMO_EMAIL="${DEMO_EMAIL:-ops@platform.example}"
DEMO_ADMIN_EMAIL="${DEMO_ADMIN_EMAIL:-admin@acme.example}"
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
moto_kept=""
curl -fsS "http://127.0.0.1:${MOTO_PORT}/moto-api/" >/dev/null 2>&1 && moto_kept=1
bash scripts/moto.sh start
export MONGODB_URI="mongodb://127.0.0.1:${FERRETDB_PORT}/"
export MOTO_URL="http://127.0.0.1:${MOTO_PORT}"

log "bootstrapping the user pool"
pool_env=$("$API" bootstrap)
echo "$pool_env"
set -a; eval "$pool_env"; set +a

# The personal-data master key: its id is recorded, so that a restarted moto (which keeps key
# material in memory only) is noticed instead of serving data nobody can decrypt.
kms_record="${RUN_DIR}/kms-key-id-${MOTO_PORT}"
use_local_kms "$API" "$(cat "$kms_record" 2>/dev/null || true)"
echo "$KMS_KEY_ID" >"$kms_record"

if [ -z "$moto_kept" ]; then
  # moto keeps users in memory only: the links of an earlier run's users would point at subs
  # nobody can sign in as. Start from an empty local database instead of serving stale links.
  log "moto started afresh, without the users of earlier runs: resetting the local database ${MONGODB_DATABASE}"
  "$API" reset
elif [ -n "${KMS_KEY_REPLACED:-}" ]; then
  log "moto's KMS no longer has the master key ${KMS_KEY_REPLACED}: the local personal data can't be decrypted; resetting the local database ${MONGODB_DATABASE} and its key vault"
  "$API" reset
fi

log "running the migrations setup"
"$API" migrate setup >/dev/null
"$API" migrate up >/dev/null

token=$("$API" user "$DEMO_EMAIL" "$DEMO_PASSWORD" --superadmin)

log "serving; Ctrl-C stops the API, moto and FerretDB"
serve_local_api "$API" &
api_pid=$!
BASE="http://127.0.0.1:${LOCAL_API_PORT}"
wait_for 100 curl -s -o /dev/null "$BASE/" || { log "the local API did not start"; exit 1; }

# The demo tenant, made once through the onboarding saga: its admin is invited through Cognito
# (moto) like any admin. The Idempotency-Key makes the call safe to repeat: a replay answers 200
# with the same tenant.
PY="${CACHE}/venv/bin/python"
ONBOARDING_KEY="demo-acme-onboarding-0001"
ONBOARDING_BODY="{\"tenantName\":\"Acme Corp\",\"domain\":\"acme.example\",\"plan\":\"basic\",\"adminEmail\":\"${DEMO_ADMIN_EMAIL}\",\"adminFirstName\":\"Ada\",\"adminLastName\":\"Admin\"}"
tenant=$(curl -sS "$BASE/tenants?search=acme.example" -H "Authorization: Bearer $token" \
  | "$PY" -c 'import json,sys; t=json.load(sys.stdin)["data"]["tenants"]; print(t[0]["tenantId"] if t else "")')
if [ -z "$tenant" ]; then
  tenant=$(curl -sS -X POST "$BASE/onboarding" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -H "Idempotency-Key: ${ONBOARDING_KEY}" -d "$ONBOARDING_BODY" \
    | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["data"]["tenantId"])')
fi
# Cognito would e-mail the invited admin a temporary password; locally we set one instead.
admin_token=$("$API" user "$DEMO_ADMIN_EMAIL" "$DEMO_PASSWORD" --tenant "$tenant")

cat <<INFO

Local API: ${BASE}   (FerretDB ${MONGODB_URI}, moto ${MOTO_URL})

Demo superadmin ${DEMO_EMAIL}: its ID token (valid one hour; for another, run
\`MOTO_URL=${MOTO_URL} COGNITO_POOL_NAME=${COGNITO_POOL_NAME:-tenancy-local} ${API} user ${DEMO_EMAIL} '${DEMO_PASSWORD}' --superadmin\`):

export TOKEN='${token}'

Demo tenant ${tenant} (Acme Corp, basic plan), onboarded with this call (run it again: the same
key answers 200 with the same tenant):

curl -sS -X POST ${BASE}/onboarding -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
  -H 'Idempotency-Key: ${ONBOARDING_KEY}' -d '${ONBOARDING_BODY}'

Its admin ${DEMO_ADMIN_EMAIL} was invited through Cognito; it signs in (moto stands in for the
e-mailed temporary password) with
\`MOTO_URL=${MOTO_URL} ${API} user ${DEMO_ADMIN_EMAIL} '${DEMO_PASSWORD}' --tenant ${tenant}\`:

export ADMIN_TOKEN='${admin_token}'

The admin's own profile (its first call activates it):

curl -sS ${BASE}/users/me -H "Authorization: Bearer \$ADMIN_TOKEN"

Invite a user (Cognito sends the invitation), then list the users and roles:

curl -sS -X POST ${BASE}/users -H "Authorization: Bearer \$ADMIN_TOKEN" -H 'Content-Type: application/json' \\
  -d '{"email":"jane@acme.example","firstName":"Jane","lastName":"Doe"}'
curl -sS ${BASE}/users -H "Authorization: Bearer \$ADMIN_TOKEN"
curl -sS ${BASE}/roles -H "Authorization: Bearer \$ADMIN_TOKEN"

Issue an API key (its whole key is shown once, in data.key), then call as a machine with it:

export API_KEY=\$(curl -sS -X POST ${BASE}/api-keys -H "Authorization: Bearer \$ADMIN_TOKEN" -H 'Content-Type: application/json' \\
  -d '{"name":"Demo key","permissions":["read:users","read:roles"]}' | ${PY} -c 'import json,sys; print(json.load(sys.stdin)["data"]["key"])')
curl -sS ${BASE}/users -H "x-api-key: \$API_KEY"

As the superadmin, create another tenant, or list them:

curl -sS -X POST ${BASE}/tenants -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
  -d '{"name":"Globex","adminEmail":"admin@globex.example","plan":"premium"}'
curl -sS ${BASE}/tenants -H "Authorization: Bearer \$TOKEN"

INFO
wait "$api_pid"
