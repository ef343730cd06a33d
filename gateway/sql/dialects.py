"""How a backend dialect spells names, against the gateway's catalog (which folds every name to lower case,
as Trino does).

Most engines fold unquoted names to lower case, like the catalog. Snowflake folds them to upper case: policy SQL
written for it (`c_nationkey IN (...)`) names catalog columns, so it is resolved with the catalog's (Trino's)
rules, and the SQL sent to it quotes every name in the spelling the catalog recorded (`remote_name`).
"""

from __future__ import annotations

#: engines that fold unquoted names to upper case
UPPER_CASE_FOLDING = frozenset({"snowflake"})


def quotes_every_identifier(dialect: str) -> bool:
    """Whether SQL generated for `dialect` quotes every name, so the engine never re-folds one."""
    return dialect in UPPER_CASE_FOLDING


def catalog_names(dialect: str) -> str:
    """The dialect whose identifier rules resolve names of policy SQL written in `dialect` against the catalog."""
    return "trino" if dialect in UPPER_CASE_FOLDING else dialect
