#!/usr/bin/env bash
# Stage 8's front cache against stage 7, and memcached against nginx's own
# proxy_cache, on one machine in one run. For each round and each server
# (stage 7; stage 8 with memcached; stage 8 --front-cache proxy), all with
# the same instances:
#
#   1. start the topology (nginx on 127.0.0.1:18480, no operator listener);
#   2. one anonymous photo page, two GETs (a miss, then a fill), then wrk on
#      it, on the stylesheet, and on the page again;
#   3. the load tool's anonymous mix (--anonymous 0.9): 10 s warm-up, not
#      counted, then the measured run, with the hit ratio per route;
#   4. the logged-in mix (the sweep's browse mix) for the same time;
#   5. stop the topology (Ctrl-C: nginx, memcached, the instances, Redis).
#
# The topology's redis-server keeps its data in its folder, .run/nginx-18480 (appendonly);
# each start removes it, so that every server begins with the app's cache
# cold, as the sweep's do (a warm cache left by the run before favoured
# whichever server came later).
#
#   scripts/front-cache-compare.sh [ROUNDS] [SECONDS] [INSTANCES] [CONFIGS]
#   DATABASE_URL=$(scripts/pg.sh start dev) scripts/front-cache-compare.sh 2 30 2 "7 8 8-proxy"
#
# Needs the database at schema 4 (make migrate), nginx, memcached,
# redis-server, pgbouncer and wrk. Every server is a fresh start, so every
# front cache starts cold. The full output goes to standard output; each
# server's log to /tmp/front-cache-compare-<config>.log.
set -euo pipefail
rounds="${1:-2}"
secs="${2:-30}"
instances="${3:-2}"
configs="${4:-7 8 8-proxy}"
cd "$(dirname "$0")/.."
: "${DATABASE_URL:?set DATABASE_URL (the full seed at schema 4)}"
for tool in wrk nginx memcached redis-server pgbouncer; do
  command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin" command -v "$tool" >/dev/null ||
    { echo "front-cache-compare.sh: needs $tool (apt-get install $tool)" >&2; exit 2; }
done
go build -o bin/flickrkillr .
addr=127.0.0.1:18480
url="http://$addr"
rundir=".run/nginx-${addr##*:}" # the topology's folder, named by nginx's port
pid=""
trap '[ -n "$pid" ] && kill -INT "$pid" 2>/dev/null; wait 2>/dev/null || true' EXIT

w() { wrk -t"$(nproc)" -c32 -d10s "$1" | awk '/^Requests\/sec:/ {print $2}'; }

for round in $(seq "$rounds"); do
  for cfg in $configs; do
    stage="${cfg%%-*}"
    front=memcached
    [ "$cfg" = 8-proxy ] && front=proxy
    flags=(--stage "$stage" --instances "$instances")
    [ "$stage" = 8 ] && flags+=(--front-cache "$front")
    log="/tmp/front-cache-compare-$cfg.log"
    rm -rf "$rundir/appendonlydir" "$rundir/dump.rdb"
    echo "== round $round: $cfg (serve ${flags[*]})  $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
    bin/flickrkillr serve "${flags[@]}" --addr "$addr" --admin-addr "" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 600); do curl -sf "$url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    curl -sf "$url/healthz" >/dev/null || { echo "the topology did not answer; see $log" >&2; exit 1; }
    photo="$(curl -s "$url/users/user2" | grep -o '/photos/[0-9]*"' | head -1 | tr -d '"')"
    curl -s -o /dev/null "$url$photo"
    curl -s -o /dev/null "$url$photo"
    echo "photo page $photo: X-Front-Cache $(curl -s -D - -o /dev/null "$url$photo" | tr -d '\r' |
      awk -F': ' 'tolower($1) == "x-front-cache" {print $2}')"
    p1="$(w "$url$photo")"; css="$(w "$url/static/style.css")"; p2="$(w "$url$photo")"
    echo "wrk -t$(nproc) -c32 -d10s: photo $p1 / $p2 req/s, stylesheet $css req/s"
    bin/flickrkillr loadtest --url "$url" --anonymous 0.9 --duration 10s --seed "$round" >/dev/null 2>&1
    echo "-- anonymous mix (--anonymous 0.9, ${secs}s)"
    bin/flickrkillr loadtest --url "$url" --anonymous 0.9 --duration "${secs}s" --seed "$((round + 100))" 2>/dev/null
    echo "-- logged-in mix (${secs}s)"
    bin/flickrkillr loadtest --url "$url" --duration "${secs}s" --seed "$((round + 200))" 2>/dev/null
    kill -INT "$pid"
    wait "$pid" || true
    pid=""
  done
done
