"""Just-in-time grants without a server: approvers in policy files (file:line errors), the decision with
grants, the snapshot folded from events against the clock (a property over generated event and clock
sequences), and the service on the real SQLite audit store (self-approval, races, revocation, restarts,
Redis notices between replicas)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.access import Access, OperatorGroups
from gateway.audit.stores.sqlite import SQLiteStore
from gateway.catalog import CatalogSnapshot
from gateway.errors import GatewayError, NotFound, PermissionDenied, UserError
from gateway.grants.model import AccessEvent
from gateway.grants.notices import RedisNotices
from gateway.grants.service import AccessRequests, parse_grant_duration
from gateway.grants.settings import AccessRequestSettings
from gateway.grants.snapshot import GrantSnapshot
from gateway.identity import Identity
from gateway.metrics import Metrics
from gateway.policy.decide import decide_table
from gateway.policy.load import PolicyError, parse_policies
from gateway.policy.model import TableGrant
from gateway.relations import Column, Table
from gateway.types import VARCHAR
from tests.conftest import REDIS_URL, needs_redis

POLICY = """
tables:
  - name: demo.s.open
    access: [{when: {groups: [analysts]}}]
    columns:
      secret: {mask: redact, unmask_when: {groups: [admins]}}
      other: {mask: redact}
    approvers: {groups: [approvers], users: [root], max_duration: 1h}
  - name: demo.s.closed
    classification: confidential
    access:
      - {when: {user: mallory}, allow: false}
    row_filters:
      - {when: {groups: [analysts]}, filter: "region = 'eu'"}
  - name: demo.s.nobody
    access: []
classification_approvers:
  confidential: {groups: [approvers]}
"""
TABLES = ("demo.s.open", "demo.s.closed", "demo.s.nobody")
PARSED = parse_policies({"tables.yaml": POLICY})
USERS = {"ann": ("analysts",), "dev": (), "mallory": (), "carl": ("approvers",), "root": ()}


def identity(user: str) -> Identity:
    return Identity.create(user, groups=USERS.get(user, ()))


# -- policy files -----------------------------------------------------------------------------------------------


def test_approvers_are_read_with_their_limits() -> None:
    policy = parse_policies({"tables.yaml": POLICY})
    entry = next(t for t in policy.tables if t.name == "demo.s.open")
    assert entry.approvers is not None
    assert entry.approvers.groups == {"approvers"} and entry.approvers.users == {"root"}
    assert entry.approvers.max_duration_seconds == 3600
    assert policy.classification_approvers["confidential"].max_duration_seconds == 8 * 3600  # the default


@pytest.mark.parametrize(("text", "message"), [
    ("tables: [{name: a.b, access: [], approvers: {}}]", "tables.yaml:1: approvers of a.b must name users or groups"),
    ("tables: [{name: a.b, access: [], approvers: {groups: [x], max_duration: soon}}]",
     "tables.yaml:1: max_duration must be a duration like 30m, 8h or 2d"),
    ("tables: [{name: a.b, access: [], approvers: {groups: [x], who: y}}]",
     "tables.yaml:1: unknown key 'who' in approvers of a.b"),
    ("classification_approvers:\n  secretish: {groups: [x]}",
     "tables.yaml:2: classification_approvers: 'secretish' is not one of public, internal, confidential, restricted"),
])
def test_invalid_approvers_name_the_file_and_line(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policies({"tables.yaml": text})
    assert message in raised.value.errors


# -- decisions with grants -----------------------------------------------------------------------------------------


def test_a_grant_lifts_a_default_deny_but_never_an_explicit_one_and_keeps_row_filters() -> None:
    policy = parse_policies({"tables.yaml": POLICY})
    grant = TableGrant("g1", "demo.s.closed", frozenset(), 10**12)
    assert not decide_table(policy, "demo.s.closed", identity("dev"), None).allowed
    granted = decide_table(policy, "demo.s.closed", identity("dev"), None, (grant,))
    assert granted.allowed and granted.grants == ("g1",) and granted.no_rows  # dev matches no row filter
    assert decide_table(policy, "demo.s.closed", identity("ann"), None, (grant,)).row_filter is not None
    assert not decide_table(policy, "demo.s.closed", identity("mallory"), None, (grant,)).allowed
    other_table = TableGrant("g2", "demo.s.open", frozenset(), 10**12)
    assert not decide_table(policy, "demo.s.closed", identity("dev"), None, (other_table,)).allowed


def test_a_grant_unmasks_only_the_columns_it_names() -> None:
    policy = parse_policies({"tables.yaml": POLICY})
    decision = decide_table(policy, "demo.s.open", identity("ann"), None,
                            (TableGrant("g1", "demo.s.open", frozenset({"secret"}), 10**12),))
    assert [m.column for m in decision.masks] == ["other"] and decision.grants == ("g1",)


# -- the snapshot against a model -----------------------------------------------------------------------------------

T0 = datetime(2026, 12, 1, tzinfo=UTC)
event_kinds = st.sampled_from(["approved", "denied", "revoked", "expired"])
requests = st.lists(st.tuples(st.sampled_from(sorted(USERS)), st.sampled_from(TABLES),
                              st.lists(st.sampled_from(["secret", "other"]), max_size=2, unique=True),
                              st.integers(1, 100),  # duration seconds
                              st.lists(st.tuples(event_kinds, st.integers(0, 200)), max_size=4)),
                    max_size=8)


def model_grants(history: list[tuple[str, str, list[str], int, list[tuple[str, int]]]], user: str,
                 now: float) -> set[tuple[str, str, frozenset[str]]]:
    """The simple model: approved (first decision), not revoked, no expiry recorded, now < approval + duration."""
    held = set()
    for index, (requester, table, columns, duration, events) in enumerate(history):
        if requester != user:
            continue
        decision = next(((kind, at) for kind, at in events if kind in ("approved", "denied")), None)
        if decision is None or decision[0] != "approved":
            continue
        if any(kind in ("revoked", "expired") for kind, _ in events):
            continue
        if now < T0.timestamp() + decision[1] + duration:
            held.add((f"r{index}", table, frozenset(columns)))
    return held


@settings(max_examples=150, deadline=None)
@given(history=requests, now=st.integers(0, 400), user=st.sampled_from(sorted(USERS)),
       table=st.sampled_from(TABLES), impersonated=st.booleans())
def test_effective_access_is_policy_plus_the_identitys_unexpired_grants(
        history: list[tuple[str, str, list[str], int, list[tuple[str, int]]]], now: int, user: str, table: str,
        impersonated: bool) -> None:
    clock = T0.timestamp() + now
    snapshot = GrantSnapshot(clock=lambda: clock)
    stored: list[AccessEvent] = []
    for index, (requester, name, columns, duration, events) in enumerate(history):
        stored.append(AccessEvent(request_id=f"r{index}", event="requested", actor=requester, at=T0, table=name,
                                  columns=tuple(columns), reason="r", duration_seconds=duration))
        decided = False
        for kind, at in events:
            if kind in ("approved", "denied"):
                if decided:
                    continue  # the store keeps one decision per request
                decided = True
            when = T0 + timedelta(seconds=at)
            stored.append(AccessEvent(request_id=f"r{index}", event=kind, actor="carl", at=when,
                                      expires_at=when + timedelta(seconds=duration) if kind == "approved" else None))
    snapshot.apply(AccessEvent(**{**e.__dict__, "event_id": i}) for i, e in enumerate(stored, 1))

    who = identity(user)
    if impersonated:
        who = Identity.create(user, groups=who.groups, principal="svc")
    active = snapshot.active_for(who)
    expected = set() if impersonated else model_grants(history, user, clock)
    assert {(g.id, g.table, g.columns) for g in active} == expected  # never another identity's, never expired

    policy = PARSED
    plain = decide_table(policy, table, who, None)
    widened = decide_table(policy, table, who, None, active)
    on_table = [g for g in expected if g[1] == table]
    explicit_deny = user == "mallory" and table == "demo.s.closed"
    assert widened.allowed == (plain.allowed or (bool(on_table) and not explicit_deny))
    if widened.allowed:  # the model of POLICY: masks minus what the grants name; row filters as for anyone
        unmasked = set().union(*(g[2] for g in on_table)) if on_table else set()
        masked = {"secret", "other"} if table == "demo.s.open" else set()
        assert {m.column for m in widened.masks} == masked - unmasked
        analyst = "analysts" in who.groups
        assert (widened.row_filter is not None, widened.no_rows) == (
            (analyst, not analyst) if table == "demo.s.closed" else (False, False))
        assert set(widened.grants) <= {g[0] for g in on_table}


# -- the service on the real SQLite store -----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[AccessRequests, Clock, Path]]:
    clock = Clock()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # the tests' run() drives the service on the loop its store was opened on
    store = SQLiteStore(tmp_path / "audit.db")
    loop.run_until_complete(store.open())
    yield make_service(store, clock), clock, tmp_path / "audit.db"
    loop.run_until_complete(store.close())
    asyncio.set_event_loop(None)
    loop.close()


def make_service(store: SQLiteStore, clock: Clock, *, settings: AccessRequestSettings | None = None,
                 notices: RedisNotices | None = None) -> AccessRequests:
    policy = parse_policies({"tables.yaml": POLICY})
    snapshot = GrantSnapshot(clock=clock)
    access = Access(policy=lambda: policy, groups=OperatorGroups.of(access_admin=["admins"],
                                                                    access_auditor=["auditors"]),
                    grants=snapshot.active_for)
    columns = (Column("region", VARCHAR), Column("secret", VARCHAR), Column("other", VARCHAR))
    catalog = CatalogSnapshot({"demo": [Table(schema="s", name=n, columns=columns) for n in ("open", "closed")]})
    return AccessRequests(store=store, access=access, snapshot=snapshot, catalog=lambda: catalog,
                          default_catalog="demo", settings=settings or AccessRequestSettings(), metrics=Metrics(),
                          notices=notices)


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    """On the `service` fixture's loop, where its store lives (tests without the fixture use asyncio.run)."""
    asyncio.get_event_loop_policy().get_event_loop().run_until_complete(coroutine)


def test_request_approve_use_expire_and_the_rules_that_guard_them(
        service: tuple[AccessRequests, Clock, Path]) -> None:
    requests, clock, _ = service

    async def scenario() -> None:
        dev, carl = identity("dev"), identity("carl")
        asked = await requests.request(dev, table="s.closed", reason="incident 42", duration_seconds=60)
        assert asked.status == "pending" and asked.table == "demo.s.closed"
        with pytest.raises(PermissionDenied, match="their own"):
            await requests.approve(dev, asked.id)
        with pytest.raises(NotFound):  # ann may not even see it
            await requests.approve(identity("ann"), asked.id)
        assert requests.can_decide(carl, asked) and not requests.can_decide(dev, asked)
        assert requests.access.table(dev, "demo.s.closed", None).allowed is False
        approved = await requests.approve(carl, asked.id, comment="ok")
        assert approved.status == "approved" and approved.decided_by == "carl"
        assert approved.expires_at == approved.decided_at + timedelta(seconds=60)  # type: ignore[operator]
        with pytest.raises(UserError, match="approved already"):
            await requests.deny(carl, asked.id)
        decision = requests.access.table(dev, "demo.s.closed", None)
        assert decision.allowed and decision.grants == (asked.id,)
        clock.now += 61  # the clock alone ends it: no store write needed
        assert not requests.access.table(dev, "demo.s.closed", None).allowed
        assert (await requests.list(dev))[0].status == "expired"
        with pytest.raises(UserError, match="only an approved grant"):
            await requests.revoke(carl, asked.id)
        await requests._record_expiries()
        kinds = [e.event for e in await requests.store.access_events()]
        assert kinds == ["requested", "approved", "expired"]

    run(scenario())


def test_revoke_deny_limits_and_a_restart(service: tuple[AccessRequests, Clock, Path]) -> None:
    requests, clock, path = service

    async def scenario() -> None:
        ann, carl, root = identity("ann"), identity("carl"), identity("root")
        with pytest.raises(UserError, match="between 1 second and 1h"):
            await requests.request(ann, table="demo.s.open", columns=("secret",), reason="x", duration_seconds=7200)
        with pytest.raises(UserError, match="not masked"):
            await requests.request(ann, table="demo.s.open", columns=("region",), reason="x", duration_seconds=60)
        with pytest.raises(UserError, match="may already read"):
            await requests.request(ann, table="demo.s.open", reason="x", duration_seconds=60)
        with pytest.raises(PermissionDenied, match="names no approvers"):
            await requests.request(ann, table="demo.s.nobody", reason="x", duration_seconds=60)
        with pytest.raises(PermissionDenied, match="denies it explicitly"):
            await requests.request(identity("mallory"), table="demo.s.closed", reason="x", duration_seconds=60)
        with pytest.raises(UserError, match="reason"):
            await requests.request(ann, table="demo.s.open", columns=("secret",), reason=" ", duration_seconds=60)
        unmask = await requests.request(ann, table="demo.s.open", columns=("SECRET",), reason="x", duration_seconds=60)
        assert unmask.columns == ("secret",)
        approved = await requests.approve(root, unmask.id)  # a user named in approvers
        assert [m.column for m in requests.access.table(ann, "demo.s.open", None).masks] == ["other"]
        with pytest.raises(NotFound):  # dev may not see ann's request, so it is not there for them
            await requests.revoke(identity("dev"), approved.id)
        revoked = await requests.revoke(ann, approved.id, comment="done early")  # the requester gives it up
        assert revoked.status == "revoked" and revoked.decided_by == "ann"
        assert {m.column for m in requests.access.table(ann, "demo.s.open", None).masks} == {"secret", "other"}
        denied = await requests.deny(carl, (await requests.request(
            identity("dev"), table="demo.s.closed", reason="y", duration_seconds=5)).id)
        assert denied.status == "denied"
        assert [r.id for r in await requests.list(carl, status="denied")] == [denied.id]
        assert await requests.list(identity("dev"), status="approved") == []
        later = await requests.request(identity("dev"), table="demo.s.closed", reason="z", duration_seconds=30)
        await requests.approve(carl, later.id)

        # another replica (or this one restarted) on the same file sees every request as it stands
        store = SQLiteStore(path)
        await store.open()
        try:
            other = make_service(store, clock)
            await other.refresh()
            assert {r.id: r.status for r in other.snapshot.requests()} == {
                later.id: "approved", denied.id: "denied", unmask.id: "revoked"}
            assert other.access.table(identity("dev"), "demo.s.closed", None).grants == (later.id,)
            with pytest.raises(UserError, match="approved already"):
                await other.deny(carl, later.id)
        finally:
            await store.close()

    run(scenario())


@pytest.mark.parametrize(("text", "seconds"), [("2h", 7200), ("30m", 1800), ("90", 90), (45, 45), ("1d", 86400),
                                               ("0", None), ("soon", None), (None, None), (0.2, None)])
def test_durations(text: object, seconds: int | None) -> None:
    assert parse_grant_duration(text) == seconds


@needs_redis
def test_with_redis_other_replicas_see_a_change_at_once_not_at_their_next_poll(
        service: tuple[AccessRequests, Clock, Path], redis_prefix: str) -> None:
    _, clock, path = service
    slow_poll = AccessRequestSettings(poll_seconds=60)

    async def scenario() -> None:
        stores = [SQLiteStore(path), SQLiteStore(path)]
        replicas = []
        for store in stores:
            await store.open()
            replica = make_service(store, clock, settings=slow_poll,
                                   notices=RedisNotices(url=REDIS_URL, channel=redis_prefix + "access"))
            await replica.start()
            replicas.append(replica)
        try:
            await asyncio.sleep(0.3)  # both subscribed
            here, there = replicas
            asked = await here.request(identity("dev"), table="demo.s.closed", reason="x", duration_seconds=60)
            await here.approve(identity("carl"), asked.id)
            for _ in range(30):
                if there.access.table(identity("dev"), "demo.s.closed", None).allowed:
                    break
                await asyncio.sleep(0.05)
            assert there.access.table(identity("dev"), "demo.s.closed", None).grants == (asked.id,)
            await there.revoke(identity("carl"), asked.id)
            for _ in range(30):
                if not here.access.table(identity("dev"), "demo.s.closed", None).allowed:
                    break
                await asyncio.sleep(0.05)
            assert not here.access.table(identity("dev"), "demo.s.closed", None).allowed
        finally:
            for replica, store in zip(replicas, stores, strict=True):
                await replica.stop()
                await store.close()

    run(scenario())


def test_a_store_outage_is_a_clear_error_and_keeps_the_grants_in_force(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SQLiteStore(tmp_path / "audit.db")
        await store.open()
        requests = make_service(store, Clock())
        asked = await requests.request(identity("dev"), table="demo.s.closed", reason="x", duration_seconds=60)
        await requests.approve(identity("carl"), asked.id)
        connection = store._connection  # the store loses its database (as on a disk error), its thread stays
        assert connection is not None
        connection.close()
        store._connection = None
        try:
            with pytest.raises(GatewayError) as raised:
                await requests.list(identity("carl"))
            assert raised.value.error_name == "AUDIT_UNAVAILABLE" and "holds access requests" in raised.value.message
            assert requests.access.table(identity("dev"), "demo.s.closed", None).allowed  # the last read stands
        finally:
            await store.close()

    asyncio.run(scenario())
