"""Deterministic record generation for seeding orgs (admin API ``seed``, ``--seed demo``, benchmarks).

Values are generated column by column in chunks, which keeps a million-row seed fast and its memory
bounded. The same seed on the same starting state always produces the same records.

Run as ``python -m airflow_provider_sfint.emulator.datagen --db org.db --counts Account=1000``.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .clock import storage_datetime
from .ids import make_id
from .schema import STAGES, FieldDef, ObjectDef, load_org

if TYPE_CHECKING:
    from .app import Emulator

CHUNK = 50_000
TWO_YEARS = 730 * 86400

ADJECTIVES = [
    "Global",
    "United",
    "Pacific",
    "Northern",
    "Blue",
    "Bright",
    "Summit",
    "Pioneer",
    "Atlas",
    "Vertex",
    "Silver",
    "Granite",
    "Evergreen",
    "Harbor",
    "Quantum",
    "Crescent",
    "Redwood",
    "Sterling",
    "Apex",
    "Nova",
]
NOUNS = [
    "Dynamics",
    "Logistics",
    "Foods",
    "Energy",
    "Systems",
    "Health",
    "Partners",
    "Industries",
    "Labs",
    "Holdings",
    "Media",
    "Motors",
    "Analytics",
    "Retail",
    "Capital",
    "Networks",
    "Pharma",
    "Textiles",
]
SUFFIXES = ["Inc.", "LLC", "Ltd", "GmbH", "S.A.", "Corp.", "Group", "plc", "AG", "KK"]
FIRST = [
    "Ada",
    "Kwame",
    "Mei",
    "Olga",
    "Ravi",
    "Sofia",
    "Tariq",
    "Yuki",
    "Lena",
    "Diego",
    "Amara",
    "Jonas",
    "Priya",
    "Mateo",
    "Chloe",
    "Ibrahim",
    "Noor",
    "Elena",
    "Kenji",
    "Zanele",
]
LAST = [
    "Okafor",
    "Lindqvist",
    "Nakamura",
    "Haddad",
    "Fernandes",
    "Kowalski",
    "Mbeki",
    "O'Brien",
    "Rossi",
    "Chen",
    "Dubois",
    "Singh",
    "Novak",
    "García",
    "Müller",
    "Andersen",
    "Petrov",
    "Adeyemi",
    "Tanaka",
    "Walsh",
]
CITIES = [
    ("London", "", "GB"),
    ("Paris", "", "FR"),
    ("Berlin", "", "DE"),
    ("Austin", "TX", "US"),
    ("Seattle", "WA", "US"),
    ("Toronto", "ON", "CA"),
    ("Lagos", "", "NG"),
    ("Tokyo", "", "JP"),
    ("São Paulo", "SP", "BR"),
    ("Sydney", "NSW", "AU"),
    ("Mumbai", "MH", "IN"),
    ("Zürich", "", "CH"),
]
STREETS = [
    "1 Main St",
    "22 Harbour Rd",
    "350 Fifth Avenue",
    "10 Downing St",
    "5 Rue de Rivoli",
    "Unter den Linden 7",
    "12 Queen St W",
    "Suite 400\n88 Market St",
]
TITLES = ["CEO", "CFO", "VP Sales", "Data Engineer", "Analyst", "Procurement Manager", "CTO", "Head of Ops"]


def _timestamps(rng: random.Random, n: int, now: float) -> tuple[list[str], list[str]]:
    """(CreatedDate, SystemModstamp) pairs, SystemModstamp skewed towards the recent past."""
    created, modified = [], []
    fmt = storage_datetime
    for _ in range(n):
        age = TWO_YEARS * rng.random() ** 2
        mod = now - age
        cre = mod - rng.random() * (TWO_YEARS - age)
        created.append(fmt(datetime.fromtimestamp(int(cre), tz=UTC)))
        modified.append(fmt(datetime.fromtimestamp(int(mod), tz=UTC)))
    return created, modified


def _generic(f: FieldDef, rng: random.Random, n: int, start: int) -> list[Any]:
    t = f.type
    if t in ("picklist",):
        return [rng.choice(f.picklist) if f.picklist and rng.random() < 0.9 else None for _ in range(n)]
    if t == "multipicklist":
        return [
            ";".join(sorted(rng.sample(f.picklist, k=rng.randint(1, min(2, len(f.picklist)))))) if f.picklist else None
            for _ in range(n)
        ]
    if t == "boolean":
        return [int(rng.random() < 0.2) for _ in range(n)]
    if t == "int":
        top = min(10 ** (f.digits or 6) - 1, 100_000)
        return [rng.randint(0, top) for _ in range(n)]
    if t in ("double", "currency", "percent"):
        top = min(10 ** max(f.precision - f.scale, 1) - 1, 1_000_000)
        return [round(rng.random() * top, f.scale) for _ in range(n)]
    if t == "date":
        return [f"20{rng.randint(20, 26)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}" for _ in range(n)]
    if t == "datetime":
        return [
            f"20{rng.randint(20, 26)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00.000Z"
            for _ in range(n)
        ]
    if t == "email":
        return [f"user{start + i}@example.com" for i in range(n)]
    if f.unique or f.external_id:
        return [f"{f.name[:3].upper()}-{start + i:09d}" for i in range(n)]
    length = min(f.length or 80, 40)
    return [f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"[:length] for _ in range(n)]


Column = Callable[[random.Random, int, int], list[Any]]


def _pick(pool: Sequence[Any], none_share: float = 0.0) -> Column:
    def gen(rng: random.Random, n: int, start: int) -> list[Any]:
        return [None if none_share and rng.random() < none_share else rng.choice(pool) for _ in range(n)]

    return gen


def _account_columns(em: Emulator) -> dict[str, Column]:
    return {
        "Name": lambda rng, n, s: [
            f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(SUFFIXES)}" for _ in range(n)
        ],
        "External_Id__c": lambda rng, n, s: [f"ACC-{s + i:08d}" for i in range(n)],
        "AccountNumber": lambda rng, n, s: [f"AN{s + i:010d}" for i in range(n)],
        "BillingStreet": _pick(STREETS, 0.1),
        "BillingCity": lambda rng, n, s: [rng.choice(CITIES)[0] for _ in range(n)],
        "BillingCountry": lambda rng, n, s: [rng.choice(CITIES)[2] for _ in range(n)],
        "Website": lambda rng, n, s: [f"https://www.example{s + i}.com" for i in range(n)],
        "Phone": lambda rng, n, s: [f"+1 555 {rng.randint(100, 999)} {rng.randint(1000, 9999)}" for _ in range(n)],
        "Description": lambda rng, n, s: [
            None
            if rng.random() < 0.5
            else f"Customer since {2000 + rng.randint(0, 25)}.\nKey account: {rng.choice(['yes', 'no'])}"
            for _ in range(n)
        ],
        "AnnualRevenue": lambda rng, n, s: [
            None if rng.random() < 0.2 else float(rng.randint(1, 5000) * 10_000) for _ in range(n)
        ],
        "NumberOfEmployees": lambda rng, n, s: [rng.randint(1, 250_000) for _ in range(n)],
        "Account_Score__c": lambda rng, n, s: [None] * n,
        "ParentId": lambda rng, n, s: [None] * n,
    }


def _person_columns(prefix: str) -> dict[str, Column]:
    return {
        "FirstName": _pick(FIRST, 0.05),
        "LastName": _pick(LAST),
        "Email": lambda rng, n, s: [f"{prefix}{s + i}@example.com" for i in range(n)],
        "Title": _pick(TITLES, 0.3),
        "Phone": lambda rng, n, s: [f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}" for _ in range(n)],
        "External_Id__c": lambda rng, n, s: [f"{prefix.upper()}-{s + i:08d}" for i in range(n)],
    }


def _opportunity_columns() -> dict[str, Column]:
    return {
        "Name": lambda rng, n, s: [f"Deal {s + i}" for i in range(n)],
        "StageName": _pick(STAGES),
        "Amount": lambda rng, n, s: [
            None if rng.random() < 0.1 else round(rng.random() * 500_000, 2) for _ in range(n)
        ],
        "Probability": lambda rng, n, s: [float(rng.choice([10, 20, 50, 75, 90, 100])) for _ in range(n)],
        "CloseDate": lambda rng, n, s: [
            f"202{rng.randint(4, 7)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}" for _ in range(n)
        ],
        "External_Id__c": lambda rng, n, s: [f"OPP-{s + i:08d}" for i in range(n)],
    }


def _parent_column(em: Emulator, parent: str, none_share: float) -> Column:
    obj = em.org.objects[parent]
    total = em.store._next[parent] - 1

    def gen(rng: random.Random, n: int, start: int) -> list[Any]:
        if total <= 0:
            return [None] * n
        return [None if rng.random() < none_share else make_id(obj.key_prefix, rng.randint(1, total)) for _ in range(n)]

    return gen


def generate(em: Emulator, obj: ObjectDef, count: int, seed: int = 42, deleted_share: float = 0.02) -> int:
    """Insert ``count`` generated records of ``obj``; returns how many were inserted."""
    special: dict[str, Column] = {}
    if obj.name == "Account":
        special = _account_columns(em)
    elif obj.name in ("Contact", "Lead"):
        special = _person_columns(obj.name.lower())
        if obj.name == "Contact":
            special["AccountId"] = _parent_column(em, "Account", 0.05)
        else:
            special["Company"] = lambda rng, n, s: [f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}" for _ in range(n)]
    elif obj.name == "Opportunity":
        special = _opportunity_columns()
        special["AccountId"] = _parent_column(em, "Account", 0.02)
    elif obj.name == "Case":
        special = {
            "AccountId": _parent_column(em, "Account", 0.1),
            "ContactId": _parent_column(em, "Contact", 0.2),
            "Subject": lambda rng, n, s: [f"Issue #{s + i}" for i in range(n)],
        }
    owner = em.admin_user_id
    skip = {
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
    }
    fields = [
        f
        for f in obj.fields.values()
        if f.name not in skip and (f.createable or f.name in special) and f.type != "reference"
    ]
    fields += [f for f in obj.fields.values() if f.type == "reference" and f.name in special]
    if obj.field("Name") is not None and (obj.fields["Name"].createable or "Name" in special):
        fields.append(obj.fields["Name"])
    columns = [
        "Id",
        "IsDeleted",
        *([] if "OwnerId" not in obj.fields else ["OwnerId"]),
        "CreatedDate",
        "CreatedById",
        "LastModifiedDate",
        "LastModifiedById",
        "SystemModstamp",
        *[f.name for f in fields],
    ]
    derived_name = obj.name in ("Contact", "Lead")
    if derived_name:
        columns.append("Name")
    now = em.clock.time()
    inserted = 0
    while inserted < count:
        n = min(CHUNK, count - inserted)
        ids = em.store.allocate_ids(obj, n)
        start = ids[0][0]
        rng = random.Random(f"{seed}:{obj.name}:{start}")
        created, modified = _timestamps(rng, n, now)
        data: list[list[Any]] = [
            [rid for rid, _ in ids],
            [i for _, i in ids],
            [int(rng.random() < deleted_share) for _ in range(n)],
        ]
        if "OwnerId" in obj.fields:
            data.append([owner] * n)
        data += [created, [owner] * n, modified, [owner] * n, modified]
        by_name: dict[str, list[Any]] = {}
        for f in fields:
            gen = special.get(f.name)
            values = gen(rng, n, start) if gen else _generic(f, rng, n, start)
            by_name[f.name] = values
            data.append(values)
        if derived_name:
            data.append(
                [
                    " ".join(p for p in (a, b) if p)
                    for a, b in zip(by_name["FirstName"], by_name["LastName"], strict=True)
                ]
            )
        em.store.insert_many(obj, columns, zip(*data, strict=True))
        inserted += n
    return inserted


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
    args = parser.parse_args(argv)
    em = Emulator(load_org(args.org), db_path=args.db, seed="empty")
    for pair in args.counts:
        name, _, n = pair.partition("=")
        obj = em.org.get(name)
        if obj is None:
            parser.error(f"unknown object {name!r}")
        print(f"{obj.name}: {generate(em, obj, int(n), seed=args.seed)} records")


if __name__ == "__main__":
    main()
