"""Hot reload of a policy file family from the policies directory — one mechanism for the table policies,
the workload policy and the cost policy.

A changed directory (names, sizes, modification times of its *.yaml files) is loaded in full. If the new
files are invalid the previous valid version stays in force, the problems are logged with file:line once,
and `<family>_reloads_total{outcome="invalid"}` counts it; a valid new version (a new content hash) is
installed and counted as `loaded`. The first load raises instead, so the gateway refuses to start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from prometheus_client import Counter

from gateway.policy.load import PolicyError

Signature = tuple[tuple[str, int, int], ...]


class Versioned(Protocol):
    @property
    def version(self) -> str: ...


P = TypeVar("P", bound=Versioned)


def directory_signature(directory: Path) -> Signature:
    try:
        files = sorted(directory.glob("*.yaml"))
        return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    except OSError:
        return ()


class HotReloaded(Generic[P]):
    """The version of one policy family in force. `on_install` runs for every version installed (first
    load included), e.g. to reset what was derived from the previous version."""

    def __init__(self, directory: Path, *, load: Callable[[Path], P], what: str, reloads: Counter,
                 log: logging.Logger, describe: Callable[[P], str] = lambda _policy: "") -> None:
        self.directory = directory
        self._load = load
        self._what = what
        self._reloads = reloads
        self._log = log
        self._describe = describe
        self._signature: Signature = ()
        self._policy: P | None = None
        for outcome in ("loaded", "invalid"):
            reloads.labels(outcome)  # exposed as 0 from the start

    @property
    def current(self) -> P:
        if self._policy is None:
            raise RuntimeError(f"the {self._what} has not been loaded")
        return self._policy

    def load(self) -> P:
        """First load: raises PolicyError so the gateway refuses to start on invalid files."""
        signature = directory_signature(self.directory)
        if not self.directory.is_dir():
            raise PolicyError([f"{self.directory}: the policies directory does not exist"])
        self._install(self._load(self.directory), signature)
        return self.current

    def reload_if_changed(self) -> bool:
        policy = self.changed()
        if policy is None:
            return False
        self.adopt(policy)
        return True

    def changed(self) -> P | None:
        """A new valid version from a changed directory, not yet installed (`adopt` or `refuse` it), or None.
        Invalid files are reported and counted here, once per change."""
        signature = directory_signature(self.directory)
        if signature == self._signature:
            return None
        self._signature = signature  # an invalid version is reported once, not on every check
        try:
            policy = self._load(self.directory)
        except PolicyError as error:
            self._reloads.labels("invalid").inc()
            self._log.error("%s changed but is invalid; keeping version %s:\n%s", self._what,
                            self.current.version[:12], "\n".join(error.errors))
            return None
        if policy.version == self.current.version:
            return None
        return policy

    def adopt(self, policy: P) -> None:
        self._install(policy, self._signature)
        self._reloads.labels("loaded").inc()
        detail = self._describe(policy)
        self._log.info("%s reloaded: version %s%s", self._what, policy.version[:12], f", {detail}" if detail else "")

    def refuse(self, why: str, problems: Sequence[str]) -> None:
        """Keep the version in force although the new one loads (a check of the caller's failed); the refusal
        counts as `invalid`, like invalid files, and is logged once."""
        self._reloads.labels("invalid").inc()
        self._log.error("%s changed but is refused (%s); keeping version %s:\n%s", self._what, why,
                        self.current.version[:12], "\n".join(problems))

    def _install(self, policy: P, signature: Signature) -> None:
        self._policy = policy
        self._signature = signature
        self.on_install(policy)

    def on_install(self, policy: P) -> None:
        """Subclasses: react to a new version."""
