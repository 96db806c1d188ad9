#!/usr/bin/env bash
# make test: format and vet checks, then the whole suite against a real
# PostgreSQL (the project-local "test" cluster, started here), then the Redis-
# touching packages again against a real redis-server (installed with apt-get
# when we are root and it is missing).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# What this script starts it stops at the end (a cluster already running,
# say for `go test` by hand, is left running).
started_pg=""
redis_port=""
cleanup() {
  if [ -n "$redis_port" ]; then redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true; fi
  if [ -n "$started_pg" ]; then scripts/pg.sh stop test || true; fi
}
trap cleanup EXIT
scripts/pg.sh status test || started_pg=1
TEST_DATABASE_URL="$(scripts/pg.sh start test)"
export TEST_DATABASE_URL

echo "== gofmt"
unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.pgdata/*'))"
if [ -n "$unformatted" ]; then echo "not gofmt-ed:"; echo "$unformatted"; exit 1; fi

echo "== go vet"
go vet ./...

# The dashboard's browser test drives Debian's chromium (chromedp); installed
# like redis-server below when we are root, skipped without it outside CI.
if ! command -v chromium >/dev/null && [ "$(id -u)" -eq 0 ]; then
  echo "installing Debian's chromium package (apt-get)…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi

# need CMD PACKAGE WHAT-SKIPS: install Debian's PACKAGE when CMD is missing and
# we are root; in CI without it, fail; elsewhere say what is skipped, return 1.
need() {
  command -v "$1" >/dev/null && return 0
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing Debian's $2 package (apt-get)…"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
  elif [ -n "${CI:-}" ]; then
    echo "$1 is not installed and we are not root to install it (apt-get install $2)" >&2; exit 1
  else
    echo "$1 is not installed (sudo apt-get install $2); $3"; return 1
  fi
}

# Stage 7's tests run Debian's nginx in front of the instances (in /usr/sbin,
# which a non-root PATH may lack).
case ":$PATH:" in *:/usr/sbin:*) ;; *) export PATH="$PATH:/usr/sbin" ;; esac
need nginx nginx-light "stage 7's topology tests will be skipped" || true
need memcached memcached "stage 8's front-cache tests will be skipped" || true
# Stage 7 puts PgBouncer between the instances and PostgreSQL.
need pgbouncer pgbouncer "stage 7's PgBouncer test will be skipped" || true
# Its remote-instances test makes network namespaces (ip netns, as root).
need ip iproute2 "stage 7's network-namespace test will be skipped" || true

echo "== go test (PostgreSQL, embedded miniredis)"
go test -count=1 ./...

echo "== go test (PostgreSQL, real redis-server)"
need redis-server redis-server "skipping the real-Redis pass" || exit 0
# Our own redis-server on the first free port from 6390 (never another
# checkout's, which its tests may be flushing).
mkdir -p .pgdata
port=6390
while (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize yes --logfile "$root/.pgdata/redis-test.log" --dir "$root/.pgdata"
redis_port="$port"
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
REDIS_URL="redis://127.0.0.1:$redis_port/0" go test -count=1 -p 1 ./app/... ./models/...

# The overloaded run (512 load-tool users on one stage-6 server, about 20 s
# of both cores): it must finish with 0 page errors, the shed sign-ins
# counted apart (docs/reliability.md, "Overload").
if [ -n "${CI:-}" ] || [ -n "${FLICKRKILLR_OVERLOAD:-}" ]; then
  echo "== overload: 512 users on one stage-6 server, strict"
  FLICKRKILLR_OVERLOAD=1 FLICKRKILLR_OVERLOAD_STRICT=1 go test -count=1 -run '^TestOverloadedRunFinishesWithShedSignInsApart$' .
fi

# A short fuzz run of the form and upload validators (docs/reliability.md),
# in CI or when FUZZTIME is set; the seed corpus is in */testdata/fuzz.
# Budgets are counts, not times: Go 1.26's fuzz coordinator can fail a run at
# its time limit with "context deadline exceeded" (golang/go#75804, fixed in
# Go 1.27), which failed one CI run in two. Each count is about what the old
# 10 s budget ran on this 2-core machine (measured: Signup 41.6k, Login 41.5k
# and 26.6k in CI, Upload 48.6k, Comment 11.4k on a busy machine, ReadImageHeader
# 58.7k execs in 10 s). FUZZTIME, when set, overrides every target's budget
# (say a count, e.g. FUZZTIME=100000x).
if [ -n "${CI:-}" ] || [ -n "${FUZZTIME:-}" ]; then
  echo "== go test -fuzz (count budgets${FUZZTIME:+: $FUZZTIME each})"
  fuzz() { # PACKAGE TARGET COUNT
    go test -run '^$' -fuzz "^$2\$" -fuzztime "${FUZZTIME:-$3}" "$1"
  }
  fuzz ./app/ FuzzSignupForm 40000x
  fuzz ./app/ FuzzLoginForm 40000x
  fuzz ./app/ FuzzUploadForm 45000x
  fuzz ./app/ FuzzCommentForm 30000x
  fuzz ./models/ FuzzReadImageHeader 55000x
fi

# CI also builds the workshop tags (in this clone; main is untouched) and
# checks each in a temporary clone: it builds, passes its own tests, and
# serves what main serves at its stage.
if [ -n "${CI:-}" ]; then
  echo "== workshop tags"
  scripts/workshop-tags.sh --verify
fi
