"""Slowing down repeated authentication failures from one client address.

Each address has a bucket of `burst` failures, refilled at `per_minute`. A failure takes one token; while the
bucket is empty, requests from that address that carry credentials are refused with 429 and `Retry-After`
(the time until one token is back) without being checked, so guessing keys or replaying stolen tokens runs
at `per_minute` at most. Successes cost nothing. At most `max_addresses` buckets are kept (least recently
failed dropped first), so a flood of addresses cannot grow memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class FailureLimiter:
    def __init__(self, *, burst: int, per_minute: float, max_addresses: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = float(burst)
        self.rate = per_minute / 60.0
        self.max_addresses = max_addresses
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (tokens, at)

    def _tokens(self, address: str, now: float) -> float:
        tokens, at = self._buckets.get(address, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def retry_after(self, address: str | None) -> float | None:
        """Seconds until this address may try again, or None if it may try now."""
        if address is None or address not in self._buckets:
            return None
        tokens = self._tokens(address, self._clock())
        return None if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def failed(self, address: str | None) -> None:
        if address is None:
            return
        now = self._clock()
        tokens = max(0.0, self._tokens(address, now) - 1.0)
        self._buckets[address] = (tokens, now)
        self._buckets.move_to_end(address)
        while len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)
