"""Deterministic record generation for seeding orgs (admin API ``seed``, ``--seed demo``, benchmarks).

Values are generated column by column in chunks, which keeps a million-row seed fast and its memory
bounded. The same seed on the same starting state always produces the same records.

Run as ``python -m airflow_provider_sfint.emulator.datagen --db org.db --counts Account=1000``.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import random
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .dml import sf_trim
from .ids import make_id, make_ids
from .schema import STAGES, FieldDef, ObjectDef, Org, load_org
from .store import Store
from .wordlists import ADJECTIVES, CITIES, FIRST, LAST, NOUNS, STREETS, SUFFIXES, TITLES

if TYPE_CHECKING:
    from .app import Emulator

log = logging.getLogger(__name__)

CHUNK = 50_000
PARALLEL_THRESHOLD = 200_000
TWO_YEARS = 730 * 86400


def _day_string(day: int, cache: dict[int, str]) -> str:
    text = cache.get(day)
    if text is None:
        text = cache[day] = datetime.fromtimestamp(day * 86400, tz=UTC).strftime("%Y-%m-%d")
    return text


_CLOCK_TIMES: list[str] = []


def _timestamps(rng: random.Random, n: int, now: float) -> tuple[list[str], list[str]]:
    """(CreatedDate, SystemModstamp) pairs, SystemModstamp skewed towards the recent past."""
    if not _CLOCK_TIMES:
        _CLOCK_TIMES.extend(f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.000Z" for s in range(86400))
    times = _CLOCK_TIMES
    rand = rng.random
    cache: dict[int, str] = {}
    created, modified = [], []
    for _ in range(n):
        age = TWO_YEARS * rand() ** 2
        mod = int(now - age)
        cre = int(mod - rand() * (TWO_YEARS - age))
        day = mod // 86400
        modified.append((cache.get(day) or _day_string(day, cache)) + times[mod - day * 86400])
        day = cre // 86400
        created.append((cache.get(day) or _day_string(day, cache)) + times[cre - day * 86400])
    return created, modified


def _ints(rng: random.Random, n: int, low: int, high: int) -> list[int]:
    """n integers in [low, high], via random() (much faster than randint per value)."""
    rand, span = rng.random, high - low + 1
    return [low + int(rand() * span) for _ in range(n)]


def _nulls(rng: random.Random, values: list[Any], share: float) -> list[Any]:
    if not share:
        return values
    rand = rng.random
    return [None if rand() < share else v for v in values]


def _generic(f: FieldDef, rng: random.Random, n: int, start: int) -> list[Any]:
    t = f.type
    rand = rng.random
    if t == "picklist":
        return _nulls(rng, rng.choices(f.picklist, k=n), 0.1) if f.picklist else [None] * n
    if t == "multipicklist":
        if not f.picklist:
            return [None] * n
        pairs = [
            ";".join(sorted({a, b}))
            for a, b in zip(rng.choices(f.picklist, k=n), rng.choices(f.picklist, k=n), strict=True)
        ]
        return pairs
    if t == "boolean":
        return [int(rand() < 0.2) for _ in range(n)]
    if t == "int":
        return _ints(rng, n, 0, min(10 ** (f.digits or 6) - 1, 100_000))
    if t in ("double", "currency", "percent"):
        top = min(10 ** max(f.precision - f.scale, 1) - 1, 1_000_000)
        return [round(rand() * top, f.scale) for _ in range(n)]
    if t == "date":
        return [
            f"20{y}-{m:02d}-{d:02d}"
            for y, m, d in zip(_ints(rng, n, 20, 26), _ints(rng, n, 1, 12), _ints(rng, n, 1, 28), strict=True)
        ]
    if t == "datetime":
        return [
            f"20{y}-{m:02d}-{d:02d}T{h:02d}:{mi:02d}:00.000Z"
            for y, m, d, h, mi in zip(
                _ints(rng, n, 20, 26),
                _ints(rng, n, 1, 12),
                _ints(rng, n, 1, 28),
                _ints(rng, n, 0, 23),
                _ints(rng, n, 0, 59),
                strict=True,
            )
        ]
    if t == "email":
        return [f"user{start + i}@example.com" for i in range(n)]
    if f.unique or f.external_id:
        return [f"{f.name[:3].upper()}-{start + i:09d}" for i in range(n)]
    return rng.choices(_text_pool(min(f.length or 80, 40)), k=n)


#: Values that break naive CSV, JSON and NA handling. Each must survive a round trip exactly, except for
#: Salesforce's own rule (spec 4.9a): leading/trailing chars <= U+0020 are trimmed and blank becomes null.
HOSTILE_VALUES = [
    "line\nfeed",
    "carriage\r\nreturn",
    "lone\rcr",
    "line\u2028separator",
    "next\x85line",
    "form\x0cfeed",
    "vertical\x0btab",
    'say "hi"',
    'doubled ""quotes""',
    '"',
    "comma, inside",
    "semi;colon",
    "pipe|bar",
    "tab\tin",
    "caret^hat",
    "back`tick",
    "emoji \U0001f600\U0001f469\u200d\U0001f4bb",
    "漢字とかな",
    "مرحبا بالعالم",
    "e\u0301 combining",
    "NA",
    "N/A",
    "null",
    "NULL",
    "NaN",
    "#N/A",
    "None",
    "  leading and trailing  ",
    "   ",
    "=SUM(A1:A2)",
    "+1 555",
    "-minus",
    "@mention",
    "\\backslash\\",
    "'single'",
    'a,"b"\nc',
]


def hostile_text(rng: random.Random, length: int) -> str:
    """One hostile value that fits ``length``: usually from HOSTILE_VALUES, sometimes long mixed text."""
    if length >= 1000 and rng.random() < 0.05:
        size = rng.choice([1000, min(length, 32_000), length])
        unit = 'x,"\n\u00e9\U0001f600 '
        return (unit * (size // len(unit) + 1))[:size]
    return rng.choice(HOSTILE_VALUES)[:length]


_TEXT_POOLS: dict[int, list[str]] = {}


def _text_pool(length: int) -> list[str]:
    if length not in _TEXT_POOLS:
        _TEXT_POOLS[length] = [f"{a} {b}"[:length] for a in ADJECTIVES for b in NOUNS]
    return _TEXT_POOLS[length]


Column = Callable[[random.Random, int, int], list[Any]]


def _pick(pool: Sequence[Any], none_share: float = 0.0) -> Column:
    def gen(rng: random.Random, n: int, start: int) -> list[Any]:
        return _nulls(rng, rng.choices(pool, k=n), none_share)

    return gen


def _names(*pools: Sequence[str]) -> Column:
    def gen(rng: random.Random, n: int, start: int) -> list[Any]:
        return [" ".join(parts) for parts in zip(*(rng.choices(p, k=n) for p in pools), strict=True)]

    return gen


def _account_columns() -> dict[str, Column]:
    return {
        "Name": _names(ADJECTIVES, NOUNS, SUFFIXES),
        "External_Id__c": lambda rng, n, s: [f"ACC-{s + i:08d}" for i in range(n)],
        "AccountNumber": lambda rng, n, s: [f"AN{s + i:010d}" for i in range(n)],
        "BillingStreet": _pick(STREETS, 0.1),
        "BillingCity": _pick([c[0] for c in CITIES]),
        "BillingCountry": _pick([c[2] for c in CITIES]),
        "Website": lambda rng, n, s: [f"https://www.example{s + i}.com" for i in range(n)],
        "Phone": lambda rng, n, s: [
            f"+1 555 {a} {b}" for a, b in zip(_ints(rng, n, 100, 999), _ints(rng, n, 1000, 9999), strict=True)
        ],
        "Description": lambda rng, n, s: _nulls(
            rng,
            [
                f"Customer since {y}.\nKey account: {k}"
                for y, k in zip(_ints(rng, n, 2000, 2025), rng.choices(["yes", "no"], k=n), strict=True)
            ],
            0.5,
        ),
        "AnnualRevenue": lambda rng, n, s: _nulls(rng, [float(v * 10_000) for v in _ints(rng, n, 1, 5000)], 0.2),
        "NumberOfEmployees": lambda rng, n, s: _ints(rng, n, 1, 250_000),
        "Account_Score__c": lambda rng, n, s: [None] * n,
        "ParentId": lambda rng, n, s: [None] * n,
    }


def _person_columns(prefix: str) -> dict[str, Column]:
    return {
        "FirstName": _pick(FIRST, 0.05),
        "LastName": _pick(LAST),
        "Email": lambda rng, n, s: [f"{prefix}{s + i}@example.com" for i in range(n)],
        "Title": _pick(TITLES, 0.3),
        "Phone": lambda rng, n, s: [
            f"+44 20 {a} {b}" for a, b in zip(_ints(rng, n, 1000, 9999), _ints(rng, n, 1000, 9999), strict=True)
        ],
        "External_Id__c": lambda rng, n, s: [f"{prefix.upper()}-{s + i:08d}" for i in range(n)],
    }


def _opportunity_columns() -> dict[str, Column]:
    return {
        "Name": lambda rng, n, s: [f"Deal {s + i}" for i in range(n)],
        "StageName": _pick(STAGES),
        "Amount": lambda rng, n, s: _nulls(rng, [round(rng.random() * 500_000, 2) for _ in range(n)], 0.1),
        "Probability": _pick([10.0, 20.0, 50.0, 75.0, 90.0, 100.0]),
        "CloseDate": lambda rng, n, s: [
            f"202{y}-{m:02d}-{d:02d}"
            for y, m, d in zip(_ints(rng, n, 4, 7), _ints(rng, n, 1, 12), _ints(rng, n, 1, 28), strict=True)
        ],
        "External_Id__c": lambda rng, n, s: [f"OPP-{s + i:08d}" for i in range(n)],
    }


def _parent_column(prefix: str, total: int, none_share: float) -> Column:
    def gen(rng: random.Random, n: int, start: int) -> list[Any]:
        if total <= 0:
            return [None] * n
        return _nulls(rng, [make_id(prefix, k) for k in _ints(rng, n, 1, total)], none_share)

    return gen


SYSTEM_COLUMNS = (
    "Id",
    "IsDeleted",
    "OwnerId",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
    "MasterRecordId",
    "Name",
)


@dataclass(frozen=True)
class GenerationPlan:
    """Everything needed to generate rows of one object; picklable, so worker processes can use it."""

    org: Org
    object_name: str
    seed: int
    deleted_share: float
    owner: str
    now: float
    parent_totals: dict[str, int]
    hostile: bool = False  # text fields get HOSTILE_VALUES (and long text) instead of plain words
    burst_share: float = 0.0  # share of rows whose SystemModstamp is one of a few shared instants


# Fields Salesforce derives on save, by object: field -> the generated field it is derived from.
DERIVED = {
    "Opportunity": {
        "IsClosed": "StageName",
        "IsWon": "StageName",
        "FiscalYear": "CloseDate",
        "FiscalQuarter": "CloseDate",
    },
    "Case": {"IsClosed": "Status"},
}


class _Generator:
    def __init__(self, plan: GenerationPlan) -> None:
        self.plan = plan
        obj = self.obj = plan.org.objects[plan.object_name]
        totals = plan.parent_totals
        special: dict[str, Column] = {}
        if obj.name == "Account":
            special = _account_columns()
        elif obj.name in ("Contact", "Lead"):
            special = _person_columns(obj.name.lower())
            if obj.name == "Contact":
                special["AccountId"] = _parent_column("001", totals.get("Account", 0), 0.05)
            else:
                special["Company"] = _names(ADJECTIVES, NOUNS)
        elif obj.name == "Opportunity":
            special = _opportunity_columns()
            special["AccountId"] = _parent_column("001", totals.get("Account", 0), 0.02)
        elif obj.name == "Case":
            special = {
                "AccountId": _parent_column("001", totals.get("Account", 0), 0.1),
                "ContactId": _parent_column("003", totals.get("Contact", 0), 0.2),
                "Subject": lambda rng, n, s: [f"Issue #{s + i}" for i in range(n)],
                "CaseNumber": lambda rng, n, s: [f"{s + i + 1000:08d}" for i in range(n)],  # the auto-number
            }
        self.special = special
        fields = [
            f
            for f in obj.fields.values()
            if f.name not in SYSTEM_COLUMNS and (f.createable or f.name in special) and f.type != "reference"
        ]
        fields += [f for f in obj.fields.values() if f.type == "reference" and f.name in special]
        if obj.field("Name") is not None and (obj.fields["Name"].createable or "Name" in special):
            fields.append(obj.fields["Name"])
        self.fields = fields
        self.derived_name = obj.name in ("Contact", "Lead")
        # Derived fields (DERIVED; dml.py sets them for API writes): never null in a real org.
        generated = {f.name for f in fields}
        self.derived: list[str] = [
            name
            for name, source in DERIVED.get(obj.name, {}).items()
            if name in obj.fields and name not in generated and source in generated
        ]
        self.columns = [
            "Id",
            "IsDeleted",
            *(["OwnerId"] if "OwnerId" in obj.fields else []),
            "CreatedDate",
            "CreatedById",
            "LastModifiedDate",
            "LastModifiedById",
            "SystemModstamp",
            *[f.name for f in fields],
            *(["Name"] if self.derived_name else []),
            *self.derived,
        ]

    def build(self, start: int, n: int) -> list[tuple[Any, ...]]:
        """Rows ``start .. start+n-1`` (row numbers), each ``(rid, *columns)``."""
        plan, obj = self.plan, self.obj
        rng = random.Random(f"{plan.seed}:{obj.name}:{start}")
        created, modified = _timestamps(rng, n, plan.now)
        if plan.burst_share:
            # Bursts: many records sharing one SystemModstamp (bulk updates), e.g. on a window boundary.
            instants = [modified[int(rng.random() * n)] for _ in range(3)]
            modified = [instants[int(rng.random() * 3)] if rng.random() < plan.burst_share else m for m in modified]
        rand = rng.random
        owner = plan.owner
        data: list[Any] = [
            range(start, start + n),
            make_ids(obj.key_prefix, start, n),
            [int(rand() < plan.deleted_share) for _ in range(n)],
        ]
        if "OwnerId" in obj.fields:
            data.append([owner] * n)
        data += [created, [owner] * n, modified, [owner] * n, modified]
        by_name: dict[str, list[Any]] = {}
        for f in self.fields:
            gen = self.special.get(f.name)
            hostile = plan.hostile and f.type in ("string", "textarea") and not (f.unique or f.external_id)
            if hostile and f.name not in ("LastName", "Company", "Name"):
                # Stored as Salesforce stores strings (spec 4.9a): trimmed, blank as null.
                values = [sf_trim(hostile_text(rng, f.length)) if rng.random() < 0.7 else None for _ in range(n)]
                by_name[f.name] = values
                data.append(values)
                continue
            values = gen(rng, n, start) if gen else _generic(f, rng, n, start)
            by_name[f.name] = values
            data.append(values)
        if self.derived_name:
            data.append(
                [
                    " ".join(p for p in (a, b) if p)
                    for a, b in zip(by_name["FirstName"], by_name["LastName"], strict=True)
                ]
            )
        for name in self.derived:
            data.append(self._derive(name, by_name))
        return list(zip(*data, strict=True))

    def _derive(self, name: str, by_name: dict[str, list[Any]]) -> list[Any]:
        if self.obj.name == "Case":
            return [int(v == "Closed") for v in by_name["Status"]]
        stages = by_name["StageName"]
        if name == "IsClosed":
            return [int(v in ("Closed Won", "Closed Lost")) for v in stages]
        if name == "IsWon":
            return [int(v == "Closed Won") for v in stages]
        dates = by_name["CloseDate"]
        if name == "FiscalYear":
            return [int(d[:4]) if d else None for d in dates]
        return [(int(d[5:7]) - 1) // 3 + 1 if d else None for d in dates]


def _chunks(start: int, count: int) -> list[tuple[int, int]]:
    """(first row number, size) of each chunk; chunk boundaries fix the random streams."""
    return [(start + offset, min(CHUNK, count - offset)) for offset in range(0, count, CHUNK)]


def _write_part(plan: GenerationPlan, path: str, chunks: list[tuple[int, int]]) -> str:
    """Worker process: generate ``chunks`` into a fresh SQLite file with the org's schema."""
    generator = _Generator(plan)
    store = Store(plan.org, path)
    obj = generator.obj
    with store.bulk_load(obj):
        for start, n in chunks:
            store.insert_many(obj, generator.columns, generator.build(start, n))
    store.conn.close()
    return path


def generate(
    em: Emulator,
    obj: ObjectDef,
    count: int,
    seed: int = 42,
    deleted_share: float = 0.02,
    processes: int | None = None,
    hostile: bool = False,
    burst_share: float = 0.0,
) -> int:
    """Insert ``count`` generated records of ``obj``; returns how many were inserted.

    Large counts are generated by worker processes (one per core), each into its own SQLite file, and
    merged with ``INSERT ... SELECT``; the rows are the same whatever the number of processes.
    """
    if count <= 0:
        return 0
    totals = {name: em.store._next[name] - 1 for name in ("Account", "Contact")}
    # Anchored to midnight of the emulator's day, so a seed gives the same records all day long.
    now = float(int(em.clock.time()) // 86400 * 86400)
    plan = GenerationPlan(em.org, obj.name, seed, deleted_share, em.admin_user_id, now, totals, hostile, burst_share)
    chunks = _chunks(em.store.allocate_rids(obj, count), count)
    workers = processes or (os.cpu_count() or 1)
    if workers > 1 and count >= PARALLEL_THRESHOLD:
        try:
            _generate_parallel(em, plan, chunks, workers)
            return count
        except (BrokenProcessPool, OSError, RuntimeError) as exc:
            # Spawned workers re-import __main__; where that cannot work (a script read from stdin, some
            # notebooks), generate in this process instead: the rows are the same.
            log.warning("parallel generation unavailable (%s); generating in-process", exc)
    generator = _Generator(plan)
    # Build the next chunk in a thread while SQLite (which releases the GIL in its B-tree work) inserts
    # the current one.
    with em.store.bulk_load(obj), ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(generator.build, *chunks[0])
        for index in range(len(chunks)):
            rows = pending.result()
            if index + 1 < len(chunks):
                pending = pool.submit(generator.build, *chunks[index + 1])
            em.store.insert_many(obj, generator.columns, rows)
    return count


def _generate_parallel(em: Emulator, plan: GenerationPlan, chunks: list[tuple[int, int]], workers: int) -> None:
    obj = em.org.objects[plan.object_name]
    parts = [chunks[i::workers] for i in range(workers)]
    with tempfile.TemporaryDirectory(prefix="sfint-datagen-", dir=em.data_dir) as tmp:
        paths = [os.path.join(tmp, f"part{i}.db") for i in range(len(parts))]
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            done = list(pool.map(_write_part, [plan] * len(parts), paths, parts))
        with em.store.bulk_load(obj), em.store.lock:
            for i, path in enumerate(done):
                em.store.conn.execute(f"ATTACH DATABASE ? AS part{i}", (path,))
            em.store.conn.execute("BEGIN")
            union = " UNION ALL ".join(f"SELECT * FROM part{i}.{obj.table}" for i in range(len(done)))
            em.store.conn.execute(f"INSERT INTO {obj.table} SELECT * FROM ({union}) ORDER BY rid")
            em.store.conn.execute("COMMIT")
            for i in range(len(done)):
                em.store.conn.execute(f"DETACH DATABASE part{i}")


DEMO_SHAPE = {"Account": 1.0, "Contact": 2.0, "Opportunity": 1.5, "Lead": 0.5, "Case": 0.5}


def seed_demo(em: Emulator, records: int | None = None, seed: int = 42) -> dict[str, int]:
    """The demo org's data: ``records`` Accounts (default 1,000) and related records in proportion."""
    accounts = 1000 if records is None else records
    counts = {name: int(accounts * share) for name, share in DEMO_SHAPE.items()}
    for name, n in counts.items():
        generate(em, em.org.objects[name], n, seed=seed)
    return counts


def main(argv: list[str] | None = None) -> None:
    from .app import Emulator

    parser = argparse.ArgumentParser(description="Generate a deterministic org database for the emulator.")
    parser.add_argument(
        "--db", required=True, help="SQLite file to create (an existing org database there is replaced)"
    )
    parser.add_argument("--org", help="org YAML (default: the bundled demo org)")
    parser.add_argument("--counts", nargs="+", default=["Account=1000"], help="Object=N pairs")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--hostile", action="store_true", help="fill text fields with CSV/NA-hostile values")
    parser.add_argument(
        "--burst-share",
        type=float,
        default=0.0,
        help="share of rows whose SystemModstamp is one of a few shared instants",
    )
    args = parser.parse_args(argv)
    em = Emulator(load_org(args.org), db_path=args.db, seed="empty")
    for pair in args.counts:
        name, _, n = pair.partition("=")
        obj = em.org.get(name)
        if obj is None:
            parser.error(f"unknown object {name!r}")
        inserted = generate(em, obj, int(n), seed=args.seed, hostile=args.hostile, burst_share=args.burst_share)
        print(f"{obj.name}: {inserted} records")


if __name__ == "__main__":
    main()
