"""The SQLSTATE of each gateway error name, for the PostgreSQL wire frontend's ErrorResponse."""

from __future__ import annotations

from gateway.errors import GatewayError

SQLSTATES = {
    "SYNTAX_ERROR": "42601",
    "PERMISSION_DENIED": "42501",
    "TABLE_NOT_FOUND": "42P01",
    "COLUMN_NOT_FOUND": "42703",
    "SCHEMA_NOT_FOUND": "3F000",
    "CATALOG_NOT_FOUND": "3D000",
    "MISSING_CATALOG_NAME": "3D000",
    "MISSING_SCHEMA_NAME": "3F000",
    "NOT_FOUND": "42704",
    "FUNCTION_NOT_FOUND": "42883",
    "TYPE_NOT_FOUND": "42704",
    "TYPE_MISMATCH": "42804",
    "INVALID_FUNCTION_ARGUMENT": "22023",
    "INVALID_CAST_ARGUMENT": "22P02",
    "DIVISION_BY_ZERO": "22012",
    "NUMERIC_VALUE_OUT_OF_RANGE": "22003",
    "NOT_SUPPORTED": "0A000",
    "READ_ONLY_VIOLATION": "25006",
    "INVALID_SESSION_PROPERTY": "22023",
    "QUERY_REJECTED": "54001",
    "QUERY_TEXT_TOO_LARGE": "54000",
    "USER_CANCELED": "57014",
    "ADMINISTRATIVELY_KILLED": "57014",
    "EXCEEDED_TIME_LIMIT": "57014",
    "QUERY_QUEUE_FULL": "53300",
    "GENERIC_INSUFFICIENT_RESOURCES": "53000",
    "EXCEEDED_GLOBAL_MEMORY_LIMIT": "53200",
    "EXCEEDED_LOCAL_MEMORY_LIMIT": "53200",
    "EXCEEDED_CPU_LIMIT": "54000",
    "EXCEEDED_SCAN_LIMIT": "54000",
    "EXCEEDED_RESULT_ROWS_LIMIT": "54000",
    "EXCEEDED_RESULT_BYTES_LIMIT": "54000",
    "SERVER_SHUTTING_DOWN": "57P01",
    "BACKEND_ERROR": "58000",
    "AUDIT_UNAVAILABLE": "58000",
    "GENERIC_INTERNAL_ERROR": "XX000",
    "GENERIC_USER_ERROR": "22000",
}

BY_TYPE = {"USER_ERROR": "42000", "INSUFFICIENT_RESOURCES": "53000", "EXTERNAL": "58000", "INTERNAL_ERROR": "XX000"}

# Failures where no secret was checked; every other reason means the password (key or token) was wrong.
NOT_CHECKED = frozenset({"missing", "rate_limited", "keys_unavailable", "wrong_scheme"})


class ClientError(Exception):
    """An error answered with an ErrorResponse that is not a gateway error (protocol state, parameters)."""

    def __init__(self, sqlstate: str, message: str, *, position: int | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.position = position  # ErrorResponse field P: 1-based, in characters of the client's query text


def character_position(text: str, line: int, column: int) -> int:
    """The 1-based character position in `text` of 1-based (`line`, `column`), the way the gateway's parser
    counts them (lines end at newlines), bounded to the text."""
    lines = text.split("\n")
    line = min(max(line, 1), len(lines))
    start = sum(len(before) + 1 for before in lines[:line - 1])
    return min(start + max(column, 1), len(text) + 1)


def located(error: GatewayError, text: str, offset: int) -> ClientError | GatewayError:
    """`error` with its position in the client's query text, where the error has one (a syntax error) and
    `text` is the statement as the client wrote it, starting at `offset` in what the client sent."""
    if error.line is None or error.column is None:
        return error
    position = offset + character_position(text, error.line, error.column)
    return ClientError(sqlstate_of(error), error.message, position=position)


def sqlstate_of(error: GatewayError) -> str:
    return SQLSTATES.get(error.error_name) or BY_TYPE.get(error.error.type, "XX000")


def authentication_sqlstate(reason: str) -> str:
    """28P01 (invalid_password) when the secret was checked and wrong, else 28000 (invalid authorization)."""
    return "28000" if reason in NOT_CHECKED else "28P01"
