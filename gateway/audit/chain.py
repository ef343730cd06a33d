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
import math
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.audit.record import FIELDS, AuditRecord
from gateway.audit.text import ESCAPED

GENESIS = "0" * 64


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _reference(data: dict[str, Any]) -> bytes:
    """The canonical form by definition (the standard library's encoder); `canonical` is this, faster."""
    return _CANONICAL.encode({k: v for k, v in data.items() if k != "record_hash"}).encode()


def canonical(data: dict[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8 text as is: one byte string per record, whatever stored it.

    orjson writes the same bytes as the reference encoder for strings, ints, bools, null, lists and str-keyed
    dicts, but not for every float (1e-05 becomes 0.00001): a float at the top (a record's cost, times) is
    handed to orjson as its `repr`, the reference's form. Anything else orjson might write otherwise (a float
    deeper down, a non-finite float, an int beyond 64 bits, a lone surrogate, a non-str key, another type)
    takes the reference path.
    """
    return _encode(data, data)


def _encode(data: dict[str, Any], odd: Iterable[str]) -> bytes:
    """`canonical(data)`, given that only the keys in `odd` may hold anything but a str, int, bool or None."""
    shown = dict(data)
    for key in odd:
        value = shown[key]
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                return _reference(data)  # which refuses it (allow_nan=False), as it always did
            shown[key] = orjson.Fragment(float.__repr__(value))
        elif kind not in _SCALARS and not orjson_alike(value):
            return _reference(data)
    shown.pop("record_hash", None)
    try:
        return orjson.dumps(shown, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return _reference(data)


_SCALARS = frozenset({str, int, bool, type(None)})
_CONTAINERS = frozenset({list, tuple, dict})
# the fields of a record that hold floats, lists or dicts; every other one holds a str, int, bool or None
_RECORD_ODD = tuple(name for name, kind in FIELDS if kind in ("float", "json"))


def orjson_alike(value: Any) -> bool:
    """`value` is a list, tuple or dict holding only scalars and such containers: orjson writes it alike."""
    kind = type(value)
    if kind not in _CONTAINERS:
        return False
    for item in value.values() if kind is dict else value:
        if type(item) not in _SCALARS and not orjson_alike(item):
            return False
    return True


def hash_of(data: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(data)).hexdigest()


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

    def seal(self, record: AuditRecord, *, storable: bool = False) -> str:
        """Give `record` its place in the chain and its hash; return the canonical JSON line (with hash).
        `storable`: first escape what no store can keep (`AuditRecord.make_storable`), so that the hash covers
        exactly what the store keeps; found in the encoding, so a record with nothing to escape (nearly all)
        costs no walk over its fields."""
        self.sequence += 1
        record.stream = self.stream
        record.sequence_number = self.sequence
        record.prev_hash = self.last_hash
        data = _storable_canonical(record) if storable else _encode(record.to_dict(), _RECORD_ODD)
        if data is None:
            record.make_storable()
            data = _encode(record.to_dict(), _RECORD_ODD)
        record.record_hash = self.last_hash = hashlib.sha256(data).hexdigest()
        return f'{data[:-1].decode()},"record_hash":"{record.record_hash}"}}'


_NUL = b"\\u0000"  # how both encoders write NUL
_ESCAPED = ESCAPED.encode()


def _storable_canonical(record: AuditRecord) -> bytes | None:
    """The canonical form of `record`, or None when a value in it needs escaping first (text.py): a NUL or
    an ESCAPED mark (a `\\u0000` typed as text, or an ESCAPED not in front, also answer None: escaping
    then changes nothing, at the cost of a walk), or a lone surrogate (no UTF-8 encoding exists)."""
    try:
        encoded = _encode(record.to_dict(), _RECORD_ODD)
    except UnicodeEncodeError:
        return None
    return None if _NUL in encoded or _ESCAPED in encoded else encoded
