"""Benchmark of the monthly tiering pipeline against a single-query and a pandas baseline.

    .venv/bin/python bench/run.py --scale XS|S|M|L [--out bench/results] [--months-backfill 12]
                                  [--skip-backfill] [--memory-limit 1GB] [--only month,sql,...]

For a scale it generates (once, cached under --work, default /tmp/tiering-bench/<scale>) a
Parquet source with `tiering.demo.generate`, then runs each scenario in a child process of
its own while this process samples the child's whole process tree with psutil (peak RSS):

  month     the last month of the source through the real Airflow DAG (`run_month`, dag.test),
            on an empty warehouse: wall time per stage (every step function is timed in the
            child) and Airflow overhead = DAG run wall time - sum of the steps
  backfill  the last --months-backfill months, oldest first, in one process through the DAG
  mid       the middle month (month 12 of 24) through the steps without Airflow, to compare
            its cost with the last month's (a month's run reads the as-of snapshot up to it)
  steady    the steady state: the months before mid and last, then mid and last, through the
            steps in ONE warehouse, so that mid and last each land only the change-log partitions
            new since the month before (tiering.landing) and type only those (the staging models
            are incremental by partition); compares their costs (month 24 against month 12)
  sql       baseline (a): ONE hand-written DuckDB query from the source Parquet to value tiers
  pandas    baseline (b): the same rule in plain pandas/numpy (exact integer arithmetic)
  parse     the DAG file parse time (DagBag of dags/, after `import airflow`)
  kill      kill-and-rerun: a run killed (SIGKILL) while dbt runs, then the month rerun on the
            same warehouse; its tiers must equal the uninterrupted run's
  spill     (with --memory-limit) the month through the steps with DuckDB memory_limit set
            low (threads, memory_limit and temp_directory reach dbt and the pipeline's own
            connections through TIERING_DUCKDB_*): it must finish, and the temp directory's
            peak size shows the spill

Each pipeline month also records the CPU time (user + system) of every step. A speed probe (a
fixed DuckDB aggregation on the runs' threads) runs before the scenarios and after each one: on a
shared machine the same run's wall time drifts with the machine's load (see bench/RESULTS.md).

The agreement check compares every customer's value_tier between the pipeline
(marts.customer_tier_monthly), the single query and pandas; any mismatch makes the
benchmark exit 1. Results: <out>/<scale>.json and a section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

SCALES = {  # customers, months of history
    "XS": (300, 14),
    "S": (10_000, 24),
    "M": (100_000, 24),
    "L": (1_000_000, 24),
}
START_MONTH = "2023-01"
SEED = 42
MAX_RSS_BYTES = 0  # set from --max-rss-gb: a scenario whose process tree exceeds it is killed
ALL_SCENARIOS = ("month", "backfill", "mid", "steady", "sql", "pandas", "parse", "kill", "spill")
# what runs without --only: every figure of the issue once, no month run twice (S in under 3 min):
# steady's cold months give month-24 against month-12 landed in full, its last month goes through
# Airflow (the Airflow overhead), and kill reruns that month on steady's warehouse
DEFAULT_SCENARIOS = ("steady", "sql", "pandas", "parse", "kill", "spill")
STAGES = {  # stage -> step functions of tiering.pipeline (the row rules run in dbt's staging models)
    "extract_land": ("extract_and_land",),
    "dbt": ("transform_staging", "transform_marts"),
    "ge": ("gate_landed", "gate_staging", "gate_marts"),
    "publish": ("publish", "publish_postgres"),
    "other": ("start_run", "score_potential", "finish_run"),
}


# --- helpers --------------------------------------------------------------------------------

def month_text(start: str, offset: int) -> str:
    year, month = map(int, start.split("-"))
    index = year * 12 + month - 1 + offset
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", flush=True)


def _tree_rss_bytes(root_pid: int) -> int:
    """Sum of the resident set sizes of root_pid and all its descendants (psutil)."""
    try:
        root = psutil.Process(root_pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in tree:
        with contextlib.suppress(psutil.Error):   # ended between the listing and the reading
            total += proc.memory_info().rss
    return total


def _dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


class Child:
    """A scenario in a child process; samples the tree's RSS (and optionally a directory's size)."""

    def __init__(self, mode: str, spec: dict, env: dict | None = None, watch_dir: Path | None = None,
                 timeout: float | None = None):
        self.timeout = timeout
        self.timed_out = False
        self.over_memory = False
        self.result_file = Path(spec["result_file"])
        self.result_file.unlink(missing_ok=True)
        self.watch_dir = watch_dir
        self.peak_rss = 0
        self.peak_dir = 0
        self.loads: list[float] = []  # 1-minute load average: the machine is shared, this says how much
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", mode,
                                      "--spec", json.dumps(spec)],
                                     env={**os.environ, **(env or {})}, start_new_session=True)
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while self.proc.poll() is None:
            if self.timeout and time.monotonic() - self.started > self.timeout:
                self.timed_out = True
                self.kill()
            if MAX_RSS_BYTES and self.peak_rss > MAX_RSS_BYTES and not self.over_memory:
                self.over_memory = True  # protect the (shared) machine before the OOM killer picks a victim
                self.kill()
            self.peak_rss = max(self.peak_rss, _tree_rss_bytes(self.proc.pid))
            self.loads.append(os.getloadavg()[0])
            if self.watch_dir is not None:  # one directory or several (their sizes summed)
                dirs = self.watch_dir if isinstance(self.watch_dir, list) else [self.watch_dir]
                self.peak_dir = max(self.peak_dir, sum(_dir_bytes(d) for d in dirs if d.exists()))
            time.sleep(0.1)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)

    def wait(self, check: bool = False) -> dict:
        code = self.proc.wait()
        self._sampler.join()
        wall = round(time.monotonic() - self.started, 2)
        if code != 0:
            if check:
                raise SystemExit(f"bench: child scenario failed with exit code {code} (see its output above)")
            return {"failed": True, "exit_code": code, "timed_out": self.timed_out, "over_memory": self.over_memory,
                    "max_rss_mb": round(MAX_RSS_BYTES / 2**20) if MAX_RSS_BYTES else None, "wall_s": wall,
                    "peak_rss_mb": round(self.peak_rss / 2**20)}
        result = json.loads(self.result_file.read_text())
        result.update(process_wall_s=wall, peak_rss_mb=round(self.peak_rss / 2**20),
                      mean_load_avg=round(sum(self.loads) / max(len(self.loads), 1), 1))
        if self.watch_dir is not None:
            result["peak_temp_dir_mb"] = round(self.peak_dir / 2**20)
        return result


# --- child: the pipeline ---------------------------------------------------------------------

def _instrument(progress_file: Path | None) -> dict:
    """Wrap every step function of tiering.pipeline with a timer; returns the timing dict."""
    from tiering import pipeline
    from tiering.steps import STEPS

    timings: dict = {"current": {}, "cpu": {}}

    def wrap(name, fn):
        def timed(*args, **kwargs):
            if progress_file:
                with open(progress_file, "a") as fh:
                    fh.write(f"start {name}\n")
            t0, cpu0 = time.monotonic(), _cpu_seconds()
            try:
                return fn(*args, **kwargs)
            finally:
                timings["current"][name] = round(time.monotonic() - t0, 3)
                timings["cpu"][name] = round(_cpu_seconds() - cpu0, 3)
                if progress_file:
                    with open(progress_file, "a") as fh:
                        fh.write(f"end {name}\n")
        return timed

    for name in ("start_run", *STEPS):
        setattr(pipeline, name, wrap(name, getattr(pipeline, name)))
    return timings


def _cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads: DuckDB's, dbt's) and its waited-for children."""
    t = psutil.Process().cpu_times()
    return t.user + t.system + t.children_user + t.children_system


SPEED_PROBE_SQL = "select sum(hash(i % 1000003)), count(distinct i % 200003) from range(10000000) t(i)"


def speed_probe(threads: int) -> float:
    """Seconds of a fixed DuckDB aggregation on `threads` threads, the measured runs' (median of 3
    runs of a fraction of a second each). Figures measured on a shared machine drift with its
    load: the same month's run has taken 209 s and 291 s back to back at L, its CPU time rising
    with it. The probe, run before the scenarios and after each one, says how fast the machine
    was around them."""
    import statistics

    import duckdb

    con = duckdb.connect()
    try:
        con.execute(f"set threads = {int(threads)}")
        seconds = []
        for _ in range(3):
            t0 = time.perf_counter()
            con.execute(SPEED_PROBE_SQL).fetchall()
            seconds.append(time.perf_counter() - t0)
    finally:
        con.close()
    return round(statistics.median(seconds), 3)


def _stage_totals(steps: dict) -> dict:
    return {stage: round(sum(steps.get(s, 0.0) for s in names), 3) for stage, names in STAGES.items()}


def child_pipeline(spec: dict) -> dict:
    """Run spec['months'] on spec['warehouse'], via Airflow (run_month) or the step functions."""
    os.environ["AIRFLOW_HOME"] = spec["airflow_home"]
    from tiering.airflow_runner import configure_environment

    configure_environment()
    timings = _instrument(Path(spec["progress_file"]) if spec.get("progress_file") else None)
    from tiering import pipeline
    from tiering.runspec import RunSpec
    from tiering.steps import STEPS

    out: dict = {"via": spec["via"], "months": []}
    # one-off imports of a process (Great Expectations, dbt) timed apart, so that the first month
    # measured does not carry them (a scheduler's task process pays them once per task)
    t0 = time.monotonic()
    from dbt.cli.main import dbtRunner  # noqa: F401

    from tiering.quality import import_gx
    import_gx()
    out["imports_s"] = round(time.monotonic() - t0, 2)
    last_via = spec.get("last_via") or spec["via"]  # the last month may go through Airflow, the others not
    if "airflow" in (spec["via"], last_via):
        from tiering.airflow_runner import get_dag, run_month, start_execution_api

        t0 = time.monotonic()
        get_dag()
        start_execution_api()  # the first dag.test() of a process would pay it inside a task
        out["airflow_startup_s"] = round(time.monotonic() - t0, 2)
    for i, month in enumerate(spec["months"]):
        via = last_via if i == len(spec["months"]) - 1 else spec["via"]
        timings["current"], timings["cpu"] = {}, {}
        conf = {"month": month, "source_dir": spec["source"], "warehouse": spec["warehouse"]}
        if spec.get("land_through"):   # as `tiering backfill` does: its first run lands every month
            conf["land_through"] = spec["land_through"]
        t0 = time.monotonic()
        if via == "airflow":
            run_month(RunSpec.from_conf(conf))
        else:
            run = pipeline.start_run(conf)
            for step in STEPS:
                getattr(pipeline, step)(run)
        wall = round(time.monotonic() - t0, 3)
        steps = dict(timings["current"])
        if len(steps) < len(STEPS) + 1:
            raise RuntimeError(f"only {len(steps)} steps were timed: are the DAG's tasks run in this process?")
        entry = {"month": month, "via": via, "wall_s": wall, "steps_s": steps, "stages_s": _stage_totals(steps),
                 "steps_total_s": round(sum(steps.values()), 3), "steps_cpu_s": dict(timings["cpu"]),
                 "steps_cpu_total_s": round(sum(timings["cpu"].values()), 3)}
        if via == "airflow":
            entry["stages_s"]["airflow_overhead"] = round(wall - entry["steps_total_s"], 3)
        out["months"].append(entry)
        print(f"[bench child] {month}: {wall:.1f} s {entry['stages_s']}", flush=True)
    if spec.get("tiers_file"):
        _export_pipeline_tiers(spec["warehouse"], spec["months"][-1], spec["tiers_file"])
    return out


def _export_pipeline_tiers(warehouse: str, month: str, out_file: str) -> None:
    from tiering.warehouse import connect

    con = connect(warehouse, read_only=True)
    try:
        con.execute(f"""copy (select customer_id, value_tier from marts.customer_tier_monthly
                             where month = date '{month}-01' order by customer_id)
                        to '{out_file}' (format parquet)""")
    finally:
        con.close()


# --- child: baselines --------------------------------------------------------------------------

def single_query(source: str, month: str, rules: dict) -> str:
    """ONE DuckDB query from the source Parquet files to each known customer's value tier,
    implementing the contract's as-of Pareto rule (and the row rules that decide what counts)."""
    reporting = rules["reporting_currency"]
    window = rules["value"]["window_months"]
    a_share, b_share = rules["value"]["pareto"]["a_share"], rules["value"]["pareto"]["b_share"]
    cutoff = f"{month_text(month, 1)}-01"
    window_start = f"{month_text(month, 1 - window)}-01"
    src = lambda name: f"read_parquet('{source}/{name}.parquet')"  # noqa: E731
    return f"""
    with fx_rates as (
        select currency, month as rate_month, cast(rate_to_reporting as decimal(18, 8)) as rate
        from {src('fx_rates')}
        where try_strptime(month, '%Y-%m') < timestamp '{cutoff}'
          and try_cast(rate_to_reporting as decimal(18, 6)) > 0
        qualify row_number() over (partition by currency, month order by rate_to_reporting) = 1
    ),
    customer_versions as (
        select customer_id,
               row_number() over (partition by customer_id
                                  order by cast(updated_at as timestamptz) desc) as version_rank
        from {src('customers')}
        where coalesce(trim(customer_id), '') <> ''
          and customer_kind in ('individual', 'organisation')
          and try_cast(created_at as timestamptz) is not null
          and try_cast(updated_at as timestamptz) < timestamptz '{cutoff}'
    ),
    known_customers as (
        select customer_id from customer_versions where version_rank = 1
    ),
    valid_orders as (
        select o.order_id, o.customer_id, o.status,
               cast(o.ordered_at as timestamptz) as ordered_at,
               cast(o.updated_at as timestamptz) as updated_at,
               cast(cast(o.amount as decimal(18, 4))
                    * case when o.currency = '{reporting}' then 1 else fx_rates.rate end
                    as decimal(18, 4)) as amount_reporting
        from {src('orders')} as o
        left join fx_rates
          on fx_rates.currency = o.currency
         and fx_rates.rate_month = strftime(try_cast(o.ordered_at as timestamptz), '%Y-%m')
        where coalesce(trim(o.order_id), '') <> '' and coalesce(trim(o.amount), '') <> ''
          and try_cast(o.ordered_at as timestamptz) is not null
          and try_cast(o.updated_at as timestamptz) < timestamptz '{cutoff}'
          -- an amount is never negative but on a credit note (a return), where it is never positive
          and (case when o.status = 'credit_note' then try_cast(o.amount as decimal(18, 6)) <= 0
                    else try_cast(o.amount as decimal(18, 6)) >= 0 end)
          and (coalesce(o.cost, '') = '' or try_cast(o.cost as decimal(18, 6)) >= 0)
          and o.status in ('completed', 'cancelled', 'returned', 'credit_note')
          and (o.currency = '{reporting}' or fx_rates.rate is not null)
          and o.customer_id in (select customer_id from known_customers)
    ),
    latest_orders as (
        select * from valid_orders
        qualify row_number() over (partition by order_id order by updated_at desc) = 1
    ),
    value_in_window as (
        -- completed orders less the credit notes dated in the window
        select customer_id, sum(amount_reporting) as net_revenue
        from latest_orders
        where status in ('completed', 'credit_note')
          and ordered_at >= timestamptz '{window_start}' and ordered_at < timestamptz '{cutoff}'
        group by customer_id
        having sum(amount_reporting) > 0
    ),
    ranked as (
        select customer_id,
               coalesce(sum(net_revenue) over (order by net_revenue desc, customer_id
                                               rows between unbounded preceding and 1 preceding), 0) as prior_value,
               sum(net_revenue) over () as total_value
        from value_in_window
    )
    select known_customers.customer_id,
           case
               when ranked.customer_id is null then 'C'
               when ranked.prior_value < {a_share} * ranked.total_value then 'A'
               when ranked.prior_value < {b_share} * ranked.total_value then 'B'
               else 'C'
           end as value_tier
    from known_customers
    left join ranked on ranked.customer_id = known_customers.customer_id
    order by known_customers.customer_id
    """


def child_sql(spec: dict) -> dict:
    import duckdb

    from tiering.rules import load_rules

    rules = load_rules(spec["rules"]).data
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute(f"set threads = {int(spec['threads'])}")
    con.execute(f"set memory_limit = '{spec['memory_limit']}'")
    con.execute(f"set temp_directory = '{spec['temp_dir']}'")
    t0 = time.monotonic()
    con.execute(f"copy ({single_query(spec['source'], spec['month'], rules)}) to '{spec['tiers_file']}' "
                f"(format parquet)")
    seconds = round(time.monotonic() - t0, 3)
    con.close()
    return {"seconds": seconds}


def child_pandas(spec: dict) -> dict:
    """The same rule in pandas: vectorised, exact (amounts as integer 1e-4 units)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tiering.rules import load_rules

    rules = load_rules(spec["rules"]).data
    reporting = rules["reporting_currency"]
    window = rules["value"]["window_months"]
    a_share, b_share = rules["value"]["pareto"]["a_share"], rules["value"]["pareto"]["b_share"]
    month, source = spec["month"], Path(spec["source"])
    cutoff = pd.Timestamp(f"{month_text(month, 1)}-01", tz="UTC")
    window_start = pd.Timestamp(f"{month_text(month, 1 - window)}-01", tz="UTC")
    t0 = time.monotonic()

    def ts(series: pd.Series) -> pd.Series:
        return pd.to_datetime(series, format="ISO8601", errors="coerce", utc=True)

    fx = pq.read_table(source / "fx_rates.parquet").to_pandas()
    fx["rate"] = pd.to_numeric(fx["rate_to_reporting"], errors="coerce")
    fx = fx[(pd.to_datetime(fx["month"], format="%Y-%m", errors="coerce", utc=True) < cutoff) & (fx["rate"] > 0)]
    fx = fx.drop_duplicates(["currency", "month"])
    fx["rate_e8"] = np.rint(fx["rate"].to_numpy() * 1e8).astype(np.int64)

    cust = pq.read_table(source / "customers.parquet",
                         columns=["customer_id", "customer_kind", "created_at", "updated_at"]).to_pandas()
    updated = ts(cust["updated_at"])
    ok = ((cust["customer_id"].fillna("").str.strip() != "")
          & cust["customer_kind"].isin(["individual", "organisation"])
          & ts(cust["created_at"]).notna() & (updated < cutoff))
    known = pd.Index(cust.loc[ok, "customer_id"].unique())
    del cust, updated, ok

    fx_month = pd.to_datetime(fx["month"], format="%Y-%m")
    rates = pd.Series(fx["rate_e8"].to_numpy(), index=pd.MultiIndex.from_arrays(
        [fx["currency"].astype(str), (fx_month.dt.year * 100 + fx_month.dt.month).astype(np.int64)]))
    arrow_text = {pa.string(): pd.StringDtype("pyarrow")}   # Arrow-backed text: ~4x less memory than objects

    def valid_chunk(orders: pd.DataFrame) -> pd.DataFrame:
        ordered = ts(orders["ordered_at"])
        updated = ts(orders["updated_at"])
        amount = pd.to_numeric(orders["amount"], errors="coerce")
        cost_text = orders["cost"].fillna("")
        cost = pd.to_numeric(cost_text, errors="coerce")
        rate_month = (ordered.dt.year * 100 + ordered.dt.month).fillna(0).astype(np.int64)
        rate_e8 = rates.reindex(pd.MultiIndex.from_arrays([orders["currency"].astype(str), rate_month])).to_numpy()
        rate_e8 = np.where(orders["currency"].to_numpy() == reporting, 10**8, rate_e8)
        credit_note = orders["status"] == "credit_note"   # a return: its amount is zero or negative
        valid = ((orders["order_id"].fillna("").str.strip() != "") & (orders["amount"].fillna("").str.strip() != "")
                 & ordered.notna() & (updated < cutoff)
                 & ((credit_note & (amount <= 0)) | (~credit_note & (amount >= 0)))
                 & ((cost_text == "") | (cost >= 0))
                 & orders["status"].isin(["completed", "cancelled", "returned", "credit_note"])
                 & pd.notna(rate_e8) & orders["customer_id"].isin(known))
        return pd.DataFrame({"order_id": orders["order_id"], "customer_id": orders["customer_id"],
                             "status": orders["status"], "ordered_at": ordered, "updated_at": updated,
                             "amount": amount, "rate_e8": rate_e8})[valid.to_numpy()]

    # the orders file in chunks of rows (at 50 million rows a whole-file DataFrame of text does not fit)
    chunks = [valid_chunk(batch.to_pandas(types_mapper=arrow_text.get))
              for batch in pq.ParquetFile(source / "orders.parquet").iter_batches(batch_size=2_000_000)]
    frame = pd.concat(chunks, ignore_index=True)
    del chunks
    frame = frame.sort_values(["order_id", "updated_at"]).drop_duplicates("order_id", keep="last")
    # completed orders less the credit notes dated in the window
    frame = frame[frame["status"].isin(["completed", "credit_note"]) & (frame["ordered_at"] >= window_start)
                  & (frame["ordered_at"] < cutoff)]
    cents = np.rint(frame["amount"].to_numpy() * 100).astype(np.int64)
    product = cents * frame["rate_e8"].to_numpy().astype(np.int64)        # 1e-10 units
    # to 1e-4, half away from zero (as DuckDB's decimal cast), by magnitude: a credit note is negative
    quotient, remainder = np.divmod(np.abs(product), 10**6)
    frame["value_e4"] = np.sign(product) * (quotient + (2 * remainder >= 10**6))
    value = frame.groupby("customer_id")["value_e4"].sum()
    value = value[value > 0].reset_index()
    value = value.sort_values(["value_e4", "customer_id"], ascending=[False, True], kind="stable")
    running = value["value_e4"].to_numpy()
    prior = np.concatenate([[0], np.cumsum(running)[:-1]])
    total = int(running.sum())
    # exact: prior < share * total  <=>  prior * 10^k < round(share * 10^k) * total
    scale = 10**6
    a_num, b_num = round(a_share * scale), round(b_share * scale)
    prior_obj, total_obj = prior.astype(object) * scale, total
    tier = np.where(prior_obj < a_num * total_obj, "A", np.where(prior_obj < b_num * total_obj, "B", "C"))
    tiers = pd.DataFrame({"customer_id": known}).merge(
        pd.DataFrame({"customer_id": value["customer_id"].to_numpy(), "value_tier": tier}), how="left")
    tiers["value_tier"] = tiers["value_tier"].fillna("C")
    seconds = round(time.monotonic() - t0, 3)
    tiers.sort_values("customer_id").to_parquet(spec["tiers_file"], index=False)
    return {"seconds": seconds}


def child_parse(spec: dict) -> dict:
    os.environ["AIRFLOW_HOME"] = spec["airflow_home"]
    from tiering.airflow_runner import configure_environment

    configure_environment()
    t0 = time.monotonic()
    from airflow.dag_processing.dagbag import DagBag

    t1 = time.monotonic()
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    t2 = time.monotonic()
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    return {"airflow_import_s": round(t1 - t0, 3), "dag_parse_s": round(t2 - t1, 3), "dags": sorted(bag.dag_ids)}


CHILD_MODES = {"pipeline": child_pipeline, "sql": child_sql, "pandas": child_pandas, "parse": child_parse}


# --- the benchmark ---------------------------------------------------------------------------

def ensure_source(work: Path, customers: int, months: int) -> tuple[Path, dict]:
    """Generate the Parquet source once per (customers, months, seed); reuse it afterwards."""
    from tiering.demo import generate

    source = work / "source"
    marker = source / ".bench.json"
    wanted = {"customers": customers, "months": months, "seed": SEED, "start_month": START_MONTH}
    if marker.exists() and json.loads(marker.read_text()).get("params") == wanted:
        info = json.loads(marker.read_text())
        log(f"reusing source {source} ({info['rows']})")
        return source, info
    t0 = time.monotonic()
    rows = generate(source, customers=customers, months=months, seed=SEED, start_month=START_MONTH, fmt="parquet")
    info = {"params": wanted, "rows": rows, "generate_s": round(time.monotonic() - t0, 2),
            "bytes": _dir_bytes(source)}
    marker.write_text(json.dumps(info))
    log(f"generated {rows} in {info['generate_s']} s")
    return source, info


def read_tiers(path: Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return dict(zip(table.column("customer_id").to_pylist(), table.column("value_tier").to_pylist(), strict=True))


def compare(name_a: str, a: dict, name_b: str, b: dict) -> dict:
    missing = sorted(set(a) ^ set(b))
    differ = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    return {"pair": f"{name_a} vs {name_b}", "customers": len(a), "only_in_one": len(missing),
            "different_tier": len(differ), "examples": [(k, a.get(k), b.get(k)) for k in (missing + differ)[:5]],
            "agree": not missing and not differ}


def tier_counts(tiers: dict) -> dict:
    counts: dict[str, int] = {}
    for t in tiers.values():
        counts[t] = counts.get(t, 0) + 1
    return dict(sorted(counts.items()))


def _cpu_model() -> str:
    """The CPU's model name (psutil does not report it: Linux's cpuinfo, else the platform's)."""
    try:
        with open("/proc/cpuinfo") as fh:
            return next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "?")
    except OSError:
        return platform.processor() or "?"


def machine() -> dict:
    import duckdb

    return {"cpus": os.cpu_count(), "cpu_model": _cpu_model(),
            "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "duckdb": duckdb.__version__, "platform": platform.platform()}


def select_scenarios(args: argparse.Namespace) -> list[str]:
    """--only, else the defaults; --months-backfill N adds the backfill, --skip-backfill removes it,
    and spill needs --memory-limit."""
    scenarios = args.only.split(",") if args.only else list(DEFAULT_SCENARIOS)
    if args.months_backfill and not args.only and "backfill" not in scenarios:
        scenarios.append("backfill")
    if args.skip_backfill and "backfill" in scenarios:
        scenarios.remove("backfill")
    if not args.memory_limit and "spill" in scenarios:
        scenarios.remove("spill")
    return scenarios


def run_bench(args: argparse.Namespace) -> int:
    customers, months = SCALES[args.scale]
    work = Path(args.work or f"/tmp/tiering-bench/{args.scale}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    scenarios = select_scenarios(args)
    source, source_info = ensure_source(work, customers, months)
    last = month_text(START_MONTH, months - 1)
    mid = month_text(START_MONTH, months // 2 - 1)
    rules = str(ROOT / "config" / "tiering_rules.yml")
    env = {"TIERING_DUCKDB_THREADS": str(args.threads), "TIERING_DUCKDB_MEMORY_LIMIT": args.duckdb_memory,
           "TIERING_DUCKDB_TEMP_DIRECTORY": str(work / "duckdb-tmp"), "TIERING_PROJECT_ROOT": str(ROOT),
           "GX_ANALYTICS_ENABLED": "False", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    airflow_home = str(Path(args.airflow_home) if args.airflow_home else work.parent / "airflow-home")
    out = Path(args.out)
    json_path = out / f"{args.scale}.json"
    previous = {}
    if args.only and json_path.exists():  # a partial rerun keeps the other scenarios' figures
        previous = json.loads(json_path.read_text())
        if previous.get("source", {}).get("params") != source_info.get("params"):
            previous = {}
    results: dict = {"scale": args.scale, "customers": customers, "months_of_history": months, "month": last,
                     "machine": machine(), "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                     "duckdb_settings": {"threads": args.threads, "memory_limit": args.duckdb_memory},
                     "source": source_info, "scenarios": dict(previous.get("scenarios", {})),
                     "speed_probe_s": {"start": speed_probe(args.threads)}}
    timeout = args.timeout or None

    def fresh(name: str) -> Path:
        directory = work / name
        subprocess.run(["rm", "-rf", str(directory)], check=True)
        directory.mkdir(parents=True)
        return directory

    def pipeline_spec(name: str, months_list: list[str], via: str, **extra) -> dict:
        directory = fresh(name)
        return {"months": months_list, "via": via, "source": str(source), "airflow_home": airflow_home,
                "warehouse": str(directory / "warehouse" / "tiering.duckdb"),
                "result_file": str(directory / "result.json"), "tiers_file": str(directory / "tiers.parquet"),
                **extra}

    def record(name: str, result: dict) -> dict:
        results["scenarios"][name] = result
        results["speed_probe_s"][f"after {name}"] = speed_probe(args.threads)
        if result.get("failed"):
            log(f"{name}: FAILED (exit {result['exit_code']}, timed out: {result['timed_out']}, "
                f"after {result['wall_s']} s, peak RSS {result['peak_rss_mb']} MB)")
        return result

    if "month" in scenarios:
        log(f"month: {last} through the Airflow DAG on an empty warehouse")
        record("month", Child("pipeline", pipeline_spec("month", [last], "airflow"), env, timeout=timeout).wait())
    if "backfill" in scenarios:
        count = args.months_backfill or 12
        first = month_text(START_MONTH, months - count)
        backfill_months = [month_text(first, i) for i in range(count)]
        log(f"backfill: {backfill_months[0]}..{backfill_months[-1]} through the DAG, one process")
        r = record("backfill", Child("pipeline", pipeline_spec("backfill", backfill_months, "airflow",
                                                               land_through=backfill_months[-1]), env,
                                     timeout=timeout).wait())
        if not r.get("failed"):
            r["stages_total_s"] = {k: round(sum(m["stages_s"].get(k, 0) for m in r["months"]), 2)
                                   for k in r["months"][-1]["stages_s"]}
    if "mid" in scenarios:
        log(f"mid: {mid} through the steps (no Airflow) on an empty warehouse, against {last}")
        r = {"mid": Child("pipeline", pipeline_spec("steps-mid", [mid], "steps"), env, timeout=timeout).wait()}
        month_run = results["scenarios"].get("month", {})
        if month_run.get("months") and month_run["months"][0]["month"] == last:
            r["last"] = month_run  # the month scenario's steps, timed the same way (Airflow overhead apart)
        else:
            r["last"] = Child("pipeline", pipeline_spec("steps-last", [last], "steps"), env, timeout=timeout).wait()
        if not (r["mid"].get("failed") or r["last"].get("failed")):
            r["ratio_last_to_mid"] = round(r["last"]["months"][0]["steps_total_s"]
                                           / r["mid"]["months"][0]["steps_total_s"], 2)
        else:
            r["failed"], r["exit_code"], r["timed_out"], r["wall_s"], r["peak_rss_mb"] = True, 1, False, 0, 0
        record("mid", r)
    if "steady" in scenarios:
        ends = [mid, last] if args.steady_pairs == "mid,last" else [last]
        steady = [m for end in ends for m in (month_text(end, -1), end)]
        log(f"steady: {', '.join(steady)} through the steps in one warehouse ({' and '.join(ends)} land the "
            f"changes since the month before)")
        r = record("steady", Child("pipeline", pipeline_spec("steady", steady, "steps", last_via=args.steady_last_via),
                                   env, timeout=timeout).wait())
        if not r.get("failed") and len(r["months"]) == 4:
            r["ratio_last_to_mid"] = round(r["months"][3]["steps_total_s"] / r["months"][1]["steps_total_s"], 2)
            # the months before mid and last were landed in full on an empty or older warehouse
            r["ratio_cold_last_to_mid"] = round(r["months"][2]["steps_total_s"] / r["months"][0]["steps_total_s"], 2)
    for name in ("sql", "pandas"):
        if name in scenarios:
            log(f"{name} baseline for {last}")
            directory = fresh(f"baseline-{name}")
            spec = {"source": str(source), "month": last, "rules": rules, "threads": args.threads,
                    "memory_limit": args.duckdb_memory, "temp_dir": str(work / "duckdb-tmp"),
                    "result_file": str(directory / "result.json"), "tiers_file": str(directory / "tiers.parquet")}
            record(name, Child(name, spec, env, timeout=timeout).wait())
    if "parse" in scenarios:
        log("parse: DagBag of dags/")
        directory = fresh("parse")
        record("parse", Child("parse", {"airflow_home": airflow_home,
                                        "result_file": str(directory / "result.json")}, env).wait())
    merge_previous(json_path, args, results, scenarios)
    tiers = collect_tiers(work, results["scenarios"])
    if "kill" in scenarios:
        steady_run = results["scenarios"].get("steady", {})
        on_warehouse = None
        if ("steady" in scenarios and not steady_run.get("failed")
                and steady_run.get("months", [{}])[-1].get("month") == last):
            on_warehouse = str(work / "steady" / "warehouse" / "tiering.duckdb")
        record("kill", kill_and_rerun(pipeline_spec, last, env, tiers, on_warehouse))
    if "spill" in scenarios:
        log(f"spill: {last} through the steps with DuckDB memory_limit={args.memory_limit}")
        spec = pipeline_spec("spill", [last], "steps")
        temp = work / "spill" / "duckdb-tmp"
        spill_env = {**env, "TIERING_DUCKDB_MEMORY_LIMIT": args.memory_limit,
                     "TIERING_DUCKDB_TEMP_DIRECTORY": str(temp)}
        # the pipeline's connections spill to TIERING_DUCKDB_TEMP_DIRECTORY, dbt to DuckDB's default <warehouse>.tmp
        watch = [temp, Path(spec["warehouse"] + ".tmp")]
        r = Child("pipeline", spec, spill_env, watch_dir=watch, timeout=timeout).wait()
        r["memory_limit"] = args.memory_limit
        r["finished"] = not r.get("failed")
        if r["finished"]:
            spilled = read_tiers(Path(spec["tiers_file"]))
            r["agreement_with_pipeline"] = compare("spill run", spilled, "pipeline", tiers.get("pipeline", spilled))
            if "pipeline" not in tiers:  # no month scenario (e.g. L, where one pipeline run is what fits):
                tiers["pipeline"] = spilled  # the spill run is the pipeline's result for the agreement check
                r["used_as_pipeline_result"] = True
        record("spill", r)

    agreement = []
    names = [n for n in ("pipeline", "sql", "pandas") if n in tiers]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            agreement.append(compare(a, tiers[a], b, tiers[b]))
    results["agreement"] = {"pairs": agreement, "tier_counts": {n: tier_counts(t) for n, t in tiers.items()},
                            "passed": bool(agreement) and all(p["agree"] for p in agreement)}
    merge_previous(json_path, args, results, scenarios)
    results["summary"] = summarise(results)
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    out.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2, default=str))
    table = markdown(results)
    print(table)
    if args.results_md:
        update_results_md(Path(args.results_md), args.scale, table)
    for pair in agreement:
        status = "agree" if pair["agree"] else (f"DISAGREE ({pair['only_in_one']} missing, "
                                                f"{pair['different_tier']} differ, e.g. {pair['examples']})")
        log(f"agreement {pair['pair']}: {pair['customers']} customers, {status}")
    failed = [n for n, r in results["scenarios"].items() if n in scenarios and r.get("failed")]
    kill = results["scenarios"].get("kill")
    if failed:
        log(f"failed scenarios: {', '.join(failed)}")
    if kill is not None and "kill" in scenarios and not kill.get("rerun_equals_uninterrupted"):
        log("kill-and-rerun: the rerun does NOT equal the uninterrupted run")
        return 1
    if not results["agreement"]["passed"]:
        log("agreement check FAILED" if agreement else "agreement check: fewer than two results to compare")
        return 1
    return 1 if failed else 0


def merge_previous(json_path: Path, args: argparse.Namespace, results: dict, scenarios: list[str]) -> None:
    """With --only, keep the other scenarios' figures from the scale's JSON as it is now (another
    invocation of the same scale may have written it meanwhile), if it was made from the same source."""
    if not args.only or not json_path.exists():
        return
    previous = json.loads(json_path.read_text())
    if previous.get("source", {}).get("params") != results["source"].get("params"):
        return
    for name, result in previous.get("scenarios", {}).items():
        if name not in scenarios:
            results["scenarios"][name] = result


def collect_tiers(work: Path, scenarios: dict) -> dict[str, dict]:
    """value tiers of the measured month from each source that has them (this run or an earlier one)."""
    found: dict[str, dict] = {}
    # the spill run (memory_limit) stands in for the pipeline where no other pipeline run was made (L)
    candidates = {"pipeline": [("month", "month"), ("backfill", "backfill"), ("mid", "steps-last"),
                               ("steady", "steady"), ("spill", "spill")],
                  "sql": [("sql", "baseline-sql")], "pandas": [("pandas", "baseline-pandas")]}
    for name, options in candidates.items():
        for scenario, directory in options:
            path = work / directory / "tiers.parquet"
            if scenario in scenarios and not scenarios[scenario].get("failed") and path.exists():
                found[name] = read_tiers(path)
                break
    return found


def kill_and_rerun(pipeline_spec, month: str, env: dict, tiers: dict, on_warehouse: str | None = None) -> dict:
    """Kill a run while dbt types the landed rows (transform_staging), rerun the month on the same warehouse.

    on_warehouse: run it on that warehouse (the steady scenario's, where the month already ran after
    the month before: the rerun reads the change log the killed run left), else on an empty one."""
    where = "the steady scenario's warehouse" if on_warehouse else "an empty warehouse"
    log(f"kill: {month} on {where}, killed during transform_staging, then rerun on the same warehouse")
    spec = pipeline_spec("kill", [month], "steps")
    if on_warehouse:
        spec["warehouse"] = on_warehouse
    progress = Path(spec["result_file"]).with_name("progress.txt")
    spec["progress_file"] = str(progress)
    child = Child("pipeline", spec, env)
    killed_in = None
    while child.proc.poll() is None:
        text = progress.read_text() if progress.exists() else ""
        if "start transform_staging" in text:
            time.sleep(0.5)
            lines = progress.read_text().split("\n")
            killed_in = next((line[6:] for line in reversed(lines) if line.startswith("start ")), None)
            child.kill()
            break
        time.sleep(0.05)
    first = child.wait(check=False)
    rerun = Child("pipeline", {**spec, "progress_file": None}, env).wait()
    if rerun.get("failed"):
        return {**rerun, "killed": killed_in is not None, "killed_during": killed_in,
                "rerun_equals_uninterrupted": False}
    rerun_tiers = read_tiers(Path(spec["tiers_file"]))
    reference = tiers.get("pipeline")
    result = {"killed": killed_in is not None, "killed_during": killed_in, "first_exit_code": first.get("exit_code"),
              "warehouse": "steady" if on_warehouse else "empty",
              "rerun_wall_s": rerun["months"][0]["wall_s"], "rerun_peak_rss_mb": rerun["peak_rss_mb"]}
    if reference is not None:
        cmp = compare("rerun after kill", rerun_tiers, "uninterrupted", reference)
        result.update(comparison=cmp, rerun_equals_uninterrupted=cmp["agree"])
    else:
        result["rerun_equals_uninterrupted"] = None
    log(f"kill: killed during {killed_in}; rerun equals uninterrupted run: {result['rerun_equals_uninterrupted']}")
    return result


def summarise(results: dict) -> dict:
    s = {name: r for name, r in results["scenarios"].items() if not r.get("failed")}
    out: dict = {}
    # the month through Airflow; without it (L), the steady-state month (the last month run after
    # the one before), else the spill run's month, through the steps
    run = ("month" if "month" in s else "steady" if "steady" in s else
           "spill" if s.get("spill", {}).get("finished") else None)
    if run:
        m = s[run]["months"][-1]
        out.update(month_wall_s=m["wall_s"], month_stages_s=m["stages_s"], month_peak_rss_mb=s[run]["peak_rss_mb"],
                   airflow_startup_s=s[run].get("airflow_startup_s"), ratios_from=run, month=m["month"],
                   month_steps_s=m["steps_total_s"], month_steps_cpu_s=m.get("steps_cpu_total_s"))
        dbt = m["stages_s"]["dbt"]
        if "sql" in s:
            out["dbt_over_single_query"] = round(dbt / s["sql"]["seconds"], 2)
            out["month_over_single_query"] = round(m["wall_s"] / s["sql"]["seconds"], 2)
        if "pandas" in s:
            out["dbt_over_pandas"] = round(dbt / s["pandas"]["seconds"], 2)
            out["month_over_pandas"] = round(m["wall_s"] / s["pandas"]["seconds"], 2)
    if "backfill" in s:
        b = s["backfill"]
        out.update(backfill_months=len(b["months"]), backfill_wall_s=round(sum(x["wall_s"] for x in b["months"]), 2),
                   backfill_peak_rss_mb=b["peak_rss_mb"])
    return out


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        value = f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"
    return f"{value}{unit}"


def markdown(results: dict) -> str:
    summary = results["summary"]
    s = {name: r for name, r in results["scenarios"].items() if not r.get("failed")}
    failed = {name: r for name, r in results["scenarios"].items() if r.get("failed")}
    rows = results["source"]["rows"]
    lines = [f"### Scale {results['scale']}: {results['customers']:,} customers, "
             f"{rows.get('orders.parquet', 0):,} order rows, {results['months_of_history']} months "
             f"(month measured: {results['month']})", "",
             f"Source generated in {_fmt(results['source'].get('generate_s'), ' s')} "
             f"({results['source'].get('bytes', 0) / 2**20:,.0f} MB Parquet); DuckDB threads "
             f"{results['duckdb_settings']['threads']}, memory_limit {results['duckdb_settings']['memory_limit']}; "
             f"measured {results['started_at']}.", ""]
    lines += ["| what | wall s | extract/land | dbt | GE | publish | other steps | Airflow overhead "
              "| peak RSS MB | load avg |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def stage_row(label, wall, stages, rss, load=None):
        cells = [_fmt(stages.get(k)) for k in ("extract_land", "dbt", "ge", "publish", "other")]
        lines.append(f"| {label} | {_fmt(wall)} | " + " | ".join(cells)
                     + f" | {_fmt(stages.get('airflow_overhead'))} | {_fmt(rss)} | {_fmt(load)} |")

    if "month" in s:
        m = s["month"]["months"][0]
        stage_row(f"one month ({m['month']}) via Airflow", m["wall_s"], m["stages_s"], s["month"]["peak_rss_mb"],
                  s["month"].get("mean_load_avg"))
    if "backfill" in s:
        b = s["backfill"]
        stage_row(f"backfill {len(b['months'])} months via Airflow (sum)", summary["backfill_wall_s"],
                  b["stages_total_s"], b["peak_rss_mb"], b.get("mean_load_avg"))
    if "mid" in s:
        for label in ("mid", "last"):
            m = s["mid"][label]["months"][0]
            stages = {k: v for k, v in m["stages_s"].items() if k != "airflow_overhead"}
            stage_row(f"month {m['month']} steps only", m["steps_total_s"], stages, s["mid"][label]["peak_rss_mb"],
                      s["mid"][label].get("mean_load_avg"))
    if "steady" in s:
        for i, m in enumerate(s["steady"]["months"]):
            if i % 2 == 0:
                stages = {k: v for k, v in m["stages_s"].items() if k != "airflow_overhead"}
                label = f"month {m['month']} steps, landed in full"
                wall = m["steps_total_s"]
            else:
                stages, before = m["stages_s"], s["steady"]["months"][i - 1]["month"]
                if m.get("via") == "airflow":
                    label = f"**month {m['month']} via Airflow, after {before}** (new partitions only)"
                    wall = m["wall_s"]
                else:
                    label, wall = f"month {m['month']} steps, after {before} (new partitions only)", m["steps_total_s"]
                    stages = {k: v for k, v in stages.items() if k != "airflow_overhead"}
            stage_row(label, wall, stages, s["steady"]["peak_rss_mb"], s["steady"].get("mean_load_avg"))
    if "spill" in s and s["spill"].get("finished"):
        m = s["spill"]["months"][0]
        stage_row(f"month {m['month']} steps, memory_limit {s['spill']['memory_limit']}", m["steps_total_s"],
                  m["stages_s"], s["spill"]["peak_rss_mb"], s["spill"].get("mean_load_avg"))
    for name, label in (("sql", "baseline (a): one DuckDB query"), ("pandas", "baseline (b): pandas")):
        if name in s:
            lines.append(f"| {label} | {_fmt(s[name]['seconds'])} | | | | | | | {_fmt(s[name]['peak_rss_mb'])} "
                         f"| {_fmt(s[name].get('mean_load_avg'))} |")
    for name, r in failed.items():
        why = ("killed at the time limit" if r.get("timed_out") else
               f"killed above {r.get('max_rss_mb')} MB RSS" if r.get("over_memory") else
               "killed by the kernel OOM killer" if r.get("exit_code") == -9 else f"exit {r.get('exit_code')}")
        lines.append(f"| {name}: FAILED ({why}) "
                     f"| {_fmt(r.get('wall_s'))} | | | | | | | {_fmt(r.get('peak_rss_mb'))} | |")
    lines.append("")
    facts = []
    if "dbt_over_single_query" in summary:
        source = {"spill": " (from the memory_limit run)",
                  "steady": " (from the steady-state month, after the month before)"
                  }.get(summary.get("ratios_from"), "")
        facts.append(f"dbt stage / single query: **{summary['dbt_over_single_query']}x**; "
                     f"whole month / single query: {summary['month_over_single_query']}x{source}")
    if "dbt_over_pandas" in summary:
        facts.append(f"dbt stage / pandas: {summary['dbt_over_pandas']}x; "
                     f"whole month / pandas: {summary['month_over_pandas']}x")
    startup = next((s[n]["airflow_startup_s"] for n in ("month", "steady") if s.get(n, {}).get("airflow_startup_s")),
                   None)
    if startup is not None:
        facts.append("Airflow start-up (DagBag, metadata DB, in-process Execution API; once per process): "
                     f"{_fmt(startup, ' s')}")
    if summary.get("month_steps_cpu_s"):
        facts.append(f"CPU time of month {summary['month']}'s steps (user + system, every thread): "
                     f"{_fmt(summary['month_steps_cpu_s'], ' s')} in {_fmt(summary['month_steps_s'], ' s')}, "
                     f"{summary['month_steps_cpu_s'] / summary['month_steps_s']:.2f} cores busy on average "
                     f"(DuckDB threads: {results['duckdb_settings']['threads']})")
    probes = results.get("speed_probe_s") or {}
    if probes:
        facts.append(f"machine speed probe (a fixed DuckDB aggregation on {results['duckdb_settings']['threads']} "
                     f"threads, median of 3; lower is faster; figures measured when it read differently are not "
                     f"comparable one to one): " + ", ".join(f"{k} {v:.3f} s" for k, v in probes.items()))
    if "mid" in s:
        facts.append(f"month {s['mid']['last']['months'][0]['month']} / month {s['mid']['mid']['months'][0]['month']} "
                     f"run cost (steps): {s['mid']['ratio_last_to_mid']}x")
    if "steady" in s and "ratio_last_to_mid" in s["steady"]:
        months = s["steady"]["months"]
        if "ratio_cold_last_to_mid" in s["steady"]:
            facts.append(f"landed in full: month {months[2]['month']} / month {months[0]['month']} run cost (steps): "
                         f"{s['steady']['ratio_cold_last_to_mid']}x")
        facts.append(f"steady state (each month run after the month before, new partitions only): month "
                     f"{months[3]['month']} / month {months[1]['month']} run cost (steps): "
                     f"**{s['steady']['ratio_last_to_mid']}x**")
    if "parse" in s:
        facts.append(f"DAG parse (DagBag of dags/): {s['parse']['dag_parse_s']} s "
                     f"(plus {s['parse']['airflow_import_s']} s to import airflow)")
    if "kill" in s:
        k = s["kill"]
        where = " (on the steady scenario's warehouse)" if k.get("warehouse") == "steady" else ""
        facts.append(f"kill-and-rerun{where}: killed during `{k['killed_during']}`, rerun equals uninterrupted run: "
                     f"**{k['rerun_equals_uninterrupted']}**")
    if "spill" in s:
        sp = s["spill"]
        if sp.get("finished"):
            facts.append(f"memory_limit {sp['memory_limit']}: finished, peak DuckDB temp directory "
                         f"{sp.get('peak_temp_dir_mb')} MB, tiers agree with the normal run: "
                         f"{sp['agreement_with_pipeline']['agree']}")
        else:
            facts.append(f"memory_limit {sp['memory_limit']}: FAILED (exit {sp.get('exit_code')})")
    agreement = results["agreement"]
    if not agreement["pairs"]:
        facts.append("agreement on every customer's value_tier: **not checked** (fewer than two of pipeline, "
                     "single query and pandas finished at this scale)")
    else:
        facts.append("agreement on every customer's value_tier: " + ", ".join(
            f"{p['pair']} {'agree' if p['agree'] else 'DISAGREE'} ({p['customers']:,} customers)"
            for p in agreement["pairs"]) + f" -> **{'PASS' if agreement['passed'] else 'FAIL'}**")
    if agreement["tier_counts"]:
        facts.append("value tiers: " + ", ".join(f"{n} {c}" for n, c in agreement["tier_counts"].items()))
    lines += [f"- {f}" for f in facts]
    return "\n".join(lines) + "\n"


def update_results_md(path: Path, scale: str, table: str) -> None:
    """Replace (or append) this scale's section between markers; keep the rest of the file."""
    begin, end = f"<!-- bench:{scale}:begin -->", f"<!-- bench:{scale}:end -->"
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    section = f"{begin}\n{table}{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
    log(f"updated {path} ({scale})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="S")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="directory of <scale>.json")
    parser.add_argument("--results-md", default=str(ROOT / "bench" / "RESULTS.md"),
                        help="markdown file whose section for the scale is updated ('' for none)")
    parser.add_argument("--work", help="working directory for data and warehouses (default /tmp/tiering-bench/<scale>)")
    parser.add_argument("--airflow-home", help="AIRFLOW_HOME of the runs (default <work>/../airflow-home)")
    parser.add_argument("--months-backfill", type=int, default=0,
                        help="also run the backfill scenario over this many months (opt-in; 12 is the issue's)")
    parser.add_argument("--skip-backfill", action="store_true", help="never run the backfill scenario")
    parser.add_argument("--memory-limit",
                        help="also run the month with this DuckDB memory_limit (spill test), e.g. 1GB")
    parser.add_argument("--threads", type=int,
                        default=int(os.environ.get("TIERING_DUCKDB_THREADS", os.cpu_count() or 2)))
    parser.add_argument("--duckdb-memory", default=os.environ.get("TIERING_DUCKDB_MEMORY_LIMIT", "1GB"),
                        help="DuckDB memory_limit of the measured runs and the baselines")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds after which a scenario's process tree is killed and reported as failed")
    parser.add_argument("--max-rss-gb", type=float, default=16,
                        help="kill a scenario whose process tree's RSS exceeds this (0: no limit)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(ALL_SCENARIOS)} "
                                       f"(default: {','.join(DEFAULT_SCENARIOS)}; spill with --memory-limit)")
    parser.add_argument("--steady-pairs", choices=("mid,last", "last"), default="mid,last",
                        help="steady scenario: months mid and last, each after the month before, or last only")
    parser.add_argument("--steady-last-via", choices=("airflow", "steps"), default="airflow",
                        help="steady scenario: run its last month through the Airflow DAG (default) or the steps")
    parser.add_argument("--child", choices=CHILD_MODES, help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    global MAX_RSS_BYTES
    MAX_RSS_BYTES = int(args.max_rss_gb * 2**30) if args.max_rss_gb else 0
    if args.child:
        spec = json.loads(args.spec)
        result = CHILD_MODES[args.child](spec)
        Path(spec["result_file"]).write_text(json.dumps(result, default=str))
        return 0
    return run_bench(args)


if __name__ == "__main__":
    sys.exit(main())
