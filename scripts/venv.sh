#!/usr/bin/env bash
# Makes (once) a Python virtualenv and prints its path:
#   scripts/venv.sh        .cache/venv       moto, schemathesis, cfn-lint (scripts/requirements.txt)
#   scripts/venv.sh ship   .cache/venv-ship  SAM CLI, cargo-lambda and zig (scripts/requirements-ship.txt)
# Each is rebuilt only when its requirements file changes.
source "$(dirname "$0")/lib.sh"

case "${1:-}" in
  "") VENV="${CACHE}/venv"; REQUIREMENTS="${ROOT}/scripts/requirements.txt" ;;
  ship) VENV="${CACHE}/venv-ship"; REQUIREMENTS="${ROOT}/scripts/requirements-ship.txt" ;;
  *) echo "usage: scripts/venv.sh [ship]" >&2; exit 2 ;;
esac
STAMP="${VENV}/.requirements.sha256"
want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)

if [ ! -x "${VENV}/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  log "installing Python tools into ${VENV}"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "${VENV}/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
  echo "$want" >"$STAMP"
fi
echo "$VENV"
