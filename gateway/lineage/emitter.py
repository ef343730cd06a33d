"""Sending lineage events without ever slowing or failing a query.

`record(outcome)` is called as each attempt ends, on the event loop: it only decides whether the attempt is
a run and puts it on a bounded queue (`lineage.queue_size` runs); when the queue is full the run's events
are dropped and counted, never waited for. One background thread takes runs off the queue, traces their
column lineage (columns.py), builds the events (facets.py) and hands them to the OpenLineage client's
transport (console, file or HTTP, with its retries). A slow or dead lineage server therefore fills the
queue, and from then on events are dropped — counted in `gateway_lineage_events_total{outcome="dropped"}` —
while queries run as before. Events the transport refuses are counted as `failed`, delivered ones `sent`.

Only the gateway's `lineage:` settings configure the transport: OPENLINEAGE_* variables and openlineage.yml
are not read (they could add environment-variable facets, which may hold secrets, to every event).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cachetools import LRUCache
from openlineage.client.transport import Transport
from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport

from gateway.audit.record import redact_sql
from gateway.catalog import CatalogSnapshot
from gateway.identity import Identity
from gateway.lineage.columns import ColumnLineage, column_lineage, resolved_statement
from gateway.lineage.facets import Facts, emits, masked_columns, run_events
from gateway.lineage.naming import DatasetNames
from gateway.lineage.settings import LineageSettings
from gateway.metrics import Metrics
from gateway.query_outcome import QueryOutcome

log = logging.getLogger("gateway.lineage")

EVENTS_PER_RUN = 2  # START and its terminal event


def build_transport(settings: LineageSettings) -> Transport:
    """The OpenLineage client's transport for `lineage.transport`; the API key is read here, once."""
    if settings.transport == "file":
        assert settings.file is not None
        settings.file.parent.mkdir(parents=True, exist_ok=True)
        return FileTransport(FileConfig(log_file_path=str(settings.file), append=True))
    if settings.transport == "http":
        assert settings.url is not None
        retry = {"total": settings.retries, "connect": settings.retries, "read": settings.retries,
                 "status": settings.retries, "backoff_factor": 0.3, "status_forcelist": [500, 502, 503, 504],
                 "allowed_methods": ["POST"]}
        params: dict[str, object] = {"url": settings.url, "endpoint": settings.endpoint,
                                     "timeout": settings.timeout_seconds, "retry": retry}
        key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
        if key:
            params["auth"] = {"type": "api_key", "apiKey": key}
        return HttpTransport(HttpConfig.from_dict(params))
    return ConsoleTransport(ConsoleConfig())


@dataclass(frozen=True, slots=True)
class _Ended:
    outcome: QueryOutcome
    snapshot: CatalogSnapshot  # the catalog as the attempt ended: its plan's, unless a refresh came between
    finished_at: datetime
    cost_center: str | None


_STOP = object()
_Statement = tuple[str, str, ColumnLineage | None]  # the statement's text, the SQL facet's, its column lineage


class LineageEmitter:
    def __init__(self, *, settings: LineageSettings, transport: Transport, names: DatasetNames,
                 gateway_namespace: str, snapshot: Callable[[], CatalogSnapshot], default_catalog: str,
                 version: str, metrics: Metrics, cost_center_of: Callable[[Identity], str | None]) -> None:
        self.settings = settings
        self.transport = transport
        self.names = names
        self.gateway_namespace = gateway_namespace
        self._snapshot = snapshot
        self.default_catalog = default_catalog
        self.version = version
        self.metrics = metrics
        self._cost_center_of = cost_center_of
        self._queue: queue.Queue[_Ended | object] = queue.Queue(maxsize=settings.queue_size)
        self._thread: threading.Thread | None = None
        self._deadline: float | None = None  # set by stop(): after it, what is still queued is dropped
        self._statements: LRUCache[tuple[object, ...], _Statement] = LRUCache(settings.statement_cache_entries)
        metrics.lineage_queue_depth.set_function(self._queue.qsize)

    def record(self, outcome: QueryOutcome) -> None:
        """At an attempt's end, on the event loop: queue its run, or count it dropped. Never blocks, never
        raises into the query."""
        try:
            if not emits(outcome):
                return
            ended = _Ended(outcome, self._snapshot(), datetime.now(UTC), self._cost_center_of(outcome.identity))
            self._queue.put_nowait(ended)
        except queue.Full:
            self.metrics.lineage_events.labels("dropped").inc(EVENTS_PER_RUN)
        except Exception:  # a bug here must not reach the query; it is loud in the log
            log.exception("query %s: its lineage events could not be queued", outcome.query_id)
            self.metrics.lineage_events.labels("dropped").inc(EVENTS_PER_RUN)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._send_forever, name="lineage-sender", daemon=True)
        self._thread.start()

    def stop(self, grace_seconds: float) -> None:
        """Send what is queued for up to `grace_seconds`, then drop (and count) the rest."""
        if self._thread is None:
            return
        self._deadline = time.monotonic() + grace_seconds
        with contextlib.suppress(queue.Full):  # the sender then stops at the deadline, dropping the rest
            self._queue.put(_STOP, timeout=grace_seconds)
        self._thread.join(timeout=grace_seconds + 1)
        self._drop_queued()
        self.transport.close(0)

    def _send_forever(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, _Ended)
            if self._deadline is not None and time.monotonic() > self._deadline:
                self.metrics.lineage_events.labels("dropped").inc(EVENTS_PER_RUN)
                continue
            began = time.thread_time()
            self._send(item)
            self._rest(time.thread_time() - began)

    def _rest(self, cpu_seconds: float) -> None:
        """Keep the sender's CPU under `sender_cpu_share`: it holds the interpreter lock queries need while it
        works, so it rests in proportion (I/O waits, which release the lock, are not counted)."""
        share = self.settings.sender_cpu_share
        if share < 1 and self._deadline is None:
            time.sleep(cpu_seconds * (1 - share) / share)

    def _send(self, ended: _Ended) -> None:
        try:
            events = run_events(ended.outcome, self._facts(ended), settings=self.settings, names=self.names,
                                gateway_namespace=self.gateway_namespace)
        except Exception:  # a bug in building the events: loud, counted, and the sender goes on
            log.exception("query %s: building its lineage events failed", ended.outcome.query_id)
            self.metrics.lineage_events.labels("failed").inc(EVENTS_PER_RUN)
            return
        for event in events:
            try:
                self.transport.emit(event)
            except Exception as error:  # the transport's own errors (requests, OSError, RuntimeError)
                log.warning("lineage event of query %s not delivered: %s", ended.outcome.query_id,
                            type(error).__name__)
                self.metrics.lineage_events.labels("failed").inc()
            else:
                self.metrics.lineage_events.labels("sent").inc()

    def _facts(self, ended: _Ended) -> Facts:
        outcome, session = ended.outcome, ended.outcome.session
        tables = tuple(outcome.tables or ())
        key = (outcome.sql, session.dialect, session.catalog, session.schema,
               tuple(sorted(session.prepared_statements.items())), id(ended.snapshot), tables, tuple(outcome.rules))
        statement = self._statements.get(key)
        if statement is None:
            statement = self._statements[key] = self._statement(ended, tables)
        sql, shown, lineage = statement
        schema = ended.snapshot.column_types()
        types = {}
        for table in tables:
            catalog, db, name = table.split(".", 2)
            types[table] = schema.get(catalog, {}).get(db, {}).get(name, {})
        return Facts(finished_at=ended.finished_at, cost_center=ended.cost_center, version=self.version, sql=sql,
                     shown_sql=shown, lineage=lineage, column_types=types)

    def _statement(self, ended: _Ended, tables: tuple[str, ...]) -> _Statement:
        """What only the statement decides (cached: dashboards repeat theirs): its text, the SQL facet's text,
        its column lineage."""
        outcome, settings = ended.outcome, self.settings
        dialect = outcome.session.dialect
        statement = resolved_statement(outcome.sql, session=outcome.session, snapshot=ended.snapshot,
                                       default_catalog=self.default_catalog)
        sql = statement[1] if statement is not None else outcome.sql
        shown = (redact_sql(sql, dialect) or "") if settings.redact_literals else sql
        lineage = None
        if statement is not None and settings.column_lineage and \
                len(sql.encode("utf-8", "surrogatepass")) <= settings.column_lineage_max_sql_bytes:
            lineage = column_lineage(statement[0], schema=ended.snapshot.column_types(), dialect=dialect,
                                     tables=tables, masked=masked_columns(outcome.rules))
        return sql, shown, lineage

    def _drop_queued(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self.metrics.lineage_events.labels("dropped").inc(EVENTS_PER_RUN)
