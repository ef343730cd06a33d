"""Benchmark: the CPU one attempt costs the audit trail, the query log line and the ledger on the event loop,
against reference implementations measured in the same run (the standard library's JSON encoder, which
defines the canonical form, and `Logger.info`).

    .venv/bin/python -m load_tests.audit_path [--records 5000]

Rows (CPU microseconds per attempt, process time, so other load on the machine counts less than wall time):
  seal              canonical encoding + SHA-256 of a record (chain.Chain.seal)      vs the reference encoder
  append            seal + the charge + one write(2) to the journal (AuditTrail.append), what the query
                    path pays                                                        vs reference seal + write
  store rows        a record and its charge as the SQLite driver takes them (per record of a batch)
  log line          the `query` line, text format, to /dev/null (logs.log_query)     vs Logger.info + json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.audit.chain import Chain, _reference
from gateway.audit.record import AuditRecord, utc_now
from gateway.audit.stores.base import row_values
from gateway.audit.trail import AuditTrail, TrailOptions
from gateway.cost.ledger import charge_rows
from gateway.cost.model import Attribution, Charge
from gateway.logs import TextFormatter
from gateway.metrics import Metrics


def a_record(n: int) -> AuditRecord:
    """What a `SELECT 1` over the Trino protocol leaves."""
    now = utc_now()
    return AuditRecord(event_id=f"{n:032x}", received_at=now, finished_at=now,
                       query_id=f"20261202_061020_{n:05d}_abcde", user_name="admin", user_groups=["admins"],
                       auth_method="dev", client_address="127.0.0.1",
                       catalog_name="demo", schema_name="tpch", sql="SELECT 1", rewritten_sql="SELECT 1",
                       statement_type="select", policy_version="de5ea35ab72b" * 5, reason="allowed by policy",
                       resource_group="default", queue_wait_ms=0.012, execution_ms=1.234, row_count=1, byte_count=8,
                       backend="demo", cost=6.657289300027249e-06, cost_center="CC-9000")


def a_charge(record: AuditRecord) -> Charge:
    return Charge(event_id=record.event_id, query_id=record.query_id, charged_at=record.finished_at,
                  user_name="admin", cost_center="CC-9000", backend="demo", statement_type="select",
                  resource_group="default", cache_hit=False, cost=6.657289300027249e-06,
                  figures={"cost_policy_version": "de5ea35ab72b", "cpu_seconds": 0.001353, "elapsed_seconds": 0.012753,
                           "processed_bytes": None, "rate_key": "duckdb", "rows": 1,
                           "rates": {"per_cpu_second": 0.0002, "per_million_rows": 0.01, "per_second": 0.0005}},
                  tags={"source": None, "client_tags": [], "client_info": None},
                  attributions=(Attribution(table_name=None, owner=None, owner_cost_center=None, share=1.0,
                                            cost=6.657289300027249e-06),))


def per_item_us(function: Callable[[int], Any], count: int) -> float:
    began = time.process_time()
    for n in range(count):
        function(n)
    return (time.process_time() - began) / count * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=5000)
    count = parser.parse_args(argv).records
    directory = Path(tempfile.mkdtemp(prefix="audit-path-"))
    records = [a_record(n) for n in range(count * 2)]
    chain = Chain("bench")

    def reference_seal(n: int) -> str:
        record = records[n + count]
        record.make_storable()
        text = _reference(record.to_dict())
        record.record_hash = hashlib.sha256(text).hexdigest()
        return text.decode()

    seal = per_item_us(lambda n: chain.seal(records[n], storable=True), count)
    reference = per_item_us(reference_seal, count)

    from gateway.audit.stores.sqlite import SQLiteStore

    trail = AuditTrail(store=SQLiteStore(directory / "audit.db"), metrics=Metrics(),
                       options=TrailOptions(spool_dir=directory / "spool"))
    trail.journal.open()
    fresh = [a_record(n) for n in range(count)]
    charges = [a_charge(r) for r in fresh]

    def append(n: int) -> None:
        trail.append(fresh[n], charges[n])
        if len(trail._pending) >= 1000:  # what the writer does off the path
            trail._pending.clear()
            trail._charges.clear()

    fd = os.open(directory / "reference.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def reference_append(n: int) -> None:
        line = reference_seal(n)
        line = f'{line[:-1]},"charge":{json.dumps(charges[n].to_dict(), separators=(",", ":"), default=str)}}}'
        os.write(fd, (line + "\n").encode())

    appended = per_item_us(append, count)
    reference_appended = per_item_us(reference_append, count)
    rows = per_item_us(lambda n: (row_values(fresh[n], bool_as_int=True, time=str),
                                  charge_rows([charges[n]], time=str, bool_as_int=True)), count)

    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - for the process's life
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("bench.query")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    fields = {"query_id": "20261202_061020_00000_l7wm0", "user": "admin", "principal": None, "groups": ["admins"],
              "source": None, "client_address": "127.0.0.1", "catalog": "demo", "schema": "tpch",
              "statement": "select", "state": "FINISHED", "error_name": None, "error": None, "elapsed_ms": 12.345,
              "rows": 1, "backend": "demo", "backend_query_id": None, "resource_group": "default", "tables": [],
              "rules": None, "policy_version": "de5ea35ab72b", "sql": "SELECT 1"}

    def fast_line(n: int) -> None:
        logger.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0, "query", (), None,
                                        extra={"query": fields}))

    class ReferenceFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            text = super().format(record)
            return f"{text} " + " ".join(f"{k}={json.dumps(v)}" for k, v in fields.items() if v is not None)

    threads = (logging.logThreads, logging.logProcesses, logging.logMultiprocessing)
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False  # as configure_logging does
    line = per_item_us(fast_line, count)
    logging.logThreads, logging.logProcesses, logging.logMultiprocessing = threads
    handler.setFormatter(ReferenceFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    reference_line = per_item_us(lambda n: logger.info("query", extra={"query": fields}), count)

    print(f"{'per attempt':<12} {'us':>8} {'reference us':>13} {'x reference':>12}")
    for name, value, base in (("seal", seal, reference), ("append", appended, reference_appended),
                              ("store rows", rows, float("nan")), ("log line", line, reference_line)):
        print(f"{name:<12} {value:>8.1f} {base:>13.1f} {value / base:>12.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
