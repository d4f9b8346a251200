"""The standard objects (Account, Contact, Opportunity, Lead, Case, User) as a real org describes them: fields,
picklists, relationships and their child relationship names."""

from __future__ import annotations

from typing import Any

from .model import FieldDef


def field_def(name: str, type_: str, **kw: Any) -> FieldDef:
    return FieldDef(name=name, type=type_, **kw)


def reference_field(name: str, target: str, rel: str | None, **kw: Any) -> FieldDef:
    return FieldDef(name=name, type="reference", length=18, reference_to=[target], relationship_name=rel, **kw)


def system_fields(owner: bool = True) -> list[FieldDef]:
    fields = [
        field_def(
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
        field_def(
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
        fields.append(
            reference_field("OwnerId", "User", "Owner", nillable=False, defaulted_on_create=True, label="Owner ID")
        )
    for name, type_ in (
        ("CreatedDate", "datetime"),
        ("CreatedById", "reference"),
        ("LastModifiedDate", "datetime"),
        ("LastModifiedById", "reference"),
        ("SystemModstamp", "datetime"),
    ):
        if type_ == "reference":
            fields.append(
                reference_field(
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
            fields.append(
                field_def(name, type_, nillable=False, createable=False, updateable=False, defaulted_on_create=True)
            )
    return fields


#: Lead.CleanStatus (data.com clean): its picklist values
CLEAN_STATUSES = ["Matched", "Different", "Acknowledged", "NotFound", "Inactive", "Pending", "SelectMatch", "Skipped"]


def address_fields(prefix: str) -> list[FieldDef]:
    """An address's component fields and its compound field (``BillingAddress``; ``Address`` on Lead)."""
    compound = f"{prefix}Address"
    parts = [
        field_def(f"{prefix}Street", "textarea", length=255, compound_name=compound),
        field_def(f"{prefix}City", "string", length=40, compound_name=compound),
        field_def(f"{prefix}State", "string", length=80, compound_name=compound),
        field_def(f"{prefix}PostalCode", "string", length=20, compound_name=compound),
        field_def(f"{prefix}Country", "string", length=80, compound_name=compound),
    ]
    keys = {"Street": "street", "City": "city", "State": "state", "PostalCode": "postalCode", "Country": "country"}
    address = field_def(
        compound,
        "address",
        createable=False,
        updateable=False,
        components=tuple((keys[f.name[len(prefix) :]], f.name) for f in parts),
        label=f"{prefix} Address".strip(),
    )
    return [*parts, address]


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
        *system_fields(),
        reference_field("MasterRecordId", "Account", "MasterRecord", createable=False, updateable=False),
        field_def("Name", "string", length=255, nillable=False, name_field=True, label="Account Name"),
        field_def(
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
        reference_field("ParentId", "Account", "Parent"),
        *address_fields("Billing"),
        *address_fields("Shipping"),
        field_def("Phone", "phone", length=40),
        field_def("Fax", "phone", length=40),
        field_def("AccountNumber", "string", length=40),
        field_def("Website", "url", length=255),
        field_def("Sic", "string", length=20),
        field_def("Industry", "picklist", length=255, picklist=INDUSTRIES),
        field_def("AnnualRevenue", "currency", precision=18, scale=0),
        field_def("NumberOfEmployees", "int", digits=8),
        field_def("Ownership", "picklist", length=255, picklist=["Public", "Private", "Subsidiary", "Other"]),
        field_def("TickerSymbol", "string", length=20),
        field_def("Description", "textarea", length=32000),
        field_def("Rating", "picklist", length=255, picklist=RATINGS),
        field_def("Site", "string", length=80),
        field_def("AccountSource", "picklist", length=255, picklist=LEAD_SOURCES),
        field_def("LastActivityDate", "date", createable=False, updateable=False),
    ]


def _contact() -> list[FieldDef]:
    return [
        *system_fields(),
        reference_field("MasterRecordId", "Contact", "MasterRecord", createable=False, updateable=False),
        reference_field("AccountId", "Account", "Account"),
        field_def("LastName", "string", length=80, nillable=False),
        field_def("FirstName", "string", length=40),
        field_def("Salutation", "picklist", length=40, picklist=["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."]),
        field_def("Name", "string", length=121, createable=False, updateable=False, name_field=True, label="Full Name"),
        *address_fields("Mailing"),
        *address_fields("Other"),
        field_def("Phone", "phone", length=40),
        field_def("MobilePhone", "phone", length=40),
        field_def("Email", "email", length=80, id_lookup=True),
        field_def("Title", "string", length=128),
        field_def("Department", "string", length=80),
        field_def("Birthdate", "date"),
        field_def("LeadSource", "picklist", length=255, picklist=LEAD_SOURCES),
        field_def("Description", "textarea", length=32000),
        field_def("HasOptedOutOfEmail", "boolean", nillable=False, defaulted_on_create=True, default=False),
        field_def("DoNotCall", "boolean", nillable=False, defaulted_on_create=True, default=False),
        reference_field("ReportsToId", "Contact", "ReportsTo"),
        field_def("LastActivityDate", "date", createable=False, updateable=False),
    ]


def _opportunity() -> list[FieldDef]:
    return [
        *system_fields(),
        reference_field("AccountId", "Account", "Account"),
        field_def("Name", "string", length=120, nillable=False, name_field=True),
        field_def("Description", "textarea", length=32000),
        field_def("StageName", "picklist", length=255, nillable=False, picklist=STAGES, restricted=True, label="Stage"),
        field_def("Amount", "currency", precision=18, scale=2),
        field_def("Probability", "percent", precision=3, scale=0),
        field_def("CloseDate", "date", nillable=False),
        field_def("Type", "picklist", length=255, picklist=["Existing Business", "New Business"]),
        field_def("NextStep", "string", length=255),
        field_def("LeadSource", "picklist", length=255, picklist=LEAD_SOURCES),
        field_def(
            "IsClosed",
            "boolean",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
            default=False,
        ),
        field_def(
            "IsWon",
            "boolean",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
            default=False,
        ),
        field_def(
            "ForecastCategoryName",
            "picklist",
            length=255,
            picklist=["Omitted", "Pipeline", "Best Case", "Commit", "Closed"],
        ),
        field_def("FiscalYear", "int", digits=4, createable=False, updateable=False),
        field_def("FiscalQuarter", "int", digits=1, createable=False, updateable=False),
    ]


def _lead() -> list[FieldDef]:
    return [
        *system_fields(),
        field_def("LastName", "string", length=80, nillable=False),
        field_def("FirstName", "string", length=40),
        field_def("Name", "string", length=121, createable=False, updateable=False, name_field=True),
        field_def("Title", "string", length=128),
        field_def("Company", "string", length=255, nillable=False),
        *address_fields(""),
        field_def("CleanStatus", "picklist", length=40, picklist=CLEAN_STATUSES, default="Pending"),
        field_def("Phone", "phone", length=40),
        field_def("MobilePhone", "phone", length=40),
        field_def("Email", "email", length=80, id_lookup=True),
        field_def("Website", "url", length=255),
        field_def("Description", "textarea", length=32000),
        field_def("LeadSource", "picklist", length=255, picklist=LEAD_SOURCES),
        field_def(
            "Status",
            "picklist",
            length=255,
            nillable=False,
            defaulted_on_create=True,
            default="Open - Not Contacted",
            restricted=True,
            picklist=["Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted"],
        ),
        field_def("Industry", "picklist", length=255, picklist=INDUSTRIES),
        field_def("Rating", "picklist", length=255, picklist=RATINGS),
        field_def("AnnualRevenue", "currency", precision=18, scale=0),
        field_def("NumberOfEmployees", "int", digits=8),
        field_def(
            "IsConverted",
            "boolean",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
            default=False,
        ),
        field_def("ConvertedDate", "date", createable=False, updateable=False),
        reference_field("ConvertedAccountId", "Account", "ConvertedAccount", createable=False, updateable=False),
        reference_field("ConvertedContactId", "Contact", "ConvertedContact", createable=False, updateable=False),
    ]


def _case() -> list[FieldDef]:
    return [
        *system_fields(),
        field_def(
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
        reference_field("ContactId", "Contact", "Contact"),
        reference_field("AccountId", "Account", "Account"),
        field_def("SuppliedName", "string", length=80, label="Web Name"),
        field_def("SuppliedEmail", "email", length=80, label="Web Email"),
        field_def("SuppliedPhone", "string", length=40, label="Web Phone"),
        field_def(
            "Type", "picklist", length=255, picklist=["Mechanical", "Electrical", "Electronic", "Structural", "Other"]
        ),
        field_def(
            "Status",
            "picklist",
            length=255,
            defaulted_on_create=True,
            default="New",
            picklist=["New", "Working", "Escalated", "Closed"],
        ),
        field_def(
            "Reason",
            "picklist",
            length=255,
            picklist=["Installation", "Equipment Complexity", "Performance", "Breakdown", "Other"],
        ),
        field_def("Origin", "picklist", length=255, picklist=["Phone", "Email", "Web"]),
        field_def("Subject", "string", length=255),
        field_def(
            "Priority",
            "picklist",
            length=255,
            defaulted_on_create=True,
            default="Medium",
            picklist=["High", "Medium", "Low"],
        ),
        field_def("Description", "textarea", length=32000),
        field_def(
            "IsClosed",
            "boolean",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
            default=False,
        ),
        field_def("ClosedDate", "datetime", createable=False, updateable=False),
        field_def("IsEscalated", "boolean", nillable=False, defaulted_on_create=True, default=False),
    ]


def _user() -> list[FieldDef]:
    return [
        *system_fields(owner=False),
        field_def("Username", "string", length=80, nillable=False, unique=True, id_lookup=True),
        field_def("LastName", "string", length=80, nillable=False),
        field_def("FirstName", "string", length=40),
        field_def("Name", "string", length=121, createable=False, updateable=False, name_field=True),
        field_def("Email", "email", length=128, nillable=False),
        field_def("Alias", "string", length=8, nillable=False),
        field_def("IsActive", "boolean", nillable=False, defaulted_on_create=True, default=True),
        field_def("Title", "string", length=80),
        field_def("Department", "string", length=80),
        field_def("CompanyName", "string", length=80),
        reference_field("ManagerId", "User", "Manager"),
        field_def(
            "TimeZoneSidKey",
            "picklist",
            length=40,
            defaulted_on_create=True,
            default="GMT",
            picklist=["GMT", "Europe/London", "Europe/Paris", "America/New_York", "America/Los_Angeles", "Asia/Tokyo"],
        ),
        field_def(
            "LocaleSidKey",
            "picklist",
            length=40,
            defaulted_on_create=True,
            default="en_US",
            picklist=["en_US", "en_GB", "fr_FR", "de_DE", "ja_JP"],
        ),
        field_def(
            "EmailEncodingKey",
            "picklist",
            length=40,
            defaulted_on_create=True,
            default="UTF-8",
            picklist=["UTF-8", "ISO-8859-1"],
        ),
        field_def(
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
