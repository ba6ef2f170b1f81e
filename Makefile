# The two commands: `make run` (everything up, on embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL are set)
# and `make test` (the whole suite). Both create the virtualenv and install what they need.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
# The compiled hot path (docs/compiled-core.md): one extension per .pyx, built in place beside it.
EXT_SUFFIX := $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))" 2>/dev/null)
PYX    := $(shell find apps -name '*.pyx' 2>/dev/null)
PXD    := $(shell find apps -name '*.pxd' 2>/dev/null)
EXTS   := $(PYX:.pyx=$(EXT_SUFFIX))

.PHONY: build run test bench bench-ws bench-review bench-ab bench-day chaos lint format install services-stop evaluate

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or run: make PYTHON=python3 ...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.txt requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

# `pip install -e .` compiles every extension in place (Cython and setuptools come into pip's isolated build
# environment, never into the venv). The extensions are rebuilt whenever any .pyx/.pxd or pyproject.toml is newer
# than one of them, or the venv was rebuilt, so an edited .pyx never runs stale under run/test/bench. touch: setuptools
# skips a compile it thinks is current, and make must then see the outputs as new.
$(EXTS) &: $(PYX) $(PXD) pyproject.toml $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	@touch $(EXTS)

build: $(EXTS)

install: $(STAMP) $(EXTS)

run: $(STAMP) $(EXTS)
	$(PY) -m mmweb.runner

# Embedded servers that `make test` itself had to start are stopped afterwards; ones already running (say, for a
# `make run` in another terminal) are left alone. pytest's own exit code is kept (5, "no tests", fails too).
test: $(STAMP) $(EXTS)
	@was=$$($(PY) -m mmweb.embedded running); \
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ "$$was" = "no" ]; then $(PY) -m mmweb.embedded stop >/dev/null; fi; \
	exit $$rc

bench: $(STAMP) $(EXTS)
	$(PY) -m benchmarks
	$(PY) -m benchmarks.ws_fanout

# make bench-ws [WS_CLIENTS=100 WS_SECONDS=60]: the live page's WebSocket fan-out alone (its own table)
bench-ws: $(STAMP) $(EXTS)
	$(PY) -m benchmarks.ws_fanout

# make bench-review: the review page and its chart data over a full day of records (docs/review.md)
bench-review: $(STAMP) $(EXTS)
	$(PY) -m benchmarks review

# make bench-day [HOURS=24] [KEEP_DECISIONS=1]: the USD-M recording repeated into a day, streamed through the backtest;
# rows/s, peak RSS and what grows (docs/compiled-core.md). make bench runs the same at 1 h.
bench-day: $(STAMP) $(EXTS)
	$(PY) -m benchmarks.bench_day --hours $(or $(HOURS),24) $(if $(KEEP_DECISIONS),--keep-decisions)

# make bench-ab REF=<commit>: engine, pipeline and backtest speed against REF, alternating old and new in one run
bench-ab: $(STAMP) $(EXTS)
	$(PY) -m benchmarks.ab $(REF) --rounds $(or $(ROUNDS),2)

# make bench-anchor [ROUNDS=2]: our backtest beside hftbacktest 2.4.4 on the same recording, alternating
# (docs/bench-anchor.md). hftbacktest (numba, llvmlite) goes into its own virtualenv, never into $(VENV).
ANCHOR_VENV  := var/anchor-venv
ANCHOR_PY    := $(ANCHOR_VENV)/bin/python
ANCHOR_STAMP := $(ANCHOR_VENV)/.installed-hftbacktest-2.4.4
.PHONY: bench-anchor

$(ANCHOR_STAMP):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or run: make PYTHON=python3 ...)"; exit 1; }
	@mkdir -p $(dir $(ANCHOR_VENV))
	$(PYTHON) -m venv $(ANCHOR_VENV)
	$(ANCHOR_PY) -m pip install --disable-pip-version-check -q hftbacktest==2.4.4
	@rm -f $(ANCHOR_VENV)/.installed-*; touch $(ANCHOR_STAMP)

bench-anchor: $(STAMP) $(EXTS) $(ANCHOR_STAMP)
	$(PY) -m benchmarks.anchor --anchor-python $(ANCHOR_PY) --rounds $(or $(ROUNDS),2)

# make evaluate [EVAL_ARGS="--recording usdm-btcusdt --params '{...}'"]: walk-forward table, ours vs the baselines
evaluate: $(STAMP) $(EXTS)
	$(PY) manage.py evaluate $(EVAL_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

services-stop: $(STAMP)
	$(PY) -m mmweb.embedded stop

chaos: $(STAMP) $(EXTS)
	$(PY) -m benchmarks.chaos $(CHAOS_TRIALS)
