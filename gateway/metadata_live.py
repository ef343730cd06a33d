"""`system.runtime.*`: metadata tables whose rows are this process's live state, not the catalog.

The shared metadata engine holds them empty (for their shape). A query that reads one gets, on its own
DuckDB cursor, a temporary table of the same name filled with the rows its caller may see, which shadows
the empty one for that query only: `runtime.queries` lists the caller's own queries (everyone's for
members of `workload.admin_groups`), `runtime.nodes` this node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import duckdb

from gateway.catalog import SYSTEM_CATALOG, TableName
from gateway.identity import Identity
from gateway.node import NodeInfo
from gateway.query_history import QueryHistory, QuerySummary

QUERIES = TableName(SYSTEM_CATALOG, "runtime", "queries")
NODES = TableName(SYSTEM_CATALOG, "runtime", "nodes")
_LOCAL = {QUERIES: "runtime_queries", NODES: "runtime_nodes"}

Rows = Mapping[str, Sequence[tuple[object, ...]]]
CursorSetup = Callable[[duckdb.DuckDBPyConnection], None]


def reads_live_tables(tables: Iterable[TableName]) -> bool:
    return any(t in _LOCAL for t in tables)


def live_rows(tables: Iterable[TableName], *, history: QueryHistory, viewer: Identity, node: NodeInfo) -> Rows:
    """The rows of each live table in `tables`, as `viewer` may see them."""
    rows: dict[str, list[tuple[object, ...]]] = {}
    for table in set(tables):
        if table == QUERIES:
            rows[_LOCAL[table]] = [_query_row(s) for s in history.visible_to(viewer)]
        elif table == NODES:
            rows[_LOCAL[table]] = [(node.node_id, node.uri, node.version, True, "active")]
    return rows


def _query_row(summary: QuerySummary) -> tuple[object, ...]:
    error = summary.error
    return (summary.query_id, summary.state, summary.user, summary.source, summary.sql,
            [summary.resource_group] if summary.resource_group else None, summary.queued_ms, 0, 0,
            summary.created, summary.created, summary.ended or summary.created, summary.ended,
            error.error.type if error is not None else None, error.error.name if error is not None else None)


def cursor_setup(rows: Rows) -> CursorSetup:
    """Creates the live tables on a query's own cursor (temporary tables shadow the shared empty ones)."""

    def setup(cursor: duckdb.DuckDBPyConnection) -> None:
        for table, values in rows.items():
            cursor.execute(f"CREATE TEMP TABLE {table} AS SELECT * FROM main.{table} LIMIT 0")
            if values:
                marks = ", ".join("?" * len(values[0]))
                cursor.executemany(f"INSERT INTO {table} VALUES ({marks})", [list(v) for v in values])

    return setup
