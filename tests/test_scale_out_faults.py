"""Slow: the cluster-wide caps through faults. Two gateway replicas share Redis through a TcpProxy of the
test's own (`cut()` is the outage); queries run one second each (the group's max_execution_time), so the
number running at once is what the cap decides. The bound (docs/scale-out.md): at most replicas x
max_concurrency while Redis is down or recovering, max_concurrency otherwise; a SIGKILLed replica's slots
come back within lease_seconds."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayProcess, needs_redis
from tests.tcp_proxy import TcpProxy
from tests.test_workload_gateway import fast_sql, follow, post, slow_sql, start_gateway, wait_until

pytestmark = [needs_redis, pytest.mark.slow]

CAP = 2
LEASE = 2.0
QUEUE_TIMEOUT = 30.0
GROUPS = f"""
resource_groups:
  - {{name: capped, max_concurrency: {CAP}, max_queued: 50, queue_timeout: {QUEUE_TIMEOUT:g}s, max_execution_time: 1s,
     selectors: [{{client_tags: [capped]}}]}}
  - {{name: held, max_concurrency: {CAP}, max_queued: 50, selectors: [{{client_tags: [held]}}]}}
  - {{name: default, max_concurrency: 8, max_queued: 100, selectors: [{{}}]}}
"""


class Sampler:
    """The sum over live replicas of the queries running in a group, every 20 ms."""

    def __init__(self, replicas: list[GatewayProcess], group: str) -> None:
        self.replicas = replicas
        self.group = group
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0.0
            for replica in self.replicas:
                if replica.process.poll() is None:
                    with contextlib.suppress(httpx.HTTPError, KeyError):  # a replica just killed
                        total += replica.metric("gateway_workload_running", f'group="{self.group}"')
            self.samples.append((time.monotonic(), total))
            time.sleep(0.02)

    def peak(self, since: float, until: float | None = None) -> float:
        return max((n for t, n in self.samples if t >= since and (until is None or t <= until)), default=0.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def redis_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(6379)
    yield proxy
    proxy.close()


def replica(workdir: Path, database: Path, prefix: str, proxy: TcpProxy) -> GatewayProcess:
    return start_gateway(workdir, database, GROUPS, protocol={"max_wait_seconds": 0.2},
                         workload={"redis": f"redis://127.0.0.1:{proxy.port}/0", "key_prefix": prefix,
                                   "lease_seconds": LEASE, "poll_seconds": 0.02, "retry_seconds": 1,
                                   "redis_timeout_seconds": 0.5})


def ran_their_second(results: list[dict[str, Any]]) -> bool:
    """Every query was admitted and stopped by max_execution_time: none timed out in a queue, none lost."""
    return all(r["error"]["errorName"] == "EXCEEDED_TIME_LIMIT" and "maximum execution time" in r["error"]["message"]
               for r in results)


def run_all(targets: list[GatewayProcess], count: int) -> list[dict[str, Any]]:
    """`count` one-second queries spread over `targets`, followed to their end in parallel."""
    with ThreadPoolExecutor(count) as pool:
        bodies = [post(targets[i % len(targets)], slow_sql(), tags="capped") for i in range(count)]
        return list(pool.map(follow, bodies))


def test_caps_hold_through_a_redis_outage_and_a_killed_replica(demo_database: Path, tmp_path: Path,
                                                               redis_prefix: str, redis_proxy: TcpProxy) -> None:
    a = replica(tmp_path / "a", demo_database, redis_prefix, redis_proxy)
    b = replica(tmp_path / "b", demo_database, redis_prefix, redis_proxy)
    sampler = Sampler([a, b], "capped")
    try:
        began = time.monotonic()
        results = run_all([a, b], 6)
        assert len(results) == 6 and ran_their_second(results)
        assert sampler.peak(began) == CAP

        before = [post(g, slow_sql(), tags="capped") for g in (a, b, a, b, a, b)]  # 2 run, 4 wait in Redis
        wait_until(lambda: sampler.peak(time.monotonic() - 0.05) == CAP, what="the cap in use")
        redis_proxy.cut()  # Redis admitted the two running: each replica's fallback must count them
        outage = time.monotonic()
        with ThreadPoolExecutor(6) as pool:
            waited = pool.map(follow, before)
            results = run_all([a, b], 8) + list(waited)
        elapsed = time.monotonic() - outage
        assert len(results) == 14 and ran_their_second(results)  # none stranded in a queue
        assert elapsed < QUEUE_TIMEOUT
        assert sampler.peak(outage) <= 2 * CAP  # the documented bound: replicas x max_concurrency
        assert a.metric("gateway_workload_redis_up") == 0

        redis_proxy.restore()
        wait_until(lambda: a.metric("gateway_workload_redis_up") == 1 and b.metric("gateway_workload_redis_up") == 1,
                   timeout=10, what="both replicas back on Redis")
        recovered = time.monotonic()
        results = run_all([a, b], 6)
        assert len(results) == 6 and ran_their_second(results)
        assert sampler.peak(recovered) == CAP  # the cap holds again at once

        for _ in range(CAP):
            post(a, slow_sql(), tags="held")
        wait_until(lambda: a.metric("gateway_workload_running", 'group="held"') == CAP, what="a holding the slots")
        waiting = post(b, fast_sql(), tags="held")
        a.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        assert follow(waiting)["rows"] == [[25]]
        assert time.monotonic() - killed < LEASE + 1.0  # the dead replica's slots came back within the lease
    finally:
        sampler.stop()
        a.stop()
        b.stop()
