"""
### customer_tiering_monthly

Monthly customer tiering: for the month of the run's **data interval** (as the
Airflow UI shows it: a run with the interval 2025-01-01 -> 2025-02-01 computes
January 2025), bring the append-only change log (the source landed as Parquet,
one partition per month of `updated_at`) up to the month, and let dbt type and
check the landed rows (bad rows to `quarantine`), pick each id's latest valid
version as of the month end, and compute value, ABC tiers, credit grades and
final tiers into `marts`. A source whose history up to the month changed fails
the run unless the conf says `restate: true` (new partition versions are landed).

Scheduled runs start on the 1st for the month that just ended. To run month M by
hand (UI, REST API, `airflow dags trigger`), give the logical date of the first day
*after* it (M+1-01): its interval is then [M, M+1). `airflow backfill` runs get the
same intervals. A run without a logical date has no data interval: it needs
`month` in its conf. Any month from 1900-01 can run; a month that has not ended is
refused unless the conf says `provisional: true`.

Configuration only: every task calls one function of the `tiering` package
(plugins/tiering/pipeline.py) through
`tiering.airflow_tasks.run_step`. Run conf (all optional for a scheduled run):
`month` (YYYY-MM; must agree with the data interval), `source_dir` (else
`TIERING_SOURCE_DIR`), `warehouse`, `rules_path`, `run_id`, `provisional`,
`restate`, `land_through` (YYYY-MM: land the source's months up to it now, as
`tiering backfill` does for its later months; the run still reads only its own).
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, chain, dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

from tiering.airflow_tasks import on_task_failure, run_step
from tiering.steps import STEPS  # after start_run, in order; each a function of tiering.pipeline

# Downstream DAGs (e.g. a BI refresh) can be scheduled on this: an event once the month's tier
# tables are published (PostgreSQL bi when configured, and the read-only DuckDB copy).
PUBLISHED_TIERS = Asset(name="tiering_published_customer_tier_monthly", uri="tiering://marts/customer_tier_monthly",
                        group="tiering")
OUTLETS = {"publish_postgres": [PUBLISHED_TIERS]}

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "on_failure_callback": on_task_failure,
}


@dag(
    dag_id="customer_tiering_monthly",
    # data interval = the calendar month the run computes; the run starts when the month is over
    schedule=CronDataIntervalTimetable("0 0 1 * *", timezone="UTC"),
    # early enough for any month from 1900-01 (a run before start_date would run no task);
    # catchup stays off, history is backfilled on purpose (tiering backfill / airflow backfill)
    start_date=pendulum.datetime(1900, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # DuckDB has one writer
    default_args=DEFAULT_ARGS,
    tags=["tiering", "dbt", "duckdb", "monthly"],
    doc_md=__doc__,
)
def customer_tiering_monthly():
    @task
    def start_run() -> dict:
        dag_run = get_current_context()["dag_run"]
        return run_step("start_run", dag_run.conf or {}, dag_run.data_interval_start, dag_run.data_interval_end)

    run = start_run()
    chain(run, *[task(task_id=step, outlets=OUTLETS.get(step, []))(run_step)(step, run) for step in STEPS])

customer_tiering_monthly()
