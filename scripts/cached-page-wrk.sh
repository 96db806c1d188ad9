#!/usr/bin/env bash
# What a cached photo page costs against the stylesheet, with wrk: a server
# of STAGE (4) on the full seed, one photo page warmed, then alternating wrk
# runs on the stylesheet, the page for an anonymous visitor and the page for
# a logged-in one (user1's session cookie). Before the runs it checks that a
# GET that changes nothing sends no Set-Cookie, and prints the cached page's
# Server-Timing for both viewers.
#
#   scripts/cached-page-wrk.sh [ROUNDS] [SECONDS] [CONNECTIONS] [BINARY]
#
# BINARY (default: this checkout's) lets an earlier build be measured the
# same way. Needs wrk and DATABASE_URL at the stage's schema.
set -euo pipefail
rounds="${1:-3}"
secs="${2:-10}"
conns="${3:-32}"
cd "$(dirname "$0")/.."
bin="${4:-}"
if [ -z "$bin" ]; then go build -o bin/flickrkillr . && bin=bin/flickrkillr; fi
stage="${STAGE:-4}"
addr=127.0.0.1:18092
url="http://$addr"
jar="$(mktemp)"
pid=""
trap '[ -n "$pid" ] && kill -INT "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -f "$jar"' EXIT
ADMIN_ADDR= "$bin" serve --stage "$stage" --addr "$addr" >/tmp/cached-page-wrk-server.log 2>&1 &
pid=$!
for _ in $(seq 200); do curl -sf "$url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -s -c "$jar" -o /dev/null -d 'name=user1&password=flickrkillr' "$url/login"
curl -s -b "$jar" -c "$jar" -o /dev/null "$url/upload"   # takes the log-in's flash
cookie="flickrkillr_session=$(awk '$6 == "flickrkillr_session" {print $7}' "$jar")"
photo="$(curl -s "$url/users/user2" | grep -o '/photos/[0-9]*"' | head -1 | tr -d '"')"
for _ in 1 2 3; do curl -s -o /dev/null "$url$photo"; curl -s -o /dev/null -H "Cookie: $cookie" "$url$photo"; done
echo "$bin, stage $stage, $photo; wrk -t$(nproc) -c$conns -d${secs}s"
echo "anonymous Server-Timing: $(curl -s -D - -o /dev/null "$url$photo" | tr -d '\r' | awk -F': ' 'tolower($1) == "server-timing" {print $2}')"
hdrs="$(curl -s -D - -o /dev/null -H "Cookie: $cookie" "$url$photo" | tr -d '\r')"
echo "logged-in Server-Timing: $(awk -F': ' 'tolower($1) == "server-timing" {print $2}' <<<"$hdrs")"
echo "logged-in GET Set-Cookie: $(grep -ic '^set-cookie:' <<<"$hdrs" || true) header(s)"
w() { wrk -t"$(nproc)" -c"$conns" -d"${secs}s" "$@" | awk '/^Requests\/sec:/ {print $2}'; }
printf '%-6s %12s %12s %12s %10s %10s\n' round "style req/s" "anon req/s" "login req/s" "anon/style" "login/anon"
for i in $(seq "$rounds"); do
  if [ $((i % 2)) -eq 1 ]; then
    s="$(w "$url/static/style.css")"; a="$(w "$url$photo")"; l="$(w -H "Cookie: $cookie" "$url$photo")"
  else
    l="$(w -H "Cookie: $cookie" "$url$photo")"; a="$(w "$url$photo")"; s="$(w "$url/static/style.css")"
  fi
  awk -v i="$i" -v s="$s" -v a="$a" -v l="$l" 'BEGIN {printf "%-6s %12.0f %12.0f %12.0f %9.0f%% %9.0f%%\n", i, s, a, l, 100*a/s, 100*l/a}'
done
