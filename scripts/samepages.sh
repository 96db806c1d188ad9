#!/usr/bin/env bash
# Checking that a refactor keeps the pages (docs/maintaining-stages.md): build
# flickrkillr at BASE and at HEAD (default: the working tree), serve every
# stage both have on one small database, and compare the pages an anonymous
# visitor and two logged-in users get, byte for byte. Exit 1 on a difference.
#
#   scripts/samepages.sh BASE [HEAD]        e.g. scripts/samepages.sh main
#   STAGES=0,3 scripts/samepages.sh main    only these stages
#
# The database is a throw-away one on the project's test cluster
# (scripts/pg.sh start test), or on TEST_DATABASE_URL's server when set.
set -euo pipefail
cd "$(dirname "$0")/.."
base="${1:?usage: scripts/samepages.sh BASE [HEAD]}"
head="${2:-}"
: "${TEST_DATABASE_URL:=$(scripts/pg.sh start test)}"
export TEST_DATABASE_URL PATH="$PATH:/usr/sbin"
exec go run ./scripts/samepages --base "$base" --head "$head" --stages "${STAGES:-}"
