"""The workload policy in force, hot-reloaded from the policies directory like the table policies
(`gateway.policy.store`): a changed, invalid file is logged with file:line and counted
(`gateway_workload_reloads_total{outcome="invalid"}`), and the last valid version stays in force. Queries
keep the group and limits they were admitted with; new queries see the new version."""

from __future__ import annotations

import logging
from pathlib import Path

from gateway.metrics import Metrics
from gateway.policy.load import PolicyError
from gateway.policy.store import Signature, directory_signature
from gateway.workload.load import load_workload
from gateway.workload.model import WorkloadPolicy

log = logging.getLogger("gateway.workload")


class WorkloadStore:
    def __init__(self, directory: Path, metrics: Metrics) -> None:
        self.directory = directory
        self._metrics = metrics
        self._signature: Signature = ()
        self._policy: WorkloadPolicy | None = None
        for outcome in ("loaded", "invalid"):
            metrics.workload_reloads.labels(outcome)

    @property
    def current(self) -> WorkloadPolicy:
        if self._policy is None:
            raise RuntimeError("the workload policy has not been loaded")
        return self._policy

    def load(self) -> WorkloadPolicy:
        """First load: raises PolicyError so the gateway refuses to start on an invalid workload file."""
        signature = directory_signature(self.directory)
        self._install(load_workload(self.directory), signature)
        return self.current

    def reload_if_changed(self) -> bool:
        signature = directory_signature(self.directory)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            policy = load_workload(self.directory)
        except PolicyError as error:
            self._metrics.workload_reloads.labels("invalid").inc()
            log.error("workload policy changed but is invalid; keeping version %s:\n%s",
                      self.current.version[:12], "\n".join(error.errors))
            return False
        if policy.version == self.current.version:
            return False
        self._install(policy, signature)
        self._metrics.workload_reloads.labels("loaded").inc()
        log.info("workload policy reloaded: version %s, groups %s", policy.version[:12],
                 ", ".join(g.name for g in policy.groups))
        return True

    def _install(self, policy: WorkloadPolicy, signature: Signature) -> None:
        self._policy = policy
        self._signature = signature
        for group in policy.groups:  # every group's gauges are exposed, at 0, from the start
            self._metrics.workload_queued.labels(group.name)
            self._metrics.workload_running.labels(group.name)
