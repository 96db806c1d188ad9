#!/usr/bin/env bash
# Project-local PostgreSQL clusters, kept under .pgdata/ in the checkout (ignored by git).
#
#   scripts/pg.sh start dev|test   start (creating if needed) and print the database URL
#   scripts/pg.sh stop  dev|test   stop the cluster (its data stays)
#   scripts/pg.sh url   dev|test   print the URL without starting anything
#   scripts/pg.sh status dev|test  exit 0 when running
#   scripts/pg.sh replication dev|test
#                                  start it able to feed streaming standbys
#                                  (stage 9: wal_level replica; a restart, once)
#   scripts/pg.sh shards N         start shard0 … shardN-1 and print their URLs,
#                                  comma-separated: stage 10's SHARD_URLS
#   scripts/pg.sh ring             start dev, make its database flickrkillr_ring
#                                  if missing, print its URL: stage 10's DATABASE_URL
#
# "dev" (port 54329) holds the data of `make run`, `make seed` and the load tests.
# "test" (port 54330) is for `make test`: throw-away databases, fsync off.
# "shard0" … "shard9" (ports 54341 …) are the shards of stage 10's dev data
# (`make seed SHARDS=N`); the ring is a second database of dev, so that
# `make seed`'s data in flickrkillr stays for the other stages.
# Never docker, never a download: Debian's postgresql package, installed with
# apt-get when we are root and it is missing.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cmd="${1:-}"; which="${2:-dev}"

case "$cmd" in
  shards)
    n="$which"
    if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 10 ]; then
      echo "scripts/pg.sh: shards takes a number of shards, 1 to 10, not '$n'" >&2; exit 2
    fi
    urls=()
    for ((k = 0; k < n; k++)); do urls+=("$("$0" start "shard$k")"); done
    (IFS=,; echo "${urls[*]}")
    exit 0 ;;
  ring)
    dev="$("$0" start dev)"
    ring="${dev/\/flickrkillr\?/\/flickrkillr_ring?}"
    psql="$(command -v psql || ls /usr/lib/postgresql/*/bin/psql | sort -V | tail -n 1)"
    if ! "$psql" "$dev" -tAc "SELECT 1 FROM pg_database WHERE datname = 'flickrkillr_ring'" | grep -q 1; then
      echo "pg.sh: creating the ring database flickrkillr_ring in the dev cluster" >&2
      "$psql" "$dev" -qc "CREATE DATABASE flickrkillr_ring" >&2
    fi
    echo "$ring"
    exit 0 ;;
esac

# step is how far a cluster moves when its port is taken: dev and test
# keep their parity; a shard moves by ten, past the other shards' ports.
step=2
case "$which" in
  dev)  port="${PGPORT_DEV:-54329}"; db="flickrkillr" ;;
  test) port="${PGPORT_TEST:-54330}"; db="postgres" ;;
  shard[0-9]) port=$((${PGPORT_SHARD0:-54341} + ${which#shard})); db="flickrkillr"; step=10 ;;
  *) echo "scripts/pg.sh: cluster must be dev, test or shard0 … shard9, not '$which'" >&2; exit 2 ;;
esac
data="$root/.pgdata/$which"
portfile="$root/.pgdata/$which.port"

# A cluster listens on the port saved in .pgdata/<cluster>.port. When it
# starts and that port is taken (another checkout on the same machine runs
# its own cluster there), it moves to the next free one and saves that.
in_use() { (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -f "$portfile" ]; then port="$(cat "$portfile")"; fi
url() { echo "postgres://postgres@127.0.0.1:$port/$db?sslmode=disable"; }

say() { echo "pg.sh: $*" >&2; }

find_bin() {
  local tool="$1" p
  if p="$(command -v "$tool" 2>/dev/null)"; then echo "$p"; return 0; fi
  # Debian keeps the server tools out of PATH, under the major version.
  for p in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$p/$tool" ]; then echo "$p/$tool"; return 0; fi
  done
  return 1
}

ensure_installed() {
  if find_bin initdb >/dev/null && find_bin psql >/dev/null; then return 0; fi
  if [ "$(id -u)" -ne 0 ]; then
    say "PostgreSQL is not installed. Install it with:  sudo apt-get install -y postgresql"
    say "(or set DATABASE_URL to a PostgreSQL you already run)"
    exit 1
  fi
  . "$root/scripts/apt.sh"
  apt_install "the project-local database" postgresql || exit 1
  find_bin initdb >/dev/null || { say "initdb still not found after installing postgresql"; exit 1; }
}

# As root, the server runs as the postgres user (PostgreSQL refuses root).
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The postgres user must be able to reach .pgdata: give "search" (x) on any
# ancestor directory that lacks it (mktemp -d makes 0700 directories).
ensure_reachable() {
  [ "$(id -u)" -eq 0 ] || return 0
  local d="$root"
  while [ "$d" != "/" ]; do
    if ! runuser -u postgres -- test -x "$d" 2>/dev/null; then
      say "allowing the postgres user to pass through $d (chmod o+x)"
      chmod o+x "$d"
    fi
    d="$(dirname "$d")"
  done
}

running() {
  [ -f "$data/postmaster.pid" ] && as_owner "$(find_bin pg_ctl)" -D "$data" status >/dev/null 2>&1
}

start() {
  ensure_installed
  mkdir -p "$root/.pgdata"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$root/.pgdata"; ensure_reachable; fi
  if ! running && in_use "$port"; then
    local taken="$port"
    while in_use "$port"; do port=$((port + step)); done
    say "port $taken is taken (another checkout's cluster?): the $which cluster uses $port"
  fi
  echo "$port" > "$portfile"
  if [ ! -f "$data/PG_VERSION" ]; then
    say "creating the $which cluster in .pgdata/$which"
    as_owner "$(find_bin initdb)" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null \
      || as_owner "$(find_bin initdb)" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
    {
      echo "# FlickrKillr project-local settings"
      echo "listen_addresses = '127.0.0.1'"
      echo "unix_socket_directories = ''"
      echo "max_connections = 200"
      echo "max_wal_size = 4GB"
      if [ "${which#shard}" != "$which" ]; then
        # Stage 10's shards hold dev data (fsync on, as dev), and are made
        # able to feed streaming standbys from the start, as stage 9 needs
        # of dev: the seed's COPY then writes WAL (docs/seed.md, "Shards").
        echo "wal_level = replica"
        echo "max_wal_senders = 10"
        echo "shared_buffers = 256MB"
        echo "maintenance_work_mem = 512MB"
        echo "work_mem = 16MB"
      elif [ "$which" = dev ]; then
        # No replication until stage 9 asks (`pg.sh replication dev`):
        # minimal WAL lets the seed's COPY skip writing WAL.
        echo "wal_level = minimal"
        echo "max_wal_senders = 0"
        echo "shared_buffers = 512MB"
        echo "maintenance_work_mem = 512MB"
        echo "work_mem = 16MB"
      else
        # Stage 9's tests make streaming standbys of this cluster.
        echo "wal_level = replica"
        echo "max_wal_senders = 10"
        # Test databases are thrown away: durability buys nothing.
        echo "shared_buffers = 128MB"
        echo "fsync = off"
        echo "synchronous_commit = off"
        echo "full_page_writes = off"
      fi
    } | as_owner tee -a "$data/postgresql.conf" >/dev/null
  fi
  if ! running; then
    say "starting the $which cluster on 127.0.0.1:$port (log: .pgdata/$which.log)"
    as_owner touch "$root/.pgdata/$which.log"
    as_owner "$(find_bin pg_ctl)" -D "$data" -l "$root/.pgdata/$which.log" -o "-p $port" -w -t 60 start >/dev/null \
      || { say "PostgreSQL did not start; the end of .pgdata/$which.log says:"; tail -n 20 "$root/.pgdata/$which.log" >&2; exit 1; }
  fi
  if [ "$db" != postgres ]; then
    local psql; psql="$(find_bin psql)"
    if ! "$psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
      "$psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc "CREATE DATABASE $db" >&2
    fi
  fi
  url
}

# replication makes the running cluster able to feed streaming standbys
# (stage 9): wal_level replica and WAL senders, which take a restart. A
# cluster made before stage 9 (or the dev cluster, minimal for the seed's
# COPY) is changed once, with ALTER SYSTEM (postgresql.auto.conf).
replication() {
  local psql level; psql="$(find_bin psql)"
  level="$("$psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc "SHOW wal_level")"
  [ "$level" = minimal ] || return 0
  say "turning on replication in the $which cluster (wal_level replica, max_wal_senders 10): a restart"
  "$psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc "ALTER SYSTEM SET wal_level = replica" -c "ALTER SYSTEM SET max_wal_senders = 10" >&2
  as_owner "$(find_bin pg_ctl)" -D "$data" -l "$root/.pgdata/$which.log" -o "-p $port" -m fast -w -t 60 restart >/dev/null \
    || { say "PostgreSQL did not restart; the end of .pgdata/$which.log says:"; tail -n 20 "$root/.pgdata/$which.log" >&2; exit 1; }
}

stop() {
  if running; then
    as_owner "$(find_bin pg_ctl)" -D "$data" -m fast -w stop >/dev/null
    say "stopped the $which cluster"
  fi
}

case "$cmd" in
  start)
    if [ "$which" = test ]; then start >/dev/null; replication; url; else start; fi ;;
  replication) start >/dev/null; replication; url ;;
  stop) stop ;;
  url) url ;;
  status) running ;;
  *) echo "usage: scripts/pg.sh start|stop|url|status|replication dev|test|shard0…shard9, or shards N, or ring" >&2; exit 2 ;;
esac
