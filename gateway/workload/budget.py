"""The seam where the cost capability (budgets per cost center, `policies/cost.yaml`) steers admission.

Called once per query after its resource group is selected and before it queues. The gateway ships no
implementation: without a hook every query keeps its group. A cost module implements `BudgetHook` and is
passed to `WorkloadManager(budget=...)` in `app.py`; its decision is applied as follows:

    Admit()              keep the selected group
    Demote(group, why)   move the query to `group` (a resource group name; an unknown name rejects the
                         query: fail closed), e.g. budget `action: throttle`
    Block(why)           reject the query with QUERY_REJECTED and `why` as the message (`action: block`)

The hook must be fast and must not do I/O on the query path (read a ledger snapshot it keeps current).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.identity import Identity
from gateway.workload.model import ResourceGroup


@dataclass(frozen=True, slots=True)
class Admit:
    pass


@dataclass(frozen=True, slots=True)
class Demote:
    group: str
    reason: str


@dataclass(frozen=True, slots=True)
class Block:
    reason: str


BudgetDecision = Admit | Demote | Block


class BudgetHook(Protocol):
    def decide(self, identity: Identity, group: ResourceGroup) -> BudgetDecision: ...
