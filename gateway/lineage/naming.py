"""Dataset names per the OpenLineage naming spec: where a gateway table physically lives.

A gateway table is `catalog.schema.table`, its catalog a backend. OpenLineage names a table by its data
source (the namespace) and its name within it, so lineage from the gateway joins lineage the warehouse's
own tools report for the same table:

    postgres     postgres://{host}:{port}          {database}.{schema}.{table}
    trino        trino://{host}:{port}             {remote catalog}.{schema}.{table}
    snowflake    snowflake://{account}             {database}.{schema}.{table}
    duckdb       duckdb://{absolute file path}     {database}.{schema}.{table}   (not in the spec: the file is
                                                                                  the data source)
    the gateway's own catalogs (gateway.audit.*)   trino://{gateway host}:{port}  {catalog}.{schema}.{table}

Pure: built once from the backends' settings, never from a live connection (no secret of a DSN is kept).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.backends.settings import BackendSettings

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class DataSource:
    namespace: str
    database: str | None  # replaces the gateway's catalog in the name; None: the catalog itself

    def name(self, catalog: str, schema: str, table: str) -> str:
        return f"{self.database or catalog}.{schema}.{table}"


def data_source(backend: BackendSettings) -> DataSource:
    """The OpenLineage data source of one backend (its namespace and the database its tables are in)."""
    if backend.type == "postgres" and backend.dsn is not None:
        parts = urlsplit(backend.dsn)
        database = parts.path.lstrip("/") or (parts.username or "postgres")
        return DataSource(f"postgres://{parts.hostname or 'localhost'}:{parts.port or 5432}", database)
    if backend.type == "trino" and backend.trino is not None:
        parts = urlsplit(backend.trino.url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 8080)
        return DataSource(f"trino://{parts.hostname}:{port}", backend.trino.catalog)
    if backend.type == "snowflake" and backend.snowflake is not None:
        return DataSource(f"snowflake://{backend.snowflake.account.lower()}", backend.snowflake.database)
    if backend.type == "duckdb" and backend.path is not None:
        return DataSource(f"duckdb://{backend.path.resolve()}", backend.path.stem)
    return DataSource(f"{backend.type}://{backend.name}", None)


class DatasetNames:
    """catalog.schema.table -> (namespace, name); catalogs no backend serves (the gateway's own) are named as
    tables of the gateway's Trino endpoint."""

    def __init__(self, backends: Iterable[BackendSettings], *, gateway_namespace: str) -> None:
        self._sources: Mapping[str, DataSource] = {b.name: data_source(b) for b in backends}
        self._gateway = DataSource(gateway_namespace, None)

    def of(self, table: str) -> tuple[str, str]:
        catalog, schema, name = table.split(".", 2)
        source = self._sources.get(catalog, self._gateway)
        return source.namespace, source.name(catalog, schema, name)
