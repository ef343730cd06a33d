"""Settings -> backend: the one place that knows which class serves each `backends.<name>.type`."""

from __future__ import annotations

from functools import partial

from gateway.backends.base import Backend
from gateway.backends.duckdb import DuckDBBackend
from gateway.backends.postgres import PostgresBackend
from gateway.backends.settings import BackendSettings
from gateway.backends.trino import TrinoBackend
from gateway.demo import build_demo_database


def build_backend(settings: BackendSettings, *, generate_demo: bool = True) -> Backend:
    """`generate_demo=False`: a DuckDB backend with `tpch_scale` does not create its file (offline tools)."""
    if settings.type == "duckdb":
        assert settings.path is not None  # config validation requires it
        prepare = None
        if settings.tpch_scale is not None and generate_demo:
            prepare = partial(build_demo_database, settings.path, schema=settings.schema, scale=settings.tpch_scale)
        return DuckDBBackend(name=settings.name, path=settings.path, threads=settings.threads,
                             memory_limit=settings.memory_limit, prepare=prepare)
    if settings.type == "postgres":
        assert settings.dsn is not None  # config validation requires it
        return PostgresBackend(name=settings.name, dsn=settings.dsn, schemas=settings.schemas,
                               pool_size=settings.pool_size, connect_timeout_seconds=settings.connect_timeout_seconds,
                               explain_analyze=settings.explain_analyze)
    if settings.type == "trino":
        assert settings.trino is not None  # config validation requires it
        return TrinoBackend(name=settings.name, settings=settings.trino, schema=settings.schema,
                            schemas=settings.schemas, pool_size=settings.pool_size,
                            connect_timeout_seconds=settings.connect_timeout_seconds)
    raise ValueError(f"unknown backend type {settings.type!r}")
