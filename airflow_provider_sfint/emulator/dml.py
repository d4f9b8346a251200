"""Record writes as the real org does them: coercion, validation, defaults, system fields.

Every write path (REST sObject resources, Collections, Composite, Tree, Bulk ingest) goes through
``Writer`` so that the same input gives the same error codes and messages whichever API sent it.
"""

from __future__ import annotations

import base64
import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .clock import Clock, storage_datetime
from .errors import ApiError, RecordError, json_parser_error
from .eventbus import Change
from .formula import Context, Formula, compile_formula
from .ids import make_id, make_ids, to18
from .schema import FieldDef, ObjectDef, Org
from .store import Store

if TYPE_CHECKING:
    from .eventbus import EventBus

EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
TEXT_FIELD_TYPES = frozenset(
    {"string", "textarea", "picklist", "multipicklist", "email", "phone", "url", "combobox", "encryptedstring"}
)
DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})Z?$")
#: the dateTime forms Salesforce documents for writes: a T, seconds, optional milliseconds, Z or an offset
WRITE_DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2})$")


def sf_trim(value: str) -> str | None:
    """Salesforce stores strings without leading/trailing chars <= U+0020; empty becomes null."""
    if value and value[0] > " " and value[-1] > " ":
        return value  # the common case: nothing to trim
    i, j = 0, len(value)
    while i < j and value[i] <= " ":
        i += 1
    while j > i and value[j - 1] <= " ":
        j -= 1
    trimmed = value[i:j]
    return trimmed or None


class ValueTypeError(Exception):
    """A value that cannot be the field's type (JSON_PARSER_ERROR in REST, a failed row in Bulk)."""

    def __init__(self, f: FieldDef, value: Any) -> None:
        super().__init__(f"{value!r} is not a valid value for the type {f.describe()['soapType']}")
        self.field = f
        self.value = value


def parse_datetime(text: str) -> datetime | None:
    m = DATETIME_RE.match(text.strip())
    if not m:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        micro = int((frac or "0")[:6].ljust(6, "0"))
        value = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), micro, tzinfo=UTC)
    except ValueError:
        return None
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 60 + int(digits[2:]))
        value = value - timedelta(minutes=offset)
    return value


@functools.lru_cache(maxsize=256)
def _compiled(obj_name: str, fields: tuple[str, ...], text: str) -> Formula:
    return compile_formula(text, {name.lower(): name for name in fields})


def formula_for(obj: ObjectDef, text: str) -> Formula:
    return _compiled(obj.name, tuple(obj.fields), text)


def _formula_value(f: FieldDef, value: Any) -> Any:
    """A formula's result in the stored form of its return type (blank when it cannot be one)."""
    if value is None or value == "":
        return 0 if f.type == "boolean" else None
    if f.type == "boolean":
        return int(bool(value))
    if f.type in ("double", "currency", "percent"):
        try:
            return round(float(value), f.scale) if f.scale else float(value)
        except (TypeError, ValueError):
            return None
    if f.type == "date":
        text = str(value)
        return text if len(text) == 10 and text[4] == "-" else None
    return str(value)[:255]


def coerce(f: FieldDef, value: Any) -> Any:
    """Turn a JSON (or CSV) value into the stored form for ``f``; raise ValueTypeError if impossible.

    Errors that Salesforce reports as validation failures (length, picklist, e-mail, range) are
    raised as RecordError; values that cannot even be deserialised raise ValueTypeError.
    """
    if value is None:
        return None
    t = f.type
    if t in TEXT_FIELD_TYPES:
        if type(value) is str:
            if "\x00" in value:
                value = value.replace("\x00", "")
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int | float):
            value = str(value)
        elif not isinstance(value, str):
            raise ValueTypeError(f, value)
        text = sf_trim(value)
        if text is None:
            return None
        if len(text) > f.length:
            raise RecordError(
                "STRING_TOO_LONG", f"{f.label}: data value too large: {text[:100]} (max length={f.length})", [f.name]
            )
        if t == "email" and not EMAIL_RE.match(text):
            raise RecordError("INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {text}", [f.name])
        if t == "picklist" and f.restricted and text not in f.picklist:
            raise RecordError(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{f.label}: bad value for restricted picklist field: {text}",
                [f.name],
            )
        if t == "multipicklist":
            items = [sf_trim(v) for v in text.split(";")]
            parts = [v for v in items if v]
            if f.restricted or f.custom:
                for item in parts:
                    if f.picklist and item not in f.picklist:
                        raise RecordError(
                            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                            f"{f.label}: bad value for restricted picklist field: {item}",
                            [f.name],
                        )
            text = ";".join(dict.fromkeys(parts))
        return text
    if t == "boolean":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return int(value.strip().lower() in ("true", "1"))
        raise ValueTypeError(f, value)
    if t == "int":
        if isinstance(value, bool):
            raise ValueTypeError(f, value)
        try:
            number = float(value) if isinstance(value, str) else value
        except ValueError:
            raise ValueTypeError(f, value) from None
        if not isinstance(number, int | float) or not math.isfinite(number) or number != int(number):
            raise ValueTypeError(f, value)
        if f.digits and abs(int(number)) >= 10**f.digits:
            raise RecordError(
                "NUMBER_OUTSIDE_VALID_RANGE",
                f"{f.label}: value outside of valid range on numeric field: {value}",
                [f.name],
            )
        return int(number)
    if t in ("double", "currency", "percent"):
        if isinstance(value, bool):
            raise ValueTypeError(f, value)
        try:
            number = float(value) if isinstance(value, str) else value
        except ValueError:
            raise ValueTypeError(f, value) from None
        if not isinstance(number, int | float) or not math.isfinite(number):
            raise ValueTypeError(f, value)
        number = round(float(number), f.scale)
        if f.precision and abs(number) >= 10 ** (f.precision - f.scale):
            raise RecordError(
                "NUMBER_OUTSIDE_VALID_RANGE",
                f"{f.label}: value outside of valid range on numeric field: {value}",
                [f.name],
            )
        return number
    if t == "date":  # YYYY-MM-DD only: a datetime in a date field fails, as on Salesforce
        if not isinstance(value, str):
            raise ValueTypeError(f, value)
        m = DATE_RE.match(value.strip())
        if not m:
            raise ValueTypeError(f, value)
        try:
            return date(int(m[1]), int(m[2]), int(m[3])).isoformat()
        except ValueError:
            raise ValueTypeError(f, value) from None
    if t == "datetime":  # the documented forms only: no space separator, no bare date, a zone required
        if not isinstance(value, str) or not WRITE_DATETIME_RE.match(value.strip()):
            raise ValueTypeError(f, value)
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValueTypeError(f, value)
        return storage_datetime(parsed.replace(microsecond=0))  # stored in whole seconds, as orgs return them
    if t == "time":
        if not isinstance(value, str) or not re.match(r"^\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?Z?$", value):
            raise ValueTypeError(f, value)
        return value.rstrip("Z")
    if t == "base64":  # the content, base64-encoded in the JSON body (or the CSV cell)
        if not isinstance(value, str):
            raise ValueTypeError(f, value)
        try:
            base64.b64decode(value, validate=True)
        except ValueError:
            raise ValueTypeError(f, value) from None
        return value
    if t == "anyType":
        return "true" if value is True else "false" if value is False else str(value)
    if t in ("reference", "id"):
        if not isinstance(value, str):
            raise ValueTypeError(f, value)
        text = value.strip()
        if not text:
            return None
        normal = to18(text)
        if normal is None:
            raise RecordError("MALFORMED_ID", f"{f.label}: id value of incorrect type: {text}", [f.name])
        return normal
    raise ValueTypeError(f, value)


@dataclass
class WriteResult:
    id: str
    created: bool


class Writer:
    """Applies creates, updates, upserts and deletes to the store with Salesforce's rules."""

    def __init__(
        self,
        org: Org,
        store: Store,
        clock: Clock,
        user_id: str,
        lock_fault: Callable[[], bool] | None = None,
        raw_type_errors: bool = False,
        events: EventBus | None = None,
        origin: str = "",
    ) -> None:
        self.org = org
        self.events = events
        self.origin = origin  # the change events' changeOrigin
        self.store = store
        self.clock = clock
        self.user_id = user_id
        self.lock_fault = lock_fault or (lambda: False)
        self.raw_type_errors = raw_type_errors
        self._known_refs: set[str] = set()
        self._stamp_key = -1
        self._stamp_text = ""
        self._stamp_serial = -1
        self._deferred: list[tuple[int, dict[str, Any]]] = []
        self._reserved: list[tuple[int, str]] = []
        self._pending_unique: dict[tuple[str, str], dict[Any, str]] = {}
        self._pending_ids: set[str] = set()
        self._preloaded: dict[tuple[str, str], dict[Any, str]] = {}

    # --- field-level preparation ----------------------------------------------------------------

    def _resolve_relationship(self, obj: ObjectDef, key: str, value: Any) -> tuple[FieldDef, str | None]:
        ref = obj.relationship(key)
        if ref is None:
            raise RecordError("INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}")
        if value is None:
            return ref, None
        if not isinstance(value, dict):
            raise json_parser_error(
                f"Cannot deserialize instance of reference from {type(value).__name__} value for field {key}"
            )
        target = self.org.get(ref.reference_to[0])
        assert target is not None
        keys = [k for k in value if k != "attributes"]
        if len(keys) != 1:
            raise RecordError(
                "INVALID_FIELD",
                f"Foreign key external ID must specify exactly one field for relationship {key}",
                [ref.name],
            )
        ext_name = keys[0]
        ext = target.field(ext_name)
        if ext is None or not (ext.external_id or ext.id_lookup):
            raise RecordError(
                "INVALID_FIELD",
                f"Foreign key external ID field {ext_name} is not an external id or id lookup field on {target.name}",
                [ref.name],
            )
        raw = value[ext_name]
        lookup = coerce(ext, raw) if ext.type != "id" else to18(str(raw))
        ids = self.store.find(target, ext.name, lookup) if lookup is not None else []
        if not ids and lookup is not None:
            key = lookup.lower() if isinstance(lookup, str) and not ext.case_sensitive else lookup
            pending = self._pending_unique.get((target.name, ext.name), {}).get(key)
            ids = [pending] if pending else []
        if not ids:
            raise RecordError(
                "INVALID_FIELD",
                f"Foreign key external ID: {raw} not found for field {ext.name} in entity {target.name}",
                [ref.name],
            )
        if len(ids) > 1:
            raise RecordError(
                "INVALID_FIELD",
                f"Foreign key external ID: {raw} matches multiple records for field {ext.name} in entity {target.name}",
                [ref.name],
            )
        return ref, ids[0]

    def _check_reference(self, f: FieldDef, ref_id: str) -> None:
        if ref_id == self.user_id or ref_id in self._known_refs or ref_id in self._pending_ids:
            return  # the writing user, or a parent this writer already found alive
        target = self.org.get(f.reference_to[0])
        assert target is not None
        if not ref_id.startswith(target.key_prefix):
            raise RecordError("FIELD_INTEGRITY_EXCEPTION", f"{f.label}: id value of incorrect type: {ref_id}", [f.name])
        row = self.store.get(target, ref_id)
        if row is None:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [f.name])
        if row["IsDeleted"]:
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted", [f.name])
        if len(self._known_refs) < 100_000:
            self._known_refs.add(ref_id)

    def prepare(
        self, obj: ObjectDef, body: dict[str, Any], *, creating: bool, ignore: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """Validate and coerce ``body`` into column values (without system fields)."""
        values: dict[str, Any] = {}
        for key, raw in body.items():
            if key == "attributes" or (ignore and key.lower() in ignore):
                continue
            f = obj.field(key)
            if f is None:
                ref, ref_id = self._resolve_relationship(obj, key, raw)
                values[ref.name] = ref_id
                continue
            if f.name == "Id":
                if creating:
                    raise RecordError(
                        "INVALID_FIELD_FOR_INSERT_UPDATE", "Record ID: cannot specify Id in an insert call", ["Id"]
                    )
                continue
            if (creating and not f.createable) or (not creating and not f.updateable):
                raise RecordError(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {f.name}. Please check the security settings of this "
                    f"field and verify that it is read/write for your profile or permission set.",
                    [f.name],
                )
            try:
                value = coerce(f, raw)
            except ValueTypeError as exc:
                if self.raw_type_errors:
                    raise  # Bulk reports these as failed rows with the column number
                raise json_parser_error(
                    f"Cannot deserialize instance of {f.describe()['soapType'].split(':')[1]} from "
                    f"{type(raw).__name__.upper()} value {raw} or request may be missing a required field"
                ) from exc
            if f.type == "boolean" and value is None:
                value = 0
            values[f.name] = value
        return values

    def _finish(
        self, obj: ObjectDef, values: dict[str, Any], current: dict[str, Any] | None, record_id: str | None
    ) -> None:
        """Defaults, references, required fields, uniqueness and derived fields."""
        if current:
            merged = dict(current)
            merged.update(values)
        else:
            merged = values  # a create: nothing to merge (read only below)
        for f in obj.reference_fields:
            if values.get(f.name):
                self._check_reference(f, values[f.name])
        missing = [f.name for f in obj.required_fields if merged.get(f.name) is None]
        if missing:
            raise RecordError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)
        for f in obj.unique_fields:
            if values.get(f.name) is not None:
                for other in self._same_value(obj, f, values[f.name]):
                    if other != record_id:
                        raise RecordError(
                            "DUPLICATE_VALUE",
                            f"duplicate value found: {f.name} duplicates value on record with id: {other}",
                            [],
                        )
        if obj.name in ("Contact", "Lead", "User") and ("FirstName" in values or "LastName" in values):
            values["Name"] = " ".join(p for p in (merged.get("FirstName"), merged.get("LastName")) if p)
        if obj.name == "Opportunity":
            stage = merged.get("StageName")
            values["IsClosed"] = int(stage in ("Closed Won", "Closed Lost"))
            values["IsWon"] = int(stage == "Closed Won")
            if merged.get("CloseDate"):
                year, month = int(merged["CloseDate"][:4]), int(merged["CloseDate"][5:7])
                values["FiscalYear"], values["FiscalQuarter"] = year, (month - 1) // 3 + 1
        if obj.name == "Case" and "Status" in values:
            closed = values["Status"] == "Closed"
            values["IsClosed"] = int(closed)
            values["ClosedDate"] = storage_datetime(self.clock.now()) if closed else None
        if obj.formula_fields or self.org.rules_for(obj.name):
            self._org_rules(obj, values, current, record_id)

    def _org_rules(
        self, obj: ObjectDef, values: dict[str, Any], current: dict[str, Any] | None, record_id: str | None
    ) -> None:
        """What the org does on its own on every write: formula fields computed, then validation rules and
        duplicate rules checked (on the record as it will be stored)."""
        merged = {**current, **values} if current else values
        types = {f.name: f.type for f in obj.fields.values()}
        for f in obj.formula_fields:
            value = formula_for(obj, str(f.formula))(Context(merged, current, types))
            values[f.name] = merged[f.name] = _formula_value(f, value)
        validation, duplicates = self.org.rules_for(obj.name)
        for rule in validation:
            if rule.active and formula_for(obj, rule.condition)(Context(merged, current, types)):
                raise RecordError(
                    "FIELD_CUSTOM_VALIDATION_EXCEPTION", rule.message, [rule.error_field] if rule.error_field else []
                )
        for dup in duplicates:
            blank = all(merged.get(n) in (None, "") for n in dup.match)
            if (
                dup.block
                and not blank
                and self.store.find_matching(obj, {n: merged.get(n) for n in dup.match}, record_id)
            ):
                raise RecordError("DUPLICATES_DETECTED", "Use one of these records?", [])

    def _same_value(self, obj: ObjectDef, f: FieldDef, value: Any) -> list[str]:
        """Ids of records (stored, or pending in a deferred batch) whose unique ``f`` equals ``value``."""
        key = value.lower() if isinstance(value, str) and not f.case_sensitive else value
        pending = self._pending_unique.get((obj.name, f.name), {}).get(key)
        preloaded = self._preloaded.get((obj.name, f.name))
        if preloaded is not None:
            stored = preloaded.get(key)
            found = [stored] if stored else []
        else:
            found = self.store.find(obj, f.name, value)
        return [*found, pending] if pending else found

    def begin_deferred(self, obj: ObjectDef, rows: list[dict[str, Any]], expected_creates: int) -> None:
        """Start a batch of deferred creates: unique values looked up once, ids reserved in one go.

        Validation stays exactly as for single creates; only the INSERTs wait for :meth:`flush_deferred`.
        """
        self._deferred = []
        self._pending_unique = {}
        self._preloaded = {}
        for f in obj.unique_fields:
            wanted = {r[f.name] for r in rows if r.get(f.name) not in (None, "", "#N/A")}
            found: dict[Any, str] = {}
            values = list(wanted)
            for start in range(0, len(values), 500):
                chunk = values[start : start + 500]
                marks = ",".join("?" * len(chunk))
                _, hits = self.store.query(
                    f'SELECT "{f.name}", "Id" FROM {obj.table} WHERE "{f.name}" IN ({marks}) AND "IsDeleted" = 0', chunk
                )
                for value, record_id in hits:
                    found.setdefault(
                        value.lower() if isinstance(value, str) and not f.case_sensitive else value, record_id
                    )
            self._preloaded[(obj.name, f.name)] = found
        start = self.store.allocate_rids(obj, expected_creates)
        self._reserved = list(
            zip(range(start, start + expected_creates), make_ids(obj.key_prefix, start, expected_creates), strict=True)
        )
        self._reserved.reverse()

    def flush_deferred(self, obj: ObjectDef) -> None:
        """Insert the batch's validated creates with one executemany per column set."""
        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for rid, values in self._deferred:
            groups.setdefault(tuple(values), []).append((rid, *values.values()))
        for columns, rows in groups.items():
            self.store.insert_rows(obj, columns, rows)
        self._deferred = []
        self._pending_unique = {}
        self._pending_ids = set()
        self._preloaded = {}
        self._reserved = []

    def _stamp(self) -> str:
        """The current time in stored form (formatted at most once per millisecond). Inside a transaction
        every write gets the transaction's first timestamp, as Salesforce stamps one DML transaction."""
        if self.store.in_transaction:
            if self._stamp_serial != self.store.txn_serial:
                self._stamp_serial = self.store.txn_serial
                self._stamp_key = -1
            elif self._stamp_key != -1:
                return self._stamp_text
        seconds = self.clock.time()
        key = int(seconds * 1000)
        if key != self._stamp_key:
            self._stamp_key = key
            self._stamp_text = storage_datetime(datetime.fromtimestamp(key / 1000, tz=UTC))
        return self._stamp_text

    def _lock(self, record_id: str | None) -> None:
        if self.lock_fault():
            raise RecordError(
                "UNABLE_TO_LOCK_ROW",
                f"unable to obtain exclusive access to this record or 1 records: {record_id or ''}",
                [],
            )

    # --- operations -----------------------------------------------------------------------------

    def create(self, obj: ObjectDef, body: dict[str, Any], ignore: frozenset[str] = frozenset()) -> str:
        values = self.prepare(obj, body, creating=True, ignore=ignore)
        for default_field, default in obj.create_defaults:
            if values.get(default_field) is None:
                values[default_field] = default
        if "OwnerId" in obj.fields and not values.get("OwnerId"):
            values["OwnerId"] = self.user_id
        self._finish(obj, values, None, None)
        self._lock(None)
        if obj.name == "Case":
            values["CaseNumber"] = f"{self.store.count(obj) + len(self._deferred) + 1001:08d}"
        now = self._stamp()
        values.update(
            IsDeleted=0,
            CreatedDate=now,
            LastModifiedDate=now,
            SystemModstamp=now,
            CreatedById=self.user_id,
            LastModifiedById=self.user_id,
        )
        if self._reserved:  # a deferred batch: insert later, remember unique values now
            rid, record_id = self._reserved.pop()
            values["Id"] = record_id
            if obj.custom and "Name" in obj.fields and values.get("Name") is None:
                values["Name"] = record_id
            for f in obj.unique_fields:
                value = values.get(f.name)
                if value is not None:
                    key = value.lower() if isinstance(value, str) and not f.case_sensitive else value
                    self._pending_unique.setdefault((obj.name, f.name), {})[key] = record_id
            self._deferred.append((rid, values))
            self._pending_ids.add(record_id)
            self._changed(obj, "CREATE", record_id, values)
            return record_id
        record_id = self.store.insert(obj, values)
        name = obj.fields.get("Name")
        if obj.custom and name is not None and values.get("Name") is None:
            self.store.update(obj, record_id, {"Name": record_id})
            values["Name"] = record_id
        self._changed(obj, "CREATE", record_id, values)
        return record_id

    def _changed(
        self, obj: ObjectDef, kind: str, record_id: str, values: dict[str, Any], nulled: frozenset[str] = frozenset()
    ) -> None:
        if self.events is not None:
            self.events.record(Change(obj, kind, record_id, values, self.user_id, self.origin, nulled))

    def load(self, obj: ObjectDef, record_id: str) -> dict[str, Any]:
        """The live record, or the error Salesforce gives for a missing or deleted one."""
        normal = to18(record_id)
        if normal is None or not normal.startswith(obj.key_prefix):
            raise RecordError("MALFORMED_ID", f"{obj.label} ID: id value of incorrect type: {record_id}", ["Id"])
        row = self.store.get(obj, normal)
        if row is None:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
        if row["IsDeleted"]:
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted", [])
        return row

    def update(self, obj: ObjectDef, record_id: str, body: dict[str, Any], ignore: frozenset[str] = frozenset()) -> str:
        current = self.load(obj, record_id)
        values = self.prepare(obj, body, creating=False, ignore=ignore)
        self._finish(obj, values, current, current["Id"])
        self._lock(current["Id"])
        now = self._stamp()
        values.update(LastModifiedDate=now, SystemModstamp=now, LastModifiedById=self.user_id)
        self.store.update(obj, current["Id"], values)
        if self.events is not None:
            # what the change event carries: the fields whose value changed (LastModifiedDate always)
            changed = {k: v for k, v in values.items() if current.get(k) != v or k == "LastModifiedDate"}
            nulled = frozenset(k for k, v in changed.items() if v is None)
            self._changed(obj, "UPDATE", str(current["Id"]), changed, nulled)
        return str(current["Id"])

    def upsert(
        self, obj: ObjectDef, ext_name: str, ext_value: Any, body: dict[str, Any], known: list[str] | None = None
    ) -> WriteResult:
        """Update the record ``ext_name`` = ``ext_value`` matches, or create it. ``known``: the matching ids
        when the caller already looked them up (a Bulk batch looks up all its external ids at once)."""
        ext = obj.field(ext_name)
        if ext is None or not (ext.external_id or ext.id_lookup or ext.name == "Id"):
            raise ApiError(
                404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {ext_name}"
            )
        body_value = next((v for k, v in body.items() if k.lower() == ext.name.lower()), None)
        if ext_value is None:
            ext_value = body_value
        elif body_value is not None and str(body_value) != str(ext_value):
            raise RecordError(
                "INVALID_FIELD",
                f"The value of {ext.name} in the request body conflicts with the value in the URL",
                [ext.name],
            )
        if ext.name == "Id":
            lookup = to18(str(ext_value)) if ext_value else None
            matches = self.store.find(obj, "Id", lookup) if lookup else []
        else:
            if ext_value is None or (isinstance(ext_value, str) and sf_trim(ext_value) is None):
                raise RecordError("MISSING_ARGUMENT", f"{ext.name} not specified", [ext.name])
            matches = known if known is not None else self.store.find(obj, ext.name, coerce(ext, ext_value))
        if len(matches) > 1:
            raise MultipleMatches(obj, matches)
        ignore = frozenset({ext.name.lower()})
        if matches:
            return WriteResult(self.update(obj, matches[0], body, ignore=ignore), False)
        create_body = dict(body)
        if ext.name != "Id":
            create_body = {k: v for k, v in body.items() if k.lower() != ext.name.lower()}
            create_body[ext.name] = ext_value
        return WriteResult(self.create(obj, create_body, ignore=frozenset({"id"})), True)

    def delete(self, obj: ObjectDef, record_id: str, hard: bool = False) -> str:
        current = self.load(obj, record_id)
        self._lock(current["Id"])
        if hard:
            self.store.hard_delete(obj, current["Id"])
        else:
            now = self._stamp()
            self.store.update(
                obj,
                current["Id"],
                {"IsDeleted": 1, "SystemModstamp": now, "LastModifiedDate": now, "LastModifiedById": self.user_id},
            )
        self._changed(obj, "DELETE", str(current["Id"]), {})
        return str(current["Id"])

    def undelete(self, obj: ObjectDef, record_id: str) -> str:
        """Restore a record from the recycle bin (soft-deleted); the change event carries the whole record."""
        normal = to18(record_id)
        row = self.store.get(obj, normal) if normal and normal.startswith(obj.key_prefix) else None
        if row is None:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
        if not row["IsDeleted"]:
            raise RecordError("UNDELETE_FAILED", "Entity is not in the recycle bin", [])
        self._lock(row["Id"])
        now = self._stamp()
        values = {"IsDeleted": 0, "SystemModstamp": now, "LastModifiedDate": now, "LastModifiedById": self.user_id}
        self.store.update(obj, row["Id"], values)
        row.update(values)
        self._changed(obj, "UNDELETE", str(row["Id"]), {k: v for k, v in row.items() if k != "rid"})
        return str(row["Id"])

    def publish(self, obj: ObjectDef, body: dict[str, Any]) -> tuple[str, str]:
        """Publish a platform event; returns (publish id, event uuid)."""
        values = self.prepare(obj, body, creating=True)
        missing = [f.name for f in obj.fields.values() if f.required and values.get(f.name) is None]
        if missing:
            raise RecordError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)
        if self.events is None:
            raise RecordError("UNKNOWN_EXCEPTION", "this writer cannot publish platform events", [])
        position, event_uuid = self.events.publish(obj, values, self.user_id)
        return make_id("e01", position), event_uuid


class MultipleMatches(Exception):
    """An upsert whose external id matched several records (HTTP 300)."""

    def __init__(self, obj: ObjectDef, ids: list[str]) -> None:
        super().__init__(f"{len(ids)} records match")
        self.obj = obj
        self.ids = ids
