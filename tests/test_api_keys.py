"""Service-account API keys on both stores (a YAML file, and a real PostgreSQL database): create, verify,
rotate with grace, revoke, expire, last use; only salted hashes stored; secrets never in reprs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import AuthenticationFailed
from gateway.identity.api_keys import ApiKeyError, ApiKeys, KeyStore, hash_secret, parse_key, verify_secret
from gateway.identity.failures import FailureLimiter
from gateway.identity.key_stores import FileKeyStore, PostgresKeyStore
from gateway.identity.model import Credentials

PG = "postgresql://postgres@127.0.0.1:5432"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _postgres_available() -> bool:
    import asyncpg

    async def probe() -> None:
        connection = await asyncpg.connect(f"{PG}/test", timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
        return True
    except Exception:
        return False


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    import asyncpg

    if not _postgres_available():
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is not available")
    name = f"gw_keys_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(f"{PG}/test")
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield f"{PG}/{name}"
    asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture(params=["file", "postgres"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "file":
        return lambda: FileKeyStore(tmp_path / "keys" / "api_keys.yaml")
    dsn = request.getfixturevalue("pg_database")

    async def clear() -> None:
        import asyncpg

        connection = await asyncpg.connect(dsn)
        await connection.execute("DROP TABLE IF EXISTS gateway_api_keys")
        await connection.close()

    asyncio.run(clear())
    return lambda: PostgresKeyStore(dsn)


def run(store_factory: Any, scenario: Any) -> Any:
    async def main() -> Any:
        store: KeyStore = store_factory()
        await store.start()
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


def test_lifecycle(store_factory: Any) -> None:
    clock = Clock()

    async def scenario(store: KeyStore) -> None:
        keys = ApiKeys(store, clock=clock)
        record, key = await keys.create("etl-nightly", groups=["etl"], attributes={"nations": [1, 2]},
                                        cost_center="CC-7", expires_in=timedelta(days=90))
        assert parse_key(key) is not None
        assert key not in repr(record) and record.secret_hash not in repr(record)
        identity = await keys.authenticate("etl-nightly", key)
        assert identity.user == "etl-nightly" and identity.groups == {"etl"}
        assert identity.attributes["nations"] == (1, 2) and identity.auth_method == "api_key"
        assert (await store.get(record.key_id)).last_used_at == clock.now  # type: ignore[union-attr]
        with pytest.raises(ApiKeyError, match="already has an active key"):
            await keys.create("etl-nightly")

        # wrong secret, unknown id, garbage: one message, no oracle
        wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
        for bad in (wrong, "gwk_aaaaaaaaaaaa_" + "x" * 43, "not-a-key", ""):
            with pytest.raises(AuthenticationFailed, match=r"^Invalid API key$"):
                await keys.authenticate("etl-nightly", bad)
        with pytest.raises(AuthenticationFailed, match="belongs to 'etl-nightly'"):
            await keys.authenticate("someone-else", key)

        # rotation: both keys work during the grace period, only the new one after it
        clock.now += timedelta(days=10)
        new_record, new_key = await keys.rotate("etl-nightly", grace=timedelta(hours=24))
        assert new_record.groups == ("etl",) and new_record.expires_at == clock.now + timedelta(days=90)
        await keys.authenticate("etl-nightly", key)
        await keys.authenticate("etl-nightly", new_key)
        clock.now += timedelta(hours=25)
        with pytest.raises(AuthenticationFailed, match="expired on 2030-01-12") as caught:
            await keys.authenticate("etl-nightly", key)
        assert caught.value.reason == "expired_api_key"
        await keys.authenticate("etl-nightly", new_key)

        # natural expiry
        clock.now += timedelta(days=91)
        with pytest.raises(AuthenticationFailed, match="expired"):
            await keys.authenticate("etl-nightly", new_key)
        # a new account, revoked
        _, other = await keys.create("bi-svc", groups=["bi-service"])
        assert (await keys.revoke("bi-svc")) == 1
        with pytest.raises(AuthenticationFailed, match="revoked") as caught:
            await keys.authenticate("bi-svc", other)
        assert caught.value.reason == "revoked_api_key"
        with pytest.raises(ApiKeyError):
            await keys.rotate("bi-svc", grace=timedelta(hours=1))
        with pytest.raises(ApiKeyError):
            await keys.revoke("nobody")
        states = {(r.name, r.state(clock.now)) for r in await keys.list()}
        assert states == {("etl-nightly", "expired"), ("bi-svc", "revoked")}

    run(store_factory, scenario)


def test_file_store_holds_only_hashes_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "api_keys.yaml"

    async def scenario() -> str:
        keys = ApiKeys(FileKeyStore(path))
        _, key = await keys.create("svc", groups=["g"])
        return key

    key = asyncio.run(scenario())
    text = path.read_text()
    secret = key.split("_", 2)[2]
    assert secret not in text and "scrypt$16384$8$1$" in text
    assert path.stat().st_mode & 0o077 == 0


def test_hashes_are_salted() -> None:
    first, second = hash_secret("same"), hash_secret("same")
    assert first != second
    assert verify_secret("same", first) and verify_secret("same", second)
    assert not verify_secret("other", first)
    assert not verify_secret("same", "garbage") and not verify_secret("same", "md5$x$y$z$a$b")


def test_name_validation(tmp_path: Path) -> None:
    async def scenario() -> None:
        keys = ApiKeys(FileKeyStore(tmp_path / "k.yaml"))
        for name in ("", "Upper", "has space", "../x", "x" * 65):
            with pytest.raises(ApiKeyError):
                await keys.create(name)

    asyncio.run(scenario())


def test_credentials_repr_masks_the_secret() -> None:
    credentials = Credentials(scheme="bearer", secret="eyJ.super.secret", session_user="u", client_address="1.2.3.4")
    assert "super" not in repr(credentials) and "***" in repr(credentials)
    assert "super" not in str(credentials)


def test_failure_limiter() -> None:
    now = [0.0]
    limiter = FailureLimiter(burst=3, per_minute=60, clock=lambda: now[0])
    assert limiter.retry_after("a") is None
    for _ in range(3):
        limiter.failed("a")
    wait = limiter.retry_after("a")
    assert wait is not None and 0.9 < wait <= 1.0
    assert limiter.retry_after("b") is None  # per address
    now[0] += 1.0
    assert limiter.retry_after("a") is None
    small = FailureLimiter(burst=1, per_minute=1, max_keys=2, clock=lambda: now[0])
    for address in ("x", "y", "z"):
        small.failed(address)
    assert small.retry_after("x") is None  # evicted: memory stays bounded
    assert small.retry_after("z") is not None
