"""Objects and fields with their describe metadata: the types every part of the emulator works with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FIELD_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "string": "xsd:string",
    "textarea": "xsd:string",
    "picklist": "xsd:string",
    "multipicklist": "xsd:string",
    "email": "xsd:string",
    "phone": "xsd:string",
    "url": "xsd:string",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "time": "xsd:time",
    # compound fields (no column of their own: read-only views of their components)
    "address": "urn:address",
    "location": "urn:location",
    "base64": "xsd:base64Binary",
    "combobox": "xsd:string",
    "encryptedstring": "xsd:string",
    "anyType": "xsd:anyType",
}
TEXT_TYPES = {
    "string",
    "textarea",
    "picklist",
    "multipicklist",
    "email",
    "phone",
    "url",
    "id",
    "reference",
    "combobox",
    "encryptedstring",
    "base64",
    "anyType",
}
COMPOUND_TYPES = frozenset({"address", "location"})
#: an address's JSON keys in the order a real org sends them; those without a component of the object are null
ADDRESS_KEYS = ("city", "country", "geocodeAccuracy", "latitude", "longitude", "postalCode", "state", "street")


@dataclass
class FieldDef:
    """One field of an object, with the metadata describe reports and validation enforces."""

    name: str
    type: str
    label: str = ""
    length: int = 0
    precision: int = 0
    scale: int = 0
    digits: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    defaulted_on_create: bool = False
    default: Any = None
    unique: bool = False
    external_id: bool = False
    id_lookup: bool = False
    name_field: bool = False
    custom: bool = False
    calculated: bool = False
    formula: str | None = None  # a formula field's expression (emulator.formula): computed, never writable
    components: tuple[tuple[str, str], ...] = ()  # a compound field's (JSON key, component field) pairs
    compound_name: str | None = None  # a component's compound field (describe's compoundFieldName)
    auto_number: bool = False
    case_sensitive: bool = False
    reference_to: list[str] = field(default_factory=list)
    relationship_name: str | None = None
    picklist: list[str] = field(default_factory=list)
    restricted: bool = False
    html_formatted: bool = False
    filterable: bool = True

    def __post_init__(self) -> None:
        if not self.label:
            self.label = self.name.removesuffix("__c").replace("_", " ")
        if self.type not in FIELD_TYPES:
            raise ValueError(f"unknown field type {self.type!r} for field {self.name}")

    @property
    def required(self) -> bool:
        """Required on create: not nillable, createable and not filled in by the server."""
        return not self.nillable and self.createable and not self.defaulted_on_create

    @property
    def is_text(self) -> bool:
        return self.type in TEXT_TYPES

    @property
    def compound(self) -> bool:
        """A compound address or geolocation: no column, read as a nested object of its components."""
        return self.type in COMPOUND_TYPES

    @property
    def sql_type(self) -> str:
        if self.type in ("boolean", "int"):
            return "INTEGER"
        if self.type in ("double", "currency", "percent"):
            return "REAL"
        return "TEXT"

    def describe(self) -> dict[str, Any]:
        """The field's entry in ``describe``'s ``fields`` array, with the real org's key set."""
        byte_length = self.length if self.type in ("id", "reference", "multipicklist") else self.length * 3
        long_text = (self.type == "textarea" and self.length > 255) or self.type == "multipicklist"
        return {
            "aggregatable": not long_text and not self.compound,
            "aiPredictionField": False,
            "autoNumber": self.auto_number,
            "byteLength": byte_length,
            "calculated": self.calculated,
            "calculatedFormula": self.formula,
            "cascadeDelete": False,
            "caseSensitive": self.case_sensitive,
            "compoundFieldName": self.compound_name,
            "controllerName": None,
            "createable": self.createable,
            "custom": self.custom,
            "defaultValue": self.default if self.type in ("boolean",) else None,
            "defaultValueFormula": None,
            "defaultedOnCreate": self.defaulted_on_create,
            "dependentPicklist": False,
            "deprecatedAndHidden": False,
            "digits": self.digits,
            "displayLocationInDecimal": False,
            "encrypted": self.type == "encryptedstring",
            "externalId": self.external_id,
            "extraTypeInfo": "plaintextarea" if self.type == "textarea" else None,
            "filterable": self.filterable and not self.compound and self.type not in ("base64", "encryptedstring"),
            "filteredLookupInfo": None,
            "formulaTreatNullNumberAsZero": False,
            "groupable": not long_text
            and not self.compound
            and self.type not in ("double", "currency", "percent", "datetime", "base64", "encryptedstring", "anyType"),
            "highScaleNumber": False,
            "htmlFormatted": self.html_formatted,
            "idLookup": self.id_lookup,
            "inlineHelpText": None,
            "label": self.label,
            "length": self.length,
            "mask": "X" if self.type == "encryptedstring" else None,
            "maskType": "all" if self.type == "encryptedstring" else None,
            "name": self.name,
            "nameField": self.name_field,
            "namePointing": False,
            "nillable": self.nillable,
            "permissionable": self.nillable and self.custom,
            "picklistValues": [
                {
                    "active": True,
                    "defaultValue": value == self.default,
                    "label": value,
                    "validFor": None,
                    "value": value,
                }
                for value in self.picklist
            ],
            "polymorphicForeignKey": False,
            "precision": self.precision,
            "queryByDistance": False,
            "referenceTargetField": None,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "relationshipOrder": None,
            "restrictedDelete": False,
            "restrictedPicklist": self.restricted,
            "scale": self.scale,
            "searchPrefilterable": self.type == "reference",
            "soapType": FIELD_TYPES[self.type],
            "sortable": not long_text and not self.compound and self.type not in ("base64", "encryptedstring"),
            "type": self.type,
            "unique": self.unique,
            "updateable": self.updateable,
            "writeRequiresMasterRead": False,
        }


@dataclass
class ChildRelationship:
    child_object: str
    field: str
    relationship_name: str


@dataclass
class ObjectDef:
    """An sObject type: its fields (looked up case-insensitively) and describe metadata."""

    name: str
    label: str
    key_prefix: str
    fields: dict[str, FieldDef]
    custom: bool = False
    is_event: bool = False
    label_plural: str = ""
    children: list[ChildRelationship] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_lower = {name.lower(): f for name, f in self.fields.items()}
        self.required_fields = [f for f in self.fields.values() if f.required]
        self.unique_fields = [f for f in self.fields.values() if f.unique or f.external_id]
        self.reference_fields = [f for f in self.fields.values() if f.type == "reference"]
        self.formula_fields = [f for f in self.fields.values() if f.formula is not None]
        # Values a create fills in when the caller gave none: declared defaults, and false for checkboxes.
        self.create_defaults = [
            (f.name, int(bool(f.default)) if f.type == "boolean" else f.default)
            for f in self.fields.values()
            if f.createable and ((f.defaulted_on_create and f.default is not None) or f.type == "boolean")
        ]
        if not self.label_plural:
            self.label_plural = self.label + "s"

    def field(self, name: str) -> FieldDef | None:
        return self._by_lower.get(name.lower())

    def relationship(self, name: str) -> FieldDef | None:
        """The reference field whose relationship name is ``name`` (case-insensitive)."""
        lower = name.lower()
        for f in self.fields.values():
            if f.relationship_name and f.relationship_name.lower() == lower:
                return f
        return None

    def child_relationship(self, name: str) -> ChildRelationship | None:
        lower = name.lower()
        for child in self.children:
            if child.relationship_name.lower() == lower:
                return child
        return None

    @property
    def table(self) -> str:
        return f'"{self.name}"'

    def urls(self, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        urls = {
            "compactLayouts": f"{base}/describe/compactLayouts",
            "rowTemplate": f"{base}/{{ID}}",
            "approvalLayouts": f"{base}/describe/approvalLayouts",
            "defaultValues": f"{base}/defaultValues?recordTypeId&fields",
            "listviews": f"{base}/listviews",
            "describe": f"{base}/describe",
            "quickActions": f"{base}/quickActions",
            "layouts": f"{base}/describe/layouts",
            "sobject": base,
        }
        if self.is_event:
            urls = {"eventSchema": f"{base}/eventSchema", "describe": f"{base}/describe", "sobject": base}
        return urls

    def global_entry(self, version: str) -> dict[str, Any]:
        """The object's entry in describeGlobal's ``sobjects`` array."""
        info = self._flags()
        info["urls"] = self.urls(version)
        return info

    def _flags(self) -> dict[str, Any]:
        event = self.is_event
        return {
            "activateable": False,
            "associateEntityType": None,
            "associateParentEntity": None,
            "createable": True,
            "custom": self.custom,
            "customSetting": False,
            "deepCloneable": False,
            "deletable": not event,
            "deprecatedAndHidden": False,
            "feedEnabled": not event and not self.custom,
            "hasSubtypes": False,
            "isInterface": False,
            "isSubtype": False,
            "keyPrefix": self.key_prefix,
            "label": self.label,
            "labelPlural": self.label_plural,
            "layoutable": not event,
            "mergeable": self.name in ("Account", "Contact", "Lead", "Case"),
            "mruEnabled": not event,
            "name": self.name,
            "queryable": not event,
            "replicateable": not event,
            "retrieveable": not event,
            "searchable": not event,
            "triggerable": True,
            "undeletable": not event,
            "updateable": not event,
        }

    def describe(self, version: str) -> dict[str, Any]:
        """The full ``/sobjects/{name}/describe`` body, with the real org's top-level key set."""
        body = self._flags()
        body.update(
            {
                "actionOverrides": [],
                "childRelationships": [
                    {
                        "cascadeDelete": False,
                        "childSObject": child.child_object,
                        "deprecatedAndHidden": False,
                        "field": child.field,
                        "junctionIdListNames": [],
                        "junctionReferenceTo": [],
                        "relationshipName": child.relationship_name,
                        "restrictedDelete": False,
                    }
                    for child in self.children
                ],
                "compactLayoutable": not self.is_event,
                "defaultImplementation": None,
                "extendedBy": None,
                "extendsInterfaces": None,
                "fields": [f.describe() for f in self.fields.values()],
                "implementedBy": None,
                "implementsInterfaces": None,
                "listviewable": None,
                "lookupLayoutable": None,
                "namedLayoutInfos": [],
                "networkScopeFieldName": None,
                "recordTypeInfos": [],
                "searchLayoutable": not self.is_event,
                "sobjectDescribeOption": "FULL",
                "supportedScopes": [
                    {"label": "All " + self.label_plural.lower(), "name": "everything"},
                ],
                "urls": self.urls(version),
            }
        )
        return dict(sorted(body.items()))
