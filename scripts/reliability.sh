#!/usr/bin/env bash
# Measures how the server fails when Redis or PostgreSQL fail (the figures of
# docs/reliability.md). It starts its own redis-server and a stage-3 server
# against DATABASE_URL (a seeded database: `make seed`, or a small
# `flickrkillr seed --users 2000 --photos-per-user 5-10`), then:
#   1. wrk on anonymous pages with Redis up, paused (SIGSTOP), refused: the
#      cache fails open (logged-in pages answer 503, so the load tool's
#      browse mix, which logs in, cannot run there);
#   2. a logged-in page and an anonymous page while Redis is paused and refused;
#   3. an uncached page while PostgreSQL is paused (SIGSTOP of the postmaster
#      and its backends: only when PG_PID names a cluster you own, e.g.
#      PG_PID=$(head -1 .pgdata/dev/postmaster.pid)).
# Every process it starts it stops; every pause ends in SIGCONT.
# Usage: DATABASE_URL=… [PG_PID=…] [DURATION=15s] scripts/reliability.sh
set -euo pipefail
command -v wrk >/dev/null || { echo "reliability.sh: needs wrk (apt-get install wrk)" >&2; exit 2; }
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
: "${DATABASE_URL:?set DATABASE_URL to a seeded database}"
duration="${DURATION:-15s}"
bin="$root/bin/flickrkillr"
go build -o "$bin" .

free_port() { local p=$1; while (echo > "/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done; echo "$p"; }
rport=$(free_port 6450)
aport=$(free_port 28500)
tmp="$(mktemp -d)"
redis_pid="" app_pid="" app2_pid="" paused=""
cleanup() {
  [ -n "$paused" ] && kill -CONT $paused 2>/dev/null || true
  [ -n "$app_pid" ] && kill "$app_pid" 2>/dev/null || true
  [ -n "$app2_pid" ] && kill "$app2_pid" 2>/dev/null || true
  [ -n "$redis_pid" ] && { kill -CONT "$redis_pid" 2>/dev/null; kill "$redis_pid" 2>/dev/null; } || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

start_redis() {
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis-server did not start" >&2; exit 1
}
start_redis
REDIS_URL="redis://127.0.0.1:$rport/0" DATA_DIR="${DATA_DIR:-data/photos}" "$bin" serve --stage 3 --addr "127.0.0.1:$aport" >"$tmp/app.log" 2>&1 &
app_pid=$!
url="http://127.0.0.1:$aport"
# The same server at stage 2 (no cache): what the anonymous pages cost from
# the database alone, the floor a failed-open cache can reach.
a2port=$(free_port $((aport + 1)))
REDIS_URL="redis://127.0.0.1:$rport/0" DATA_DIR="${DATA_DIR:-data/photos}" "$bin" serve --stage 2 --addr "127.0.0.1:$a2port" >"$tmp/app2.log" 2>&1 &
app2_pid=$!
for _ in $(seq 100); do curl -sf "$url/healthz" >/dev/null && curl -sf "http://127.0.0.1:$a2port/healthz" >/dev/null && break; sleep 0.1; done

cat > "$tmp/mix.lua" <<'LUA'
-- anonymous pages: 200 photos, 100 users, the home page (cached at stage 3)
math.randomseed(1)
request = function()
  local r = math.random(1, 10)
  if r <= 6 then return wrk.format("GET", "/photos/" .. math.random(1, 200))
  elseif r <= 8 then return wrk.format("GET", "/users/user" .. math.random(1, 100))
  else return wrk.format("GET", "/") end
end
LUA
load() { # $1: label [$2: url]: one wrk run, one line
  wrk -t2 -c8 -d"$duration" --latency -s "$tmp/mix.lua" "${2:-$url}" |
    awk -v label="$1" '$1 == "50%" {p50=$2} $1 == "99%" {p99=$2} /^Requests\/sec/ {rps=$2} /Non-2xx/ {bad=$NF}
      END {printf "  %-44s p50 %9s  p99 %9s  %8s req/s  non-2xx %s\n", label, p50, p99, rps, bad+0}'
}
timed() { # $1: label, then curl args
  local label=$1; shift
  curl -s -o /dev/null -w "  $label: %{http_code} in %{time_total}s\n" --max-time 10 "$@" || true
}
login_cookie() {
  curl -s -o /dev/null -c "$tmp/cookies" -d "name=user1&password=flickrkillr" "$url/login"
}

wrk -t2 -c8 -d5s -s "$tmp/mix.lua" "$url" >/dev/null # warm the cache
stage2="http://127.0.0.1:$a2port"
echo "== wrk, anonymous mix (photo, user, home pages), $duration each, 8 connections, alternating"
load "Redis up: stage 3 (cache)"
kill -STOP "$redis_pid"; paused="$redis_pid"
for round in 1 2 3; do
  load "Redis paused, round $round: stage 2 (no cache)" "$stage2"
  load "Redis paused, round $round: stage 3 (fails open)"
done
kill -CONT "$redis_pid"; paused=""
sleep 2
load "Redis up again (no restart): stage 3"

echo "== single requests, Redis up, paused, refused"
login_cookie
for state in up paused refused; do
  case $state in
    paused) kill -STOP "$redis_pid"; paused="$redis_pid" ;;
    refused) kill -CONT "$redis_pid"; paused=""; kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true; redis_pid="" ;;
  esac
  for i in 1 2 3; do
    timed "Redis $state, logged in   GET /          #$i" -b "$tmp/cookies" "$url/"
    timed "Redis $state, anonymous   GET /photos/7  #$i" "$url/photos/7"
  done
done
for round in 1 2 3; do
  load "Redis refused, round $round: stage 2 (no cache)" "$stage2"
  load "Redis refused, round $round: stage 3 (fails open)"
done
start_redis
sleep 2
timed "Redis restarted, anonymous GET /photos/7" "$url/photos/7"

echo "== 200 concurrent log-ins (user1…user200, half with a wrong password), Redis up"
sleep 2
seq 200 | xargs -P 200 -I{} sh -c 'pw=flickrkillr; [ $(({} % 2)) -eq 1 ] && pw=wrong; curl -s -o /dev/null --max-time 30 -w "%{http_code} %{time_total}\n" -d "name=user{}&password=$pw" '"$url"'/login' |
  sort -k2 -n | awk '{n++; c[$1]++; t[n]=$2} END {for (k in c) printf "  status %s: %d\n", k, c[k]; printf "  latency p50 %.3fs, p99 %.3fs, max %.3fs\n", t[int(n*0.5)], t[int(n*0.99)], t[n]}'

if [ -n "${PG_PID:-}" ]; then
  echo "== PostgreSQL paused (SIGSTOP of $PG_PID and its children) for 8 s"
  pids="$PG_PID $(pgrep -P "$PG_PID" | tr '\n' ' ')"
  kill -STOP $pids; paused="$pids"
  timed "PostgreSQL paused, GET /users/user3?before=1000000" "$url/users/user3?before=1000000"
  timed "PostgreSQL paused, GET /readyz" "$url/readyz"
  sleep 3
  timed "PostgreSQL paused, GET /users/user4?before=1000000" "$url/users/user4?before=1000000"
  kill -CONT $pids; paused=""
  sleep 1
  timed "PostgreSQL resumed, GET /users/user5?before=1000000" "$url/users/user5?before=1000000"
  timed "PostgreSQL resumed, GET /readyz" "$url/readyz"
fi
