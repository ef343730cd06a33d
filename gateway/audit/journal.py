"""The local journal: every record is appended here before the response that ends its query is sent.

One append-only segment file at a time per stream, `<dir>/<stream>.<n>.jsonl`, one canonical JSON record per
line. An append is a single write(2): once it returns, the record survives SIGKILL of the gateway (the kernel
holds it). The trail's writer fsyncs the journal after every batch (off the query path), so records also
survive power loss while the store is down — this is the spool. Segments are deleted once every record in
them is in the store. A gateway that died leaves its segments behind; the next one replays them in order.

Each live segment is held under an exclusive flock, so replicas sharing a directory never replay each
other's live segments.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("gateway.audit")

SUFFIX = ".jsonl"


@dataclass
class _Segment:
    path: Path
    fd: int
    size: int = 0
    last_sequence: int = 0


class Journal:
    def __init__(self, directory: Path, stream: str, *, segment_bytes: int = 16 * 1024 * 1024) -> None:
        self.directory = directory
        self.stream = stream
        self.segment_bytes = segment_bytes
        self._number = 0
        self._current: _Segment | None = None
        self._closed: list[_Segment] = []  # rotated, not yet fully stored (fds kept for flock)
        self._lock = threading.Lock()
        self._ends: deque[tuple[int, int]] = deque()  # (sequence, journal bytes written through it), unstored
        self._written = 0
        self._stored = 0

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._current = self._new_segment()

    def _new_segment(self) -> _Segment:
        self._number += 1
        path = self.directory / f"{self.stream}.{self._number:06d}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return _Segment(path, fd)

    def append(self, line: str, sequence: int) -> None:
        """Write one record line. Raises OSError when the disk refuses it."""
        segment = self._current
        if segment is None:
            raise OSError("the audit journal is not open")
        data = (line + "\n").encode()
        view = memoryview(data)
        while view:
            written = os.write(segment.fd, view)
            view = view[written:]
        segment.size += len(data)
        segment.last_sequence = sequence
        self._written += len(data)
        self._ends.append((sequence, self._written))
        if segment.size >= self.segment_bytes:
            self._rotate()

    def _rotate(self) -> None:
        segment = self._current
        assert segment is not None
        os.fsync(segment.fd)  # rare (once per segment): a finished segment is on disk before the next begins
        with self._lock:
            self._closed.append(segment)
            self._current = self._new_segment()

    def sync(self) -> None:
        """fsync the live segment (thread-safe; the writer calls it from a worker thread)."""
        with self._lock:
            segment = self._current
            if segment is None:
                return
            fd = os.dup(segment.fd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def acknowledge(self, sequence: int) -> None:
        """Every record up to `sequence` is in the store: delete the rotated segments they fill."""
        ends = self._ends
        while ends and ends[0][0] <= sequence:
            self._stored = ends.popleft()[1]
        with self._lock:
            done = [s for s in self._closed if s.last_sequence <= sequence]
            self._closed = [s for s in self._closed if s.last_sequence > sequence]
        for segment in done:
            _remove(segment)

    @property
    def size(self) -> int:
        """Bytes of journal whose records are not yet known to be stored (the spool size)."""
        return self._written - self._stored

    def close(self, *, stored_through: int) -> None:
        """Close; delete every segment whose records are all stored, keep the rest for the next start."""
        with self._lock:
            segments = [*self._closed, *([self._current] if self._current else [])]
            self._closed, self._current = [], None
        for segment in segments:
            if segment.last_sequence <= stored_through:
                _remove(segment)
            else:
                os.fsync(segment.fd)
                os.close(segment.fd)


def _remove(segment: _Segment) -> None:
    segment.path.unlink(missing_ok=True)
    os.close(segment.fd)


# -- replay of journals left by stopped or killed gateways ---------------------------------------------------


@dataclass
class Orphan:
    """A segment no live gateway holds: its records must reach the store, then it is deleted."""

    path: Path
    fd: int

    def records(self) -> tuple[list[dict[str, Any]], list[str]]:
        """(the record objects, the lines that are not one), in order. A torn last line is dropped: its
        write never returned, so no response depended on it."""
        result: list[dict[str, Any]] = []
        unreadable: list[str] = []
        with open(self.path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                line = raw.decode("utf-8", errors="surrogateescape")
                if not line.endswith("\n"):
                    log.warning("audit journal %s: line %d is incomplete (torn write); ignored", self.path, number)
                    break
                try:
                    value = json.loads(line)
                except json.JSONDecodeError:
                    value = None
                if isinstance(value, dict):
                    result.append(value)
                else:
                    log.error("audit journal %s: line %d is not a JSON record; quarantined", self.path, number)
                    unreadable.append(line)
        return result, unreadable

    def release(self, *, delete: bool) -> None:
        if delete:
            self.path.unlink(missing_ok=True)
        os.close(self.fd)


def orphans(directory: Path, own_stream: str) -> list[Orphan]:
    """Segments of other streams that nobody holds, oldest first within each stream."""
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        if path.name.startswith(f"{own_stream}."):
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # a live gateway's segment
            continue
        found.append(Orphan(path, fd))
    return found
