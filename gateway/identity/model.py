"""The values identity produces and consumes: `Identity` (who is asking) and `Credentials` (what they showed)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gateway.identity.scram import ScramExchange

AttributeValue = str | int | float | bool | tuple[str | int | float | bool, ...]


def _freeze(attributes: Mapping[str, Any]) -> Mapping[str, AttributeValue]:
    frozen: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        frozen[key] = tuple(value) if isinstance(value, list | tuple | set | frozenset) else value
    return MappingProxyType(frozen)


def attributes_from_pairs(pairs: Iterable[str]) -> dict[str, Any]:
    """`KEY=VALUE` texts (`gateway explain --attr`, the console's explain page) -> identity attributes: a
    comma-separated value is a list; numbers become numbers. Raises ValueError naming a malformed pair."""
    attributes: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"attributes are KEY=VALUE, not {pair[:60]!r}")
        items = [_scalar(v.strip()) for v in value.split(",")]
        attributes[key.strip()] = items if len(items) > 1 else items[0]
    return attributes


def _scalar(text: str) -> str | int | float:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller, as every later stage sees it. Immutable.

    `principal` is the authenticated name when it differs from `user` (impersonation granted by policy);
    None when the caller acts as themself.
    """

    user: str
    groups: frozenset[str] = frozenset()
    attributes: Mapping[str, AttributeValue] = field(default_factory=lambda: MappingProxyType({}))
    cost_center: str | None = None
    auth_method: str = "dev"
    principal: str | None = None
    # Which token it came from, for the audit trail; not part of who it is (plans and caches ignore them).
    token_kid: str | None = field(default=None, compare=False)
    token_jti: str | None = field(default=None, compare=False)
    # Plans, caches and admission key by identity several times per query: its hash is computed once.
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    @classmethod
    def create(
        cls,
        user: str,
        *,
        groups: frozenset[str] | set[str] | list[str] | tuple[str, ...] = (),
        attributes: Mapping[str, Any] | None = None,
        cost_center: str | None = None,
        auth_method: str = "dev",
        principal: str | None = None,
    ) -> Identity:
        return cls(
            user=user,
            groups=frozenset(groups),
            attributes=_freeze(attributes or {}),
            cost_center=cost_center,
            auth_method=auth_method,
            principal=principal,
        )

    def __hash__(self) -> int:
        if not self._hash:
            object.__setattr__(self, "_hash", hash((self.user, self.groups, tuple(sorted(self.attributes.items())),
                                                    self.cost_center, self.principal)) or 1)
        return self._hash

    def acting_as(self, user: str) -> Identity:
        """This principal acting as `user` (impersonation, once policy allows it). The session user's own
        groups and attributes are not known here, so it gets none: only rules naming the user match."""
        return Identity.create(user, cost_center=self.cost_center, auth_method=self.auth_method,
                               principal=self.user)


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """What a client presented, protocol-neutral. Secrets never appear in the repr.

    `scheme` is "bearer" (a JWT in `secret`), "basic" (`username` and `secret` = an API key), "scram" (a
    PostgreSQL-wire SCRAM exchange in `scram`, its client-final message in `secret`) or None.
    `session_user` is the user the client asks to act as (X-Trino-User); dev mode trusts it.
    """

    scheme: str | None = None
    username: str | None = None
    secret: str | None = field(default=None, repr=False)
    session_user: str | None = None
    client_address: str | None = None
    scram: ScramExchange | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        secret = "None" if self.secret is None else "'***'"
        return (f"Credentials(scheme={self.scheme!r}, username={self.username!r}, secret={secret}, "
                f"session_user={self.session_user!r}, client_address={self.client_address!r})")
