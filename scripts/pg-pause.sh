#!/usr/bin/env bash
# Measures a stage-6 server while PostgreSQL hangs under load (the figures of
# docs/reliability.md, "PostgreSQL paused under load"): the load tool's
# browse mix runs for the whole window; a sampler requests an uncached page
# every 50 ms; after AT seconds (20: the load tool's users have signed in)
# the whole cluster (postmaster and every backend) is
# paused with SIGSTOP for PAUSE seconds, then resumed. It prints the sampler's
# answers by phase (the failures' latency after the first 2 s of the pause,
# how many of the requests in flight during the pause waited over 2 s,
# the time to the first 200 after the resume), the load tool's summary, and
# the photos still "processing" 15 s after the run (acknowledged uploads
# that were lost would stay there).
# Needs a cluster you own: PG_PID=$(head -1 .pgdata/test/postmaster.pid).
# Usage: DATABASE_URL=… PG_PID=… [AT=20] [PAUSE=8] [USERS=32] [DATA_DIR=data/photos] scripts/pg-pause.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
: "${DATABASE_URL:?set DATABASE_URL to a seeded database at stage 6}"
: "${PG_PID:?set PG_PID to the postmaster of a cluster you own}"
pause="${PAUSE:-8}" users="${USERS:-32}" at="${AT:-20}"
bin="$root/bin/flickrkillr"
go build -o "$bin" .
free_port() { local p=$1; while (echo > "/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done; echo "$p"; }
port=$(free_port 28600)
tmp="$(mktemp -d)"
app_pid="" paused=""
cleanup() {
  [ -n "$paused" ] && kill -CONT $paused 2>/dev/null || true
  [ -n "$app_pid" ] && kill "$app_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
ADMIN_ADDR= DATA_DIR="${DATA_DIR:-data/photos}" "$bin" serve --stage 6 --addr "127.0.0.1:$port" >"$tmp/app.log" 2>&1 &
app_pid=$!
url="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.1; done
total=$((at + pause + 10))
"$bin" loadtest --url "$url" --concurrency "$users" --duration "${total}s" >"$tmp/load.txt" 2>&1 &
load_pid=$!
# Uploads all along, as user1: each one answered 303 must end "ready",
# never stay "processing" (an acknowledged upload lost).
img=$(find "${DATA_DIR:-data/photos}" -type f -name '*.jpg' -print -quit) # a seeded photo's file
[ -n "$img" ] || { echo "pg-pause.sh: no .jpg under DATA_DIR to upload (seed first)" >&2; exit 2; }
cp "$img" "$tmp/up.jpg"
curl -s -o /dev/null -c "$tmp/cookies" -d "name=user1&password=flickrkillr" "$url/login"
( end=$(( $(date +%s) + total )); while [ "$(date +%s)" -lt "$end" ]; do
    curl -s -o /dev/null --max-time 45 -b "$tmp/cookies" -w "%{http_code} %{redirect_url}\n" \
      -F title=pause -F "image=@$tmp/up.jpg;type=image/jpeg" "$url/upload" || echo "000"
    sleep 0.2
  done ) >"$tmp/uploads.txt" &
upload_pid=$!
t0=$(date +%s.%N)
( i=0; while :; do
    i=$((i + 1))
    s=$(date +%s.%N)
    r=$(curl -s -o /dev/null --max-time 10 -w "%{http_code} %{time_total}" "$url/users/user$((i % 2000 + 1))?before=$((1000000 + i))" || echo "000 10")
    echo "$(echo "$s - $t0" | bc) $r"
    sleep 0.05
  done ) >"$tmp/samples.txt" &
sampler=$!
sleep "$at"
# The postmaster first, then its children: listed while it still runs, a
# backend it forks between the listing and the signal would go on serving
# (a partial hang, which the watchdog rightly calls progress).
kill -STOP "$PG_PID"; paused="$PG_PID"
pids="$PG_PID $(pgrep -P "$PG_PID" | tr '\n' ' ')"
kill -STOP $pids; paused="$pids"
tp=$(echo "$(date +%s.%N) - $t0" | bc)
sleep "$pause"
kill -CONT $pids; paused=""
tr=$(echo "$(date +%s.%N) - $t0" | bc)
wait "$load_pid" || true
wait "$upload_pid" || true
kill "$sampler" 2>/dev/null || true
echo "== sampler: an uncached user page every 50 ms (paused at ${tp}s, resumed at ${tr}s)"
awk -v tp="$tp" -v tr="$tr" '
  function p99(a, n,   i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j+1] = a[j]; a[j+1] = t } return a[int(n * 0.99) > 0 ? int(n * 0.99) : 1] }
  $1 < tp { before[$2]++ }
  $1 >= tp && $1 < tp + 2 { first[$2]++ }
  $1 >= tp + 2 && $1 < tr { late[$2]++; if ($2 != 200) { nf++; f[nf] = $3; if ($3 > maxf) maxf = $3 } }
  $1 + $3 >= tp && $1 < tr { inpause++; if ($3 > 2) { slow++ } if ($3 > maxw) maxw = $3 }
  $1 >= tr && $2 == 200 && !rec { rec = $1 - tr }
  $1 >= tr { after[$2]++ }
  END {
    printf "  before the pause:"; for (k in before) printf " %s×%d", k, before[k]; print ""
    printf "  first 2 s of the pause:"; for (k in first) printf " %s×%d", k, first[k]; print ""
    printf "  rest of the pause:"; for (k in late) printf " %s×%d", k, late[k]; print ""
    if (nf) printf "  failures after the first 2 s: p99 %.3fs, max %.3fs (%d)\n", p99(f, nf), maxf, nf
    printf "  requests in flight during the pause that waited > 2 s: %d of %d (longest %.3fs)\n", slow, inpause, maxw
    printf "  first 200 after the resume: %.2fs after it\n", rec
    printf "  after the resume:"; for (k in after) printf " %s×%d", k, after[k]; print ""
  }' "$tmp/samples.txt"
echo "== load tool: $users users, ${total}s"
cat "$tmp/load.txt"
echo "== uploads (one at a time, as user1), by answer:"
awk '{print "  " $1}' "$tmp/uploads.txt" | sort | uniq -c
sleep 15
ids=$(awk '$1 == 303 {n = split($2, p, "/"); printf "%s%s", sep, p[n]; sep = ","}' "$tmp/uploads.txt")
echo "== the uploads answered 303, by state 15 s after the run (a lost one stays processing):"
[ -n "$ids" ] && psql "$DATABASE_URL" -Atc "SELECT '  ' || state, count(*) FROM photos WHERE id IN ($ids) GROUP BY state"
echo "== the server's breaker lines:"
grep -E "breaker (open|closed)" "$tmp/app.log" || true
echo "== the server's ERROR lines, by message:"
grep "level=ERROR" "$tmp/app.log" | sed -E 's/.*msg="([^"]*)".*(err="[^"]{0,60}).*/\1 \2/' | sort | uniq -c | sort -rn | head || true
