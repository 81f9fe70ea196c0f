"""`tiering run`/`backfill` refuse impossible and unended months with one line, before Airflow starts."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tiering import cli


@pytest.mark.parametrize("month", ["0000-01", "9999-12", "1899-12"])
def test_impossible_months(month, tmp_path, capsys):
    assert cli.main(["run", "--source", str(tmp_path), "--month", month,
                     "--warehouse", str(tmp_path / "w.duckdb")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"tiering: error: month {month} is out of range: months from 1900-01 up to the current month")
    assert err.count("\n") == 1
    assert not (tmp_path / "w.duckdb").exists()


def test_the_month_under_way_needs_provisional(tmp_path, capsys):
    month = f"{datetime.now(UTC):%Y-%m}"
    for argv in (["run", "--month", month], ["backfill", "--start", "2020-01", "--end", month]):
        assert cli.main([*argv, "--source", str(tmp_path), "--warehouse", str(tmp_path / "w.duckdb")]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"tiering: error: month {month} has not ended yet") and "--provisional" in err
        assert err.count("\n") == 1
    assert not (tmp_path / "w.duckdb").exists()
