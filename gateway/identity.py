"""Who is asking: credentials from a request -> an immutable `Identity`.

Until JWT and API keys land, the only method is `dev`: the X-Trino-User header is trusted, groups and
attributes come from the dev users file (if any). Dev mode is refused on a non-loopback address unless the
operator forces it (see `config.IdentitySettings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gateway.session import Session

AttributeValue = str | int | float | bool | tuple[str | int | float | bool, ...]


def _freeze(attributes: Mapping[str, Any]) -> Mapping[str, AttributeValue]:
    frozen: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        frozen[key] = tuple(value) if isinstance(value, list | tuple | set | frozenset) else value
    return MappingProxyType(frozen)


@dataclass(frozen=True, slots=True)
class Identity:
    """The authenticated caller, as every later stage sees it. Immutable."""

    user: str
    groups: frozenset[str] = frozenset()
    attributes: Mapping[str, AttributeValue] = field(default_factory=lambda: MappingProxyType({}))
    cost_center: str | None = None
    auth_method: str = "dev"

    @classmethod
    def create(
        cls,
        user: str,
        *,
        groups: frozenset[str] | set[str] | list[str] | tuple[str, ...] = (),
        attributes: Mapping[str, Any] | None = None,
        cost_center: str | None = None,
        auth_method: str = "dev",
    ) -> Identity:
        return cls(
            user=user,
            groups=frozenset(groups),
            attributes=_freeze(attributes or {}),
            cost_center=cost_center,
            auth_method=auth_method,
        )

    def __hash__(self) -> int:
        return hash((self.user, self.groups, tuple(sorted(self.attributes.items())), self.cost_center))


class Authenticator:
    """Dev mode: the session user is trusted as is, with the groups and attributes the dev users file gives
    that name (none for users it does not list)."""

    def __init__(self, *, dev_users: Mapping[str, Identity] | None = None) -> None:
        self._dev_users = dict(dev_users or {})

    def authenticate(self, session: Session) -> Identity:
        known = self._dev_users.get(session.user)
        if known is not None:
            return known
        return Identity.create(session.user, auth_method="dev")
