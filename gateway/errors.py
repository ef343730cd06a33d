"""The gateway's errors: one hierarchy, each carrying a Trino error name.

Every error a user can cause is a `GatewayError`. Foreign errors (DuckDB, drivers, sqlglot) are translated
into one of these where they enter the gateway, and one handler per frontend turns them into the client's
own error format. Anything that is not a `GatewayError` by the time it reaches a frontend is a bug and is
reported as GENERIC_INTERNAL_ERROR without its text.

    GatewayError                         errorName / errorType decided by `error_name`
    ├── UserError                        USER_ERROR: the statement or request is wrong
    │   ├── SyntaxError_                 SYNTAX_ERROR (with line/column where known)
    │   ├── NotSupported                 NOT_SUPPORTED: valid SQL the gateway refuses (writes, multi-catalog)
    │   ├── NotFound                     CATALOG_/SCHEMA_/TABLE_NOT_FOUND, MISSING_*_NAME
    │   ├── PermissionDenied             PERMISSION_DENIED
    │   └── QueryCanceled                USER_CANCELED
    ├── InsufficientResources            INSUFFICIENT_RESOURCES: queue full, time limits
    ├── BackendError                     EXTERNAL: the backend failed for a reason that is not the user's SQL
    └── InternalError                    INTERNAL_ERROR: a gateway bug; message never shown to clients

Two errors happen before any query exists and are answered with an HTTP status instead:

    ProtocolError                        the request itself is malformed (400, 404, 413, 503)
    AuthenticationFailed                 credentials missing or wrong (401; 429 while an address is slowed)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

USER_ERROR = "USER_ERROR"
INTERNAL_ERROR = "INTERNAL_ERROR"
INSUFFICIENT_RESOURCES = "INSUFFICIENT_RESOURCES"
EXTERNAL = "EXTERNAL"


@dataclass(frozen=True, slots=True)
class ErrorCode:
    name: str
    code: int
    type: str


def _codes(*entries: tuple[str, int, str]) -> dict[str, ErrorCode]:
    return {name: ErrorCode(name, code, kind) for name, code, kind in entries}


# Trino's io.trino.spi.StandardErrorCode values, so clients that switch on names or codes behave as with Trino.
ERROR_CODES: dict[str, ErrorCode] = _codes(
    ("GENERIC_USER_ERROR", 0, USER_ERROR),
    ("SYNTAX_ERROR", 1, USER_ERROR),
    ("ABANDONED_QUERY", 2, USER_ERROR),
    ("USER_CANCELED", 3, USER_ERROR),
    ("PERMISSION_DENIED", 4, USER_ERROR),
    ("NOT_FOUND", 5, USER_ERROR),
    ("FUNCTION_NOT_FOUND", 6, USER_ERROR),
    ("INVALID_FUNCTION_ARGUMENT", 7, USER_ERROR),
    ("DIVISION_BY_ZERO", 8, USER_ERROR),
    ("INVALID_CAST_ARGUMENT", 9, USER_ERROR),
    ("NOT_SUPPORTED", 13, USER_ERROR),
    ("INVALID_SESSION_PROPERTY", 14, USER_ERROR),
    ("NUMERIC_VALUE_OUT_OF_RANGE", 19, USER_ERROR),
    ("READ_ONLY_VIOLATION", 23, USER_ERROR),
    ("PROCEDURE_NOT_FOUND", 29, USER_ERROR),
    ("INVALID_PROCEDURE_ARGUMENT", 30, USER_ERROR),
    ("QUERY_REJECTED", 31, USER_ERROR),
    ("QUERY_TEXT_TOO_LARGE", 35, USER_ERROR),
    ("ADMINISTRATIVELY_KILLED", 38, USER_ERROR),
    ("TYPE_NOT_FOUND", 43, USER_ERROR),
    ("CATALOG_NOT_FOUND", 44, USER_ERROR),
    ("SCHEMA_NOT_FOUND", 45, USER_ERROR),
    ("TABLE_NOT_FOUND", 46, USER_ERROR),
    ("COLUMN_NOT_FOUND", 47, USER_ERROR),
    ("MISSING_CATALOG_NAME", 56, USER_ERROR),
    ("MISSING_SCHEMA_NAME", 57, USER_ERROR),
    ("TYPE_MISMATCH", 58, USER_ERROR),
    ("GENERIC_INTERNAL_ERROR", 65536, INTERNAL_ERROR),
    ("SERVER_SHUTTING_DOWN", 65538, INTERNAL_ERROR),
    ("GENERIC_INSUFFICIENT_RESOURCES", 131072, INSUFFICIENT_RESOURCES),
    ("EXCEEDED_GLOBAL_MEMORY_LIMIT", 131073, INSUFFICIENT_RESOURCES),
    ("QUERY_QUEUE_FULL", 131074, INSUFFICIENT_RESOURCES),
    ("EXCEEDED_TIME_LIMIT", 131075, INSUFFICIENT_RESOURCES),
    ("EXCEEDED_CPU_LIMIT", 131077, INSUFFICIENT_RESOURCES),
    ("EXCEEDED_LOCAL_MEMORY_LIMIT", 131079, INSUFFICIENT_RESOURCES),
    ("EXCEEDED_SCAN_LIMIT", 131081, INSUFFICIENT_RESOURCES),
    # Trino has no code for "too many result rows"; the gateway's own, above Trino's INSUFFICIENT_RESOURCES codes.
    ("EXCEEDED_RESULT_ROWS_LIMIT", 131328, INSUFFICIENT_RESOURCES),
    ("EXCEEDED_RESULT_BYTES_LIMIT", 131329, INSUFFICIENT_RESOURCES),
    # EXTERNAL codes start at 0x1000000; the gateway uses one for "the backend failed".
    ("BACKEND_ERROR", 16777216, EXTERNAL),
    ("AUDIT_UNAVAILABLE", 16777217, EXTERNAL),  # audit records cannot be made durable: fail closed
)


class GatewayError(Exception):
    """Base of every error the gateway reports to a client."""

    default_name: ClassVar[str] = "GENERIC_INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        error_name: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        name = error_name or self.default_name
        if name not in ERROR_CODES:
            raise ValueError(f"unknown Trino error name {name!r}")
        self.error = ERROR_CODES[name]
        self.line = line
        self.column = column

    @property
    def error_name(self) -> str:
        return self.error.name

    def detached(self) -> GatewayError:
        """The same error without its traceback and chained exceptions: safe to keep (a cache of failed plans)
        or to raise in several queries, without holding the frames (and syntax trees) of the first."""
        clone = type(self).__new__(type(self))
        clone.args = self.args
        clone.__dict__.update(self.__dict__)
        return clone

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.error.name}: {self.message})"


class UserError(GatewayError):
    default_name = "GENERIC_USER_ERROR"


class SqlSyntaxError(UserError):
    default_name = "SYNTAX_ERROR"


class NotSupported(UserError):
    default_name = "NOT_SUPPORTED"


class NotFound(UserError):
    default_name = "NOT_FOUND"


class PermissionDenied(UserError):
    default_name = "PERMISSION_DENIED"

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        super().__init__(f"Access Denied: {message}", line=line, column=column)


class QueryCanceled(UserError):
    default_name = "USER_CANCELED"


class InsufficientResources(GatewayError):
    default_name = "GENERIC_INSUFFICIENT_RESOURCES"


class BackendError(GatewayError):
    default_name = "BACKEND_ERROR"


class BackendUnavailable(BackendError):
    """The backend could not be reached or refused the connection (not an error of the statement): what the
    circuit breaker counts and what a read that returned no row yet may be retried after."""


class InternalError(GatewayError):
    """A gateway bug. Its message is logged, never sent to a client."""

    default_name = "GENERIC_INTERNAL_ERROR"


class ProtocolError(Exception):
    """A request the protocol layer cannot accept at all (bad body, headers, unknown URI).

    Unlike `GatewayError` these are answered with an HTTP error status, as Trino does, because there is
    no query for them to fail.
    """

    def __init__(self, status: int, message: str, *, error_name: str = "GENERIC_USER_ERROR") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error = ERROR_CODES[error_name]


class AuthenticationFailed(Exception):
    """The caller could not be authenticated. Answered 401 with `WWW-Authenticate` (429 with Retry-After when
    `retry_after` is set: too many recent failures from the address).

    `reason` is a short stable label (`expired`, `wrong_audience`, `unknown_key`, ...) for metrics and audit;
    `message` says what was wrong in words a user can act on. Neither ever contains the credential itself.
    """

    def __init__(self, reason: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"AuthenticationFailed({self.reason}: {self.message})"
