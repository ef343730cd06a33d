"""Property tests of the Redis slot scripts (gateway/workload/redis_scripts.py) against the real Redis: any
interleaving of enqueue, release, renewal, lease expiry, promotion and recovery by several replicas keeps the
counters equal to the entries, never admits past a limit, and never extends a lease its holder did not renew."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.workload import redis_scripts
from tests.conftest import REDIS_URL, needs_redis

pytestmark = needs_redis

LEASE_MS = 60_000  # long: leases end here only when a test expires them
CAPS = {"small": 1, "wide": 2}
TOTAL = 3  # capacity.max_concurrency
REPLICAS = ("a", "b", "c")
USERS = ("u1", "u2")
PER_USER = {"small": 0, "wide": 1}  # 0: no per-user limit

Op = tuple[str, int, int, int]
ops = st.lists(st.tuples(st.sampled_from(["enqueue", "enqueue", "release", "expire", "sync", "recover",
                                          "run_locally"]),
                         st.integers(0, 2), st.integers(0, 1), st.integers(0, 50)), max_size=40)


@pytest.fixture(scope="module")
def client() -> Iterator[redis.Redis]:
    with redis.Redis.from_url(REDIS_URL) as connection:
        yield connection


@dataclass
class Cluster:
    client: redis.Redis
    prefix: str = field(default_factory=lambda: f"test:{uuid.uuid4().hex}:")
    forced: set[str] = field(default_factory=set)  # entries RECOVER counted as running whatever the limits
    local: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)  # replica -> (id, group, user)
    renewed: dict[str, int] = field(default_factory=dict)  # id -> Redis time (ms) after its last renewal
    serial: int = 0

    def __post_init__(self) -> None:
        self.keys = [self.prefix + name for name in redis_scripts.KEY_NAMES]
        self.scripts = {name: self.client.register_script(getattr(redis_scripts, name))
                        for name in ("ENQUEUE", "SYNC", "RELEASE", "RECOVER", "SNAPSHOT")}

    def now_ms(self) -> int:
        seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def entries(self) -> dict[str, dict[str, object]]:
        raw = self.client.hgetall(self.keys[1])
        return {key.decode(): json.loads(value) for key, value in raw.items()}

    def info(self, replica: str, group: str, user: str) -> str:
        return json.dumps({"g": group, "u": user, "r": replica, "s": "q", "gc": CAPS[group],
                           "uc": PER_USER[group], "tc": TOTAL, "p": 0})

    def apply(self, op: Op) -> None:
        kind, r, g, pick = op
        replica, group, user = REPLICAS[r], sorted(CAPS)[g], USERS[pick % 2]
        entries = sorted(self.entries())
        chosen = entries[pick % len(entries)] if entries else None
        if kind == "enqueue":
            self.serial += 1
            query_id = f"{replica}{self.serial}"
            self.scripts["ENQUEUE"](keys=self.keys, args=[query_id, self.info(replica, group, user), 0, 5, LEASE_MS])
            self.renewed[query_id] = self.now_ms()
        elif kind == "release" and chosen is not None:
            self.scripts["RELEASE"](keys=self.keys, args=[chosen])
        elif kind == "expire" and chosen is not None:
            self.client.zadd(self.keys[0], {chosen: 0})  # its holder stopped renewing long ago
        elif kind == "sync":
            mine = [q for q, e in self.entries().items() if e["r"] == replica]
            self.scripts["SYNC"](keys=[*self.keys, f"{self.prefix}kills:{replica}"], args=[LEASE_MS, *mine])
            after = self.now_ms()
            self.renewed.update(dict.fromkeys(mine, after))
        elif kind == "run_locally":  # admitted by the per-process fallback during an outage
            self.serial += 1
            self.local.setdefault(replica, []).append((f"{replica}{self.serial}", group, user))
        elif kind == "recover":
            current = self.entries()
            running = [(q, e["g"], e["u"]) for q, e in current.items() if e["r"] == replica and e["s"] == "r"]
            running += self.local.pop(replica, [])
            waiting = [(q, e["g"], e["u"]) for q, e in current.items() if e["r"] == replica and e["s"] == "q"]
            args: list[object] = [LEASE_MS, len(running)]
            for query_id, entry_group, entry_user in (*running, *waiting):
                args += [query_id, self.info(replica, str(entry_group), str(entry_user)), 0]
            self.scripts["RECOVER"](keys=self.keys, args=args)
            after = self.now_ms()
            self.forced.update(q for q, _, _ in running)
            self.renewed.update({str(q): after for q, _, _ in (*running, *waiting)})

    def check(self) -> None:
        self.scripts["SNAPSHOT"](keys=self.keys)  # purges expired leases, as every script does first
        entries = self.entries()
        counts = {k.decode(): int(v) for k, v in self.client.hgetall(self.keys[3]).items()}
        leases = {k.decode(): int(v) for k, v in self.client.zrange(self.keys[0], 0, -1, withscores=True)}
        queue = {k.decode() for k in self.client.zrange(self.keys[2], 0, -1)}
        running = {q: e for q, e in entries.items() if e["s"] == "r"}
        expected: dict[str, int] = {}
        for entry in entries.values():
            name = f"r:{entry['g']}" if entry["s"] == "r" else f"q:{entry['g']}"
            expected[name] = expected.get(name, 0) + 1
            if entry["s"] == "r":
                expected["t"] = expected.get("t", 0) + 1
                per_user = f"u:{entry['g']}:{entry['u']}"
                expected[per_user] = expected.get(per_user, 0) + 1
        assert counts == expected
        assert set(leases) == set(entries)
        assert queue == {q for q, e in entries.items() if e["s"] == "q"}
        self.forced &= set(running)
        admitted = {q: e for q, e in running.items() if q not in self.forced}
        for group, cap in CAPS.items():
            assert sum(1 for e in admitted.values() if e["g"] == group) <= cap
            if PER_USER[group]:
                for user in USERS:
                    assert sum(1 for e in admitted.values() if e["g"] == group and e["u"] == user) <= PER_USER[group]
        assert len(admitted) <= TOTAL
        if not self.forced:
            assert len(running) <= TOTAL
        for query_id, expiry in leases.items():  # a promotion never renews: only enqueue/sync/recover do
            assert expiry <= self.renewed[query_id] + LEASE_MS

    def clean(self) -> None:
        keys = list(self.client.scan_iter(match=self.prefix + "*"))
        if keys:
            self.client.delete(*keys)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_any_interleaving_keeps_counts_and_limits(client: redis.Redis, steps: list[Op]) -> None:
    cluster = Cluster(client)
    try:
        for step in steps:
            cluster.apply(step)
            cluster.check()
    finally:
        cluster.clean()


def test_promoting_a_dead_replicas_entry_keeps_its_lease(client: redis.Redis) -> None:
    cluster = Cluster(client)
    try:
        cluster.apply(("enqueue", 0, 0, 0))  # a1 runs in `small` (cap 1)
        cluster.apply(("enqueue", 1, 0, 0))  # b2 waits; replica b then dies
        before = client.zscore(cluster.keys[0], "b2")
        cluster.scripts["RELEASE"](keys=cluster.keys, args=["a1"])  # promotes b2
        assert cluster.entries()["b2"]["s"] == "r"
        assert client.zscore(cluster.keys[0], "b2") == before
    finally:
        cluster.clean()


def test_a_retried_enqueue_counts_once(client: redis.Redis) -> None:
    cluster = Cluster(client)
    try:
        info = cluster.info("a", "wide", "u1")
        for _ in range(3):
            assert cluster.scripts["ENQUEUE"](keys=cluster.keys, args=["x", info, 0, 5, LEASE_MS]) == b"running"
        cluster.renewed["x"] = cluster.now_ms()
        cluster.check()
        assert client.hget(cluster.keys[3], "t") == b"1"
    finally:
        cluster.clean()
