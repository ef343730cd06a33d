"""The table policies in force (`policies/*.yaml`), hot-reloaded (see `gateway.policy.reload`). Each version
carries its content hash, which every decision is stamped with; a new version starts with fresh secure views,
since views are built from the rules."""

from __future__ import annotations

import logging
from pathlib import Path

from gateway.metrics import Metrics
from gateway.policy.load import load_policies
from gateway.policy.model import PolicySet
from gateway.policy.reload import HotReloaded, Signature, directory_signature
from gateway.sql.rewrite import SecureViews

log = logging.getLogger("gateway.policy")

__all__ = ["PolicyStore", "Signature", "directory_signature"]


class PolicyStore(HotReloaded[PolicySet]):
    def __init__(self, directory: Path, metrics: Metrics) -> None:
        self.views = SecureViews()
        self._metrics = metrics
        super().__init__(directory, load=load_policies, what="policy files", reloads=metrics.policy_reloads, log=log)

    def on_install(self, policy: PolicySet) -> None:
        self.views = SecureViews()
        self._metrics.policy_version.info({"version": policy.version})
