#!/usr/bin/env bash
# moto server (Cognito user pools, KMS, S3 and SQS) on 127.0.0.1, from the project's virtualenv.
#   scripts/moto.sh start   start and wait until it answers (idempotent)
#   scripts/moto.sh stop    stop the server started from this checkout
#   scripts/moto.sh url     print its endpoint
# MOTO_PORT (default 5000) picks the port. Pool and client ids are derived from their names
# (HASH strategy), so they are the same after a restart.
source "$(dirname "$0")/lib.sh"

PIDFILE="${RUN_DIR}/moto-${MOTO_PORT}.pid"
LOGFILE="${RUN_DIR}/moto-${MOTO_PORT}.log"
URL="http://127.0.0.1:${MOTO_PORT}"

ready() { curl -fsS "${URL}/moto-api/" >/dev/null; }

start() {
  if pid_alive "$PIDFILE" && ready; then log "already running at ${URL}"; return; fi
  local venv; venv=$("${ROOT}/scripts/venv.sh")
  start_daemon moto "$PIDFILE" "$LOGFILE" ready env \
    MOTO_COGNITO_IDP_USER_POOL_ID_STRATEGY=HASH \
    MOTO_COGNITO_IDP_USER_POOL_CLIENT_ID_STRATEGY=HASH \
    "${venv}/bin/moto_server" -H 127.0.0.1 -p "${MOTO_PORT}"
  log "moto ready at ${URL}"
}

stop() { stop_pidfile "$PIDFILE"; log "moto on port ${MOTO_PORT} stopped"; }

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
