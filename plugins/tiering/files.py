"""Files written so that a reader never sees half of them, and file digests.

Every output a user or another process reads (the HTML report, the CRM file, a month's export
folder, the published DuckDB copy, a landed batch) is first written beside its final path under
a hidden staging name and then moved into place with one rename, which is atomic on a POSIX file
system: a reader sees the previous version or the new one, never a partial file. A failure
removes the staging path and leaves the previous version as it was.

    atomic_write(path, text_or_bytes)          # one file from memory
    with replace_atomically(path) as staging:   # a file or a folder built step by step
        ...write staging...
    sha256_file(path)                           # hex SHA-256 of a file's bytes
"""
from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def staging_path(target: Path) -> Path:
    """The hidden staging name beside `target` for this process: `.<name>.partial-<pid>`."""
    target = Path(target)
    return target.parent / f".{target.name}.partial-{os.getpid()}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename `staging` to `target`. A file replaces the old file in one rename; a folder cannot
    replace a non-empty folder, so the old one is renamed aside first and removed afterwards."""
    if staging.is_dir() and target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        _remove(old)
        os.replace(target, old)
        os.replace(staging, target)
        _remove(old)
    else:
        os.replace(staging, target)


@contextmanager
def replace_atomically(target: str | Path, staging: str | Path | None = None) -> Iterator[Path]:
    """Yield a staging path beside `target` (nothing exists there yet: create a file or a folder);
    when the block ends without an error, move it into place in one rename (parents created);
    on an error, remove it and leave `target` as it was. `staging`: a name of the caller's instead
    of the per-process one (a landing names it after its run, so that a retry in another process
    removes what a killed attempt left)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(staging) if staging is not None else staging_path(target)
    _remove(staging)   # a leftover of an earlier attempt (same pid, or the caller's own name)
    try:
        yield staging
        _move_into_place(staging, target)
    except BaseException:
        _remove(staging)
        raise


def atomic_write(target: str | Path, content: str | bytes, encoding: str = "utf-8",
                 mode: int | None = None) -> int:
    """Write `content` to `target` atomically (flushed to disk before the rename); text is
    written as is (no newline translation). `mode`: the file's permissions (e.g. 0o600), set
    before it becomes visible; else the umask's default. Returns the number of bytes written."""
    data = content.encode(encoding) if isinstance(content, str) else content
    with replace_atomically(target) as staging, open(staging, "wb") as fh:
        if mode is not None:
            os.fchmod(fh.fileno(), mode)
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return len(data)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of the file's bytes (hashlib.file_digest: read in chunks, GIL released)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
