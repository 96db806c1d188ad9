#!/usr/bin/env bash
# What anonymous requests with unique long query strings cost a server's
# memory (issue 31; docs/reliability.md, docs/stages/03-cache.md):
#
#   scripts/urimem.sh            STAGE=6 REQUESTS=20000 QUERY=32768 by default
#   BIN=/tmp/old/flickrkillr scripts/urimem.sh    measures another build (say, main's)
#
# On a throw-away database "urimem" in the dev cluster and photos in a
# temporary directory (both removed at the end), `serve --stage $STAGE` with
# its embedded miniredis on 127.0.0.1:18470, seeded with a few users; then
# scripts/urimem sends REQUESTS GETs with unique QUERY-byte query strings
# (half to the home page, half to users that do not exist) and prints the
# server's RSS before, at its peak and after. Traffic to 127.0.0.1 only.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
B="${BIN:-bin/flickrkillr}"
[ -n "${BIN:-}" ] || go build -o bin/flickrkillr .
admin="$(scripts/pg.sh start dev)"; base="${admin%/flickrkillr*}"
psql "$base/postgres?sslmode=disable" -qc "DROP DATABASE IF EXISTS urimem" -c "CREATE DATABASE urimem"
export DATABASE_URL="$base/urimem?sslmode=disable" DATA_DIR="$(mktemp -d)" REDIS_URL= ADMIN_ADDR=
pid=""
trap '[ -n "$pid" ] && kill -INT $pid 2>/dev/null && wait $pid; rm -rf "$DATA_DIR"; psql "$base/postgres?sslmode=disable" -qc "DROP DATABASE IF EXISTS urimem" || true' EXIT
st="${STAGE:-6}"
$B migrate --stage "$st" >/dev/null 2>&1 && $B seed --users 50 --photos-per-user 1-3 >/dev/null 2>&1
$B serve --stage "$st" --addr 127.0.0.1:18470 >"$DATA_DIR/serve.log" 2>&1 & pid=$!
for _ in $(seq 100); do curl -sf 127.0.0.1:18470/healthz >/dev/null && break; sleep 0.1; done
curl -sf 127.0.0.1:18470/healthz >/dev/null || { echo "the server did not start: $(cat "$DATA_DIR/serve.log")" >&2; exit 1; }
echo "== stage $st: ${REQUESTS:-20000} anonymous GETs with unique ${QUERY:-32768}-byte query strings"
go run ./scripts/urimem --url http://127.0.0.1:18470 --requests "${REQUESTS:-20000}" --query "${QUERY:-32768}"
