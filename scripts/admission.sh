#!/usr/bin/env bash
# Measures what slow clients and sign-in storms cost the pages (issue 31
# item 4, issue 36's fair admission; docs/reliability.md). It starts one
# server (stage $STAGE, default 6) against DATABASE_URL (a seeded database at
# that stage's schema, e.g. `flickrkillr seed --users 2000 --photos-per-user
# 5-10`), then measures the load tool's browse mix with $USERS users (32):
#   alone        the browse mix alone;
#   slow-bodies  beside $TRICKLE (16) connections each trickling a 64 KB
#                comment form at one byte a second, logged in as user1
#                (scripts/trickle);
#   signin-storm beside $STORM (256) users signing in in a loop (the load
#                tool's signin-storm scenario, a second loadtest process),
#                started once the browsers are signed in (their window open).
# For each it prints the browsers' requests, errors, p50 and p99, and for the
# storm its sign-ins (303), shed and errors. BIN names another build to
# measure (default: this checkout's, built here). Usage:
#   DATABASE_URL=… [DATA_DIR=…] [DURATION=20s] scripts/admission.sh [alone slow-bodies signin-storm]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
: "${DATABASE_URL:?set DATABASE_URL to a seeded database}"
stage="${STAGE:-6}" users="${USERS:-32}" trickle="${TRICKLE:-16}" storm="${STORM:-256}"
duration="${DURATION:-20s}"
secs="${duration%s}"
bin="${BIN:-$root/bin/flickrkillr}"
[ -n "${BIN:-}" ] || go build -o "$bin" .
lt="$root/bin/flickrkillr-loadtest" # the load tool is always this checkout's
go build -o "$lt" .
go build -o "$root/bin/trickle" ./scripts/trickle
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(alone slow-bodies signin-storm)

free_port() { local p=$1; while (echo > "/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done; echo "$p"; }
port=$(free_port 28600)
url="http://127.0.0.1:$port"
tmp="$(mktemp -d)"
app_pid="" side_pid=""
cleanup() {
  [ -n "$side_pid" ] && kill "$side_pid" 2>/dev/null || true
  [ -n "$app_pid" ] && kill "$app_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
DATA_DIR="${DATA_DIR:-data/photos}" "$bin" serve --stage "$stage" --addr "127.0.0.1:$port" --admin-addr "" >"$tmp/app.log" 2>&1 &
app_pid=$!
for _ in $(seq 100); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "$url/healthz" >/dev/null || { echo "admission.sh: the server did not start:" >&2; cat "$tmp/app.log" >&2; exit 1; }
echo "admission.sh: stage $stage at $url, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%H:%M:%S)"
"$lt" loadtest --url "$url" --concurrency "$users" --duration 5s >/dev/null 2>&1 # warm up

summary() { # $1: label, $2: the browsers' JSON [$3: the storm's JSON]
  python3 - "$1" "$2" "${3:-}" <<'PY'
import json, sys
label, path, storm = sys.argv[1], sys.argv[2], sys.argv[3]
t = json.load(open(path))["total"]
line = f"  {label:<13} browsers: {t['requests']:>6} requests  {t['errors']:>3} errors  p50 {t['p50_ms']:7.1f} ms  p99 {t['p99_ms']:7.1f} ms"
if storm:
    s = {r["route"]: r for r in json.load(open(storm))["routes"]}.get("login", {})
    n, shed, err = s.get("requests", 0), s.get("shed", 0), s.get("errors", 0)
    line += f"   storm: {n - shed - err} signed in, {shed} shed, {err} errors, login p99 {s.get('p99_ms', 0):.0f} ms"
print(line)
PY
}
browse() { "$lt" loadtest --url "$url" --concurrency "$users" --duration "$duration" --json "$1" >"$1.txt" 2>&1; }

for mode in "${modes[@]}"; do
  case "$mode" in
    alone)
      browse "$tmp/alone.json"
      summary alone "$tmp/alone.json" ;;
    slow-bodies)
      "$root/bin/trickle" --url "$url" --conns "$trickle" --login user1:flickrkillr --duration "$((secs + 40))s" >"$tmp/trickle.txt" 2>&1 &
      side_pid=$!
      sleep 3 # every connection open and trickling
      browse "$tmp/slow.json"
      kill "$side_pid" 2>/dev/null || true; wait "$side_pid" 2>/dev/null || true; side_pid=""
      summary slow-bodies "$tmp/slow.json"
      echo "                $(tail -1 "$tmp/trickle.txt")" ;;
    signin-storm)
      # The browsers sign in first (alone, as in the run alone); the storm
      # starts when their measured window opens, and stops after it.
      browse "$tmp/beside.json" &
      browse_pid=$!
      for _ in $(seq 600); do grep -q "req/s" "$tmp/beside.json.txt" 2>/dev/null && break; sleep 0.1; done
      "$lt" loadtest --url "$url" --scenario signin-storm --concurrency "$storm" --duration "$((secs + 30))s" --json "$tmp/storm.json" >"$tmp/storm.txt" 2>&1 &
      side_pid=$!
      wait "$browse_pid"
      kill -INT "$side_pid" 2>/dev/null || true; wait "$side_pid" 2>/dev/null || true; side_pid=""
      summary signin-storm "$tmp/beside.json" "$tmp/storm.json"
      [ -z "${VERBOSE:-}" ] || cat "$tmp/beside.json.txt" "$tmp/storm.txt" ;;
    *) echo "admission.sh: no mode $mode (alone, slow-bodies, signin-storm)" >&2; exit 2 ;;
  esac
done
