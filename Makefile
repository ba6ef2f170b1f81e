# The two commands: `make run` (everything up, on embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL are set)
# and `make test` (the whole suite). Both create the virtualenv and install what they need.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

.PHONY: run test bench bench-ws bench-review bench-ab chaos lint format install services-stop evaluate

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or run: make PYTHON=python3 ...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.txt requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m mmweb.runner

# Embedded servers that `make test` itself had to start are stopped afterwards; ones already running (say, for a
# `make run` in another terminal) are left alone. pytest's own exit code is kept (5, "no tests", fails too).
test: $(STAMP)
	@was=$$($(PY) -m mmweb.embedded running); \
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ "$$was" = "no" ]; then $(PY) -m mmweb.embedded stop >/dev/null; fi; \
	exit $$rc

bench: $(STAMP)
	$(PY) -m benchmarks
	$(PY) -m benchmarks.ws_fanout

# make bench-ws [WS_CLIENTS=100 WS_SECONDS=60]: the live page's WebSocket fan-out alone (its own table)
bench-ws: $(STAMP)
	$(PY) -m benchmarks.ws_fanout

# make bench-review: the review page and its chart data over a full day of records (docs/review.md)
bench-review: $(STAMP)
	$(PY) -m benchmarks review

# make bench-ab REF=<commit>: engine, pipeline and backtest speed against REF, alternating old and new in one run
bench-ab: $(STAMP)
	$(PY) -m benchmarks.ab $(REF) --rounds $(or $(ROUNDS),2)

# make evaluate [EVAL_ARGS="--recording usdm-btcusdt --params '{...}'"]: walk-forward table, ours vs the baselines
evaluate: $(STAMP)
	$(PY) manage.py evaluate $(EVAL_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

services-stop: $(STAMP)
	$(PY) -m mmweb.embedded stop

chaos: $(STAMP)
	$(PY) -m benchmarks.chaos $(CHAOS_TRIALS)
