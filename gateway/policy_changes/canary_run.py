"""Running policy canaries through the real pipeline: each probe is planned under the policy being tried,
admitted, executed on its backend and audited (source and frontend `canary`), exactly as a client's
statement would be; then its outcome is compared with what the canary expects.

`rows_where` is checked on the returned rows in an in-memory DuckDB (the result, not the warehouse); a probe
returning more than `max_fetch_rows` fails rather than being checked on a part of its rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from gateway.errors import GatewayError, PermissionDenied
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.planner import PolicyContext
from gateway.policy_changes.canaries import DENIED, Canary, CanarySet
from gateway.relations import Column, Row
from gateway.session import Session

log = logging.getLogger("gateway.canary")

SOURCE = "canary"
_DUCKDB_TYPES = {"boolean", "tinyint", "smallint", "integer", "bigint", "real", "double", "varchar", "date"}


@dataclass(frozen=True)
class CanaryResult:
    name: str
    passed: bool
    detail: str  # why it failed, or what it saw
    skipped: bool = False  # names a catalog or schema this deployment does not have


@dataclass(frozen=True)
class CanaryReport:
    policy_version: str
    trigger: str  # start, reload, schedule, cli
    results: tuple[CanaryResult, ...]
    finished_at: float = field(default_factory=time.time)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> tuple[CanaryResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def detail(self) -> dict[str, Any]:
        """For /health/ready: counts and each failure's reason (never rows or values)."""
        return {"policy_version": self.policy_version[:12], "trigger": self.trigger, "total": len(self.results),
                "failed": {r.name: r.detail for r in self.failures},
                "skipped": [r.name for r in self.results if r.skipped]}


class CanaryRunner:
    def __init__(self, *, pipeline: Pipeline, metrics: Metrics, default_catalog: str | None,
                 default_schema: str | None, has_schema: Callable[[str, str], bool], timeout_seconds: float = 30.0,
                 max_fetch_rows: int = 10_000) -> None:
        self.pipeline = pipeline
        self.has_schema = has_schema  # a probe naming another catalog or schema does not apply to this deployment
        self.metrics = metrics
        self.default_catalog = default_catalog
        self.default_schema = default_schema
        self.timeout_seconds = timeout_seconds
        self.max_fetch_rows = max_fetch_rows
        for trigger in ("start", "reload", "schedule"):
            for outcome in ("passed", "failed"):
                metrics.canary_runs.labels(trigger, outcome)  # exposed as 0 from the start

    async def run(self, canaries: CanarySet, policy: PolicyContext, *, trigger: str) -> CanaryReport:
        began = time.perf_counter()
        results = tuple([await self._one(canary, policy) for canary in canaries.canaries])
        report = CanaryReport(policy.policy.version, trigger, results)
        outcome = "passed" if report.passed else "failed"
        self.metrics.canary_runs.labels(trigger, outcome).inc()
        self.metrics.canary_failing.set(len(report.failures))
        self.metrics.canary_last_run.set(report.finished_at)
        self.metrics.canary_duration.observe(time.perf_counter() - began)
        for result in results:
            self.metrics.canary_passed.labels(result.name).set(1 if result.passed else 0)
        for failure in report.failures:
            log.error("policy canary %r failed (%s, policy version %s): %s", failure.name, trigger,
                      report.policy_version[:12], failure.detail)
        return report

    async def _one(self, canary: Canary, policy: PolicyContext) -> CanaryResult:
        catalog, schema = canary.catalog or self.default_catalog, canary.schema or self.default_schema
        if catalog is not None and schema is not None and not self.has_schema(catalog, schema):
            return CanaryResult(canary.name, True, f"skipped: no schema {catalog}.{schema} here", skipped=True)
        try:
            return await asyncio.wait_for(self._probe(canary, policy), timeout=self.timeout_seconds)
        except TimeoutError:
            return CanaryResult(canary.name, False, f"no answer within {self.timeout_seconds:g} s")

    async def _probe(self, canary: Canary, policy: PolicyContext) -> CanaryResult:
        session = Session(user=canary.identity.user, source=SOURCE, frontend=SOURCE,
                          catalog=canary.catalog or self.default_catalog, schema=canary.schema or self.default_schema)
        run = self.pipeline.submit(canary.sql, session, canary.identity, policy=policy)
        rows: list[Row] = []
        try:
            await run.start()
            while run.error is None and len(rows) <= self.max_fetch_rows:
                page = await run.fetch(1000)
                if page is None:
                    break
                rows.extend(page)
            error = run.error
        finally:
            await run.cancel()  # a no-op once finished; else stops a probe that returned too many rows
        # off the event loop: checking rows_where opens an in-memory DuckDB over up to max_fetch_rows rows
        return await asyncio.to_thread(_judge, canary, error, run.columns or (), rows,
                                       run.plan.rules if run.plan else (), self.max_fetch_rows)


def _judge(canary: Canary, error: GatewayError | None, columns: Sequence[Column], rows: Sequence[Row],
           rules: Sequence[str], max_fetch_rows: int) -> CanaryResult:
    expect = canary.expect
    name = canary.name
    if expect.outcome == DENIED:
        if isinstance(error, PermissionDenied):
            return CanaryResult(name, True, "denied")
        if error is not None:
            return CanaryResult(name, False, f"expected denied, failed with {error.error_name}: {error.message}")
        return CanaryResult(name, False, f"expected denied, but it was allowed ({len(rows)} rows)")
    if error is not None:
        return CanaryResult(name, False, f"expected allowed, got {error.error_name}: {error.message}")
    if len(rows) > max_fetch_rows:
        return CanaryResult(name, False, f"returned more than {max_fetch_rows} rows (policies.canary_max_rows)")
    if expect.max_rows is not None and len(rows) > expect.max_rows:
        return CanaryResult(name, False, f"returned {len(rows)} rows, more than max_rows {expect.max_rows}")
    if expect.min_rows is not None and len(rows) < expect.min_rows:
        return CanaryResult(name, False, f"returned {len(rows)} rows, fewer than min_rows {expect.min_rows}")
    names = [c.name.lower() for c in columns]
    unmasked = [c for c in expect.masked if not any(r.startswith("mask ") and r.split(":")[0].endswith(f".{c}")
                                                    for r in rules)]
    missing = [c for c in expect.masked if c not in names]
    if missing:
        return CanaryResult(name, False, f"the result has no column {', '.join(missing)} (masked)")
    if unmasked:
        return CanaryResult(name, False, f"column {', '.join(unmasked)} is not masked")
    if expect.rows_where is not None:
        try:
            violating = rows_violating(expect.rows_where, columns, rows)
        except duckdb.Error as exc:
            return CanaryResult(name, False, f"rows_where cannot be evaluated: {str(exc).splitlines()[0]}")
        if violating:
            return CanaryResult(name, False, f"{violating} of {len(rows)} rows do not satisfy rows_where "
                                             f"{expect.rows_where!r}")
    return CanaryResult(name, True, f"allowed, {len(rows)} rows")


def rows_violating(predicate: str, columns: Sequence[Column], rows: Sequence[Row]) -> int:
    """How many of `rows` do not satisfy `predicate` (NULL counts as not satisfied)."""
    with duckdb.connect(":memory:") as db:
        types = [c.type.display() if c.type.display() in _DUCKDB_TYPES or c.type.display().startswith("decimal")
                 else "varchar" for c in columns]
        names = [f'"{c.name.replace(chr(34), chr(34) * 2)}"' for c in columns]
        db.execute(f"CREATE TABLE result ({', '.join(f'{n} {t}' for n, t in zip(names, types, strict=True))})")
        if rows:
            marks = ", ".join("?" for _ in columns)
            db.executemany(f"INSERT INTO result VALUES ({marks})",
                           [[v if t != "varchar" or v is None else str(v) for v, t in zip(row, types, strict=True)]
                            for row in rows])
        found = db.execute(f"SELECT count(*) FROM result WHERE NOT coalesce(({predicate}), false)").fetchone()
        return int(found[0]) if found else 0
