"""`python -m tiering.sql_lint [--fix] [PATH ...]`: sqlfluff over the dbt project's models and tests.

sqlfluff's dbt templater compiles every model like `dbt compile` does, with the project's macros.
The models read the validated rules file as the dbt var `rules` (a mapping), which a `.sqlfluff`
file cannot hold, so the vars of a parse-only run (tiering.dbt_runner.dbt_vars: the default rules
file, a fixed month) are passed here. It compiles against a scratch DuckDB file, never the warehouse.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import date
from pathlib import Path

from tiering.settings import DBT_PROJECT_DIR, DEFAULT_RULES

# (macros are loaded by the dbt templater when it compiles a model; it does not lint them alone)
DEFAULT_PATHS = ("models", "tests")


def lint(paths: list[str], fix: bool = False) -> int:
    """Lint (or fix) `paths` (relative to the dbt project); returns the number of violations left."""
    from sqlfluff.core import FluffConfig, Linter
    from sqlfluff.core.config import load_config_up_to_path

    from tiering.dbt_runner import dbt_vars
    from tiering.rules import load_rules
    from tiering.runspec import RunSpec

    scratch = Path(tempfile.mkdtemp(prefix="tiering-sqllint-"))
    os.environ["TIERING_WAREHOUSE"] = str(scratch / "lint.duckdb")
    os.environ.setdefault("DBT_TARGET_PATH", str(scratch / "target"))
    os.environ.setdefault("DBT_LOG_PATH", str(scratch / "logs"))
    spec = RunSpec(month=date(2000, 1, 1), run_id="lint", source_dir=scratch, warehouse=scratch / "lint.duckdb")
    configs = load_config_up_to_path(str(DBT_PROJECT_DIR / ".sqlfluff"))
    configs.setdefault("templater", {}).setdefault("dbt", {})["context"] = dbt_vars(spec, load_rules(DEFAULT_RULES))
    previous = Path.cwd()
    os.chdir(DBT_PROJECT_DIR)   # the .sqlfluff's project_dir and the paths are relative to it
    try:
        result = Linter(config=FluffConfig(configs=configs)).lint_paths(tuple(paths), fix=fix, apply_fixes=fix)
    finally:
        os.chdir(previous)
    # (with apply_fixes, lint_paths writes the fixed files itself)
    left = 0
    for record in result.as_records():
        for violation in record["violations"]:
            print(f"dbt_project/{record['filepath']}:{violation['start_line_no']}:{violation['start_line_pos']}: "
                  f"{violation['code']} {violation['description']}")
            left += 1
    return left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tiering.sql_lint", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=list(DEFAULT_PATHS), help="relative to dbt_project/")
    parser.add_argument("--fix", action="store_true", help="apply sqlfluff's fixes, then report what is left")
    args = parser.parse_args(argv)
    left = lint(args.paths, fix=args.fix)
    print(f"sqlfluff: {left} violation(s)" if left else "sqlfluff: clean")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
