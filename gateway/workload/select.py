"""Which resource group a query belongs to: the first group with a matching selector (Trino's rule)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.workload.model import ResourceGroup, Selector, WorkloadPolicy


@dataclass(frozen=True, slots=True)
class QueryFacts:
    """What selectors look at."""

    user: str
    groups: frozenset[str]
    source: str | None
    client_tags: frozenset[str]
    query_type: str


def select_group(policy: WorkloadPolicy, facts: QueryFacts) -> ResourceGroup | None:
    """The first group (in file order) one of whose selectors matches; None when no selector does."""
    for group in policy.groups:
        if any(matches(selector, facts) for selector in group.selectors):
            return group
    return None


def matches(selector: Selector, facts: QueryFacts) -> bool:
    if selector.users is not None and facts.user not in selector.users:
        return False
    if selector.groups is not None and not selector.groups & facts.groups:
        return False
    if selector.source is not None and (facts.source is None or not selector.source.fullmatch(facts.source)):
        return False
    if not selector.client_tags <= facts.client_tags:
        return False
    return selector.query_types is None or facts.query_type in selector.query_types
