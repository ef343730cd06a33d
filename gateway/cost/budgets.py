"""Budgets per cost center: spend counters per period, the workload `BudgetHook`, and alerts on crossings.

    add(charge)        after each charge (event loop, memory only): count it; raise the alerts it causes
    decide(identity)   at admission (memory only): over 100% of a budget with action block -> Block,
                       throttle -> Demote to `throttle_to`; otherwise Admit. Block wins over throttle.
    seed(...)          at start: the spend of the current day and month from the ledger (or Redis)

Periods are UTC calendar days and months. Each threshold alerts once per budget and period; the forecast
(spend so far / elapsed share of the period) alerts once per period when it exceeds the amount while the
spend does not yet, evaluated once at least `FORECAST_MIN_ELAPSED` of the period has passed (a first query
a minute into the month would otherwise project an absurd month). Counters are per process (seeded from
the shared ledger at start); `replace` is the entry point for cluster-wide totals (not wired yet).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from gateway.cost.alerts import Alert, AlertSink
from gateway.cost.meter import consumer_cost_center
from gateway.cost.model import Budget, Charge, CostPolicy
from gateway.identity import Identity
from gateway.metrics import Metrics
from gateway.workload.budget import Admit, Block, BudgetDecision, Demote
from gateway.workload.model import ResourceGroup

FORECAST_MIN_ELAPSED = 0.1


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime, str]:
    """(start, end, key) of the UTC day or month holding `now`."""
    if period == "daily":
        start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1), start.strftime("%Y-%m-%d")
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end, start.strftime("%Y-%m")


class Budgets:
    def __init__(self, *, costs: Callable[[], CostPolicy], alerts: AlertSink, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self._costs = costs
        self.alerts = alerts
        self.metrics = metrics
        self._clock = clock
        self._spend: dict[tuple[str, str], float] = {}  # (cost center, period key) -> spend
        self._fired: set[tuple[str, str, str]] = set()  # (budget, period key, threshold | forecast)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # -- counters --------------------------------------------------------------------------------------------

    def spent(self, cost_center: str, period: str, now: datetime | None = None) -> float:
        _, _, key = period_bounds(period, now or self.now())
        return self._spend.get((cost_center, key), 0.0)

    def seed(self, *, daily: Mapping[str, float], monthly: Mapping[str, float]) -> None:
        """Counters from the ledger at start; thresholds already crossed then are not alerted again."""
        now = self.now()
        for period, totals in (("daily", daily), ("monthly", monthly)):
            _, _, key = period_bounds(period, now)
            for center, total in totals.items():
                self._spend[(center, key)] = total
        policy = self._costs()
        for budget in policy.budgets:
            self._check(budget, now, alert=False)

    def replace(self, totals: Mapping[tuple[str, str], float]) -> None:
        """Cluster-wide totals (cost center, period key) -> spend, from Redis; then alert on what they cross."""
        self._spend.update(totals)
        now = self.now()
        for budget in self._costs().budgets:
            self._check(budget, now, alert=True)

    def add(self, charge: Charge) -> None:
        if charge.cost <= 0:
            return
        self.metrics.cost_charged.labels(charge.cost_center).inc(charge.cost)
        now = self.now()
        keys = {period_bounds(p, now)[2] for p in ("daily", "monthly")}
        for key in keys:
            self._spend[(charge.cost_center, key)] = self._spend.get((charge.cost_center, key), 0.0) + charge.cost
        for budget in self._costs().budgets_for(charge.cost_center):
            self._check(budget, now, alert=True)

    def _check(self, budget: Budget, now: datetime, *, alert: bool) -> None:
        start, end, key = period_bounds(budget.period, now)
        spent = self._spend.get((budget.cost_center, key), 0.0)
        self.metrics.cost_budget_used.labels(budget.cost_center, budget.period).set(spent / budget.amount)
        for threshold in budget.thresholds:
            mark = (budget.name, key, f"{threshold:g}")
            if spent >= budget.amount * threshold and mark not in self._fired:
                self._fired.add(mark)
                if alert:
                    self.alerts.raise_alert(Alert(kind="threshold", budget=budget.name, cost_center=budget.cost_center,
                                                  period=budget.period, period_start=key, amount=budget.amount,
                                                  spent=spent, threshold=threshold, action=budget.action,
                                                  location=budget.location))
        elapsed = (now - start) / (end - start)
        mark = (budget.name, key, "forecast")
        if budget.forecast and elapsed >= FORECAST_MIN_ELAPSED and spent < budget.amount and mark not in self._fired:
            projected = spent / elapsed
            if projected > budget.amount:
                self._fired.add(mark)
                if alert:
                    self.alerts.raise_alert(Alert(kind="forecast", budget=budget.name, cost_center=budget.cost_center,
                                                  period=budget.period, period_start=key, amount=budget.amount,
                                                  spent=spent, projected=projected, action=budget.action,
                                                  location=budget.location))

    # -- the workload seam -----------------------------------------------------------------------------------

    def decide(self, identity: Identity, group: ResourceGroup) -> BudgetDecision:
        policy = self._costs()
        center = consumer_cost_center(identity, policy)
        now = self.now()
        throttle: Demote | None = None
        for budget in policy.budgets_for(center):
            spent = self.spent(center, budget.period, now)
            if spent < budget.amount:
                continue
            if budget.action == "block":
                self.metrics.cost_budget_actions.labels(center, "block").inc()
                return Block(_block_message(budget, spent))
            if budget.action == "throttle" and budget.throttle_to is not None and group.name != budget.throttle_to:
                throttle = throttle or Demote(budget.throttle_to, f"cost center {center} is over its {budget.period} "
                                                                  f"budget ({spent:.4f} of {budget.amount:.4f})")
        if throttle is not None:
            self.metrics.cost_budget_actions.labels(center, "throttle").inc()
            return throttle
        return Admit()


def _block_message(budget: Budget, spent: float) -> str:
    who = f" or ask {budget.contact}" if budget.contact else ""
    return (f"Query rejected: cost center {budget.cost_center} has used {spent:.4f} of its {budget.period} budget "
            f"of {budget.amount:.4f} (budget {budget.name} at {budget.location}, action: block). To raise it, "
            f"increase its amount in policies/cost.yaml{who}; it resets at the start of the next "
            f"{'day' if budget.period == 'daily' else 'month'} (UTC).")
