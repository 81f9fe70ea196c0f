"""Customers' personal data (name, e-mail, phone): the one place the project keeps it, how it is
read, and the forget list that keeps erased data from landing again.

The personal columns land apart from the rest of the change log (tiering.landing): beside each
version of a customers partition, one file with the same partition and version number,

    <landing root>/customers/updated_month=<YYYY-MM>/v<N>.parquet            (no personal column)
    <landing root>/customers_personal/updated_month=<YYYY-MM>/v<N>.parquet   customer_id, updated_at,
                                                    name, email, phone, _source_line, landing_partition

No fingerprint, catalog hash or input checksum covers the personal files: blanking a person's
values in them changes no fingerprint, no restatement check and no result.

Contact data of a month (`contact_sql`): of each customer, the personal columns of its latest
landed version (by updated_at, then source line, as the as-of models pick versions) with an
updated_at before the month's end, among the partition versions a run read (its landing manifest).
PostgreSQL's pii.customers (tiering.pg_publish) and `tiering crm-export --include-contact`
(tiering.crm) read it, from the run they publish or the month's last successful run. The version
picked is the latest landed one, valid or not: contact data is not subject to the row rules.

The forget list, `<landing root>/_forgotten.json`: the pseudonymous keys (tiering.pseudonym) of the
customers `tiering forget` erased, and a check value of the secret they were keyed with. Whenever
personal partitions are landed (a new month, a --restate, the partition `unparseable` again), the
rows of those customers land with name, e-mail and phone NULL (`blank_forgotten`, called by the
landing), and publishing leaves them out of pii.customers: what the source still holds does not
come back. A secret other than the list's refuses to land personal partitions (the list could
not tell those customers apart any more).
"""
from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from tiering.errors import TieringError
from tiering.files import atomic_write, replace_atomically
from tiering.pseudonym import KEY_ENV, customer_key, customer_keys
from tiering.source import TABLES, UNPARSEABLE, sql_literal

PERSONAL_TABLE = "customers"
PERSONAL_LOG = "customers_personal"          # tiering.landing: the table's name + PERSONAL_SUFFIX
PERSONAL_COLUMNS = TABLES[PERSONAL_TABLE].personal     # name, email, phone
FORGET_LIST = "_forgotten.json"
# what the forget list's `key_check` is the key of: tells whether the list was keyed with this secret
KEY_CHECK_PROBE = "tiering forget list key check"
READ_ONLY = 0o444    # as the landing leaves every landed file


class ForgetListError(TieringError):
    """The forget list cannot be applied (keyed with another secret, or unreadable)."""


# --------------------------------------------------------------------------- personal files

def personal_file(landed_file: str | Path) -> Path:
    """The personal file beside a landed customers file: .../customers/<key>=<p>/v<N>.parquet ->
    .../customers_personal/<key>=<p>/v<N>.parquet."""
    landed_file = Path(landed_file)
    if landed_file.parent.parent.name != PERSONAL_TABLE:
        raise ValueError(f"{landed_file} is no landed {PERSONAL_TABLE} file: it has no personal file")
    return landed_file.parent.parent.parent / PERSONAL_LOG / landed_file.parent.name / landed_file.name


def personal_files(root: Path, with_leftovers: bool = True) -> list[Path]:
    """Every personal file under the landing root: each partition version, and (with_leftovers) those a
    killed landing left under _tmp/<run_id>/ (they hold personal data as much as the log does)."""
    files = sorted(Path(root).glob(f"{PERSONAL_LOG}/*/*.parquet"))
    if with_leftovers:
        files += sorted(Path(root).glob(f"_tmp/*/{PERSONAL_LOG}/*.parquet"))
    return files


def run_manifest_path(con, run_id: str) -> Path:
    """Where a run's landing manifest is (audit.runs.landing_dir, in the landing root of the
    warehouse `con` has open: tiering.landing.manifest_path), or a TieringError."""
    from tiering.landing import manifest_path

    rows = con.execute("select landing_dir from audit.runs where run_id = ?", [run_id]).fetchall()
    if not rows or not rows[0][0]:
        raise TieringError(f"run {run_id} has no landing manifest in audit.runs; run the month again")
    # (fetchall: a result left unfinished blocks the connection's next query on DuckDB 2)
    warehouse = con.execute("select path from duckdb_databases() where database_name = current_database()"
                            ).fetchall()[0][0]
    return manifest_path(warehouse, rows[0][0])


def read_run_manifest(run_id: str, path: Path) -> dict:
    if not Path(path).name.endswith(".json"):   # a run of the previous core (tiering.migrate): its landing folder
        raise TieringError(f"run {run_id} was made by the core before the change log (its inputs were the folder "
                           f"{path}, not a change-log manifest): its contact data are not in the change log; run "
                           f"the month again (docs/upgrading.md)")
    from tiering.landing import load_manifest

    try:
        return load_manifest(path)
    except (OSError, ValueError) as exc:
        raise TieringError(f"the landing manifest of run {run_id} ({path}) is not readable ({exc}); "
                           f"run the month again") from None


def run_manifest(con, run_id: str) -> dict:
    """The landing manifest of a run (what it read from the change log), or a TieringError."""
    return read_run_manifest(run_id, run_manifest_path(con, run_id))


def landing_root_of(manifest_path: str | Path) -> Path:
    """The landing root a manifest (<root>/_runs/<run_id>.json) belongs to."""
    return Path(manifest_path).parent.parent


def contact_sql(manifest: dict) -> str:
    """DuckDB SQL (no parameters): customer_id, name, email, phone, updated_at (timestamptz) of each
    customer's latest personal version as of the manifest's month end (see the module's docstring).
    Values as landed (text as in the source; NULL where erased)."""
    partitions = manifest["tables"].get(PERSONAL_TABLE, {}).get("partitions", {})
    files = [str(personal_file(v["file"])) for p, v in sorted(partitions.items()) if p != UNPARSEABLE]
    if not files:
        return ("select null::varchar as customer_id, null::varchar as name, null::varchar as email, "
                "null::varchar as phone, null::timestamptz as updated_at where false")
    missing = [f for f in files if not Path(f).exists()]
    if missing:
        raise TieringError(f"personal file {missing[0]} of run {manifest.get('run_id')} is missing "
                           f"({len(missing)} of {len(files)}); the landing root was moved or files were deleted "
                           f"by hand: rerun the month with --restate to land them again")
    listed = ", ".join(map(sql_literal, files))
    personal = ", ".join(PERSONAL_COLUMNS)
    return f"""
        with personal_versions as (
            select customer_id, {personal}, _source_line,
                   try_cast(updated_at as timestamptz) as updated_at
            from read_parquet([{listed}], hive_partitioning = false)
            where nullif(trim(customer_id), '') is not null
        ),
        latest_versions as (
            select *, row_number() over (partition by customer_id
                                         order by updated_at desc, _source_line desc) as version_rank
            from personal_versions
            where updated_at < cast({sql_literal(manifest['as_of_cutoff'])} as timestamptz)
                and isfinite(updated_at)
        )
        select customer_id, {personal}, updated_at
        from latest_versions
        where version_rank = 1
        order by customer_id"""


# --------------------------------------------------------------------------- blanking rows

def blank_rows(con, files: list[Path], customer_ids: list[str]) -> dict[Path, int]:
    """Rewrite each file whose rows of these customers hold a personal value, with those values NULL
    (every other value and row as it was, same column order, same permissions), atomically. Returns
    {file: rows blanked} of the files rewritten."""
    from tiering.landing import PARQUET

    if not files or not customer_ids:
        return {}
    con.execute("create or replace temp table erased_customers (customer_id varchar)")
    con.executemany("insert into erased_customers values (?)", [[c] for c in customer_ids])
    held = " or ".join(f"{c} is not null" for c in PERSONAL_COLUMNS)
    listed = ", ".join(sql_literal(str(f)) for f in files)
    hits = con.execute(f"""select filename, count(*)
                           from read_parquet([{listed}], filename = true, hive_partitioning = false)
                           where customer_id in (select customer_id from erased_customers) and ({held})
                           group by filename""").fetchall()
    rewritten = {}
    for name, rows in sorted(hits):
        path = Path(name)
        columns = [r[0] for r in con.execute(
            f"describe select * from read_parquet({sql_literal(name)}, hive_partitioning = false)").fetchall()]
        select = ", ".join(
            f"case when customer_id in (select customer_id from erased_customers) then null else {c} end as {c}"
            if c in PERSONAL_COLUMNS else c for c in columns)
        mode = path.stat().st_mode & 0o777
        with replace_atomically(path) as staging:
            con.execute(f"copy (select {select} from read_parquet({sql_literal(name)}, hive_partitioning = false)) "
                        f"to {sql_literal(str(staging))} ({PARQUET})")
            os.chmod(staging, mode)
        rewritten[path] = rows
    con.execute("drop table erased_customers")
    return rewritten


# --------------------------------------------------------------------------- the forget list

def forget_list_path(root: Path) -> Path:
    return Path(root) / FORGET_LIST


def _key_check() -> str:
    return customer_key(KEY_CHECK_PROBE)


def read_forget_list(root: Path) -> dict:
    path = forget_list_path(root)
    if not path.exists():
        return {"key_check": _key_check(), "customers": {}}
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("customers"), dict):
            raise ValueError("no 'customers' object")
        return data
    except (OSError, ValueError) as exc:
        raise ForgetListError(f"{path}: the forget list is not readable ({exc}); restore it from a backup: "
                              f"without it, erased personal data would land again") from None


def forgotten_keys(root: Path) -> set[str]:
    """The keys on the forget list (empty when there is none). A list keyed with another secret
    raises ForgetListError: its keys would match no customer, and erased data would land again."""
    data = read_forget_list(root)
    if data["customers"] and data.get("key_check") != _key_check():
        raise ForgetListError(
            f"{forget_list_path(root)}: the forget list was keyed with another {KEY_ENV} than the one set now, "
            f"so the {len(data['customers'])} customer(s) on it cannot be recognised and their erased personal "
            f"data would land again; set {KEY_ENV} back to the secret the list was made with")
    return set(data["customers"])


def add_to_forget_list(root: Path, customer_id: str) -> tuple[str, bool]:
    """Put the customer's key on the forget list (written atomically). Returns (key, whether new)."""
    data = read_forget_list(root)
    if data["customers"] and data.get("key_check") != _key_check():
        forgotten_keys(root)   # raises the error that says why
    key = customer_key(customer_id)
    new = key not in data["customers"]
    if new:
        data["customers"][key] = {"forgotten_at": datetime.now(UTC).isoformat(timespec="seconds")}
        data["key_check"] = _key_check()
        Path(root).mkdir(parents=True, exist_ok=True)
        atomic_write(forget_list_path(root), json.dumps(data, indent=1, sort_keys=True))
    return key, new


def blank_forgotten(con, folder: Path, root: Path) -> int:
    """The landing's hook: in the personal files about to be landed (under `folder`, the run's _tmp),
    NULL the personal values of the customers on the forget list of `root`. Returns the rows
    blanked. Costs nothing while the list is empty; otherwise one key per customer in the files."""
    files = sorted(Path(folder).glob(f"{PERSONAL_LOG}/*.parquet"))
    keys = forgotten_keys(root) if files else set()
    if not keys:
        return 0
    ids = [r[0] for r in con.execute(
        f"select distinct customer_id from read_parquet([{', '.join(sql_literal(str(f)) for f in files)}], "
        f"hive_partitioning = false) where customer_id is not null").fetchall()]
    erased = [i for i, k in zip(ids, customer_keys(ids), strict=True) if k in keys]
    return sum(blank_rows(con, files, erased).values())
