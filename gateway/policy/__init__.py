"""Policies: who may read which tables, which rows, and which columns are masked.

`model` holds the typed, immutable policy; `load` builds it from `policies/*.yaml` with file:line errors;
`decide` answers, for one caller and one table, what they get. Nothing here does I/O except `load`.
"""

from gateway.policy.decide import ColumnMask, TableDecision, decide_impersonation, decide_table, when_matches
from gateway.policy.load import PolicyError, load_dev_users, load_policies, parse_policies
from gateway.policy.model import PolicySet

__all__ = [
    "ColumnMask",
    "PolicyError",
    "PolicySet",
    "TableDecision",
    "decide_impersonation",
    "decide_table",
    "load_dev_users",
    "load_policies",
    "parse_policies",
    "when_matches",
]
