"""Extra links: the task's Salesforce job in the org's Setup pages."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

#: XCom key under which operators push the URL of the job they started.
JOB_URL_XCOM_KEY = "sfint_job_url"
#: XCom key under which operators push the id of the Bulk job they started (for a sensor downstream).
JOB_ID_XCOM_KEY = "sfint_job_id"
#: The attribute on a running operator that holds its job's URL (read by the link when the task ends).
JOB_URL_ATTR = "_sfint_job_url"


def announce_job(operator: Any, context: Any, url: str, job_id: str) -> None:
    """Remember the job on the operator (for its extra link) and push its id and URL as XComs."""
    setattr(operator, JOB_URL_ATTR, url)
    ti = context.get("ti")
    if ti is not None:
        ti.xcom_push(key=JOB_ID_XCOM_KEY, value=job_id)
        ti.xcom_push(key=JOB_URL_XCOM_KEY, value=url)


def forget_job_link(operator: Any) -> None:
    """After a deferral the resumed operator is a new object: its link is the URL pushed before deferring."""
    operator.__dict__.pop(JOB_URL_ATTR, None)


class SalesforceJobLink(BaseOperatorLink):
    """ "Salesforce job": the Bulk Data Load Jobs page of the job the task ran (its first, when several).

    Airflow 3 computes a task's links in the task process when it ends (and keeps them for the UI): there the
    operator itself knows its job, so a task that failed before creating one asks for no XCom (whose absence
    the task SDK would log as an error).
    """

    name = "Salesforce job"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        if hasattr(operator, JOB_URL_ATTR):
            return str(getattr(operator, JOB_URL_ATTR) or "")
        value = XCom.get_value(ti_key=ti_key, key=JOB_URL_XCOM_KEY)
        return str(value) if value else ""
