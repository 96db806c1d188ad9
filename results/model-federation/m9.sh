#!/bin/bash
# usage: m9.sh OUT SCENARIO: stage 9 on the unsharded full seed, 2 standbys
cd /work/main
export PATH=$PATH:/usr/sbin REPLICAS=2
out=$1; sc=$2
export DATABASE_URL=$(scripts/pg.sh url dev)
unset SHARD_URLS
timeout 900 ${BIN:-bin/flickrkillr} loadtest sweep --model "app=${APPQ:-0.25},db=${DBQ:-0.1},redis=0.1,front=0.1,worker=0.1" --stages 9 --ladder alone --scenario $sc --duration 20s --warmup 5s --redis-server --addr 127.0.0.1:18871 --out $out > $out.log 2>&1
echo "exit $?" >> $out.log
