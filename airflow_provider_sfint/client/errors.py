"""Typed errors. Each carries what failed (HTTP status, errorCode, message, fields) and which request
(method and path), never headers, tokens or bodies sent."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

#: Row (record) errors that a second attempt may pass: a lock held by another transaction, a moment of
#: unavailability. Bulk follow-up jobs and Collections retries run those rows once more; nothing else is retried.
TRANSIENT_ROW_ERRORS = frozenset({"UNABLE_TO_LOCK_ROW", "API_TEMPORARILY_UNAVAILABLE", "SERVER_UNAVAILABLE"})

QUERY_ERROR_CODES = frozenset(
    {
        "MALFORMED_QUERY",
        "INVALID_FIELD",
        "INVALID_TYPE",
        "INVALID_QUERY_FILTER_OPERATOR",
        "INVALID_QUERY_LOCATOR",
        "QUERY_TIMEOUT",
        "NUMBER_OUTSIDE_VALID_RANGE",
    }
)


def did_you_mean(word: str, names: Iterable[str]) -> str:
    """``"; did you mean A, B?"`` with the names closest to ``word`` (case-insensitive), or ``""``."""
    by_lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(by_lower[c] for c in close)}?" if close else ""


class SalesforceError(Exception):
    """Base class: a Salesforce API call failed.

    :param message: what Salesforce (or the client) said
    :param status: HTTP status, when a response was received
    :param error_code: Salesforce ``errorCode`` (or OAuth ``error``)
    :param fields: fields Salesforce named
    :param method: the request's HTTP method
    :param path: the request's path (no host, no query string)
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        fields: list[str] | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.error_code = error_code
        self.fields = list(fields or [])
        self.method = method
        self.path = path
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"{self.method} {self.path}: " if self.method and self.path else ""
        code = f"{self.error_code}: " if self.error_code else ""
        status = f" (HTTP {self.status})" if self.status else ""
        fields = f" [fields: {', '.join(self.fields)}]" if self.fields else ""
        return f"{where}{code}{self.message}{fields}{status}"


class ConfigurationError(SalesforceError, ValueError):
    """A connection setting is missing or malformed; retrying cannot help. The message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        super().__init__(f"connection setting '{setting}': {problem}")


class AuthenticationError(SalesforceError):
    """Credentials were refused (OAuth error), or a session stayed invalid after one refresh."""


class LoginRefusedError(AuthenticationError):
    """The token endpoint refused the credentials (wrong secret, revoked grant, unknown user...): retrying the
    same credentials cannot succeed, so callers should fail at once. A 5xx answer is a :class:`ServerError`."""


class InsecureTransportError(AuthenticationError):
    """An instance or login URL that is not https on a Salesforce host (or an explicitly allowed one)."""


class TransportError(SalesforceError):
    """The request failed below HTTP (connection refused, reset, timeout, truncated body)."""

    def __init__(self, message: str, *, sent: bool, method: str | None = None, path: str | None = None) -> None:
        self.sent = sent  # False when the request provably never left this machine
        super().__init__(message, method=method, path=path)


class ServerError(SalesforceError):
    """5xx from Salesforce."""


class RateLimitedError(SalesforceError):
    """429 / 420, or the concurrent-request REQUEST_LIMIT_EXCEEDED: back off and retry."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class RowLockError(SalesforceError):
    """UNABLE_TO_LOCK_ROW at request level: another transaction holds the record; retry later."""


class LimitExceededError(SalesforceError):
    """The org's daily API allowance is spent (TotalRequests). Never retried: waiting hours is not a retry.

    :param used: calls used in the rolling 24 hours, when known
    :param limit: the daily allowance, when known
    """

    def __init__(self, message: str, *, used: int | None = None, limit: int | None = None, **kw: Any) -> None:
        self.used = used
        self.limit = limit
        if used is not None and limit is not None:
            message = f"{message} (API usage {used}/{limit})"
        super().__init__(message, **kw)


class BudgetExhaustedError(LimitExceededError):
    """Refused by our own budget check: less than the configured share of the daily allowance remains."""


class QueryError(SalesforceError):
    """SOQL rejected: MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE, ..."""


class NotFoundError(SalesforceError):
    """404: the object, record or resource does not exist (or the record is deleted)."""


class MultipleMatchesError(SalesforceError):
    """300: an external id matched several records.

    :param urls: the matching records' URLs
    """

    def __init__(self, message: str, *, urls: list[str], **kw: Any) -> None:
        self.urls = urls
        super().__init__(message, **kw)


class RecordValidationError(SalesforceError):
    """400 for the record sent: required field missing, bad value, duplicate, read-only field, ..."""


def _first_error(body: Any) -> tuple[str | None, str, list[str]]:
    if isinstance(body, list) and body and isinstance(body[0], dict):
        entry = body[0]
        return entry.get("errorCode"), str(entry.get("message", "")), list(entry.get("fields") or [])
    if isinstance(body, dict):
        if "error" in body:
            return str(body["error"]), str(body.get("error_description", "")), []
        if "errorCode" in body:
            return str(body["errorCode"]), str(body.get("message", "")), list(body.get("fields") or [])
    return None, str(body)[:500] if body else "", []


def error_from_response(
    status: int,
    body: Any,
    *,
    method: str,
    path: str,
    retry_after: float | None = None,
    usage: tuple[int, int] | None = None,
) -> SalesforceError:
    """Map an error response to the typed exception a caller can act on."""
    code, message, fields = _first_error(body)
    kw: dict[str, Any] = {"status": status, "error_code": code, "fields": fields, "method": method, "path": path}
    if status == 300 and isinstance(body, list):
        urls = [str(u) for u in body]
        return MultipleMatchesError(f"{len(urls)} records match the external id", urls=urls, **kw)
    if code == "REQUEST_LIMIT_EXCEEDED" and status == 403:
        if "TotalRequests" in message:
            used, limit = usage if usage else (None, None)
            return LimitExceededError(message, used=used, limit=limit, **kw)
        return RateLimitedError(message, retry_after=retry_after, **kw)
    if status in (429, 420):
        return RateLimitedError(message or "rate limited", retry_after=retry_after, **kw)
    if code == "UNABLE_TO_LOCK_ROW":
        return RowLockError(message, **kw)
    if status >= 500:
        return ServerError(message or f"HTTP {status}", **kw)
    if status == 401 or code in ("INVALID_SESSION_ID", "INVALID_AUTH_HEADER"):
        return AuthenticationError(message or "session invalid", **kw)
    if status == 404:
        return NotFoundError(message or "not found", **kw)
    # INVALID_FIELD / INVALID_TYPE mean a bad query on query resources, a bad record elsewhere.
    is_query = "/query" in path or "/queryAll" in path or "/jobs/query" in path
    if code == "MALFORMED_QUERY" or (code in QUERY_ERROR_CODES and is_query):
        return QueryError(message, **kw)
    if status == 400:
        return RecordValidationError(message, **kw)
    return SalesforceError(message or f"HTTP {status}", **kw)


class PermanentError(SalesforceError):
    """Retrying the same work cannot help: bad input, a failure threshold passed, saved progress that no longer
    matches the input. Operators fail the task without using its retries."""


class InputError(PermanentError, ValueError):
    """The input (a file, a DataFrame, records, a setting) cannot be loaded as it is; the message names the
    object, column or row at fault and what to do. Nothing was sent to Salesforce."""


class TooManyFailedRowsError(PermanentError):
    """More rows failed than the caller allowed (``max_failed_records`` / ``max_failed_ratio``); every row was
    processed and the failed ones, with their errors, were written where the message says."""

    def __init__(self, message: str, *, summary: dict[str, Any] | None = None) -> None:
        self.summary = dict(summary or {})
        super().__init__(message)


class ProgressConflictError(PermanentError):
    """Progress saved by an earlier try no longer matches the work (the input changed after a job took its
    rows): continuing could load rows twice, so a person has to decide."""


class PreflightError(InputError):
    """Input that cannot succeed, found before any job was created; ``problems`` lists each finding."""

    def __init__(self, obj: str, problems: list[str]) -> None:
        self.obj = obj
        self.problems = problems
        shown = "\n  - ".join(problems[:25])
        more = f"\n  ... and {len(problems) - 25} more" if len(problems) > 25 else ""
        super().__init__(f"input for {obj} cannot be loaded as it is (no job was created):\n  - {shown}{more}")


class UnknownFieldError(InputError):
    """Query or input columns that name no field (or relationship) of the object; the message lists every one
    of them, each with the closest names."""


class CompositeError(SalesforceError):
    """A composite or graph request whose subrequests failed; ``failures`` names each by referenceId."""

    def __init__(self, what: str, failures: list[Any]) -> None:
        self.failures = failures
        detail = "; ".join(f"{f.reference_id} (HTTP {f.status}): {f.describe_errors()}" for f in failures[:5])
        more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
        super().__init__(f"{what}: {len(failures)} subrequest(s) failed: {detail}{more}")


class BulkJobError(SalesforceError):
    """A Bulk job ended Failed or Aborted, or could not be used.

    :param job_id: the job
    :param state: its last known state
    :param job_message: Salesforce's ``errorMessage`` for the job, when it gave one
    """

    def __init__(self, message: str, *, job_id: str, state: str | None = None, job_message: str | None = None) -> None:
        self.job_id = job_id
        self.state = state
        self.job_message = job_message
        super().__init__(message)

    @property
    def is_timeout(self) -> bool:
        """Salesforce gave up on the query (too slow or retried too often): a smaller window may pass."""
        text = (self.job_message or "").upper()
        return "QUERY_TIMEOUT" in text or "RETRIED MORE THAN" in text


class BulkJobTimeout(BulkJobError):
    """The job did not finish within the caller's timeout (the job itself is left as it was)."""


class ResultIntegrityError(SalesforceError):
    """Result pages do not add up: a row count, locator or total disagrees with what Salesforce said."""


class PubSubError(SalesforceError):
    """A Pub/Sub API call failed: the gRPC status, and Salesforce's code from the ``error-code`` trailer.

    :param grpc_status: the gRPC status name (``UNAVAILABLE``, ``INVALID_ARGUMENT``, ...)
    :param rpc_id: the ``rpcId`` Salesforce put in the message (quote it to Salesforce support)
    """

    def __init__(self, message: str, *, grpc_status: str = "", rpc_id: str | None = None, **kw: Any) -> None:
        self.grpc_status = grpc_status
        self.rpc_id = rpc_id
        super().__init__(message, **kw)


class ReplayIdExpiredError(PubSubError, PermanentError):
    """The replay id to resume from is past the 72-hour retention (or unknown): the events after it are gone.
    Take a fresh snapshot of the objects (a Bulk query) and subscribe again from LATEST."""


class ReplayIdCorruptedError(PubSubError, PermanentError):
    """The replay id is not one Salesforce issued (damaged checkpoint, or from another org or channel)."""


class TopicNotFoundError(PubSubError, PermanentError):
    """The channel does not exist or the user may not read it (names are case-sensitive)."""


class PubSubAuthError(PubSubError, AuthenticationError):
    """The Pub/Sub API refused the session even after signing in again."""


class DeliveryAllocationError(PubSubError, LimitExceededError):
    """The org's event delivery allocation (DailyDeliveredPlatformEvents) is used up."""
