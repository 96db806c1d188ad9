#!/usr/bin/env bash
# make test: format and vet checks, then the whole suite against a real
# PostgreSQL (the project-local "test" cluster, started here), then the Redis-
# touching packages again against a real redis-server. Everything the suite
# needs is installed first (as root, with apt-get), from the one list below.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# What the suite needs besides Go, from one list, all installed before the
# first test runs (so no test can run before its package is there). As root
# (CI) a missing package is installed with apt-get (scripts/apt.sh: one
# `apt-get update`, waiting for the package lock); in CI without root that
# fails; elsewhere the tests that need it skip and say so.
#   command      Debian package  what needs it
packages=(
  "initdb       postgresql     every test: the real database (the project-local test cluster, scripts/pg.sh)"
  "redis-server redis-server   the real-Redis pass, and stage 7-8's topology tests (one Redis the instances share)"
  "nginx        nginx-light    stage 7-8's topology tests (nginx in front of the instances)"
  "memcached    memcached      stage 8's front-cache tests (nginx answers from memcached)"
  "pgbouncer    pgbouncer      stage 7's PgBouncer tests (transaction pooling)"
  "ip           iproute2       stage 7's remote-instance test (network namespaces, as root)"
  "chromium     chromium       the dashboard's browser test (chromedp)"
)
# nginx, pgbouncer and ip live in /usr/sbin, which a non-root PATH may lack.
case ":$PATH:" in *:/usr/sbin:*) ;; *) export PATH="$PATH:/usr/sbin" ;; esac
# Debian keeps PostgreSQL's server tools out of PATH, under the major version.
have() { command -v "$1" >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null; }
missing_cmds=(); missing_pkgs=(); missing_what=()
for entry in "${packages[@]}"; do
  read -r cmd pkg what <<<"$entry"
  have "$cmd" && continue
  missing_cmds+=("$cmd"); missing_pkgs+=("$pkg"); missing_what+=("$what")
done
if [ "${#missing_pkgs[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    . scripts/apt.sh
    apt_install "what the test suite needs" "${missing_pkgs[@]}"
    for cmd in "${missing_cmds[@]}"; do
      have "$cmd" || { echo "$cmd is still missing after apt-get install" >&2; exit 1; }
    done
  elif [ -n "${CI:-}" ]; then
    echo "not installed, and we are not root to install them: sudo apt-get install ${missing_pkgs[*]}" >&2; exit 1
  else
    for i in "${!missing_pkgs[@]}"; do
      echo "${missing_cmds[$i]} is not installed (sudo apt-get install ${missing_pkgs[$i]}): skipped: ${missing_what[$i]}"
    done
  fi
fi

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

echo "== go test (PostgreSQL, embedded miniredis)"
go test -count=1 ./...

echo "== go test (PostgreSQL, real redis-server)"
command -v redis-server >/dev/null || { echo "redis-server is not installed: the real-Redis pass is skipped"; exit 0; }
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
