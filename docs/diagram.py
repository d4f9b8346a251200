"""Writes docs/data-paths.svg, the example pipelines' data paths, from the lanes below (``make diagrams``;
``tests/test_docs_examples.py`` checks the committed file is what this writes).

Each lane is a row of boxes joined by arrows, left to right: where the data starts in Salesforce, how it
travels, what in Airflow moves it, and where it lands."""

from __future__ import annotations

from html import escape
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data-paths.svg"

#: (title, [(box title, box note), ...]) per lane
LANES: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Bulk windows (salesforce_to_warehouse, @daily)",
        [
            ("Salesforce org", "records"),
            ("Bulk API 2.0", "query job per window"),
            ("SalesforceBulkQueryOperator", "worker: typed Parquet"),
            ("lake", "raw/<object>/<interval>.parquet"),
            ("merge", "by Id, deletes out"),
            ("warehouse", "DuckDB tables"),
        ],
    ),
    (
        "Change Data Capture (salesforce_cdc_to_warehouse, started by events)",
        [
            ("Salesforce org", "every write path"),
            ("Pub/Sub API", "/data/ChangeEvents"),
            ("SalesforceChannelTrigger", "triggerer: rings the watcher"),
            ("SalesforceChangeEventsOperator", "worker: parts + checkpoint"),
            ("lake", "changes/<Entity>/part-N.parquet"),
            ("apply", "field by field, once per part"),
            ("warehouse", "the same tables"),
        ],
    ),
    (
        "Platform events (salesforce_orders_to_erp, started by events)",
        [
            ("Opportunity won", "Apex trigger / event rule"),
            ("Pub/Sub API", "/event/Order_Event__e"),
            ("SalesforceChannelTrigger", "triggerer: rings the watcher"),
            ("SalesforceReadEventsOperator", "worker: parts + checkpoint"),
            ("lake", "events/Order_Event__e/part-N"),
            ("deliver", "Idempotency-Key = replay id"),
            ("ERP", "one order per event"),
        ],
    ),
]
BOX_W, BOX_H, GAP, LANE_H, LEFT, TOP = 206, 54, 22, 118, 16, 12
COLORS = {"lake": "#fff4d6", "warehouse": "#e3f4e1", "ERP": "#e3f4e1"}


def render() -> str:
    columns = max(len(boxes) for _, boxes in LANES)
    width = LEFT * 2 + columns * BOX_W + (columns - 1) * GAP
    height = TOP + len(LANES) * LANE_H
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    for lane, (title, boxes) in enumerate(LANES):
        y = TOP + lane * LANE_H
        parts.append(f'<text x="{LEFT}" y="{y + 16}" font-size="14" font-weight="bold">{escape(title)}</text>')
        box_y = y + 30
        for i, (name, note) in enumerate(boxes):
            x = LEFT + i * (BOX_W + GAP)
            fill = COLORS.get(name, "#e1f1fb")
            parts.append(
                f'<rect x="{x}" y="{box_y}" width="{BOX_W}" height="{BOX_H}" rx="8" fill="{fill}" stroke="#4a6d8c"/>'
            )
            size = 12 if len(name) <= 24 else 11
            parts.append(
                f'<text x="{x + BOX_W / 2}" y="{box_y + 22}" font-size="{size}" text-anchor="middle" '
                f'font-weight="bold">{escape(name)}</text>'
            )
            parts.append(
                f'<text x="{x + BOX_W / 2}" y="{box_y + 40}" font-size="10.5" text-anchor="middle" '
                f'fill="#333">{escape(note)}</text>'
            )
            if i:
                ax = x - GAP
                parts.append(
                    f'<line x1="{ax + 2}" y1="{box_y + BOX_H / 2}" x2="{x - 2}" y2="{box_y + BOX_H / 2}" '
                    'stroke="#555" stroke-width="1.6" marker-end="url(#arrow)"/>'
                )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
