"""`backends.<name>` keys of a `type: snowflake` catalog, and the one function that reads its secrets.

Parsed by `gateway.config` (one call, `snowflake_settings`); kept apart so the configuration never imports the
connector. Secrets are named, never held here: `password_env` / `private_key_passphrase_env` are environment
variable names and `private_key_file` a path, read by `read_credentials` when a connection opens (one small
function, so a credentials provider that re-reads rotated secrets can take its place).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.config import _Reader

#: Snowflake's published credits per hour of a standard warehouse, by size
CREDITS_PER_HOUR = {"XSMALL": 1, "SMALL": 2, "MEDIUM": 4, "LARGE": 8, "XLARGE": 16, "XXLARGE": 32, "XXXLARGE": 64,
                    "X4LARGE": 128, "X5LARGE": 256, "X6LARGE": 512}
_SIZE_ALIASES = {"XS": "XSMALL", "S": "SMALL", "M": "MEDIUM", "L": "LARGE", "XL": "XLARGE", "2XL": "XXLARGE",
                 "XXL": "XXLARGE", "3XL": "XXXLARGE", "XXXL": "XXXLARGE", "4XL": "X4LARGE", "5XL": "X5LARGE",
                 "6XL": "X6LARGE", "X-SMALL": "XSMALL", "X-LARGE": "XLARGE", "2X-LARGE": "XXLARGE",
                 "3X-LARGE": "XXXLARGE", "4X-LARGE": "X4LARGE", "5X-LARGE": "X5LARGE", "6X-LARGE": "X6LARGE"}
PROTOCOLS = ("https", "http")
KEYS = frozenset({"account", "user", "warehouse", "role", "database", "password_env", "private_key_file",
                  "private_key_passphrase_env", "host", "port", "protocol", "warehouse_size", "credit_price"})
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, kw_only=True)
class SnowflakeSettings:
    account: str
    user: str
    database: str  # as Snowflake spells it; discovery reads its INFORMATION_SCHEMA
    warehouse: str | None = None
    role: str | None = None
    password_env: str | None = None  # name of the environment variable holding the password
    private_key_file: Path | None = None  # PEM (PKCS#8) key-pair authentication, instead of a password
    private_key_passphrase_env: str | None = None
    host: str | None = None  # overrides <account>.snowflakecomputing.com (a proxy, or fakesnow in tests)
    port: int | None = None
    protocol: str = "https"
    warehouse_size: str = "XSMALL"  # for credits: credits/hour of this size x execution time
    credit_price: float | None = None  # currency per credit, reported with the credits where set

    @property
    def credits_per_hour(self) -> int:
        return CREDITS_PER_HOUR[self.warehouse_size]


@dataclass(frozen=True)
class Credentials:
    """What the connector authenticates with. repr shows neither secret."""

    password: str | None = None
    private_key: bytes | None = None  # DER, PKCS#8, unencrypted (the connector's form)

    def __repr__(self) -> str:
        shown = {k: "***" if v else None for k, v in (("password", self.password), ("private_key", self.private_key))}
        return f"Credentials(password={shown['password']}, private_key={shown['private_key']})"

    def connector_arguments(self) -> dict[str, Any]:
        if self.private_key is not None:
            return {"private_key": self.private_key, "authenticator": "SNOWFLAKE_JWT"}
        return {"password": self.password or ""}


class CredentialsError(ValueError):
    """A secret that cannot be read; its message names the variable or file, never the value."""


def read_credentials(settings: SnowflakeSettings) -> Credentials:
    """The secret for the next connection, read now (rotation: each new connection reads it again)."""
    if settings.private_key_file is not None:
        from cryptography.hazmat.primitives import serialization

        passphrase = None
        if settings.private_key_passphrase_env is not None:
            passphrase = _env(settings.private_key_passphrase_env).encode()
        try:
            pem = settings.private_key_file.read_bytes()
        except OSError as exc:
            raise CredentialsError(f"cannot read private_key_file {settings.private_key_file}: {exc.strerror}") \
                from None
        try:
            key = serialization.load_pem_private_key(pem, password=passphrase)
        except (ValueError, TypeError):
            raise CredentialsError(f"private_key_file {settings.private_key_file} is not a PEM private key "
                                   "(or its passphrase is wrong)") from None
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        return Credentials(private_key=der)
    if settings.password_env is not None:
        return Credentials(password=_env(settings.password_env))
    return Credentials()


def _env(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise CredentialsError(f"environment variable {name} is not set")
    return value


def snowflake_settings(r: _Reader, s: Mapping[str, Any], p: tuple[str, ...]) -> SnowflakeSettings | None:
    """The `type: snowflake` keys of section `s` at path `p`, problems reported through `r`."""
    def text(key: str, *, required: bool = False) -> str | None:
        value: str | None = r.get(s, (*p, key), str, None, lambda v: None if v.strip() else "must not be empty")
        if value is None and required:
            r.fail((*p, key), "is required for a snowflake backend")
        return value

    def env_name(key: str) -> str | None:
        name: str | None = r.get(s, (*p, key), str, None, lambda v: None if _ENV_NAME.match(v)
                                 else f"must be an environment variable name, not {v!r}")
        return name

    account, user, database = text("account", required=True), text("user", required=True), \
        text("database", required=True)
    size = r.get(s, (*p, "warehouse_size"), str, "XSMALL", _size_problem)
    password_env, key_file = env_name("password_env"), r.get(s, (*p, "private_key_file"), Path, None)
    if password_env is not None and key_file is not None:
        r.fail((*p, "password_env"), "give either password_env or private_key_file, not both")
    if password_env is None and key_file is None and "password_env" not in s and "private_key_file" not in s:
        r.fail((*p, "password_env"), "a snowflake backend needs password_env or private_key_file")
    if account is None or user is None or database is None:
        return None
    return SnowflakeSettings(
        account=account, user=user, database=database, warehouse=text("warehouse"), role=text("role"),
        password_env=password_env, private_key_file=key_file,
        private_key_passphrase_env=env_name("private_key_passphrase_env"),
        host=text("host"),
        port=r.get(s, (*p, "port"), int, None, lambda v: None if 0 < v <= 65535 else f"must be a port, not {v}"),
        protocol=r.get(s, (*p, "protocol"), str, "https",
                       lambda v: None if v in PROTOCOLS else f"must be one of {', '.join(PROTOCOLS)}, not {v!r}"),
        warehouse_size=warehouse_size(size),
        credit_price=r.get(s, (*p, "credit_price"), float, None,
                           lambda v: None if v >= 0 else f"must not be negative, not {v}"),
    )


def warehouse_size(text: str) -> str:
    """'XS', 'x-small', 'XSMALL' -> 'XSMALL' (Snowflake's own spelling in SHOW WAREHOUSES)."""
    upper = text.strip().upper().replace("_", "-")
    return _SIZE_ALIASES.get(upper, upper.replace("-", ""))


def _size_problem(value: str) -> str | None:
    if warehouse_size(value) in CREDITS_PER_HOUR:
        return None
    sizes = ", ".join(CREDITS_PER_HOUR)
    return f"unknown warehouse size {value!r} (expected one of: {sizes}, or XS, S, M, L, XL, 2XL...)"
