"""The workload policy in force (`policies/workload.yaml`), hot-reloaded like the table policies (see
`gateway.policy.reload`). Queries keep the group and limits they were admitted with; new queries see the new
version."""

from __future__ import annotations

import logging
from pathlib import Path

from gateway.metrics import Metrics
from gateway.policy.reload import HotReloaded
from gateway.workload.load import load_workload
from gateway.workload.model import WorkloadPolicy

log = logging.getLogger("gateway.workload")


class WorkloadStore(HotReloaded[WorkloadPolicy]):
    def __init__(self, directory: Path, metrics: Metrics) -> None:
        self._metrics = metrics
        super().__init__(directory, load=load_workload, what="workload policy", reloads=metrics.workload_reloads,
                         log=log, describe=lambda p: "groups " + ", ".join(g.name for g in p.groups))

    def on_install(self, policy: WorkloadPolicy) -> None:
        for group in policy.groups:  # every group's gauges are exposed, at 0, from the start
            self._metrics.workload_queued.labels(group.name)
            self._metrics.workload_running.labels(group.name)
