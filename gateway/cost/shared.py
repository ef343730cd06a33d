"""Budget counters shared by every replica through Redis (`cost.redis`).

Each replica counts its own charges in memory (so admission never waits on Redis), and every
`cost.sync_seconds` a background task adds what it charged since the last sync to the cluster counters
(INCRBYFLOAT on `<prefix>spend:<cost center>:<day or month>`) and reads the cluster totals back into its
`Budgets`. A replica that starts first seeds the counters from the ledger (SET NX), so budgets hold across a
restart of the whole cluster. Alerts fire once per cluster: the replica that first claims an alert
(SET NX `<prefix>alert:...`) raises it; the others stay silent.

Redis unreachable: logged once, counted (`gateway_cost_redis_errors_total`); the replica keeps counting
locally (its own charges, on top of the last cluster totals it saw) and retries at the next sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from gateway.cost.alerts import Alert, AlertSink
from gateway.cost.budgets import Budgets, period_bounds
from gateway.cost.model import Charge, CostPolicy
from gateway.metrics import Metrics

log = logging.getLogger("gateway.cost")

COUNTER_TTL_SECONDS = 40 * 24 * 3600  # a month's counter outlives its month
PERIODS = ("daily", "monthly")


class ClusterAlerts(AlertSink):
    """An AlertSink that raises each alert on one replica only: whoever claims it first in Redis."""

    def __init__(self, inner: AlertSink, redis: aioredis.Redis, prefix: str, metrics: Metrics) -> None:
        super().__init__(metrics=metrics, webhook_url=None)
        self._inner = inner
        self._redis = redis
        self._prefix = prefix
        self._claims: set[asyncio.Task[None]] = set()

    def raise_alert(self, alert: Alert) -> None:
        task = asyncio.get_running_loop().create_task(self._claim_then_raise(alert))
        self._claims.add(task)
        task.add_done_callback(self._claims.discard)

    async def _claim_then_raise(self, alert: Alert) -> None:
        mark = alert.threshold if alert.kind == "threshold" else "forecast"
        key = f"{self._prefix}alert:{alert.budget}:{alert.period_start}:{mark}"
        try:
            claimed = await self._redis.set(key, "1", nx=True, ex=COUNTER_TTL_SECONDS)
        except (RedisError, OSError, TimeoutError) as error:
            self.metrics.cost_redis_errors.inc()
            log.warning("budget alert raised without the cluster claim (Redis: %s)", type(error).__name__)
            claimed = True  # better twice than never
        if claimed:
            self._inner.raise_alert(alert)

    async def start(self) -> None:
        await self._inner.start()

    async def stop(self) -> None:
        for task in list(self._claims):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._inner.stop()


class SharedSpend:
    def __init__(self, *, redis_url: str, prefix: str, budgets: Budgets, costs: Callable[[], CostPolicy],
                 metrics: Metrics, sync_seconds: float) -> None:
        self._redis = aioredis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._prefix = prefix
        self._budgets = budgets
        self._costs = costs
        self._metrics = metrics
        self._sync_seconds = sync_seconds
        self._pending: dict[tuple[str, str], float] = defaultdict(float)
        self._task: asyncio.Task[None] | None = None
        self._healthy = True

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    def _key(self, center: str, period_key: str) -> str:
        return f"{self._prefix}spend:{center}:{period_key}"

    def record(self, charge: Charge) -> None:
        """Called after each charge (memory only): remembered for the next sync."""
        if charge.cost <= 0:
            return
        now = self._budgets.now()
        for period in PERIODS:
            self._pending[(charge.cost_center, period_bounds(period, now)[2])] += charge.cost

    async def start(self, seeded: Mapping[tuple[str, str], float]) -> None:
        """Seed the cluster counters with this replica's ledger totals where none exist yet, then sync."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            for (center, period_key), total in seeded.items():
                pipe.set(self._key(center, period_key), repr(total), nx=True, ex=COUNTER_TTL_SECONDS)
            await pipe.execute()
        except (RedisError, OSError, TimeoutError) as error:
            self._failed(error)
        await self.sync()
        self._task = asyncio.create_task(self._sync_forever(), name="budget-sync")

    async def _sync_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sync_seconds)
            await self.sync()

    async def sync(self) -> None:
        """Push this replica's new charges, pull the cluster totals of every budgeted cost center."""
        pending, self._pending = self._pending, defaultdict(float)
        now = self._budgets.now()
        centers = {budget.cost_center for budget in self._costs().budgets}
        wanted = [(center, period_bounds(period, now)[2]) for center in sorted(centers) for period in PERIODS]
        try:
            pipe = self._redis.pipeline(transaction=False)
            for (center, period_key), amount in pending.items():
                pipe.incrbyfloat(self._key(center, period_key), amount)
                pipe.expire(self._key(center, period_key), COUNTER_TTL_SECONDS)
            for center, period_key in wanted:
                pipe.get(self._key(center, period_key))
            results = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as error:
            for key, amount in pending.items():  # not lost: pushed at the next sync that works
                self._pending[key] += amount
            self._failed(error)
            return
        if not self._healthy:
            log.info("budget counters are shared through Redis again")
            self._healthy = True
        values = results[2 * len(pending):]
        totals = {key: float(value) + self._pending.get(key, 0.0)
                  for key, value in zip(wanted, values, strict=True) if value is not None}
        self._budgets.replace(totals)

    def _failed(self, error: Exception) -> None:
        self._metrics.cost_redis_errors.inc()
        if self._healthy:
            log.warning("budget counters are per replica until Redis answers again (%s)", type(error).__name__)
        self._healthy = False

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await self.sync()  # the last charges of this replica still count for the others
        await self._redis.aclose()


