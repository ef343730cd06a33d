"""The canaries of the policy in force: run at start, before a changed policy is installed (a version whose
canaries fail is refused, like an invalid one, and the old version stays), and every
`policies.canary_interval_seconds`. Readiness follows the latest run of the version in force: while it failed,
`/health/ready` answers 503 with the failures, so a load balancer sends no client to rules that do not hold.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway.planner import PolicyContext
from gateway.policy.load import PolicyError
from gateway.policy.store import PolicyStore
from gateway.policy_changes.canaries import CanarySet, load_canaries
from gateway.policy_changes.canary_run import CanaryReport, CanaryRunner
from gateway.sql.rewrite import SecureViews

log = logging.getLogger("gateway.canary")


class PolicyCanaries:
    def __init__(self, *, store: PolicyStore, runner: CanaryRunner, interval_seconds: float) -> None:
        self.store = store
        self.runner = runner
        self.interval_seconds = interval_seconds
        self.canaries: CanarySet = load_canaries(store.directory)  # invalid: PolicyError, the gateway won't start
        self.latest: CanaryReport | None = None
        self.refused: CanaryReport | None = None  # the last version refused for its canaries

    async def check_current(self, trigger: str) -> CanaryReport:
        policy = PolicyContext(self.store.current, self.store.views)
        self.latest = await self.runner.run(self.canaries, policy, trigger=trigger)
        return self.latest

    async def reload_if_changed(self) -> bool:
        """Install a changed policy only if its canaries (from the same directory) pass."""
        candidate = self.store.changed()
        if candidate is None:
            return False
        try:
            canaries = load_canaries(self.store.directory)
        except PolicyError as error:
            self.store.refuse("its canaries file is invalid", error.errors)
            return False
        report = await self.runner.run(canaries, PolicyContext(candidate, SecureViews()), trigger="reload")
        if not report.passed:
            self.refused = report
            self.store.refuse(f"{len(report.failures)} policy canaries fail under version {candidate.version[:12]}",
                              [f"canary {r.name!r}: {r.detail}" for r in report.failures])
            return False
        self.store.adopt(candidate)
        self.canaries, self.latest = canaries, report
        return True

    async def run_forever(self) -> None:
        if self.interval_seconds <= 0:
            return
        while True:
            await asyncio.sleep(self.interval_seconds)
            await self.check_current("schedule")

    def status(self) -> tuple[bool, dict[str, Any]]:
        """(ready, detail) for /health/ready."""
        latest = self.latest
        if latest is None:
            return False, {"status": "not run yet"}
        detail = latest.detail()
        if self.refused is not None and self.refused.finished_at >= latest.finished_at:
            detail["refused_reload"] = self.refused.detail()
        return latest.passed, detail
