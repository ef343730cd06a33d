"""DuckDB in an engine process of its own: the gateway's event loop and DuckDB stop sharing one GIL.

DuckDB's Python client takes the GIL after every step of a running query and turns result rows into Python
objects under it, so in the gateway's process every query's engine work waits for the event loop and the
loop waits for it (measured in docs/performance.md: a point query's DuckDB part costs 1.5-1.8 ms of CPU beside
a busy loop against 0.9-1.2 ms beside an idle one). With `isolation: process` the database is opened by a
child process (`python -m gateway.backends.duckdb_process FD`) that runs each call on a worker thread of its
own, as `DuckDBEngine` does in-process; the gateway talks to it over one Unix socket, read by the event loop
itself (no helper thread on the gateway's side to wake). Frames are a 4-byte big-endian length and a pickle:
requests `(call id, kind, arguments)`, replies `(call id, ok, value)`, with errors sent as
(class name, message, Trino error name) and raised again here as the same `gateway.errors` class.

The child is the gateway's own code started by it and talks only to it, so pickles from it are trusted. If it
dies (killed for memory, a crash inside the engine), every call in flight fails with BACKEND_ERROR and the
next call starts a new one. It exits when the gateway closes the socket, also while queries are running.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gateway import errors
from gateway.backends.base import PrefetchingExecution
from gateway.backends.duckdb import (
    CursorQuery,
    ScanEstimator,
    describe_query,
    list_tables,
    on_new_cursor,
    open_database,
)
from gateway.errors import BackendError, GatewayError
from gateway.relations import Column, Row, Table

HEADER = struct.Struct("!I")
MAX_FRAME_BYTES = 1 << 30  # a page of rows is bounded by the prefetch and page sizes far below this
START_SECONDS = 60.0  # the child imports DuckDB and opens the database
STOP_SECONDS = 2.0
COLUMN_DESCRIPTIONS = 1024  # distinct result shapes kept decoded
WORKERS = 8  # calls the child runs at once, as DuckDBEngine's threads

_PROTOCOL = pickle.HIGHEST_PROTOCOL
_ERROR_CLASSES: dict[str, type[GatewayError]] = {
    cls.__name__: cls for cls in (errors.UserError, errors.NotFound, errors.QueryCanceled,
                                  errors.InsufficientResources, errors.BackendError)}


def _frame(message: Any) -> bytes:
    payload = pickle.dumps(message, protocol=_PROTOCOL)
    return HEADER.pack(len(payload)) + payload


class EngineProcessEnded(errors.BackendUnavailable):
    pass


class _Channel:
    """One child and the socket to it: the calls awaiting its replies, and the frames not yet written. A new
    child gets a new channel, so nothing of a dead one's leaks into it."""

    def __init__(self, child: subprocess.Popen[bytes], writer: asyncio.StreamWriter) -> None:
        self.child = child
        self.writer = writer
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.outbox: list[bytes] = []
        self.reader: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return self.reader is not None and not self.reader.done() and not self.writer.is_closing()

    def send(self, frame: bytes) -> None:
        """Calls made in one turn of the event loop go out in one write: each write wakes the child."""
        if not self.outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self.outbox.append(frame)

    def _flush(self) -> None:
        frames, self.outbox = self.outbox, []
        if not self.writer.is_closing():
            self.writer.write(b"".join(frames))

    async def read_replies(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                call, ok, value = await _read(reader)
                waiter = self.waiting.pop(call, None)
                if waiter is None or waiter.done():
                    continue  # its caller gave up (cancelled); the child's side was told to stop
                if ok:
                    waiter.set_result(value)
                else:
                    waiter.set_exception(_error(value))
        except (OSError, EOFError, asyncio.IncompleteReadError, pickle.UnpicklingError, ValueError):
            pass
        finally:
            self.writer.close()
            waiting, self.waiting = self.waiting, {}
            for waiter in waiting.values():
                if not waiter.done():
                    waiter.set_exception(EngineProcessEnded(
                        "The backend's engine process ended while the query ran; run it again"))


class EngineProcess:
    """The gateway's side: starts the child, sends it calls, hands each reply to the call awaiting it."""

    def __init__(self, path: Path, config: dict[str, Any], *, label: str, workers: int = WORKERS) -> None:
        self._path = path
        self._config = config
        self._label = label
        self._workers = workers
        self._calls = itertools.count(1)
        self._queries = itertools.count(1)
        self._channel: _Channel | None = None
        self._starting: asyncio.Lock | None = None
        self._closed = False
        self._columns: dict[bytes, tuple[Column, ...]] = {}

    def columns(self, described: bytes) -> tuple[Column, ...]:
        columns = self._columns.get(described)
        if columns is None:
            if len(self._columns) >= COLUMN_DESCRIPTIONS:
                self._columns.clear()
            columns = self._columns[described] = pickle.loads(described)
        return columns

    @property
    def busy_threads(self) -> int:
        """Calls the child is working on (its threads inside DuckDB, or about to be)."""
        return len(self._channel.waiting) if self._channel is not None else 0

    @property
    def pid(self) -> int | None:
        channel = self._channel
        return channel.child.pid if channel is not None and channel.child.poll() is None else None

    async def start(self) -> str | None:
        """Start the child; the database's own name."""
        self._starting = asyncio.Lock()
        async with self._starting:
            return await self._spawn()

    async def _spawn(self) -> str | None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "gateway.backends.duckdb_process", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=1 << 20)
        writer.write(_frame({"path": str(self._path), "config": self._config, "workers": self._workers}))
        try:
            ok, value = await asyncio.wait_for(_read(reader), START_SECONDS)
        except (OSError, EOFError, asyncio.IncompleteReadError, TimeoutError):
            ok, value = False, None
        if not ok:
            writer.close()
            child.kill()
            await _reaped(child)
            if value is None:
                raise BackendError(f"the engine process of backend {self._label!r} did not start")
            raise _error(value)
        channel = _Channel(child, writer)
        channel.reader = asyncio.get_running_loop().create_task(channel.read_replies(reader))
        self._channel = channel
        return str(value) if value is not None else None

    async def call(self, kind: str, *arguments: Any) -> Any:
        channel = await self._connected()
        call = next(self._calls)
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        channel.waiting[call] = waiter
        channel.send(_frame((call, kind, arguments)))
        try:
            return await waiter
        finally:
            channel.waiting.pop(call, None)

    def tell(self, kind: str, *arguments: Any) -> None:
        """A call without a reply (cancel): dropped when the child is gone, whose queries went with it."""
        if self._channel is not None and self._channel.open:
            self._channel.send(_frame((0, kind, arguments)))

    async def _connected(self) -> _Channel:
        if self._closed:
            raise BackendError(f"backend {self._label!r} is closed")
        channel = self._channel
        if channel is not None and channel.open:
            return channel
        assert self._starting is not None  # started once
        async with self._starting:
            if self._channel is None or not self._channel.open:
                if self._channel is not None:
                    self._channel.child.kill()  # its socket is closed: nothing it does can reach anyone
                    await _reaped(self._channel.child)
                await self._spawn()
        assert self._channel is not None
        return self._channel

    def execution(self, sql: str) -> ProcessExecution:
        return ProcessExecution(self, sql, f"{self._label}-{next(self._queries)}")

    async def describe(self, sql: str) -> tuple[Column, ...]:
        return tuple(await self.call("describe", sql))

    async def tables(self) -> list[Table]:
        return list(await self.call("tables"))

    async def estimate_scan_bytes(self, sql: str) -> int | None:
        estimate = await self.call("estimate", sql)
        return int(estimate) if estimate is not None else None

    async def shutdown(self) -> None:
        self._closed = True
        channel = self._channel
        if channel is None:
            return
        channel.writer.close()  # the child exits when it reads the end
        if channel.reader is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(channel.reader, STOP_SECONDS)
        await asyncio.get_running_loop().run_in_executor(None, _stop, channel.child)


class ProcessExecution(PrefetchingExecution):
    """One query in the engine process; the child keeps its cursor until the result is read or cancelled."""

    def __init__(self, process: EngineProcess, sql: str, query_id: str) -> None:
        super().__init__(query_id)
        self._process = process
        self._sql = sql
        self._id = query_id
        self._done = False
        self._sent = False

    async def start(self) -> None:
        self._sent = True
        try:
            columns, self._prefetched, self._done, rows, cpu = await self._process.call("start", self._id, self._sql)
            self.columns = self._process.columns(columns)
        except BaseException:
            await self.cancel()
            raise
        finally:
            self._clock()
        self.stats.rows, self.stats.cpu_seconds = rows, cpu

    def _exhausted(self) -> bool:
        return self._done

    async def _read_more(self, max_rows: int) -> Sequence[Row] | None:
        try:
            batch, self._done, self.stats.rows, self.stats.cpu_seconds = await self._process.call(
                "read", self._id, max_rows)
        except BaseException:
            await self.cancel()
            raise
        return batch  # type: ignore[no-any-return]

    async def cancel(self) -> None:
        if not self._done:
            self._done = True
            if self._sent:
                self._process.tell("cancel", self._id)


def _error(value: Any) -> GatewayError:
    name, message, error_name = value
    return _ERROR_CLASSES.get(name, BackendError)(message, error_name=error_name)


async def _read(reader: asyncio.StreamReader) -> Any:
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if size > MAX_FRAME_BYTES:
        raise ValueError("frame too large")
    return pickle.loads(await reader.readexactly(size))


async def _reaped(child: subprocess.Popen[bytes]) -> None:
    await asyncio.get_running_loop().run_in_executor(None, child.wait)


def _stop(child: subprocess.Popen[bytes]) -> None:
    """The child exits once its socket closes; one that does not within STOP_SECONDS is killed."""
    try:
        child.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


# The child's side.

class _Child:
    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock
        self._send_lock = threading.Lock()
        self._queries: dict[str, CursorQuery] = {}
        self._estimator = ScanEstimator()

    def serve(self) -> None:
        setup = _receive(self._socket)
        try:
            connection, database = open_database(Path(setup["path"]), setup["config"])
        except GatewayError as error:
            self._send((False, _described(error)))
            return
        self._connection = connection
        self._send((True, database))
        pool = ThreadPoolExecutor(max_workers=int(setup["workers"]), thread_name_prefix="duckdb")
        while True:
            call, kind, arguments = _receive(self._socket)
            if kind == "cancel":
                query = self._queries.pop(arguments[0], None)
                if query is not None and query.cancel():
                    pool.submit(query.close_cursor)
                continue
            pool.submit(self._answer, call, self._work(kind, arguments))

    def _work(self, kind: str, arguments: Sequence[Any]) -> Callable[[], Any]:
        if kind == "start":
            query_id, sql = arguments
            query = self._queries[query_id] = CursorQuery(self._connection.cursor, sql)
            return lambda: self._started(query_id, query)
        if kind == "read":
            query_id, max_rows = arguments
            return lambda: self._read(query_id, max_rows)
        if kind == "describe":
            return lambda: on_new_cursor(self._connection, lambda cursor: describe_query(cursor, arguments[0]))
        if kind == "tables":
            return lambda: on_new_cursor(self._connection, list_tables)
        if kind == "estimate":
            return lambda: on_new_cursor(self._connection,
                                         lambda cursor: self._estimator.estimate(cursor, arguments[0]))
        raise ValueError(f"unknown call {kind!r}")

    def _started(self, query_id: str, query: CursorQuery) -> Any:
        try:
            columns, rows = query.start()
        finally:
            self._forget_if_done(query_id, query)
        return self._described_columns(columns), rows, query.exhausted, query.rows, query.cpu_seconds

    def _described_columns(self, columns: tuple[Column, ...]) -> bytes:
        """The columns pickled on their own: the gateway unpickles each distinct description once (columns
        are frozen dataclasses, costly to unpickle), and a dashboard's queries repeat a few."""
        return pickle.dumps(columns, protocol=_PROTOCOL)

    def _read(self, query_id: str, max_rows: int) -> Any:
        query = self._queries.get(query_id)
        if query is None:
            raise errors.QueryCanceled("Query was canceled")
        try:
            rows = query.read(max_rows)
        finally:
            self._forget_if_done(query_id, query)
        return rows, query.exhausted, query.rows, query.cpu_seconds

    def _forget_if_done(self, query_id: str, query: CursorQuery) -> None:
        if query.exhausted and self._queries.get(query_id) is query:
            del self._queries[query_id]

    def _answer(self, call: int, work: Callable[[], Any]) -> None:
        """Every call gets a reply, also when its value cannot be encoded: the gateway is waiting for it."""
        try:
            frame = _frame((call, True, work()))
        except GatewayError as error:
            frame = _frame((call, False, _described(error)))
        except Exception as error:  # reported as a backend error
            frame = _frame((call, False, ("BackendError", f"the engine failed: {type(error).__name__}", None)))
        self._write(frame)

    def _send(self, message: Any) -> None:
        self._write(_frame(message))

    def _write(self, frame: bytes) -> None:
        with self._send_lock:
            self._socket.sendall(frame)


def _described(error: GatewayError) -> tuple[str, str, str]:
    return type(error).__name__, error.message, error.error_name


def _receive(sock: socket.socket) -> Any:
    (size,) = HEADER.unpack(_exactly(sock, HEADER.size))
    return pickle.loads(_exactly(sock, size))


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


def main(argv: Sequence[str]) -> None:
    # The child's life is its socket's: a terminal's Ctrl-C or a service manager's SIGTERM to the whole group
    # must not end it before the gateway has drained its queries; it exits when the gateway closes the socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[0]))
    try:
        _Child(sock).serve()
    except (EOFError, OSError):
        pass
    finally:
        # The gateway is gone or done with us: leave at once, without waiting for running queries.
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
