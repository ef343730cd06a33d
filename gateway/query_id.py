"""Query ids in Trino's shape, `YYYYMMDD_HHMMSS_NNNNN_xxxxx`, unique per gateway process."""

from __future__ import annotations

import itertools
import secrets
import string
import threading
import time
from datetime import UTC, datetime

_ALPHABET = string.ascii_lowercase + string.digits


class QueryIdGenerator:
    def __init__(self) -> None:
        # The suffix tells replicas apart, as Trino's coordinator id does.
        self.instance = "".join(secrets.choice(_ALPHABET) for _ in range(5))
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._second = -1
        self._stamp = ""  # the current second, formatted once per second rather than once per query

    def next(self) -> str:
        second = int(time.time())
        with self._lock:
            number = next(self._counter) % 100000
            if second != self._second:
                self._second, self._stamp = second, f"{datetime.fromtimestamp(second, UTC):%Y%m%d_%H%M%S}"
            stamp = self._stamp
        return f"{stamp}_{number:05d}_{self.instance}"
