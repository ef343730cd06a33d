"""Verified JWT claims -> `Identity`, as `identity.jwt.claims` maps them.

A claim is named by its key, or by a dotted path into nested objects (`realm_access.roles`). Keys that
themselves contain dots (Okta/Auth0 namespaced claims such as `https://example.com/groups`) work too: at each
level the longest key that matches wins.

Fail closed: no usable user claim rejects the token; a group or attribute claim of the wrong shape is left
out (a missing attribute never matches a policy rule and never widens access).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from gateway.errors import AuthenticationFailed
from gateway.identity.model import Identity
from gateway.identity.settings import ClaimSettings

log = logging.getLogger("gateway.identity")

MISSING = object()
MAX_USER_LENGTH = 256
Scalar = str | int | float | bool


def claim(claims: Mapping[str, Any], path: str) -> Any:
    """The value at `path`, or MISSING."""
    if path in claims:
        return claims[path]
    parts = path.split(".")
    for end in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:end])
        child = claims.get(head)
        if isinstance(child, Mapping):
            found = claim(child, ".".join(parts[end:]))
            if found is not MISSING:
                return found
    return MISSING


def _user(claims: Mapping[str, Any], paths: tuple[str, ...]) -> str:
    for path in paths:
        value = claim(claims, path)
        if isinstance(value, str) and value.strip():
            if len(value) > MAX_USER_LENGTH or any(ord(c) < 32 for c in value):
                raise AuthenticationFailed("bad_claims", f"Invalid bearer token: the user claim {path!r} is not a "
                                                         f"usable user name")
            return value
    raise AuthenticationFailed("missing_claim", f"Invalid bearer token: no user claim ({', '.join(paths)})")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    return []


def _attribute(value: Any) -> Scalar | list[Scalar] | None:
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list) and all(isinstance(v, str | int | float | bool) for v in value):
        return list(value)
    return None


def identity_from_claims(claims: Mapping[str, Any], mapping: ClaimSettings) -> Identity:
    user = _user(claims, mapping.user)
    groups: set[str] = set()
    for path in mapping.groups:
        value = claim(claims, path)
        if value is not MISSING:
            found = _strings(value)
            if not found and value:
                log.warning("claim %r of user %s is not a list of strings; ignored", path, user)
            groups.update(found)
    attributes: dict[str, Any] = {}
    for name, path in mapping.attributes.items():
        value = claim(claims, path)
        if value is MISSING:
            continue
        converted = _attribute(value)
        if converted is None:
            log.warning("claim %r of user %s is not a scalar or a list of scalars; attribute %r left unset",
                        path, user, name)
            continue
        attributes[name] = converted
    cost_center = None
    if mapping.cost_center is not None:
        value = claim(claims, mapping.cost_center)
        cost_center = value if isinstance(value, str) and value else None
    return Identity.create(user, groups=groups, attributes=attributes, cost_center=cost_center, auth_method="jwt")
