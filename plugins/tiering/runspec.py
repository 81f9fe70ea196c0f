"""What one monthly run is about: month, run id, source, warehouse, rules."""
from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from tiering.errors import TieringError
from tiering.settings import DEFAULT_RULES, DEFAULT_WAREHOUSE, landing_root

MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

# The first month a run can compute (the DAG's start_date is its first day).
FIRST_MONTH = date(1900, 1, 1)


class MonthError(TieringError, ValueError):
    pass


def current_month(now: datetime | None = None) -> date:
    """The first day of the month that is under way now (UTC)."""
    now = now or datetime.now(UTC)
    return date(now.year, now.month, 1)


def check_month_range(month: date, now: datetime | None = None) -> date:
    """A month from FIRST_MONTH up to the current month (UTC), else a one-line MonthError."""
    if not FIRST_MONTH <= month <= current_month(now):
        raise MonthError(f"month {month:%Y-%m} is out of range: months from {FIRST_MONTH:%Y-%m} up to the "
                         f"current month ({current_month(now):%Y-%m}) can be run")
    return month


def check_month_ended(month: date, provisional: bool = False, now: datetime | None = None) -> date:
    """A run computes a month once it has ended (UTC); the month under way only when run as provisional."""
    check_month_range(month, now)
    if month == current_month(now) and not provisional:
        raise MonthError(f"month {month:%Y-%m} has not ended yet (it ends {add_months(month, 1)} 00:00 UTC): "
                         f"run it after that, or as provisional (tiering run --provisional)")
    return month


def parse_month(text: str, now: datetime | None = None) -> date:
    """'2024-03' -> date(2024, 3, 1); a clear one-line error for a malformed or impossible month
    (before 1900-01 or after the current month)."""
    match = MONTH_RE.match(str(text).strip())
    if not match:
        raise MonthError(f"bad month {text!r}: expected YYYY-MM, e.g. 2024-03")
    year, month_number = int(match.group(1)), int(match.group(2))
    if year < FIRST_MONTH.year:  # date() cannot hold year 0: say so before building one
        raise MonthError(f"month {text.strip()} is out of range: months from {FIRST_MONTH:%Y-%m} up to the "
                         f"current month ({current_month(now):%Y-%m}) can be run")
    return check_month_range(date(year, month_number, 1), now)


def _utc(moment) -> datetime | None:
    """A datetime (naive = UTC) or an ISO string (as a run conf or the REST API gives it) in UTC."""
    if moment is None or moment == "":
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def month_of_interval(start, end=None) -> date:
    """The month a data interval [start, end) stands for: it must be one whole calendar month (UTC)."""
    start, end = _utc(start), _utc(end)
    month = date(start.year, start.month, 1)
    whole_start = start == datetime(month.year, month.month, 1, tzinfo=UTC)
    next_month = add_months(month, 1)
    whole_end = end is None or end == datetime(next_month.year, next_month.month, 1, tzinfo=UTC)
    if not (whole_start and whole_end):
        raise MonthError(f"the data interval {start.isoformat()} -> {end.isoformat() if end else '?'} is not one "
                         f"calendar month (UTC): a run computes the month from its first day to the next month's")
    return month


def month_of_run(conf: dict, data_interval_start=None, data_interval_end=None) -> date:
    """The month a DAG run computes: the month of its data interval, as the Airflow UI shows it, for
    scheduled, manual and backfill runs alike (a manual run with logical date 2025-02-01 has the
    interval 2025-01-01 -> 2025-02-01 and computes 2025-01). A conf `month` must agree with the
    interval; a run without a data interval (Airflow 3 allows runs without a logical date)
    computes the conf month, and is refused without one."""
    conf_month = parse_month(conf["month"]) if conf.get("month") else None
    if data_interval_start is None:
        if conf_month is None:
            raise MonthError("this DAG run has no data interval (it was triggered without a logical date) and its "
                             "conf names no month: trigger it with a logical date (the first day after the month) "
                             "or with conf {\"month\": \"YYYY-MM\"}")
        return conf_month
    month = month_of_interval(data_interval_start, data_interval_end)
    if conf_month is not None and conf_month != month:
        raise MonthError(f"conf month {conf_month:%Y-%m} disagrees with the run's data interval "
                         f"({month:%Y-%m}, {month} -> {add_months(month, 1)}): drop `month` from the conf or "
                         f"trigger the run with logical date {add_months(conf_month, 1)}")
    return check_month_range(month)


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
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{month:%Y%m}-{stamp}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class RunSpec:
    month: date                 # first day of the computed month
    run_id: str
    source_dir: Path
    warehouse: Path = DEFAULT_WAREHOUSE
    rules_path: Path = DEFAULT_RULES
    restate: bool = False       # accept a changed history: land new versions of the partitions that differ
    provisional: bool = False   # the month has not ended yet: marked in the marts, never published to PostgreSQL
    # the last month the landing brings the change log up to (first day), when later than `month`: a
    # backfill lands its months from one source in its first run, instead of reading the source again
    # in each (tiering.landing). The run still reads only the partitions up to its month.
    land_through: date | None = None

    @property
    def month_text(self) -> str:
        return f"{self.month:%Y-%m}"

    @property
    def next_month(self) -> date:
        return add_months(self.month, 1)

    @property
    def land_through_text(self) -> str:
        """The last month the run lands (YYYY-MM): land_through when later than the month, else the month."""
        return f"{max(self.month, self.land_through or self.month):%Y-%m}"

    @property
    def as_of_cutoff(self) -> str:
        """Source rows count when updated_at < this: the month's end."""
        return f"{self.next_month}"

    @property
    def landing_manifest(self) -> Path:
        """What the run reads from the change log (tiering.landing)."""
        return landing_root(self.warehouse) / "_runs" / f"{self.run_id}.json"

    def to_conf(self) -> dict:
        conf = asdict(self)
        conf.update(month=self.month_text, source_dir=str(self.source_dir), warehouse=str(self.warehouse),
                    rules_path=str(self.rules_path),
                    land_through=f"{self.land_through:%Y-%m}" if self.land_through else None)
        return conf

    @classmethod
    def from_conf(cls, conf: dict, data_interval_start=None, data_interval_end=None) -> RunSpec:
        """Build from a DAG run's conf and data interval (month_of_run): the first task passes the
        interval, later ones get start_run's conf, which names the month."""
        import os

        month = month_of_run(conf, data_interval_start, data_interval_end)
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
            provisional=_flag(conf.get("provisional", False)),
            land_through=_conf_month(conf, "land_through"),
        )


def _conf_month(conf: dict, key: str) -> date | None:
    """An optional month of the conf (YYYY-MM); a bad one is an error naming its key."""
    if not conf.get(key):
        return None
    try:
        return parse_month(conf[key])
    except MonthError as exc:
        raise MonthError(f"conf {key}: {exc}") from None


def _flag(value) -> bool:
    """A conf flag: true/false, or the strings a UI or CLI conf may carry."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
