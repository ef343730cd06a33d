"""Service-account API keys: issue, rotate, revoke, list, and verify one presented key.

A key reads `gwk_<key id>_<secret>`. The key id (public, 12 characters) finds the record without trying every
hash; the secret (256 random bits) is stored only as a salted scrypt hash. Records live in a `KeyStore`
(`key_stores.py`: a YAML file, or PostgreSQL). Several records may share a service-account name: rotation
issues a new key and shortens the old one's life to the grace period, so clients can switch over.

Verification answers the same "invalid API key" for an unknown key id and a wrong secret; only the holder of
the right secret learns that the key has expired or been revoked.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cachetools import LRUCache

from gateway.errors import AuthenticationFailed
from gateway.identity.model import Identity
from gateway.identity.scram import ScramVerifier, make_verifier

log = logging.getLogger("gateway.identity")

KEY_PREFIX = "gwk"
_KEY = re.compile(rf"{KEY_PREFIX}_([a-z2-7]{{12}})_([A-Za-z0-9_-]{{43}})")
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


class ApiKeyError(Exception):
    """A key management request that cannot be done (unknown name, name taken, bad input)."""


class KeyStoreUnavailable(Exception):
    """The key store cannot be read or written (file unreadable, PostgreSQL down)."""


def new_key() -> tuple[str, str, str]:
    """(key id, secret, the key as given to the client)."""
    key_id = base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()[:12]
    secret = secrets.token_urlsafe(32)
    return key_id, secret, f"{KEY_PREFIX}_{key_id}_{secret}"


def parse_key(text: str) -> tuple[str, str] | None:
    match = _KEY.fullmatch(text)
    return (match.group(1), match.group(2)) if match else None


def hash_secret(secret: str, *, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    encode = base64.urlsafe_b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt).decode()}${encode(digest).decode()}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.urlsafe_b64decode(digest)
        actual = hashlib.scrypt(secret.encode(), salt=base64.urlsafe_b64decode(salt), n=int(n), r=int(r),
                                p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _store_unavailable(error: KeyStoreUnavailable) -> AuthenticationFailed:
    log.error("API key store unavailable: %s", error)
    return AuthenticationFailed("keys_unavailable", "Cannot verify API keys right now (key store unavailable)")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class ApiKeyRecord:
    """One issued key. `secret_hash` is never shown (repr masks it)."""

    key_id: str
    name: str
    secret_hash: str = field(repr=False)
    groups: tuple[str, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)
    cost_center: str | None = None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    # The SCRAM-SHA-256 verifier of the key (scram.py), for PostgreSQL-wire clients; None for keys issued
    # before the gateway made them (those authenticate over HTTP only, until rotated).
    scram_verifier: str | None = field(default=None, repr=False)

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def identity(self) -> Identity:
        return Identity.create(self.name, groups=self.groups, attributes=self.attributes,
                               cost_center=self.cost_center, auth_method="api_key")


class KeyStore(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def get(self, key_id: str) -> ApiKeyRecord | None: ...
    async def all(self) -> list[ApiKeyRecord]: ...
    async def put(self, records: Sequence[ApiKeyRecord]) -> None:
        """Insert or replace these records (by key id), atomically."""
    async def touch(self, key_id: str, when: datetime) -> None: ...


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else "never"


class ApiKeys:
    """Key management and verification over one `KeyStore`."""

    def __init__(self, store: KeyStore, *, clock: Callable[[], datetime] = utcnow,
                 touch_every: timedelta = timedelta(minutes=1)) -> None:
        self.store = store
        self._clock = clock
        self._touch_every = touch_every
        # key id -> (stored hash, sha256 of the secret that verified against it): skips scrypt on repeat use.
        # Never holds a secret; state (expiry, revocation) is still read from the store on every request.
        self._verified: LRUCache[str, tuple[str, bytes]] = LRUCache(maxsize=10_000)

    # -- management (CLI) ----------------------------------------------------------------------------------

    async def create(self, name: str, *, groups: Iterable[str] = (), attributes: Mapping[str, Any] | None = None,
                     cost_center: str | None = None, expires_in: timedelta | None = None
                     ) -> tuple[ApiKeyRecord, str]:
        if not NAME.fullmatch(name):
            raise ApiKeyError(f"invalid name {name!r}: lowercase letters, digits, '.', '_' and '-', at most 64")
        now = self._clock()
        if any(r.name == name and r.state(now) == "active" for r in await self.store.all()):
            raise ApiKeyError(f"{name!r} already has an active key; use `gateway keys rotate {name}`")
        key_id, secret, key = new_key()
        record = ApiKeyRecord(key_id=key_id, name=name, secret_hash=hash_secret(secret),
                              scram_verifier=make_verifier(key).text(), groups=tuple(groups),
                              attributes=dict(attributes or {}), cost_center=cost_center, created_at=now,
                              expires_at=now + expires_in if expires_in is not None else None)
        await self.store.put([record])
        return record, key

    async def rotate(self, name: str, *, grace: timedelta, expires_in: timedelta | None = None
                     ) -> tuple[ApiKeyRecord, str]:
        """A new key for `name`, with the newest active key's groups and attributes; the active keys stay
        valid for `grace` (or until their own expiry, if sooner). Default lifetime: the old key's."""
        now = self._clock()
        active = sorted((r for r in await self.store.all() if r.name == name and r.state(now) == "active"),
                        key=lambda r: r.created_at)
        if not active:
            raise ApiKeyError(f"{name!r} has no active key to rotate (create one with `gateway keys create`)")
        newest = active[-1]
        if expires_in is None and newest.expires_at is not None:
            expires_in = newest.expires_at - newest.created_at
        key_id, secret, key = new_key()
        record = replace(newest, key_id=key_id, secret_hash=hash_secret(secret),
                         scram_verifier=make_verifier(key).text(), created_at=now,
                         expires_at=now + expires_in if expires_in is not None else None, last_used_at=None,
                         revoked_at=None)
        until = now + grace
        ending = [replace(r, expires_at=min(r.expires_at, until) if r.expires_at is not None else until)
                  for r in active]
        await self.store.put([*ending, record])
        return record, key

    async def revoke(self, name: str) -> int:
        now = self._clock()
        records = [replace(r, revoked_at=now) for r in await self.store.all()
                   if r.name == name and r.revoked_at is None]
        if not records:
            raise ApiKeyError(f"{name!r} has no key to revoke")
        await self.store.put(records)
        return len(records)

    async def list(self) -> list[ApiKeyRecord]:
        return sorted(await self.store.all(), key=lambda r: (r.name, r.created_at))

    # -- verification (gateway) ----------------------------------------------------------------------------

    async def authenticate(self, username: str | None, key: str) -> Identity:
        invalid = AuthenticationFailed("invalid_api_key", "Invalid API key")
        parsed = parse_key(key)
        if parsed is None:
            raise invalid
        key_id, secret = parsed
        try:
            record = await self.store.get(key_id)
        except KeyStoreUnavailable as error:
            raise _store_unavailable(error) from None
        if record is None or not await self._secret_matches(record, secret):
            raise invalid
        return await self._accept(record, username)

    async def scram_candidate(self, name: str) -> tuple[str, ScramVerifier] | None:
        """(key id, verifier) of the newest active key of service account `name` that has a SCRAM verifier.
        During a rotation's grace period that is the new key: SCRAM clients switch at once."""
        try:
            records = await self.store.all()
        except KeyStoreUnavailable as error:
            raise _store_unavailable(error) from None
        now = self._clock()
        active = sorted((r for r in records if r.name == name and r.state(now) == "active" and r.scram_verifier),
                        key=lambda r: r.created_at)
        for record in reversed(active):
            verifier = ScramVerifier.parse(record.scram_verifier or "")
            if verifier is not None:
                return record.key_id, verifier
        return None

    async def authenticate_verified(self, key_id: str, username: str | None) -> Identity:
        """The identity of a key whose secret the client proved another way (SCRAM); its state is read again."""
        try:
            record = await self.store.get(key_id)
        except KeyStoreUnavailable as error:
            raise _store_unavailable(error) from None
        if record is None:
            raise AuthenticationFailed("invalid_api_key", "Invalid API key")
        return await self._accept(record, username)

    async def _accept(self, record: ApiKeyRecord, username: str | None) -> Identity:
        now = self._clock()
        state = record.state(now)
        if state == "revoked":
            raise AuthenticationFailed("revoked_api_key", f"API key of {record.name!r} was revoked on "
                                                          f"{_when(record.revoked_at)}")
        if state == "expired":
            raise AuthenticationFailed("expired_api_key", f"API key of {record.name!r} expired on "
                                                          f"{_when(record.expires_at)}; ask for a new one "
                                                          f"(`gateway keys rotate {record.name}`)")
        if username is not None and username != record.name:
            raise AuthenticationFailed("wrong_user", f"This API key belongs to {record.name!r}; use that user "
                                                     f"name with it")
        if record.last_used_at is None or now - record.last_used_at >= self._touch_every:
            try:
                await self.store.touch(record.key_id, now)
            except KeyStoreUnavailable as error:  # last use is bookkeeping; it never blocks a valid key
                log.warning("could not record last use of API key %s: %s", record.key_id, error)
        return record.identity()

    async def _secret_matches(self, record: ApiKeyRecord, secret: str) -> bool:
        fingerprint = hashlib.sha256(secret.encode()).digest()
        cached = self._verified.get(record.key_id)
        if cached is not None and cached[0] == record.secret_hash:
            return hmac.compare_digest(cached[1], fingerprint)
        if not await asyncio.to_thread(verify_secret, secret, record.secret_hash):
            return False
        self._verified[record.key_id] = (record.secret_hash, fingerprint)
        return True
