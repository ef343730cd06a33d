"""A circuit breaker and retries around any backend, so every backend type fails the same way when its engine
is down.

    backends:
      pg:
        circuit: {failures: 5, reset_seconds: 1, max_reset_seconds: 30}
        retries: {attempts: 2, backoff_seconds: 0.2}

Breaker: `failures` consecutive connection-level failures (`BackendUnavailable`: the engine could not be
reached, refused the connection or dropped it) open the circuit; while open, calls fail at once with a
`CircuitOpen` error naming the catalog and when the next attempt is allowed. After the backoff (the n-th opening
in a row waits `reset_seconds * 2**(n-1)`, capped at `max_reset_seconds`, times a jitter in [0.5, 1) so many
gateways do not probe together) it half-opens: one call, the probe, goes through; its success closes the
circuit, its failure opens it again with a longer wait. Any answer of the engine that is not a connection failure
(rows, a syntax error, a cancellation it reports) counts as success: the engine is there.

Retries: a read whose connection failed before any of its rows was handed to the caller runs again on a
new backend execution, at most `attempts` more times, after `backoff_seconds * 2**(k-1)`, and only while the
query's time limit leaves room for the wait. Once a row reached the caller it never runs again (the client would
see rows twice); statements that are not plain reads (parsed in the backend's dialect) are never retried.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeVar

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from gateway.backends.base import Backend
from gateway.errors import BackendUnavailable, GatewayError, QueryCanceled
from gateway.metrics import Metrics
from gateway.relations import Column, Execution, ExecutionContext, ExecutionStats, Row, Table

T = TypeVar("T")


class CircuitOpen(BackendUnavailable):
    """Refused without trying: the backend failed recently. Never counted as a failure, never retried."""


class CircuitState(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True, kw_only=True)
class CircuitSettings:
    failures: int = 5  # consecutive connection-level failures that open the circuit
    reset_seconds: float = 1.0  # the first wait before a probe
    max_reset_seconds: float = 30.0  # the longest wait, however often it opened in a row


@dataclass(frozen=True, kw_only=True)
class RetrySettings:
    attempts: int = 2  # runs after the first, for reads that never returned a row
    backoff_seconds: float = 0.2  # before the first retry; doubled for each next one


@dataclass(frozen=True, kw_only=True)
class ResilienceSettings:
    circuit: CircuitSettings = field(default_factory=CircuitSettings)
    retries: RetrySettings = field(default_factory=RetrySettings)


def parse_resilience(circuit: Any, retries: Any) -> ResilienceSettings | str:
    """The `circuit:` and `retries:` values of one backend (None when absent) -> settings, or the problem."""
    parts: list[dict[str, float | int]] = []
    for name, raw, keys in (("circuit", circuit, {"failures": int, "reset_seconds": float,
                                                  "max_reset_seconds": float}),
                            ("retries", retries, {"attempts": int, "backoff_seconds": float})):
        values: dict[str, float | int] = {}
        if raw is not None and not isinstance(raw, Mapping):
            return f"{name} must be a mapping"
        for key, value in (raw or {}).items():
            kind = keys.get(key)
            if kind is None:
                return f"{name}.{key} is not a key (allowed: {', '.join(sorted(keys))})"
            if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and
                                                                                  not isinstance(value, int)):
                return f"{name}.{key} must be {'an integer' if kind is int else 'a number'}"
            if value < 0 or (value == 0 and key != "attempts"):
                return f"{name}.{key} must be positive"
            values[key] = kind(value)
        parts.append(values)
    circuit_settings = CircuitSettings(**parts[0])  # type: ignore[arg-type]
    if circuit_settings.max_reset_seconds < circuit_settings.reset_seconds:
        return "circuit.max_reset_seconds must be at least circuit.reset_seconds"
    return ResilienceSettings(circuit=circuit_settings, retries=RetrySettings(**parts[1]))  # type: ignore[arg-type]


class CircuitBreaker:
    """The state machine alone: no clock of its own (every call is given `now`), no I/O."""

    def __init__(self, settings: CircuitSettings, *, jitter: Callable[[], float] = random.random) -> None:
        self.settings = settings
        self._jitter = jitter
        self.state = CircuitState.CLOSED
        self.consecutive_failures = 0
        self.opens_in_a_row = 0  # openings since the last success: the backoff's exponent
        self.opened_at = 0.0
        self.retry_at = 0.0
        self.probing = False  # half-open: the one call let through has not ended yet

    def backoff(self, opening: int) -> float:
        """The wait before the probe after the `opening`-th opening in a row, before jitter."""
        base = self.settings.reset_seconds * 2.0 ** min(opening - 1, 62)
        return min(self.settings.max_reset_seconds, base)

    def allow(self, now: float) -> float | None:
        """None: the call may go ahead (the caller then reports `succeeded`, `failed` or `abandoned`); else
        the seconds until a call will be let through."""
        if self.state is CircuitState.OPEN:
            if now < self.retry_at:
                return self.retry_at - now
            self.state, self.probing = CircuitState.HALF_OPEN, False
        if self.state is CircuitState.HALF_OPEN:
            if self.probing:
                return self.settings.reset_seconds  # the probe's verdict is due first
            self.probing = True
        return None

    def succeeded(self) -> None:
        self.state = CircuitState.CLOSED
        self.consecutive_failures = self.opens_in_a_row = 0
        self.probing = False

    def failed(self, now: float) -> bool:
        """A connection-level failure. True when it opened the circuit."""
        self.consecutive_failures += 1
        if self.state is CircuitState.OPEN:
            return False  # a call that started before the circuit opened: the wait already runs
        if self.state is CircuitState.HALF_OPEN or self.consecutive_failures >= self.settings.failures:
            self.opens_in_a_row += 1
            wait = self.backoff(self.opens_in_a_row) * (0.5 + 0.5 * self._jitter())
            self.state, self.probing = CircuitState.OPEN, False
            self.opened_at, self.retry_at = now, now + wait
            return True
        return False

    def abandoned(self) -> None:
        """The call ended without a verdict (cancelled): let another probe through."""
        if self.state is CircuitState.HALF_OPEN:
            self.probing = False


_WRITES = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.Into, exp.Lock,
           exp.Command, exp.TruncateTable, exp.Copy)


def is_plain_read(sql: str, dialect: str) -> bool:
    """Whether `sql` is one SELECT-class statement that changes nothing (running it twice is harmless). Fails
    closed: what does not parse is not a read. Parsed only when a retry is considered, never on the way in."""
    try:
        trees = sqlglot.parse(sql, read=dialect)
    except SqlglotError:
        return False
    if len(trees) != 1 or trees[0] is None:
        return False
    tree = trees[0]
    return isinstance(tree, exp.Query) and tree.find(*_WRITES) is None


def may_retry(error: GatewayError, *, rows_returned: int, retries_done: int, settings: RetrySettings,
              read: bool, elapsed_seconds: float, time_limit_seconds: float | None) -> float | None:
    """The wait before running the read again after `error`, or None when it must not run again."""
    if not isinstance(error, BackendUnavailable) or isinstance(error, CircuitOpen):
        return None
    if rows_returned > 0 or not read or retries_done >= settings.attempts:
        return None
    wait = settings.backoff_seconds * 2.0 ** retries_done
    if time_limit_seconds is not None and elapsed_seconds + wait >= time_limit_seconds:
        return None
    return wait


class ResilientBackend(Backend):
    """`inner` behind a circuit breaker, its reads retried. Everything else is the inner backend's."""

    def __init__(self, inner: Backend, settings: ResilienceSettings, *, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.monotonic, jitter: Callable[[], float] = random.random) -> None:
        super().__init__(name=inner.name)
        self.inner = inner
        self.dialect = inner.dialect
        self.settings = settings
        self.breaker = CircuitBreaker(settings.circuit, jitter=jitter)
        self.metrics = metrics
        self.clock = clock
        if metrics is not None:
            metrics.backend_circuit_state.labels(self.name).set(0)
            metrics.backend_circuit_opens.labels(self.name)
            metrics.backend_retries.labels(self.name)

    def __repr__(self) -> str:
        return f"ResilientBackend({self.inner!r})"

    @property
    def sql_catalog(self) -> str | None:
        return self.inner.sql_catalog

    @property
    def busy_threads(self) -> int:
        return self.inner.busy_threads

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    def execution(self, sql: str, *, time_limit_seconds: float | None = None,
                  context: ExecutionContext | None = None) -> Execution:
        return ResilientExecution(self, sql, time_limit_seconds, context)

    async def tables(self) -> list[Table]:
        return await self.guarded(self.inner.tables)

    async def ping(self) -> None:
        await self.guarded(self.inner.ping)

    async def describe(self, sql: str, *, context: ExecutionContext | None = None) -> tuple[Column, ...]:
        return await self.guarded(lambda: self.inner.describe(sql, context=context))

    async def estimate_scan_bytes(self, sql: str) -> int | None:
        if self.breaker.state is CircuitState.OPEN:
            return None  # the execution reports the open circuit
        return await self.inner.estimate_scan_bytes(sql)

    def admit(self) -> None:
        """Raise CircuitOpen unless a call may go to the engine now."""
        wait = self.breaker.allow(self.clock())
        self._show_state()
        if wait is not None:
            failures = self.settings.circuit.failures
            raise CircuitOpen(f"Backend {self.name} is unavailable (its circuit opened after {failures} connection "
                              f"failures in a row); retrying in {max(1, round(wait))}s")

    def report(self, outcome: BaseException | None) -> None:
        """The verdict of a call `admit` let through."""
        if outcome is None or (isinstance(outcome, GatewayError) and not isinstance(outcome, BackendUnavailable)):
            self.breaker.succeeded()
        elif isinstance(outcome, CircuitOpen):
            self.breaker.abandoned()
        elif isinstance(outcome, BackendUnavailable):
            if self.breaker.failed(self.clock()) and self.metrics is not None:
                self.metrics.backend_circuit_opens.labels(self.name).inc()
        else:
            self.breaker.abandoned()
        self._show_state()

    async def guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        self.admit()
        try:
            result = await call()
        except BaseException as error:
            self.report(error)
            raise
        self.report(None)
        return result

    def _show_state(self) -> None:
        if self.metrics is not None:
            self.metrics.backend_circuit_state.labels(self.name).set(int(self.breaker.state))


class ResilientExecution(Execution):
    """Runs the statement on a fresh inner execution per attempt; rows handed out are counted so that no
    attempt ever follows one."""

    def __init__(self, backend: ResilientBackend, sql: str, time_limit_seconds: float | None,
                 context: ExecutionContext | None = None) -> None:
        self._backend = backend
        self._sql = sql
        self._time_limit = time_limit_seconds
        self._context = context
        self._began = backend.clock()
        self._inner: Execution | None = None
        self._rows_returned = 0
        self._retries = 0
        self._cancelled = asyncio.Event()
        self.columns = ()
        self.stats = ExecutionStats()

    async def start(self) -> None:
        await self._run()

    async def _run(self) -> None:
        backend = self._backend
        while True:
            if self._cancelled.is_set():
                raise QueryCanceled("Query was canceled")
            elapsed = backend.clock() - self._began
            remaining = self._time_limit if self._time_limit is None or not self._retries else max(
                self._time_limit - elapsed, 0.001)
            inner = self._inner = backend.inner.execution(self._sql, time_limit_seconds=remaining,
                                                          context=self._context)
            inner.stats.extra["retries"] = self._retries
            self.stats = inner.stats
            try:
                await backend.guarded(inner.start)
            except BackendUnavailable as error:
                await self._wait_to_retry(error)
                continue
            if self.columns and tuple(c.name for c in inner.columns) != tuple(c.name for c in self.columns):
                await inner.cancel()
                raise BackendUnavailable(f"Backend {backend.name} changed the query's columns between attempts")
            self.columns = inner.columns
            return

    async def _wait_to_retry(self, error: BackendUnavailable) -> None:
        """Return after the backoff when the read may run again; else raise `error`."""
        backend = self._backend
        wait = may_retry(error, rows_returned=self._rows_returned, retries_done=self._retries,
                         settings=backend.settings.retries, read=is_plain_read(self._sql, backend.dialect),
                         elapsed_seconds=backend.clock() - self._began, time_limit_seconds=self._time_limit)
        if wait is None or self._cancelled.is_set():
            raise error
        self._retries += 1
        if backend.metrics is not None:
            backend.metrics.backend_retries.labels(backend.name).inc()
        try:
            await asyncio.wait_for(self._cancelled.wait(), timeout=wait)
        except TimeoutError:
            return

    async def fetch(self, max_rows: int) -> Sequence[Row] | None:
        while True:
            inner = self._inner
            if inner is None:
                return None
            try:
                rows = await inner.fetch(max_rows)
            except BackendUnavailable as error:
                self._backend.report(error)
                await self._wait_to_retry(error)
                await self._run()
                continue
            if rows:
                self._rows_returned += len(rows)
            return rows

    async def cancel(self) -> None:
        self._cancelled.set()
        if self._inner is not None:
            await self._inner.cancel()
