#!/usr/bin/env bash
# FerretDB 1.24.2, built from the Go module proxy and run on 127.0.0.1 with the SQLite handler.
#   scripts/ferretdb.sh build   build once into .cache/ferretdb (reused afterwards)
#   scripts/ferretdb.sh start   build if needed, start, wait for a ping (idempotent)
#   scripts/ferretdb.sh stop    stop the server started from this checkout
#   scripts/ferretdb.sh uri     print the connection string
# FERRETDB_PORT (default 27017) picks the port; the debug handler listens on the next one.
source "$(dirname "$0")/lib.sh"

BIN="${CACHE}/ferretdb/ferretdb-${FERRETDB_VERSION}"
DATA="${CACHE}/ferretdb-data/${FERRETDB_PORT}"
PIDFILE="${RUN_DIR}/ferretdb-${FERRETDB_PORT}.pid"
LOGFILE="${RUN_DIR}/ferretdb-${FERRETDB_PORT}.log"
URI="mongodb://127.0.0.1:${FERRETDB_PORT}/"

build() {
  if [ -x "$BIN" ]; then log "reusing $BIN"; return; fi
  log "building FerretDB ${FERRETDB_VERSION} through the Go module proxy (first run only)"
  # FerretDB's build/version package panics at start unless build/version/version.txt is embedded;
  # its release pipeline generates that file, and the module cache is read-only. So the tools
  # module is vendored into a scratch copy under .cache, the one-line version file is added there,
  # and the binary is built from that copy. Nothing of FerretDB's lands in the repo.
  local work="${CACHE}/ferretdb/build"
  rm -rf "$work"; mkdir -p "$work"
  cp "${ROOT}/scripts/tools/ferretdb/"{go.mod,go.sum,tools.go} "$work/"
  (cd "$work" && go mod vendor)
  echo "v${FERRETDB_VERSION}" >"$work/vendor/github.com/FerretDB/FerretDB/build/version/version.txt"
  (cd "$work" && GOFLAGS="-buildvcs=false -mod=vendor" \
    go build -trimpath -o "${BIN}.tmp" github.com/FerretDB/FerretDB/cmd/ferretdb)
  mv "${BIN}.tmp" "$BIN"
  rm -rf "$work"
}

ping() {
  # The mongo shell is not installed; a hello over the wire is checked by the Rust side. Here a TCP
  # connect plus FerretDB's own readiness probe on the debug handler is enough.
  curl -fsS "http://127.0.0.1:${FERRETDB_DEBUG_PORT}/debug/readyz" >/dev/null
}

start() {
  build
  if pid_alive "$PIDFILE"; then log "already running on 127.0.0.1:${FERRETDB_PORT}"; return; fi
  mkdir -p "$DATA"
  start_daemon FerretDB "$PIDFILE" "$LOGFILE" ping "$BIN" \
    --listen-addr="127.0.0.1:${FERRETDB_PORT}" \
    --debug-addr="127.0.0.1:${FERRETDB_DEBUG_PORT}" \
    --handler=sqlite \
    --sqlite-url="file:${DATA}/" \
    --telemetry=disable \
    --state-dir="${DATA}" \
    --log-level=warn
  log "FerretDB ready at ${URI} (data in ${DATA})"
}

stop() { stop_pidfile "$PIDFILE"; log "FerretDB on port ${FERRETDB_PORT} stopped"; }

case "${1:-}" in
  build) build ;;
  start) start ;;
  stop) stop ;;
  uri) echo "$URI" ;;
  *) echo "usage: $0 build|start|stop|uri" >&2; exit 2 ;;
esac
