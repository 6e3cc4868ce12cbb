#!/usr/bin/env bash
# The one test command: builds and starts everything the tests need, runs every test, and
# stops what it started, whether the tests pass or not.
#   0. checks the format (cargo fmt) and lints (cargo clippy, warnings denied) before anything else,
#      so that CI fails fast on them;
#   1. builds (first run) or reuses FerretDB, and makes or reuses the Python venv;
#   2. starts a throw-away FerretDB and moto on their own loopback ports;
#   3. runs the Rust suites (unit, integration, events, the isolation property);
#   4. lints template.yaml with cfn-lint and `sam validate --lint`, and checks it against the
#      code (grants, authorizers, CORS, alarms against the metric lines the tests captured), then
#      checks the docs (tests/docs_test.py);
#   5. runs schemathesis against the local API, as a tenant admin and with an API key on the
#      operations of the tags whose every operation uses TenantAuth (read from openapi.json), and
#      as a superadmin on every operation (sign-up on), whose onboarding and sign-up operations
#      must each answer a 2xx;
#   6. packages one function (roles) the card's way, arm64 with cargo-lambda, as a smoke test of
#      scripts/package.sh (the full packaging of every function takes longer than CI allows; its
#      measured time is in docs/operations/packaging.md).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

log "checking the format: cargo fmt --check"
cargo fmt --all --check
log "linting: cargo clippy, every warning an error"
cargo clippy --workspace --all-targets --locked -- -D warnings

use_throwaway_stack "${TEST_FERRETDB_PORT:-27117}" "${TEST_MOTO_PORT:-5117}"
API_PORT="${TEST_API_PORT:-3117}"
api_pid=""
trap 'exit 130' INT TERM

# Tools in the background while cargo builds: both are mostly downloads on a first run.
bash scripts/ferretdb.sh build >"${RUN_DIR}/ferretdb-build.log" 2>&1 &
ferret_build=$!
bash scripts/venv.sh >"${RUN_DIR}/venv.log" 2>&1 &
venv_build=$!
bash scripts/venv.sh ship >"${RUN_DIR}/venv-ship.log" 2>&1 &
ship_venv_build=$!

log "building the workspace and its tests"
cargo build --workspace --all-targets --locked

wait "$ferret_build" || { cat "${RUN_DIR}/ferretdb-build.log" >&2; exit 1; }
wait "$venv_build" || { cat "${RUN_DIR}/venv.log" >&2; exit 1; }
wait "$ship_venv_build" || { cat "${RUN_DIR}/venv-ship.log" >&2; exit 1; }

rm -rf "${CACHE}/ferretdb-data/${FERRETDB_PORT}"
bash scripts/ferretdb.sh start
bash scripts/moto.sh start
export TEST_MONGODB_URI="mongodb://127.0.0.1:${FERRETDB_PORT}/"
export TEST_MOTO_URL="http://127.0.0.1:${MOTO_PORT}"

log "running the Rust test suites"
# Every log line of the suites is kept (the test process at trace) for the personal-data scan.
export TEST_LOG_DIR="${RUN_DIR}/test-logs"
rm -rf "$TEST_LOG_DIR"
# The tests wait on I/O far more than on CPU: more threads than cores keeps both busy.
cargo test --workspace --locked -- --test-threads="${TEST_THREADS:-6}" --show-output

log "scanning every database the suites left and every log line they wrote for personal data in the clear"
target/debug/pii_scan "$TEST_MONGODB_URI" "$TEST_LOG_DIR"

log "linting template.yaml and checking its grants against the code"
VENV="${CACHE}/venv"
"${VENV}/bin/cfn-lint" template.yaml
SAM_CLI_TELEMETRY=0 SAM_CLI_DISABLE_UPDATE_CHECK=1 "${CACHE}/venv-ship/bin/sam" validate --lint --region "${AWS_REGION}"
"${VENV}/bin/python" tests/template_test.py
log "checking the docs against the code"
"${VENV}/bin/python" tests/docs_test.py

log "contract tests: schemathesis against the local API, driven by openapi.json"
# The tenant-scoped tags: those whose every operation uses TenantAuth.
tenant_tags_text=$("${VENV}/bin/python" scripts/contract_coverage.py --tenant-auth-tags openapi.json)
mapfile -t tenant_tags <<<"$tenant_tags_text"
include_tenant_tags=()
for tag in "${tenant_tags[@]}"; do include_tenant_tags+=(--include-tag "$tag"); done
API="${ROOT}/target/debug/local-api"
export MONGODB_URI="$TEST_MONGODB_URI" MONGODB_DATABASE="contract_$(date +%s)_$$"
export MOTO_URL="$TEST_MOTO_URL" COGNITO_POOL_NAME="contract-tests"
set -a; eval "$("$API" bootstrap)"; set +a
use_local_kms "$API"
"$API" migrate setup >/dev/null
"$API" migrate up >/dev/null
# Clearly fake, local-only passwords for moto's contract users.
token=$("$API" user ops@platform.test 'Contract-Passw0rd!' --superadmin)
# Sign-up on, so that the run reaches its 2xx: with a clearly fake SES identity (moto sends nothing).
serve_local_api "$API" LOCAL_API_PORT="$API_PORT" RUST_LOG=warn SELF_SERVICE_SIGNUP=true \
  SES_IDENTITY_ARN=arn:aws:ses:us-east-1:000000000000:identity/local.example >"${RUN_DIR}/contract-api.log" 2>&1 &
api_pid=$!
wait_for 100 curl -s -o /dev/null "http://127.0.0.1:${API_PORT}/" || { cat "${RUN_DIR}/contract-api.log" >&2; exit 1; }

# A tenant for the tenant-scoped routes: enterprise, so that seats never run out mid-run.
tenant=$(curl -sS -X POST "http://127.0.0.1:${API_PORT}/tenants" -H "Authorization: Bearer ${token}" \
  -H 'content-type: application/json' -d '{"name":"Contract Co","adminEmail":"admin@contract.test","plan":"enterprise"}' \
  | "${VENV}/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["data"]["tenantId"])')
admin_token=$("$API" user admin@contract.test 'Contract-Passw0rd!' --tenant "$tenant")

# Every documented response must match its schema, headers and content type, and no input may
# produce a 5xx. Bounded: 30 examples an operation, a fixed seed, a time cap per run. One
# worker: schemathesis 4 with several threads trips a CPython 3.11 AST race. The cap ends the
# stateful phase, whose links (an invitation, then its user's deletion) give the rarer
# operations their 2xx: at 240 s a tenant admin's run reached about 300 scenarios, and once
# fell short of a user's deletion; 300 s leaves it room.
contract() {
  local name=$1 credential=$2; shift 2
  "${VENV}/bin/schemathesis" run openapi.json \
    --url "http://127.0.0.1:${API_PORT}" \
    --header "${credential}" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-30}" --seed 20261128 --max-time "${SCHEMATHESIS_SECONDS:-300}" \
    --workers 1 --no-color --report har --report-har-path "${RUN_DIR}/contract-${name}.har" "$@"
}
# The superadmin's token names no tenant, so every users, roles and audit operation answers it
# with a documented 403. A tenant admin's run must reach each of them with a 2xx at least once. It runs
# first: the superadmin's run may suspend or change the contract tenant.
# The key's run covers the same operations as a machine client. Key management and /users/me
# answer it a documented 403 (only people manage keys; a key has no profile), so those count the
# admin's 2xx; every other read must also answer the key a 2xx (writes depend on the fuzzer
# finding a valid body, which the admin's run already shows).
log "contract run 1: a tenant admin, the operations tagged ${tenant_tags[*]}"
contract admin "Authorization: Bearer ${admin_token}" "${include_tenant_tags[@]}"
# The key belongs to a tenant of its own: the admin's run may revoke or rotate any key of its
# tenant, and fill the plan's places. The TenantAuth scheme names the Authorization header, and
# schemathesis invents a value for a scheme's header it is not given: an empty one, which the
# authorizer takes as absent, keeps it from sending a token beside the key (both is a 401).
key_tenant=$(curl -sS -X POST "http://127.0.0.1:${API_PORT}/tenants" -H "Authorization: Bearer ${token}" \
  -H 'content-type: application/json' -d '{"name":"Contract Keys Co","adminEmail":"keys@contract.test","plan":"enterprise"}' \
  | "${VENV}/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["data"]["tenantId"])')
key_admin=$("$API" user keys@contract.test 'Contract-Passw0rd!' --tenant "$key_tenant")
api_key=$(curl -sS -X POST "http://127.0.0.1:${API_PORT}/api-keys" -H "Authorization: Bearer ${key_admin}" \
  -H 'content-type: application/json' -d '{"name":"Contract key","permissions":["*"]}' \
  | "${VENV}/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["data"]["key"])')
log "contract run 2: an API key, the same operations"
contract key "x-api-key: ${api_key}" --header "Authorization: " "${include_tenant_tags[@]}"
"${VENV}/bin/python" scripts/contract_coverage.py "${RUN_DIR}/contract-admin.har" openapi.json "${tenant_tags[@]}"
"${VENV}/bin/python" scripts/contract_coverage.py --reads --skip getMyProfile,exportMyData,exportUser,listApiKeys,getApiKey \
  "${RUN_DIR}/contract-key.har" openapi.json "${tenant_tags[@]}"
log "contract run 3: a platform superadmin, every operation"
contract superadmin "Authorization: Bearer ${token}"
# The onboarding and sign-up operations (the superadmin's, and anyone's) in a run of their own, so
# that the time cap of the run over every operation cannot leave them out: each answers a 2xx
# (the onboarding's status through the link from its creation, in the stateful phase).
log "contract run 4: the onboarding and sign-up operations"
SCHEMATHESIS_SECONDS="${SCHEMATHESIS_ONBOARDING_SECONDS:-120}" contract onboarding "Authorization: Bearer ${token}" \
  --include-tag onboarding --include-tag signup
"${VENV}/bin/python" scripts/contract_coverage.py "${RUN_DIR}/contract-onboarding.har" openapi.json onboarding signup
# The services are done with: free the machine for the release build.
stop_stack

log "packaging smoke test: one function, arm64, as scripts/package.sh builds every one"
bash scripts/package.sh roles
log "all tests passed"
