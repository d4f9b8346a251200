"""erp_orders_to_salesforce: an ERP CSV upserted by external id with lookups by the Account's external id;
refused rows written with their errors; the task fails only above the threshold, and loses nothing."""

from __future__ import annotations

import csv
import importlib.util
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..emulator.helpers import Admin
from .conftest import EXAMPLES

NAME = "erp_orders_to_salesforce"


def _sample() -> Any:
    spec = importlib.util.spec_from_file_location("erp_sample", EXAMPLES / "erp_sample.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _drop(org: Admin, tmp_path: Path, count: int, bad_customers: int, bad_statuses: int) -> tuple[datetime, list]:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    customers = sorted(a["External_Id__c"] for a in org.records("Account", include_deleted=False))
    path = tmp_path / "erp" / f"orders_{today:%Y%m%d}.csv"
    rows = _sample().write_orders(path, count, customers, bad_customers=bad_customers, bad_statuses=bad_statuses)
    return today, rows


def _orders(org: Admin) -> dict[str, dict[str, Any]]:
    return {r["External_Id__c"]: r for r in org.records("ERP_Order__c", include_deleted=False)}


def test_orders_land_with_lookups_and_refused_rows_are_kept(
    example: Any, org: Admin, tmp_path: Path, execution_api: str
) -> None:
    today, rows = _drop(org, tmp_path, 500, bad_customers=6, bad_statuses=4)
    # A real executor runs the task in its own process (no triggerer here, so the wait is not deferred).
    run = example(NAME, SFINT_DEFERRABLE="false").test(logical_date=today, use_executor=True)
    assert {t.task_id: t.state for t in run.get_task_instances()} == {"upsert_orders": "success"}
    accounts = {a["External_Id__c"]: a["Id"] for a in org.records("Account", include_deleted=False)}
    stored = _orders(org)
    good = rows[10:]
    assert len(stored) == len(good)
    for row in good:
        rec = stored[row["order_no"]]
        assert rec["Account__c"] == accounts[row["customer_no"]]
        assert (rec["Status__c"], rec["Quantity__c"], rec["Notes__c"] or "") == (
            row["status"],
            int(row["quantity"]),
            row["notes"],
        )
        assert f"{rec['Amount__c']:.2f}" == row["amount"]
    failed_path = tmp_path / "erp" / "failed" / f"orders_{today:%Y%m%d}.failed.csv"
    with failed_path.open(newline="", encoding="utf-8") as f:
        failed = list(csv.DictReader(f))
    assert sorted(r["order_no"] for r in failed) == sorted(r["order_no"] for r in rows[:10])
    by_order = {r["order_no"]: r for r in failed}
    assert "UNKNOWN-0" in by_order[rows[0]["order_no"]]["sf__Error"]
    assert "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" in by_order[rows[9]["order_no"]]["sf__Error"]

    # The same drop again (a retry, a re-run): upserts, so nothing is created twice.
    again = example(NAME).test(logical_date=today)
    assert {t.task_id: t.state for t in again.get_task_instances()} == {"upsert_orders": "success"}
    assert len(org.records("ERP_Order__c", include_deleted=True)) == len(good)


def test_too_many_refused_rows_fail_the_task_but_lose_nothing(example: Any, org: Admin, tmp_path: Path) -> None:
    today, _ = _drop(org, tmp_path, 200, bad_customers=30, bad_statuses=10)
    run = example(NAME).test(logical_date=today)
    assert {t.task_id: t.state for t in run.get_task_instances()} == {"upsert_orders": "failed"}
    assert len(_orders(org)) == 160  # the good rows are in Salesforce
    failed_path = tmp_path / "erp" / "failed" / f"orders_{today:%Y%m%d}.failed.csv"
    with failed_path.open(newline="", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == 40  # and every refused row is in the file, with its error
