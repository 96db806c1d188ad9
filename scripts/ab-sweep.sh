#!/usr/bin/env bash
# Before and after, alternated: the sweep's rows of some stages measured with
# a binary built at BASE and with this checkout's, in turn (BASE, HEAD, BASE,
# HEAD, …), on the dev cluster's data (the full seed, for the figures the
# docs quote), each sweep on the tagged ladder only.
#
#   scripts/ab-sweep.sh BASE [STAGES] [ROUNDS]     e.g. scripts/ab-sweep.sh 63bdc0c 4,8 2
#
# SWEEP_FLAGS adds flags to every sweep (default --duration 20s --warmup 10s).
# Prints one line per run: round, build, stage, req/s, p99; the sweeps'
# results stay in a temporary directory it names. Traffic to 127.0.0.1 only.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
base="${1:?usage: scripts/ab-sweep.sh BASE [STAGES] [ROUNDS]}"
stages="${2:-4,8}"
rounds="${3:-2}"
out="$(mktemp -d)"
git worktree add -q --detach "$out/base-src" "$base"
trap 'git worktree remove --force "$out/base-src" 2>/dev/null || true' EXIT
(cd "$out/base-src" && go build -trimpath -o "$out/base" .)
go build -trimpath -o "$out/head" .
export DATABASE_URL="${DATABASE_URL:-$(scripts/pg.sh start dev)}"
for r in $(seq "$rounds"); do
  for build in base head; do
    "$out/$build" loadtest sweep --stages "$stages" --ladder tagged --out "$out/$build-$r" \
      $(command -v redis-server >/dev/null && echo --redis-server) ${SWEEP_FLAGS:---duration 20s --warmup 10s} >"$out/$build-$r.log" 2>&1 ||
      { echo "the $build sweep of round $r failed: $out/$build-$r.log" >&2; exit 1; }
    jq -r --arg r "$r" --arg b "$build" '(.runs[] | select(.result != null) | [., ""]), (select(.control.repeat.result != null) | [.control.repeat, " (control repeat)"])
      | .[0] as $run | "round \($r)  \($b)  stage \($run.stage)\(if $run.anonymous then " --anonymous \($run.anonymous)" else "" end)\(.[1])  \($run.result.total.rps | floor) req/s  p99 \($run.result.total.p99_ms) ms"' "$out/$build-$r/sweep.json"
  done
done
echo "sweeps in $out"
