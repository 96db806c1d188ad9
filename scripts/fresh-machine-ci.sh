#!/usr/bin/env bash
# The fresh-machine check of the test suite (docs/maintaining-stages.md):
# as root, remove the Debian packages the suite installs, hold the package
# lock for a minute the way a running apt-get would, and run CI on a fresh
# clone of this checkout's HEAD. It passes only if .ci/run installs what it
# needs, before the first test that needs it, and waits for the lock.
#
#   scripts/fresh-machine-ci.sh            remove the packages, hold the lock 60 s, run CI
#   LOCK=0 scripts/fresh-machine-ci.sh     without holding the lock
#
# It changes the machine (packages removed, then reinstalled by the run):
# meant for a developer's or CI's machine, not a server you care about.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
[ "$(id -u)" -eq 0 ] || { echo "fresh-machine-ci.sh: run as root (it removes and installs Debian's packages)" >&2; exit 2; }

# The packages scripts/test.sh installs (PostgreSQL stays: every developer's
# `make run` uses it, and pg.sh's install takes the same path).
# nginx is whichever of Debian's nginx packages gave this machine its
# binary (test.sh installs nginx-light; another flavour may be there).
pkgs=(redis-server redis-tools nginx-light memcached pgbouncer chromium)
for p in nginx nginx-core nginx-full nginx-extras; do
  if dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then pkgs+=("$p"); fi
done
echo "== removing ${pkgs[*]}"
DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq "${pkgs[@]}" >/dev/null
for cmd in redis-server nginx memcached pgbouncer chromium; do
  if PATH="$PATH:/usr/sbin" command -v "$cmd" >/dev/null; then echo "fresh-machine-ci.sh: $cmd is still installed" >&2; exit 1; fi
done

d="$(mktemp -d)"
git clone -q "$root" "$d"
lock_pid=""
if [ "${LOCK:-1}" != 0 ]; then
  go build -o "$d/aptlock" ./scripts/aptlock
  "$d/aptlock" 60s & lock_pid=$!
  sleep 1
fi
echo "== CI=true bash .ci/run in $d"
start=$SECONDS
rc=0
(cd "$d" && CI=true bash .ci/run) || rc=$?
[ -z "$lock_pid" ] || wait "$lock_pid" || true
echo "== fresh-machine CI: exit $rc after $((SECONDS - start)) s (clone: $d)"
exit "$rc"
