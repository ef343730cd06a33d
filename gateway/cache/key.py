"""What makes two queries the same for the result cache, and which queries may be cached at all.

The key is the SQL the gateway sends the backend — policy filters and masks already in it, identity values
bound as literals — plus the backend and the policy version. So two users share an entry exactly when the
gateway would send the backend the same statement for them, and a policy change never serves an entry made
under the old version. Pure functions.
"""

from __future__ import annotations

import hashlib

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


def cache_key(*, backend_sql: str, target: str, policy_version: str, properties: tuple[tuple[str, str], ...]) -> str:
    """A stable key: sha256 over everything that decides the result."""
    digest = hashlib.sha256()
    for part in (target, policy_version, backend_sql, repr(properties)):
        digest.update(part.encode())
        digest.update(b"\x00")
    return digest.hexdigest()
