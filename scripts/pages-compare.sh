#!/usr/bin/env bash
# Byte-equal pages: serve each stage with a binary built from an earlier
# commit and with this checkout's, on the same small database, and compare
# what an anonymous visitor, a photo's owner and another user get (each page
# twice: rendered, then from whatever the stage keeps).
#
#   scripts/pages-compare.sh BASE_BINARY [STAGES]     e.g. /tmp/flickrkillr-b4fcff6 "0 1 2 3 4 5 6"
#
#   git archive b4fcff6 --prefix=base/ | tar -x -C /tmp && (cd /tmp/base && go build -o /tmp/flickrkillr-b4fcff6 .)
#
# The database is a throw-away one on the project's test cluster (seeded
# with 200 users), so the run writes nothing anyone else reads. Exit 1 on a
# difference, with the diff.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
base="${1:?usage: scripts/pages-compare.sh BASE_BINARY [STAGES]}"
stages="${2:-0 1 2 3 4 5 6}"
tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  [ -n "${admin:-}" ] && psql "$admin" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
go build -o "$tmp/new" .
admin="$(scripts/pg.sh start test)"
db="flickrkillr_pages_$$"
psql "$admin" -qc "CREATE DATABASE $db" >/dev/null
export DATABASE_URL="${admin%/postgres*}/$db?sslmode=disable" DATA_DIR="$tmp/photos" REDIS_URL="" ADMIN_ADDR=127.0.0.1:0
"$tmp/new" migrate >/dev/null 2>&1
"$tmp/new" seed --users 200 --photos-per-user 3-5 --seed 7 >/dev/null 2>&1
addr=127.0.0.1:18282
url="http://$addr"

login() { # jar user
  curl -s -c "$1" -b "$1" -o /dev/null -d "name=$2&password=flickrkillr" "$url/login"
  curl -s -c "$1" -b "$1" -o /dev/null "$url/upload"   # takes the log-in's flash
}
fetch() { # out-dir: every viewer's pages, twice each
  mkdir -p "$1"
  local photos tag
  photos="$(curl -s "$url/users/user1" | grep -o '/photos/[0-9]*"' | tr -d '"' | sort -u | head -3)"
  tag="$(curl -s "$url/" | grep -o '/tags/[a-z0-9_-]*' | head -1)"
  rm -f "$tmp"/*.jar  # a fresh visitor each run: no cookie from the other binary
  login "$tmp/owner.jar" user1
  login "$tmp/other.jar" user2
  : > "$tmp/anon.jar"
  for who in anon owner other; do
    for round in 1 2; do
      for p in / $photos /users/user1 /users/user2 "$tag" "$tag?before=999999" /photos/999999999; do
        curl -s -b "$tmp/$who.jar" -c "$tmp/$who.jar" "$url$p" > "$1/$who-$round-$(echo "$p" | tr '/?=' '___')"
      done
    done
  done
}
serve_and_fetch() { # binary stage out-dir
  "$1" migrate --stage "$2" --indexes >/dev/null 2>&1 || "$1" migrate --stage "$2" >/dev/null 2>&1
  local flags="--stage $2"
  [ "$2" -lt 4 ] && flags="$flags --indexes"
  "$1" serve --addr "$addr" $flags >"$3.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "$url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  fetch "$3"
  kill -INT "${pids[-1]}"; wait "${pids[-1]}" || true
  unset 'pids[-1]'
}
status=0
for n in $stages; do
  serve_and_fetch "$base" "$n" "$tmp/base-$n"
  serve_and_fetch "$tmp/new" "$n" "$tmp/new-$n"
  count="$(ls "$tmp/new-$n" | wc -l)"
  if ! grep -q "Recent photos" "$tmp/new-$n/anon-1-_"; then
    echo "stage $n: no home page (log: $tmp/new-$n.log)" >&2; cat "$tmp/new-$n.log" >&2; status=1; continue
  fi
  # The comparison means something only if the viewers were who they should be.
  if ! grep -q '<a href="/users/user1">user1</a>' "$tmp/new-$n/owner-2-_" \
    || ! grep -q '<a href="/users/user2">user2</a>' "$tmp/new-$n/other-2-_" \
    || ! ls "$tmp/new-$n" | grep -q 'owner-2-_photos_[0-9]'; then
    echo "stage $n: the owner's or the other user's pages are not logged in, or user1 has no photos (log: $tmp/new-$n.log)" >&2; status=1; continue
  fi
  if diff -r "$tmp/base-$n" "$tmp/new-$n" > "$tmp/diff-$n"; then
    echo "stage $n: $count pages byte-equal (anonymous, owner, another user; rendered and kept)"
  else
    echo "stage $n: pages differ:" >&2; head -40 "$tmp/diff-$n" >&2; status=1
  fi
done
exit $status
