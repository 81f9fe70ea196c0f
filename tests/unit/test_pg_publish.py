"""publish_postgres never publishes a provisional month (BI in PostgreSQL keeps final months only)."""
from __future__ import annotations

from datetime import date
from pathlib import Path

from tiering import pg_publish
from tiering.runspec import RunSpec


def test_a_provisional_month_is_skipped_with_the_reason(monkeypatch, caplog, tmp_path):
    def no_publish(*args, **kwargs):
        raise AssertionError("a provisional month must not reach PostgreSQL")

    monkeypatch.setattr(pg_publish, "publish", no_publish)
    spec = RunSpec(month=date(2026, 12, 1), run_id="r", source_dir=Path("."), warehouse=tmp_path / "w.duckdb",
                   provisional=True)
    result = pg_publish.publish_month(spec)
    assert result == {"skipped": "2026-12 has not ended (provisional run): BI in PostgreSQL keeps final months only; "
                                 "run the month again once it has ended to publish it"}
    assert f"publish_postgres skipped: {result['skipped']}" in caplog.text
