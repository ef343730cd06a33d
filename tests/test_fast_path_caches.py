"""The caches the fast path answers from never cross identities, policies or catalogs.

A repeated statement is answered from the plan cache (planner.py) and, for a deterministic query, from the
result cache (cache/stage.py), possibly without a task (`QueryRun.begin`). These properties generate many
identities — groups, attributes that row filters bind and masks test, missing attributes — and sequences of
statements, and compare what the caches hand out with what planning from scratch gives the same identity.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.cache.key import cache_key
from gateway.cache.stage import CacheStage
from gateway.cache.store import ResultCache
from gateway.catalog import CatalogSnapshot
from gateway.errors import GatewayError
from gateway.identity import Identity
from gateway.metrics import Metrics
from gateway.planner import Plan, Planner, PolicyContext
from gateway.policy.load import load_policies
from gateway.policy.model import PolicySet
from gateway.session import Session
from gateway.sql.rewrite import SecureViews
from tests.planning_world import CATALOG, ROOT, World, open_world

STATEMENTS = (
    "SELECT c_mktsegment, count(*) AS customers FROM customer GROUP BY c_mktsegment ORDER BY 1",
    "SELECT c_name, c_phone, c_acctbal FROM customer WHERE c_custkey < 20 ORDER BY 1",
    "SELECT o_orderstatus, o_clerk, sum(o_totalprice) FROM orders GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 5",
    "SELECT n_name FROM nation ORDER BY 1",
    "SELECT 1",
)


@pytest.fixture(scope="module")
def world(demo_database: Path) -> Iterator[World]:
    yield from open_world(demo_database)


identities = st.builds(
    lambda user, groups, nations, clearance: Identity.create(
        user, groups=groups,
        attributes={**({"nations": nations} if nations is not None else {}),
                    **({"clearance": clearance} if clearance is not None else {})}),
    user=st.sampled_from(["alice", "bob", "sam", "eve"]),
    groups=st.lists(st.sampled_from(["analysts", "support", "admins", "auditors", "bi"]), max_size=2, unique=True),
    nations=st.none() | st.lists(st.integers(0, 7), min_size=1, max_size=3, unique=True),
    clearance=st.none() | st.integers(0, 3))
SESSION = Session(user="alice", catalog=CATALOG, schema="tpch")


def outcome(planner: Planner, world: World, sql: str, identity: Identity,
            policy: PolicyContext | None = None) -> Plan | tuple[str, str]:
    try:
        return planner.plan(sql, session=replace(SESSION, user=identity.user), identity=identity,
                            snapshot=world.snapshot, policy=policy or world.policy)
    except GatewayError as error:
        return error.error_name, error.message


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(identities, st.sampled_from(STATEMENTS)), min_size=2, max_size=6))
def test_a_cached_plan_is_the_plan_of_the_identity_asking(world: World,
                                                           asks: list[tuple[Identity, str]]) -> None:
    """Whatever was asked before, by whomever: each identity gets exactly the plan (or the error) that planning
    its statement from scratch gives it. The second pass over the same asks is answered from the cache."""
    shared = world.planner()
    for _ in range(2):
        for identity, sql in asks:
            assert outcome(shared, world, sql, identity) == outcome(world.planner(), world, sql, identity)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(identities, identities, st.sampled_from(STATEMENTS[:3]))
def test_a_cached_result_is_shared_only_where_the_backend_statement_is_the_same(
        world: World, first: Identity, second: Identity, sql: str) -> None:
    """Two identities share a result cache entry exactly when the gateway would send the backend the same
    statement for them (filters, masks, bound attribute values are in it); the key memo agrees with the key."""
    planner = world.planner()
    stage = CacheStage(ResultCache(max_bytes=1 << 20, max_entry_bytes=1 << 20, metrics=Metrics()))
    plans = [outcome(planner, world, sql, identity) for identity in (first, second, first)]
    if not all(isinstance(plan, Plan) for plan in plans):
        return  # a denial is never cached as a result
    keys = [stage.key_for(plan, SESSION) for plan in plans if isinstance(plan, Plan)]
    a, b, _ = (plan for plan in plans if isinstance(plan, Plan))
    assert keys[0] == keys[2]
    assert (keys[0] == keys[1]) == (a.sql == b.sql and a.target == b.target and a.policy_version == b.policy_version)
    assert keys[0] == cache_key(backend_sql=a.sql or "", target=a.target or "", policy_version=a.policy_version or "",
                                properties=(), grants=a.grants)


def changed_policy(tmp_path: Path, edit: Any) -> PolicySet:
    directory = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", directory)
    tables = directory / "tables.yaml"
    data = yaml.safe_load(tables.read_text())
    edit(data)
    tables.write_text(yaml.safe_dump(data))
    return load_policies(directory)


def test_policy_reload_mask_key_rotation_and_catalog_refresh_plan_again(world: World, tmp_path: Path) -> None:
    alice = Identity.create("alice", groups=["analysts"], attributes={"nations": [1, 2, 3], "clearance": 2})
    sql = STATEMENTS[1]
    planner = world.planner()
    stage = CacheStage(ResultCache(max_bytes=1 << 20, max_entry_bytes=1 << 20, metrics=Metrics()))
    before = outcome(planner, world, sql, alice)
    assert isinstance(before, Plan) and "IN (1, 2, 3)" in (before.sql or "")

    def unfiltered(data: dict[str, Any]) -> None:
        customer = next(t for t in data["tables"] if t["name"].endswith("customer"))
        customer["row_filters"] = [{"filter": "true"}]

    def rotated(data: dict[str, Any]) -> None:
        data["mask_key_version"] = int(data.get("mask_key_version", 1)) + 1

    for edit in (unfiltered, rotated):
        policy = PolicyContext(changed_policy(tmp_path / edit.__name__, edit), SecureViews())
        after = outcome(planner, world, sql, alice, policy)
        assert isinstance(after, Plan)
        assert after == outcome(world.planner(), world, sql, alice, policy)
        assert after.policy_version != before.policy_version
        assert stage.key_for(after, SESSION) != stage.key_for(before, SESSION)
        assert ("IN (1, 2, 3)" in (after.sql or "")) == (edit is rotated)

    refreshed = World(CatalogSnapshot({CATALOG: [t for t in world.snapshot.tables(CATALOG, "tpch")
                                                 if t.name != "customer"]}), world.policy, world.mask_key,
                      world.backend)
    gone = outcome(planner, refreshed, sql, alice)
    assert isinstance(gone, tuple) and gone[0] == "TABLE_NOT_FOUND"
