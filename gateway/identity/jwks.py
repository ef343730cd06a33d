"""Signing keys for JWT verification: a JWKS document from a URL (cached) or from a file.

`JwksUrl` caching, as the identity provider (IdP) is expected to behave:

- Keys fetched are used for `cache_seconds` (the TTL); within it the IdP is never asked, so an IdP outage
  changes nothing until the TTL ends. After it, the next request refetches; if that fails, verification fails
  closed ("keys unavailable") until a fetch succeeds.
- A token with a `kid` not in the cache triggers one refetch (the IdP rotated keys), at most once every
  `min_refresh_seconds`, so random kids cannot make the gateway hammer the IdP. A failed refetch keeps the
  cached keys.
- One fetch at a time (a lock); the URL comes from configuration only, never from a token (`jku`/`x5u`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("gateway.identity")

MAX_JWKS_BYTES = 1024 * 1024
RETRY_SECONDS = 1.0  # after a failed fetch with no valid cache, requests fail fast for this long
SIGNING_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})


class JwksUnavailable(Exception):
    """No usable key set: the IdP could not be reached after the cache expired, or its answer is invalid."""


def parse_jwks(data: bytes | str) -> dict[str, dict[str, Any]]:
    """A JWKS document -> signing keys by kid. Encryption keys, symmetric (`oct`) keys and keys without a
    kid (unless it is the only key) are skipped; a document without a usable key is an error."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise JwksUnavailable(f"the JWKS is not valid JSON ({error})") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise JwksUnavailable("the JWKS has no 'keys' list")
    usable = [k for k in keys if isinstance(k, dict) and k.get("kty") in SIGNING_KEY_TYPES
              and k.get("use", "sig") == "sig"]
    result: dict[str, dict[str, Any]] = {}
    for key in usable:
        kid = key.get("kid")
        if isinstance(kid, str) and kid:
            result[kid] = key
        elif len(usable) == 1:
            result[""] = key  # the single key of a set without kids; matches tokens without a kid
    if not result:
        raise JwksUnavailable("the JWKS holds no signing keys (RSA, EC or OKP with a kid)")
    return result


class KeySource:
    """Where verification finds the key for a `kid` (None: the token names none)."""

    async def get(self, kid: str | None) -> dict[str, Any] | None:
        raise NotImplementedError

    async def start(self) -> None:
        """Optional warm-up; never fails the gateway's start."""


def _pick(keys: Mapping[str, dict[str, Any]], kid: str | None) -> dict[str, Any] | None:
    if kid is not None:
        return keys.get(kid)
    return next(iter(keys.values())) if len(keys) == 1 else None


class JwksFile(KeySource):
    """A JWKS document on disk (air-gapped sites), read once at start-up."""

    def __init__(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise JwksUnavailable(f"{path}: cannot read: {error}") from None
        self._keys = parse_jwks(text)

    async def get(self, kid: str | None) -> dict[str, Any] | None:
        return _pick(self._keys, kid)


def fetch_url(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if response.status != 200:
            raise JwksUnavailable(f"HTTP {response.status}")
        data: bytes = response.read(MAX_JWKS_BYTES + 1)
    if len(data) > MAX_JWKS_BYTES:
        raise JwksUnavailable("the JWKS is larger than 1 MB")
    return data


class JwksUrl(KeySource):
    def __init__(self, url: str, *, cache_seconds: float, min_refresh_seconds: float, timeout_seconds: float,
                 on_fetch: Callable[[str], None] | None = None,
                 fetch: Callable[[str, float], bytes] = fetch_url,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self._cache_seconds = cache_seconds
        self._min_refresh = min_refresh_seconds
        self._timeout = timeout_seconds
        self._on_fetch = on_fetch or (lambda outcome: None)
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        try:
            await self._refresh()
        except JwksUnavailable as error:
            log.warning("JWKS %s not reachable at start-up (%s); will retry on the first token", self.url, error)

    def _fresh(self) -> bool:
        return self._fetched_at is not None and self._clock() - self._fetched_at < self._cache_seconds

    def _may_refetch(self) -> bool:
        return self._attempted_at is None or self._clock() - self._attempted_at >= self._min_refresh

    async def get(self, kid: str | None) -> dict[str, Any] | None:
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    if self._attempted_at is not None and self._clock() - self._attempted_at < RETRY_SECONDS:
                        raise JwksUnavailable("the last attempt to fetch them failed; retrying shortly")
                    await self._refresh()
            return _pick(self._keys, kid)
        key = _pick(self._keys, kid)
        if key is None and kid is not None and self._may_refetch():
            async with self._lock:
                if kid not in self._keys and self._may_refetch():
                    try:
                        await self._refresh()
                    except JwksUnavailable as error:
                        log.warning("JWKS refresh for unknown kid failed, keeping cached keys: %s", error)
            key = _pick(self._keys, kid)
        return key

    async def _refresh(self) -> None:
        self._attempted_at = self._clock()
        try:
            data = await asyncio.to_thread(self._fetch, self.url, self._timeout)
            keys = parse_jwks(data)
        except JwksUnavailable as error:
            self._on_fetch("failed")
            raise JwksUnavailable(f"JWKS {self.url}: {error}") from None
        except OSError as error:  # URLError, timeouts, connection refused
            self._on_fetch("failed")
            raise JwksUnavailable(f"JWKS {self.url}: {getattr(error, 'reason', error)}") from None
        self._keys = keys
        self._fetched_at = self._clock()
        self._on_fetch("loaded")
        log.info("JWKS %s loaded: %d signing keys", self.url, len(keys))
