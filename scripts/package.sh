#!/usr/bin/env bash
# Builds the deployable zips the card's way: cargo-lambda, arm64, release, one binary at a time.
#   scripts/package.sh               every function binary of template.yaml
#   scripts/package.sh roles users   only these binaries (CI packages one, as a smoke test)
#   scripts/package.sh --sam         every binary, then `sam build` and `sam validate --lint`
# Each binary is built with exactly the command SAM's rust-cargolambda build method runs for it,
# where SAM runs it (`cargo lambda build --release --arm64 --bin X` in the function's CodeUri, its
# crate's directory, so that cargo resolves the `shared` features for that crate alone and a
# function links only the AWS SDKs it calls), so that `sam build` afterwards finds the cargo
# build done and only copies. The zip is target/lambda/X/bootstrap.zip, the bootstrap
# inside with its execute bit. cargo-lambda and zig come from PyPI, in .cache/venv-ship.
# Prints a table of zip sizes against the targets: 4 MiB for a binary that links no AWS SDK,
# 8 MiB for one that does; exits non-zero if one is over.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

run_sam=""
wanted=()
for arg in "$@"; do
  case "$arg" in
    --sam) run_sam=1 ;;
    -*) echo "usage: scripts/package.sh [--sam] [BINARY...]" >&2; exit 2 ;;
    *) wanted+=("$arg") ;;
  esac
done

mapfile -t all < <(sed -n 's/^ *Binary: *//p' template.yaml)
if [ "${#wanted[@]}" -eq 0 ]; then wanted=("${all[@]}"); fi
for b in "${wanted[@]}"; do
  printf '%s\n' "${all[@]}" | grep -qx "$b" || { log "template.yaml builds no binary named $b"; exit 2; }
done

VENV=$(bash scripts/venv.sh ship)
export PATH="${VENV}/bin:${PATH}"
# SAM never calls out from here: no telemetry, no update check.
export SAM_CLI_TELEMETRY=0 SAM_CLI_DISABLE_UPDATE_CHECK=1
rustup target add aarch64-unknown-linux-gnu >&2

# The package a binary belongs to and its directory, and the AWS SDK crates that package links.
package_of() {
  cargo metadata --format-version 1 --no-deps --locked | "${VENV}/bin/python" -c '
import json, os, sys
bin = sys.argv[1]
for p in json.load(sys.stdin)["packages"]:
    if any(t["name"] == bin and "bin" in t["kind"] for t in p["targets"]):
        print(p["name"], os.path.dirname(p["manifest_path"]))' "$1"
}
sdks_of() {
  cargo tree --locked -p "$1" -e normal --prefix none 2>/dev/null | sed -n 's/^\(aws-sdk-[a-z0-9]*\) .*/\1/p' | sort -u | paste -sd, -
}

results=()
failed=0
started_all=$(date +%s)
for bin in "${wanted[@]}"; do
  log "building ${bin} (arm64, release)"
  read -r package crate_dir < <(package_of "$bin")
  started=$(date +%s)
  (cd "$crate_dir" && cargo lambda build --release --arm64 --bin "$bin")
  seconds=$(( $(date +%s) - started ))
  dir="target/lambda/${bin}"
  "${VENV}/bin/python" - "$dir" <<'PY'
import os, sys, zipfile
d = sys.argv[1]
info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
info.external_attr = 0o100755 << 16  # a regular file, rwxr-xr-x: Lambda executes it
info.compress_type = zipfile.ZIP_DEFLATED
with open(os.path.join(d, "bootstrap"), "rb") as f, zipfile.ZipFile(os.path.join(d, "bootstrap.zip"), "w") as z:
    z.writestr(info, f.read(), compresslevel=9)
PY
  bytes=$(stat -c %s "${dir}/bootstrap.zip")
  sdks=$(sdks_of "$package")
  if [ -n "$sdks" ]; then limit=$((8 * 1024 * 1024)); else limit=$((4 * 1024 * 1024)); fi
  verdict=ok
  if [ "$bytes" -gt "$limit" ]; then verdict=OVER; failed=1; fi
  results+=("$(printf '%-18s %8s MiB  (target %d MiB)  %-4s %4ss  %s' "$bin" "$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1048576 }')" $((limit / 1048576)) "$verdict" "$seconds" "${sdks:-no AWS SDK}")")
done

echo
echo "zip sizes (arm64, release; target/lambda/<binary>/bootstrap.zip), build time, AWS SDKs linked:"
printf '  %s\n' "${results[@]}"
echo "  total: $(( $(date +%s) - started_all )) s"

if [ -n "$run_sam" ]; then
  log "sam build (rust-cargolambda, the same cargo build) and sam validate --lint"
  started=$(date +%s)
  AWS_REGION="${AWS_REGION}" sam build
  sam validate --lint --region "${AWS_REGION}"
  echo "  sam build and validate: $(( $(date +%s) - started )) s"
fi
exit "$failed"
