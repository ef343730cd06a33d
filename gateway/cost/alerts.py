"""Budget alerts: a log line and a metric at once, and a JSON POST to the webhook (if configured) from a
background task, retried with exponential backoff. Raising an alert never waits and never fails a query:
when the delivery queue is full the alert is logged, counted (`outcome="dropped"`) and not posted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass

from gateway.metrics import Metrics

log = logging.getLogger("gateway.cost")

QUEUE_LIMIT = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    kind: str  # threshold | forecast
    budget: str  # cost_center/period
    cost_center: str
    period: str  # daily | monthly
    period_start: str  # the day or month: 2026-11-05 / 2026-11
    amount: float
    spent: float
    threshold: float | None = None  # the fraction crossed (kind threshold)
    projected: float | None = None  # the period's projected spend (kind forecast)
    action: str = "alert"
    location: str = ""  # where the budget is defined

    def describe(self) -> str:
        if self.kind == "forecast":
            return (f"{self.period} budget {self.budget} is forecast to reach {self.projected:.4f} of "
                    f"{self.amount:.4f} by the end of {self.period_start} (spent {self.spent:.4f} so far)")
        return (f"{self.period} budget {self.budget} crossed {self.threshold or 0:.0%}: spent {self.spent:.4f} of "
                f"{self.amount:.4f} in {self.period_start} (action at 100%: {self.action})")


class AlertSink:
    def __init__(self, *, metrics: Metrics, webhook_url: str | None, timeout_seconds: float = 5.0,
                 max_attempts: int = 6, backoff_seconds: float = 0.5) -> None:
        self.metrics = metrics
        self.webhook_url = webhook_url
        self.timeout_seconds = timeout_seconds
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self._queue: asyncio.Queue[Alert] | None = None
        self._task: asyncio.Task[None] | None = None

    def raise_alert(self, alert: Alert) -> None:
        log.warning("budget alert: %s", alert.describe(), extra={"alert": asdict(alert)})
        self.metrics.cost_budget_alerts.labels(alert.cost_center, alert.period, alert.kind).inc()
        if self.webhook_url is None or self._queue is None:
            return
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            log.error("budget alert webhook queue is full; alert not posted: %s", alert.describe())
            self.metrics.cost_webhook_deliveries.labels("dropped").inc()

    async def start(self) -> None:
        if self.webhook_url is not None:
            self._queue = asyncio.Queue(QUEUE_LIMIT)
            self._task = asyncio.create_task(self._deliver_forever(), name="budget-alert-webhook")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _deliver_forever(self) -> None:
        assert self._queue is not None
        while True:
            alert = await self._queue.get()
            await self.deliver(alert)

    async def deliver(self, alert: Alert) -> bool:
        """POST the alert; retry failures (connection errors, non-2xx) with exponential backoff."""
        assert self.webhook_url is not None
        body = json.dumps({"type": "budget_alert", "message": alert.describe(), **asdict(alert)}).encode()
        delay = self.backoff_seconds
        for attempt in range(1, self.max_attempts + 1):
            try:
                await asyncio.to_thread(_post, self.webhook_url, body, self.timeout_seconds)
                self.metrics.cost_webhook_deliveries.labels("delivered").inc()
                return True
            except (OSError, urllib.error.URLError) as error:
                self.metrics.cost_webhook_deliveries.labels("retried").inc()
                log.warning("budget alert webhook failed (attempt %d of %d): %s", attempt, self.max_attempts, error)
            if attempt < self.max_attempts:
                await asyncio.sleep(delay)
                delay *= 2
        self.metrics.cost_webhook_deliveries.labels("failed").inc()
        log.error("budget alert not delivered to the webhook after %d attempts: %s", self.max_attempts,
                  alert.describe())
        return False


def _post(url: str, body: bytes, timeout: float) -> None:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "query-gateway"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if not 200 <= response.status < 300:
            raise OSError(f"webhook answered HTTP {response.status}")
