"""The result cache's tiers, bounds, purge and coalescing, against a real Redis."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import sqlglot

from gateway import types as t
from gateway.cache.codec import decode_result, encode_result
from gateway.cache.key import cache_key
from gateway.cache.store import ResultCache
from gateway.errors import InsufficientResources, QueryCanceled, UserError
from gateway.metrics import Metrics
from gateway.relations import Column
from gateway.sql.determinism import is_deterministic
from tests.conftest import REDIS_URL

REDIS = REDIS_URL
COLUMNS = (Column("k", t.BIGINT), Column("v", t.VARCHAR))


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return redis_prefix


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def test_codec_round_trips_every_type() -> None:
    columns = (Column("d", t.decimal(10, 2)), Column("f", t.DOUBLE), Column("day", t.DATE),
               Column("ts", t.timestamp(6)), Column("tz", t.timestamp(6, with_time_zone=True)),
               Column("b", t.VARBINARY), Column("a", t.array(t.decimal(5, 1))),
               Column("m", t.map_of(t.VARCHAR, t.DATE)), Column("r", t.row([("x", t.BIGINT), ("y", t.DOUBLE)])),
               Column("i", t.INTERVAL_DAY_TO_SECOND), Column("n", t.BIGINT))
    rows = [(Decimal("1.50"), float("nan"), date(2024, 2, 29), datetime(2024, 1, 2, 3, 4, 5, 6),
             datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), b"\x00\xff", [Decimal("1.5"), None],
             {"k": date(2020, 1, 1)}, {"x": 1, "y": float("inf")}, timedelta(days=1, seconds=3), None)]
    decoded_columns, decoded = decode_result(encode_result(columns, rows))
    assert decoded_columns == columns
    value = decoded[0]
    assert value[0] == Decimal("1.50") and str(value[0]) == "1.50"
    assert value[1] != value[1]
    assert value[2:8] == rows[0][2:8]
    assert value[8] == {"x": 1, "y": float("inf")}
    assert value[9] == timedelta(days=1, seconds=3) and value[10] is None


@pytest.mark.parametrize(("sql", "deterministic"), [
    ("SELECT * FROM t WHERE d > DATE '2020-01-01'", True),
    ("SELECT now()", False), ("SELECT current_timestamp", False), ("SELECT random()", False),
    ("SELECT uuid()", False), ("SELECT * FROM t WHERE d = current_date", False), ("SELECT localtimestamp", False),
    ("SELECT count(*) FROM t WHERE x IN (SELECT rand() FROM u)", False),
])
def test_determinism(sql: str, deterministic: bool) -> None:
    assert is_deterministic(sqlglot.parse_one(sql, read="trino")) is deterministic


def test_key_depends_on_sql_target_version_and_properties() -> None:
    base = {"backend_sql": "SELECT 1", "target": "demo", "policy_version": "v1", "properties": ()}
    key = cache_key(**base)  # type: ignore[arg-type]
    assert key == cache_key(**base)  # type: ignore[arg-type]
    for change in ({"backend_sql": "SELECT 2"}, {"target": "other"}, {"policy_version": "v2"},
                   {"properties": (("x", "1"),)}):
        assert cache_key(**{**base, **change}) != key  # type: ignore[arg-type]


def test_local_tier_ttl_and_size_bounds() -> None:
    async def scenario() -> None:
        cache = ResultCache(max_bytes=50_000, max_entry_bytes=20_000, metrics=Metrics())
        assert await cache.put("a", columns=COLUMNS, rows=[(1, "x")], ttl_seconds=0.2, tables=("demo.s.t",))
        assert (await cache.get("a")) is not None
        await asyncio.sleep(0.3)
        assert await cache.get("a") is None  # expired
        big = [(i, "y" * 100) for i in range(1000)]
        assert await cache.put("big", columns=COLUMNS, rows=big, ttl_seconds=60, tables=()) is None  # over entry max
        for i in range(20):  # each ~6 KB: the byte bound evicts the oldest
            await cache.put(f"k{i}", columns=COLUMNS, rows=[(j, "z" * 40) for j in range(60)], ttl_seconds=60,
                            tables=())
        assert await cache.get("k0") is None and await cache.get("k19") is not None
        await cache.close()

    run(scenario())


def test_redis_tier_is_shared_and_purged_by_table(prefix: str) -> None:
    async def scenario() -> None:
        one = ResultCache(max_bytes=1 << 20, max_entry_bytes=1 << 20, metrics=Metrics(), redis_url=REDIS,
                          prefix=prefix)
        two = ResultCache(max_bytes=1 << 20, max_entry_bytes=1 << 20, metrics=Metrics(), redis_url=REDIS,
                          prefix=prefix)
        await one.put("q1", columns=COLUMNS, rows=[(1, "a")], ttl_seconds=30, tables=("demo.tpch.nation",))
        await one.put("q2", columns=COLUMNS, rows=[(2, "b")], ttl_seconds=30, tables=("demo.tpch.region",))
        hit = await two.get("q1")  # another replica: from Redis
        assert hit is not None and hit.rows == ((1, "a"),) and hit.tables == ("demo.tpch.nation",)
        assert await two.purge("demo.tpch.nation") >= 1
        assert await one.get("q2") is not None
        fresh = ResultCache(max_bytes=1 << 20, max_entry_bytes=1 << 20, metrics=Metrics(), redis_url=REDIS,
                            prefix=prefix)
        assert await fresh.get("q1") is None and await fresh.get("q2") is not None
        await fresh.purge()
        empty = ResultCache(max_bytes=1, max_entry_bytes=1, metrics=Metrics(), redis_url=REDIS, prefix=prefix)
        assert await empty.get("q2") is None
        for cache in (one, two, fresh, empty):
            await cache.close()

    run(scenario())


def test_redis_down_falls_back_to_local_tier() -> None:
    async def scenario() -> None:
        metrics = Metrics()
        cache = ResultCache(max_bytes=1 << 20, max_entry_bytes=1 << 20, metrics=metrics,
                            redis_url="redis://127.0.0.1:1/0")  # nothing listens there
        await cache.put("a", columns=COLUMNS, rows=[(1, "a")], ttl_seconds=30, tables=())
        assert await cache.get("a") is not None
        assert metrics.cache_redis_errors._value.get() >= 1
        await cache.close()

    run(scenario())


def test_coalescing_followers_wait_and_survive_their_own_cancel() -> None:
    async def scenario() -> None:
        cache = ResultCache(max_bytes=1 << 20, max_entry_bytes=1 << 20, metrics=Metrics())
        leader = cache.lead("k")
        assert cache.leader_for("k") is leader
        followers = [asyncio.create_task(cache.follow(leader, stall_seconds=5)) for _ in range(5)]
        await asyncio.sleep(0)
        followers[0].cancel()
        entry = await cache.put("k", columns=COLUMNS, rows=[(1, "a")], ttl_seconds=30, tables=())
        cache.finish_leading("k", leader, entry)
        results = await asyncio.gather(*followers[1:])
        assert all(r is entry for r in results)
        assert cache.leader_for("k") is None
        failed = cache.lead("k2")
        waiting = asyncio.create_task(cache.follow(failed, stall_seconds=5))
        cache.finish_leading("k2", failed, None)  # the leader failed: followers run themselves
        assert await waiting is None
        await cache.close()

    run(scenario())


def test_followers_get_the_statements_own_error_and_leave_a_stalled_leader() -> None:
    async def scenario() -> None:
        cache = ResultCache(max_bytes=1 << 20, max_entry_bytes=1 << 20, metrics=Metrics())
        own = UserError("Division by zero", error_name="DIVISION_BY_ZERO")
        circumstantial = InsufficientResources("too long", error_name="EXCEEDED_TIME_LIMIT")
        for error, expected in ((own, own), (circumstantial, None), (QueryCanceled("gone"), None)):
            leader = cache.lead("k")
            waiting = asyncio.create_task(cache.follow(leader, stall_seconds=5))
            await asyncio.sleep(0)
            cache.finish_leading("k", leader, error)
            assert await waiting is expected
        stalled = cache.lead("s")
        stalled.working(False)  # its backend work is done; its client does not read on
        began = time.monotonic()
        assert await cache.follow(stalled, stall_seconds=0.3) is None
        assert 0.3 <= time.monotonic() - began < 2
        assert not stalled.done.done()  # the stalled leader itself is left alone
        await cache.close()

    run(scenario())


def test_purge_reaches_other_replicas_local_tier(prefix: str) -> None:
    async def scenario() -> None:
        one = ResultCache(max_bytes=1 << 20, max_entry_bytes=1 << 20, metrics=Metrics(), redis_url=REDIS,
                          prefix=prefix)
        two = ResultCache(max_bytes=1 << 20, max_entry_bytes=1 << 20, metrics=Metrics(), redis_url=REDIS,
                          prefix=prefix)
        await two.start()
        await asyncio.sleep(0.1)  # subscribed
        await one.put("q", columns=COLUMNS, rows=[(1, "a")], ttl_seconds=30, tables=("demo.tpch.nation",))
        assert await two.get("q") is not None  # now in two's local tier too
        await one.purge("demo.tpch.nation")
        for _ in range(50):
            if two._local.get("q") is None:
                break
            await asyncio.sleep(0.02)
        assert two._local.get("q") is None
        await one.close()
        await two.close()

    run(scenario())
