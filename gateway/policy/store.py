"""The current policy set, hot-reloaded from the policies directory.

A changed directory (names, sizes, modification times of its *.yaml files) is loaded in full; if the new
files are invalid the previous valid version stays in force, the problems are logged with file:line, and
`gateway_policy_reloads_total{outcome="invalid"}` counts it. Each version carries its content hash, which
every decision is stamped with.
"""

from __future__ import annotations

import logging
from pathlib import Path

from gateway.metrics import Metrics
from gateway.policy.load import PolicyError, load_policies
from gateway.policy.model import PolicySet
from gateway.sql.rewrite import SecureViews

log = logging.getLogger("gateway.policy")

Signature = tuple[tuple[str, int, int], ...]


def directory_signature(directory: Path) -> Signature:
    try:
        files = sorted(directory.glob("*.yaml"))
        return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    except OSError:
        return ()


class PolicyStore:
    def __init__(self, directory: Path, metrics: Metrics) -> None:
        self.directory = directory
        self._metrics = metrics
        self._signature: Signature = ()
        self._policy: PolicySet | None = None
        self.views = SecureViews()
        for outcome in ("loaded", "invalid"):
            metrics.policy_reloads.labels(outcome)  # exposed as 0 from the start

    @property
    def current(self) -> PolicySet:
        if self._policy is None:
            raise RuntimeError("policies have not been loaded")
        return self._policy

    def load(self) -> PolicySet:
        """First load: raises PolicyError so the gateway refuses to start on invalid policies."""
        signature = directory_signature(self.directory)
        if not self.directory.is_dir():
            raise PolicyError([f"{self.directory}: the policies directory does not exist"])
        policy = load_policies(self.directory)
        self._install(policy, signature)
        return policy

    def reload_if_changed(self) -> bool:
        signature = directory_signature(self.directory)
        if signature == self._signature:
            return False
        self._signature = signature  # an invalid version is reported once, not on every check
        try:
            policy = load_policies(self.directory)
        except PolicyError as error:
            self._metrics.policy_reloads.labels("invalid").inc()
            log.error("policy files changed but are invalid; keeping version %s:\n%s",
                      self.current.version[:12], "\n".join(error.errors))
            return False
        if policy.version == self.current.version:
            return False
        self._install(policy, signature)
        self._metrics.policy_reloads.labels("loaded").inc()
        log.info("policies reloaded: version %s", policy.version[:12])
        return True

    def _install(self, policy: PolicySet, signature: Signature) -> None:
        self._policy = policy
        self._signature = signature
        self.views = SecureViews()  # views are built from rules; a new version builds its own
        self._metrics.policy_version.info({"version": policy.version})
