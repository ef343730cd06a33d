"""Repeated credentials served from memory (identity/caches.py), security first: property tests over any
sequence of uses, revocations, rotations, key withdrawals and passing time, on a fake clock."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import AuthenticationFailed
from gateway.identity.api_keys import ApiKeyRecord, ApiKeys, new_key, verify_secret
from gateway.identity.authenticator import Authenticator
from gateway.identity.caches import CachedKeyStore, VerifiedTokens
from gateway.identity.jwks import JwksUrl
from gateway.identity.jwt_verify import JwtVerifier
from gateway.identity.key_stores import FileKeyStore
from gateway.identity.model import Credentials
from tests.idp import AUDIENCE, ISSUER, IdP

CACHE_SECONDS = 5.0
START = datetime(2026, 1, 1, tzinfo=UTC)



def cheap_hash(secret: str) -> str:
    """A scrypt hash with tiny cost parameters (verification honours the parameters stored with the hash):
    the property here is about the cache, not about scrypt's cost."""
    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=16, r=8, p=1, dklen=32)
    encode = base64.urlsafe_b64encode
    return f"scrypt$16$8$1${encode(salt).decode()}${encode(digest).decode()}"


_KEYS = [new_key() for _ in range(2)]  # two service accounts
_HASHES = [cheap_hash(secret) for _, secret, _ in _KEYS]


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        return self.now.timestamp()


key_steps = st.lists(st.one_of(
    st.tuples(st.just("use"), st.integers(0, 1)),
    st.tuples(st.just("revoke"), st.integers(0, 1)),
    st.tuples(st.just("rotate"), st.integers(0, 1), st.sampled_from([0, 3, 8])),  # grace seconds
    st.tuples(st.just("wait"), st.sampled_from([0.5, 2, 4.9, 5, 7, 70]))), min_size=1, max_size=14)


def test_the_cheap_hash_is_a_real_one() -> None:
    assert verify_secret(_KEYS[0][1], _HASHES[0]) and not verify_secret(_KEYS[1][1], _HASHES[0])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key_steps)
def test_a_revoked_or_rotated_out_key_stops_working_within_the_cache_bound(tmp_path: Path,
                                                                          steps: list[tuple[Any, ...]]) -> None:
    """The gateway reads the PostgreSQL-like store through the cache; an admin on another machine changes
    the records. A key that is active works; one revoked or expired `cache_seconds` ago or more never does."""
    path = tmp_path / f"keys-{time.monotonic_ns()}.yaml"
    clock = Clock()

    async def scenario() -> None:
        admin_store = FileKeyStore(path)
        await admin_store.put([ApiKeyRecord(key_id=key_id, name=f"svc-{i}", secret_hash=_HASHES[i], created_at=START)
                               for i, (key_id, _, _) in enumerate(_KEYS)])
        admin = ApiKeys(admin_store, clock=clock)
        served = ApiKeys(CachedKeyStore(FileKeyStore(path), ttl_seconds=CACHE_SECONDS, clock=clock.seconds),
                         clock=clock)
        await served.store.start()
        changed = [START - timedelta(days=1)] * 2  # when each key's record last changed (admin side)
        warm = [("use", 0), ("use", 0), ("use", 1), ("use", 1)]  # the gateway has been serving both keys
        for step in [*warm, *steps]:
            if step[0] == "wait":
                clock.now += timedelta(seconds=step[1])
            elif step[0] == "revoke":
                await admin.store.put([replace(r, revoked_at=clock.now) for r in await admin_store.all()
                                       if r.key_id == _KEYS[step[1]][0] and r.revoked_at is None])
                changed[step[1]] = clock.now
            elif step[0] == "rotate":  # what `gateway keys rotate` does to the old key: its life ends after grace
                old = await admin_store.get(_KEYS[step[1]][0])
                assert old is not None
                until = clock.now + timedelta(seconds=step[2])
                ends = min(old.expires_at, until) if old.expires_at is not None else until
                await admin_store.put([replace(old, expires_at=ends)])
                changed[step[1]] = clock.now
            else:
                index = step[1]
                truth = await admin_store.get(_KEYS[index][0])
                assert truth is not None
                try:
                    identity = await served.authenticate(None, _KEYS[index][2])
                    outcome = "ok"
                    assert identity.user == f"svc-{index}"
                except AuthenticationFailed as failure:
                    outcome = failure.reason
                if truth.state(clock.now) == "active":
                    assert outcome == "ok"
                elif clock.now - changed[index] >= timedelta(seconds=CACHE_SECONDS):
                    assert outcome in ("revoked_api_key", "expired_api_key"), (truth, outcome)

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def idp() -> Iterator[IdP]:
    provider = IdP()
    provider.add_key("ec-1", "ec")
    provider.add_key("ec-2", "ec")
    yield provider
    provider.close()


token_steps = st.lists(st.one_of(
    st.tuples(st.just("use"), st.integers(0, 2)),
    st.tuples(st.just("withdraw"), st.sampled_from(["ec-1", "ec-2"])),  # the IdP stops publishing the key
    st.tuples(st.just("wait"), st.sampled_from([0.5, 4, 6, 29, 31, 59, 61]))), min_size=1, max_size=12)
JWKS_SECONDS, TOKEN_SECONDS = 30.0, 60.0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token_steps, st.lists(st.sampled_from([5, 30, 90]), min_size=3, max_size=3))
def test_a_token_is_served_from_memory_only_before_exp_and_while_its_key_is_published(
        idp: IdP, steps: list[tuple[Any, ...]], lifetimes: list[int]) -> None:
    """A hit is the identity full verification gave; never at or after `exp`, never `token_cache_seconds`
    after it verified, never once the gateway's key set (refreshed every `jwks_cache_seconds`) lost the key."""
    started = time.time()
    fake = [started]
    keys = JwksUrl(idp.jwks_url, cache_seconds=JWKS_SECONDS, min_refresh_seconds=JWKS_SECONDS, timeout_seconds=2,
                   clock=lambda: fake[0])
    verifier = JwtVerifier(keys=keys, issuers=[ISSUER], audiences=[AUDIENCE], algorithms=["ES256"])
    tokens = VerifiedTokens(ttl_seconds=TOKEN_SECONDS, clock=lambda: fake[0])
    authenticator = Authenticator(mode="jwt", jwt=verifier, tokens=tokens)
    published = dict(idp.keys)
    kids = ["ec-1", "ec-2", "ec-1"]
    minted = [idp.token(kids[i], sub=f"user-{i}", exp=int(started) + lifetimes[i]) for i in range(3)]
    withdrawn: dict[str, float] = {}
    verified_at: dict[int, float] = {}

    async def scenario() -> None:
        try:
            for step in [("use", 0), ("use", 1), ("use", 2), *steps]:
                if step[0] == "wait":
                    fake[0] += step[1]
                elif step[0] == "withdraw":
                    idp.keys.pop(step[1], None)
                    withdrawn.setdefault(step[1], fake[0])
                else:
                    i = step[1]
                    hit = await tokens.get(minted[i], keys)
                    if hit is not None:
                        assert hit.user == f"user-{i}"
                        assert fake[0] < started + lifetimes[i]  # before exp
                        assert fake[0] < verified_at[i] + TOKEN_SECONDS
                        assert kids[i] not in withdrawn or fake[0] < withdrawn[kids[i]] + JWKS_SECONDS
                    try:
                        identity = await authenticator.authenticate(
                            Credentials(scheme="bearer", secret=minted[i], client_address="127.0.0.1"))
                    except AuthenticationFailed:
                        assert kids[i] in withdrawn
                        continue
                    assert identity.user == f"user-{i}"
                    if hit is None:
                        verified_at[i] = fake[0]
        finally:
            idp.keys.update(published)

    asyncio.run(scenario())


def test_a_repeated_token_is_a_hit_and_the_cache_is_bounded(idp: IdP) -> None:
    keys = JwksUrl(idp.jwks_url, cache_seconds=300, min_refresh_seconds=30, timeout_seconds=2)
    verifier = JwtVerifier(keys=keys, issuers=[ISSUER], audiences=[AUDIENCE], algorithms=["ES256"])
    tokens = VerifiedTokens(max_entries=2)
    authenticator = Authenticator(mode="jwt", jwt=verifier, tokens=tokens)
    minted = [idp.token("ec-1", sub=f"u{i}", jti=f"j{i}") for i in range(3)]

    async def scenario() -> None:
        first = await authenticator.authenticate(Credentials(scheme="bearer", secret=minted[0]))
        assert first.token_jti == "j0"
        assert await tokens.get(minted[0], keys) == first
        for token in minted[1:]:
            await authenticator.authenticate(Credentials(scheme="bearer", secret=token))
        assert len(tokens) == 2
        assert await tokens.get(minted[0], keys) is None  # the least recently used went first
        with pytest.raises(AuthenticationFailed):  # a cached token's signature is still what counts
            await authenticator.authenticate(Credentials(scheme="bearer", secret=minted[1][:-4] + "AAAA"))

    asyncio.run(scenario())
