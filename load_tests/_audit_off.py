"""`gateway serve` with the audit trail short-circuited, for the on-vs-off latency comparison only.

The product has no switch to turn auditing off (every attempt is audited); this launcher replaces
`AuditTrail.append` with a no-op in the benchmark's own subprocess, so the difference measured is exactly
what auditing adds on the query path.
"""

from __future__ import annotations

import sys

from gateway.audit.record import AuditRecord
from gateway.audit.trail import AuditTrail
from gateway.cli import main
from gateway.cost.model import Charge


def _skip(self: AuditTrail, record: AuditRecord, charge: Charge | None = None) -> None:
    return None


if __name__ == "__main__":
    AuditTrail.append = _skip  # type: ignore[method-assign]
    raise SystemExit(main(sys.argv[1:]))
