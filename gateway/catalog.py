"""What tables exist: a point-in-time snapshot of every catalog, schema, table and column the gateway serves.

Backends describe their tables; the gateway adds its own metadata tables (information_schema in each
catalog, and the `system` catalog). Every SQL stage resolves names against one snapshot, so a statement
never sees two versions of the catalog.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.config_reader import Check, Reader, positive, read_section
from gateway.relations import Table

SYSTEM_CATALOG = "system"
INFORMATION_SCHEMA = "information_schema"



@dataclass(frozen=True, kw_only=True)
class MetadataSettings:
    """`metadata:` — how often every backend's tables are read again into the gateway's catalog."""

    refresh_seconds: float = 60.0

    CHECKS: ClassVar[Mapping[str, Check]] = {"refresh_seconds": positive}


def read_metadata(r: Reader, data: Mapping[str, Any]) -> MetadataSettings:
    return read_section(r, data, ("metadata",), MetadataSettings)

@dataclass(frozen=True, slots=True, order=True)
class TableName:
    catalog: str
    schema: str
    table: str

    def __str__(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.table}"

    @property
    def is_metadata(self) -> bool:
        """Served by the gateway's own metadata tables rather than a backend."""
        return self.catalog == SYSTEM_CATALOG or self.schema == INFORMATION_SCHEMA


class CatalogSnapshot:
    """Immutable view of catalog -> schema -> table."""

    def __init__(self, catalogs: Mapping[str, Iterable[Table]]) -> None:
        self._tables: dict[str, dict[str, dict[str, Table]]] = {}
        for catalog, tables in catalogs.items():
            schemas = self._tables.setdefault(catalog, {})
            for table in tables:
                schemas.setdefault(table.schema, {})[table.name] = table

    def catalogs(self) -> list[str]:
        return sorted(self._tables)

    def schemas(self, catalog: str) -> list[str]:
        return sorted(self._tables.get(catalog, {}))

    def tables(self, catalog: str, schema: str) -> list[Table]:
        return [t for _, t in sorted(self._tables.get(catalog, {}).get(schema, {}).items())]

    def all_tables(self) -> Iterable[tuple[str, Table]]:
        for catalog in self.catalogs():
            for schema in self.schemas(catalog):
                for table in self.tables(catalog, schema):
                    yield catalog, table

    def has_catalog(self, catalog: str) -> bool:
        return catalog in self._tables

    def has_schema(self, catalog: str, schema: str) -> bool:
        return schema in self._tables.get(catalog, {})

    def table(self, name: TableName) -> Table | None:
        return self._tables.get(name.catalog, {}).get(name.schema, {}).get(name.table)

    @functools.cached_property
    def _column_types(self) -> dict[str, dict[str, dict[str, dict[str, str]]]]:
        return {
            catalog: {
                schema: {name: {c.name: c.type.display() for c in table.columns} for name, table in tables.items()}
                for schema, tables in schemas.items()
            }
            for catalog, schemas in self._tables.items()
        }

    def column_types(self) -> Mapping[str, Mapping[str, Mapping[str, Mapping[str, str]]]]:
        """catalog -> schema -> table -> {column: Trino type text}, the shape sqlglot's MappingSchema takes.
        Computed once per snapshot."""
        return self._column_types
