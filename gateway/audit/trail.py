"""AuditTrail: the one object the query path talks to. On the path: seal + journal, nothing else.

    append(record, charge)
                     on the event loop, when an attempt finishes: chain it, write(2) it to the journal,
                     queue it. ~20 µs; after it returns the record survives SIGKILL. Its cost-ledger charge,
                     if any, rides along: on the same journal line (key `charge`, outside the hashed record)
                     and into the store in the same transaction as the record, so the ledger never lacks
                     a charge whose record the trail kept.
    admit()          before a query runs: with on_failure=deny, refuses while records cannot reach the store;
                     in every mode, refuses when the journal cannot be written or the spool is full.
    writer task      off the path: batches of up to `batch_size`, at the latest `flush_interval_seconds`
                     after the oldest record arrived; a failed write fsyncs the journal (the spool) and retries
                     with backoff, in order; checkpoints after every `checkpoint_records` records or
                     `checkpoint_seconds`, and a final one on a clean stop. A batch the store refuses (not an
                     outage: a value or constraint) is bisected down to the refused records, which are
                     quarantined (quarantine.py), so one poisoned record never blocks the others.
    probe task       one round trip to the store every `probe_interval_seconds`, bounded by
                     `probe_timeout_seconds`: a store that accepts connections but never answers is seen as
                     down within seconds (deny mode engages), and the log names the reason.

Journals of gateways that died are replayed (in order, idempotently) before this gateway's own records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gateway.audit.chain import Chain, Checkpoint
from gateway.audit.journal import Journal, Orphan, orphans
from gateway.audit.quarantine import Quarantine
from gateway.audit.record import AuditRecord, utc_now
from gateway.audit.stores.base import AuditStore, RecordsRefused, StoreUnavailable, reason
from gateway.cost.model import Charge
from gateway.errors import GatewayError
from gateway.metrics import Metrics

log = logging.getLogger("gateway.audit")

RETRY_MIN_SECONDS = 0.1
RETRY_MAX_SECONDS = 5.0


class AuditUnavailable(GatewayError):
    default_name = "AUDIT_UNAVAILABLE"


@dataclass(frozen=True, kw_only=True)
class TrailOptions:
    spool_dir: Path
    on_failure: str = "spool"  # spool | deny
    spool_max_bytes: int = 1024**3
    batch_size: int = 1000
    flush_interval_seconds: float = 0.05
    checkpoint_records: int = 10_000
    checkpoint_seconds: float = 10.0
    stop_timeout_seconds: float = 10.0
    redact_literals: bool = False  # read by the record builders (pipeline)
    probe_interval_seconds: float = 1.0
    probe_timeout_seconds: float = 2.0


class AuditTrail:
    def __init__(self, *, store: AuditStore, options: TrailOptions, metrics: Metrics,
                 stream: str | None = None) -> None:
        self.store = store
        self.options = options
        self.metrics = metrics
        self.chain = Chain(stream)
        self.journal = Journal(options.spool_dir, self.chain.stream)
        self._pending: deque[AuditRecord] = deque()
        self._charges: dict[str, Charge] = {}  # event id -> the charge of a pending record
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._oldest = 0.0
        self._stopping = False
        self._store_open = False
        self._store_ok = False
        self._probe_ok = True  # until a probe says otherwise; the writer's own outcome counts as well
        self._journal_ok = True
        self.last_failure: str | None = None  # the latest reason the store was seen down
        self.quarantine = Quarantine(options.spool_dir / "quarantine")
        self._quarantined: set[str] = set()  # event ids, so a retried batch never quarantines one twice
        self.stored_through = 0
        self._stored_hash = ""
        self._checkpointed = 0
        self._checkpoint_at = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self._journaled = metrics.audit_records.labels("journaled")  # looked up once: append runs per attempt
        metrics.audit_queue_depth.set_function(lambda: float(len(self._pending)))
        metrics.audit_spool_bytes.set_function(lambda: float(self.journal.size))
        metrics.audit_spool_limit_bytes.set(self.options.spool_max_bytes)
        metrics.audit_store_up.set_function(lambda: 1.0 if self.store_up else 0.0)

    @property
    def stream(self) -> str:
        return self.chain.stream

    @property
    def store_up(self) -> bool:
        return self._store_ok and self._probe_ok

    @property
    def healthy(self) -> bool:
        return self.store_up and self._journal_ok

    def status(self) -> dict[str, Any]:
        """The ops view (/health/audit): store state, why it was last seen down, spool, quarantine."""
        return {"store_up": self.store_up, "journal_ok": self._journal_ok, "on_failure": self.options.on_failure,
                "last_failure": self.last_failure, "pending_records": len(self._pending),
                "spool_bytes": self.journal.size, **self.quarantine.view()}

    # -- on the query path ---------------------------------------------------------------------------------

    def admit(self) -> None:
        if not self._journal_ok:
            raise AuditUnavailable("Audit records cannot be written (the audit journal failed); no query runs")
        if self.options.on_failure == "deny" and not self.store_up:
            raise AuditUnavailable("The audit store is unavailable and audit.on_failure is deny; no query runs")
        if self.journal.size > self.options.spool_max_bytes:
            raise AuditUnavailable("The audit spool is full (the audit store has been unavailable too long); "
                                   "no query runs")

    def append(self, record: AuditRecord, charge: Charge | None = None) -> None:
        line = self.chain.seal(record, storable=True)  # the hash covers exactly what the store keeps
        if charge is not None:
            line = f'{line[:-1]},"charge":{orjson.dumps(charge.to_dict(), default=str).decode()}}}'
            self._charges[record.event_id] = charge
        try:
            self.journal.append(line, record.sequence_number)
            self._journal_ok = True
        except OSError as error:
            if self._journal_ok:
                log.error("audit journal write failed: %s; the record stays queued for the store", error)
            self._journal_ok = False
        if not self._pending:
            self._oldest = time.monotonic()
        self._pending.append(record)
        self._journaled.inc()
        self._arrived.set()
        if len(self._pending) >= self.options.batch_size:
            self._full.set()

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.journal.open()
        try:
            await self.store.open()
            self._store_open = self._store_ok = True
        except StoreUnavailable as error:
            self.metrics.audit_store_failures.inc()
            self.last_failure = str(error)
            log.error("audit store unavailable at start: %s; %s", error,
                      "queries are refused until it is back (on_failure: deny)"
                      if self.options.on_failure == "deny" else "records are spooled until it is back")
        self._task = asyncio.create_task(self._run(), name="audit-writer")
        self._probe_task = asyncio.create_task(self._probe_forever(), name="audit-probe")

    async def stop(self) -> None:
        self._stopping = True
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe_task
        self._arrived.set()
        self._full.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.options.stop_timeout_seconds)
            except TimeoutError:
                log.error("audit store unavailable at stop: %d records stay in the journal %s for the next start",
                          len(self._pending), self.options.spool_dir)
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if not self._pending and self._store_ok and self.stored_through:
            with contextlib.suppress(StoreUnavailable):
                await self.store.write_checkpoint(self._checkpoint(final=True))
        self.journal.close(stored_through=self.stored_through if not self._pending else
                           self._pending[0].sequence_number - 1)
        await self.store.close()

    # -- the writer ----------------------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = RETRY_MIN_SECONDS
        while not self._store_open:
            if self._stopping:
                return
            await self._sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)
            try:
                await self.store.open()
                self._store_open = self._store_ok = True
                log.info("audit store is available again")
            except StoreUnavailable:
                self.metrics.audit_store_failures.inc()
        await self._replay_orphans()
        delay = RETRY_MIN_SECONDS
        while True:
            if not self._pending:
                if self._stopping:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            wait = self._oldest + self.options.flush_interval_seconds - time.monotonic()
            if len(self._pending) < self.options.batch_size and not self._stopping and wait > 0:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), wait)
            if await self._flush():
                delay = RETRY_MIN_SECONDS
            else:
                if self._stopping and self.options.stop_timeout_seconds <= 0:
                    return
                await self._sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def _flush(self) -> bool:
        batch = [self._pending[i] for i in range(min(len(self._pending), self.options.batch_size))]
        began = time.perf_counter()
        try:
            await self._store(batch, self._charges)
        except StoreUnavailable as error:
            await self._failed(error)
            return False
        self.metrics.audit_flush_duration.observe(time.perf_counter() - began)
        for record in batch:
            self._pending.popleft()
            self._charges.pop(record.event_id, None)
            self._quarantined.discard(record.event_id)  # done with: it will not be retried
        if self._pending:
            self._oldest = time.monotonic()
        self.metrics.audit_records.labels("stored").inc(len(batch))
        self.stored_through = batch[-1].sequence_number
        self._stored_hash = batch[-1].record_hash
        self.journal.acknowledge(self.stored_through)
        if not self._store_ok:
            log.warning("audit store is available again; spooled records are being written in order")
            self._store_ok = True
        if (self.stored_through - self._checkpointed >= self.options.checkpoint_records
                or time.monotonic() - self._checkpoint_at >= self.options.checkpoint_seconds):
            try:
                await self.store.write_checkpoint(self._checkpoint(final=False))
            except StoreUnavailable as error:
                await self._failed(error)
        return True

    async def _store(self, batch: list[AuditRecord], charges: Mapping[str, Charge]) -> None:
        """Write `batch` with its charges. Records the store refuses are quarantined, found by bisecting (a
        batch of n with one refused record costs about 2 log2(n) writes); the rest are written in order.
        Raises StoreUnavailable."""
        batch = [r for r in batch if r.event_id not in self._quarantined]
        if not batch:
            return
        try:
            await self._write(batch, charges)
        except RecordsRefused as refusal:
            if len(batch) == 1:
                self._quarantine(batch[0], charges.get(batch[0].event_id), refusal)
                return
            middle = len(batch) // 2
            await self._store(batch[:middle], charges)
            await self._store(batch[middle:], charges)

    async def _write(self, batch: list[AuditRecord], charges: Mapping[str, Charge]) -> None:
        try:
            await self.store.write(batch, [charges[r.event_id] for r in batch if r.event_id in charges])
        except (StoreUnavailable, RecordsRefused):
            raise
        except Exception as error:  # a driver error nobody translated: still an outage, never a dead writer
            log.exception("audit store write failed unexpectedly")
            raise StoreUnavailable(f"{type(error).__name__}: {error}") from None

    def _quarantine(self, record: AuditRecord, charge: Charge | None, refusal: RecordsRefused) -> None:
        line = {**record.to_dict(), **({"charge": charge.to_dict()} if charge is not None else {})}
        try:
            self.quarantine.keep(stream=record.stream, reason=str(refusal), line=line)
        except OSError as error:
            raise StoreUnavailable(f"{refusal}; and quarantining the record failed: {error}") from None
        self._quarantined.add(record.event_id)
        self.metrics.audit_quarantined.inc()

    async def _probe_forever(self) -> None:
        timeout = self.options.probe_timeout_seconds
        while not self._stopping:
            await asyncio.sleep(self.options.probe_interval_seconds)
            try:
                await asyncio.wait_for(self.store.ping(), timeout)
            except Exception as error:  # StoreUnavailable, TimeoutError, or a driver error nobody translated
                why = str(error) if isinstance(error, StoreUnavailable) else reason(error, timeout)
                self.metrics.audit_store_failures.inc()
                self.last_failure = why
                if self._probe_ok:
                    log.error("audit store health probe failed: %s; %s", why,
                              "no query runs until it answers again (on_failure: deny)"
                              if self.options.on_failure == "deny" else "records are spooled meanwhile")
                self._probe_ok = False
            else:
                if not self._probe_ok:
                    log.warning("audit store answers its health probe again")
                self._probe_ok = True

    async def _failed(self, error: StoreUnavailable) -> None:
        self.metrics.audit_store_failures.inc()
        self.last_failure = str(error)
        if self._store_ok:
            log.error("audit store write failed: %s; spooling records to %s until it is back", error,
                      self.options.spool_dir)
        self._store_ok = False
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.journal.sync)
        except OSError as sync_error:
            log.error("audit journal fsync failed: %s", sync_error)
            self._journal_ok = False

    def _checkpoint(self, *, final: bool) -> Checkpoint:
        self._checkpointed = self.stored_through
        self._checkpoint_at = time.monotonic()
        return Checkpoint(self.stream, self.stored_through, self._stored_hash, utc_now(), final)

    async def _replay_orphans(self) -> None:
        for orphan in orphans(self.options.spool_dir, self.stream):
            try:
                if not await self._replay(orphan):
                    return  # stopping
            except OSError as error:  # the quarantine could not be written: keep the segment for next time
                log.error("replaying %s failed: %s; it stays for the next start", orphan.path, error)
                orphan.release(delete=False)

    async def _replay(self, orphan: Orphan) -> bool:
        """Store one dead gateway's segment (quarantining what is not storable), then delete it. False when
        the gateway stops first (the segment stays)."""
        lines, unreadable = orphan.records()
        stream = orphan.path.name.split(".", 1)[0]
        for text in unreadable:
            self.quarantine.keep(stream=stream, reason=f"unreadable line of {orphan.path.name}", text=text)
            self.metrics.audit_quarantined.inc()
        records, charges = [], {}
        for line in lines:
            try:
                record = AuditRecord.from_dict(line)
                if line.get("charge"):
                    charges[record.event_id] = Charge.from_dict(line["charge"])
            except (TypeError, ValueError, KeyError) as error:
                self.quarantine.keep(stream=stream, reason=f"not an audit record: {error}", line=line)
                self.metrics.audit_quarantined.inc()
                continue
            records.append(record)
        log.warning("replaying %d audit records left in %s by a gateway that stopped", len(records), orphan.path)
        delay = RETRY_MIN_SECONDS
        for start in range(0, len(records), self.options.batch_size):
            batch = records[start:start + self.options.batch_size]
            while True:
                try:
                    await self._store(batch, charges)
                    break
                except StoreUnavailable as error:
                    await self._failed(error)
                    if self._stopping:
                        orphan.release(delete=False)
                        return False
                    await self._sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_SECONDS)
            self._quarantined.difference_update(r.event_id for r in batch)
            self.metrics.audit_records.labels("replayed").inc(len(batch))
        if records:
            last = records[-1]
            with contextlib.suppress(StoreUnavailable):
                await self.store.write_checkpoint(Checkpoint(last.stream, last.sequence_number, last.record_hash,
                                                             utc_now(), final=False))
        self._store_ok = True
        orphan.release(delete=True)
        return True
