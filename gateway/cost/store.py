"""The cost policy in force (`policies/cost.yaml`), hot-reloaded like the table policies (see
`gateway.policy.reload`)."""

from __future__ import annotations

import logging
from pathlib import Path

from gateway.cost.load import load_costs
from gateway.cost.model import CostPolicy
from gateway.metrics import Metrics
from gateway.policy.reload import HotReloaded

log = logging.getLogger("gateway.cost")


class CostStore(HotReloaded[CostPolicy]):
    def __init__(self, directory: Path, metrics: Metrics) -> None:
        super().__init__(directory, load=load_costs, what="cost policy", reloads=metrics.cost_reloads, log=log,
                         describe=lambda p: f"{len(p.budgets)} budgets")
