#!/bin/bash
# Stage 7 at eight instances (issue 24): 256 load-tool users against serve --stage 7 --instances 8 on a
# PostgreSQL cluster of its own with max_connections 100 (20k users seeded), with PgBouncer and without it.
# Run as root after `make build`: scripts/stage7-eight.sh; the load reports land in $OUT (/tmp/stage7-eight).
set -u
B=${FLICKRKILLR:-bin/flickrkillr}
D=${OUT:-/tmp/stage7-eight}; rm -rf $D; mkdir -p $D; chown postgres $D
PGBIN=/usr/lib/postgresql/15/bin
runuser -u postgres -- $PGBIN/initdb -D $D/data -A trust -U postgres >/dev/null
cat >> $D/data/postgresql.conf <<CONF
port = 55300
listen_addresses = '127.0.0.1'
max_connections = 100
fsync = off
unix_socket_directories = '$D'
CONF
runuser -u postgres -- $PGBIN/pg_ctl -D $D/data -l $D/pg.log -w start >/dev/null
export DATABASE_URL="postgres://postgres@127.0.0.1:55300/postgres?sslmode=disable"
$B migrate >/dev/null 2>&1 && DATA_DIR=$D/photos $B seed --users 20000 > $D/seed.txt 2>&1
export PATH=$PATH:/usr/sbin
for mode in ${MODES:-1 0}; do
  PGBOUNCER=$mode DATA_DIR=$D/photos $B serve --stage 7 --instances 8 --addr 127.0.0.1:58810 --admin-addr 127.0.0.1:58811 > $D/serve-$mode.log 2>&1 &
  sp=$!
  for i in $(seq 120); do curl -sf http://127.0.0.1:58810/healthz >/dev/null 2>&1 && break; sleep 0.5; done
  sleep 3
  $B loadtest --url http://127.0.0.1:58810 --concurrency 256 --duration 20s > $D/load-$mode-$(date +%s).txt 2>&1
  kill -INT $sp; wait $sp
  echo "pgbouncer=$mode done $(date +%T)" >> $D/progress.txt
done
runuser -u postgres -- $PGBIN/pg_ctl -D $D/data -m fast stop >/dev/null
