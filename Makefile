# The only entry points: make run | test | bench | docs | clean (and make airflow: a local scheduler and UI)
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

.PHONY: setup run test test-fast demo-data lint lint-fix docs clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

# one virtualenv from the lock file; bytecode compiled once so that every process starts fast.
# The optional `postgres` group (dbt-postgres) is installed too, so the PostgreSQL tests run in CI.
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --group postgres --python $(PYTHON) --compile-bytecode --quiet
	@touch $@

setup: $(VENV)/.synced

demo-data: setup
	$(BIN)/tiering demo-data --out $(DEMO_SOURCE) --customers $(DEMO_CUSTOMERS) --months $(DEMO_MONTHS) --seed 42

# PostgreSQL publishing (docs/publishing.md): on when a server answers there, else skipped with a message
TIERING_BI_DSN ?= postgresql://tiering_writer@127.0.0.1:5432/tiering
TIERING_BI_ADMIN_DSN ?= postgresql://postgres@127.0.0.1:5432/postgres

# a progress bar (plain lines off a terminal); dbt/GE/Airflow output in $(dir $(WAREHOUSE))logs/tiering-*.log;
# run again, the months unchanged since their last success are skipped (FORCE=--force reruns them)
FORCE ?=
run: demo-data
	TIERING_BI_DSN=$(TIERING_BI_DSN) TIERING_BI_ADMIN_DSN=$(TIERING_BI_ADMIN_DSN) \
	$(BIN)/tiering backfill --source $(DEMO_SOURCE) --start 2024-01 --end 2025-03 --warehouse $(WAREHOUSE) $(FORCE)
	@echo
	@echo "Results: $(WAREHOUSE) (the live warehouse) and warehouse/published/tiering_bi.duckdb (the read-only copy BI reads)"
	@echo "A query to try:"
	@echo "  $(BIN)/tiering query \"$(TRY_SQL)\""
	@$(BIN)/tiering query "$(TRY_SQL)"
	@echo 'Why is a customer in its tier?  $(BIN)/tiering explain --customer C000001 --month 2025-03'
	@echo 'Each month: last run, last success, published?  $(BIN)/tiering status --warehouse $(WAREHOUSE)'

# The scheduler, API server and UI on this project (AIRFLOW_HOME=.airflow, dags/, no examples,
# .venv/bin on PATH); prints the URL and where the login is; Ctrl-C stops it. While it runs it holds
# the warehouse: `tiering run` on it is refused. AIRFLOW_PORT=8080, TIERING_SOURCE_DIR for scheduled runs.
AIRFLOW_PORT ?= 8080
.PHONY: airflow
airflow: setup
	AIRFLOW_HOME=$(CURDIR)/.airflow $(BIN)/python -m tiering.scheduler --port $(AIRFLOW_PORT) --warehouse $(WAREHOUSE)

# one pytest-xdist worker per core (tests/conftest.py keeps a module's tests on one worker)
TEST_WORKERS ?= 2
test: setup browser lint
	$(BIN)/python -m pytest -p no:cacheprovider -n $(TEST_WORKERS)

# ruff (Python) and sqlfluff (the dbt SQL, compiled with the project's macros and the rules file's vars);
# `make lint-fix` applies their safe fixes. The same hooks run from .pre-commit-config.yaml.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/python -m tiering.sql_lint

lint-fix: setup
	$(BIN)/ruff check --fix .
	$(BIN)/python -m tiering.sql_lint --fix

test-fast: setup
	$(BIN)/python -m pytest -p no:cacheprovider -n $(TEST_WORKERS) -m "not e2e"

# The pipeline on other targets, from the landed change log to the marts, and the DAG under CeleryExecutor
# (docs/portability.md, docs/executors.md). test-postgres: needs PostgreSQL (TIERING_PG_*, default
# 127.0.0.1:5432), else skipped; besides what `make test` runs on it, a hand-made source with a
# restatement (TIERING_TEST_POSTGRES_ALL=1, about 2 min).
# test-spark: installs the optional `spark` group into $(SPARK_VENV) (the main .venv stays as it is).
# test-celery: needs Redis 127.0.0.1:6379 and PostgreSQL; starts a Celery worker and a scheduler.
SPARK_VENV := .venv-spark
.PHONY: test-postgres test-spark test-celery test-airflow
test-postgres: setup
	TIERING_TEST_POSTGRES_ALL=1 $(BIN)/python -m pytest -p no:cacheprovider -m postgres

$(SPARK_VENV)/.synced: pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(SPARK_VENV) $(UV) sync --locked --group spark --python $(PYTHON) --quiet
	@touch $@

test-spark: setup $(SPARK_VENV)/.synced
	TIERING_TEST_SPARK=1 $(BIN)/python -m pytest -p no:cacheprovider -m spark tests/portability

test-celery: setup
	TIERING_TEST_CELERY=1 $(BIN)/python -m pytest -p no:cacheprovider -m celery tests/executors

# a live scheduler (airflow standalone via tiering.scheduler, as `make airflow`) on a free port and a
# temporary AIRFLOW_HOME; one month triggered through the REST API (a few minutes)
test-airflow: setup
	TIERING_TEST_AIRFLOW=1 $(BIN)/python -m pytest -p no:cacheprovider -m airflow_live tests/integration/test_airflow_scheduler.py

# benchmark: make bench SCALE=XS|S|M|L [BENCH_ARGS="--memory-limit 1GB"]
# data and warehouses under /tmp/tiering-bench; results in bench/results/<scale>.json and bench/RESULTS.md
# The default runs steady,sql,pandas,parse,kill (S: under 3 min); BENCH_ARGS="--months-backfill 12" adds
# the 12-month backfill (~10 min at S), BENCH_ARGS="--only month,..." picks scenarios (bench/README.md).
SCALE ?= S
BENCH_ARGS ?=
.PHONY: bench
bench: setup
	$(BIN)/python bench/run.py --scale $(SCALE) $(BENCH_ARGS)

.PHONY: browser report-screenshot
REPORT_MONTH ?= 2025-03

# headless Chromium for the report test and screenshot (Debian chromium + chromium-driver), installed
# only when missing; if it cannot be installed, make goes on and the browser test is skipped
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif ! command -v apt-get >/dev/null; then echo "warning: no apt-get: install chromium and chromedriver to run the browser test"; \
	else SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  echo "installing chromium and chromium-driver (apt-get) for the report test"; \
	  { $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
	  || echo "warning: could not install chromium/chromium-driver; the browser test will be skipped"; fi

# docs/report.png: the HTML report of the demo's last month (make run first), rendered in headless Chromium
report-screenshot: setup browser
	@test -f $(WAREHOUSE) || { echo "no warehouse at $(WAREHOUSE): run 'make run' first"; exit 1; }
	$(BIN)/tiering report --month $(REPORT_MONTH) --out reports/report-$(REPORT_MONTH).html --warehouse $(WAREHOUSE)
	$(BIN)/python -m tiering.report screenshot reports/report-$(REPORT_MONTH).html docs/report.png --width 1200
	@if command -v optipng >/dev/null; then optipng -quiet -o2 docs/report.png; fi
	@ls -l docs/report.png

docs: setup
	$(BIN)/tiering dbt docs generate

clean:
	rm -rf warehouse data .airflow dbt_project/target dbt_project/logs dbt_project/target-postgres dbt_project/target-spark
