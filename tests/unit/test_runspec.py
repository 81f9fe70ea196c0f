"""Which month a run computes (conf / data interval -> month), and which months can run at all."""
from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tiering.runspec import MonthError, RunSpec, check_month_ended, current_month, month_of_run, parse_month


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


CONF = {"source_dir": "/src"}


def test_the_month_is_the_data_interval_of_a_scheduled_run():
    # a scheduled run: logical date = interval start = 2025-01-01, interval 2025-01-01 -> 2025-02-01
    assert month_of_run({}, utc(2025, 1, 1), utc(2025, 2, 1)) == date(2025, 1, 1)


def test_a_manual_run_with_logical_date_m_plus_1_computes_its_interval_month():
    """Triggered with logical date 2025-02-01, Airflow shows the interval 2025-01-01 -> 2025-02-01:
    the run computes January, not February."""
    from airflow.timetables.interval import CronDataIntervalTimetable

    interval = CronDataIntervalTimetable("0 0 1 * *", timezone="UTC").infer_manual_data_interval(
        run_after=utc(2025, 2, 1))
    assert (interval.start, interval.end) == (utc(2025, 1, 1), utc(2025, 2, 1))
    assert month_of_run(CONF, interval.start, interval.end) == date(2025, 1, 1)
    spec = RunSpec.from_conf(CONF, interval.start, interval.end)
    assert spec.month_text == "2025-01"


def test_interval_as_text_and_naive_datetimes_are_utc():
    assert month_of_run({}, "1997-03-01T00:00:00+00:00", "1997-04-01T00:00:00Z") == date(1997, 3, 1)
    assert month_of_run({}, datetime(1900, 1, 1), datetime(1900, 2, 1)) == date(1900, 1, 1)


def test_a_conf_month_that_agrees_with_the_interval_is_accepted():
    assert month_of_run({"month": "2025-01"}, utc(2025, 1, 1), utc(2025, 2, 1)) == date(2025, 1, 1)


def test_a_conf_month_that_disagrees_with_the_interval_is_refused():
    with pytest.raises(MonthError, match=r"conf month 2025-02 disagrees with the run's data interval \(2025-01"):
        month_of_run({"month": "2025-02"}, utc(2025, 1, 1), utc(2025, 2, 1))


def test_a_run_without_data_interval_uses_the_conf_month_or_is_refused():
    assert month_of_run({"month": "1998-12"}) == date(1998, 12, 1)
    with pytest.raises(MonthError, match="no data interval .* conf names no month"):
        month_of_run({})
    with pytest.raises(MonthError, match="no data interval"):
        RunSpec.from_conf(CONF)


def test_an_interval_that_is_not_one_calendar_month_is_refused():
    with pytest.raises(MonthError, match="not one calendar month"):
        month_of_run({}, utc(2025, 1, 15), utc(2025, 2, 15))
    with pytest.raises(MonthError, match="not one calendar month"):
        month_of_run({}, utc(2025, 1, 1), utc(2025, 3, 1))


def test_the_steps_after_start_run_read_the_month_from_its_conf():
    spec = RunSpec.from_conf({"month": "1997-06", "source_dir": "/src", "provisional": "false"})
    assert spec.month == date(1997, 6, 1) and not spec.provisional
    assert RunSpec.from_conf(spec.to_conf()) == spec


@pytest.mark.parametrize("text", ["0000-01", "1899-12", "9999-12"])
def test_impossible_months_get_a_one_line_error(text):
    with pytest.raises(MonthError) as error:
        parse_month(text)
    message = str(error.value)
    assert message.startswith(f"month {text} is out of range: months from 1900-01 up to the current month")
    assert "\n" not in message


def test_every_month_from_1900_01_to_the_current_month_parses():
    assert parse_month("1900-01") == date(1900, 1, 1)
    now = datetime.now(UTC)
    assert parse_month(f"{now:%Y-%m}") == current_month()
    with pytest.raises(MonthError, match="expected YYYY-MM"):
        parse_month("2024-13")


def test_a_month_that_has_not_ended_needs_provisional():
    now = utc(2026, 5, 31, 23, 59)
    with pytest.raises(MonthError, match=r"month 2026-05 has not ended yet .*--provisional"):
        check_month_ended(date(2026, 5, 1), now=now)
    assert check_month_ended(date(2026, 5, 1), provisional=True, now=now) == date(2026, 5, 1)
    assert check_month_ended(date(2026, 4, 1), now=now) == date(2026, 4, 1)
    # one second into June, May has ended
    assert check_month_ended(date(2026, 5, 1), now=utc(2026, 6, 1, 0, 0, 1)) == date(2026, 5, 1)
    with pytest.raises(MonthError, match="out of range"):
        check_month_ended(date(2026, 6, 1), provisional=True, now=now)


def test_provisional_travels_in_the_conf():
    spec = RunSpec.from_conf({"month": "2024-03", "source_dir": "/src", "provisional": True})
    assert spec.provisional and spec.to_conf()["provisional"] is True


def test_land_through_travels_in_the_conf_and_is_never_before_the_month():
    spec = RunSpec.from_conf({"month": "2024-03", "source_dir": "/src", "land_through": "2024-12"})
    assert spec.land_through == date(2024, 12, 1) and spec.land_through_text == "2024-12"
    assert spec.to_conf()["land_through"] == "2024-12"
    assert RunSpec.from_conf(spec.to_conf()) == spec
    # none, or one before the month: the run lands through its own month
    assert RunSpec.from_conf({"month": "2024-03", "source_dir": "/src"}).land_through_text == "2024-03"
    assert RunSpec.from_conf({"month": "2024-03", "source_dir": "/src", "land_through": "2024-01"}
                             ).land_through_text == "2024-03"
    with pytest.raises(MonthError, match="bad month") as bad:
        RunSpec.from_conf({"month": "2024-03", "source_dir": "/src", "land_through": "2024-13"})
    assert str(bad.value).startswith("conf land_through: bad month '2024-13'")


def test_a_run_does_not_land_a_month_that_has_not_ended(tmp_path):
    from tiering import pipeline

    month = f"{current_month():%Y-%m}"
    with pytest.raises(MonthError, match=f"land_through {month} has not ended yet"):
        pipeline.start_run({"month": "2024-03", "source_dir": str(tmp_path), "warehouse": str(tmp_path / "w.duckdb"),
                            "land_through": month})
