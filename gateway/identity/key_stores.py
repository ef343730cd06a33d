"""Where API key records live: a YAML file (one machine) or a PostgreSQL table (any number of replicas).

Both hold only salted hashes. The file is re-read when it changes, so `gateway keys ...` takes effect in a
running gateway without a restart; writers (the CLI, last-use updates) take an exclusive lock on
`<file>.lock` and replace the file atomically, readable by its owner only.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from gateway.identity.api_keys import ApiKeyRecord, KeyStoreUnavailable

HEADER = "# API keys, managed by `gateway keys ...`. Only salted scrypt hashes and SCRAM verifiers are stored here.\n"


def _to_dict(record: ApiKeyRecord) -> dict[str, Any]:
    def stamp(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment is not None else None

    return {"key_id": record.key_id, "name": record.name, "secret_hash": record.secret_hash,
            "groups": list(record.groups), "attributes": dict(record.attributes), "cost_center": record.cost_center,
            "created_at": stamp(record.created_at), "expires_at": stamp(record.expires_at),
            "revoked_at": stamp(record.revoked_at), "last_used_at": stamp(record.last_used_at),
            "scram_verifier": record.scram_verifier}


def _from_dict(data: dict[str, Any]) -> ApiKeyRecord:
    def moment(value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value
        return datetime.fromisoformat(str(value))

    created = moment(data["created_at"])
    if created is None:
        raise ValueError("created_at is required")
    return ApiKeyRecord(key_id=str(data["key_id"]), name=str(data["name"]), secret_hash=str(data["secret_hash"]),
                        groups=tuple(str(g) for g in data.get("groups") or ()),
                        attributes=dict(data.get("attributes") or {}), cost_center=data.get("cost_center"),
                        created_at=created, expires_at=moment(data.get("expires_at")),
                        revoked_at=moment(data.get("revoked_at")), last_used_at=moment(data.get("last_used_at")),
                        scram_verifier=data.get("scram_verifier"))


class FileKeyStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._signature: tuple[int, int] | None = None
        self._records: dict[str, ApiKeyRecord] = {}

    async def start(self) -> None:
        self._read()  # a broken file stops the gateway at start-up rather than failing every request

    async def close(self) -> None:
        pass

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        return self._read().get(key_id)

    async def all(self) -> list[ApiKeyRecord]:
        return list(self._read().values())

    async def put(self, records: Sequence[ApiKeyRecord]) -> None:
        await asyncio.to_thread(self._update, {r.key_id: r for r in records}, None)

    async def touch(self, key_id: str, when: datetime) -> None:
        await asyncio.to_thread(self._update, {}, (key_id, when))

    # -- file handling -------------------------------------------------------------------------------------

    def _read(self) -> dict[str, ApiKeyRecord]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._signature, self._records = None, {}
            return self._records
        except OSError as error:
            raise KeyStoreUnavailable(f"{self.path}: {error.strerror}") from None
        signature = (stat.st_mtime_ns, stat.st_size)
        if signature != self._signature:
            self._records = self._parse()
            self._signature = signature
        return self._records

    def _parse(self) -> dict[str, ApiKeyRecord]:
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
            return {r.key_id: r for r in (_from_dict(item) for item in data.get("keys") or [])}
        except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise KeyStoreUnavailable(f"{self.path}: unreadable API key file ({type(error).__name__})") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _update(self, records: dict[str, ApiKeyRecord], touch: tuple[str, datetime] | None) -> None:
        from dataclasses import replace

        with self._locked():
            current = self._parse() if self.path.exists() else {}
            current.update(records)
            if touch is not None and touch[0] in current:
                current[touch[0]] = replace(current[touch[0]], last_used_at=touch[1])
            text = HEADER + yaml.safe_dump({"keys": [_to_dict(r) for r in current.values()]}, sort_keys=False)
            fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(text)
                os.chmod(temp, 0o600)
                os.replace(temp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise


TABLE = "gateway_api_keys"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    key_id       text PRIMARY KEY,
    name         text NOT NULL,
    secret_hash  text NOT NULL,
    groups       jsonb NOT NULL DEFAULT '[]',
    attributes   jsonb NOT NULL DEFAULT '{{}}',
    cost_center  text,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS scram_verifier text"""
_COLUMNS = ("key_id, name, secret_hash, groups::text AS groups, attributes::text AS attributes, cost_center, "
            "created_at, expires_at, revoked_at, last_used_at, scram_verifier")


class PostgresKeyStore:
    """The `gateway_api_keys` table (created when missing), through an asyncpg pool."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: Any = None

    def __repr__(self) -> str:
        return "PostgresKeyStore(<dsn hidden>)"

    async def start(self) -> None:
        import asyncpg

        try:
            self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=4, timeout=10)
            async with self._pool.acquire() as connection:
                await connection.execute(_SCHEMA)
        except (TimeoutError, OSError, asyncpg.PostgresError) as error:
            raise KeyStoreUnavailable(f"PostgreSQL: {type(error).__name__}: {error}") from None

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        import asyncpg

        if self._pool is None:
            raise KeyStoreUnavailable("the key store was not started")
        try:
            async with self._pool.acquire(timeout=5) as connection:
                return list(await connection.fetch(sql, *args, timeout=5))
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise KeyStoreUnavailable(f"PostgreSQL: {type(error).__name__}") from None

    @staticmethod
    def _record(row: Any) -> ApiKeyRecord:
        data = dict(row)
        data["groups"] = json.loads(data["groups"])
        data["attributes"] = json.loads(data["attributes"])
        return _from_dict(data)

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM {TABLE} WHERE key_id = $1", key_id)
        return self._record(rows[0]) if rows else None

    async def all(self) -> list[ApiKeyRecord]:
        return [self._record(row) for row in await self._fetch(f"SELECT {_COLUMNS} FROM {TABLE}")]

    async def put(self, records: Sequence[ApiKeyRecord]) -> None:
        import asyncpg

        if self._pool is None:
            raise KeyStoreUnavailable("the key store was not started")
        sql = (f"INSERT INTO {TABLE} (key_id, name, secret_hash, groups, attributes, cost_center, created_at, "
               f"expires_at, revoked_at, last_used_at, scram_verifier) "
               f"VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6, $7, $8, $9, $10, $11) "
               f"ON CONFLICT (key_id) DO UPDATE SET name = EXCLUDED.name, secret_hash = EXCLUDED.secret_hash, "
               f"groups = EXCLUDED.groups, attributes = EXCLUDED.attributes, cost_center = EXCLUDED.cost_center, "
               f"expires_at = EXCLUDED.expires_at, revoked_at = EXCLUDED.revoked_at, "
               f"scram_verifier = EXCLUDED.scram_verifier")
        try:
            async with self._pool.acquire(timeout=5) as connection, connection.transaction():
                for r in records:
                    await connection.execute(sql, r.key_id, r.name, r.secret_hash, json.dumps(list(r.groups)),
                                             json.dumps(dict(r.attributes)), r.cost_center, r.created_at,
                                             r.expires_at, r.revoked_at, r.last_used_at, r.scram_verifier)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise KeyStoreUnavailable(f"PostgreSQL: {type(error).__name__}") from None

    async def touch(self, key_id: str, when: datetime) -> None:
        await self._fetch(f"UPDATE {TABLE} SET last_used_at = $2 WHERE key_id = $1", key_id, when)
