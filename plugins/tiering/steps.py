"""The order of a monthly run's steps (after `start_run`): one DAG task each, one function of
tiering.pipeline each. Kept in a module of its own (no heavy imports) so that the DAG file,
the tests and the docs share one list."""
from __future__ import annotations

STEPS = (
    "extract_and_land",   # as-of extract of the source, landed immutably (landing/<run_id>/)
    "gate_landed",        # GE gate (a): the landed batch
    "load_raw",           # idempotent load into raw; bad rows to quarantine with the reason
    "transform_staging",  # dbt build --select staging
    "gate_staging",       # GE gate (b): staging
    "score_potential",    # expected future value per customer (BG/NBD + Gamma-Gamma), optional
    "transform_marts",    # dbt build of intermediate, marts and audit models (with their tests)
    "gate_marts",         # GE gate (c): marts, before anything is published
    "publish",            # read-only DuckDB copy for BI (atomic replace)
    "publish_postgres",   # the month's marts into PostgreSQL schemas bi / audit (skipped if none)
    "finish_run",         # run marked successful, input checksum, restatement diff
)
