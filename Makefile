# Two commands matter: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DB ?= sqlite:///./coupons.db
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck bench bench-quick bench-events soak clean os-deps test-deps browser screenshots

# Debian images sometimes lack venv/ensurepip; install them only when missing.
os-deps:
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
	  echo "installing python3-venv (needs root)"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv python3-pip; }

# The multi-host tests start their own PgBouncer in front of a throwaway PostgreSQL cluster
# (tests/multihost); install Debian's pgbouncer only when missing.
test-deps:
	@command -v pgbouncer >/dev/null 2>&1 || test -x /usr/sbin/pgbouncer || { \
	  echo "installing pgbouncer (needs root)"; \
	  apt-get update -qq && apt-get install -y -qq pgbouncer; }

# The console's browser tests drive Debian's Chromium (Playwright cannot download its own).
browser:
	@test -x /usr/bin/chromium || { \
	  echo "installing chromium for the browser tests (needs root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

$(BIN)/python: | os-deps
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/coupons serve --demo --db $(DB) --host $(HOST) --port $(PORT)

test: $(STAMP) test-deps browser
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src tests
	$(BIN)/python -m pytest -n auto --cov=coupons --cov-report=term:skip-covered --cov-fail-under=90 --durations=15 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src tests
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy src tests

# Refresh the README's console screenshots (docs/screenshots) from the browser tests.
screenshots: $(STAMP) browser
	COUPONS_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q -n 0 tests/browser -k "sqlite or not postgresql"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage coupons.db*

# Revoke benchmark (docs/benchmarks.md): HTTP service vs raw SQL and vs the physical limit
# (pgbench on PostgreSQL, stdlib sqlite3 on SQLite). Not part of `make test`.
BENCH_STAMP := $(VENV)/.bench-installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
BENCH_ARGS ?=

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	rm -f $(VENV)/.bench-installed-*
	touch $(BENCH_STAMP)

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench.run --scales 10k,1m --duration 4 $(BENCH_ARGS)

# The p50 target across scales is judged by bench.scale: both scales served at once, rounds
# alternating, so drift on a shared machine hits both alike.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run --scales 10k,1m,10m --duration 8 $(BENCH_ARGS)
	$(BIN)/python -m bench.scale --small 10k --large 10m --duration 16 --rounds 8

# codes50 with webhook delivery on against off (docs/events.md, "Cost").
bench-events: $(BENCH_STAMP)
	$(BIN)/python -m bench.events --scale 1m --duration 12 --rounds 2 $(BENCH_ARGS)

# Sustained mixed load against `coupons serve --workers 2`; not part of `make test`.
# e.g. make soak SOAK_ARGS="--minutes 3 --rate 10"
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)
