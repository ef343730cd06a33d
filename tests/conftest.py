"""Shared fixtures: a demo database built once per run, and real gateway processes on free ports."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import redis
import sqlglot
from hypothesis import settings
from sqlglot import exp
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.qualify_tables import qualify_tables

from gateway.demo import TPCH_TABLES, build_demo_database
from gateway.mask_key import MaskKey
from gateway.testing import GatewayProcess
from tests.idp import IdP

# No per-example deadline: the suite shares two cores with gateways, engines and clients, and a slow example
# is not a failing one (the examples' own bounds are their sizes). A test may still set its own.
settings.register_profile("gateway", deadline=None)
settings.load_profile("gateway")


def tpch_in_memory(database: Path) -> tuple[duckdb.DuckDBPyConnection, dict[str, dict[str, dict[str, dict[str, str]]]]]:
    """A writable in-memory copy of the demo TPC-H tables as catalog `demo`, schema `tpch` (for tests that add
    their own tables and views), and its catalog -> schema -> table -> {column: type} map."""
    connection = duckdb.connect()
    connection.execute(f"ATTACH '{database}' AS source (READ_ONLY)")
    connection.execute("ATTACH ':memory:' AS demo")
    connection.execute("CREATE SCHEMA demo.tpch")
    for table in TPCH_TABLES:
        connection.execute(f"CREATE TABLE demo.tpch.{table} AS SELECT * FROM source.tpch.{table}")
    connection.execute("DETACH source")
    schema: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
    rows = connection.execute(
        "SELECT table_catalog, table_schema, table_name, column_name, lower(data_type) FROM information_schema.columns"
        " WHERE table_catalog = 'demo' AND table_schema = 'tpch' ORDER BY table_name, ordinal_position").fetchall()
    for catalog, db, table, column, data_type in rows:
        schema.setdefault(catalog, {}).setdefault(db, {}).setdefault(table, {})[column] = data_type
    return connection, schema


REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_available() -> bool:
    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


needs_redis = pytest.mark.skipif(not redis_available(), reason="needs Redis on 127.0.0.1:6379")


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own in the shared Redis; its keys are deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex}:"
    yield prefix
    with redis.Redis.from_url(REDIS_URL) as client:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)


def prepare(sql: str) -> exp.Expr:
    """What the gateway does before rewriting: parse, normalize, qualify to the session's catalog/schema."""
    tree = normalize_identifiers(sqlglot.parse_one(sql, read="trino"), dialect="trino")
    return qualify_tables(tree, catalog="demo", db="tpch", dialect="trino")


@pytest.fixture(scope="module")
def idp() -> Iterator[IdP]:
    """A local identity provider serving a JWKS with an RSA key (rsa-1) and an EC key (ec-1)."""
    provider = IdP()
    provider.add_key("rsa-1", "rsa")
    provider.add_key("ec-1", "ec")
    yield provider
    provider.close()


@pytest.fixture(scope="session")
def demo_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    build_demo_database(path, schema="tpch", scale=0.01)
    return path


POLICIES = Path(__file__).resolve().parent.parent / "policies"


def api_keys_file(path: Path, accounts: dict[str, dict[str, Any]]) -> dict[str, str]:
    """A key file (the real file store, real scrypt hashes) with one key per account; name -> the key.
    `accounts` maps a name to ApiKeys.create keywords (groups, attributes, ...)."""
    from gateway.identity.api_keys import ApiKeys
    from gateway.identity.key_stores import FileKeyStore

    async def create() -> dict[str, str]:
        store = FileKeyStore(path)
        await store.start()
        keys = ApiKeys(store)
        return {name: (await keys.create(name, **options))[1] for name, options in accounts.items()}

    return asyncio.run(create())


def demo_config(database: Path, **sections: Any) -> dict[str, Any]:
    """The demo backend on `database`, with the shipped example policies and dev users."""
    return {"backends": {"demo": {"type": "duckdb", "path": str(database), "schema": "tpch"}},
            "policies": {"dir": str(POLICIES)}, **sections}


@pytest.fixture(scope="session")
def gateway(demo_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway for the tests that only send queries; pages are small so paging is exercised."""
    # A short grace: queries tests leave running must not hold the session's end for the default 30 s.
    process = GatewayProcess(tmp_path_factory.mktemp("gw"), demo_config(demo_database, protocol={"page_rows": 2000},
                                                                        server={"shutdown_grace_seconds": 2}))
    yield process
    process.stop()


@pytest.fixture
def connect(gateway: GatewayProcess) -> Any:
    import trino

    def make(**kwargs: Any) -> Any:
        options = {"host": gateway.host, "port": gateway.port, "user": "alice", "catalog": "demo", "schema": "tpch"}
        options.update(kwargs)
        return trino.dbapi.connect(**options)

    return make


def keyed_hash_sql(key: str, column: str) -> str:
    """DuckDB SQL for the gateway's keyed hash mask of `column` with derived key `key` (gateway/sql/masks.py)."""
    return f"sha256('{key}' || sha256('{key}' || CAST({column} AS VARCHAR)))"


def gateway_hash_key(process: GatewayProcess, version: int = 1) -> str:
    """The derived hash key of a test gateway, from the mask key file it created in its workdir."""
    secret = (process.config_path.parent / "data" / "mask.key").read_bytes().strip()
    return MaskKey(secret, source="test").derived_key(version)
