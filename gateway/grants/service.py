"""`AccessRequests`: the just-in-time access service every entry point (API, CLI through the API, console)
calls. Rights are decided by `gateway.access.Access` alone; the events are kept in the audit store; the
in-memory `GrantSnapshot` is what decisions read.

Freshness across replicas: each replica reads new events from the store every `poll_seconds` (right after
each of its own writes, and with scale-out Redis on every other replica's notice: `notices.py`), so a
grant or revocation made on one replica is in force on all of them within that interval. Expiry needs no
polling: a grant is checked against the clock at every decision. The first replica to notice an expired
grant records its `expired` event (once: the store's unique index).
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta

from gateway.access import Access
from gateway.audit.stores.base import AuditStore, StoreUnavailable
from gateway.catalog import CatalogSnapshot, TableName
from gateway.errors import GatewayError, NotFound, PermissionDenied, UserError
from gateway.grants.model import STATUSES, AccessEvent, AccessRequest, seconds_text
from gateway.grants.notices import RedisNotices
from gateway.grants.settings import AccessRequestSettings
from gateway.grants.snapshot import GrantSnapshot
from gateway.grants.tables import once_group
from gateway.identity import Identity
from gateway.metrics import Metrics
from gateway.units import parse_duration

log = logging.getLogger("gateway.access_requests")

_MAX_COMMENT_CHARS = 2000
_MAX_COLUMNS = 100


class AccessRequests:
    def __init__(self, *, store: AuditStore, access: Access, snapshot: GrantSnapshot,
                 catalog: Callable[[], CatalogSnapshot], default_catalog: str, settings: AccessRequestSettings,
                 metrics: Metrics, notices: RedisNotices | None = None) -> None:
        self.store = store
        self.access = access
        self.snapshot = snapshot
        self.catalog = catalog
        self.default_catalog = default_catalog
        self.settings = settings
        self.metrics = metrics
        self._refreshing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.notices = notices  # with Redis: other replicas read new events at once, not at their next poll
        metrics.access_grants_active.set_function(lambda: float(snapshot.active_count()))

    # -- lifetime ------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.refresh()
        except GatewayError as error:  # the store is down: grants appear once it is back (none until then)
            log.error("access requests not loaded: %s", error.message)
        self._task = asyncio.create_task(self._poll_forever(), name="access-requests-poll")
        if self.notices is not None:
            self.notices.start(self._noticed)

    async def _noticed(self) -> None:
        try:
            await self.refresh()
        except GatewayError as error:
            log.warning("access requests not refreshed on notice: %s", error.message)

    async def stop(self) -> None:
        if self.notices is not None:
            await self.notices.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_seconds)
            try:
                await self.refresh()
                await self._record_expiries()
            except GatewayError as error:
                log.warning("access requests not refreshed, keeping the previous ones: %s", error.message)

    async def refresh(self) -> None:
        """Read the events stored since the last read (this replica's and every other one's)."""
        async with self._refreshing:
            try:
                events = await self.store.access_events(self.snapshot.last_event_id)
            except StoreUnavailable as error:
                raise _unavailable(error) from None
            self.snapshot.apply(events)

    async def _record_expiries(self) -> None:
        for request_id in self.snapshot.unrecorded_expiries():
            event = AccessEvent(request_id=request_id, event="expired", actor="gateway", at=self.snapshot.now())
            if await self._add(event, requires="approved"):
                self.metrics.access_requests.labels("expired").inc()
                log.info("access grant %s expired", request_id)
        await self.refresh()

    # -- the contract ----------------------------------------------------------------------------------------------

    async def request(self, identity: Identity, *, table: str, columns: tuple[str, ...] = (), reason: str,
                      duration_seconds: int) -> AccessRequest:
        name = self._table_name(table)
        wanted = tuple(dict.fromkeys(c.strip().lower() for c in columns if c.strip()))
        if len(wanted) > _MAX_COLUMNS:
            raise UserError(f"At most {_MAX_COLUMNS} columns may be requested at once",
                            error_name="INVALID_FUNCTION_ARGUMENT")
        reason = reason.strip()
        if not reason:
            raise UserError("A reason is required", error_name="INVALID_FUNCTION_ARGUMENT")
        if len(reason) > self.settings.max_reason_chars:
            raise UserError(f"The reason is longer than {self.settings.max_reason_chars} characters",
                            error_name="INVALID_FUNCTION_ARGUMENT")
        if identity.principal is not None:
            raise PermissionDenied(f"{identity.principal} acting as {identity.user} cannot request access for them")
        approvers = self.access.check_request(identity, name, wanted)
        if self.catalog().table(TableName(*name.split("."))) is None:
            raise NotFound(f"Table '{name}' does not exist", error_name="TABLE_NOT_FOUND")
        longest = min(approvers.max_duration_seconds, self.settings.max_duration_seconds)
        if not 1 <= duration_seconds <= longest:
            raise UserError(f"The duration must be between 1 second and {seconds_text(longest)} for {name} "
                            f"(max_duration of the approvers at {approvers.location})",
                            error_name="INVALID_FUNCTION_ARGUMENT")
        await self.refresh()
        pending = sum(1 for r in self.snapshot.requests() if r.requester == identity.user and r.status == "pending")
        if pending >= self.settings.max_pending_per_user:
            raise UserError(f"{identity.user} has {pending} pending access requests, the most allowed "
                            "(access_requests.max_pending_per_user)", error_name="INVALID_FUNCTION_ARGUMENT")
        request_id = uuid.uuid4().hex[:16]
        await self._add(AccessEvent(request_id=request_id, event="requested", actor=identity.user,
                                    at=self.snapshot.now(), table=name, columns=wanted, reason=reason,
                                    duration_seconds=int(duration_seconds)))
        self.metrics.access_requests.labels("requested").inc()
        return await self._current(request_id)

    async def list(self, identity: Identity, *, status: str | None = None) -> builtins.list[AccessRequest]:
        if status is not None and status not in STATUSES:
            raise UserError(f"Unknown status {status!r} (one of {', '.join(STATUSES)})",
                            error_name="INVALID_FUNCTION_ARGUMENT")
        await self.refresh()
        return [r for r in self.snapshot.requests()
                if (status is None or r.status == status)
                and self.access.may_see_request(identity, r.requester, r.table)]

    def can_decide(self, identity: Identity, request: AccessRequest) -> bool:
        """Whether `identity` may approve or deny `request` now: pending, and they are an approver of its
        table who is not its requester."""
        return request.status == "pending" and self.access.may_decide_request(identity, request.requester,
                                                                              request.table)

    async def approve(self, identity: Identity, request_id: str, *, comment: str = "") -> AccessRequest:
        request = await self._decidable(identity, request_id, "approve")
        now = self.snapshot.now()
        event = AccessEvent(request_id=request.id, event="approved", actor=identity.user, at=now,
                            expires_at=now + timedelta(seconds=request.duration_seconds), comment=_comment(comment))
        return await self._decide(event)

    async def deny(self, identity: Identity, request_id: str, *, comment: str = "") -> AccessRequest:
        request = await self._decidable(identity, request_id, "deny")
        event = AccessEvent(request_id=request.id, event="denied", actor=identity.user, at=self.snapshot.now(),
                            comment=_comment(comment))
        return await self._decide(event)

    async def revoke(self, identity: Identity, request_id: str, *, comment: str = "") -> AccessRequest:
        request = await self._visible(identity, request_id)
        if not self.access.may_revoke_request(identity, request.requester, request.table):
            raise PermissionDenied(f"{identity.user} may not revoke access request {request.id}: only its "
                                   "requester, an approver of its table or an access admin may")
        if request.status != "approved":
            raise UserError(f"Access request {request.id} is {request.status}; only an approved grant can be "
                            "revoked", error_name="INVALID_FUNCTION_ARGUMENT")
        event = AccessEvent(request_id=request.id, event="revoked", actor=identity.user, at=self.snapshot.now(),
                            comment=_comment(comment))
        if not await self._add(event, requires="approved"):
            raise UserError(f"Access request {request.id} was revoked already", error_name="INVALID_FUNCTION_ARGUMENT")
        self.metrics.access_requests.labels("revoked").inc()
        return await self._current(request.id)

    # -- steps -------------------------------------------------------------------------------------------------

    async def _decidable(self, identity: Identity, request_id: str, verb: str) -> AccessRequest:
        request = await self._visible(identity, request_id)
        if request.requester in (identity.user, identity.principal):
            raise PermissionDenied(f"{identity.user} cannot {verb} their own access request {request.id}")
        if not self.access.may_decide_request(identity, request.requester, request.table):
            raise PermissionDenied(f"{identity.user} is not an approver of {request.table} and cannot {verb} "
                                   f"access request {request.id}")
        if request.status != "pending":
            raise UserError(f"Access request {request.id} is {request.status} already",
                            error_name="INVALID_FUNCTION_ARGUMENT")
        return request

    async def _decide(self, event: AccessEvent) -> AccessRequest:
        if not await self._add(event, requires="requested"):
            decided = await self._current(event.request_id)
            raise UserError(f"Access request {event.request_id} was {decided.status} already by "
                            f"{decided.decided_by}", error_name="INVALID_FUNCTION_ARGUMENT")
        self.metrics.access_requests.labels(event.event).inc()
        log.info("access request %s %s by %s", event.request_id, event.event, event.actor)
        return await self._current(event.request_id)

    async def _visible(self, identity: Identity, request_id: str) -> AccessRequest:
        await self.refresh()
        request = self.snapshot.request(request_id)
        if request is None or not self.access.may_see_request(identity, request.requester, request.table):
            raise NotFound(f"No access request {request_id}")  # the same answer whether it exists or not
        return request

    async def _current(self, request_id: str) -> AccessRequest:
        await self.refresh()
        request = self.snapshot.request(request_id)
        if request is None:
            raise NotFound(f"No access request {request_id}")
        return request

    async def _add(self, event: AccessEvent, *, requires: str | None = None) -> bool:
        try:
            added = await self.store.add_access_event(event, requires=requires)
        except StoreUnavailable as error:
            raise _unavailable(error) from None
        if added and self.notices is not None:
            await self.notices.publish()
        if not added:
            log.info("access request %s: %s not recorded (%s exists or %s missing)", event.request_id,
                     event.event, once_group(event.event), requires)
        return added

    def _table_name(self, table: str) -> str:
        parts = [p.strip().strip('"').lower() for p in table.strip().split(".")]
        if len(parts) == 2:
            parts = [self.default_catalog, *parts]
        if len(parts) != 3 or not all(parts):
            raise UserError(f"Table {table!r} must be [catalog.]schema.table", error_name="INVALID_FUNCTION_ARGUMENT")
        return ".".join(parts)


def parse_grant_duration(value: object) -> int | None:
    """"2h", "30m", "90s", "1d" or a number of seconds -> whole seconds; None if it is none of these."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    seconds = parse_duration(value)
    return int(seconds) if seconds is not None and seconds >= 1 else None


def _comment(text: str) -> str:
    text = text.strip()
    if len(text) > _MAX_COMMENT_CHARS:
        raise UserError(f"The comment is longer than {_MAX_COMMENT_CHARS} characters",
                        error_name="INVALID_FUNCTION_ARGUMENT")
    return text


def _unavailable(error: StoreUnavailable) -> GatewayError:
    return GatewayError(f"The audit store (which holds access requests) is unavailable: {error}",
                        error_name="AUDIT_UNAVAILABLE")
