"""A PostgreSQL connection's session parameters: their start values, what startup and SET/RESET/SHOW do to
them, which ones are reported as ParameterStatus, and the Session fields they decide (source, schema, time
zone). Connection state only: nothing here reads data.
"""

from __future__ import annotations

from typing import Any

from gateway import __version__
from gateway.frontends import pg_statements as ps
from gateway.frontends.pg_errors import ClientError
from gateway.relations import Column
from gateway.types import VARCHAR

SERVER_VERSION = f"16.0-gateway-{__version__}"

# ParameterStatus names as PostgreSQL spells them (clients match some case-sensitively).
REPORTED = {"server_version": "server_version", "server_encoding": "server_encoding",
            "client_encoding": "client_encoding", "datestyle": "DateStyle", "integer_datetimes": "integer_datetimes",
            "standard_conforming_strings": "standard_conforming_strings", "timezone": "TimeZone",
            "intervalstyle": "IntervalStyle", "is_superuser": "is_superuser", "application_name": "application_name",
            "session_authorization": "session_authorization", "default_transaction_read_only":
            "default_transaction_read_only", "in_hot_standby": "in_hot_standby"}
READ_ONLY = frozenset({"server_version", "server_version_num", "server_encoding", "integer_datetimes", "is_superuser",
                       "session_authorization", "in_hot_standby"})
_ALIASES = {"transaction isolation level": "transaction_isolation", "time zone": "timezone",
            "session authorization": "session_authorization"}
_UTF8 = {"utf8", "utf-8", "unicode"}
_NOT_PARAMETERS = ("user", "database", "options", "replication")
MAX_VALUE = 1024  # characters of one parameter value kept


def defaults() -> dict[str, str]:
    return {"server_version": SERVER_VERSION, "server_version_num": "160000", "server_encoding": "UTF8",
            "client_encoding": "UTF8", "datestyle": "ISO, MDY", "integer_datetimes": "on",
            "standard_conforming_strings": "on", "timezone": "UTC", "intervalstyle": "postgres",
            "is_superuser": "off", "application_name": "", "extra_float_digits": "1",
            "transaction_isolation": "read committed", "transaction_read_only": "on",
            "default_transaction_read_only": "on", "max_identifier_length": "63", "lc_collate": "C",
            "lc_ctype": "C", "bytea_output": "hex", "search_path": "", "statement_timeout": "0",
            "in_hot_standby": "off"}


def _is_utf8(value: str) -> bool:
    return value.strip("'\"").lower() in _UTF8


class SessionParameters:
    def __init__(self) -> None:
        self.values = defaults()

    def start(self, startup: dict[str, str], *, user: str, default_schema: str | None) -> None:
        """Apply the StartupMessage: `options` (-c name=value) first, then the other parameters."""
        for name, value in startup_options(startup.get("options", "")).items():
            self.values[name] = value[:MAX_VALUE]
        for name, value in startup.items():
            if name not in _NOT_PARAMETERS:
                self.values[name.lower()] = value[:MAX_VALUE]
        if not _is_utf8(self.values.get("client_encoding", "UTF8")):
            raise ClientError("22023", f"client_encoding {self.values['client_encoding'][:20]!r} is not supported: "
                                       f"the gateway speaks UTF8")
        self.values["client_encoding"] = "UTF8"
        self.values["session_authorization"] = user
        if not self.values.get("search_path"):
            self.values["search_path"] = default_schema or "public"

    def reported(self) -> list[tuple[str, str]]:
        return [(shown, self.values.get(name, "")) for name, shown in REPORTED.items()]

    def session_fields(self) -> dict[str, Any]:
        """What the parameters decide of the pipeline's Session."""
        search_path = [s.strip().strip('"') for s in self.values.get("search_path", "").split(",")]
        schema = next((s for s in search_path if s and s not in ("$user", "pg_catalog")), None)
        return {"source": self.values.get("application_name") or None, "schema": schema,
                "time_zone": self.values.get("timezone") or "UTC"}

    def set(self, command: ps.SetParameter) -> list[tuple[str, str]]:
        """SET / RESET; the ParameterStatus messages (name, value) the change calls for."""
        name = _ALIASES.get(command.name, command.name)
        start = defaults()
        if name == "transaction":
            return []  # SET TRANSACTION ...: every statement is read-only and read committed already
        if name == "all":
            kept: dict[str, str] = {k: self.values[k] for k in ("session_authorization", "search_path")
                                    if k in self.values}
            self.values = {**start, **kept}
            return self.reported()
        if name in READ_ONLY:
            raise ClientError("55P02", f'parameter "{name}" cannot be changed')
        if name == "client_encoding" and command.value is not None and not _is_utf8(command.value):
            raise ClientError("22023", f"client_encoding {command.value[:20]!r} is not supported: the gateway "
                                       f"speaks UTF8")
        if command.value is None:
            self.values[name] = start.get(name, "")
        else:
            self.values[name] = "UTF8" if name == "client_encoding" else command.value[:MAX_VALUE]
        shown = REPORTED.get(name)
        return [(shown, self.values[name])] if shown is not None else []

    def set_schema(self, schema: str) -> None:
        self.values["search_path"] = schema

    @staticmethod
    def show_columns(command: ps.ShowParameter) -> tuple[Column, ...]:
        if command.name == "all":
            return (Column("name", VARCHAR), Column("setting", VARCHAR), Column("description", VARCHAR))
        return (Column(_ALIASES.get(command.name, command.name), VARCHAR),)

    def show_rows(self, command: ps.ShowParameter) -> list[tuple[str, ...]]:
        if command.name == "all":
            return [(name, value, "") for name, value in sorted(self.values.items())]
        name = _ALIASES.get(command.name, command.name)
        if name not in self.values:
            raise ClientError("42704", f'unrecognized configuration parameter "{command.name[:64]}"')
        return [(self.values[name],)]


def startup_options(options: str) -> dict[str, str]:
    """`-c name=value` and `--name=value` settings from the startup `options` parameter (`\\ ` is a space)."""
    found: dict[str, str] = {}
    words = options.replace("\\ ", "\x00").split()
    index = 0
    while index < len(words):
        word = words[index].replace("\x00", " ")
        setting = None
        if word == "-c" and index + 1 < len(words):
            index += 1
            setting = words[index].replace("\x00", " ")
        elif word.startswith(("-c", "--")):
            setting = word[2:]
        if setting is not None and "=" in setting:
            name, value = setting.split("=", 1)
            found[name.strip().lower().replace("-", "_")] = value
        index += 1
    return found
