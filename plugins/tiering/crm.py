"""`tiering crm-export`: a month of marts.crm_actions_monthly as a CRM bulk-import file.

    tiering crm-export --month 2024-06 --format csv|jsonl --out FILE [--include-contact]

One record per action (columns: EXPORT_COLUMNS, schema: crm_action.schema.json, docs/crm.md).
Customers are identified only by their pseudonymous key (tiering.pseudonym); `upsert_key` is
stable per customer and action, so importing the same month again (or the next month) updates
the CRM's records instead of duplicating them. Personal data (name, e-mail, phone) leaves the
warehouse only with `--include-contact`, and only when the caller's role is allowed to read it:
the environment variable TIERING_PII_ACCESS=1 (set for the PII-reader role only). Contact data is
each customer's latest personal version as of the month end in the landing's personal change log, as
read by the month's last successful run (tiering.personal): NULL for a customer `tiering forget`
erased. The file is written atomically (temporary file in the same directory, then renamed).
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from pathlib import Path

from tiering.errors import TieringError
from tiering.files import atomic_write
from tiering.runspec import parse_month

SCHEMA_PATH = Path(__file__).with_name("crm_action.schema.json")
PII_ENV = "TIERING_PII_ACCESS"

EXPORT_COLUMNS = ("upsert_key", "customer_key", "action", "tier", "value_tier", "potential_tier",
                  "due_date", "reason", "month")
CONTACT_COLUMNS = ("contact_name", "contact_email", "contact_phone")

ACTIONS_SQL = """
select
    actions.upsert_key,
    actions.customer_key,
    actions.action,
    actions.final_tier as tier,
    actions.value_tier,
    actions.potential_tier,
    strftime(actions.due_date, '%Y-%m-%d') as due_date,
    actions.reason,
    strftime(actions.month, '%Y-%m') as month{contact_select}
from marts.crm_actions_monthly as actions{contact_join}
where actions.month = ?
order by actions.upsert_key
"""

# each customer's contact data as of the month end, from the personal change log the month's last
# successful run read (tiering.personal.contact_sql)
CONTACT_JOIN = """
left join (
{contact_sql}
) as contact on contact.customer_id = actions.customer_id"""
CONTACT_SELECT = """,
    nullif(trim(contact.name), '') as contact_name,
    nullif(trim(contact.email), '') as contact_email,
    nullif(trim(contact.phone), '') as contact_phone"""


def pii_allowed() -> bool:
    return os.environ.get(PII_ENV) == "1"


def read_actions(warehouse: Path, month_text: str, include_contact: bool = False) -> list[dict]:
    """The month's actions as export records (dicts in EXPORT_COLUMNS order, + contact columns)."""
    import duckdb

    from tiering.personal import contact_sql, run_manifest
    from tiering.runs import require_successful_run
    from tiering.warehouse import connect

    month = parse_month(month_text)
    if include_contact and not pii_allowed():
        raise TieringError(f"--include-contact exports personal data: only a role allowed to read it may do so "
                           f"(set {PII_ENV}=1 for that role); run without --include-contact for the "
                           f"pseudonymous export")
    if not Path(warehouse).exists():
        raise TieringError(f"warehouse {warehouse} not found; run the month first (tiering run)")
    con = connect(warehouse, read_only=True)
    try:
        run_id = require_successful_run(con, month, warehouse)   # the marts hold the month's last successful run
        try:
            computed = con.execute("select count(*) from marts.customer_tier_monthly where month = ?",
                                   [month]).fetchone()[0]
            if not computed:
                raise TieringError(f"month {month_text} has not been computed in {warehouse}; "
                                   f"run it first (tiering run --month {month_text})")
            contact_join = CONTACT_JOIN.format(contact_sql=contact_sql(run_manifest(con, run_id))) \
                if include_contact else ""
            sql = ACTIONS_SQL.format(contact_select=CONTACT_SELECT if include_contact else "",
                                     contact_join=contact_join)
            cursor = con.execute(sql, [month])
        except duckdb.CatalogException as exc:
            raise TieringError(f"{warehouse} has no CRM actions table ({str(exc).splitlines()[0]}); "
                               f"rerun the month with this version of the pipeline") from None
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()


def render(records: list[dict], fmt: str, include_contact: bool = False) -> str:
    """CSV (header + one line per record, empty field for NULL) or JSON Lines (null for NULL)."""
    columns = EXPORT_COLUMNS + (CONTACT_COLUMNS if include_contact else ())
    if fmt == "jsonl":
        return "".join(json.dumps({c: r.get(c) for c in columns}, ensure_ascii=False) + "\n" for r in records)
    if fmt != "csv":
        raise TieringError(f"unknown export format {fmt!r}: use csv or jsonl")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def export(warehouse: Path, month_text: str, fmt: str, out: Path, include_contact: bool = False) -> dict:
    records = read_actions(warehouse, month_text, include_contact)
    # readable by the owner only, as the file may hold contact data (--include-contact)
    atomic_write(out, render(records, fmt, include_contact), mode=0o600)
    return {"month": month_text, "rows": len(records), "file": str(out),
            "actions": dict(sorted(Counter(r["action"] for r in records).items())),
            "contact": include_contact}


def cli_crm_export(args) -> None:
    result = export(args.warehouse, args.month, args.format, args.out, args.include_contact)
    actions = ", ".join(f"{a}: {n}" for a, n in result["actions"].items()) or "none"
    print(f"crm-export {result['month']}: {result['rows']} action(s) ({actions}) written to {result['file']}"
          + (" with contact data" if result["contact"] else " (pseudonymous keys only)"))
