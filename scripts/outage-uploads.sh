#!/usr/bin/env bash
# Measures issue 31's target "a database outage loses no upload"
# (docs/reliability.md, "PostgreSQL stopped with uploads queued"): at stage 6,
# UPLOADS uploads (50) wait in the queue of one worker process while
# PostgreSQL is stopped (pg_ctl stop -m fast) for DOWN seconds (60); then it
# starts again. It prints how long after the restart every upload was ready,
# the queue's figures (dead jobs, retried attempts) and the photos by state.
#
# Everything is its own and thrown away: a PostgreSQL cluster in a temporary
# folder on a free port (Debian's postgresql binaries, as scripts/pg.sh), a
# seeded user, a `serve --stage 6 --workers 0` with its embedded miniredis,
# and one `flickrkillr worker --workers 1`, which finds that miniredis
# (or both use REDIS_URL when it is set). The worker is paused (SIGSTOP)
# while the uploads are made, so that all of them are queued when the
# database stops; it resumes the moment the database has stopped.
#
# Usage: [UPLOADS=50] [DOWN=60] [WAIT=120] [IMG=photo.jpg] [REDIS_URL=…] [BIN=…] scripts/outage-uploads.sh
# WAIT: how long after the restart it waits for every upload to be ready.
# IMG: the photo uploaded (default: an 800×600 seeded one). BIN: a flickrkillr
# binary to measure instead of building this checkout (another build's
# figure, e.g. main's before the fix: it needs REDIS_URL).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
uploads="${UPLOADS:-50}" down="${DOWN:-60}"
bin="${BIN:-$root/bin/flickrkillr}"
[ -n "${BIN:-}" ] || go build -o "$bin" .

find_bin() {
  local p
  if p="$(command -v "$1" 2>/dev/null)"; then echo "$p"; return; fi
  for p in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$p/$1" ] && { echo "$p/$1"; return; }
  done
  echo "outage-uploads.sh: $1 not found (apt-get install postgresql)" >&2; exit 1
}
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { local p=$1; while (echo > "/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done; echo "$p"; }
initdb="$(find_bin initdb)" pg_ctl="$(find_bin pg_ctl)" psql="$(find_bin psql)"

tmp="$(mktemp -d)"
chmod 755 "$tmp"
serve_pid="" worker_pid=""
cleanup() {
  [ -n "$worker_pid" ] && { kill -CONT "$worker_pid" 2>/dev/null; kill "$worker_pid" 2>/dev/null; } || true
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  as_owner "$pg_ctl" -D "$tmp/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap "exit 1" INT TERM # so that cleanup runs on Ctrl-C or timeout too

# The cluster: its own folder and port, nothing durable.
mkdir "$tmp/pg"
[ "$(id -u)" -eq 0 ] && chown postgres: "$tmp/pg"
as_owner "$initdb" -D "$tmp/pg" -U postgres --auth=trust -E UTF8 >/dev/null
pgport=$(free_port 28700)
pgstart() {
  as_owner "$pg_ctl" -D "$tmp/pg" -l "$tmp/pg/log" -w -t 60 \
    -o "-p $pgport -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off -c max_connections=100" start >/dev/null
}
pgstart
"$psql" -h 127.0.0.1 -p "$pgport" -U postgres -qc "CREATE DATABASE outage"
export DATABASE_URL="postgres://postgres@127.0.0.1:$pgport/outage?sslmode=disable"
export DATA_DIR="$tmp/photos" ADMIN_ADDR=
"$bin" migrate --stage 6 >/dev/null 2>&1
"$bin" seed --users 2 --photos-per-user 1-1 --images 1 >/dev/null 2>&1
img="${IMG:-$(find "$DATA_DIR" -type f -name '*.jpg' ! -path '*thumb*' -print -quit)}"
[ -f "$img" ] || { echo "outage-uploads.sh: no image to upload" >&2; exit 2; }

port=$(free_port 28710)
url="http://127.0.0.1:$port"
"$bin" serve --stage 6 --workers 0 --addr "127.0.0.1:$port" >"$tmp/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 100); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.1; done
# The worker, which is stopped (SIGSTOP) while the uploads are made, gets a
# session of its own: in an orphaned process group (this script started with
# `&` from a shell that has exited) each exit of a curl or psql would send
# the group SIGHUP and SIGCONT, killing or resuming the worker.
setsid "$bin" worker --stage 6 --workers 1 >"$tmp/worker.log" 2>&1 &
worker_pid=$!
for _ in $(seq 100); do grep -q "workers are making upload images" "$tmp/worker.log" && break; sleep 0.1; done
grep -q "workers are making upload images" "$tmp/worker.log" || { echo "the worker did not start:"; cat "$tmp/worker.log"; exit 1; }
kill -STOP "$worker_pid"

curl -s -o /dev/null -c "$tmp/cookies" -d "name=user1&password=flickrkillr" "$url/login"
: >"$tmp/ids"
for i in $(seq "$uploads"); do
  r=$(curl -s -o /dev/null -b "$tmp/cookies" -w "%{http_code} %{redirect_url}" \
    -F "title=outage $i" -F "image=@$img;type=image/jpeg" "$url/upload")
  [ "${r%% *}" = 303 ] || { echo "upload $i answered $r" >&2; exit 1; }
  echo "${r##*/}" >>"$tmp/ids"
done
ids=$(paste -sd, "$tmp/ids")
states() { "$psql" "$DATABASE_URL" -Atc "SELECT state || ' ' || count(*) FROM photos WHERE id IN ($ids) GROUP BY state ORDER BY state" | paste -sd, ; }
echo "== $uploads uploads answered 303 ($(wc -c <"$img") bytes each, $(basename "$img")); photos by state: $(states)"
"$bin" queue 2>/dev/null | grep -E "^(waiting|processing|retrying|dead)" | sed 's/^/   /'

as_owner "$pg_ctl" -D "$tmp/pg" -m fast -w stop >/dev/null
kill -CONT "$worker_pid"
echo "== PostgreSQL stopped for ${down}s; the worker resumed"
sleep "$down"
"$bin" queue 2>/dev/null | grep -E "^(waiting|processing|retrying|dead|since)" | sed 's/^/   /' || true
pgstart
t0=$(date +%s.%N)
echo "== PostgreSQL started again"
ready=0 wait="${WAIT:-120}" # seconds at most
while [ "$(echo "$(date +%s.%N) - $t0 < $wait" | bc)" = 1 ]; do
  ready=$("$psql" "$DATABASE_URL" -Atc "SELECT count(*) FROM photos WHERE id IN ($ids) AND state = 'ready'" 2>/dev/null || echo 0)
  [ "$ready" = "$uploads" ] && break
  sleep 0.1
done
took=$(echo "$(date +%s.%N) - $t0" | bc)
if [ "$ready" = "$uploads" ]; then
  printf "== all %d ready %.1f s after PostgreSQL started again\n" "$uploads" "$took"
else
  printf "== only %d of %d ready %.0f s after PostgreSQL started again\n" "$ready" "$uploads" "$took"
fi
echo "   photos by state: $(states)"
"$bin" queue 2>/dev/null | grep -E "^(waiting|processing|retrying|dead|since)" | sed 's/^/   /' || true
echo "== the worker's WARN and ERROR lines, by message:"
grep -E "level=(WARN|ERROR)" "$tmp/worker.log" | sed -E 's/.*msg="?([^"=]*)"? .*/\1/' | sort | uniq -c | sort -rn | head || true
