"""Slowing down repeated authentication failures, without locking out anyone whose credentials verify.

Failures are counted per (client address, claimed principal): the Basic user name, or a bearer token's
unverified `sub` (anything unreadable shares one bucket per address). Each key has a bucket of `burst`
failures, refilled at `per_minute`; a failure takes one token. While a key's bucket is empty, requests under
that key are refused with 429 and `Retry-After` without being checked, so guessing keys or replaying stolen
tokens runs at `per_minute` at most — except a credential that verified recently (within
`verified_cache_seconds`): it is checked in full and served, so one client with a stale token never locks
out the other users behind the same BI server or NAT, nor the same user's fresh sessions.

The set of recently verified credentials holds keyed hashes (HMAC-SHA256 under a random per-process key),
never a secret, and at most `verified_cache_entries` of them; it only decides whether a credential may be
checked while its key is slowed, never whether it is valid. At most `max_keys` buckets are kept (least
recently failed dropped first), so a flood of addresses or names cannot grow memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from gateway.identity.model import Credentials

MAX_PRINCIPAL = 256  # characters of a claimed principal kept in a bucket key


class FailureLimiter:
    def __init__(self, *, burst: int, per_minute: float, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = float(burst)
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def retry_after(self, key: str | None) -> float | None:
        """Seconds until this key may try again, or None if it may try now."""
        if key is None or key not in self._buckets:
            return None
        tokens = self._tokens(key, self._clock())
        return None if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def failed(self, key: str | None) -> None:
        if key is None:
            return
        now = self._clock()
        tokens = max(0.0, self._tokens(key, now) - 1.0)
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)


class VerifiedCredentials:
    """Keyed hashes of credentials that verified in the last `ttl_seconds`, at most `max_entries`."""

    def __init__(self, *, max_entries: int = 10_000, ttl_seconds: float = 900.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, float] = OrderedDict()  # digest -> verified at

    def _digest(self, credentials: Credentials) -> bytes:
        text = "\x00".join((credentials.scheme or "", credentials.username or "", credentials.secret or ""))
        return hmac.new(self._key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def remember(self, credentials: Credentials) -> None:
        if self.max_entries <= 0:
            return
        digest = self._digest(credentials)
        self._entries[digest] = self._clock()
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __contains__(self, credentials: object) -> bool:
        if not isinstance(credentials, Credentials):
            return False
        at = self._entries.get(self._digest(credentials))
        return at is not None and self._clock() - at <= self.ttl_seconds

    def __len__(self) -> int:
        return len(self._entries)


def limit_key(credentials: Credentials) -> str | None:
    """The bucket of a request: client address and claimed principal (None: no address, not limited)."""
    if credentials.client_address is None:
        return None
    return f"{credentials.client_address}\x00{claimed_principal(credentials)[:MAX_PRINCIPAL]}"


def claimed_principal(credentials: Credentials) -> str:
    """Who the credentials say they are, unverified: Basic's user name, or a JWT's `sub` ("" if unreadable)."""
    if credentials.scheme in ("basic", "scram"):  # one API key account, over HTTP or PostgreSQL wire alike
        return f"basic:{credentials.username or ''}"
    if credentials.scheme == "bearer":
        parts = (credentials.secret or "").split(".")
        if len(parts) == 3 and len(parts[1]) <= 16 * 1024:
            try:
                claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
            except (binascii.Error, ValueError, UnicodeDecodeError):
                claims = None
            if isinstance(claims, dict) and isinstance(claims.get("sub"), str):
                return f"bearer:{claims['sub']}"
        return "bearer:"
    return f"{credentials.scheme or ''}:"
