"""The fast encoders write exactly what the reference encoders write: the canonical form every stored hash was
computed over (chain.py), and the values of a log line (logs.py); and batched writing keeps the chain and
the order. Property tests over any value and any interleaving."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.audit.chain import Chain, _reference, canonical
from gateway.audit.record import FIELDS, AuditRecord, utc_now
from gateway.audit.stores.sqlite import MAX_ROWS_PER_INSERT, SQLiteStore, insert_rows
from gateway.audit.text import ESCAPED
from gateway.audit.trail import AuditTrail, TrailOptions
from gateway.audit.verify import Verifier
from gateway.cost.model import Charge
from gateway.logs import _text_value
from gateway.metrics import Metrics

# any text, including what no store keeps (NUL, lone surrogates), control characters, DEL, the escape mark
texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=12) | st.sampled_from(
    ["", "\x00", "\ud800", "\x7f", "\u2028", ESCAPED, f"{ESCAPED}x", "\\u0000", '"', "\\", "é", "\U0001f600"])
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [1e-05, 6.657289300027249e-06, 1e16, 1e-7, 0.1, -0.0, 5e-324, 1.7976931348623157e308, 123.456])
ints = st.integers(min_value=-(2**70), max_value=2**70) | st.sampled_from([2**63, 2**64, -(2**63) - 1])
scalars = st.none() | st.booleans() | ints | floats | texts
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                      | st.dictionaries(texts, inner, max_size=4), max_leaves=12)


def reference_or_error(data: dict[str, Any]) -> bytes | type[Exception]:
    try:
        return _reference(data)
    except (ValueError, UnicodeEncodeError) as error:
        return type(error)


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(texts, values, max_size=8))
def test_canonical_is_the_reference_encoding_of_any_dict(data: dict[str, Any]) -> None:
    expected = reference_or_error(data)
    try:
        assert canonical(data) == expected
    except (ValueError, UnicodeEncodeError) as error:
        assert type(error) is expected


def _field(kind: str) -> st.SearchStrategy[Any]:
    listed = st.lists(texts, max_size=3)
    return {"text": st.none() | texts, "int": st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1),
            "float": st.none() | st.floats(allow_nan=False, allow_infinity=False) | st.integers(-5, 5),
            "bool": st.booleans(), "time": st.just("2026-01-31T12:00:00.000000Z"),
            "json": listed}[kind]


def _records() -> st.SearchStrategy[AuditRecord]:
    skip = {"stream", "sequence_number", "prev_hash", "record_hash", "columns_read"}
    fields = {name: _field(kind) for name, kind in FIELDS if name not in skip}
    fields["event_id"] = texts.filter(bool)
    fields["frontend"] = texts
    fields["decision"] = texts
    fields["columns_read"] = st.dictionaries(texts, st.lists(texts, max_size=3), max_size=3)
    return st.fixed_dictionaries(fields).map(lambda values: AuditRecord(**values))


@settings(max_examples=40, deadline=None)
@given(st.lists(_records(), min_size=1, max_size=4))
def test_a_sealed_record_hashes_its_reference_encoding_and_the_journal_line_is_it(
        records: list[AuditRecord]) -> None:
    """With `storable`, exactly what `make_storable` then the reference encoder give: escaped where needed
    (NUL, surrogates, the escape mark in front), untouched otherwise."""
    chain, previous = Chain("s"), "0" * 64
    for record in records:
        escaped = copy.deepcopy(record)
        escaped.make_storable()
        line = chain.seal(record, storable=True)
        assert record.to_dict() == {**escaped.to_dict(), "stream": "s", "sequence_number": record.sequence_number,
                                    "prev_hash": previous, "record_hash": record.record_hash}
        assert record.record_hash == hashlib.sha256(_reference(record.to_dict())).hexdigest()
        assert line.encode() == _reference(record.to_dict())[:-1] + f',"record_hash":"{record.record_hash}"}}'.encode()
        previous = record.record_hash


@settings(max_examples=150, deadline=None)
@given(values)
def test_a_text_log_value_is_its_ascii_json(value: Any) -> None:
    """Whatever the value (the client's SQL, source, tags), exactly what the JSON encoder writes: ASCII only,
    quotes, backslashes, control characters and DEL escaped, so one line stays one line."""
    try:
        expected = json.dumps(value, default=str)
    except ValueError:
        return
    assert _text_value(value) == expected


# -- batching: the writer stores what the query path sealed, in chain order ----------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=6), min_size=1, max_size=5),
       st.integers(1, 6), st.booleans())
def test_batches_store_every_attempt_in_chain_order_for_any_interleaving(
        tmp_path: Path, attempts: list[list[int]], batch_size: int, with_charges: bool) -> None:
    """Concurrent attempts (one task each, yielding to the others a drawn number of times before each
    record) end in any interleaving; whatever the batch size, the store holds exactly the appended records
    in the order they were appended, the chain verifies, every charge is stored with its record, and the
    journal is empty."""
    directory = tmp_path / f"run-{time.monotonic_ns()}"
    appended: list[str] = []

    async def scenario() -> None:
        store = SQLiteStore(directory / "audit.db")
        trail = AuditTrail(store=store, metrics=Metrics(), options=TrailOptions(
            spool_dir=directory / "spool", batch_size=batch_size, flush_interval_seconds=0.001))
        await trail.start()

        async def attempt(task: int, yields: list[int]) -> None:
            for n, count in enumerate(yields):
                for _ in range(count):
                    await asyncio.sleep(0)
                now = utc_now()
                record = AuditRecord(event_id=f"t{task}-{n}", received_at=now, finished_at=now,
                                     sql=f"SELECT {n}", cost=1e-06 * n if with_charges else None)
                charge = Charge(event_id=record.event_id, query_id=None, charged_at=now, user_name=None,
                                cost_center="CC-1", backend="demo", statement_type="select", resource_group=None,
                                cache_hit=False, cost=1e-06 * n, figures={"rows": n}, tags={}
                                ) if with_charges else None
                trail.append(record, charge)
                appended.append(record.event_id)

        await asyncio.gather(*(attempt(task, yields) for task, yields in enumerate(attempts)))
        await trail.stop()
        store = SQLiteStore(directory / "audit.db")
        await store.open()
        try:
            verifier, stored = Verifier(), []
            async for page in store.scan():
                verifier.add(page)
                stored += [fields["event_id"] for _, fields in page]
            report = verifier.finish(await store.checkpoints(), await store.purges())
            charged = await store.charges("0", "9")
        finally:
            await store.close()
        assert stored == appended
        assert report.ok and report.records == len(appended)
        assert sorted(c["event_id"] for c in charged) == (sorted(appended) if with_charges else [])
        assert not list((directory / "spool").glob("*.jsonl"))

    asyncio.run(scenario())


# what SQLite itself stores: text without lone surrogates, 64-bit integers, any float, blobs, NULL
_stored_scalars = (st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | floats
                   | st.text(st.characters(codec="utf-8"), max_size=12) | st.binary(max_size=8))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5).flatmap(lambda width: st.tuples(
    st.just(width), st.lists(st.tuples(st.integers(0, 40), *[_stored_scalars] * width), max_size=700))),
    st.sampled_from([None, 7, 40, 999]))
def test_rows_inserted_in_chunks_are_exactly_the_rows_executemany_inserts(
        table: tuple[int, list[tuple[Any, ...]]], variable_limit: int | None) -> None:
    """The SQLite store writes a batch several rows per statement (insert_rows); the table it leaves is the
    one a statement per row leaves: every value and its storage class, in order, duplicates of a unique key
    ignored alike; and a batch of n rows takes about n/256 + log2(n) statements, never one per row."""
    width, rows = table
    connection = sqlite3.connect(":memory:", isolation_level=None)
    if variable_limit is not None:
        connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, variable_limit)
    columns = ", ".join(f"c{i}" for i in range(width))
    for name in ("chunked", "each"):
        connection.execute(f"CREATE TABLE {name} (k INTEGER UNIQUE, {columns})")
    statements: list[str] = []
    connection.set_trace_callback(statements.append)
    insert_rows(connection, f"INSERT OR IGNORE INTO chunked (k, {columns})", rows)
    connection.set_trace_callback(None)
    connection.executemany(f"INSERT OR IGNORE INTO each (k, {columns}) VALUES ({', '.join('?' * (width + 1))})",
                           rows)
    shown = ", ".join(f"typeof(c{i}), c{i}" for i in range(width))
    chunked, each = (connection.execute(f"SELECT rowid, k, {shown} FROM {name} ORDER BY rowid").fetchall()
                     for name in ("chunked", "each"))
    assert repr(chunked) == repr(each)  # repr: NaN is stored as NULL by both, -0.0 kept apart from 0.0
    per_statement = max(1, min(MAX_ROWS_PER_INSERT, (variable_limit or 32766) // (width + 1)))
    assert len(statements) <= len(rows) // per_statement + per_statement.bit_length()
    connection.close()


def test_a_refused_row_refuses_its_whole_batch_as_executemany_does() -> None:
    """A NOT NULL violation anywhere in a batch raises, so the store rolls the batch back and bisects."""
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.execute("CREATE TABLE t (a TEXT NOT NULL)")
    rows = [("x",)] * 300 + [(None,)] + [("y",)] * 20
    connection.execute("BEGIN")
    try:
        insert_rows(connection, "INSERT INTO t (a)", rows)
    except sqlite3.IntegrityError:
        connection.execute("ROLLBACK")
    else:
        raise AssertionError("a NULL in a NOT NULL column was inserted")
    assert connection.execute("SELECT count(*) FROM t").fetchone() == (0,)
