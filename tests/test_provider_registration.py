"""The provider registers with Airflow: listings, connection form, import-light provider info."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_sfint.get_provider_info import get_provider_info

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def _airflow(*args: str, tmp_path: Path) -> str:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    out = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_provider_info_shape() -> None:
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-sfint"
    (conn,) = info["connection-types"]
    assert conn["connection-type"] == "sfint"
    fields = conn["conn-fields"]
    for name in (
        "auth_type",
        "client_id",
        "client_secret",
        "private_key",
        "private_key_file",
        "refresh_token",
        "instance_url",
        "api_version",
        "connect_timeout",
        "read_timeout",
        "verify_tls",
        "min_remaining_api_percent",
    ):
        assert {"label", "schema"} <= set(fields[name]), name
    for secret in ("client_secret", "private_key", "refresh_token"):
        assert fields[secret]["schema"]["format"] == "password"
    assert set(conn["ui-field-behaviour"]) == {"hidden-fields", "relabeling", "placeholders"}
    # One Login URL field (the host), and placeholders only where Airflow 3 renders them (standard fields).
    assert "login_url" not in fields and conn["ui-field-behaviour"]["relabeling"]["host"] == "Login URL"
    assert set(conn["ui-field-behaviour"]["placeholders"]) <= {"host", "login", "password", "schema", "port"}
    assert "hook-class-names" not in info


def test_provider_info_is_import_light() -> None:
    code = (
        "import sys; import airflow_provider_sfint.get_provider_info as m; m.get_provider_info(); "
        "heavy = [n for n in ('httpx', 'airflow', 'pyarrow', 'pandas', 'airflow_provider_sfint.client') "
        "if n in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (("providers", "list"), "airflow-provider-sfint"),
        (("providers", "hooks"), "airflow_provider_sfint.hooks.salesforce.SalesforceHook"),
        (("providers", "behaviours"), "sfint"),
        (("providers", "widgets"), "client_secret"),
        (("providers", "triggers"), "airflow_provider_sfint.triggers.bulk"),
        (("providers", "links"), "airflow_provider_sfint.links.SalesforceJobLink"),
    ],
)
def test_airflow_cli_listings(command: tuple[str, ...], expected: str, tmp_path: Path) -> None:
    if command[1] in ("widgets", "behaviours") and _airflow_before_3_2() and not _installed("wtforms"):
        pytest.skip(
            "Airflow 3.1 loads connection-form metadata (of every provider) only with wtforms, which a "
            "plain install does not ship"
        )
    assert expected in _airflow(*command, tmp_path=tmp_path)


def _installed(distribution: str) -> bool:
    """Whether a distribution is installed (Airflow 3.1's API app puts a stand-in ``wtforms`` module into
    sys.modules, which ``importlib.util.find_spec`` then refuses to look at)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(distribution)
    except PackageNotFoundError:
        return False
    return True


def _airflow_before_3_2() -> bool:
    from importlib.metadata import version

    major, minor = (int(p) for p in version("apache-airflow").split(".")[:2])
    return (major, minor) < (3, 2)


def test_every_listed_module_and_link_imports() -> None:
    info = get_provider_info()
    for section in ("operators", "sensors", "triggers"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for link in info["extra-links"]:
        module, _, name = link.rpartition(".")
        assert getattr(importlib.import_module(module), name).name


def test_legacy_form_methods_come_from_the_same_declaration() -> None:
    from airflow_provider_sfint.hooks.salesforce import SalesforceHook

    declared = get_provider_info()["connection-types"][0]
    behaviour = {k.replace("-", "_"): v for k, v in declared["ui-field-behaviour"].items()}
    assert SalesforceHook.get_ui_field_behaviour() == behaviour  # the hook method's spelling of the same
    widgets = SalesforceHook.get_connection_form_widgets()
    assert widgets == {} or set(widgets) == set(declared["conn-fields"])
