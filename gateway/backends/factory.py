"""Settings -> backend: the one place that knows which class serves each `backends.<name>.type`. Every backend
comes wrapped in the same circuit breaker and read retries (resilience.py), whatever its type."""

from __future__ import annotations

from functools import partial

from gateway.backends.base import Backend
from gateway.backends.credentials import secret_source
from gateway.backends.duckdb import DuckDBBackend
from gateway.backends.postgres import PostgresBackend
from gateway.backends.resilience import ResilientBackend
from gateway.backends.settings import BackendSettings
from gateway.backends.trino import TrinoBackend
from gateway.demo import build_demo_database
from gateway.metrics import Metrics


def build_backend(settings: BackendSettings, *, generate_demo: bool = True, metrics: Metrics | None = None) -> Backend:
    """`generate_demo=False`: a DuckDB backend with `tpch_scale` does not create its file (offline tools)."""
    return ResilientBackend(_engine_backend(settings, generate_demo, metrics), settings.resilience, metrics=metrics)


def _engine_backend(settings: BackendSettings, generate_demo: bool, metrics: Metrics | None) -> Backend:
    if settings.type == "duckdb":
        assert settings.path is not None  # config validation requires it
        prepare = None
        if settings.tpch_scale is not None and generate_demo:
            prepare = partial(build_demo_database, settings.path, schema=settings.schema, scale=settings.tpch_scale)
        return DuckDBBackend(name=settings.name, path=settings.path, threads=settings.threads,
                             memory_limit=settings.memory_limit, prepare=prepare,
                             isolation=settings.isolation)
    if settings.type == "postgres":
        assert settings.dsn is not None  # config validation requires it
        password = secret_source(settings.password) if settings.password is not None else None
        return PostgresBackend(name=settings.name, dsn=settings.dsn, schemas=settings.schemas,
                               pool_size=settings.pool_size, connect_timeout_seconds=settings.connect_timeout_seconds,
                               explain_analyze=settings.explain_analyze, password=password,
                               pool_timeout_seconds=settings.pool_timeout_seconds, metrics=metrics)
    if settings.type == "snowflake":
        assert settings.snowflake is not None  # config validation requires it
        from gateway.backends.snowflake import SnowflakeBackend  # the connector loads only where it is used

        secrets = {kind: secret_source(spec) for kind, spec in settings.credentials.items()}
        return SnowflakeBackend(name=settings.name, settings=settings.snowflake, schemas=settings.schemas,
                                pool_size=settings.pool_size, connect_timeout_seconds=settings.connect_timeout_seconds,
                                password=secret_source(settings.password) if settings.password is not None else None,
                                private_key=secrets.get("private_key"),
                                private_key_passphrase=secrets.get("private_key_passphrase"))
    if settings.type == "trino":
        assert settings.trino is not None  # config validation requires it
        token = settings.credentials.get("token")
        return TrinoBackend(name=settings.name, settings=settings.trino, schema=settings.schema,
                            schemas=settings.schemas, pool_size=settings.pool_size,
                            connect_timeout_seconds=settings.connect_timeout_seconds,
                            password=secret_source(settings.password) if settings.password is not None else None,
                            token=secret_source(token) if token is not None else None)
    raise ValueError(f"unknown backend type {settings.type!r}")
