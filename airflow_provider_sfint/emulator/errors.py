"""Errors the emulator answers with, in Salesforce's shapes.

``ApiError`` is a whole-request failure (a JSON array of ``{message, errorCode, fields?}``);
``RecordError`` is one record's failure, reported with ``statusCode`` in DML result lists and turned
into an ``ApiError`` by the single-record REST resources.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request-level error: HTTP status plus a JSON array body."""

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        fields: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = fields
        self.headers = headers or {}

    def body(self) -> list[dict[str, Any]]:
        entry: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            entry["fields"] = self.fields
        return [entry]


class RecordError(Exception):
    """A per-record DML error (``statusCode`` form)."""

    def __init__(self, status_code: str, message: str, fields: list[str] | None = None) -> None:
        """``fields=None`` means the REST error body carries no ``fields`` key (as for unknown columns)."""
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.fields = fields

    def result_entry(self) -> dict[str, Any]:
        return {"statusCode": self.status_code, "message": self.message, "fields": self.fields or []}

    def as_api_error(self, status: int = 400) -> ApiError:
        return ApiError(status, self.status_code, self.message, self.fields)


class OAuthError(Exception):
    """An OAuth token endpoint error: ``{"error", "error_description"}`` with HTTP 400."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def not_found(message: str = "The requested resource does not exist") -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def json_parser_error(message: str) -> ApiError:
    return ApiError(400, "JSON_PARSER_ERROR", message)
