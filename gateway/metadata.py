"""The gateway's own metadata tables: information_schema in every catalog and the `system` catalog.

Clients discover data through these (SQLAlchemy reads information_schema, JDBC reads system.jdbc, Superset
reads system.metadata.table_comments). They are materialised from a `CatalogSnapshot` into an in-memory
DuckDB, so any SQL a client writes over them (LIKE ... ESCAPE, joins, ORDER BY) just works. Names are
mapped: `<catalog>.information_schema.tables` -> local table `information_schema_tables` restricted to that
catalog; `system.jdbc.columns` -> `jdbc_columns`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import duckdb

from gateway import pg_catalog_tables
from gateway.backends.base import Backend
from gateway.backends.duckdb import DuckDBEngine, describe_tables
from gateway.catalog import INFORMATION_SCHEMA, SYSTEM_CATALOG, CatalogSnapshot, TableName
from gateway.errors import BackendError
from gateway.metrics import Metrics
from gateway.relations import Column, Table
from gateway.types import SqlType

log = logging.getLogger("gateway.metadata")

V = "VARCHAR"
B = "BIGINT"
TZ = "TIMESTAMPTZ"
PROPERTY_COLUMNS = [("catalog_name", V), ("property_name", V), ("default_value", V), ("type", V),
                    ("description", V)]

# local table -> its columns; the prefix before the first underscore-separated Trino name is the schema.
INFORMATION_SCHEMA_TABLES: dict[str, list[tuple[str, str]]] = {
    "schemata": [("catalog_name", V), ("schema_name", V)],
    "tables": [("table_catalog", V), ("table_schema", V), ("table_name", V), ("table_type", V)],
    "columns": [("table_catalog", V), ("table_schema", V), ("table_name", V), ("column_name", V),
                ("ordinal_position", B), ("column_default", V), ("is_nullable", V), ("data_type", V),
                ("comment", V), ("extra_info", V)],
    "views": [("table_catalog", V), ("table_schema", V), ("table_name", V), ("view_definition", V)],
}
# information_schema tables are per catalog: the column naming the catalog restricts them.
CATALOG_COLUMN = {"schemata": "catalog_name", "tables": "table_catalog", "columns": "table_catalog",
                  "views": "table_catalog"}

SYSTEM_TABLES: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("jdbc", "catalogs"): [("table_cat", V)],
    ("jdbc", "schemas"): [("table_schem", V), ("table_catalog", V)],
    ("jdbc", "table_types"): [("table_type", V)],
    ("jdbc", "tables"): [("table_cat", V), ("table_schem", V), ("table_name", V), ("table_type", V),
                         ("remarks", V), ("type_cat", V), ("type_schem", V), ("type_name", V),
                         ("self_referencing_col_name", V), ("ref_generation", V)],
    ("jdbc", "columns"): [("table_cat", V), ("table_schem", V), ("table_name", V), ("column_name", V),
                          ("data_type", B), ("type_name", V), ("column_size", B), ("buffer_length", B),
                          ("decimal_digits", B), ("num_prec_radix", B), ("nullable", B), ("remarks", V),
                          ("column_def", V), ("sql_data_type", B), ("sql_datetime_sub", B),
                          ("char_octet_length", B), ("ordinal_position", B), ("is_nullable", V),
                          ("scope_catalog", V), ("scope_schema", V), ("scope_table", V),
                          ("source_data_type", B), ("is_autoincrement", V), ("is_generatedcolumn", V)],
    ("jdbc", "types"): [("type_name", V), ("data_type", B), ("precision", B), ("literal_prefix", V),
                        ("literal_suffix", V), ("create_params", V), ("nullable", B), ("case_sensitive", "BOOLEAN"),
                        ("searchable", B), ("unsigned_attribute", "BOOLEAN"), ("fixed_prec_scale", "BOOLEAN"),
                        ("auto_increment", "BOOLEAN"), ("local_type_name", V), ("minimum_scale", B),
                        ("maximum_scale", B), ("sql_data_type", B), ("sql_datetime_sub", B),
                        ("num_prec_radix", B)],
    ("metadata", "catalogs"): [("catalog_name", V), ("connector_id", V), ("connector_name", V)],
    ("metadata", "table_comments"): [("catalog_name", V), ("schema_name", V), ("table_name", V), ("comment", V)],
    # The demo backends have no materialized views and no connector properties: these are empty, as in a
    # Trino catalog without them, and exist because dbt-trino and DBeaver read them.
    ("metadata", "materialized_views"): [("catalog_name", V), ("schema_name", V), ("name", V),
                                         ("storage_catalog", V), ("storage_schema", V), ("storage_table", V),
                                         ("freshness", V), ("last_fresh_time", TZ), ("owner", V), ("comment", V),
                                         ("definition", V)],
    ("metadata", "table_properties"): PROPERTY_COLUMNS,
    ("metadata", "column_properties"): PROPERTY_COLUMNS,
    ("metadata", "schema_properties"): PROPERTY_COLUMNS,
    ("metadata", "materialized_view_properties"): PROPERTY_COLUMNS,
    # Filled per query from the running process (metadata_live.py); empty in the shared engine.
    ("runtime", "nodes"): [("node_id", V), ("http_uri", V), ("node_version", V), ("coordinator", "BOOLEAN"),
                           ("state", V)],
    ("runtime", "queries"): [("query_id", V), ("state", V), ("user", V), ("source", V), ("query", V),
                             ("resource_group_id", "VARCHAR[]"), ("queued_time_ms", B), ("analysis_time_ms", B),
                             ("planning_time_ms", B), ("created", TZ), ("started", TZ), ("last_heartbeat", TZ),
                             ("end", TZ), ("error_type", V), ("error_code", V)],
}

# java.sql.Types codes, as Trino's JDBC metadata reports them
JDBC_TYPES = {"boolean": 16, "tinyint": -6, "smallint": 5, "integer": 4, "bigint": -5, "real": 7, "double": 8,
              "decimal": 3, "varchar": 12, "char": 1, "varbinary": -3, "date": 91, "time": 92, "timestamp": 93,
              "time with time zone": 2013, "timestamp with time zone": 2014, "array": 2003}
JAVA_OBJECT = 2000


def local_name(name: TableName) -> tuple[str, str | None]:
    """The metadata engine's table for a Trino metadata table, and the catalog it must be restricted to."""
    if name.schema == INFORMATION_SCHEMA:
        return f"information_schema_{name.table}", name.catalog
    return f"{name.schema}_{name.table}", None


def local_columns(name: TableName) -> list[str]:
    """The columns of the metadata engine's table for `name`, in order."""
    if name.schema == INFORMATION_SCHEMA:
        return [column for column, _ in INFORMATION_SCHEMA_TABLES[name.table]]
    return [column for column, _ in SYSTEM_TABLES[(name.schema, name.table)]]


def catalog_column(name: TableName) -> str | None:
    return CATALOG_COLUMN.get(name.table) if name.schema == INFORMATION_SCHEMA else None


def _ddl() -> list[str]:
    statements = []
    for table, columns in INFORMATION_SCHEMA_TABLES.items():
        statements.append(f"CREATE TABLE information_schema_{table} ({_columns(columns)})")
    for (schema, table), columns in SYSTEM_TABLES.items():
        statements.append(f"CREATE TABLE {schema}_{table} ({_columns(columns)})")
    return statements


def _columns(columns: list[tuple[str, str]]) -> str:
    return ", ".join(f'"{name}" {kind}' for name, kind in columns)


@dataclass(frozen=True)
class MetadataTables:
    """A filled metadata engine and the snapshot (backend tables + metadata tables) it was built from."""

    snapshot: CatalogSnapshot
    engine: DuckDBEngine


def _metadata_table_shapes() -> tuple[list[Table], list[Table]]:
    """(information_schema tables, system tables) with their Trino types, read from an empty build."""
    connection = duckdb.connect()
    try:
        for statement in _ddl():
            connection.execute(statement)
        described = {t.name: t for t in describe_tables(connection, database="memory")}
    finally:
        connection.close()
    info = [Table(schema=INFORMATION_SCHEMA, name=n, columns=described[f"information_schema_{n}"].columns)
            for n in INFORMATION_SCHEMA_TABLES]
    system = [Table(schema=s, name=n, columns=described[f"{s}_{n}"].columns) for s, n in SYSTEM_TABLES]
    return info, system


def build_metadata(backend_tables: dict[str, list[Table]], *, workers: int = 4,
                   postgres_catalog: bool = True) -> MetadataTables:
    """Snapshot every catalog (backends' tables plus metadata tables) and load the metadata engine.
    `postgres_catalog`: also build pg_catalog and PostgreSQL's information_schema (only PostgreSQL-wire
    sessions read them: a gateway without a pgwire port skips that work at every refresh)."""
    info, system = _metadata_table_shapes()
    catalogs = {name: [*tables, *info] for name, tables in backend_tables.items()}
    catalogs[SYSTEM_CATALOG] = [*system, *info]
    snapshot = CatalogSnapshot(catalogs)
    connection = duckdb.connect(config={"enable_external_access": False})
    for statement in [*_ddl(), *(pg_catalog_tables.ddl() if postgres_catalog else [])]:
        connection.execute(statement)
    _fill(connection, snapshot, connectors={**{n: "duckdb" for n in backend_tables}, SYSTEM_CATALOG: "system"})
    if postgres_catalog:
        pg_catalog_tables.fill(connection, snapshot, backend_tables)  # the PostgreSQL view (gateway/pg_catalog.py)
    connection.execute("SET lock_configuration = true")
    return MetadataTables(snapshot=snapshot, engine=DuckDBEngine(connection, label="metadata", workers=workers))


_insert = pg_catalog_tables.insert_rows  # one statement per table, not per row


def _fill(connection: duckdb.DuckDBPyConnection, snapshot: CatalogSnapshot, *, connectors: dict[str, str]) -> None:
    catalogs = snapshot.catalogs()
    _insert(connection, "jdbc_catalogs", ((c,) for c in catalogs))
    _insert(connection, "metadata_catalogs", ((c, c, connectors.get(c, "")) for c in catalogs))
    _insert(connection, "jdbc_table_types", [("TABLE",), ("VIEW",)])
    _insert(connection, "jdbc_types", _jdbc_types())
    schemata = [(c, s) for c in catalogs for s in snapshot.schemas(c)]
    _insert(connection, "information_schema_schemata", schemata)
    _insert(connection, "jdbc_schemas", ((s, c) for c, s in schemata))
    tables = list(snapshot.all_tables())
    _insert(connection, "information_schema_tables", ((c, t.schema, t.name, t.kind) for c, t in tables))
    _insert(connection, "jdbc_tables", (
        (c, t.schema, t.name, "VIEW" if t.kind == "VIEW" else "TABLE", t.comment, None, None, None, None, None)
        for c, t in tables))
    _insert(connection, "metadata_table_comments", ((c, t.schema, t.name, t.comment) for c, t in tables))
    _insert(connection, "information_schema_columns", (
        (c, t.schema, t.name, col.name, i, None, "YES" if col.nullable else "NO", col.type.display(), col.comment,
         None)
        for c, t in tables for i, col in enumerate(t.columns, start=1)))
    _insert(connection, "jdbc_columns", (
        _jdbc_column(c, t, col, i) for c, t in tables for i, col in enumerate(t.columns, start=1)))


def _jdbc_column(catalog: str, table: Table, column: Column, position: int) -> tuple[object, ...]:
    kind = column.type
    size, digits = _jdbc_size(kind)
    return (catalog, table.schema, table.name, column.name, JDBC_TYPES.get(kind.name, JAVA_OBJECT), kind.display(),
            size, None, digits, 10 if kind.name in ("tinyint", "smallint", "integer", "bigint", "decimal",
                                                     "real", "double") else None,
            1 if column.nullable else 0, column.comment, None, None, None,
            size if kind.name in ("varchar", "char", "varbinary") else None, position,
            "YES" if column.nullable else "NO", None, None, None, None, "NO", "NO")


def _jdbc_size(kind: SqlType) -> tuple[int | None, int | None]:
    sizes = {"tinyint": 3, "smallint": 5, "integer": 10, "bigint": 19, "real": 24, "double": 53, "date": 14}
    if kind.name == "decimal":
        return kind.arguments[0], kind.arguments[1]
    if kind.name in ("varchar", "char"):
        return kind.arguments[0] if kind.arguments else None, None
    if kind.name.startswith(("timestamp", "time")):
        return None, kind.arguments[0] if kind.arguments else None
    return sizes.get(kind.name), 0 if kind.name in ("tinyint", "smallint", "integer", "bigint") else None


def _jdbc_types() -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for name, code in JDBC_TYPES.items():
        numeric = name in ("tinyint", "smallint", "integer", "bigint", "real", "double", "decimal")
        quoted = name in ("varchar", "char", "date", "time", "timestamp")
        rows.append((name, code, None, "'" if quoted else None, "'" if quoted else None, None, 1,
                     name in ("varchar", "char"), 3, not numeric, False, False, None, None, None, None, None,
                     10 if numeric else None))
    return rows


class CatalogService:
    """Keeps the current `MetadataTables`, rebuilt from the backends on demand (start, periodic refresh)."""

    def __init__(self, backends: dict[str, Backend], metrics: Metrics, *, postgres_catalog: bool = True) -> None:
        self._backends = backends
        self._metrics = metrics
        self._postgres_catalog = postgres_catalog
        self._current: MetadataTables | None = None
        self._tables: dict[str, list[Table]] | None = None

    @property
    def current(self) -> MetadataTables:
        if self._current is None:
            raise BackendError("the catalog has not been loaded yet")
        return self._current

    async def refresh(self) -> None:
        """Re-read the backends' tables; rebuild only if something changed (a new snapshot invalidates every
        cached plan and visibility set, so an unchanged catalog keeps its snapshot)."""
        try:
            tables = {name: await self._tables_of(name, backend) for name, backend in self._backends.items()}
            if tables == self._tables:
                self._metrics.catalog_refreshes.labels("unchanged").inc()
                return
            loop = asyncio.get_running_loop()
            fresh = await loop.run_in_executor(
                None, lambda: build_metadata(tables, postgres_catalog=self._postgres_catalog))
        except Exception:
            self._metrics.catalog_refreshes.labels("failed").inc()
            raise
        previous, self._current = self._current, fresh
        self._tables = tables
        self._metrics.catalog_refreshes.labels("ok").inc()
        for name, listed in tables.items():
            self._metrics.catalog_tables.labels(name).set(len(listed))
        if previous is not None:
            # Queries already running on the old engine keep their cursors; DuckDB closes it when they end.
            previous.engine.retire()

    async def _tables_of(self, name: str, backend: Backend) -> list[Table]:
        """A backend's tables; while it is unreachable, what it had before (none at first start), so one
        warehouse being down neither stops the gateway nor hides the other catalogs. `/health/ready` names it."""
        try:
            return await backend.tables()
        except BackendError as error:
            previous = (self._tables or {}).get(name, [])
            log.warning("catalog %s: cannot list its tables (%s); keeping the %d known", name, error.message,
                        len(previous))
            return previous

    def close(self) -> None:
        if self._current is not None:
            self._current.engine.close()
            self._current = None
