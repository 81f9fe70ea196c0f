"""tiering.warehouse: the DuckDB resource settings every pipeline connection gets."""
from __future__ import annotations

import pytest

from tiering.warehouse import DEFAULT_MEMORY_LIMIT, connect


def _setting(con, name: str) -> str:
    return con.execute(f"select current_setting('{name}')").fetchone()[0]


@pytest.fixture
def no_resource_env(monkeypatch):
    for name in ("TIERING_DUCKDB_THREADS", "TIERING_DUCKDB_MEMORY_LIMIT", "TIERING_DUCKDB_TEMP_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)


def test_a_connection_gets_the_default_memory_limit_not_duckdbs(no_resource_env, tmp_path):
    """DuckDB's own default is 80% of the machine's memory; the project's is 1GB (as dbt's profile)."""
    assert DEFAULT_MEMORY_LIMIT == "1GB"
    with connect(tmp_path / "w.duckdb") as con:
        # (DuckDB reports 1GB as 953.6 MiB)
        assert _setting(con, "memory_limit") == "953.6 MiB"
        assert _setting(con, "TimeZone") == "UTC"


def test_the_environment_sets_threads_memory_and_temp_directory(no_resource_env, monkeypatch, tmp_path):
    monkeypatch.setenv("TIERING_DUCKDB_THREADS", "1")
    monkeypatch.setenv("TIERING_DUCKDB_MEMORY_LIMIT", "300MB")
    monkeypatch.setenv("TIERING_DUCKDB_TEMP_DIRECTORY", str(tmp_path / "spill"))
    with connect(tmp_path / "w.duckdb") as con:
        assert _setting(con, "threads") == 1
        assert _setting(con, "memory_limit") == "286.1 MiB"
        assert _setting(con, "temp_directory") == str(tmp_path / "spill")


def test_the_dbt_profile_has_the_same_default_memory_limit():
    from tiering.settings import DBT_PROJECT_DIR

    profile = (DBT_PROJECT_DIR / "profiles.yml").read_text()
    assert f"env_var('TIERING_DUCKDB_MEMORY_LIMIT', '{DEFAULT_MEMORY_LIMIT}')" in profile
