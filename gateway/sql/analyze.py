"""Which base tables a query reads, found with sqlglot's scopes and failing closed.

`base_tables(tree)` classifies every `exp.Table` in the tree as a reference to a CTE (by scope) or to a base
table. Anything else — a table node no scope reports, a name a scope maps to something other than itself or
a CTE, a qualified name that a CTE of the same short name would hide — raises `PermissionDenied`, because
a table the rewriter does not see is a table it does not protect.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.errors import OptimizeError
from sqlglot.optimizer.scope import Scope, traverse_scope

from gateway.errors import NotSupported, PermissionDenied


def traverse(tree: exp.Expr) -> list[Scope]:
    try:
        return traverse_scope(tree)
    except OptimizeError as exc:
        raise NotSupported(f"query structure not supported: {exc}") from exc


def cte_of(scope: Scope, table: exp.Table) -> exp.CTE | None:
    """The CTE that `table` refers to in `scope`, or None for anything else."""
    source = scope.sources.get(table.alias_or_name)
    if not isinstance(source, Scope) or not _is_cte_reference(table, source):
        return None
    node = source.expression
    return node if isinstance(node, exp.CTE) else node.find_ancestor(exp.CTE)


def base_tables(tree: exp.Expr, scopes: list[Scope] | None = None) -> list[exp.Table]:
    """Every base-table reference in `tree`, in scope order (may repeat a table, e.g. self-joins). `scopes`:
    the tree's scopes, when the caller has them already."""
    scopes = traverse(tree) if scopes is None else scopes

    found: list[exp.Table] = []
    classified: set[int] = set()
    for scope in scopes:
        for table in scope.tables:
            source = scope.sources.get(table.alias_or_name)
            if source is table:
                found.append(table)
            elif isinstance(source, Scope) and _is_cte_reference(table, source):
                pass  # the CTE's own body is a scope of its own and is classified there
            else:
                raise PermissionDenied(f"cannot resolve table reference {table.sql()!r}")
            classified.add(id(table))

    for table in tree.find_all(exp.Table):
        if id(table) not in classified:
            raise PermissionDenied(f"table reference {table.sql()!r} is not allowed here")
    return found


def table_name(table: exp.Table) -> str:
    """catalog.schema.table of a qualified base-table reference; anything less is denied."""
    parts = [table.args.get("catalog"), table.args.get("db"), table.this]
    if not all(isinstance(part, exp.Identifier) and part.name for part in parts):
        raise PermissionDenied(f"table reference {table.sql()!r} is not a fully qualified table name")
    return ".".join(part.name for part in parts if isinstance(part, exp.Identifier))


def _is_cte_reference(table: exp.Table, source: Scope) -> bool:
    # A qualified name is never a CTE, whatever its last part is called; sqlglot keys sources by that part.
    return source.is_cte and not table.args.get("db") and not table.args.get("catalog")
