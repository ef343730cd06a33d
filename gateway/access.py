"""The one door to authorization: every entry point asks here whether an identity may do a thing.

The Trino endpoint, the PostgreSQL-wire endpoint and the JSON admin APIs all reach the same rules through
this object, so no entry point grows a check of its own that drifts from the others. Reading a table is
decided by the policy files (`gateway.policy.decide`); the operational rights (seeing and killing other
users' queries, purging the cache, reading chargeback) by the groups the configuration names. Just-in-time
access requests are decided here too: who may ask for what, who may approve, deny, revoke and see them
(approvers named in policy; the access admin and auditor groups of the configuration). No I/O: the current
policy set and each identity's active grants are read from whatever keeps them up to date.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from gateway.errors import NotFound, PermissionDenied, UserError
from gateway.identity import Identity
from gateway.policy.decide import (
    TableDecision,
    approvers_for,
    decide_impersonation,
    decide_table,
    equally_specific,
    is_approver,
    when_matches,
)
from gateway.policy.model import Approvers, PolicySet, TableGrant

Grants = Callable[[Identity], tuple[TableGrant, ...]]


def no_grants(identity: Identity) -> tuple[TableGrant, ...]:
    return ()


@dataclass(frozen=True, kw_only=True)
class OperatorGroups:
    """Who holds each operational right (configuration: workload.admin_groups, cache.admin_groups,
    cost.finance_groups, access_requests.admin_groups and auditor_groups)."""

    workload: frozenset[str] = frozenset()
    cache: frozenset[str] = frozenset()
    finance: frozenset[str] = frozenset()
    access_admin: frozenset[str] = frozenset()  # see and revoke every access request
    access_auditor: frozenset[str] = frozenset()  # see every access request

    @classmethod
    def of(cls, *, workload: Collection[str] = (), cache: Collection[str] = (),
           finance: Collection[str] = (), access_admin: Collection[str] = (),
           access_auditor: Collection[str] = ()) -> OperatorGroups:
        return cls(workload=frozenset(workload), cache=frozenset(cache), finance=frozenset(finance),
                   access_admin=frozenset(access_admin), access_auditor=frozenset(access_auditor))


class Access:
    def __init__(self, *, policy: Callable[[], PolicySet], groups: OperatorGroups, grants: Grants = no_grants) -> None:
        self._policy = policy
        self.groups = groups
        self.grants = grants  # the identity's approved, unexpired just-in-time grants, as of now

    # -- data ------------------------------------------------------------------------------------------------

    def table(self, identity: Identity, table: str, source: str | None) -> TableDecision:
        """The policy's decision for reading `table` (catalog.schema.table), with the identity's grants."""
        return decide_table(self._policy(), table, identity, source, self.grants(identity))

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

    # -- just-in-time access requests --------------------------------------------------------------------------

    def approvers(self, table: str) -> Approvers | None:
        entries = equally_specific(self._policy(), table)
        return approvers_for(self._policy(), entries[0]) if len(entries) == 1 else None

    def check_request(self, identity: Identity, table: str, columns: tuple[str, ...]) -> Approvers:
        """Whether `identity` may ask for a grant on `table` (catalog.schema.table) unmasking `columns`: the
        table's policy entry names approvers, no explicit rule denies the identity, and the grant would widen
        something. Returns the approvers; raises a clear error otherwise."""
        policy = self._policy()
        entries = equally_specific(policy, table)
        if len(entries) != 1:
            raise NotFound(f"No policy entry governs table {table}, so access to it cannot be requested",
                           error_name="TABLE_NOT_FOUND")
        entry = entries[0]
        approvers = approvers_for(policy, entry)
        if approvers is None:
            raise PermissionDenied(f"Access to {table} cannot be requested: its policy entry ({entry.location}) "
                                   "names no approvers")
        rule = next((r for r in entry.access if when_matches(r.when, identity, None)), None)
        if rule is not None and not rule.allow:
            raise PermissionDenied(f"Access to {table} cannot be requested: the access rule at {rule.location} "
                                   "denies it explicitly")
        decision = decide_table(policy, table, identity, None)
        masked = {m.column for m in decision.masks} if decision.allowed else {
            m.column for m in decide_table(policy, table, identity, None,
                                           (TableGrant("check", table, frozenset(), float("inf")),)).masks}
        unknown = sorted(set(columns) - masked)
        if unknown:
            raise UserError(f"Column(s) {', '.join(unknown)} of {table} are not masked for {identity.user}"
                            + (f"; masked: {', '.join(sorted(masked))}" if masked else ""),
                            error_name="INVALID_FUNCTION_ARGUMENT")
        if decision.allowed and not columns:
            raise UserError(f"{identity.user} may already read {table}; name the masked columns to unmask"
                            + (f" ({', '.join(sorted(masked))})" if masked else ""),
                            error_name="INVALID_FUNCTION_ARGUMENT")
        return approvers

    def may_decide_request(self, identity: Identity, requester: str, table: str) -> bool:
        """Approve or deny: an approver the table's policy names, never the requester themself (not even
        through impersonation)."""
        if requester in (identity.user, identity.principal):
            return False
        return is_approver(self.approvers(table), identity)

    def may_revoke_request(self, identity: Identity, requester: str, table: str) -> bool:
        """Revoke early: the requester (giving it up), an approver of the table, or an access admin."""
        return (identity.user == requester and identity.principal is None) or self.is_access_admin(identity) \
            or is_approver(self.approvers(table), identity)

    def may_see_request(self, identity: Identity, requester: str, table: str) -> bool:
        """The requester sees their own, approvers the ones they may decide, auditors and admins all."""
        return identity.user == requester or self.is_access_auditor(identity) \
            or is_approver(self.approvers(table), identity)

    def is_access_admin(self, identity: Identity) -> bool:
        return bool(identity.groups & self.groups.access_admin)

    def is_access_auditor(self, identity: Identity) -> bool:
        return bool(identity.groups & (self.groups.access_auditor | self.groups.access_admin))
