# The two commands of the README: `make demo` (the platform on local defaults) and `make test`.
SHELL := /bin/bash
VENV := .venv
# The dbt manifest the definitions load (they never run dbt themselves): built here, and rebuilt only when
# a file of the dbt project changes.
DBT_MANIFEST := dbt/target/manifest.json
DBT_SOURCES := $(shell find dbt \( -path dbt/target -o -path dbt/logs -o -path dbt/dbt_packages \) -prune \
  -o -type f \( -name '*.sql' -o -name '*.yml' -o -name '*.yaml' -o -name '*.csv' \) -print)

.PHONY: install dbt-manifest demo test lint snapshot bench soak backfill screenshots stop clean

install: $(VENV)/.installed $(VENV)/.compiled $(DBT_MANIFEST)

$(VENV)/.installed: requirements.lock
	@command -v uv >/dev/null || python3 -m pip install --quiet uv
	@[ -x $(VENV)/bin/python ] || uv venv --quiet --python python3.11 $(VENV)
	uv pip sync --quiet --python $(VENV)/bin/python requirements.lock
	@touch $@

# Byte-compile every installed module once: uv installs without .pyc files, and where PYTHONDONTWRITEBYTECODE
# is set no process ever writes them, so every run worker compiled Dagster, dbt and pandas from source again
# (about half of a run's start-up CPU; bench/bench_run_startup.py).
$(VENV)/.compiled: $(VENV)/.installed
	$(VENV)/bin/python -m compileall -q -j 2 $(VENV)/lib/python3.11/site-packages >/dev/null
	@touch $@

dbt-manifest: $(DBT_MANIFEST)

$(DBT_MANIFEST): $(VENV)/.installed $(DBT_SOURCES)
	cd dbt && ../$(VENV)/bin/dbt --quiet parse --project-dir . --profiles-dir . --target-path target
	@touch $@

demo: install
	platform/demo.sh

test: install
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/pyright

# Record the asset graph (keys, groups, partitions, checks, deps, code versions, automation, freshness) in
# tests/snapshots/asset_graph.json after an intended change; tests/test_asset_graph_snapshot.py compares with it.
snapshot: $(DBT_MANIFEST)
	$(VENV)/bin/python -m tests.test_asset_graph_snapshot

bench: install
	$(VENV)/bin/python -m bench

# The overload soak (not part of CI: it needs the machine for 25-30 minutes): the demo's workload in a
# sandbox under CPU hogs for SOAK_MINUTES, then exactly-once and drain assertions (bench/soak.py).
soak: install
	$(VENV)/bin/python -m bench.soak --minutes $(or $(SOAK_MINUTES),10)

# Rebuild silver, quarantine and gold for a range of event dates from bronze, in one run:
#   make backfill FROM=2026-11-01 TO=2026-11-07
backfill: install
	source platform/env.sh && .venv/bin/dagster asset materialize -f platform/definitions.py \
	  --select silver_clickstream_events,quarantine_clickstream_events,gold_clickstream_daily_metrics,gold_clickstream_product_funnel \
	  --partition-range "$(FROM)...$(TO)"

# Screenshots of the UI for the README into docs/screenshots/ (not part of CI; needs chromium and postgresql):
# the platform in a sandbox with a little data and range backfills (docs/screenshots.py).
screenshots: install
	$(VENV)/bin/python -m docs.screenshots

# Everything the demo started, by the session ids, pid files and data directories it recorded.
stop:
	platform/procs.sh stop
	platform/kafka.sh stop
	platform/postgres.sh stop

clean: stop
	rm -rf data .local
