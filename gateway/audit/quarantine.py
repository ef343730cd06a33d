"""Records a store refused: kept aside so they never block the records behind them.

A store that is up but refuses one record (a value or constraint it will not take) would refuse the same
batch forever. The trail bisects the batch down to the refused records and moves each here:
`<spool_dir>/quarantine/<stream>.jsonl`, one JSON object per line with the time, the store's reason and the
record's journal line exactly as sealed (its hash still verifies), fsync'd before the spool lets it go. An
unreadable line of a journal being replayed is kept here too (as text). Nothing is ever deleted from it.
The gateway logs each one, counts it (`gateway_audit_quarantined_total`) and lists the latest at
`/health/audit`; `gateway audit verify` names the store's gap at that sequence, which the quarantine file
explains.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gateway.audit.record import utc_now

log = logging.getLogger("gateway.audit")

RECENT = 50  # entries listed by /health/audit


@dataclass(frozen=True, slots=True)
class Quarantined:
    """What the ops view shows: where the record sat, never its contents."""

    quarantined_at: str
    stream: str
    sequence_number: int | None
    event_id: str | None
    reason: str
    file: str


class Quarantine:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0
        self.recent: deque[Quarantined] = deque(maxlen=RECENT)

    def keep(self, *, stream: str, reason: str, line: dict[str, Any] | None = None, text: str | None = None) -> None:
        """Append one refused record (`line`, its journal object) or unreadable journal `text`. Raises OSError
        when the disk refuses: then the record stays where it was."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{stream}.jsonl"
        entry = Quarantined(utc_now(), stream, line.get("sequence_number") if line else None,
                            line.get("event_id") if line else None, reason, str(path))
        data = json.dumps({**asdict(entry), "record": line, "text": text}, ensure_ascii=True,
                          separators=(",", ":"), default=str) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self.count += 1
        self.recent.append(entry)
        log.error("audit record quarantined: stream %s sequence %s (event %s): %s; kept in %s", stream,
                  entry.sequence_number, entry.event_id, reason, path)

    def view(self) -> dict[str, Any]:
        return {"quarantined": self.count, "recent": [asdict(e) for e in self.recent]}


def kept_in(directory: Path) -> list[tuple[str, int]]:
    """(stream, sequence) of every quarantined record in `directory` (what `gateway audit verify` notes)."""
    kept: list[tuple[str, int]] = []
    for path in sorted(directory.glob("*.jsonl")) if directory.is_dir() else []:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("sequence_number"), int):
                kept.append((str(entry.get("stream")), entry["sequence_number"]))
    return kept
