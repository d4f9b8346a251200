"""The org's data model: objects, fields and their describe metadata.

Standard objects (Account, Contact, Opportunity, Lead, Case, User) are defined here; custom objects,
custom fields and platform events come from an org YAML file (see ``orgs/demo.yaml``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
}
TEXT_TYPES = {"string", "textarea", "picklist", "multipicklist", "email", "phone", "url", "id", "reference"}


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
            "aggregatable": not long_text,
            "aiPredictionField": False,
            "autoNumber": self.auto_number,
            "byteLength": byte_length,
            "calculated": self.calculated,
            "calculatedFormula": None,
            "cascadeDelete": False,
            "caseSensitive": self.case_sensitive,
            "compoundFieldName": None,
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
            "encrypted": False,
            "externalId": self.external_id,
            "extraTypeInfo": "plaintextarea" if self.type == "textarea" else None,
            "filterable": self.filterable,
            "filteredLookupInfo": None,
            "formulaTreatNullNumberAsZero": False,
            "groupable": not long_text and self.type not in ("double", "currency", "percent", "datetime"),
            "highScaleNumber": False,
            "htmlFormatted": self.html_formatted,
            "idLookup": self.id_lookup,
            "inlineHelpText": None,
            "label": self.label,
            "length": self.length,
            "mask": None,
            "maskType": None,
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
            "sortable": not long_text,
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


# --- standard objects -------------------------------------------------------------------------


def _f(name: str, type_: str, **kw: Any) -> FieldDef:
    return FieldDef(name=name, type=type_, **kw)


def _ref(name: str, target: str, rel: str | None, **kw: Any) -> FieldDef:
    return FieldDef(name=name, type="reference", length=18, reference_to=[target], relationship_name=rel, **kw)


def _system_fields(owner: bool = True) -> list[FieldDef]:
    fields = [
        _f(
            "Id",
            "id",
            length=18,
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
            id_lookup=True,
            label="Record ID",
        ),
        _f(
            "IsDeleted",
            "boolean",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
            default=False,
            label="Deleted",
        ),
    ]
    if owner:
        fields.append(_ref("OwnerId", "User", "Owner", nillable=False, defaulted_on_create=True, label="Owner ID"))
    for name, type_ in (
        ("CreatedDate", "datetime"),
        ("CreatedById", "reference"),
        ("LastModifiedDate", "datetime"),
        ("LastModifiedById", "reference"),
        ("SystemModstamp", "datetime"),
    ):
        if type_ == "reference":
            fields.append(
                _ref(
                    name,
                    "User",
                    name[:-2],
                    nillable=False,
                    createable=False,
                    updateable=False,
                    defaulted_on_create=True,
                )
            )
        else:
            fields.append(_f(name, type_, nillable=False, createable=False, updateable=False, defaulted_on_create=True))
    return fields


def _address(prefix: str) -> list[FieldDef]:
    return [
        _f(f"{prefix}Street", "textarea", length=255),
        _f(f"{prefix}City", "string", length=40),
        _f(f"{prefix}State", "string", length=80),
        _f(f"{prefix}PostalCode", "string", length=20),
        _f(f"{prefix}Country", "string", length=80),
    ]


INDUSTRIES = [
    "Agriculture",
    "Apparel",
    "Banking",
    "Biotechnology",
    "Chemicals",
    "Communications",
    "Construction",
    "Consulting",
    "Education",
    "Electronics",
    "Energy",
    "Engineering",
    "Entertainment",
    "Environmental",
    "Finance",
    "Food & Beverage",
    "Government",
    "Healthcare",
    "Hospitality",
    "Insurance",
    "Machinery",
    "Manufacturing",
    "Media",
    "Not For Profit",
    "Recreation",
    "Retail",
    "Shipping",
    "Technology",
    "Telecommunications",
    "Transportation",
    "Utilities",
    "Other",
]
LEAD_SOURCES = ["Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"]
STAGES = [
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
]
RATINGS = ["Hot", "Warm", "Cold"]


def _account() -> list[FieldDef]:
    return [
        *_system_fields(),
        _ref("MasterRecordId", "Account", "MasterRecord", createable=False, updateable=False),
        _f("Name", "string", length=255, nillable=False, name_field=True, label="Account Name"),
        _f(
            "Type",
            "picklist",
            length=255,
            picklist=[
                "Prospect",
                "Customer - Direct",
                "Customer - Channel",
                "Channel Partner / Reseller",
                "Installation Partner",
                "Technology Partner",
                "Other",
            ],
        ),
        _ref("ParentId", "Account", "Parent"),
        *_address("Billing"),
        *_address("Shipping"),
        _f("Phone", "phone", length=40),
        _f("Fax", "phone", length=40),
        _f("AccountNumber", "string", length=40),
        _f("Website", "url", length=255),
        _f("Sic", "string", length=20),
        _f("Industry", "picklist", length=255, picklist=INDUSTRIES),
        _f("AnnualRevenue", "currency", precision=18, scale=0),
        _f("NumberOfEmployees", "int", digits=8),
        _f("Ownership", "picklist", length=255, picklist=["Public", "Private", "Subsidiary", "Other"]),
        _f("TickerSymbol", "string", length=20),
        _f("Description", "textarea", length=32000),
        _f("Rating", "picklist", length=255, picklist=RATINGS),
        _f("Site", "string", length=80),
        _f("AccountSource", "picklist", length=255, picklist=LEAD_SOURCES),
        _f("LastActivityDate", "date", createable=False, updateable=False),
    ]


def _contact() -> list[FieldDef]:
    return [
        *_system_fields(),
        _ref("MasterRecordId", "Contact", "MasterRecord", createable=False, updateable=False),
        _ref("AccountId", "Account", "Account"),
        _f("LastName", "string", length=80, nillable=False),
        _f("FirstName", "string", length=40),
        _f("Salutation", "picklist", length=40, picklist=["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."]),
        _f("Name", "string", length=121, createable=False, updateable=False, name_field=True, label="Full Name"),
        *_address("Mailing"),
        _f("Phone", "phone", length=40),
        _f("MobilePhone", "phone", length=40),
        _f("Email", "email", length=80, id_lookup=True),
        _f("Title", "string", length=128),
        _f("Department", "string", length=80),
        _f("Birthdate", "date"),
        _f("LeadSource", "picklist", length=255, picklist=LEAD_SOURCES),
        _f("Description", "textarea", length=32000),
        _f("HasOptedOutOfEmail", "boolean", nillable=False, defaulted_on_create=True, default=False),
        _f("DoNotCall", "boolean", nillable=False, defaulted_on_create=True, default=False),
        _ref("ReportsToId", "Contact", "ReportsTo"),
        _f("LastActivityDate", "date", createable=False, updateable=False),
    ]


def _opportunity() -> list[FieldDef]:
    return [
        *_system_fields(),
        _ref("AccountId", "Account", "Account"),
        _f("Name", "string", length=120, nillable=False, name_field=True),
        _f("Description", "textarea", length=32000),
        _f("StageName", "picklist", length=255, nillable=False, picklist=STAGES, restricted=True, label="Stage"),
        _f("Amount", "currency", precision=18, scale=2),
        _f("Probability", "percent", precision=3, scale=0),
        _f("CloseDate", "date", nillable=False),
        _f("Type", "picklist", length=255, picklist=["Existing Business", "New Business"]),
        _f("NextStep", "string", length=255),
        _f("LeadSource", "picklist", length=255, picklist=LEAD_SOURCES),
        _f(
            "IsClosed",
            "boolean",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
            default=False,
        ),
        _f(
            "IsWon",
            "boolean",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
            default=False,
        ),
        _f(
            "ForecastCategoryName",
            "picklist",
            length=255,
            picklist=["Omitted", "Pipeline", "Best Case", "Commit", "Closed"],
        ),
        _f("FiscalYear", "int", digits=4, createable=False, updateable=False),
        _f("FiscalQuarter", "int", digits=1, createable=False, updateable=False),
    ]


def _lead() -> list[FieldDef]:
    return [
        *_system_fields(),
        _f("LastName", "string", length=80, nillable=False),
        _f("FirstName", "string", length=40),
        _f("Name", "string", length=121, createable=False, updateable=False, name_field=True),
        _f("Title", "string", length=128),
        _f("Company", "string", length=255, nillable=False),
        _f("Street", "textarea", length=255),
        _f("City", "string", length=40),
        _f("State", "string", length=80),
        _f("PostalCode", "string", length=20),
        _f("Country", "string", length=80),
        _f("Phone", "phone", length=40),
        _f("MobilePhone", "phone", length=40),
        _f("Email", "email", length=80, id_lookup=True),
        _f("Website", "url", length=255),
        _f("Description", "textarea", length=32000),
        _f("LeadSource", "picklist", length=255, picklist=LEAD_SOURCES),
        _f(
            "Status",
            "picklist",
            length=255,
            nillable=False,
            defaulted_on_create=True,
            default="Open - Not Contacted",
            restricted=True,
            picklist=["Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted"],
        ),
        _f("Industry", "picklist", length=255, picklist=INDUSTRIES),
        _f("Rating", "picklist", length=255, picklist=RATINGS),
        _f("AnnualRevenue", "currency", precision=18, scale=0),
        _f("NumberOfEmployees", "int", digits=8),
        _f(
            "IsConverted",
            "boolean",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
            default=False,
        ),
        _f("ConvertedDate", "date", createable=False, updateable=False),
        _ref("ConvertedAccountId", "Account", "ConvertedAccount", createable=False, updateable=False),
        _ref("ConvertedContactId", "Contact", "ConvertedContact", createable=False, updateable=False),
    ]


def _case() -> list[FieldDef]:
    return [
        *_system_fields(),
        _f(
            "CaseNumber",
            "string",
            length=30,
            createable=False,
            updateable=False,
            auto_number=True,
            name_field=True,
            id_lookup=True,
            nillable=False,
            defaulted_on_create=True,
        ),
        _ref("ContactId", "Contact", "Contact"),
        _ref("AccountId", "Account", "Account"),
        _f("SuppliedName", "string", length=80, label="Web Name"),
        _f("SuppliedEmail", "email", length=80, label="Web Email"),
        _f("SuppliedPhone", "string", length=40, label="Web Phone"),
        _f("Type", "picklist", length=255, picklist=["Mechanical", "Electrical", "Electronic", "Structural", "Other"]),
        _f(
            "Status",
            "picklist",
            length=255,
            defaulted_on_create=True,
            default="New",
            picklist=["New", "Working", "Escalated", "Closed"],
        ),
        _f(
            "Reason",
            "picklist",
            length=255,
            picklist=["Installation", "Equipment Complexity", "Performance", "Breakdown", "Other"],
        ),
        _f("Origin", "picklist", length=255, picklist=["Phone", "Email", "Web"]),
        _f("Subject", "string", length=255),
        _f(
            "Priority",
            "picklist",
            length=255,
            defaulted_on_create=True,
            default="Medium",
            picklist=["High", "Medium", "Low"],
        ),
        _f("Description", "textarea", length=32000),
        _f(
            "IsClosed",
            "boolean",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
            default=False,
        ),
        _f("ClosedDate", "datetime", createable=False, updateable=False),
        _f("IsEscalated", "boolean", nillable=False, defaulted_on_create=True, default=False),
    ]


def _user() -> list[FieldDef]:
    return [
        *_system_fields(owner=False),
        _f("Username", "string", length=80, nillable=False, unique=True, id_lookup=True),
        _f("LastName", "string", length=80, nillable=False),
        _f("FirstName", "string", length=40),
        _f("Name", "string", length=121, createable=False, updateable=False, name_field=True),
        _f("Email", "email", length=128, nillable=False),
        _f("Alias", "string", length=8, nillable=False),
        _f("IsActive", "boolean", nillable=False, defaulted_on_create=True, default=True),
        _f("Title", "string", length=80),
        _f("Department", "string", length=80),
        _f("CompanyName", "string", length=80),
        _ref("ManagerId", "User", "Manager"),
        _f(
            "TimeZoneSidKey",
            "picklist",
            length=40,
            defaulted_on_create=True,
            default="GMT",
            picklist=["GMT", "Europe/London", "Europe/Paris", "America/New_York", "America/Los_Angeles", "Asia/Tokyo"],
        ),
        _f(
            "LocaleSidKey",
            "picklist",
            length=40,
            defaulted_on_create=True,
            default="en_US",
            picklist=["en_US", "en_GB", "fr_FR", "de_DE", "ja_JP"],
        ),
        _f(
            "EmailEncodingKey",
            "picklist",
            length=40,
            defaulted_on_create=True,
            default="UTF-8",
            picklist=["UTF-8", "ISO-8859-1"],
        ),
        _f(
            "LanguageLocaleKey",
            "picklist",
            length=40,
            defaulted_on_create=True,
            default="en_US",
            picklist=["en_US", "fr", "de", "ja"],
        ),
    ]


STANDARD_OBJECTS: dict[str, tuple[str, str, Any]] = {
    "Account": ("Account", "001", _account),
    "Contact": ("Contact", "003", _contact),
    "Opportunity": ("Opportunity", "006", _opportunity),
    "Lead": ("Lead", "00Q", _lead),
    "Case": ("Case", "500", _case),
    "User": ("User", "005", _user),
}
# Relationship names Salesforce uses for standard children (others get "<Object>s" / "<Plural>__r").
STANDARD_CHILD_NAMES = {
    ("Contact", "AccountId"): "Contacts",
    ("Opportunity", "AccountId"): "Opportunities",
    ("Case", "AccountId"): "Cases",
    ("Case", "ContactId"): "Cases",
    ("Account", "ParentId"): "ChildAccounts",
}
# Lookups that expose no child relationship on their parent.
NO_CHILD_RELATIONSHIP = {("Contact", "ReportsToId"), ("Account", "MasterRecordId"), ("User", "ManagerId")}


# --- custom definitions from YAML ---------------------------------------------------------------


def _custom_field(name: str, spec: dict[str, Any]) -> FieldDef:
    if not name.endswith("__c"):
        raise ValueError(f"custom field {name!r} must end in __c")
    type_ = spec.get("type", "string")
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
    if type_ in ("string", "email", "phone", "url", "picklist", "multipicklist"):
        kw["length"] = int(spec.get("length", 255 if type_ != "multipicklist" else 4099))
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
            extra = {n: _custom_field(n, s or {}) for n, s in (obj_spec.get("fields") or {}).items()}
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
            fields = {f.name: f for f in _system_fields()}
            fields["Name"] = _f(
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
                "ReplayId": _f("ReplayId", "string", length=255, createable=False, updateable=False),
                "CreatedDate": _f(
                    "CreatedDate",
                    "datetime",
                    nillable=False,
                    createable=False,
                    updateable=False,
                    defaulted_on_create=True,
                ),
                "CreatedById": _ref(
                    "CreatedById",
                    "User",
                    "CreatedBy",
                    nillable=False,
                    createable=False,
                    updateable=False,
                    defaulted_on_create=True,
                ),
                "EventUuid": _f("EventUuid", "string", length=36, createable=False, updateable=False),
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
        self.allowed_audiences: list[str] = list(spec.get("audiences") or [])
        self.limits: dict[str, int] = dict(spec.get("limits") or {})
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

    def by_prefix(self, prefix: str) -> ObjectDef | None:
        for obj in self.objects.values():
            if obj.key_prefix == prefix:
                return obj
        return None

    @property
    def data_objects(self) -> list[ObjectDef]:
        return [o for o in self.objects.values() if not o.is_event]


def load_org(path: str | Path | None = None) -> Org:
    """Load an org YAML; ``None`` loads the bundled demo org definition."""
    source = Path(path) if path else Path(__file__).with_name("orgs") / "demo.yaml"
    spec = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    return Org(spec)
