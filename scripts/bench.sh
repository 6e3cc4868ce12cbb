#!/usr/bin/env bash
# Cold start, warm latency and peak memory of the release Lambda binaries, each under a local
# Runtime API (scripts/bench/lambda_start.py) against a throw-away FerretDB and moto on loopback.
#   scripts/bench.sh                        builds every binary of template.yaml (release) and
#                                           benches each: RUNS cold starts (default 10)
#   scripts/bench.sh --list                 prints what it benches and builds; starts nothing
#   scripts/bench.sh --compare DIR_A DIR_B  paired, interleaved cold starts of two builds'
#                                           release binaries, A, B, A, B, ...: RUNS pairs (default 20)
#   scripts/bench.sh --export-memory        the jobs worker (release tenant-jobs) exporting a tenant of
#                                           DOCUMENTS documents (default 100000): its peak memory over
#                                           the invocations that export it whole, and the job at the end
# Stdout is one JSON line per binary; everything else goes to stderr. BENCH_ONLY=a,b limits the
# run to those binaries.
# The binaries, their packages, their events and invocations per cold start are derived from
# template.yaml, openapi.json and events/ (scripts/bench/functions.py): nothing here names one.
# The tenant-scoped functions act on the events' fixtures (`local-api seed-events`), as the
# tenant admin of events/. Numbers go in issue notes and docs/performance.md; no test asserts timings.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

usage() {
  echo "usage: scripts/bench.sh [--list | --compare DIR_A DIR_B]" >&2
  exit 2
}
mode=bench
case "${1:-}" in
  "") [ $# -eq 0 ] || usage ;;
  --list) [ $# -eq 1 ] || usage; mode=list ;;
  --export-memory) [ $# -eq 1 ] || usage; mode=export ;;
  --compare)
    [ $# -eq 3 ] || usage
    mode=compare dir_a=$2 dir_b=$3
    [ -d "$dir_a" ] && [ -d "$dir_b" ] || { log "--compare takes two directories of release binaries"; exit 2; }
    ;;
  *) usage ;;
esac

PY="$(bash scripts/venv.sh)/bin/python"
if [ "$mode" = export ]; then
  plan=$(printf 'tenant-jobs\ttenants\t-\t-\tTenantJobsFunction')
else
  plan=$("$PY" scripts/bench/functions.py)
fi
if [ -n "${BENCH_ONLY:-}" ]; then
  plan=$(BENCH_ONLY="$BENCH_ONLY" "$PY" -c '
import os, sys
rows = [line.split("\t") for line in sys.stdin.read().splitlines()]
only = [b for b in os.environ["BENCH_ONLY"].split(",") if b]
unknown = [b for b in only if b not in {r[0] for r in rows}]
if unknown:
    sys.exit(f"BENCH_ONLY names binaries template.yaml does not build: {unknown}")
print("\n".join("\t".join(r) for r in rows if r[0] in only))
' <<<"$plan")
fi
[ -n "$plan" ] || { log "BENCH_ONLY leaves no binary to bench"; exit 2; }
# binary, package, event, invocations per cold start, logical id
mapfile -t rows <<<"$plan"
packages=()
for row in "${rows[@]}"; do
  IFS=$'\t' read -r _ package _ _ _ <<<"$row"
  [[ " ${packages[*]} " == *" ${package} "* ]] || packages+=("$package")
done
build=(cargo build --locked --release)
for package in "${packages[@]}"; do build+=(-p "$package"); done

if [ "$mode" = list ]; then
  printf 'binary\tpackage\tevent\tinvocations\tfunction\n'
  printf '%s\n' "${rows[@]}"
  printf '\nbuild: %s\n' "${build[*]}"
  exit 0
fi

if [ "$mode" = compare ]; then
  for row in "${rows[@]}"; do
    for dir in "$dir_a" "$dir_b"; do
      [ -x "${dir}/${row%%$'\t'*}" ] || { log "no binary ${row%%$'\t'*} in ${dir}"; exit 1; }
    done
  done
fi

# Its own ports, never a running local stack's: the exit trap stops what listens on them.
BENCH_FERRETDB_PORT="${BENCH_FERRETDB_PORT:-27317}" BENCH_MOTO_PORT="${BENCH_MOTO_PORT:-5317}"
for port in "$BENCH_FERRETDB_PORT" "$((BENCH_FERRETDB_PORT + 1))" "$BENCH_MOTO_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
    log "127.0.0.1:${port} is in use: set BENCH_FERRETDB_PORT and BENCH_MOTO_PORT to free ports"
    exit 1
  fi
done
use_throwaway_stack "$BENCH_FERRETDB_PORT" "$BENCH_MOTO_PORT"

if [ "$mode" = bench ] || [ "$mode" = export ]; then
  "${build[@]}"
  bin_dir="${CARGO_TARGET_DIR:-target}/release"
fi
cargo build --locked --bin local-api
bash scripts/ferretdb.sh build >&2
bash scripts/ferretdb.sh start >&2
bash scripts/moto.sh start >&2
API=target/debug/local-api
export MONGODB_URI="mongodb://127.0.0.1:${FERRETDB_PORT}/" MONGODB_DATABASE="bench"
export MOTO_URL="http://127.0.0.1:${MOTO_PORT}" COGNITO_POOL_NAME="bench"
set -a; eval "$("$API" bootstrap)"; set +a
# The personal-data master key: the fixtures and the functions seal and open personal data.
use_local_kms "$API"
"$API" migrate setup >/dev/null
"$API" seed-events >&2
# What a deployed function reads at cold start: the connection string's secret (never the URI),
# the pool, the master key, and (locally) moto as every AWS endpoint, with clearly fake credentials.
export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER="$MOTO_URL" AWS_ENDPOINT_URL_SECRETS_MANAGER="$MOTO_URL"
export AWS_ENDPOINT_URL_KMS="$MOTO_URL" KMS_KEY_ID
export "$("$API" secret)"
# The export bucket and the jobs queue in moto, as the local stack names them (the functions that
# export, serve or delete export files read them at cold start).
export EXPORT_BUCKET=tenancy-local-exports JOBS_QUEUE_URL="${MOTO_URL}/123456789012/tenancy-local-jobs" S3_FORCE_PATH_STYLE=true
export AWS_ENDPOINT_URL_S3="$MOTO_URL" AWS_ENDPOINT_URL_SQS="$MOTO_URL"

if [ "$mode" = export ]; then
  job=$("$API" seed-export-bench "${DOCUMENTS:-100000}")
  unset MONGODB_URI
  event=$(mktemp)
  trap 'rm -f "$event"; throwaway_cleanup' EXIT
  printf '{"Records":[{"messageId":"bench","receiptHandle":"bench","body":"{\\"jobId\\":\\"%s\\"}","attributes":{},"messageAttributes":{},"md5OfBody":"","eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:us-east-1:123456789012:bench-JobsQueue-1","awsRegion":"us-east-1"}]}' "$job" >"$event"
  # One cold start, then one message per invocation, as SQS delivers the job again until it is
  # done; the invocations after that find it ended.
  python3 scripts/bench/lambda_start.py "${bin_dir}/tenant-jobs" "$event" --runs 1 --invocations "${INVOCATIONS:-12}"
  MONGODB_URI="mongodb://127.0.0.1:${FERRETDB_PORT}/" "$API" job "$job" >&2
  exit 0
fi
unset MONGODB_URI

# The authorizer's event presents the fixtures' key, whose minute window is 60 calls: 10 runs of
# 5 stay within it, so every warm call is the usual path (the key, then one conditional update of
# its windows). A compare's 2 x 20 runs outlast it; both sides then take the full window's path
# alike, and the init and peak memory it compares are those of the same calls.
for row in "${rows[@]}"; do
  IFS=$'\t' read -r binary _ event invocations _ <<<"$row"
  if [ "$mode" = compare ]; then
    python3 scripts/bench/compare.py "$dir_a" "$dir_b" "$binary" "$event" --runs "${RUNS:-20}" --invocations "$invocations"
  else
    python3 scripts/bench/lambda_start.py "${bin_dir}/${binary}" "$event" --runs "${RUNS:-10}" --invocations "$invocations"
  fi
done

if [ "$mode" = bench ]; then
  for row in "${rows[@]}"; do ls -l "${bin_dir}/${row%%$'\t'*}" >&2; done
  # The deployable zips, where scripts/package.sh made them.
  ls -l target/lambda/*/bootstrap.zip >&2 2>/dev/null || echo "no zips: run scripts/package.sh for the zip sizes" >&2
fi
