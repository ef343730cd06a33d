"""Every access request in memory, folded from the stored events, and each identity's grants.

The service appends the events it reads from the store (its own and other replicas'); decisions read
`active_for` on any thread. The per-user grant index is rebuilt on each append and swapped in whole, so a
reader never sees half an update. Expiry is the clock's: a grant is active while `now < expires_at`,
whatever the store has recorded yet. Pure: no I/O, the clock is passed in (or injected).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from types import MappingProxyType

from gateway.grants.model import AccessEvent, AccessRequest, fold
from gateway.identity import Identity
from gateway.policy.model import TableGrant


class GrantSnapshot:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.last_event_id = 0
        self._events: dict[str, list[AccessEvent]] = {}
        # user -> grants approved and not revoked, expired or not (filtered by the clock when read)
        self._granted: MappingProxyType[str, tuple[TableGrant, ...]] = MappingProxyType({})

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def apply(self, events: Iterable[AccessEvent]) -> None:
        changed = False
        for event in events:
            if event.event_id is not None:
                if event.event_id <= self.last_event_id:
                    continue  # read twice (a poll racing this replica's own write)
                self.last_event_id = event.event_id
            self._events.setdefault(event.request_id, []).append(event)
            changed = True
        if changed:
            self._granted = MappingProxyType(self._index())

    def _index(self) -> dict[str, tuple[TableGrant, ...]]:
        granted: dict[str, list[TableGrant]] = {}
        for events in self._events.values():
            kinds = {e.event: e for e in events}
            asked, approved = kinds.get("requested"), kinds.get("approved")
            if asked is None or asked.table is None or approved is None or approved.expires_at is None:
                continue
            if "revoked" in kinds or "expired" in kinds:
                continue
            granted.setdefault(asked.actor, []).append(TableGrant(
                id=asked.request_id, table=asked.table, columns=frozenset(asked.columns),
                expires_at=approved.expires_at.timestamp()))
        return {user: tuple(sorted(grants, key=lambda g: g.id)) for user, grants in granted.items()}

    def active_for(self, identity: Identity) -> tuple[TableGrant, ...]:
        """The identity's grants in force now. Only someone acting as themself holds theirs: a principal
        impersonating a user never borrows that user's grants."""
        if identity.principal is not None:
            return ()
        now = self.clock()
        return tuple(g for g in self._granted.get(identity.user, ()) if now < g.expires_at)

    def active_count(self) -> int:
        now = self.clock()
        return sum(1 for grants in self._granted.values() for g in grants if now < g.expires_at)

    def request(self, request_id: str) -> AccessRequest | None:
        events = self._events.get(request_id)
        return fold(events, self.now()) if events else None

    def requests(self) -> list[AccessRequest]:
        """Every request, newest first."""
        now = self.now()
        folded = (fold(events, now) for events in self._events.values())
        return sorted((r for r in folded if r is not None), key=lambda r: r.requested_at, reverse=True)

    def unrecorded_expiries(self) -> list[str]:
        """Approved grants past their expiry with no `expired` event yet (the service records one)."""
        now = self.clock()
        return [g.id for grants in self._granted.values() for g in grants if now >= g.expires_at]
