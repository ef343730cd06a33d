"""The cost policy in force, hot-reloaded from the policies directory like the workload policy: a changed,
invalid file is logged with file:line and counted (`gateway_cost_reloads_total{outcome="invalid"}`), and the
last valid version stays in force."""

from __future__ import annotations

import logging
from pathlib import Path

from gateway.cost.load import load_costs
from gateway.cost.model import CostPolicy
from gateway.metrics import Metrics
from gateway.policy.load import PolicyError
from gateway.policy.store import Signature, directory_signature

log = logging.getLogger("gateway.cost")


class CostStore:
    def __init__(self, directory: Path, metrics: Metrics) -> None:
        self.directory = directory
        self._metrics = metrics
        self._signature: Signature = ()
        self._policy: CostPolicy | None = None
        for outcome in ("loaded", "invalid"):
            metrics.cost_reloads.labels(outcome)

    @property
    def current(self) -> CostPolicy:
        if self._policy is None:
            raise RuntimeError("the cost policy has not been loaded")
        return self._policy

    def load(self) -> CostPolicy:
        """First load: raises PolicyError so the gateway refuses to start on an invalid cost file."""
        signature = directory_signature(self.directory)
        self._policy, self._signature = load_costs(self.directory), signature
        return self._policy

    def reload_if_changed(self) -> bool:
        signature = directory_signature(self.directory)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            policy = load_costs(self.directory)
        except PolicyError as error:
            self._metrics.cost_reloads.labels("invalid").inc()
            log.error("cost policy changed but is invalid; keeping version %s:\n%s",
                      self.current.version[:12], "\n".join(error.errors))
            return False
        if policy.version == self.current.version:
            return False
        self._policy = policy
        self._metrics.cost_reloads.labels("loaded").inc()
        log.info("cost policy reloaded: version %s, %d budgets", policy.version[:12], len(policy.budgets))
        return True
