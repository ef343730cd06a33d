"""Logging set-up: plain text for people, or one JSON object per line for log pipelines."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

from gateway.config_reader import Check, Reader, one_of, read_section
from gateway.errors import InternalError

if TYPE_CHECKING:  # the log line reads these; importing them here at run time would be circular
    from gateway.errors import AuthenticationFailed
    from gateway.identity import Credentials
    from gateway.query_outcome import QueryOutcome

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True, kw_only=True)
class LoggingSettings:
    level: str = "INFO"
    format: str = "text"

    CHECKS: ClassVar[Mapping[str, Check]] = {"level": one_of(LOG_LEVELS, "log level"),
                                             "format": one_of(LOG_FORMATS, "log format")}


def read_logging(r: Reader, data: Mapping[str, Any]) -> LoggingSettings:
    return read_section(r, data, ("logging",), LoggingSettings)


# One encoder for every line: json.dumps with options builds a new JSONEncoder on each call.
_encode = json.JSONEncoder(default=str).encode


_PLAIN = re.compile(r'[ !#-\[\]-~]*')  # printable ASCII but `"` and `\\`: JSON writes it as it is


def _text_value(value: Any) -> str:
    """One field of a text line: the value's JSON (ASCII only, so no bidi control or line separator in a
    user's text can disguise a line), with the commonest kinds written directly."""
    kind = type(value)
    if kind is str and _PLAIN.fullmatch(value):
        return f'"{value}"'
    if kind is int:
        return int.__repr__(value)
    return _encode(value)


def log_query(logger: logging.Logger, outcome: QueryOutcome) -> None:
    """Log the `query` line of an attempt that ended, built only when INFO is on, without the stack walk
    (`findCaller`) `Logger.info` makes for every line: the line's origin is always this function."""
    if logger.isEnabledFor(logging.INFO):
        logger.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0, "query", (), None,
                                        extra={"query": query_log_fields(outcome)}))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        query = getattr(record, "query", None)
        if isinstance(query, dict):
            entry.update(query)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode(entry)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """As logging writes it, with the part above milliseconds kept for the second it names (strftime
        costs more than the rest of a line); the handler's lock serialises calls."""
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime(self.default_time_format, self.converter(second))
        return f"{self._stamp},{int(record.msecs):03d}"  # logging's default_msec_format, "%s,%03d"

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        query = getattr(record, "query", None)
        if isinstance(query, dict):
            fields = " ".join([f"{k}={_text_value(v)}" for k, v in query.items() if v is not None])
            text = f"{text} {fields}"
        return text


def configure_logging(settings: LoggingSettings, stream: TextIO | None = None) -> None:
    """Every log line to `stream` (standard error unless given) in the configured format."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    # Neither format shows the thread or process: LogRecord need not look them up for every line.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)


def query_log_fields(outcome: QueryOutcome) -> dict[str, object]:
    """The `query` log line of an attempt that ended: what an operator greps for, never a secret, the SQL cut
    at 2,000 characters."""
    error, stats, session = outcome.error, outcome.stats, outcome.session
    return {
        "query_id": outcome.query_id,
        "user": session.user,
        "principal": outcome.principal.user if outcome.principal.user != session.user else None,
        "groups": sorted(outcome.identity.groups),
        "source": session.source,
        "client_address": session.client_address,
        "catalog": session.catalog,
        "schema": session.schema,
        "statement": outcome.statement_kind,
        "state": outcome.state,
        "error_name": error.error_name if error else None,
        "error": error.message if error is not None and not isinstance(error, InternalError) else None,
        "elapsed_ms": round(outcome.elapsed_seconds * 1000, 3),
        "rows": stats.rows,
        "backend": outcome.backend,
        "backend_query_id": stats.backend_query_id,
        "resource_group": outcome.resource_group,
        "tables": list(outcome.tables) if outcome.tables is not None else None,
        "rules": list(outcome.rules) if outcome.rules else None,
        "policy_version": (outcome.policy_version or "")[:12] if outcome.tables is not None else None,
        "sql": outcome.sql[:2000],
    }


def auth_failure_log_fields(credentials: Credentials, failure: AuthenticationFailed) -> dict[str, object]:
    """The log line of a failed authentication: `credentials` masks the secret, `failure` never holds it."""
    return {
        "event": "authentication_failed",
        "reason": failure.reason,
        "error": failure.message,
        "scheme": credentials.scheme,
        "username": credentials.username,
        "session_user": credentials.session_user,
        "client_address": credentials.client_address,
    }
