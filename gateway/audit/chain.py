"""Tamper evidence: a canonical encoding of each record and a hash chain per stream (gateway instance).

    record_hash = sha256(canonical(record without record_hash))      prev_hash is inside the canonical form
    prev_hash   = record_hash of the previous record of the stream   (GENESIS for the first)

Changing any field of a stored record changes its hash; recomputing that hash breaks the next record's
`prev_hash`; deleting a record leaves a gap in `sequence_number`. Checkpoints (stream, sequence, hash),
written to a separate table as the chain grows and when the gateway stops, let `verify` detect a truncated
tail too: a checkpoint names a record that must exist with exactly that hash.
"""

from __future__ import annotations

import hashlib
import json
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from gateway.audit.record import AuditRecord

GENESIS = "0" * 64


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical(data: dict[str, Any]) -> str:
    """Sorted keys, no whitespace, UTF-8 text as is: one byte string per record, whatever stored it."""
    return _CANONICAL.encode({k: v for k, v in data.items() if k != "record_hash"})


def hash_of(data: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(data).encode()).hexdigest()


def new_stream_id() -> str:
    """One stream per gateway process: host name plus a random part, so replicas and restarts never collide."""
    return f"{socket.gethostname()[:40]}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    stream: str
    sequence_number: int
    record_hash: str
    written_at: str
    final: bool = False  # written when the stream ended cleanly


class Chain:
    """The running chain of one stream. Not thread-safe: records are sealed on the event loop only."""

    def __init__(self, stream: str | None = None) -> None:
        self.stream = stream or new_stream_id()
        self.sequence = 0
        self.last_hash = GENESIS

    def seal(self, record: AuditRecord) -> str:
        """Give `record` its place in the chain and its hash; return the canonical JSON line (with hash)."""
        self.sequence += 1
        record.stream = self.stream
        record.sequence_number = self.sequence
        record.prev_hash = self.last_hash
        text = canonical(record.to_dict())
        record.record_hash = self.last_hash = hashlib.sha256(text.encode()).hexdigest()
        return f'{text[:-1]},"record_hash":"{record.record_hash}"}}'
