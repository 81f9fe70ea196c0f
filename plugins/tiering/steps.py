"""The order of a monthly run's steps (after `start_run`): one DAG task each, one function of
tiering.pipeline each. Kept in a module of its own (no heavy imports) so that the DAG file,
the tests and the docs share one list."""
from __future__ import annotations

STEPS = (
    "extract_and_land",   # the change log brought up to the month (landing/<table>/<month>/v<N>.parquet)
    "gate_landed",        # GE gate (a): what the month reads from the change log
    "transform_staging",  # dbt build: landed rows typed and checked, the month's as-of rows, quarantine
    "gate_staging",       # GE gate (b): staging
    "score_potential",    # expected future value per customer (BG/NBD + Gamma-Gamma), optional
    "transform_marts",    # dbt build of intermediate, marts and audit models (with their tests)
    "gate_marts",         # GE gate (c): marts, before anything is published
    "publish",            # read-only DuckDB copy for BI (atomic replace)
    "publish_postgres",   # the month's marts into PostgreSQL schemas bi / audit (skipped if none)
    "finish_run",         # run marked successful, input checksum, restatement diff
)
