"""tiering.files: atomic replacement of a file or a folder, and file digests."""
from __future__ import annotations

import hashlib
import stat

import pytest

from tiering.files import atomic_write, replace_atomically, sha256_file


def test_atomic_write_replaces_the_file_and_leaves_no_staging_file(tmp_path):
    out = tmp_path / "sub" / "report.html"
    assert atomic_write(out, "<p>é</p>") == len("<p>é</p>".encode())
    assert atomic_write(out, "second\r\n") == 8
    assert out.read_bytes() == b"second\r\n"            # no newline translation
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]


def test_atomic_write_sets_the_mode_before_the_file_is_visible(tmp_path):
    out = tmp_path / "actions.csv"
    atomic_write(out, b"a,b\n", mode=0o600)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_a_failure_keeps_the_previous_file_and_removes_the_staging_path(tmp_path):
    out = tmp_path / "data.txt"
    out.write_text("old")
    with pytest.raises(RuntimeError), replace_atomically(out) as staging:
        staging.write_text("half")
        raise RuntimeError("boom")
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.txt"]


def test_a_folder_replaces_an_earlier_folder(tmp_path):
    target = tmp_path / "2024-03"
    for content in ("first", "second"):
        with replace_atomically(target) as staging:
            staging.mkdir()
            (staging / "manifest.json").write_text(content)
            (staging / "snapshot.duckdb").write_text("x")
            (staging / "snapshot.duckdb").chmod(0o444)
    assert (target / "manifest.json").read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["2024-03"]     # the old folder is gone


def test_sha256_file_equals_hashlib_on_the_bytes(tmp_path):
    path = tmp_path / "orders.csv"
    data = b"order_id,amount\n" + b"O1,10.00\n" * 300_000    # several chunks
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_a_named_staging_path_left_by_a_killed_attempt_is_removed_first(tmp_path):
    """A landing names its staging folder after its run: a retry in another process removes what a
    killed attempt left there before building it again."""
    target, staging = tmp_path / "run-1", tmp_path / "run-1.partial"
    (staging / "half").mkdir(parents=True)
    (staging / "half" / "orders.parquet").write_bytes(b"truncated")
    with replace_atomically(target, staging=staging) as path:
        assert path == staging and not path.exists()
        path.mkdir()
        (path / "orders.parquet").write_bytes(b"complete")
    assert [p.name for p in target.iterdir()] == ["orders.parquet"] and not staging.exists()
