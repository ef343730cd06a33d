"""`access_requests:` — just-in-time access: how fresh every replica's view of grants is, the longest grant
any policy may allow, and who sees and revokes every request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.config_reader import Check, Reader, positive, read_section


@dataclass(frozen=True, kw_only=True)
class AccessRequestSettings:
    """Just-in-time access (gateway/grants/). Approvers and each table's longest grant are in policy files."""

    enabled: bool = True
    poll_seconds: float = 2.0  # how often each replica reads new grants and revocations from the audit store
    max_duration_seconds: int = 7 * 86400  # hard cap on any grant, whatever a policy's max_duration says
    max_reason_chars: int = 2000
    max_pending_per_user: int = 20  # open requests one user may have at once
    admin_groups: tuple[str, ...] = ("admins",)  # see and revoke every request
    auditor_groups: tuple[str, ...] = ("auditors",)  # see every request

    CHECKS: ClassVar[Mapping[str, Check]] = {"poll_seconds": positive, "max_duration_seconds": positive,
                                             "max_reason_chars": positive, "max_pending_per_user": positive}


def read_access_requests(r: Reader, data: Mapping[str, Any]) -> AccessRequestSettings:
    return read_section(r, data, ("access_requests",), AccessRequestSettings)
