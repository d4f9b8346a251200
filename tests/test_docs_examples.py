"""The Python examples in docs/ run as written (against the test emulator where they name one)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from .emulator.helpers import Admin

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _default_connection(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """``sfint_default`` pointing at the test emulator, as the docs' examples expect."""
    from airflow_provider_sfint.emulator import CLIENT_ID, CLIENT_SECRET

    extra = {"auth_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    monkeypatch.setenv("AIRFLOW_CONN_SFINT_DEFAULT", json.dumps({"conn_type": "sfint", "host": url, "extra": extra}))


def _blocks(name: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / name).read_text(encoding="utf-8"), flags=re.S)


def _block_with(name: str, marker: str) -> str:
    """The one python block of a page that contains `marker` (robust to blocks added before it)."""
    (block,) = [b for b in _blocks(name) if marker in b]
    return block


@pytest.mark.parametrize(
    ("doc", "index"),
    [
        ("client.md", 0),
        ("client.md", 1),
        ("emulator.md", 0),
        ("bulk-query.md", 0),
        ("bulk-query.md", 1),
        ("bulk-query.md", 2),
        ("bulk-ingest.md", 0),
        ("sensors.md", 0),
        ("sensors.md", 1),
        ("composite.md", 1),
        ("testing.md", 0),
        ("incremental.md", 0),
        ("limits.md", 0),
    ],
)
def test_doc_example_runs(
    doc: str, index: int, emulator_url: str, fresh_org: Admin, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _blocks(doc)[index].replace("http://127.0.0.1:8765", emulator_url)
    fresh_org.load("Contact", [{"LastName": "O'Brien"}])
    exec(compile(code, f"{doc}[{index}]", "exec"), {"__name__": "__docs__"})


def test_connection_doc_example_runs(monkeypatch: pytest.MonkeyPatch, emulator_url: str, fresh_org: Admin) -> None:
    text = (DOCS / "connections.md").read_text(encoding="utf-8")
    conn = re.search(r"AIRFLOW_CONN_SFINT_DEFAULT='(.*?)'", text, flags=re.S)
    assert conn is not None
    monkeypatch.setenv("AIRFLOW_CONN_SFINT_DEFAULT", conn.group(1).replace("http://127.0.0.1:8765", emulator_url))
    exec(compile(_blocks("connections.md")[0], "connections.md", "exec"), {"__name__": "__docs__"})


def test_ingest_doc_example_runs(monkeypatch: pytest.MonkeyPatch, emulator_url: str, fresh_org: Admin) -> None:
    _default_connection(monkeypatch, emulator_url)
    exec(compile(_blocks("bulk-ingest.md")[1], "bulk-ingest.md[1]", "exec"), {"__name__": "__docs__"})
    exec(compile(_blocks("composite.md")[0], "composite.md[0]", "exec"), {"__name__": "__docs__"})
    exec(compile(_blocks("events.md")[0], "events.md[0]", "exec"), {"__name__": "__docs__"})
    assert fresh_org.events("Warehouse_Sync__e")[0]["payload"]["Run_Id__c"] == "manual-1"
    names = {r["External_Id__c"]: r["Name"] for r in fresh_org.records("Account") if r.get("External_Id__c")}
    assert (names["DOC-1"], names["DOC-2"]) == ("Acme", "Globex")
    assert (names["CMP-DOC-1"], names["CMP-DOC-2"]) == ("Acme", "Globex")


def test_object_storage_doc_example_runs(
    monkeypatch: pytest.MonkeyPatch, emulator_url: str, fresh_org: Admin, s3_lake: Any
) -> None:
    """The S3 how-to, against moto's S3 server standing in for the MinIO endpoint the page names."""
    _default_connection(monkeypatch, emulator_url)
    endpoint = s3_lake.client_kwargs["endpoint_url"]
    code = _blocks("object-storage.md")[0].replace("http://127.0.0.1:9000", endpoint)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_LAKE", "")  # the example sets it; monkeypatch restores it afterwards
    exec(compile(code, "object-storage.md[0]", "exec"), {"__name__": "__docs__"})
    manifest = json.loads(s3_lake.cat("lake/raw/accounts/_SUCCESS"))
    assert manifest["rows"] == len(fresh_org.records("Account", include_deleted=False))


def test_performance_page_matches_the_recorded_results() -> None:
    """docs/performance.md is generated from bench/results (make bench); a stale page fails here."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_report", DOCS.parent / "bench" / "report.py")
    assert spec is not None and spec.loader is not None
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    page, svg = report.render()
    assert (DOCS / "performance.md").read_text() == page, "run .venv/bin/python bench/report.py"
    assert (DOCS / "performance.svg").read_text() == svg
    assert "| sfint |" in page and "<rect" in svg


def test_soql_literal_filter_renders_a_safe_query(
    monkeypatch: pytest.MonkeyPatch, emulator_url: str, fresh_org: Admin, tmp_path: Path
) -> None:
    """The templated-SOQL example: the filter turns O'Brien into a literal Salesforce accepts."""
    import pyarrow.parquet as pq

    _default_connection(monkeypatch, emulator_url)
    fresh_org.load("Account", [{"Name": "O'Brien"}, {"Name": "OBrien"}])
    code = _blocks("bulk-query.md")[1].replace("file:///tmp/accounts_by_name.parquet", f"file://{tmp_path}/a.parquet")
    scope: dict[str, object] = {"__name__": "__docs__"}
    exec(compile(code, "bulk-query.md[1]", "exec"), scope)
    dag = scope["dag"]
    task = dag.get_task("extract")  # type: ignore[attr-defined]
    soql = dag.get_template_env().from_string(task.soql).render(params={"name": "O'Brien"})  # type: ignore[attr-defined]
    assert soql.endswith("Name = 'O\\'Brien'")
    task.soql = soql
    task.execute({})
    assert pq.read_table(tmp_path / "a.parquet").column("Name").to_pylist() == ["O'Brien"]


def test_pubsub_subscribe_doc_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The events page's Pub/Sub client example: a plain grpcio subscriber reads an Account's change event."""
    code = _block_with("events.md", "stream_stream")
    exec(compile(code, "events.md (any Pub/Sub client)", "exec"), {"__name__": "__docs__"})
    out = capsys.readouterr().out
    assert "CREATE ['001" in out and "Acme Paris" in out and "resume after replay id" in out


def test_pubsub_client_doc_example_runs(
    emulator_server: Any, fresh_org: Admin, capsys: pytest.CaptureFixture[str]
) -> None:
    """The client page's Pub/Sub example, pointed at the test emulator's HTTP and gRPC ports."""
    code = _blocks("client.md")[2].replace("http://127.0.0.1:8765", emulator_server.url)
    code = code.replace("127.0.0.1:50051", emulator_server.grpc_target)
    fresh_org.load("Account", [{"Name": "Loaded without events"}])
    sf = httpx.Client(base_url=emulator_server.url, headers={"Authorization": f"Bearer {fresh_org.token()}"})
    sf.post("/services/data/v62.0/sobjects/Account", json={"Name": "Docs"})
    exec(compile(code, "client.md[2]", "exec"), {"__name__": "__docs__"})
    out = capsys.readouterr().out
    assert "published " in out and "CREATE ('001" in out


def test_asset_watcher_doc_example_parses() -> None:
    """The events page's watcher DAG: an asset watched by the channel trigger schedules the change reader."""
    from airflow_provider_sfint.triggers.channel import SalesforceChannelTrigger

    scope: dict[str, object] = {"__name__": "__docs__"}
    exec(compile(_block_with("events.md", "AssetWatcher"), "events.md (watcher)", "exec"), scope)
    asset = scope["account_changes"]
    (watcher,) = asset.watchers  # type: ignore[attr-defined]
    assert isinstance(watcher.trigger, SalesforceChannelTrigger) and watcher.trigger.min_interval == 30
