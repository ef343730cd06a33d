"""The DuckDB engine in a process of its own (`isolation: process`, gateway/backends/duckdb_process.py) against
the same database opened in the gateway's process: for generated statements over values of every type, both
give the same columns, the same rows page by page and the same errors; a query is cancelled there as here; a
killed engine process fails only the queries it was running and the next query starts a new one; and the
process never outlives its gateway."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trino
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.backends.duckdb import DuckDBBackend
from gateway.backends.duckdb_process import EngineProcess, _Child, _receive
from gateway.errors import BackendUnavailable, GatewayError, QueryCanceled
from gateway.testing import GatewayProcess, RssWatchdog, _rss_bytes, process_tree
from tests.conftest import demo_config

T = TypeVar("T")

LONG_QUERY = "SELECT count(*) FROM range(100000000000) AS a(x) WHERE x % 7 = 3"


class Engines:
    """Both engines on one database, and an event loop kept across examples."""

    def __init__(self, database: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = DuckDBBackend(name="demo", path=database, memory_limit=256 * 1024**2)
        self.process = DuckDBBackend(name="demo", path=database, memory_limit=256 * 1024**2, isolation="process")
        self.run(self.thread.start())
        self.run(self.process.start())

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(work, 60))

    @property
    def child(self) -> EngineProcess:
        engine = self.process.engine
        assert isinstance(engine, EngineProcess)
        return engine

    def close(self) -> None:
        self.run(self.thread.close())
        self.run(self.process.close())
        self.loop.close()


@pytest.fixture(scope="module")
def engines(demo_database: Path) -> Iterator[Engines]:
    both = Engines(demo_database)
    yield both
    both.close()


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
SCALARS: st.SearchStrategy[str] = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.integers(min_value=-(10**37), max_value=10**37).map(lambda n: f"CAST({n} AS HUGEINT)"),
    st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**13), max_value=10**13)
    .map(lambda d: f"CAST('{d}' AS DECIMAL(18, 4))"),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: f"CAST('{f}' AS DOUBLE)"),
    TEXT.map(_quoted),
    st.booleans().map(str),
    st.dates().map(lambda d: f"DATE '{d.isoformat()}'"),
    st.datetimes().map(lambda d: f"TIMESTAMP '{d.isoformat(sep=' ')}'"),
    st.datetimes().map(lambda d: f"CAST('{d.isoformat(sep=' ')}+00' AS TIMESTAMPTZ)"),
    st.integers(min_value=0, max_value=10**6).map(lambda s: f"INTERVAL {s} SECOND"),
    st.uuids().map(lambda u: f"UUID '{u}'"),
    st.binary(max_size=6).map(lambda b: "'" + "".join(f"\\x{c:02X}" for c in b) + "'::BLOB"),
    st.just("NULL"),
    st.just("x"),  # the row number: rows differ
    st.just("chr(0)"),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3).map(lambda items: f"[{', '.join(items)}]" if items else "[]::INTEGER[]"),
    st.lists(inner, min_size=1, max_size=3).map(
        lambda items: "{" + ", ".join(f"'f{i}': {v}" for i, v in enumerate(items)) + "}"),
    st.tuples(st.integers(0, 9), inner).map(lambda kv: f"MAP {{{kv[0]}: {kv[1]}}}"),
), max_leaves=4)
FAILING = st.sampled_from([
    "CAST('abc' AS INTEGER)", "CAST(x AS TINYINT) * 1000", "9223372036854775807 + x", "nosuch_column",
    "error('boom ' || x)", "CAST(x + 300 AS UTINYINT)", "'2024-13-45'::DATE", "list_extract([1], 'a')",
])


def _outcome(engines: Engines, backend: DuckDBBackend, sql: str, pages: list[int]) -> tuple[Any, ...]:
    """(columns, pages of rows) or the error as a client sees it."""
    async def read() -> tuple[Any, ...]:
        execution = backend.execution(sql)
        try:
            await execution.start()
            batches: list[Any] = []
            for size in pages:
                batch = await execution.fetch(size)
                if batch is None:
                    break
                batches.append(list(batch))
            rest = 0
            while (batch := await execution.fetch(1000)) is not None:
                rest += len(batch)
            return ("rows", execution.columns, repr(batches), rest, execution.stats.rows)
        except GatewayError as error:
            return ("error", type(error).__name__, error.error_name, error.message)
        finally:
            await execution.cancel()

    return engines.run(read())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(VALUES, min_size=1, max_size=4),
       failing=st.one_of(st.none(), FAILING), rows=st.sampled_from([0, 1, 2, 17, 1500, 5000]),
       pages=st.lists(st.integers(1, 2000), max_size=4))
def test_the_engine_process_answers_as_the_engine_in_process(
        engines: Engines, values: list[str], failing: str | None, rows: int, pages: list[int]) -> None:
    expressions = values + ([failing] if failing is not None else [])
    select = ", ".join(f"{e} AS c{i}" for i, e in enumerate(expressions))
    sql = f"SELECT {select} FROM range({rows}) AS t(x) ORDER BY x"
    assert _outcome(engines, engines.process, sql, pages) == _outcome(engines, engines.thread, sql, pages)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sql=st.sampled_from([
    "SELECT * FROM tpch.customer WHERE c_custkey < 40", "SELECT n_name, count(*) FROM tpch.nation GROUP BY 1",
    "SELECT * FROM tpch.nosuch", "SELECT 1 +", "SELECT r_name FROM tpch.region WHERE r_regionkey = 'x'"]))
def test_describe_tables_and_estimates_are_the_same(engines: Engines, sql: str) -> None:
    async def learn(backend: DuckDBBackend) -> tuple[Any, ...]:
        try:
            described: Any = await backend.describe(sql)
        except GatewayError as error:
            described = (type(error).__name__, error.error_name, error.message)
        return described, await backend.estimate_scan_bytes(sql)

    assert engines.run(learn(engines.process)) == engines.run(learn(engines.thread))
    assert engines.run(engines.process.tables()) == engines.run(engines.thread.tables())


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit is reaped by whoever adopted it, perhaps later)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_a_running_query_is_cancelled_in_the_engine_process(engines: Engines) -> None:
    async def cancel_while_running() -> tuple[BaseException | None, float]:
        execution = engines.process.execution(LONG_QUERY)
        started = asyncio.create_task(execution.start())
        while engines.process.busy_threads < 1:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        began = time.monotonic()
        await execution.cancel()
        try:
            await started
        except QueryCanceled as error:
            return error, time.monotonic() - began
        return None, time.monotonic() - began

    pid = engines.child.pid
    error, seconds = engines.run(cancel_while_running())
    assert isinstance(error, QueryCanceled) and seconds < 5
    assert engines.process.busy_threads == 0
    assert engines.child.pid == pid  # the process goes on; the next query runs there
    assert _outcome(engines, engines.process, "SELECT 42", []) == ("rows", engines.run(
        engines.process.describe("SELECT 42")), "[]", 1, 1)


def test_a_task_waiting_on_the_engine_process_can_be_cancelled(engines: Engines) -> None:
    async def abandon() -> None:
        execution = engines.process.execution(LONG_QUERY)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(execution.start(), 0.3)  # cancels the awaiting task: the query is told to stop

    engines.run(abandon())
    _until(lambda: engines.process.busy_threads == 0)
    assert _outcome(engines, engines.process, "SELECT 7", [])[3] == 1


@pytest.mark.parametrize("running", [0, 1, 3])
def test_a_killed_engine_process_fails_its_queries_and_the_next_query_starts_another(
        engines: Engines, running: int) -> None:
    async def kill_with_queries_running() -> list[BaseException | None]:
        executions = [engines.process.execution(LONG_QUERY) for _ in range(running)]
        started = [asyncio.create_task(e.start()) for e in executions]
        while engines.process.busy_threads < running:
            await asyncio.sleep(0.01)
        pid = engines.child.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        return list(await asyncio.gather(*started, return_exceptions=True))

    old = engines.child.pid
    outcomes = engines.run(kill_with_queries_running())
    assert all(isinstance(o, BackendUnavailable) and "engine process ended" in o.message for o in outcomes)
    _until(lambda: engines.child.pid != old)  # the reader saw the end, or the next call will start another

    async def next_query() -> list[Any]:
        for _ in range(3):  # a call sent just before the reader saw the end fails like the running ones
            try:
                execution = engines.process.execution("SELECT 5")
                await execution.start()
                return list(await execution.fetch(10) or [])
            except BackendUnavailable:
                await asyncio.sleep(0.05)
        raise AssertionError("no new engine process")

    assert engines.run(next_query()) == [(5,)]
    assert engines.child.pid not in (None, old)
    assert engines.process.busy_threads == 0


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(queries=st.lists(st.sampled_from(["short", "long", "paged"]), min_size=1, max_size=10),
       kill_after=st.floats(0, 0.2), second_kill=st.booleans())
def test_queries_in_flight_when_the_engine_process_dies_end_and_the_next_ones_run(
        engines: Engines, queries: list[str], kill_after: float, second_kill: bool) -> None:
    """Whatever runs when the child is killed (once, or again while the next one starts) ends: with its rows,
    or with BACKEND_ERROR; none hangs, and queries after it run on a new child."""
    statements = {"short": ("SELECT 1", 1), "long": (LONG_QUERY, 1),
                  "paged": ("SELECT x FROM range(20000) AS t(x)", 20000)}

    async def one(kind: str) -> int | None:
        sql, _ = statements[kind]
        execution = engines.process.execution(sql)
        try:
            await execution.start()
            rows = 0
            while (batch := await execution.fetch(1000)) is not None:
                rows += len(batch)
            return rows
        except BackendUnavailable:
            return None
        finally:
            await execution.cancel()

    async def scenario() -> list[int | None]:
        running = [asyncio.create_task(one(kind)) for kind in queries]
        await asyncio.sleep(kill_after)
        for _ in range(2 if second_kill else 1):
            pid = engines.child.pid
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.05)
        return list(await asyncio.wait_for(asyncio.gather(*running), 30))

    outcomes = engines.run(scenario())
    for kind, rows in zip(queries, outcomes, strict=True):
        assert rows is None or (kind != "long" and rows == statements[kind][1])

    async def next_query() -> int | None:
        for _ in range(3):  # a call sent just before the reader saw the end fails like the running ones
            if (rows := await one("paged")) is not None:
                return rows
            await asyncio.sleep(0.05)
        return None

    assert engines.run(next_query()) == 20000
    _until(lambda: engines.process.busy_threads == 0)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_engine_process_outlives_signals_to_its_group_until_the_gateway_lets_it_go(
        engines: Engines, sig: int) -> None:
    """Ctrl-C in a terminal, or a service manager's SIGTERM to every process of the service, reach the child
    too; the gateway drains its queries first, so the child keeps answering until its socket closes."""
    pid = engines.child.pid
    assert pid is not None
    os.kill(pid, sig)
    time.sleep(0.2)
    assert engines.child.pid == pid
    assert _outcome(engines, engines.process, "SELECT 3", [])[3] == 1


def test_closing_the_backend_ends_the_engine_process_even_mid_query(demo_database: Path) -> None:
    async def close_mid_query() -> int:
        backend = DuckDBBackend(name="demo", path=demo_database, isolation="process")
        await backend.start()
        engine = backend.engine
        assert isinstance(engine, EngineProcess) and engine.pid is not None
        pid = engine.pid
        execution = backend.execution(LONG_QUERY)
        started = asyncio.create_task(execution.start())
        while backend.busy_threads < 1:
            await asyncio.sleep(0.01)
        await backend.close()
        with pytest.raises(BackendUnavailable):
            await started
        return pid

    pid = asyncio.run(asyncio.wait_for(close_mid_query(), 30))
    assert not Path(f"/proc/{pid}").exists()


def test_an_unopenable_database_is_a_clear_start_error(tmp_path: Path) -> None:
    (tmp_path / "broken.duckdb").write_bytes(b"not a database" * 100)
    backend = DuckDBBackend(name="demo", path=tmp_path / "broken.duckdb", isolation="process")
    with pytest.raises(GatewayError, match="cannot open DuckDB database"):
        asyncio.run(backend.start())


def test_a_gateway_with_an_engine_process_applies_policies_and_takes_the_process_down(
        demo_database: Path, tmp_path: Path) -> None:
    config = demo_config(demo_database)
    config["backends"]["demo"]["isolation"] = "process"
    gateway = GatewayProcess(tmp_path, config)
    try:
        children = [int(c) for task in Path(f"/proc/{gateway.process.pid}/task").iterdir()
                    for c in (task / "children").read_text().split()]
        assert len(children) == 1
        rows = {}
        for user in ("admin", "alice"):
            with trino.dbapi.connect(host=gateway.host, port=gateway.port, user=user, catalog="demo",
                                     schema="tpch") as connection:
                cursor = connection.cursor()
                cursor.execute("SELECT count(*) FROM orders")
                rows[user] = cursor.fetchall()[0][0]
        assert 0 < rows["alice"] < rows["admin"]  # alice's row filter ran in the engine process
    finally:
        gateway.stop()
    _until(lambda: not Path(f"/proc/{children[0]}").exists())


@pytest.mark.parametrize("value", [lambda: None, threading.Lock()])
def test_a_reply_the_engine_process_cannot_encode_is_an_error_never_silence(value: Any) -> None:
    """The child answers every call: a value pickle refuses becomes BACKEND_ERROR for the waiting query."""
    ours, theirs = socket.socketpair()
    try:
        child = _Child(theirs)
        child._answer(7, lambda: value)
        call, ok, reply = _receive(ours)
        assert (call, ok) == (7, False)
        assert reply[0] == "BackendError" and "the engine failed" in reply[1]
    finally:
        ours.close()
        theirs.close()


def test_a_memory_watchdog_counts_and_stops_the_engine_process_too(demo_database: Path, tmp_path: Path) -> None:
    """Tests bound their gateway's memory with RssWatchdog: with an engine process that bound must cover it."""
    config = demo_config(demo_database)
    config["backends"]["demo"]["isolation"] = "process"
    gateway = GatewayProcess(tmp_path, config)
    try:
        tree = process_tree(gateway.process.pid)
        assert len(tree) == 2
        own = _rss_bytes(gateway.process.pid)
        with RssWatchdog(gateway.process.pid, limit_bytes=own + 1) as watchdog:
            _until(lambda: watchdog.killed)
        assert watchdog.peak_bytes > own
        gateway.process.wait(10)
        _until(lambda: not any(_running(pid) for pid in tree))
    finally:
        gateway.stop()
