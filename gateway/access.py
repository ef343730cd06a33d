"""The one door to authorization: every entry point asks here whether an identity may do a thing.

The Trino endpoint, the PostgreSQL-wire endpoint and the JSON admin APIs all reach the same rules through
this object, so no entry point grows a check of its own that drifts from the others. Reading a table is
decided by the policy files (`gateway.policy.decide`); the operational rights (seeing and killing other
users' queries, purging the cache, reading chargeback) by the groups the configuration names. No I/O: the
current policy set is read from whatever keeps it up to date.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from gateway.errors import PermissionDenied
from gateway.identity import Identity
from gateway.policy.decide import TableDecision, decide_impersonation, decide_table
from gateway.policy.model import PolicySet


@dataclass(frozen=True, kw_only=True)
class OperatorGroups:
    """Who holds each operational right (configuration: workload.admin_groups, cache.admin_groups,
    cost.finance_groups)."""

    workload: frozenset[str] = frozenset()
    cache: frozenset[str] = frozenset()
    finance: frozenset[str] = frozenset()

    @classmethod
    def of(cls, *, workload: Collection[str] = (), cache: Collection[str] = (),
           finance: Collection[str] = ()) -> OperatorGroups:
        return cls(workload=frozenset(workload), cache=frozenset(cache), finance=frozenset(finance))


class Access:
    def __init__(self, *, policy: Callable[[], PolicySet], groups: OperatorGroups) -> None:
        self._policy = policy
        self.groups = groups

    # -- data ------------------------------------------------------------------------------------------------

    def table(self, identity: Identity, table: str, source: str | None) -> TableDecision:
        """The policy's decision for reading `table` (catalog.schema.table)."""
        return decide_table(self._policy(), table, identity, source)

    def require_table(self, identity: Identity, table: str, source: str | None) -> None:
        if not self.table(identity, table, source).allowed:
            raise PermissionDenied(f"Access Denied: Cannot select from table {table}")

    def may_act_as(self, principal: Identity, user: str, source: str | None) -> bool:
        """Whether `principal` may run statements as `user` (the session user): the `impersonation:` rules."""
        allowed, _reason = decide_impersonation(self._policy(), principal, user, source)
        return allowed

    # -- operations ------------------------------------------------------------------------------------------

    def is_workload_admin(self, identity: Identity) -> bool:
        return bool(identity.groups & self.groups.workload)

    def may_manage_query(self, identity: Identity, owner: str) -> bool:
        """See a query's details, page it, cancel or kill it: its owner, or a workload admin."""
        return identity.user == owner or self.is_workload_admin(identity)

    def require_cache_admin(self, identity: Identity) -> None:
        if not identity.groups & self.groups.cache:
            raise PermissionDenied("Access Denied: purging the cache needs one of the groups "
                                   + ", ".join(sorted(self.groups.cache)))

    def require_finance(self, identity: Identity, what: str) -> None:
        if not identity.groups & self.groups.finance:
            raise PermissionDenied(f"Access Denied: {what} is for the groups {', '.join(sorted(self.groups.finance))} "
                                   "(cost.finance_groups)")

