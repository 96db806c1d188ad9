# FlickrKillr's command palette. Set-up is two commands: `make run` and `make test`.
.PHONY: run test fuzz lint build seed migrate serve loadtest loadtest-sweep loadtest-report workshop-tags workshop-verify db-start db-stop clean help

BIN := bin/flickrkillr
DB_URL = $${DATABASE_URL:-$$(scripts/pg.sh start dev)}
# Stage 9 makes streaming standbys of the database: the project-local
# cluster turns replication on first (once, a restart; docs/stages/09-replicas.md).
DB_URL_REPLICATING = $${DATABASE_URL:-$$(scripts/pg.sh replication dev)}
# Stage 10's federation: the ring is a second database of the dev cluster
# (flickrkillr_ring), so that `make seed`'s data in flickrkillr stays for the
# other stages; the SHARDS shards (default 2) are clusters of their own.
RING_URL = $${DATABASE_URL:-$$(scripts/pg.sh ring)}
RING_URL_REPLICATING = $${DATABASE_URL:-$$(scripts/pg.sh replication dev >/dev/null && scripts/pg.sh ring)}
SHARD_URLS_LOCAL = $${SHARD_URLS:-$$(scripts/pg.sh shards $(or $(SHARDS),2))}

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

run: ## serve the app (local PostgreSQL, embedded miniredis, small demo seed)
	@scripts/run.sh

test: ## gofmt, go vet and the whole test suite against a real PostgreSQL (and Redis)
	@scripts/test.sh

# Fuzz budgets are counts (FUZZTIME=Nx): Go 1.26's time budgets can fail at the deadline (golang/go#75804).
fuzz: ## fuzz the form and upload validators (FUZZTIME each, default 300000x: about a minute each)
	@for t in FuzzSignupForm FuzzLoginForm FuzzUploadForm FuzzCommentForm; do go test -run '^$$' -fuzz "^$$t\$$" -fuzztime $${FUZZTIME:-300000x} ./app/ || exit 1; done
	@go test -run '^$$' -fuzz '^FuzzReadImageHeader$$' -fuzztime $${FUZZTIME:-300000x} ./models/

lint: ## gofmt and go vet only
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	@go vet ./...

build: ## build bin/flickrkillr
	@go build -o $(BIN) .

migrate: build ## bring the schema to STAGE (default: the highest stage; INDEXES=1: with stage 4's indexes)
	@DATABASE_URL=$(DB_URL) $(BIN) migrate $${STAGE:+--stage $$STAGE}

seed: build ## the full demo data set: 100k users, 10-20 photos each (replaces the data; SHARDS=N: stage 10's, over N shards)
ifeq ($(SHARDS),)
	@DATABASE_URL=$(DB_URL) $(BIN) migrate $${STAGE:+--stage $$STAGE}
	@DATABASE_URL=$(DB_URL) $(BIN) seed --reset $(SEED_FLAGS)
else
	@ring=$(RING_URL) && shards=$(SHARD_URLS_LOCAL) && \
	  DATABASE_URL="$$ring" SHARD_URLS="$$shards" $(BIN) migrate $${STAGE:+--stage $$STAGE} && \
	  DATABASE_URL="$$ring" SHARD_URLS="$$shards" $(BIN) seed --reset --shards $(SHARDS) $(SEED_FLAGS) && \
	  printf '\nStage 10 data (`make serve STAGE=10 SHARDS=%s` sets these):\n  export DATABASE_URL=%s\n  export SHARD_URLS=%s\n' "$(SHARDS)" "$$ring" "$$shards"
endif

serve: build ## serve STAGE against the existing data (no seeding; INDEXES=1: on the indexed schema; STAGE=10: the ring and SHARDS shards)
	@if [ "$${STAGE:-0}" -ge 10 ]; then DATABASE_URL=$(RING_URL_REPLICATING) SHARD_URLS=$(SHARD_URLS_LOCAL) $(BIN) serve --stage $$STAGE; \
	  elif [ "$${STAGE:-0}" -ge 9 ]; then DATABASE_URL=$(DB_URL_REPLICATING) $(BIN) serve --stage $$STAGE; \
	  else DATABASE_URL=$(DB_URL) $(BIN) serve $${STAGE:+--stage $$STAGE}; fi

loadtest: build ## load-test a running server (URL, DURATION, CONCURRENCY, SCENARIO=upload …)
	@$(BIN) loadtest --url $${URL:-http://127.0.0.1:8080} $${DURATION:+--duration $$DURATION} $${CONCURRENCY:+--concurrency $$CONCURRENCY} $${SCENARIO:+--scenario $$SCENARIO}

# The servers of the sweep share a private redis-server when Debian's is installed: an in-process
# miniredis starves into timeouts on a busy machine (docs/loadtest.md).
loadtest-sweep: build ## measure both ladders on the current data into results/ (and the docs' figures)
	@if [ -d .pgdata/shard0 ]; then export RING_URL=$$(scripts/pg.sh ring) SHARD_URLS=$(SHARD_URLS_LOCAL); \
	  else echo "make loadtest-sweep: no shards seeded (make seed SHARDS=2): stage 10 left out"; stages="--stages 0-9"; fi; \
	  DATABASE_URL=$(DB_URL_REPLICATING) $(BIN) loadtest sweep --out results --docs docs/stages,README.md $$stages \
	  $$(command -v redis-server >/dev/null && echo --redis-server) $(SWEEP_FLAGS)

loadtest-report: build ## write results/ and the docs' figures again from results/sweep.json (no measuring)
	@$(BIN) loadtest sweep --from results/sweep.json --out results --docs docs/stages,README.md

workshop-tags: ## create (or replace) the local tags stage-N-name from main, one per stage of stages.manifest
	@scripts/workshop-tags.sh

workshop-verify: ## create the tags, then build, test and compare each one in a temporary clone
	@scripts/workshop-tags.sh --verify

db-start: ## start the project-local PostgreSQL (prints its URL)
	@scripts/pg.sh start dev

db-stop: ## stop the project-local PostgreSQL clusters (stage 10's shards too)
	@scripts/pg.sh stop dev; scripts/pg.sh stop test
	@for c in $$(cd .pgdata 2>/dev/null && ls -d shard? 2>/dev/null); do scripts/pg.sh stop $$c; done

clean: ## remove the binary (keeps .pgdata and data/)
	rm -rf bin
