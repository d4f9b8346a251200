"""The emulator's command line, data generator and admin API."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from airflow_provider_sfint.emulator import CLIENT_ID, CLIENT_SECRET

from .helpers import Admin, SalesforceHttp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_help_documents_default_credentials() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "airflow_provider_sfint.emulator", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for text in (
        "sfint-emulator",
        "sfint-emulator-secret",
        "admin@sfint.emulator",
        "--tls",
        "--seed",
        "--org",
        "--db",
        "--jwt-cert",
    ):
        assert text in out


def test_cli_serves_tls_and_stops_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_sfint.emulator",
            "--port",
            str(port),
            "--tls",
            "--seed",
            "empty",
            "--cert-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("TLS certificate: ")
        cert = first.split(": ", 1)[1].strip()
        assert Path(cert).is_file()
        url = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"{url}/services/data/", verify=cert)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert r.status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/services/data/")  # verification stays on: the system store does not trust it
        token = httpx.post(
            f"{url}/services/oauth2/token",
            verify=cert,
            data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        ).json()
        assert token["instance_url"] == url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode is not None


def test_datagen_cli_and_keep_seed(tmp_path: Path) -> None:
    db = tmp_path / "org.db"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow_provider_sfint.emulator.datagen",
            "--db",
            str(db),
            "--counts",
            "Account=300",
            "Contact=50",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Account: 300 records" in out.stdout
    from airflow_provider_sfint.emulator import Emulator

    em = Emulator(db_path=str(db), seed="keep")
    try:
        assert em.store.count(em.org.objects["Account"]) == 300
        assert em.store.count(em.org.objects["Contact"]) == 50
        assert em.admin_user_id.startswith("005")
    finally:
        em.store.conn.close()


def test_seed_is_deterministic(admin: Admin) -> None:
    admin.set("clock", now="2026-03-01T12:00:00Z")
    try:
        admin.reset(seed="empty")
        admin._call("POST", "seed", json={"counts": {"Account": 300, "Contact": 300}, "seed": 11})
        first = admin.records("Account"), admin.records("Contact")
        admin.reset(seed="empty")
        admin._call("POST", "seed", json={"counts": {"Account": 300, "Contact": 300}, "seed": 11})
        second = admin.records("Account"), admin.records("Contact")
        assert first == second
        admin.reset(seed="empty")
        admin._call("POST", "seed", json={"counts": {"Account": 300}, "seed": 12})
        assert admin.records("Account") != first[0]
        stamps = [r["SystemModstamp"] for r in first[0]]
        assert min(stamps) >= "2024-03-01" and max(stamps) <= "2026-03-01T00:00:00.000Z"
        assert any(r["IsDeleted"] for r in first[1])
        assert all(r["AccountId"] is None or r["AccountId"].startswith("001") for r in first[1])
    finally:
        admin.set("clock", offset_seconds=0)
        admin.reset(seed="demo", records=200)


def test_admin_load_clock_and_counters(sf: SalesforceHttp, admin: Admin) -> None:
    ids = admin.load("Account", [{"Name": "Loaded 1", "External_Id__c": "L-1"}, {"Name": "Loaded 2"}])
    assert len(ids) == 2 and all(i.startswith("001") for i in ids)
    assert sf.query("SELECT COUNT() FROM Account WHERE Name LIKE 'Loaded%'").json()["totalSize"] == 2
    admin.set("clock", now="2024-01-02T03:04:05Z")
    try:
        created = sf.post("sobjects/Account", json={"Name": "Time traveller"}).json()["id"]
        assert sf.get(f"sobjects/Account/{created}").json()["CreatedDate"].startswith("2024-01-02T03:04:0")
    finally:
        admin.set("clock", offset_seconds=0)
    counters = admin.counters()
    assert counters["requests"]["POST sobjects/Account"] >= 1
    assert counters["requests"]["GET query"] >= 1
    assert counters["api_usage"] == counters["requests"]["api calls"]
    bad = httpx.post(f"{sf.url}/__emulator__/load/Nope", json={"records": [{"Name": "x"}]})
    assert bad.status_code == 400 and "unknown object" in bad.json()["error"]
    bad_fault = httpx.put(f"{sf.url}/__emulator__/faults", json={"rules": [{"kind": "meteor"}]})
    assert bad_fault.status_code == 400 and "unknown fault kind" in bad_fault.json()["error"]
    bad_limit = httpx.put(f"{sf.url}/__emulator__/limits", json={"nope": 1})
    assert bad_limit.status_code == 400


def test_minted_token_for_pre_issued_auth(emulator_url: str, admin: Admin) -> None:
    token = admin.token()
    with SalesforceHttp(emulator_url, token) as sf:
        assert sf.get("limits").status_code == 200
    admin._call("POST", "tokens/expire")
    with SalesforceHttp(emulator_url, token) as sf:
        assert sf.get("limits").status_code == 401


def test_identity_url(sf: SalesforceHttp) -> None:
    ident = sf.get("").json()["identity"]
    r = httpx.get(ident, headers={"Authorization": f"Bearer {sf.token}"})
    assert r.status_code == 200 and r.json()["username"] == "integration@sfint.emulator"
