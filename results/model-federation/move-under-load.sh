#!/bin/bash
# A user moved under load on stage 10 (2 shards, full seed, unconstrained):
# the load tool's browse mix for 45 s; at 15 s, `shard move` of the owner of
# the most commented photo. Then: errors, the user's rows before and after,
# the hold, and the share of photo and user pages answered by one shard.
cd /work/main
export PATH=$PATH:/usr/sbin REPLICAS=0 DATA_DIR=$PWD/data/photos
export DATABASE_URL=$(scripts/pg.sh ring) SHARD_URLS=$(scripts/pg.sh shards 2 2>/dev/null)
P=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/psql
s0=${SHARD_URLS%%,*}; s1=${SHARD_URLS##*,}
read user shard <<<$($P "$DATABASE_URL" -tAF' ' -c "SELECT r.user_id, r.shard FROM ring_users r ORDER BY r.user_id LIMIT 0" )
best=""
for u in $s0 $s1; do
  $P "$u" -tAF' ' -c "SELECT p.user_id, count(*) FROM comments c JOIN photos p ON p.id = c.photo_id GROUP BY p.user_id ORDER BY 2 DESC LIMIT 1"
done > /tmp/move-cands
user=$(sort -k2 -n -r /tmp/move-cands | head -1 | cut -d' ' -f1)
shard=$($P "$DATABASE_URL" -tA -c "SELECT shard FROM ring_users WHERE user_id = $user")
to=$((1 - shard))
counts() {
  for u in $s0 $s1; do
    $P "$u" -tA -c "SELECT (SELECT count(*) FROM photos WHERE user_id=$user) || ' photos ' ||
      (SELECT count(*) FROM photo_tags pt JOIN photos p ON p.id=pt.photo_id WHERE p.user_id=$user) || ' photo_tags ' ||
      (SELECT count(*) FROM comments c JOIN photos p ON p.id=c.photo_id WHERE p.user_id=$user) || ' comments ' ||
      (SELECT count(*) FROM favorites f JOIN photos p ON p.id=f.photo_id WHERE p.user_id=$user) || ' favorites ' ||
      (SELECT count(*) FROM user_favorites WHERE user_id=$user) || ' user_favorites'"
  done
}
echo "user $user on shard $shard, moving to $to; before:"; counts
bin/flickrkillr serve --stage 10 --addr 127.0.0.1:18890 --admin-addr 127.0.0.1:18891 > /tmp/movetest-serve.log 2>&1 &
for i in $(seq 120); do curl -sf http://127.0.0.1:18890/healthz >/dev/null && break; sleep 0.5; done
bin/flickrkillr loadtest --url http://127.0.0.1:18890 --scenario browse --concurrency 32 --duration 45s > /tmp/movetest-load.log 2>&1 &
lt=$!
sleep 15
time bin/flickrkillr shard move $user --to $to > /tmp/movetest-move.log 2>&1
cat /tmp/movetest-move.log
wait $lt
tail -25 /tmp/movetest-load.log
echo "after:"; counts
curl -s http://127.0.0.1:18891/metrics | grep -E "^flickrkillr_(shard_pages|shard_held|ring_lookups|shard_fanouts|favorite_outbox)" 
pkill -INT -f "serve --stage 10 --addr 127.0.0.1:18890"; sleep 5
