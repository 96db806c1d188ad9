#!/usr/bin/env bash
# Workshop tags: one annotated tag per stage, built from the current main.
#
#   scripts/workshop-tags.sh           create (or replace) the local tags stage-N-name
#   scripts/workshop-tags.sh --verify  also, in a temporary clone: build and test every
#                                      tag, and compare each tag's `serve --stage N` (its
#                                      own stage) with main's on the same data
#
# The tag of stage N is main's tree without the files and folders that
# stages.manifest lists for stages N+1 and later. A manifest line is
# "<stage> <name>: <entries…>"; an entry ending in "/" is a folder (a
# mechanism package such as app/jobqueue/, removed whole), and the one line
# "- all: <folders…>" names the folders every tag holds. The tags form a chain,
# one commit per stage line (stage 0 has no parent, stage N's parent is stage
# N-1), so `git show stage-2-mem-sessions` and
# `git diff stage-1-db-sessions stage-2-mem-sessions` show exactly that step.
# main, its index and its work tree are not touched.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
verify=""
[ "${1:-}" = "--verify" ] && verify=1

# Every stage-specific app file must be in the manifest, or it would leak
# into the tags of earlier stages.
listed="$(grep -v '^#' stages.manifest | cut -d: -f2- | tr ' ' '\n' | sed '/^$/d' | sort)"
for f in $(git ls-files 'app/stage[0-9]*' 'migrations/*.sql' | sort); do
  case "$f" in migrations/00001_schema.sql) continue ;; esac
  if ! grep -qx "$f" <<<"$listed"; then
    echo "workshop-tags: $f belongs to a stage but is not in stages.manifest" >&2; exit 1
  fi
done

# So must every mechanism folder (a directory under app/ with Go code in it):
# one that no line owns, neither a stage's nor "- all:", would be in every tag
# unseen, its stage's code leaking into the tags before it. A folder is owned
# when it or a folder above it is listed. Go skips testdata/ and folders
# starting with "_" or ".", so they hold no package and are not asked about.
owned() { # dir (no trailing slash): is it, or a folder above it, listed?
  local d="$1"
  while [ "$d" != app ] && [ "$d" != . ]; do
    grep -qxF "$d/" <<<"$listed" && return 0
    d="$(dirname "$d")"
  done
  return 1
}
unowned=""
for d in $(git ls-files 'app/*.go' | grep '^app/.*/' | xargs -r -n1 dirname | sort -u); do
  case "/$d/" in */testdata/* | */_* | */.*) continue ;; esac
  owned "$d" && continue
  top="$(cut -d/ -f1-2 <<<"$d")/"  # the mechanism folder: app/<name>/, never owned if $d is not
  case " $unowned " in *" $top "*) continue ;; esac
  unowned+=" $top"
  where=""; [ "$d/" = "$top" ] || where=" (in $d/)"
  echo "workshop-tags: $top holds Go code$where but no line of stages.manifest owns it: add $top to the line of the stage that brings it, or to the \"- all:\" line if every tag holds it" >&2
done
[ -z "$unowned" ] || exit 1

# commit-tree and annotated tags need an identity; a fresh CI machine may have none.
if ! git config user.email >/dev/null; then
  export GIT_AUTHOR_NAME="FlickrKillr workshop" GIT_AUTHOR_EMAIL="workshop@flickrkillr.invalid"
  export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
fi

# The stage lines, in order ("- all:" is not a stage: its folders stay in every tag).
mapfile -t stages < <(grep -v '^#' stages.manifest | sed '/^\s*$/d' | grep -v '^-')
index="$(mktemp)"; trap 'rm -f "$index"' EXIT
parent=""
tags=()
for i in "${!stages[@]}"; do
  head="${stages[$i]%%:*}"; n="${head%% *}"; name="${head#* }"; name="${name// /}"
  GIT_INDEX_FILE="$index" git read-tree HEAD
  for later in "${stages[@]:$((i + 1))}"; do
    for f in ${later#*:}; do
      case "$f" in
        */) GIT_INDEX_FILE="$index" git rm -r --cached -q --ignore-unmatch "$f" ;;  # a mechanism folder
        *) GIT_INDEX_FILE="$index" git rm --cached -q --ignore-unmatch "$f" ;;
      esac
    done
  done
  tree="$(GIT_INDEX_FILE="$index" git write-tree)"
  msg="Workshop stage $n: $name

Built from main $(git rev-parse --short HEAD) by scripts/workshop-tags.sh.
See docs/stages/0$n-$name.md."
  if [ -z "$parent" ]; then commit="$(git commit-tree "$tree" -m "$msg")"
  else commit="$(git commit-tree "$tree" -p "$parent" -m "$msg")"; fi
  tag="stage-$n-$name"
  git tag -f -a "$tag" -m "FlickrKillr workshop: stage $n ($name)" "$commit" >/dev/null
  echo "tagged $tag ($(git rev-parse --short "$commit"))"
  parent="$commit"; tags+=("$tag")
done
[ -n "$verify" ] || exit 0

# Verify in a temporary clone: each tag builds, passes its own tests, and
# serves what main serves at that stage.
tmp="$(mktemp -d)"; trap 'rm -f "$index"; rm -rf "$tmp"' EXIT
git clone -q "$root" "$tmp/main"
git -C "$tmp/main" fetch -q "$root" 'refs/tags/*:refs/tags/*'
TEST_DATABASE_URL="$(scripts/pg.sh start test)"; export TEST_DATABASE_URL
(cd "$tmp/main" && go build -o "$tmp/bin/main" .)
admin="$TEST_DATABASE_URL"
db="flickrkillr_workshop_$$"
dsn="${admin%/postgres*}/$db?sslmode=disable"
psql "$admin" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" 2>/dev/null \
  || "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/psql" "$admin" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
export DATABASE_URL="$dsn" DATA_DIR="$tmp/photos" REDIS_URL=""
"$tmp/bin/main" migrate >/dev/null 2>&1
"$tmp/bin/main" seed --users 200 --photos-per-user 3-5 >/dev/null 2>&1

fetch_all() { # base-url out-dir: anonymous pages, pid and timing-free
  mkdir -p "$2"
  for p in / /photos/1 /photos/7 /users/user3 /users/nobody /tags/sunset /photos/1/thumb /login /signup; do
    curl -s "$1$p" | sed 's/"pid":[0-9]*//' > "$2/$(echo "$p" | tr '/' '_')"
  done
  curl -s "$1/healthz" | sed 's/"pid":[0-9]*//' > "$2/healthz"
}
# The servers listen on a port found free here, never a fixed one: a fixed
# port taken by anything else on the machine (a load test, another checkout's
# verify) made the server exit at once and the verify fail.
port=18181
while (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
# Stage 10 and later serve the users' data from shards: a ring and two
# shards of the same seed (seed --shards 2), made once, on the test cluster.
stage_env=()
sharded() {
  [ -n "${shard_urls:-}" ] && return 0
  local urls=() name
  for name in ring shard0 shard1; do
    psql "$admin" -qc "DROP DATABASE IF EXISTS ${db}_$name" -c "CREATE DATABASE ${db}_$name" 2>/dev/null \
      || "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/psql" "$admin" -qc "DROP DATABASE IF EXISTS ${db}_$name" -c "CREATE DATABASE ${db}_$name"
    urls+=("${admin%/postgres*}/${db}_$name?sslmode=disable")
  done
  ring_dsn="${urls[0]}"; shard_urls="${urls[1]},${urls[2]}"
  DATABASE_URL="$ring_dsn" SHARD_URLS="$shard_urls" "$tmp/bin/main" migrate >/dev/null 2>&1
  DATABASE_URL="$ring_dsn" SHARD_URLS="$shard_urls" "$tmp/bin/main" seed --shards 2 --users 200 --photos-per-user 3-5 >/dev/null 2>&1
}
serve_and_fetch() { # binary stage-flag out-dir
  env "${stage_env[@]}" "$1" serve --addr "127.0.0.1:$port" --admin-addr "" $2 >"$3.log" 2>&1 &
  local pid=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "workshop-tags: $1 serve $2 exited before it answered; its log:" >&2
    cat "$3.log" >&2; exit 1
  fi
  fetch_all "http://127.0.0.1:$port" "$3"
  kill -INT "$pid"; wait "$pid" || true
}
for tag in "${tags[@]}"; do
  n="${tag#stage-}"; n="${n%%-*}"
  echo "== $tag: build, vet, test"
  # scripts/samepages checks a refactor of main against an earlier commit
  # (a minute or more of serving every stage twice); main's pass runs it.
  git -C "$tmp/main" worktree add -q "$tmp/$tag" "$tag"
  (cd "$tmp/$tag" && go build -o "$tmp/bin/$tag" . && go vet ./... && go test -count=1 $(go list ./... | grep -v /scripts/samepages) | grep -v 'no test files')
  echo "== $tag: compare with main's serve --stage $n"
  "$tmp/bin/main" migrate --stage "$n" >/dev/null 2>&1
  stage_env=()
  if [ "$n" -ge 10 ]; then
    sharded
    stage_env=(DATABASE_URL="$ring_dsn" SHARD_URLS="$shard_urls")
  fi
  serve_and_fetch "$tmp/bin/$tag" "--stage $n" "$tmp/out-$tag"
  serve_and_fetch "$tmp/bin/main" "--stage $n" "$tmp/out-main-$n"
  if ! grep -q "Recent photos" "$tmp/out-$tag/_" || ! grep -q "\"stage\":$n," "$tmp/out-$tag/healthz"; then
    echo "workshop-tags: $tag did not serve its home page at stage $n (log: $tmp/out-$tag.log)" >&2
    cat "$tmp/out-$tag.log" >&2; exit 1
  fi
  if ! diff -r "$tmp/out-$tag" "$tmp/out-main-$n" >/dev/null; then
    echo "workshop-tags: $tag does not serve what main serves at stage $n:" >&2
    diff -r "$tmp/out-$tag" "$tmp/out-main-$n" | head -20 >&2
    exit 1
  fi
done
for name in "" _ring _shard0 _shard1; do psql "$admin" -qc "DROP DATABASE IF EXISTS $db$name" 2>/dev/null || true; done
echo "workshop tags verified: ${tags[*]}"
