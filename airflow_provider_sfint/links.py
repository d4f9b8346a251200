"""Extra links: the task's Salesforce job in the org's Setup pages."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

#: XCom key under which operators push the URL of the job they started.
JOB_URL_XCOM_KEY = "sfint_job_url"


class SalesforceJobLink(BaseOperatorLink):
    """ "Salesforce job": the Bulk Data Load Jobs page of the job the task ran (its first, when several)."""

    name = "Salesforce job"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        value = XCom.get_value(ti_key=ti_key, key=JOB_URL_XCOM_KEY)
        return str(value) if value else ""
