# The only entry points: make run | test | bench | docs | clean
# A fresh machine needs only Python 3.11 and pip: everything else is installed here.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
DEMO_SOURCE ?= data/demo-source
DEMO_CUSTOMERS ?= 2000
DEMO_MONTHS ?= 15
WAREHOUSE ?= warehouse/tiering.duckdb
TRY_SQL := select final_tier, customer_count, round(net_revenue) as net_revenue, round(revenue_share, 3) as revenue_share from marts.tier_summary_monthly where month = date '2025-03-01' order by final_tier

.PHONY: setup run test test-fast demo-data lint docs clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

# one virtualenv from the lock file; bytecode compiled once so that every process starts fast
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --python $(PYTHON) --compile-bytecode --quiet
	@touch $@

setup: $(VENV)/.synced

demo-data: setup
	$(BIN)/tiering demo-data --out $(DEMO_SOURCE) --customers $(DEMO_CUSTOMERS) --months $(DEMO_MONTHS) --seed 42

run: demo-data
	$(BIN)/tiering backfill --source $(DEMO_SOURCE) --start 2024-01 --end 2025-03 --warehouse $(WAREHOUSE)
	@echo
	@echo "Results: $(WAREHOUSE) (the live warehouse) and warehouse/published/tiering_bi.duckdb (the read-only copy BI reads)"
	@echo "A query to try:"
	@echo '  $(BIN)/tiering query "$(TRY_SQL)"'
	@$(BIN)/tiering query "$(TRY_SQL)"
	@echo 'Why is a customer in its tier?  $(BIN)/tiering explain --customer C000001 --month 2025-03'

test: setup
	$(BIN)/python -m pytest -p no:cacheprovider

test-fast: setup
	$(BIN)/python -m pytest -p no:cacheprovider -m "not e2e"

docs: setup
	$(BIN)/tiering dbt docs generate

clean:
	rm -rf warehouse data .airflow dbt_project/target dbt_project/logs
