#!/usr/bin/env bash
# Makes (once) the Python virtualenv with moto, schemathesis and cfn-lint, and prints its path.
# It is rebuilt only when scripts/requirements.txt changes.
source "$(dirname "$0")/lib.sh"

VENV="${CACHE}/venv"
STAMP="${VENV}/.requirements.sha256"
want=$(sha256sum "${ROOT}/scripts/requirements.txt" | cut -d' ' -f1)

if [ ! -x "${VENV}/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  log "installing Python tools into ${VENV}"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "${VENV}/bin/pip" install --quiet --disable-pip-version-check -r "${ROOT}/scripts/requirements.txt" >&2
  echo "$want" >"$STAMP"
fi
echo "$VENV"
