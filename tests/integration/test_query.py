"""`tiering query`: read-only in fact, on the published copy and on the live warehouse (--live).

Each refusal goes through the command line: exit 1, a one-line reason, and neither the live
warehouse nor the published copy changed. Works on a copy of the session's demo warehouse (a
query that got through would overwrite it)."""
from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from tiering.cli import main
from tiering.publish import published_path

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def warehouse(demo_warehouse, tmp_path) -> Path:
    """A copy of the demo warehouse and of its published copy."""
    copy = tmp_path / "wh" / "tiering.duckdb"
    copy.parent.mkdir()
    shutil.copy(demo_warehouse, copy)
    published_path(copy).parent.mkdir()
    shutil.copy(published_path(demo_warehouse), published_path(copy))
    return copy


def _fingerprint(*paths: Path) -> list[tuple[str, int, int]]:
    return [(hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]


def _query(capsys, warehouse: Path, sql: str, live: bool = False) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["query", sql, "--warehouse", str(warehouse), *(["--live"] if live else [])])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def secret_file(tmp_path) -> Path:
    path = tmp_path / "secret.csv"
    path.write_text("customer_id,email\nC9,someone.private@example.com\n")
    return path


@pytest.mark.parametrize("live", [False, True], ids=["published", "live"])
@pytest.mark.parametrize("attack", [
    "attach_live",        # read the live warehouse (its landed rows: landing views, staging) from the published copy
    "attach_live_only",
    "copy_over_warehouse",
    "copy_to_file",
    "read_csv",
    "read_csv_auto_scan",
    "read_parquet",
    "glob",
    "set_external_access",
    "reset_lock",
    "pragma_setting",
    "install_extension",
    "export_database",
])
def test_query_refuses_anything_beyond_the_database(capsys, warehouse, secret_file, tmp_path, live, attack):
    target = published_path(warehouse)
    before = _fingerprint(warehouse, target)
    out_file = tmp_path / "out.csv"
    sql = {
        "attach_live": f"attach '{warehouse}' as l (read_only); select * from l.staging.stg_landing__customers",
        "attach_live_only": f"attach '{warehouse}' as l (read_only)",
        "copy_over_warehouse": f"copy (select 'oops') to '{warehouse}' (format csv, header false)",
        "copy_to_file": f"copy (select * from marts.tier_policy) to '{out_file}'",
        "read_csv": f"select * from read_csv('{secret_file}')",
        "read_csv_auto_scan": f"select * from '{secret_file}'",
        "read_parquet": f"select * from read_parquet('{tmp_path}/*.parquet')",
        "glob": f"select * from glob('{tmp_path}/*')",
        "set_external_access": f"set enable_external_access = true; select * from read_csv('{secret_file}')",
        "reset_lock": "set lock_configuration = false",
        "pragma_setting": "pragma threads = 1",
        "install_extension": "install httpfs",
        "export_database": f"export database '{tmp_path / 'dump'}'",
    }[attack]
    code, out, err = _query(capsys, warehouse, sql, live)
    assert code == 1
    assert err.startswith("tiering: error: query refused on ") and err.count("\n") == 1, err
    assert "someone.private@example.com" not in out + err and "@" not in out
    assert _fingerprint(warehouse, target) == before
    assert not out_file.exists() and not (tmp_path / "dump").exists()


@pytest.mark.parametrize("live", [False, True], ids=["published", "live"])
def test_query_session_is_locked_down(capsys, warehouse, live):
    code, out, _ = _query(capsys, warehouse, """
        select current_setting('enable_external_access') as ext, current_setting('lock_configuration') as locked,
               current_setting('autoinstall_known_extensions') as autoinstall,
               current_setting('autoload_known_extensions') as autoload, current_setting('TimeZone') as tz""", live)
    assert code == 0
    last_row = [line for line in out.splitlines() if line.startswith("│")][-1]
    values = [cell.strip() for cell in last_row.strip("│").split("│")]
    assert values == ["false", "true", "false", "false", "UTC"], out


def _readme_and_makefile_queries() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    queries = re.findall(r'tiering query +"([^"]+)"', readme)
    queries += re.findall(r'con\.sql\("""(.*?)"""\)', readme, re.S)
    makefile = (ROOT / "Makefile").read_text()
    queries += re.findall(r"^TRY_SQL := (.+)$", makefile, re.M)
    assert len(queries) >= 4, queries
    return queries


def test_readme_and_make_run_queries_still_work(capsys, demo_warehouse):
    for sql in _readme_and_makefile_queries():
        for live in (False, True):
            code, out, err = _query(capsys, demo_warehouse, sql, live)
            assert (code, err) == (0, ""), sql
            assert "final_tier" in out or "customer_id" in out


def test_marts_query_returns_the_published_rows(capsys, demo_warehouse):
    code, out, err = _query(capsys, demo_warehouse, """
        select count(*) as months from (select distinct month from marts.customer_tier_monthly)""")
    assert (code, err) == (0, "")
    assert re.search(r"│\s+4\s+│", out), out
    # the live warehouse keeps more than the marts: the typed change log is readable there (--live), never the
    # files around it (the landing views read the change log's Parquet files: refused)
    code, out, _ = _query(capsys, demo_warehouse, "select count(*) > 0 as has_rows from staging.stg_landing__orders",
                          live=True)
    assert code == 0 and "true" in out
    code, out, err = _query(capsys, demo_warehouse, "select count(*) from landing.orders", live=True)
    assert code == 1 and err.startswith("tiering: error: query refused on ")
