"""Repeated credentials answered from memory: a BI tool sends the same bearer token or API key with every
statement and every poll, and checking it in full each time (JWT signature, key store round trip) costs
more than the rest of a cached query.

    VerifiedTokens   bearer tokens that verified -> their Identity. A hit skips decoding and the signature
                     check; it is served only before the token's `exp` (no leeway: a token in its leeway is
                     checked in full again), at most `ttl_seconds` after it verified, and only while the key
                     set still holds the very key that verified it (a key the IdP withdrew ends its tokens
                     at the next JWKS refresh). Keyed by an HMAC of the token under a per-process random key.
    CachedKeyStore   a key store whose lookups cost a round trip (PostgreSQL): a record found is reused for
                     `ttl_seconds`, so a key revoked or rotated out elsewhere (`gateway keys` on another
                     machine) stops working within that bound; changes made through this store are seen at
                     once. Unknown key ids are never cached (a key just created works at once). State
                     (expiry, revocation time) is still judged against the clock on every request.

Both are bounded by `max_entries` (least recently used dropped first) and never hold a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cachetools import TTLCache

from gateway.identity.api_keys import ApiKeyRecord, KeyStore
from gateway.identity.jwks import JwksUnavailable, KeySource
from gateway.identity.model import Identity


@dataclass(frozen=True, slots=True)
class _Token:
    identity: Identity
    kid: str | None
    key: dict[str, Any]  # the JWK that verified the signature
    until: float  # epoch seconds: min(exp, verified + ttl)


class VerifiedTokens:
    def __init__(self, *, max_entries: int = 10_000, ttl_seconds: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, _Token] = OrderedDict()

    def _digest(self, token: str) -> bytes:
        return hmac.new(self._secret, token.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    async def get(self, token: str, keys: KeySource) -> Identity | None:
        """The identity of `token` if it verified and may still be served from memory, else None."""
        digest = self._digest(token)
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if self._clock() >= entry.until:
            del self._entries[digest]
            return None
        try:
            current = await keys.get(entry.kid)
        except JwksUnavailable:
            current = None  # the full check says why
        if current != entry.key:
            del self._entries[digest]
            return None
        self._entries.move_to_end(digest)
        return entry.identity

    def remember(self, token: str, identity: Identity, *, kid: str | None, key: dict[str, Any],
                 expires_at: float) -> None:
        if self.max_entries <= 0:
            return
        until = min(expires_at, self._clock() + self.ttl_seconds)
        digest = self._digest(token)
        self._entries[digest] = _Token(identity, kid, dict(key), until)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class CachedKeyStore:
    """A `KeyStore` in front of another, caching the records `get` finds for `ttl_seconds`."""

    def __init__(self, store: KeyStore, *, ttl_seconds: float, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl_seconds = ttl_seconds
        self._records: TTLCache[str, ApiKeyRecord] = TTLCache(maxsize=max_entries, ttl=ttl_seconds, timer=clock)

    def __repr__(self) -> str:
        return f"CachedKeyStore({self.store!r}, ttl_seconds={self.ttl_seconds:g})"

    async def start(self) -> None:
        await self.store.start()

    async def close(self) -> None:
        await self.store.close()

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        record = self._records.get(key_id)
        if record is None:
            record = await self.store.get(key_id)
            if record is not None:
                self._records[key_id] = record
        return record

    async def all(self) -> list[ApiKeyRecord]:
        return await self.store.all()

    async def put(self, records: Sequence[ApiKeyRecord]) -> None:
        for record in records:
            self._records.pop(record.key_id, None)
        try:
            await self.store.put(records)
        finally:
            for record in records:
                self._records.pop(record.key_id, None)

    async def touch(self, key_id: str, when: datetime) -> None:
        # read again next time, with its new last use (re-setting the entry would restart its time to live)
        self._records.pop(key_id, None)
        await self.store.touch(key_id, when)
