#!/usr/bin/env bash
# Stage 5 against stage 6 on uploads, and the workers' drain rate (docs/stages/06-queue.md):
#
#   scripts/upload-compare.sh            RATE=1 DUR=30s PASSES=2 by default
#
# On a throw-away database "uploadcmp" in the dev cluster, photos in a temporary
# directory and a private redis-server on 18499 (all removed at the end): the
# load tool's upload scenario (12-megapixel JPEGs, every upload deleted after)
# at RATE uploads/s against `serve --stage 5` and `--stage 6 --workers 2`,
# alternating; then bursts of 21 uploads into `--workers 0`, drained by
# `flickrkillr worker --drain` with 1 and with 2 workers. Traffic to 127.0.0.1 only.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
go build -o bin/flickrkillr .
B=bin/flickrkillr
admin="$(scripts/pg.sh start dev)"; base="${admin%/flickrkillr*}"
psql "$base/postgres?sslmode=disable" -qc "DROP DATABASE IF EXISTS uploadcmp" -c "CREATE DATABASE uploadcmp"
export DATABASE_URL="$base/uploadcmp?sslmode=disable" DATA_DIR="$(mktemp -d)" REDIS_URL=redis://127.0.0.1:18499/0 ADMIN_ADDR=
redis-server --port 18499 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --logfile "$DATA_DIR/redis.log"
trap 'redis-cli -p 18499 shutdown nosave >/dev/null 2>&1 || true; rm -rf "$DATA_DIR"; psql "$base/postgres?sslmode=disable" -qc "DROP DATABASE IF EXISTS uploadcmp" || true' EXIT
$B migrate --stage 6 >/dev/null 2>&1 && $B seed --users 200 --photos-per-user 3-5 >/dev/null 2>&1

serve() { # stage workers: start a server on 18480 and wait for it
  $B serve --stage "$1" --addr 127.0.0.1:18480 --workers "$2" >"$DATA_DIR/serve.log" 2>&1 & pid=$!
  for _ in $(seq 100); do curl -sf 127.0.0.1:18480/healthz >/dev/null && return; sleep 0.1; done
  echo "the server did not start: $(cat "$DATA_DIR/serve.log")" >&2; exit 1
}
upload() { $B loadtest --url http://127.0.0.1:18480 --scenario upload --concurrency "$1" --rate "$2" --duration "$3" 2>&1; }

for pass in $(seq "${PASSES:-2}"); do
  for st in 5 6; do
    $B migrate --stage $st >/dev/null 2>&1
    redis-cli -p 18499 flushall >/dev/null
    serve $st 2
    echo "== pass $pass, stage $st, ${RATE:-1} uploads/s for ${DUR:-30s}"
    upload 16 "${RATE:-1}" "${DUR:-30s}" | grep -E "^ *route +requests|^ *upload +[0-9]+ " || true
    kill -INT $pid; wait $pid || true
  done
done

$B migrate --stage 6 >/dev/null 2>&1
for w in 1 2 1 2; do
  redis-cli -p 18499 flushall >/dev/null
  serve 6 0
  upload 8 2 10s >"$DATA_DIR/burst.log" & lt=$!   # its clean-up waits for the images, then deletes
  sleep 13
  echo "== a burst of uploads, drained by $w worker(s)"
  $B worker --workers $w --drain 2>&1 | tail -1
  wait $lt || true
  kill -INT $pid; wait $pid || true
done
