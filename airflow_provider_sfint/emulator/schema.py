"""The org's data model: objects, fields and their describe metadata.

The types live in ``model.py``, the standard objects (Account, Contact, Opportunity, Lead, Case, User) in
``standard_objects.py``; custom objects, custom fields and platform events come from an org YAML file (see
``orgs/demo.yaml``), read here into an :class:`Org`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .formula import FormulaError, compile_formula
from .model import FIELD_TYPES, TEXT_TYPES, ChildRelationship, FieldDef, ObjectDef
from .standard_objects import (
    INDUSTRIES,
    LEAD_SOURCES,
    NO_CHILD_RELATIONSHIP,
    RATINGS,
    STAGES,
    STANDARD_CHILD_NAMES,
    STANDARD_OBJECTS,
    field_def,
    reference_field,
    system_fields,
)

__all__ = [
    "FIELD_TYPES",
    "INDUSTRIES",
    "LEAD_SOURCES",
    "RATINGS",
    "STAGES",
    "TEXT_TYPES",
    "ChildRelationship",
    "FieldDef",
    "ObjectDef",
    "Org",
    "load_org",
]


# --- custom definitions from YAML ---------------------------------------------------------------


#: a formula field's returnType -> the describe type it has
FORMULA_TYPES = {
    "double": "double",
    "number": "double",
    "currency": "currency",
    "percent": "percent",
    "text": "string",
    "string": "string",
    "checkbox": "boolean",
    "boolean": "boolean",
    "date": "date",
}


def _custom_fields(specs: dict[str, Any]) -> dict[str, FieldDef]:
    """The custom fields of an object's YAML, a geolocation (``type: location``) with its two component fields
    (``<Name>__Latitude__s``, ``<Name>__Longitude__s``) before it, as Salesforce names them."""
    out: dict[str, FieldDef] = {}
    for name, spec in specs.items():
        spec = spec or {}
        if spec.get("type") == "location":
            if not name.endswith("__c"):
                raise ValueError(f"custom field {name!r} must end in __c")
            base, scale = name[:-3], int(spec.get("scale", 6))
            parts = [
                FieldDef(
                    name=f"{base}__{axis}__s",
                    type="double",
                    precision=18,
                    scale=scale,
                    custom=True,
                    compound_name=name,
                    label=f"{spec.get('label', base.replace('_', ' '))} ({axis})",
                )
                for axis in ("Latitude", "Longitude")
            ]
            for part in parts:
                out[part.name] = part
            out[name] = FieldDef(
                name=name,
                type="location",
                custom=True,
                createable=False,
                updateable=False,
                components=(("latitude", parts[0].name), ("longitude", parts[1].name)),
                label=str(spec.get("label", "")),
            )
            continue
        out[str(name)] = _custom_field(str(name), spec)
    return out


def _custom_field(name: str, spec: dict[str, Any]) -> FieldDef:
    if not name.endswith("__c"):
        raise ValueError(f"custom field {name!r} must end in __c")
    type_ = spec.get("type", "string")
    formula = spec.get("formula")
    if type_ == "formula" or formula is not None:
        returns = str(spec.get("returnType", "double"))
        if returns not in FORMULA_TYPES or not formula:
            raise ValueError(
                f"formula field {name}: give formula and returnType (one of {', '.join(sorted(FORMULA_TYPES))})"
            )
        type_ = FORMULA_TYPES[returns]
    kw: dict[str, Any] = {
        "custom": True,
        "label": spec.get("label", ""),
        "nillable": not spec.get("required", False),
        "unique": bool(spec.get("unique", False)),
        "external_id": bool(spec.get("externalId", False)),
        "id_lookup": bool(spec.get("externalId", False)),
        "restricted": bool(spec.get("restricted", False)),
        "picklist": list(spec.get("values", [])),
        "default": spec.get("default"),
        "case_sensitive": bool(spec.get("caseSensitive", False)),
    }
    if type_ in ("string", "email", "phone", "url", "picklist", "multipicklist", "combobox", "encryptedstring"):
        default_length = {"multipicklist": 4099, "encryptedstring": 175}.get(type_, 255)
        kw["length"] = int(spec.get("length", default_length))
    elif type_ == "base64":
        kw["length"] = int(spec.get("length", 32_000_000))
    elif type_ == "textarea":
        kw["length"] = int(spec.get("length", 255))
    elif type_ in ("double", "currency", "percent"):
        kw["precision"] = int(spec.get("precision", 18))
        kw["scale"] = int(spec.get("scale", 2 if type_ == "currency" else 0))
    elif type_ == "int":
        kw["digits"] = int(spec.get("digits", 9))
    elif type_ == "boolean":
        kw["nillable"] = False
        kw["defaulted_on_create"] = True
        kw["default"] = bool(spec.get("default", False))
    if formula is not None:
        kw.update(calculated=True, formula=str(formula), createable=False, updateable=False, nillable=True)
        kw.update(unique=False, external_id=False, id_lookup=False, default=None, defaulted_on_create=False)
    if type_ == "reference":
        target = spec["referenceTo"]
        rel = spec.get("relationshipName", name[:-3] + "__r")
        return FieldDef(name=name, type="reference", length=18, reference_to=[target], relationship_name=rel, **kw)
    return FieldDef(name=name, type=type_, **kw)


class Org:
    """All object definitions of an org, plus the demo/test users and settings."""

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        spec = spec or {}
        self.objects: dict[str, ObjectDef] = {}
        for name, (label, prefix, builder) in STANDARD_OBJECTS.items():
            fields = {f.name: f for f in builder()}
            self.objects[name] = ObjectDef(name=name, label=label, key_prefix=prefix, fields=fields)
        next_prefix = 0
        for obj_name, obj_spec in (spec.get("objects") or {}).items():
            obj_spec = obj_spec or {}
            extra = _custom_fields(obj_spec.get("fields") or {})
            if obj_name in self.objects:
                existing = self.objects[obj_name]
                existing.fields.update(extra)
                self.objects[obj_name] = ObjectDef(
                    name=existing.name, label=existing.label, key_prefix=existing.key_prefix, fields=existing.fields
                )
                continue
            if not obj_name.endswith("__c"):
                raise ValueError(f"custom object {obj_name!r} must end in __c")
            prefix = obj_spec.get("keyPrefix") or f"a0{'0123456789ABCDEFGHIJ'[next_prefix]}"
            next_prefix += 1
            fields = {f.name: f for f in system_fields()}
            fields["Name"] = field_def(
                "Name",
                "string",
                length=80,
                name_field=True,
                id_lookup=True,
                defaulted_on_create=True,  # a blank Name is filled in with the record id
                label=obj_spec.get("nameLabel", obj_spec.get("label", obj_name) + " Name"),
            )
            fields.update(extra)
            self.objects[obj_name] = ObjectDef(
                name=obj_name,
                label=obj_spec.get("label", obj_name[:-3].replace("_", " ")),
                key_prefix=prefix,
                fields=fields,
                custom=True,
            )
        for i, (ev_name, ev_spec) in enumerate((spec.get("events") or {}).items()):
            if not ev_name.endswith("__e"):
                raise ValueError(f"platform event {ev_name!r} must end in __e")
            ev_spec = ev_spec or {}
            fields = {
                "ReplayId": field_def("ReplayId", "string", length=255, createable=False, updateable=False),
                "CreatedDate": field_def(
                    "CreatedDate",
                    "datetime",
                    nillable=False,
                    createable=False,
                    updateable=False,
                    defaulted_on_create=True,
                ),
                "CreatedById": reference_field(
                    "CreatedById",
                    "User",
                    "CreatedBy",
                    nillable=False,
                    createable=False,
                    updateable=False,
                    defaulted_on_create=True,
                ),
                "EventUuid": field_def("EventUuid", "string", length=36, createable=False, updateable=False),
            }
            for n, s in (ev_spec.get("fields") or {}).items():
                f = _custom_field(n, s or {})
                f.updateable = False
                fields[n] = f
            self.objects[ev_name] = ObjectDef(
                name=ev_name,
                label=ev_spec.get("label", ev_name[:-3].replace("_", " ")),
                key_prefix=f"e0{i}",
                fields=fields,
                custom=True,
                is_event=True,
            )
        self._link_children()
        self._by_lower = {name.lower(): obj for name, obj in self.objects.items()}
        self._original: dict[str, ObjectDef] | None = None  # the objects before fields were added at runtime
        self.allowed_audiences: list[str] = list(spec.get("audiences") or [])
        self.limits: dict[str, int] = dict(spec.get("limits") or {})
        # Change Data Capture: the entities selected for the standard channels, and custom channels
        self.cdc_entities: list[str] = []
        for name in spec.get("changeDataCapture") or []:
            obj = self.get(str(name))
            if obj is None or obj.is_event:
                raise ValueError(f"changeDataCapture lists {name!r}, which is not an object of this org")
            self.cdc_entities.append(obj.name)
        self.channels: dict[str, list[str]] = {}
        for channel, members in (spec.get("channels") or {}).items():
            if not str(channel).endswith("__chn"):
                raise ValueError(f"custom channel {channel!r} must end in __chn")
            unknown = [m for m in members or [] if self.get(str(m)) is None]
            if unknown:
                raise ValueError(f"custom channel {channel!r} lists unknown objects: {', '.join(unknown)}")
            self.channels[str(channel)] = [self.get(str(m)).name for m in members or []]  # type: ignore[union-attr]
        self.event_rules: list[EventRule] = [
            EventRule.parse(self, str(name), rule or {}) for name, rule in (spec.get("eventRules") or {}).items()
        ]
        self.validation_rules: list[ValidationRule] = [
            ValidationRule.parse(self, str(name), rule or {})
            for name, rule in (spec.get("validationRules") or {}).items()
        ]
        self.duplicate_rules: list[DuplicateRule] = [
            DuplicateRule.parse(self, str(name), rule or {})
            for name, rule in (spec.get("duplicateRules") or {}).items()
        ]
        self._has_rules = {r.obj: True for r in self.validation_rules} | {r.obj: True for r in self.duplicate_rules}
        for obj in self.objects.values():  # formula fields must read fields their object has
            for f in obj.fields.values():
                if f.formula is not None:
                    try:
                        compile_formula(f.formula, {k.lower(): k for k in obj.fields})
                    except FormulaError as exc:
                        raise ValueError(f"formula field {obj.name}.{f.name}: {exc}") from None
        self.fingerprint = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()

    def _link_children(self) -> None:
        for obj in self.objects.values():
            obj.children = []
        for child in self.objects.values():
            if child.is_event:
                continue
            for f in child.fields.values():
                if f.type != "reference" or f.name in ("CreatedById", "LastModifiedById", "OwnerId", "MasterRecordId"):
                    continue
                if (child.name, f.name) in NO_CHILD_RELATIONSHIP:
                    continue
                parent = self.objects.get(f.reference_to[0])
                if parent is None:
                    raise ValueError(f"{child.name}.{f.name} refers to unknown object {f.reference_to[0]}")
                rel = STANDARD_CHILD_NAMES.get((child.name, f.name))
                if rel is None:
                    if f.custom:
                        rel = child.name[:-3] + "s__r" if child.custom else child.name + "s__r"
                    else:
                        rel = child.name + "s"
                if parent.child_relationship(rel):
                    rel = f"{child.name}_{f.name}"
                parent.children.append(ChildRelationship(child.name, f.name, rel))

    def get(self, name: str) -> ObjectDef | None:
        return self._by_lower.get(name.lower())

    def rules_for(self, obj_name: str) -> tuple[list[ValidationRule], list[DuplicateRule]]:
        """The validation and duplicate rules of an object (empty lists when it has none)."""
        return (
            (
                [r for r in self.validation_rules if r.obj == obj_name],
                [r for r in self.duplicate_rules if r.obj == obj_name],
            )
            if self._has_rules.get(obj_name)
            else ([], [])
        )

    def restore(self) -> bool:
        """Forget fields added since loading (``add_custom_field``); True if there were any."""
        if self._original is None:
            return False
        self.objects, self._original = self._original, None
        self._link_children()
        self._by_lower = {name.lower(): o for name, o in self.objects.items()}
        return True

    def add_custom_field(self, object_name: str, field_name: str, spec: dict[str, Any]) -> ObjectDef:
        """Add a custom field to an object (as Setup would); returns the object's new definition."""
        if self._original is None:
            self._original = dict(self.objects)
        obj = self.get(object_name)
        if obj is None:
            raise ValueError(f"unknown object {object_name!r}")
        if obj.field(field_name) is not None:
            raise ValueError(f"{obj.name} already has a field {field_name}")
        fields = dict(obj.fields)
        fields[field_name] = _custom_field(field_name, spec)
        new = ObjectDef(
            name=obj.name,
            label=obj.label,
            key_prefix=obj.key_prefix,
            fields=fields,
            custom=obj.custom,
            is_event=obj.is_event,
            label_plural=obj.label_plural,
        )
        self.objects[obj.name] = new
        self._link_children()
        self._by_lower = {name.lower(): o for name, o in self.objects.items()}
        return new

    def by_prefix(self, prefix: str) -> ObjectDef | None:
        for obj in self.objects.values():
            if obj.key_prefix == prefix:
                return obj
        return None

    @property
    def data_objects(self) -> list[ObjectDef]:
        return [o for o in self.objects.values() if not o.is_event]


def _rule_object(org: Org, where: str, spec: dict[str, Any]) -> ObjectDef:
    """The data object a rule of the org definition names in ``object``; ValueError naming the rule if none."""
    obj = org.get(str(spec.get("object", "")))
    if obj is None or obj.is_event:
        raise ValueError(f"{where}: object {spec.get('object')!r} is not an object of this org")
    return obj


@dataclass
class EventRule:
    """What an Apex trigger publishing a platform event would do: after a write (``after``: create, update)
    makes ``when`` true for a record of ``obj`` (created so, or updated into it: at least one of its fields
    changed), publish ``event``
    with ``values`` (event field -> the record's field) in the same transaction, published when it commits."""

    name: str
    obj: str
    on: frozenset[str]
    when: dict[str, Any]
    event: str
    values: dict[str, str]

    @classmethod
    def parse(cls, org: Org, name: str, spec: dict[str, Any]) -> EventRule:
        where = f"eventRules.{name}"
        obj = _rule_object(org, where, spec)
        event = org.get(str(spec.get("publish", "")))
        if event is None or not event.is_event:
            raise ValueError(f"{where}: publish {spec.get('publish')!r} is not a platform event of this org (X__e)")
        on = frozenset(str(k).lower() for k in spec.get("after") or ("create", "update"))
        if not on <= {"create", "update"}:
            raise ValueError(f"{where}: after {sorted(on)}: use create and/or update")
        when = dict(spec.get("when") or {})
        values = {str(k): str(v) for k, v in (spec.get("values") or {}).items()}
        for field_name in [*when, *values.values()]:
            if field_name not in obj.fields:
                raise ValueError(f"{where}: {obj.name} has no field {field_name!r}")
        for field_name in values:
            if field_name not in event.fields or field_name in ("ReplayId", "CreatedDate", "CreatedById", "EventUuid"):
                raise ValueError(f"{where}: {event.name} has no writable field {field_name!r}")
        return cls(name, obj.name, on, when, event.name, values)

    def fires(self, kind: str, after: dict[str, Any], changed: dict[str, Any]) -> bool:
        """``after``: the record's stored values after the write; ``changed``: the values the write changed."""
        if kind.lower() not in self.on or any(after.get(k) != v for k, v in self.when.items()):
            return False
        return kind == "CREATE" or not self.when or any(k in changed for k in self.when)


@dataclass
class ValidationRule:
    """A validation rule: a write that leaves ``condition`` true for the record fails with
    FIELD_CUSTOM_VALIDATION_EXCEPTION and ``message`` (on ``field`` when given), on every write path."""

    name: str
    obj: str
    condition: str
    message: str
    error_field: str | None
    active: bool

    @classmethod
    def parse(cls, org: Org, name: str, spec: dict[str, Any]) -> ValidationRule:
        where = f"validationRules.{name}"
        obj = _rule_object(org, where, spec)
        condition, message = str(spec.get("condition") or ""), str(spec.get("message") or "")
        if not message:
            raise ValueError(f"{where}: give the message the rule shows")
        try:
            compile_formula(condition, {k.lower(): k for k in obj.fields})
        except FormulaError as exc:
            raise ValueError(f"{where}: {exc}") from None
        error_field = spec.get("field")
        if error_field is not None and obj.field(str(error_field)) is None:
            raise ValueError(f"{where}: {obj.name} has no field {error_field!r}")
        real = obj.field(str(error_field)) if error_field else None
        return cls(name, obj.name, condition, message, real.name if real else None, bool(spec.get("active", True)))


@dataclass
class DuplicateRule:
    """A duplicate rule: a record whose ``match`` fields all equal (text without regard to case) those of another
    live record is a duplicate; ``block`` fails the write with DUPLICATES_DETECTED, ``allow`` lets it through."""

    name: str
    obj: str
    match: list[str]
    block: bool

    @classmethod
    def parse(cls, org: Org, name: str, spec: dict[str, Any]) -> DuplicateRule:
        where = f"duplicateRules.{name}"
        obj = _rule_object(org, where, spec)
        fields = [obj.field(str(n)) for n in spec.get("match") or []]
        if not fields or any(f is None for f in fields):
            raise ValueError(f"{where}: match must list fields of {obj.name}, got {spec.get('match')!r}")
        action = str(spec.get("action", "block")).lower()
        if action not in ("block", "allow"):
            raise ValueError(f"{where}: action {action!r}: use block or allow")
        return cls(name, obj.name, [f.name for f in fields if f is not None], action == "block")


def load_org(path: str | Path | None = None) -> Org:
    """Load an org YAML; ``None`` loads the bundled demo org definition."""
    source = Path(path) if path else Path(__file__).with_name("orgs") / "demo.yaml"
    spec = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    return Org(spec)
