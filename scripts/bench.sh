#!/usr/bin/env bash
# Cold start, warm latency and peak memory of the release Lambda binaries, each under a local
# Runtime API (scripts/bench/lambda_start.py) against a throw-away FerretDB and moto on loopback.
# The tenant-scoped functions act on the events' fixtures (`local-api seed-events`), as the
# tenant admin of events/. Numbers go in issue notes and the README; no test asserts timings.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
use_throwaway_stack "${BENCH_FERRETDB_PORT:-27217}" "${BENCH_MOTO_PORT:-5217}"

cargo build --locked --release -p tenants -p migrations -p users -p roles -p audit -p api-keys
cargo build --locked --bin local-api
bash scripts/ferretdb.sh start
bash scripts/moto.sh start
API=target/debug/local-api
export MONGODB_URI="mongodb://127.0.0.1:${FERRETDB_PORT}/" MONGODB_DATABASE="bench"
export MOTO_URL="http://127.0.0.1:${MOTO_PORT}" COGNITO_POOL_NAME="bench"
set -a; eval "$("$API" bootstrap)"; set +a
"$API" migrate setup >/dev/null
"$API" seed-events
# What a deployed function reads at cold start: the connection string's secret (never the URI),
# the pool, and (locally) moto as every AWS endpoint, with clearly fake credentials.
export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER="$MOTO_URL" AWS_ENDPOINT_URL_SECRETS_MANAGER="$MOTO_URL"
export "$("$API" secret)"
unset MONGODB_URI
bench() { python3 scripts/bench/lambda_start.py "$1" "$2" --runs "${RUNS:-10}" --invocations "$3"; }
bench target/release/tenants events/tenants-list.json 20
bench target/release/users events/users-list.json 20
bench target/release/roles events/roles-list.json 20
bench target/release/audit events/audit-list.json 20
bench target/release/api-keys events/api-keys-list.json 20
# The authorizer runs in front of every tenant-scoped call. Its event presents the fixtures' key,
# whose minute window is 60 calls: 10 runs of 5 stay within it, so every warm call is the usual
# path (the key, then one conditional update of its windows).
bench target/release/authorizer events/api-keys-authorizer.json 5
bench target/release/migrations events/migrations-status.json 5
bench target/release/post-confirmation events/users-post-confirmation.json 5
bench target/release/audit-retention events/audit-retention-scheduled.json 5
ls -l target/release/tenants target/release/users target/release/roles target/release/audit target/release/migrations target/release/post-confirmation \
  target/release/api-keys target/release/authorizer target/release/audit-retention
# The deployable zips, where scripts/package.sh made them.
ls -l target/lambda/*/bootstrap.zip 2>/dev/null || echo "no zips: run scripts/package.sh for the zip sizes"
