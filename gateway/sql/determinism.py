"""Whether a statement gives the same answer on every run: what the result cache may keep.

A property of the SQL alone (volatile functions such as now(), random(), uuid()), so it is decided here,
beside the rest of the statement analysis, and the cache only reads the answer off the plan.
"""

from __future__ import annotations

from sqlglot import exp

# Functions whose answer changes from one execution to the next (or with the session, where the gateway does
# not turn them into literals before the key is made).
_VOLATILE: tuple[type[exp.Expr], ...] = tuple(
    getattr(exp, name) for name in ("CurrentTimestamp", "CurrentDate", "CurrentTime", "CurrentDatetime", "Rand",
                                    "Randn", "Uuid", "CurrentTimestampLTZ", "Localtimestamp", "Localtime")
    if hasattr(exp, name)
)
_VOLATILE_NAMES = frozenset({
    "now", "current_timestamp", "current_date", "current_time", "localtime", "localtimestamp", "random", "rand",
    "uuid", "gen_random_uuid", "shuffle", "random_string", "setseed", "nextval", "currval", "get_current_time",
    "transaction_timestamp", "statement_timestamp", "clock_timestamp", "timeofday", "today",
})


def is_deterministic(tree: exp.Expr) -> bool:
    """False when the statement may give a different answer on each run (now(), random(), uuid(), ...)."""
    for node in tree.walk():
        if isinstance(node, _VOLATILE):
            return False
        if isinstance(node, exp.Func) and not isinstance(node, exp.Anonymous):
            if node.sql_name().lower() in _VOLATILE_NAMES:
                return False
        elif isinstance(node, exp.Anonymous) and node.name.lower() in _VOLATILE_NAMES:
            return False
        elif isinstance(node, exp.Column) and not node.table and node.name.lower() in _VOLATILE_NAMES:
            return False  # CURRENT_DATE and friends parse as bare names in some dialects
    return True
