"""Paths and defaults, overridable by environment variables."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("TIERING_PROJECT_ROOT", Path(__file__).resolve().parents[2]))
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
DEFAULT_RULES = Path(os.environ.get("TIERING_RULES", PROJECT_ROOT / "config" / "tiering_rules.yml"))
DEFAULT_WAREHOUSE = Path(os.environ.get("TIERING_WAREHOUSE", PROJECT_ROOT / "warehouse" / "tiering.duckdb"))
DAG_ID = "customer_tiering_monthly"


def dbt_target_dir() -> Path:
    """Where dbt writes compiled SQL and run_results.json: $DBT_TARGET_PATH (relative to the dbt
    project, as dbt reads it) or dbt_project/target."""
    return DBT_PROJECT_DIR / os.environ.get("DBT_TARGET_PATH", "target")


def landing_root(warehouse: Path) -> Path:
    """The change log (tiering.landing) lives beside the warehouse file, <warehouse dir>/landing, unless
    $TIERING_LANDING_DIR names another folder."""
    env = os.environ.get("TIERING_LANDING_DIR")
    return Path(env) if env else Path(warehouse).resolve().parent / "landing"
