#!/usr/bin/env bash
# make test: format and vet checks, then the whole suite against a real
# PostgreSQL (the project-local "test" cluster, started here), then the Redis-
# touching packages again against a real redis-server (installed with apt-get
# when we are root and it is missing).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

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
redis_port=6390
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing Debian's redis-server package (apt-get)…"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  elif [ -n "${CI:-}" ]; then
    echo "redis-server is not installed and we are not root to install it" >&2; exit 1
  else
    echo "redis-server is not installed (sudo apt-get install redis-server); skipping the real-Redis pass"
    exit 0
  fi
fi
mkdir -p .pgdata
if ! redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --logfile "$root/.pgdata/redis-test.log" --dir "$root/.pgdata"
  for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
REDIS_URL="redis://127.0.0.1:$redis_port/0" go test -count=1 -p 1 ./app/... ./models/...

# CI also builds the workshop tags (in this clone; main is untouched) and
# checks each in a temporary clone: it builds, passes its own tests, and
# serves what main serves at its stage.
if [ -n "${CI:-}" ]; then
  echo "== workshop tags"
  scripts/workshop-tags.sh --verify
fi
