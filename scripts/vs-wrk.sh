#!/usr/bin/env bash
# Is the load tool the bottleneck? Alternate wrk and `flickrkillr loadtest
# --scenario static` on the stylesheet of a running server, same connections
# and duration, and print each round's req/s and the tool's share of wrk's.
#
#   scripts/vs-wrk.sh [URL] [ROUNDS] [SECONDS] [CONNECTIONS]
#
# Start the server first (make serve STAGE=4). Needs wrk (apt-get install wrk).
set -euo pipefail
url="${1:-http://127.0.0.1:8080}"
rounds="${2:-5}"
secs="${3:-15}"
conns="${4:-32}"
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null; then
  echo "vs-wrk.sh: needs wrk (apt-get install wrk)" >&2
  exit 2
fi
go build -o bin/flickrkillr .
threads="$(nproc)"
echo "wrk -t$threads -c$conns -d${secs}s $url/static/style.css"
echo "bin/flickrkillr loadtest --url $url --scenario static --concurrency $conns --duration ${secs}s"
printf '%-6s %12s %12s %8s\n' round "wrk req/s" "ours req/s" share
for i in $(seq "$rounds"); do
  w="$(wrk -t"$threads" -c"$conns" -d"${secs}s" "$url/static/style.css" | awk '/^Requests\/sec:/ {print $2}')"
  o="$(bin/flickrkillr loadtest --url "$url" --scenario static --concurrency "$conns" --duration "${secs}s" 2>/dev/null |
    awk '$1 == "total" {print $3}')"
  if [ -z "$w" ] || [ -z "$o" ]; then
    echo "vs-wrk.sh: a run failed (is the server up at $url?)" >&2
    exit 1
  fi
  awk -v i="$i" -v w="$w" -v o="$o" 'BEGIN {printf "%-6s %12.0f %12.0f %7.0f%%\n", i, w, o, 100*o/w}'
done
