"""The trail's writer against a real SQLite store that refuses some records (a trigger the test adds): for
any mix of refused and good records, in any batch size, every good record is stored in order, every refused
one is quarantined exactly once with its hash intact, and the writer never stalls. Journals left by a dead
gateway with refused, malformed and unreadable lines replay without wedging."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.audit.chain import Chain, hash_of
from gateway.audit.quarantine import kept_in
from gateway.audit.record import AuditRecord, utc_now
from gateway.audit.stores.sqlite import SQLiteStore
from gateway.audit.trail import AuditTrail, TrailOptions
from gateway.metrics import Metrics

POISON = "poison-pill"


def refusing_store(path: Path) -> SQLiteStore:
    store = SQLiteStore(path)
    asyncio.run(_prepare(store))
    connection = sqlite3.connect(path)
    connection.execute(f"CREATE TRIGGER IF NOT EXISTS refuse BEFORE INSERT ON queries WHEN NEW.sql LIKE '%{POISON}%' "
                       "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
    connection.commit()
    connection.close()
    return SQLiteStore(path)


async def _prepare(store: SQLiteStore) -> None:
    await store.open()
    await store.close()


def record(sql: str) -> AuditRecord:
    now = utc_now()
    return AuditRecord(event_id=uuid.uuid4().hex, received_at=now, finished_at=now, user_name="u", sql=sql)


async def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        await asyncio.sleep(0.01)


def stored_sql(path: Path) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        return [row[0] for row in connection.execute("SELECT sql FROM queries ORDER BY id")]
    finally:
        connection.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(poisoned=st.lists(st.booleans(), min_size=1, max_size=40), batch_size=st.integers(1, 16))
def test_refused_records_never_block_the_rest(tmp_path_factory: pytest.TempPathFactory, poisoned: list[bool],
                                             batch_size: int) -> None:
    workdir = tmp_path_factory.mktemp("quarantine")
    path = workdir / "audit.db"
    store = refusing_store(path)
    options = TrailOptions(spool_dir=workdir / "spool", batch_size=batch_size, flush_interval_seconds=0.001,
                           on_failure="deny", probe_interval_seconds=0.05)
    sqls = [f"SELECT '{POISON}' AS n{i}" if bad else f"SELECT {i}" for i, bad in enumerate(poisoned)]

    async def run() -> AuditTrail:
        trail = AuditTrail(store=store, options=options, metrics=Metrics())
        await trail.start()
        for sql in sqls:
            trail.admit()  # deny mode: never refused, the store is up
            trail.append(record(sql))
        await wait_until(lambda: trail.status()["pending_records"] == 0)
        await trail.stop()
        return trail

    trail = asyncio.run(run())
    good = [sql for sql, bad in zip(sqls, poisoned, strict=True) if not bad]
    assert stored_sql(path) == good  # in order, none lost
    assert trail.quarantine.count == sum(poisoned)
    kept = [json.loads(line) for file in (workdir / "spool" / "quarantine").glob("*.jsonl")
            for line in file.read_text().splitlines()] if any(poisoned) else []
    assert sorted(entry["record"]["sql"] for entry in kept) == sorted(s for s in sqls if POISON in s)
    for entry in kept:  # kept as sealed: its hash still verifies
        assert hash_of(entry["record"]) == entry["record"]["record_hash"]
    assert len(kept_in(workdir / "spool" / "quarantine")) == sum(poisoned)


def test_a_poisoned_journal_replays_without_wedging(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    store = refusing_store(path)
    spool = tmp_path / "spool"
    spool.mkdir()
    chain = Chain("dead-gateway")
    lines = [chain.seal(record(sql)) for sql in ("SELECT 1", f"SELECT '{POISON}'", "SELECT 2")]
    malformed = json.loads(chain.seal(record("SELECT 3")))
    malformed["received_at"] = "yesterday"
    lines += [json.dumps(malformed), "not json at all", "[1, 2]", chain.seal(record("SELECT 4"))]
    (spool / "dead-gateway.000001.jsonl").write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe\n")

    async def run() -> AuditTrail:
        trail = AuditTrail(store=store, options=TrailOptions(spool_dir=spool, flush_interval_seconds=0.001),
                           metrics=Metrics())
        await trail.start()
        trail.append(record("SELECT 'after replay'"))
        await wait_until(lambda: trail.status()["pending_records"] == 0 and trail.quarantine.count == 5)
        await trail.stop()
        return trail

    trail = asyncio.run(run())
    assert stored_sql(path) == ["SELECT 1", "SELECT 2", "SELECT 4", "SELECT 'after replay'"]
    assert trail.quarantine.count == 5  # the refused one, the malformed one, three unreadable lines
    assert not list(spool.glob("dead-gateway.*.jsonl"))
