#!/usr/bin/env bash
# Stage 3 is two changes: sessions written only when they change, and the
# cache. This measures them apart, as "each step alone" does (stages 2 and 3
# on the indexed schema), alternating the runs within each round:
#
#   2        stage 2 --indexes (the per-request session write)
#   3-rule   stage 3 --indexes with STAGE3_CACHE=off: the session rule alone
#   3        stage 3 --indexes: the session rule and the cache
#   4        stage 4 (the stage-4 browse mix's CPU per request)
#   base-N   config N served by the binary BASE_BIN (an earlier build, the "before")
#
#   scripts/stage3-share.sh [ROUNDS] [SECONDS] [CONCURRENCY] [CONFIGS]
#   REDIS_URL=redis://127.0.0.1:6399/0 scripts/stage3-share.sh 3 30 32 "2 3-rule 3"
#
# Each run: a fresh server (with REDIS_URL, the Redis is flushed first, so
# every run starts cold as in the sweep), a 10 s warm-up with its own --seed,
# then the measured run; it prints req/s and the server's CPU per request
# (from /proc, log-ins included). Needs the full seed at schema 2 (stages
# 2-4) in DATABASE_URL. The server listens on 127.0.0.1:18091.
set -euo pipefail
rounds="${1:-3}"
secs="${2:-30}"
conc="${3:-32}"
configs="${4:-2 3-rule 3}"
cd "$(dirname "$0")/.."
: "${DATABASE_URL:?set DATABASE_URL to the full seed at schema 2}"
go build -o bin/flickrkillr .
addr=127.0.0.1:18091
pid=""
trap '[ -n "$pid" ] && kill -INT "$pid" 2>/dev/null; wait 2>/dev/null || true' EXIT
hz="$(getconf CLK_TCK)"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # config seed → "req/s cpu-µs-per-request"
  local stage flags env="" bin=bin/flickrkillr c="$1"
  case "$c" in base-*) bin="${BASE_BIN:?set BASE_BIN for $c}"; c="${c#base-}" ;; esac
  case "$c" in
    2) stage=2 flags="--indexes" ;;
    3-rule) stage=3 flags="--indexes" env="STAGE3_CACHE=off" ;;
    3) stage=3 flags="--indexes" ;;
    *) stage="$c" flags="" ;;
  esac
  if [ -n "${REDIS_URL:-}" ]; then redis-cli -u "$REDIS_URL" flushall >/dev/null; fi
  env $env ADMIN_ADDR= "$bin" serve --stage "$stage" $flags --addr "$addr" >/tmp/stage3-share-server.log 2>&1 &
  pid=$!
  for _ in $(seq 200); do curl -sf "http://$addr/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  bin/flickrkillr loadtest --url "http://$addr" --duration 10s --concurrency "$conc" --seed "$(($2 + 5000))" >/dev/null 2>&1 || true
  local before after out
  before="$(cpu_ticks "$pid")"
  out="$(bin/flickrkillr loadtest --url "http://$addr" --duration "${secs}s" --concurrency "$conc" --seed "$2" 2>/tmp/stage3-share-loadtest.log |
    awk '$1 == "total" {print $2, $3; exit}')"
  after="$(cpu_ticks "$pid")"
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  [ -n "$out" ] || { tail -3 /tmp/stage3-share-loadtest.log >&2; echo "0 0"; return; }
  awk -v o="$out" -v b="$before" -v a="$after" -v hz="$hz" 'BEGIN {split(o, f, " "); printf "%s %.0f", f[2], (a - b) / hz * 1e6 / f[1]}'
}

echo "browse mix, $conc virtual users, ${secs}s per run after a 10 s warm-up; Redis: ${REDIS_URL:-embedded miniredis}"
printf '%-6s' round; for c in $configs; do printf ' %16s' "$c req/s (µs)"; done; echo
for i in $(seq "$rounds"); do
  list="$configs"
  [ $((i % 2)) -eq 0 ] && list="$(echo "$configs" | tr ' ' '\n' | tac | tr '\n' ' ')"   # alternate the order
  declare -A res=()
  for c in $list; do res[$c]="$(run "$c" "$((i * 100 + ${#c}))")"; done
  printf '%-6s' "$i"; for c in $configs; do set -- ${res[$c]}; printf ' %9s (%4s)' "$1" "$2"; done; echo
done
