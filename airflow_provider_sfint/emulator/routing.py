"""A small request/response model and router for the Salesforce resources.

Handlers are plain synchronous functions ``(Req) -> Resp``. The ASGI layer (``app.py``) adds
authentication, limits and faults around them; Composite calls them directly for its subrequests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import ApiError, json_parser_error

JSON = "application/json;charset=UTF-8"


@dataclass
class Req:
    method: str
    path: str  # below /services/data/vXX.X/, no leading slash
    version: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    user_id: str
    base_url: str = ""
    params: dict[str, str] = field(default_factory=dict)
    upload: Path | None = None  # a request body already streamed to disk (Bulk uploads)

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        if not self.body.strip():
            raise json_parser_error("No content to map due to end-of-input")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise json_parser_error(f"Unexpected character: {exc}") from None

    def json_object(self) -> dict[str, Any]:
        body = self.json()
        if not isinstance(body, dict):
            raise json_parser_error("Cannot deserialize instance of object from START_ARRAY token")
        return body

    @property
    def version_float(self) -> float:
        return float(self.version)


@dataclass
class Resp:
    status: int
    body: str | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON
    api_calls: int = 1  # how many calls this request counts against DailyApiRequests
    # A body assembled from literal bytes and (file path, start, end) byte ranges, streamed from disk.
    file_parts: list[bytes | tuple[str, int, int]] | None = None
    bandwidth: int | None = None  # bytes per second this response may be sent at (fault/benchmark setting)

    @classmethod
    def json(cls, status: int, value: Any, **kw: Any) -> Resp:
        return cls(status, json.dumps(value, ensure_ascii=False, separators=(",", ":")), **kw)

    @classmethod
    def error(cls, exc: ApiError) -> Resp:
        return cls.json(exc.status, exc.body(), headers=dict(exc.headers))

    def parsed(self) -> Any:
        if self.body is None or self.body == "" or self.body == b"":
            return None
        return json.loads(self.body)


Handler = Callable[[Req], Resp]


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = []

    def add(self, pattern: str, **methods: Handler) -> None:
        self._add(pattern, 0, methods)

    def add_ci(self, pattern: str, **methods: Handler) -> None:
        """A route whose literal path segments match case-insensitively."""
        self._add(pattern, re.IGNORECASE, methods)

    def _add(self, pattern: str, flags: int, methods: dict[str, Handler]) -> None:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "/?$", flags)
        self._routes.append((regex, {m.upper(): h for m, h in methods.items()}))

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        for regex, methods in self._routes:
            m = regex.match(path)
            if not m:
                continue
            handler = methods.get(method.upper())
            if handler is None and method.upper() == "HEAD":
                handler = methods.get("GET")
            if handler is None:
                allowed = ",".join(sorted(methods))
                raise ApiError(
                    405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method.upper()}' not allowed. Allowed are {allowed}"
                )
            return handler, m.groupdict()
        raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")

    def dispatch(self, req: Req) -> Resp:
        try:
            handler, params = self.resolve(req.method, req.path)
            req.params = params
            return handler(req)
        except ApiError as exc:
            return Resp.error(exc)


VERSION_RE = re.compile(r"^/services/data/v(\d+\.\d)(?:/(.*))?$")


def split_url(url: str) -> tuple[str, str, dict[str, list[str]]] | None:
    """Split a (sub)request URL into (version, path below the version, query)."""
    parts = urlsplit(url)
    path = unquote(parts.path)  # as a top-level request's path arrives: percent-escapes decoded
    if re.match(r"^v\d+\.\d", path):
        path = "/services/data/" + path
    m = VERSION_RE.match(path)
    if not m:
        return None
    return m.group(1), m.group(2) or "", parse_qs(parts.query, keep_blank_values=True)
