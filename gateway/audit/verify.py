"""`gateway audit verify`: walk every stream's chain and name each record that was tampered with.

    modified    a record's stored hash does not match its contents, a checkpoint disagrees with the
                record it anchors, or a link is broken (the previous record was changed and re-hashed)
    deleted     sequence numbers missing inside a chain (or at its head, unless the retention job cut it)
    inserted    a second record claiming a sequence number, or records after the stream's final checkpoint
    reordered   a record stored after one with a higher sequence number (storage order is insertion order)
    truncated   a checkpoint names a sequence number beyond the last stored record of its stream

A pure function over rows, checkpoints and purges; the CLI feeds it from a store.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.audit.chain import GENESIS, Checkpoint, hash_of


@dataclass(frozen=True)
class Problem:
    kind: str  # modified | deleted | inserted | reordered | truncated
    stream: str
    sequence: int
    detail: str
    id: int | None = None

    def __str__(self) -> str:
        where = f"stream {self.stream} sequence {self.sequence}" + (f" (row id {self.id})" if self.id else "")
        return f"{self.kind.upper()}: {where}: {self.detail}"


@dataclass
class Report:
    records: int = 0
    streams: int = 0
    problems: list[Problem] = field(default_factory=list)
    unanchored: list[str] = field(default_factory=list)  # streams without any checkpoint

    @property
    def ok(self) -> bool:
        return not self.problems

    def kinds(self) -> set[str]:
        return {p.kind for p in self.problems}


@dataclass(frozen=True, slots=True)
class _Entry:
    id: int
    sequence: int
    prev_hash: str
    stored_hash: str
    intact: bool


class Verifier:
    """Feed rows in storage order with `add`, then `finish` with the checkpoints and purges."""

    def __init__(self) -> None:
        self._streams: dict[str, list[_Entry]] = defaultdict(list)
        self._count = 0

    def add(self, rows: Iterable[tuple[int, Mapping[str, Any]]]) -> None:
        for row_id, fields in rows:
            self._count += 1
            stored = str(fields.get("record_hash") or "")
            self._streams[str(fields["stream"])].append(_Entry(
                row_id, int(fields["sequence_number"]), str(fields.get("prev_hash") or ""), stored,
                hash_of(dict(fields)) == stored))

    def finish(self, checkpoints: Iterable[Checkpoint], purges: Mapping[str, tuple[int, str]]) -> Report:
        report = Report(records=self._count, streams=len(self._streams))
        anchors: dict[str, list[Checkpoint]] = defaultdict(list)
        for checkpoint in checkpoints:
            anchors[checkpoint.stream].append(checkpoint)
        for stream, entries in sorted(self._streams.items()):
            _check_stream(stream, entries, anchors.get(stream, []), purges.get(stream), report)
            if not anchors.get(stream):
                report.unanchored.append(stream)
        for stream, points in sorted(anchors.items()):
            if stream not in self._streams:
                cut = purges.get(stream, (0, ""))[0]
                for point in points:
                    if point.sequence_number > cut:
                        report.problems.append(Problem("truncated", stream, point.sequence_number,
                                                       "a checkpoint anchors this stream but none of its records "
                                                       "is stored"))
                        break
        return report


def _check_stream(stream: str, entries: list[_Entry], checkpoints: list[Checkpoint],
                  purge: tuple[int, str] | None, report: Report) -> None:
    problems = report.problems
    highest = 0
    for entry in entries:  # storage order
        if entry.sequence < highest:
            problems.append(Problem("reordered", stream, entry.sequence,
                                    f"stored after sequence {highest}", entry.id))
        highest = max(highest, entry.sequence)
        if not entry.intact:
            problems.append(Problem("modified", stream, entry.sequence,
                                    "the stored hash does not match the record's contents", entry.id))
    by_sequence: dict[int, list[_Entry]] = defaultdict(list)
    for entry in entries:
        by_sequence[entry.sequence].append(entry)
    cut, expected_prev = purge if purge is not None else (0, GENESIS)
    expected = cut + 1
    chosen: dict[int, _Entry] = {}
    for sequence in sorted(by_sequence):
        candidates = by_sequence[sequence]
        genuine = next((c for c in candidates if c.intact and c.prev_hash == expected_prev), None) or next(
            (c for c in candidates if c.intact), candidates[0])
        for other in candidates:
            if other is not genuine:
                problems.append(Problem("inserted", stream, sequence,
                                        "a second record claims this sequence number", other.id))
        if sequence > expected:
            span = f"{expected}" if sequence - 1 == expected else f"{expected}..{sequence - 1}"
            problems.append(Problem("deleted", stream, expected, f"records {span} are missing"))
        elif sequence < expected:
            problems.append(Problem("inserted", stream, sequence, "a record before the chain's start", genuine.id))
            continue
        elif genuine.prev_hash != expected_prev and genuine.intact:
            problems.append(Problem("modified", stream, sequence - 1,
                                    f"the chain is broken before sequence {sequence}: record {sequence - 1} was "
                                    "changed (and re-hashed) or this one was inserted", genuine.id))
        chosen[sequence] = genuine
        expected_prev = genuine.stored_hash
        expected = sequence + 1
    last = max(chosen) if chosen else cut
    beyond = [p.sequence_number for p in checkpoints if p.sequence_number > max(last, cut)]
    if beyond:
        problems.append(Problem("truncated", stream, max(beyond),
                                f"a checkpoint anchors sequence {max(beyond)} but the stream ends at {last}"))
    for point in checkpoints:
        if point.sequence_number <= cut or point.sequence_number > last:
            continue
        anchored = chosen.get(point.sequence_number)
        if anchored is not None and anchored.stored_hash != point.record_hash:
            problems.append(Problem("modified", stream, point.sequence_number,
                                    "the record differs from its checkpoint", anchored.id))
        if point.final and last > point.sequence_number:
            problems.append(Problem("inserted", stream, point.sequence_number + 1,
                                    f"records after the stream's final checkpoint (up to {last})"))
