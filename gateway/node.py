"""This gateway process as a Trino node: what `/v1/info`, `/v1/status`, `/v1/node` and `system.runtime.nodes`
report. Each process is its own coordinator node; its id is stable for the process's lifetime."""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class NodeInfo:
    version: str
    environment: str
    uri: str  # how clients reach this node (server.host and server.port)
    node_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    started: float = field(default_factory=time.monotonic)

    @property
    def uptime_seconds(self) -> float:
        return time.monotonic() - self.started


def duration_text(seconds: float) -> str:
    """Trino's Duration.toString() shape: 1.50s, 2.00m, 3.00h, 1.00d."""
    if seconds < 60:
        return f"{seconds:.2f}s"
    if seconds < 3600:
        return f"{seconds / 60:.2f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.2f}h"
    return f"{seconds / 86400:.2f}d"
