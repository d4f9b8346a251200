"""The provider's protocol core: pure Python, no Airflow import, usable from any script.

``SalesforceClient`` / ``AsyncSalesforceClient`` talk REST to one org described by a
``ClientConfig``; errors are typed (:mod:`.errors`); SOQL literals are built safely with :mod:`.soql`.
"""

from .auth import AUTH_TYPES, ClientConfig, Session, check_url, forget_sessions
from .errors import (
    AuthenticationError,
    BudgetExhaustedError,
    ConfigurationError,
    InsecureTransportError,
    LimitExceededError,
    LoginRefusedError,
    MultipleMatchesError,
    NotFoundError,
    QueryError,
    RateLimitedError,
    RecordValidationError,
    RowLockError,
    SalesforceError,
    ServerError,
    TransportError,
)
from .limits import ApiUsage, LimitValue, parse_limit_info
from .rest import AsyncSalesforceClient, QueryPage, SalesforceClient, UpsertResult, flatten_record
from .soql import literal, quote_like, quote_string, soql

__all__ = [
    "AUTH_TYPES",
    "ApiUsage",
    "AsyncSalesforceClient",
    "AuthenticationError",
    "BudgetExhaustedError",
    "ClientConfig",
    "ConfigurationError",
    "InsecureTransportError",
    "LimitExceededError",
    "LimitValue",
    "LoginRefusedError",
    "MultipleMatchesError",
    "NotFoundError",
    "QueryError",
    "QueryPage",
    "RateLimitedError",
    "RecordValidationError",
    "RowLockError",
    "SalesforceClient",
    "SalesforceError",
    "ServerError",
    "Session",
    "TransportError",
    "UpsertResult",
    "check_url",
    "flatten_record",
    "forget_sessions",
    "literal",
    "parse_limit_info",
    "quote_like",
    "quote_string",
    "soql",
]
