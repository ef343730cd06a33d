"""X-Trino-* request headers -> `Session`, `Authorization` -> `Credentials`, and `SessionChange` -> the
response headers clients apply."""

from __future__ import annotations

import base64
import binascii
import functools
import zoneinfo
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from urllib.parse import quote, unquote_plus

from gateway.errors import ProtocolError
from gateway.identity import Credentials
from gateway.session import Session, SessionChange

MAX_HEADER_VALUE = 64 * 1024


def header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request's headers (ASGI's raw pairs) as a dict by lower-case name, decoded as starlette decodes
    them, the first value of a repeated header winning as in starlette's `Headers`: the dozen lookups a
    statement needs, without a scan of the header list for each."""
    headers: dict[str, str] = {}
    for name, value in raw:
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


def _one(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name.lower())
    if value is None:
        return None
    value = value.strip()
    if len(value) > MAX_HEADER_VALUE:
        raise ProtocolError(400, f"header {name} is too long")
    return value or None


def _pairs(headers: Mapping[str, str], name: str) -> dict[str, str]:
    """`k=urlencoded v, k2=v2` pairs (X-Trino-Session, X-Trino-Prepared-Statement)."""
    raw = _one(headers, name)
    result: dict[str, str] = {}
    if raw is None:
        return result
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ProtocolError(400, f"Invalid {name} header: expected name=value, got {item[:50]!r}")
        result[unquote_plus(key.strip())] = unquote_plus(value.strip())
    return result


def _identifier(headers: Mapping[str, str], name: str) -> str | None:
    value = _one(headers, name)
    if value is None:
        return None
    if any(ch in value for ch in "\"\x00") or "." in value:
        raise ProtocolError(400, f"Invalid {name} header: {value[:50]!r} is not a name")
    return value.lower()


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_time_zone(name: str) -> bool:
    """An IANA zone name the gateway can load. Checked against the list of zones before anything is opened:
    ZoneInfo(name) reads a file named after the header (a directory such as `Europe`, a 300-character
    name or a path are OS errors, not "unknown zone")."""
    if name not in _zone_names():
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def credentials_from_headers(headers: Mapping[str, str], *, client_address: str | None) -> Credentials:
    """`Authorization: Bearer <token>` or `Basic base64(user:password)`. Never raises: a malformed header
    yields credentials that fail verification with a message saying so."""
    session_user = _one(headers, "X-Trino-User")
    raw = headers.get("authorization")
    if raw is None or not raw.strip():
        return Credentials(session_user=session_user, client_address=client_address)
    scheme, _, value = raw.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "basic":
        try:
            username, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            username, sep, password = "", "", ""
        return Credentials(scheme="basic", username=username or None, secret=password if sep else "",
                           session_user=session_user, client_address=client_address)
    if scheme != "bearer":
        scheme = "other"  # not echoed back: the header could be anything
    return Credentials(scheme=scheme, secret=value, session_user=session_user, client_address=client_address)


def session_from_headers(headers: Mapping[str, str], *, client_address: str | None,
                         default_user: str | None = None) -> Session:
    """`default_user` (the authenticated principal) applies when X-Trino-User is absent, as in Trino."""
    user = _one(headers, "X-Trino-User") or default_user
    if user is None:
        raise ProtocolError(400, "User must be set (X-Trino-User header)")
    zone = _one(headers, "X-Trino-Time-Zone")
    if zone is not None and not is_time_zone(zone):
        raise ProtocolError(400, f"Invalid X-Trino-Time-Zone header: unknown time zone {zone[:50]!r}")
    tags = _one(headers, "X-Trino-Client-Tags")
    transaction = _one(headers, "X-Trino-Transaction-Id")
    return Session(
        user=user,
        source=_one(headers, "X-Trino-Source"),
        catalog=_identifier(headers, "X-Trino-Catalog"),
        schema=_identifier(headers, "X-Trino-Schema"),
        time_zone=zone,
        language=_one(headers, "X-Trino-Language"),
        properties=MappingProxyType(_pairs(headers, "X-Trino-Session")),
        prepared_statements=MappingProxyType(_pairs(headers, "X-Trino-Prepared-Statement")),
        client_tags=frozenset(t.strip() for t in tags.split(",") if t.strip()) if tags else frozenset(),
        client_info=_one(headers, "X-Trino-Client-Info"),
        transaction_id=None if transaction is None or transaction.upper() == "NONE" else transaction,
        trace_token=_one(headers, "X-Trino-Trace-Token"),
        client_address=client_address,
    )


def change_headers(change: SessionChange) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    if change.set_catalog is not None:
        headers.append(("X-Trino-Set-Catalog", change.set_catalog))
    if change.set_schema is not None:
        headers.append(("X-Trino-Set-Schema", change.set_schema))
    for name, value in change.set_properties.items():
        headers.append(("X-Trino-Set-Session", f"{name}={quote(value, safe='')}"))
    for name in change.reset_properties:
        headers.append(("X-Trino-Clear-Session", name))
    for name, sql in change.added_prepared.items():
        headers.append(("X-Trino-Added-Prepare", f"{quote(name, safe='')}={quote(sql, safe='')}"))
    for name in change.deallocated_prepared:
        headers.append(("X-Trino-Deallocated-Prepare", quote(name, safe="")))
    if change.started_transaction_id is not None:
        headers.append(("X-Trino-Started-Transaction-Id", change.started_transaction_id))
    if change.clear_transaction:
        headers.append(("X-Trino-Clear-Transaction-Id", "true"))
    return headers
