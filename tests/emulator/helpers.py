"""Raw HTTP helpers for emulator tests: they speak the protocol directly, not through our client."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from airflow_provider_sfint.emulator import CLIENT_ID, CLIENT_SECRET

VERSION = "60.0"


class Admin:
    """The emulator's admin API."""

    def __init__(self, url: str, verify: bool | str = True) -> None:
        self.http = httpx.Client(base_url=url, timeout=120, verify=verify)

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, f"/__emulator__/{path}", **kw)
        assert r.status_code == 200, f"admin {method} {path}: {r.status_code} {r.text}"
        return r.json()

    def reset(self, seed: str = "demo", records: int | None = None) -> None:
        self._call("POST", "reset", json={"seed": seed, "records": records})

    def faults(self, *rules: dict[str, Any], seed: int = 1) -> Any:
        return self._call("PUT", "faults", json={"seed": seed, "rules": list(rules)})

    def limits(self, **values: Any) -> Any:
        return self._call("PUT", "limits", json=values)

    def settings(self, **values: Any) -> Any:
        return self._call("PUT", "settings", json=values)

    def counters(self) -> Any:
        return self._call("GET", "counters")

    def records(self, obj: str, include_deleted: bool = True) -> list[dict[str, Any]]:
        return self._call("GET", f"records/{obj}", params={"include_deleted": str(include_deleted).lower()})

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "events", params={"event": event} if event else {})

    def token(self, username: str = "admin@sfint.emulator") -> str:
        return str(self._call("POST", "tokens", json={"username": username})["access_token"])

    def load(self, obj: str, records: list[dict[str, Any]]) -> list[str]:
        return list(self._call("POST", f"load/{obj}", json={"records": records})["ids"])

    def set(self, path: str, **values: Any) -> Any:
        return self._call("PUT", path, json=values)


class SalesforceHttp:
    """An authenticated httpx client rooted at ``/services/data/vXX.X/``."""

    def __init__(self, url: str, token: str, version: str = VERSION, **kw: Any) -> None:
        self.url = url
        self.token = token
        self.version = version
        self.http = httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"}, **kw)

    @classmethod
    def login(cls, url: str, **kw: Any) -> SalesforceHttp:
        r = httpx.post(
            f"{url}/services/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
            **kw,
        )
        assert r.status_code == 200, r.text
        return cls(url, r.json()["access_token"], **kw)

    def __enter__(self) -> SalesforceHttp:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.http.close()

    def path(self, rest: str) -> str:
        return rest if rest.startswith("/") else f"/services/data/v{self.version}/{rest}"

    def get(self, rest: str, **kw: Any) -> httpx.Response:
        return self.http.get(self.path(rest), **kw)

    def post(self, rest: str, **kw: Any) -> httpx.Response:
        return self.http.post(self.path(rest), **kw)

    def patch(self, rest: str, **kw: Any) -> httpx.Response:
        return self.http.patch(self.path(rest), **kw)

    def put(self, rest: str, **kw: Any) -> httpx.Response:
        return self.http.put(self.path(rest), **kw)

    def delete(self, rest: str, **kw: Any) -> httpx.Response:
        return self.http.delete(self.path(rest), **kw)

    def query(self, soql: str, all_rows: bool = False, **kw: Any) -> httpx.Response:
        return self.get("queryAll" if all_rows else "query", params={"q": soql}, **kw)

    def api_usage(self, response: httpx.Response) -> int:
        header = response.headers["Sforce-Limit-Info"]
        return int(header.split("=")[1].split("/")[0])


def demo_org_spec() -> dict[str, Any]:
    """The bundled demo org's definition (a fresh copy), for a test to extend with rules, fields or objects."""
    import airflow_provider_sfint.emulator as package

    return dict(yaml.safe_load((Path(package.__file__).with_name("orgs") / "demo.yaml").read_text()))


def org_file(folder: Path, spec: dict[str, Any]) -> Path:
    """``spec`` written as an org YAML in ``folder`` (for ``EmulatorProcess(org=...)``)."""
    path = folder / "org.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path
