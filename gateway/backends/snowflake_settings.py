"""`backends.<name>` keys of a `type: snowflake` catalog, and the one function that turns its secrets into what
the connector logs in with.

Parsed by `gateway.backends.settings` (one call, `snowflake_settings`); kept apart so reading the configuration
never imports the connector. Secrets are never here: they come through the backends' credentials sources
(gateway/backends/credentials.py), `password: {env|file|command}` or `credentials: {private_key: ...,
private_key_passphrase: ...}` (key-pair), and `read_credentials` reads them when a connection opens, so a
rotated secret is used by every new Snowflake session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.backends.credentials import SecretSource, SecretSpec
    from gateway.config_reader import Reader

#: Snowflake's published credits per hour of a standard warehouse, by size
CREDITS_PER_HOUR = {"XSMALL": 1, "SMALL": 2, "MEDIUM": 4, "LARGE": 8, "XLARGE": 16, "XXLARGE": 32, "XXXLARGE": 64,
                    "X4LARGE": 128, "X5LARGE": 256, "X6LARGE": 512}
_SIZE_ALIASES = {"XS": "XSMALL", "S": "SMALL", "M": "MEDIUM", "L": "LARGE", "XL": "XLARGE", "2XL": "XXLARGE",
                 "XXL": "XXLARGE", "3XL": "XXXLARGE", "XXXL": "XXXLARGE", "4XL": "X4LARGE", "5XL": "X5LARGE",
                 "6XL": "X6LARGE", "X-SMALL": "XSMALL", "X-LARGE": "XLARGE", "2X-LARGE": "XXLARGE",
                 "3X-LARGE": "XXXLARGE", "4X-LARGE": "X4LARGE", "5X-LARGE": "X5LARGE", "6X-LARGE": "X6LARGE"}
PROTOCOLS = ("https", "http")
KEYS = frozenset({"account", "user", "warehouse", "role", "database", "host", "port", "protocol", "warehouse_size",
                  "credit_price"})
CREDENTIAL_KINDS = ("private_key", "private_key_passphrase")


@dataclass(frozen=True, kw_only=True)
class SnowflakeSettings:
    account: str
    user: str
    database: str  # as Snowflake spells it; discovery reads its INFORMATION_SCHEMA
    warehouse: str | None = None
    role: str | None = None
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
    """A secret that cannot be used; its message names the secret's kind, never its value."""


async def read_credentials(password: SecretSource | None, private_key: SecretSource | None,
                           passphrase: SecretSource | None) -> Credentials:
    """The secret for the next connection, as the sources hold it now."""
    if private_key is not None:
        from cryptography.hazmat.primitives import serialization

        pem = (await private_key.current()).value.encode()
        secret = (await passphrase.current()).value.encode() if passphrase is not None else None
        try:
            key = serialization.load_pem_private_key(pem, password=secret)
        except (ValueError, TypeError):
            raise CredentialsError("the private_key credential is not a PEM private key (or its passphrase is "
                                   "wrong)") from None
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        return Credentials(private_key=der)
    if password is not None:
        return Credentials(password=(await password.current()).value)
    return Credentials()


def snowflake_settings(r: Reader, s: Mapping[str, Any], p: tuple[str, ...], *, password: SecretSpec | None,
                       credentials: Mapping[str, SecretSpec]) -> SnowflakeSettings | None:
    """The `type: snowflake` keys of section `s` at path `p`, problems reported through `r`."""
    def text(key: str, *, required: bool = False) -> str | None:
        value: str | None = r.get(s, (*p, key), str, None, lambda v: None if v.strip() else "must not be empty")
        if value is None and required:
            r.fail((*p, key), "is required for a snowflake backend")
        return value

    account, user, database = text("account", required=True), text("user", required=True), \
        text("database", required=True)
    size = r.get(s, (*p, "warehouse_size"), str, "XSMALL", _size_problem)
    if unknown := sorted(set(credentials) - set(CREDENTIAL_KINDS)):
        r.fail((*p, "credentials"), f"unknown kind(s) {', '.join(unknown)} (expected: {', '.join(CREDENTIAL_KINDS)})")
    if password is not None and "private_key" in credentials:
        r.fail((*p, "password"), "give either password or credentials.private_key, not both")
    if password is None and "private_key" not in credentials and "password" not in s:
        r.fail((*p, "password"), "a snowflake backend needs password or credentials.private_key")
    if account is None or user is None or database is None:
        return None
    return SnowflakeSettings(
        account=account, user=user, database=database, warehouse=text("warehouse"), role=text("role"),
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
