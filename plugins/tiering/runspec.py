"""What one monthly run is about: month, run id, source, warehouse, rules."""
from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from tiering.errors import TieringError
from tiering.settings import DEFAULT_RULES, DEFAULT_WAREHOUSE, landing_root

MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class MonthError(TieringError, ValueError):
    pass


def parse_month(text: str) -> date:
    """'2024-03' -> date(2024, 3, 1); a clear error otherwise."""
    match = MONTH_RE.match(str(text).strip())
    if not match:
        raise MonthError(f"bad month {text!r}: expected YYYY-MM, e.g. 2024-03")
    return date(int(match.group(1)), int(match.group(2)), 1)


def add_months(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def month_range(start: date, end: date) -> list[date]:
    if end < start:
        raise MonthError(f"end month {end:%Y-%m} is before start month {start:%Y-%m}")
    months, current = [], start
    while current <= end:
        months.append(current)
        current = add_months(current, 1)
    return months


def new_run_id(month: date) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{month:%Y%m}-{stamp}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class RunSpec:
    month: date                 # first day of the computed month
    run_id: str
    source_dir: Path
    warehouse: Path = DEFAULT_WAREHOUSE
    rules_path: Path = DEFAULT_RULES
    restate: bool = False
    as_of: str | None = None    # restatements: the moment whose knowledge is used (ISO, UTC)

    @property
    def month_text(self) -> str:
        return f"{self.month:%Y-%m}"

    @property
    def next_month(self) -> date:
        return add_months(self.month, 1)

    @property
    def as_of_cutoff(self) -> str:
        """Source rows count when updated_at < this: the month end, or `as_of` for a restatement."""
        return self.as_of if self.restate and self.as_of else f"{self.next_month}"

    @property
    def landing_dir(self) -> Path:
        return landing_root(self.warehouse) / self.run_id

    def to_conf(self) -> dict:
        conf = asdict(self)
        conf.update(month=self.month_text, source_dir=str(self.source_dir), warehouse=str(self.warehouse),
                    rules_path=str(self.rules_path))
        return conf

    @classmethod
    def from_conf(cls, conf: dict, logical_date: datetime | None = None) -> "RunSpec":
        """Build from a DAG run's conf; a scheduled run (no conf) computes its logical date's month."""
        import os

        if conf.get("month"):
            month = parse_month(conf["month"])
        elif logical_date is not None:
            month = date(logical_date.year, logical_date.month, 1)
        else:
            raise MonthError("no month given and no logical date")
        source = conf.get("source_dir") or os.environ.get("TIERING_SOURCE_DIR")
        if not source:
            raise MonthError("no source directory: pass source_dir in the run conf or set TIERING_SOURCE_DIR")
        return cls(
            month=month,
            run_id=conf.get("run_id") or new_run_id(month),
            source_dir=Path(source),
            warehouse=Path(conf.get("warehouse") or os.environ.get("TIERING_WAREHOUSE") or DEFAULT_WAREHOUSE),
            rules_path=Path(conf.get("rules_path") or os.environ.get("TIERING_RULES") or DEFAULT_RULES),
            restate=bool(conf.get("restate", False)),
            as_of=conf.get("as_of") or (datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
                                        if conf.get("restate") else None),
        )
