#!/bin/bash
# usage: m10.sh SHARDS OUT SCENARIO [STAGES]
cd /work/main
export PATH=$PATH:/usr/sbin REPLICAS=0
n=$1; out=$2; sc=$3; st=${4:-10}
export DATABASE_URL=$(scripts/pg.sh ring) SHARD_URLS=$(scripts/pg.sh shards $n 2>/dev/null); export RING_URL=$DATABASE_URL
timeout 900 ${BIN:-bin/flickrkillr} loadtest sweep --model "app=${APPQ:-0.25},db=${DBQ:-0.1},redis=0.1,front=0.1,worker=0.1" --stages $st --ladder alone --scenario $sc --duration 20s --warmup 5s --redis-server --addr 127.0.0.1:18871 --out $out > $out.log 2>&1
echo "exit $?" >> $out.log
