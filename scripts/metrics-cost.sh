#!/usr/bin/env bash
# What does the instrumentation cost? Alternate a stage-4 server with metrics
# on (Prometheus counters, per-request Timings, Server-Timing, the dashboard's
# sampler) and off (METRICS=0, no operator listener), run the same browse mix
# against each, and print each run's req/s and the server's CPU time per
# request (from /proc; it includes the run's 16 bcrypt log-ins, a fixed cost
# that weighs more on the run with fewer requests).
#
#   scripts/metrics-cost.sh [ROUNDS] [SECONDS] [CONCURRENCY]
#
# Needs the full seed at stage 4 (make seed) and DATABASE_URL (or the local
# cluster that `make seed` started). The server listens on 127.0.0.1:18090.
set -euo pipefail
rounds="${1:-5}"
secs="${2:-20}"
conc="${3:-16}"
cd "$(dirname "$0")/.."
export DATABASE_URL="${DATABASE_URL:-$(scripts/pg.sh start dev)}"
go build -o bin/flickrkillr .
addr=127.0.0.1:18090
pid=""
trap '[ -n "$pid" ] && kill -INT "$pid" 2>/dev/null; wait 2>/dev/null || true' EXIT
hz="$(getconf CLK_TCK)"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime

# measure retries a run whose set-up failed: on a loaded machine a log-in can
# miss the session store's 200 ms timeout, and the load tool refuses to start.
measure() { # on|off round
  for attempt in 1 2 3; do
    if run "$1" "$(($2 * 10 + attempt * 2 + ${#1}))"; then return 0; fi
    echo "metrics-cost.sh: run $1 failed (attempt $attempt), again" >&2
  done
  exit 1
}

# Every run (and its warm-up) browses with its own --seed: a run that repeated
# the previous run's choices would find its rows warm in PostgreSQL's cache,
# and the second run of each round would win whatever it measured.
run() { # on|off seed → "req/s cpu-µs-per-request" of one run (after a 5 s warm-up)
  local seed="$2"
  if [ "$1" = on ]; then
    METRICS=1 ADMIN_ADDR=127.0.0.1:16090 bin/flickrkillr serve --stage 4 --addr "$addr" >/tmp/metrics-cost-server.log 2>&1 &
  else
    METRICS=0 ADMIN_ADDR= bin/flickrkillr serve --stage 4 --addr "$addr" >/tmp/metrics-cost-server.log 2>&1 &
  fi
  pid=$!
  for _ in $(seq 100); do curl -sf "http://$addr/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  bin/flickrkillr loadtest --url "http://$addr" --duration 5s --concurrency "$conc" --seed "$((seed + 5000))" >/dev/null 2>&1 || true
  local before after out
  before="$(cpu_ticks "$pid")"
  out="$(bin/flickrkillr loadtest --url "http://$addr" --duration "${secs}s" --concurrency "$conc" --seed "$seed" 2>/tmp/metrics-cost-loadtest.log |
    awk '$1 == "total" {print $2, $3}')"
  after="$(cpu_ticks "$pid")"
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  if [ -z "$out" ]; then
    tail -1 /tmp/metrics-cost-loadtest.log >&2
    return 1
  fi
  awk -v o="$out" -v b="$before" -v a="$after" -v hz="$hz" 'BEGIN {split(o, f, " "); printf "%s %.0f", f[2], (a - b) / hz * 1e6 / f[1]}'
}

echo "stage 4, browse mix, $conc virtual users, ${secs}s per run, alternating; metrics off = METRICS=0 ADMIN_ADDR="
printf '%-6s %10s %10s %8s   %14s %14s %8s\n' round "on req/s" "off req/s" "on/off" "on CPU µs/req" "off CPU µs/req" "on/off"
for i in $(seq "$rounds"); do
  if [ $((i % 2)) -eq 1 ]; then on="$(measure on "$i")"; off="$(measure off "$i")"; else off="$(measure off "$i")"; on="$(measure on "$i")"; fi
  awk -v i="$i" -v a="$on" -v b="$off" 'BEGIN {split(a, x, " "); split(b, y, " ");
    printf "%-6s %10.1f %10.1f %7.1f%%   %14.0f %14.0f %7.1f%%\n", i, x[1], y[1], 100*x[1]/y[1], x[2], y[2], 100*x[2]/y[2]}'
done
