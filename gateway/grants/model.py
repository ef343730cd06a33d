"""Access requests as values: the events stored for each request, and the request they fold into.

A request is never updated: it is the `requested` event followed by at most one decision (`approved` or
`denied`), at most one `revoked` and at most one `expired` event. Its status at any moment follows from
those and the clock, so expiry needs no writer: an approved grant whose `expires_at` has passed is expired
from that instant, on every replica; the `expired` event only records when a gateway first noticed it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

STATUSES = ("pending", "approved", "denied", "revoked", "expired")
EVENT_KINDS = ("requested", "approved", "denied", "revoked", "expired")


@dataclass(frozen=True, kw_only=True)
class AccessEvent:
    """One row of `gateway.audit.access_request_events`. `table`, `columns`, `reason` and
    `duration_seconds` are set on `requested`; `expires_at` on `approved`."""

    request_id: str
    event: str
    actor: str
    at: datetime
    table: str | None = None
    columns: tuple[str, ...] = ()
    reason: str | None = None
    duration_seconds: int | None = None
    expires_at: datetime | None = None
    comment: str = ""
    event_id: int | None = field(default=None, compare=False)  # the store's order; None before it is stored


@dataclass(frozen=True, kw_only=True)
class AccessRequest:
    id: str
    requester: str
    table: str  # catalog.schema.table
    columns: tuple[str, ...]  # lower-cased columns to unmask; empty: read access under the policy's masks
    reason: str
    duration_seconds: int
    status: str  # one of STATUSES
    requested_at: datetime
    decided_by: str | None = None  # who approved, denied or (last) revoked it
    decided_at: datetime | None = None
    expires_at: datetime | None = None
    comment: str = ""

    def to_dict(self) -> dict[str, object]:
        def time(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {"id": self.id, "requester": self.requester, "table": self.table, "columns": list(self.columns),
                "reason": self.reason, "duration_seconds": self.duration_seconds, "status": self.status,
                "requested_at": time(self.requested_at), "decided_by": self.decided_by,
                "decided_at": time(self.decided_at), "expires_at": time(self.expires_at), "comment": self.comment}


def fold(events: Iterable[AccessEvent], now: datetime) -> AccessRequest | None:
    """The request one request's events make, as of `now`; None without its `requested` event."""
    by_kind = {e.event: e for e in events}
    asked = by_kind.get("requested")
    if asked is None or asked.table is None or asked.duration_seconds is None:
        return None
    status, decided = "pending", None
    if (approved := by_kind.get("approved")) is not None:
        status, decided = "approved", approved
        if approved.expires_at is None or approved.expires_at <= now or "expired" in by_kind:
            status = "expired"
        if (revoked := by_kind.get("revoked")) is not None and (status == "approved" or (
                approved.expires_at is not None and revoked.at < approved.expires_at)):
            status, decided = "revoked", revoked
    elif (denied := by_kind.get("denied")) is not None:
        status, decided = "denied", denied
    approved = by_kind.get("approved")
    return AccessRequest(id=asked.request_id, requester=asked.actor, table=asked.table, columns=asked.columns,
                         reason=asked.reason or "", duration_seconds=asked.duration_seconds, status=status,
                         requested_at=asked.at, decided_by=decided.actor if decided else None,
                         decided_at=decided.at if decided else None,
                         expires_at=approved.expires_at if approved is not None else None,
                         comment=decided.comment if decided else "")


def seconds_text(seconds: int) -> str:
    """3600 -> "1h", 5400 -> "90m", 45 -> "45s": the largest unit that divides it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
