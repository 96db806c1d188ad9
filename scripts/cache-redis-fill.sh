#!/usr/bin/env bash
# Issue 36's two Redis roles, measured (docs/stages/07-scale-out.md): a stage-7
# topology whose cache Redis has a small maxmemory, filled past it by the
# browse mix, while one logged-in user checks every second that they are
# still logged in; then the topology is restarted: the cache must come back
# empty and the session (in the durable Redis) still there. It also counts
# the comments their writer did not see on the next read (issue 36; 0 since
# the cache reads generations only from its own Redis: 03-cache.md).
#
#   scripts/cache-redis-fill.sh [MAXMEMORY] [DURATION] [USERS]   (defaults: 8mb 30s 32)
#
# Uses the dev cluster's data (make seed; migrated to stage 7) and sends
# traffic only to 127.0.0.1.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
max="${1:-8mb}" duration="${2:-30s}" users="${3:-32}"
export PATH="$PATH:/usr/sbin"
export DATABASE_URL="${DATABASE_URL:-$(scripts/pg.sh start dev)}"
go build -o bin/flickrkillr .
port=18470 admin=16470
url="http://127.0.0.1:$port"
out="$(mktemp -d)"
start() {
  bin/flickrkillr serve --stage 7 --instances 2 --addr "127.0.0.1:$port" --admin-addr "127.0.0.1:$admin" \
    --cache-maxmemory "$max" >"$out/serve-$1.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do curl -sf "$url/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "the topology did not start; its log:" >&2; tail -20 "$out/serve-$1.log" >&2; exit 1
}
stop() { kill -INT "$pid"; wait "$pid" || true; }
cache_keys() { redis-cli -u "$(curl -s "http://127.0.0.1:$admin/topology.json" | python3 -c 'import json,sys; print([r["url"] for r in json.load(sys.stdin)["redis_roles"] if r["name"]=="redis-cache"][0])')" dbsize; }
logged_in() { curl -s -o /dev/null -w '%{http_code}' -b "$out/jar" "$url/upload"; } # 200 logged in, 303 to /login not

start 1
curl -s -o /dev/null -c "$out/jar" -d 'name=user1&password=flickrkillr' "$url/login"
[ "$(logged_in)" = 200 ] || { echo "could not log in as user1" >&2; stop; exit 1; }
lost=0 probes=0
( while :; do c=$(logged_in); echo "$c" >>"$out/probes"; sleep 1; done ) & prober=$!
bin/flickrkillr loadtest --url "$url" --duration "$duration" --concurrency "$users" --json "$out/load.json" | tee "$out/load.txt" | tail -n 25
kill "$prober"; wait "$prober" 2>/dev/null || true
probes=$(wc -l <"$out/probes"); lost=$(grep -vc '^200$' "$out/probes" || true)
curl -s "http://127.0.0.1:$admin/topology.json" | python3 -c '
import json,sys
for r in json.load(sys.stdin)["redis_roles"]:
    print("%-12s used %.1f MB of %s, evicted %d keys, hit ratio %.1f%%" % (r["name"], r["used_memory_bytes"]/2**20,
        "%.0f MB" % (r["maxmemory_bytes"]/2**20) if r["maxmemory_bytes"] else "no maxmemory", r["evicted_keys"], 100*r["hit_ratio"]))'
echo "the logged-in probe: $probes probes, $lost not logged in"
# Issue 36: every comment must be on its writer's next read of the photo page.
python3 -c '
import json,sys
r=[x for x in json.load(open(sys.argv[1]))["routes"] if x["route"]=="comment"]
n=r[0]["requests"] if r else 0
miss=r[0].get("error_causes",{}).get("posted comment not visible on the next read",0) if r else 0
print("comments not on the next read: %d of %d" % (miss, n))' "$out/load.json"
before=$(cache_keys)
stop
start 2
after=$(cache_keys)
echo "cache Redis keys: $before before the restart, $after after it"
echo "user1 after the restart: $( [ "$(logged_in)" = 200 ] && echo 'still logged in' || echo 'LOGGED OUT')"
stop
echo "(logs and load-tool JSON in $out)"
