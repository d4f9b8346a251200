"""Writes a sample ERP order drop (for the demo and the tests): ``python erp_sample.py FOLDER DATE``."""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

STATUSES = ["Draft", "Submitted", "Shipped", "Cancelled"]


def write_orders(
    path: Path, count: int, customers: list[str], *, bad_customers: int = 0, bad_statuses: int = 0, seed: int = 7
) -> list[dict[str, str]]:
    """``count`` orders; the first ``bad_customers`` name a customer Salesforce does not know, the next
    ``bad_statuses`` a status the picklist refuses. Returns the rows as written."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        status = rng.choice(STATUSES)
        customer = rng.choice(customers)
        if i < bad_customers:
            customer = f"UNKNOWN-{i}"
        elif i < bad_customers + bad_statuses:
            status = "Lost in transit"
        rows.append(
            {
                "order_no": f"ERP-{path.stem}-{i:06d}",
                "customer_no": customer,
                "amount": f"{rng.random() * 10_000:.2f}",
                "quantity": str(rng.randint(1, 500)),
                "order_date": f"2026-{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d}",
                "shipped_at": "2026-11-02T10:15:00Z" if status == "Shipped" else "",
                "status": status,
                "buyer_email": f"buyer{i}@example.com",
                "notes": rng.choice(["", "Rush", 'He said "ASAP", twice', "Line one\nline two"]),
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


if __name__ == "__main__":
    folder, day = Path(sys.argv[1]), sys.argv[2]
    accounts = [f"ACC-{n:08d}" for n in range(1, 201)]
    written = write_orders(folder / f"orders_{day}.csv", 1000, accounts, bad_customers=10, bad_statuses=10)
    print(f"wrote {len(written)} orders to {folder / f'orders_{day}.csv'}")
