"""The circuit breaker's state machine and the retry rule, over generated histories (no I/O).

The wrapper (`ResilientBackend`) is exercised here over `ScriptedBackend`: an in-memory backend whose
connection fails where a generated schedule says, the only way to cover thousands of failure placements. The
same wrapper over the real PostgreSQL backend, with real dropped connections, is in test_backend_resilience.py.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.backends.base import Backend, Column, Execution, ExecutionContext, ExecutionStats, Row, Table
from gateway.backends.resilience import (
    CircuitBreaker,
    CircuitOpen,
    CircuitSettings,
    CircuitState,
    ResilienceSettings,
    ResilientBackend,
    RetrySettings,
    is_plain_read,
    may_retry,
    parse_resilience,
)
from gateway.errors import BackendError, BackendUnavailable, GatewayError, UserError
from gateway.types import BIGINT

# --- breaker ------------------------------------------------------------------------------------------------

circuit_settings = st.builds(
    lambda failures, reset, extra: CircuitSettings(failures=failures, reset_seconds=reset,
                                                   max_reset_seconds=reset + extra),
    st.integers(1, 6), st.floats(0.01, 5), st.floats(0, 30))
events = st.lists(st.one_of(
    st.tuples(st.just("call"), st.sampled_from(["success", "failure", "abandon", "user_error"])),
    st.tuples(st.just("failure_late"), st.none()),  # a call admitted earlier fails now
    st.tuples(st.just("wait"), st.floats(0, 40)),
), max_size=80)


@settings(max_examples=400, deadline=None)
@given(circuit_settings, events, st.floats(0, 0.999))
def test_breaker_invariants_hold_for_any_history(config: CircuitSettings, history: list[tuple[str, Any]],
                                                 jitter: float) -> None:
    breaker = CircuitBreaker(config, jitter=lambda: jitter)
    now = 0.0
    opens = 0
    streak = 0  # consecutive failures since the last success, as the test counts them
    for kind, value in history:
        if kind == "wait":
            now += value
            continue
        state_before = breaker.state
        if kind == "failure_late":
            opened = breaker.failed(now)
            streak += 1
        else:
            wait = breaker.allow(now)
            if state_before is CircuitState.OPEN and now < breaker.retry_at:
                assert wait is not None and 0 < wait <= config.max_reset_seconds  # fails fast while open
                continue
            if wait is not None:  # half-open with its probe still out
                assert breaker.state is CircuitState.HALF_OPEN and breaker.probing
                continue
            if breaker.state is CircuitState.HALF_OPEN:
                assert breaker.probing  # this call is the one probe
                assert breaker.allow(now) is not None  # and no second one goes through meanwhile
            opened = False
            if value in ("success", "user_error"):
                breaker.succeeded()
                streak = 0
                assert breaker.state is CircuitState.CLOSED
            elif value == "failure":
                was_half_open = breaker.state is CircuitState.HALF_OPEN
                opened = breaker.failed(now)
                streak += 1
                if was_half_open:
                    assert opened  # a failed probe opens again
            else:
                breaker.abandoned()
                assert not breaker.probing
        if opened:
            opens += 1
            assert breaker.state is CircuitState.OPEN
            waited = breaker.retry_at - breaker.opened_at
            full = breaker.backoff(breaker.opens_in_a_row)
            slack = 1e-9 * max(1.0, breaker.retry_at)  # float rounding of now + wait
            assert full / 2 - slack <= waited <= full + slack and full <= config.max_reset_seconds
        # invariants after every event
        assert breaker.state in CircuitState
        if breaker.state is CircuitState.CLOSED:
            assert breaker.consecutive_failures < config.failures
            assert breaker.consecutive_failures == streak
        assert breaker.opens_in_a_row <= opens
        if breaker.state is not CircuitState.HALF_OPEN:
            assert not breaker.probing


@given(circuit_settings)
def test_backoff_grows_to_its_cap(config: CircuitSettings) -> None:
    breaker = CircuitBreaker(config)
    waits = [breaker.backoff(n) for n in range(1, 80)]
    assert waits[0] == pytest.approx(config.reset_seconds)
    assert all(a <= b for a, b in itertools.pairwise(waits))
    assert waits[-1] == pytest.approx(config.max_reset_seconds)


def test_closed_breaker_opens_after_the_configured_failures_and_a_probe_closes_it() -> None:
    breaker = CircuitBreaker(CircuitSettings(failures=3, reset_seconds=2, max_reset_seconds=8), jitter=lambda: 0.999)
    for _ in range(2):
        assert breaker.allow(0) is None
        assert not breaker.failed(0)
    assert breaker.allow(0) is None and breaker.failed(0)
    assert breaker.allow(1.0) == pytest.approx(1.0, abs=0.01)
    assert breaker.allow(2.0) is None  # the probe
    assert breaker.failed(2.0)  # fails: a longer wait
    assert breaker.retry_at - 2.0 == pytest.approx(4.0, abs=0.01)
    assert breaker.allow(6.0) is None
    breaker.succeeded()
    assert breaker.state is CircuitState.CLOSED and breaker.opens_in_a_row == 0


# --- retry rule ---------------------------------------------------------------------------------------------

errors = st.sampled_from([BackendUnavailable("down"), CircuitOpen("open"), BackendError("engine bug"),
                          UserError("bad column")])
retry_settings = st.builds(RetrySettings, attempts=st.integers(0, 6), backoff_seconds=st.floats(0.001, 5))


@settings(max_examples=500)
@given(errors, st.integers(0, 10_000), st.integers(0, 8), retry_settings, st.booleans(), st.floats(0, 100),
       st.none() | st.floats(0.001, 100))
def test_retry_rule(error: GatewayError, rows: int, done: int, config: RetrySettings, read: bool, elapsed: float,
                    limit: float | None) -> None:
    wait = may_retry(error, rows_returned=rows, retries_done=done, settings=config, read=read,
                     elapsed_seconds=elapsed, time_limit_seconds=limit)
    if wait is None:
        return
    assert rows == 0  # never after a row reached the caller
    assert read and type(error) is BackendUnavailable  # only connection failures, only of plain reads
    assert done < config.attempts
    assert wait == pytest.approx(config.backoff_seconds * 2 ** done)
    assert limit is None or elapsed + wait < limit  # within the query's time limit


@pytest.mark.parametrize(("sql", "read"), [
    ("SELECT 1", True),
    ("WITH a AS (SELECT 1 AS x) SELECT x FROM a", True),
    ("SELECT a FROM t UNION ALL SELECT b FROM u", True),
    ("(SELECT 1)", True),
    ("SELECT * FROM t FOR UPDATE", False),
    ("SELECT * INTO copy FROM t", False),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", False),
    ("INSERT INTO t SELECT 1", False),
    ("UPDATE t SET a = 1", False),
    ("DELETE FROM t", False),
    ("CREATE TABLE t AS SELECT 1", False),
    ("SELECT 1; SELECT 2", False),
    ("VACUUM", False),
    ("SELECT FROM WHERE (", False),
])
def test_only_plain_reads_are_retried(sql: str, read: bool) -> None:
    assert is_plain_read(sql, "postgres") is read


@pytest.mark.parametrize(("circuit", "retries", "problem"), [
    ({"failures": 0}, None, "circuit.failures must be positive"),
    ({"failures": 1.5}, None, "circuit.failures must be an integer"),
    ({"reset_seconds": 5, "max_reset_seconds": 1}, None, "at least"),
    ({"resets": 1}, None, "circuit.resets is not a key"),
    (None, {"attempts": -1}, "retries.attempts must be positive"),
    (None, {"backoff_seconds": "1s"}, "a number"),
    ([], None, "circuit must be a mapping"),
])
def test_resilience_settings_are_checked(circuit: Any, retries: Any, problem: str) -> None:
    parsed = parse_resilience(circuit, retries)
    assert isinstance(parsed, str) and problem in parsed


def test_resilience_settings_parse() -> None:
    parsed = parse_resilience({"failures": 2, "reset_seconds": 0.5, "max_reset_seconds": 4},
                              {"attempts": 0, "backoff_seconds": 1})
    assert parsed == ResilienceSettings(circuit=CircuitSettings(failures=2, reset_seconds=0.5, max_reset_seconds=4),
                                        retries=RetrySettings(attempts=0, backoff_seconds=1.0))


# --- the wrapper, over generated failure schedules ------------------------------------------------------------


class ScriptedBackend(Backend):
    """Rows 0..n-1 in pages; `schedule[k]` is where the k-th execution loses its connection: at start ("start"),
    after that many rows were handed out (an int), or never (None)."""

    dialect = "postgres"

    def __init__(self, rows: int, schedule: Sequence[int | str | None]) -> None:
        super().__init__(name="scripted")
        self.rows = rows
        self.schedule = list(schedule)
        self.started = 0
        self.delivered = 0  # rows the caller has received so far (the test keeps it)
        self.delivered_at_each_start: list[int] = []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def tables(self) -> list[Table]:
        return []

    async def ping(self) -> None:
        return None

    def execution(self, sql: str, *, time_limit_seconds: float | None = None,
                  context: ExecutionContext | None = None) -> Execution:
        failure = self.schedule[self.started] if self.started < len(self.schedule) else None
        self.started += 1
        self.delivered_at_each_start.append(self.delivered)
        return ScriptedExecution(self.rows, failure)


class ScriptedExecution(Execution):
    def __init__(self, rows: int, failure: int | str | None) -> None:
        self._rows = rows
        self._failure = failure
        self._next = 0
        self.columns = ()
        self.stats = ExecutionStats()

    async def start(self) -> None:
        if self._failure == "start":
            raise BackendUnavailable("connection refused")
        self.columns = (Column("n", BIGINT),)

    async def fetch(self, max_rows: int) -> Sequence[Row] | None:
        if isinstance(self._failure, int) and self._next >= self._failure:
            raise BackendUnavailable("connection lost")
        if self._next >= self._rows:
            return None
        page = [(i,) for i in range(self._next, min(self._next + max_rows, self._rows))]
        if isinstance(self._failure, int):
            page = page[:max(self._failure - self._next, 1)]
        self._next += len(page)
        return page

    async def cancel(self) -> None:
        return None


schedules = st.lists(st.one_of(st.just("start"), st.none(), st.integers(0, 40)), max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 40), schedules, st.integers(1, 9), st.integers(0, 4))
def test_the_wrapper_never_repeats_a_row(rows: int, schedule: list[int | str | None], page: int,
                                         attempts: int) -> None:
    inner = ScriptedBackend(rows, schedule)
    backend = ResilientBackend(inner, ResilienceSettings(
        circuit=CircuitSettings(failures=100), retries=RetrySettings(attempts=attempts, backoff_seconds=0.0001)))

    async def run() -> tuple[list[Row], GatewayError | None]:
        execution = backend.execution("SELECT n FROM t")
        received: list[Row] = []
        try:
            await execution.start()
            while (batch := await execution.fetch(page)) is not None:
                received.extend(batch)
                inner.delivered = len(received)
        except GatewayError as error:
            return received, error
        return received, None

    received, error = asyncio.run(run())
    assert received == [(i,) for i in range(len(received))]  # a prefix, in order, never a row twice
    if error is None:
        assert len(received) == rows
    else:
        assert isinstance(error, BackendUnavailable)
    assert inner.started <= attempts + 1  # bounded retries
    assert all(delivered == 0 for delivered in inner.delivered_at_each_start)  # never a run after a row
