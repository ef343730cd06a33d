"""The audit trail's pure parts and the SQLite store: chain, canonical encoding, tamper detection, WORM."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.chain import GENESIS, Chain, Checkpoint, hash_of
from gateway.audit.journal import Journal, orphans
from gateway.audit.record import AuditRecord, redact_message, redact_sql, utc_now
from gateway.audit.stores.sqlite import SQLiteStore
from gateway.audit.verify import Verifier


def record(n: int, **fields: Any) -> AuditRecord:
    now = utc_now()
    return AuditRecord(event_id=f"e{n}", received_at=now, finished_at=now, user_name="alice", sql=f"SELECT {n}",
                       tables_read=["demo.tpch.customer"], columns_read={"demo.tpch.customer": ["c_name"]},
                       execution_ms=1.5, row_count=n, **fields)


def chained(count: int, stream: str = "s1") -> list[AuditRecord]:
    chain = Chain(stream)
    records = [record(i) for i in range(1, count + 1)]
    for r in records:
        chain.seal(r)
    return records


def rows(records: list[AuditRecord]) -> list[tuple[int, dict[str, Any]]]:
    return [(i, r.to_dict()) for i, r in enumerate(records, start=1)]


def verify(data: list[tuple[int, dict[str, Any]]], checkpoints: list[Checkpoint] | None = None) -> Any:
    verifier = Verifier()
    verifier.add(data)
    return verifier.finish(checkpoints or [], {})


def test_chain_links_each_record_to_the_previous_one() -> None:
    records = chained(3)
    assert [r.sequence_number for r in records] == [1, 2, 3]
    assert records[0].prev_hash == GENESIS
    assert records[1].prev_hash == records[0].record_hash
    assert all(hash_of(r.to_dict()) == r.record_hash for r in records)


def test_journal_line_is_the_canonical_record() -> None:
    chain = Chain("s")
    r = record(1)
    line = chain.seal(r)
    assert json.loads(line) == r.to_dict()


def test_an_untouched_chain_verifies() -> None:
    report = verify(rows(chained(5)))
    assert report.ok and report.records == 5


def test_verify_names_a_modified_record() -> None:
    data = rows(chained(5))
    data[2][1]["user_name"] = "mallory"
    report = verify(data)
    assert report.kinds() == {"modified"}
    assert report.problems[0].sequence == 3 and report.problems[0].id == 3


def test_verify_sees_a_modified_record_whose_hash_was_recomputed() -> None:
    data = rows(chained(5))
    data[1][1]["row_count"] = 999
    data[1][1]["record_hash"] = hash_of(data[1][1])
    report = verify(data)
    assert report.kinds() == {"modified"}
    assert report.problems[0].sequence == 2


def test_verify_names_deleted_records() -> None:
    data = rows(chained(6))
    del data[2:4]
    report = verify(data)
    assert report.kinds() == {"deleted"}
    assert "records 3..4 are missing" in str(report.problems[0])


def test_verify_names_an_inserted_record() -> None:
    data = rows(chained(5))
    forged = dict(data[2][1], event_id="forged", user_name="mallory")
    forged["record_hash"] = hash_of(forged)
    data.append((99, forged))
    report = verify(data)
    assert {"inserted"} <= report.kinds()
    assert any(p.kind == "inserted" and p.id == 99 for p in report.problems)


def test_verify_names_reordered_records() -> None:
    data = rows(chained(5))
    data[1], data[3] = (data[1][0], data[3][1]), (data[3][0], data[1][1])
    report = verify(data)
    assert report.kinds() == {"reordered"}


def test_verify_detects_a_truncated_tail_through_checkpoints() -> None:
    records = chained(10)
    checkpoint = Checkpoint("s1", 10, records[-1].record_hash, utc_now())
    report = verify(rows(records[:7]), [checkpoint])
    assert report.kinds() == {"truncated"}
    assert report.problems[0].sequence == 10


def test_verify_detects_records_appended_after_the_final_checkpoint() -> None:
    records = chained(6)
    checkpoint = Checkpoint("s1", 5, records[4].record_hash, utc_now(), final=True)
    assert verify(rows(records), [checkpoint]).kinds() == {"inserted"}


def test_redaction_replaces_literals_and_keeps_the_shape() -> None:
    assert redact_sql("SELECT * FROM t WHERE name = 'Bob' AND id IN (1, 2)") == \
        "SELECT * FROM t WHERE name = ? AND id IN (?, ?)"
    assert redact_sql("SELEC 'secret'") == "<statement redacted: not parseable>"
    assert redact_message("bad value 'hunter2'") == "bad value '…'"


def test_journal_keeps_unstored_records_for_the_next_start(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "dead", segment_bytes=200)
    journal.open()
    chain = Chain("dead")
    for r in [record(i) for i in range(1, 6)]:
        journal.append(chain.seal(r), r.sequence_number)
    journal.acknowledge(2)
    journal.close(stored_through=2)
    found = orphans(tmp_path, "alive")
    replayed = [r["sequence_number"] for orphan in found for r in orphan.records()[0]]
    for orphan in found:
        orphan.release(delete=True)
    assert replayed[-3:] == [3, 4, 5] and replayed == sorted(replayed)
    assert not list(tmp_path.glob("*.jsonl"))


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    chain = Chain("torn")
    (tmp_path / "torn.000001.jsonl").write_text(chain.seal(record(1)) + "\n" + '{"event_id": "e2", "str')
    [orphan] = orphans(tmp_path, "alive")
    assert [r["sequence_number"] for r in orphan.records()[0]] == [1]
    orphan.release(delete=True)


def test_sqlite_store_is_append_only_and_verifiable(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"

    async def scenario() -> Any:
        store = SQLiteStore(path)
        await store.open()
        records = chained(8, "sq")
        await store.write(records[:5])
        await store.write(records[3:])  # a batch written twice (lost acknowledgement) is stored once
        await store.write_checkpoint(Checkpoint("sq", 8, records[-1].record_hash, utc_now()))
        verifier = Verifier()
        async for batch in store.scan(batch=3):
            verifier.add(batch)
        report = verifier.finish(await store.checkpoints(), await store.purges())
        await store.close()
        return report

    report = asyncio.run(scenario())
    assert report.ok and report.records == 8
    connection = sqlite3.connect(path)
    for statement in ("UPDATE queries SET user_name = 'x'", "DELETE FROM queries", "DELETE FROM checkpoints"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            connection.execute(statement)
    # Someone with file access lifts the guard and cuts the tail: the checkpoint gives it away.
    connection.execute("DROP TRIGGER queries_no_delete")
    connection.execute("DELETE FROM queries WHERE sequence_number > 6")
    connection.commit()
    connection.close()

    async def reverify() -> Any:
        store = SQLiteStore(path)
        await store.open()
        verifier = Verifier()
        async for batch in store.scan():
            verifier.add(batch)
        report = verifier.finish(await store.checkpoints(), await store.purges())
        await store.close()
        return report

    assert asyncio.run(reverify()).kinds() == {"truncated"}


def test_purge_keeps_the_remaining_chain_verifiable(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, Any]:
        store = SQLiteStore(tmp_path / "audit.db")
        await store.open()
        records = chained(6, "old")
        for r in records[:4]:
            r.received_at = "2020-01-01T00:00:00.000000Z"
        chain = Chain("old")
        for r in records:
            chain.seal(r)  # reseal with the old times
        await store.write(records)
        deleted = await store.purge("2021-01-01T00:00:00.000000Z")
        verifier = Verifier()
        async for batch in store.scan():
            verifier.add(batch)
        report = verifier.finish(await store.checkpoints(), await store.purges())
        await store.close()
        return deleted, report

    deleted, report = asyncio.run(scenario())
    assert deleted == 4
    assert report.ok and report.records == 2
