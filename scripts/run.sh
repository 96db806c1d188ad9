#!/usr/bin/env bash
# make run: serve FlickrKillr on a fresh machine with zero configuration.
# With no DATABASE_URL it starts the project-local PostgreSQL (scripts/pg.sh),
# migrates, seeds a small demo set into an empty database, and serves with
# the embedded miniredis. Ctrl-C stops the server; the data stays for next time.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

started_db=""
if [ -z "${DATABASE_URL:-}" ]; then
  scripts/pg.sh status dev || started_db=1
  DATABASE_URL="$(scripts/pg.sh start dev)"
  export DATABASE_URL
fi
export DATA_DIR="${DATA_DIR:-$root/data/photos}"

echo "building…" >&2
go build -o bin/flickrkillr .
bin/flickrkillr migrate ${STAGE:+--stage "$STAGE"}
bin/flickrkillr seed --if-empty --users "${SEED_USERS:-1000}"

# The server gets Ctrl-C and shuts down gracefully; then we stop the database
# if this run started it.
stop_db() {
  if [ -n "$started_db" ]; then scripts/pg.sh stop dev || true; fi
}
trap stop_db EXIT
# A no-op trap (not an ignore, which the server would inherit): Ctrl-C reaches
# the server, which shuts down gracefully, and then this script stops the DB.
trap 'true' INT
bin/flickrkillr serve ${STAGE:+--stage "$STAGE"} ${ADDR:+--addr "$ADDR"}
