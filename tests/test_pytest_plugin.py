"""The pytest plugin users get with the package: the docs' own example (a DAG, its conftest and its test, as
docs/testing.md shows them) run in a pytest process of its own, finding the plugin through its entry point."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "testing.md"


def _files() -> dict[str, str]:
    """The docs' code blocks that start with a '# <path>' line, by path."""
    blocks = re.findall(r"```python\n# (\S+\.py)\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.S)
    return {path: code for path, code in blocks}


def _run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_documented_dag_test_passes_with_the_plugin(tmp_path: Path) -> None:
    files = _files()
    assert set(files) == {"dags/accounts_sync.py", "tests/conftest.py", "tests/test_accounts_sync.py"}
    for path, code in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(code, encoding="utf-8")
    result = _run(tmp_path, "tests", "--sfint-records", "50")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "1 passed" in result.stdout


def test_fixtures_options_and_tls(tmp_path: Path) -> None:
    """The fixtures a user's suite sees: an org definition of their own, the empty seed, a TLS connection that
    trusts only the emulator's certificate, and faults."""
    org = tmp_path / "org.yaml"
    org.write_text(
        "objects:\n  Invoice__c:\n    keyPrefix: a07\n    fields:\n"
        "      Total__c: {type: currency, precision: 16, scale: 2}\n"
        "events:\n  Invoice_Paid__e:\n    fields:\n      Invoice__c: {type: string, length: 18}\n",
        encoding="utf-8",
    )
    (tmp_path / "test_fixtures.py").write_text(
        """
import json
import os

import httpx


def test_own_org_empty_seed(sfint_org, sfint_conn):
    assert sfint_org.records("Account") == []
    (invoice,) = sfint_org.load("Invoice__c", [{"Name": "INV-1", "Total__c": 12.5}])
    conn = json.loads(os.environ["AIRFLOW_CONN_SFINT_DEFAULT"])
    token = httpx.post(
        conn["host"] + "/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": conn["extra"]["client_id"],
              "client_secret": conn["extra"]["client_secret"]},
    ).json()["access_token"]
    got = httpx.get(conn["host"] + f"/services/data/v62.0/sobjects/Invoice__c/{invoice}",
                    headers={"Authorization": f"Bearer {token}"}).json()
    assert got["Total__c"] == 12.5 and sfint_org.api_calls() == 1


def test_tls_connection(sfint_connection, sfint_emulator_tls):
    conn_id = sfint_connection("sfint_secure", tls=True)
    conn = json.loads(os.environ["AIRFLOW_CONN_SFINT_SECURE"])
    assert conn_id == "sfint_secure" and conn["host"].startswith("https://127.0.0.1:")
    assert conn["extra"]["verify_tls"] == str(sfint_emulator_tls.cert_path)
    ok = httpx.get(conn["host"] + "/services/data", verify=conn["extra"]["verify_tls"])
    assert ok.status_code == 200


def test_faults_are_reset_between_tests_1(sfint_org):
    sfint_org.faults({"kind": "503", "path": "/query"})
    assert sfint_org.counters()["requests"] == {}


def test_faults_are_reset_between_tests_2(sfint_org):
    assert httpx.get(sfint_org.url + "/__emulator__/faults").json()["rules"] == []


def test_change_data_capture_and_pubsub(sfint_org):
    assert sfint_org.pubsub()["grpc_port"] == int(sfint_org.grpc_target.rsplit(":", 1)[1])
    assert sfint_org.change_data_capture(enable=["Invoice__c"]) == ["Invoice__c"]
    (invoice,) = sfint_org.load("Invoice__c", [{"Name": "INV-2"}])
    sfint_org.gap("Invoice__c", [invoice], "GAP_CREATE")
    channels = {c["channel"]: c for c in sfint_org.channels()}
    assert channels["/data/Invoice__ChangeEvent"]["events"] == 1
    assert "/event/Invoice_Paid__e" in channels
""",
        encoding="utf-8",
    )
    result = _run(tmp_path, "test_fixtures.py", "--sfint-org", str(org), "--sfint-seed", "empty")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "5 passed" in result.stdout
