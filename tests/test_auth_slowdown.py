"""The authentication slow-down never locks out credentials that verify: buckets per (address, claimed
principal), recently verified credentials still checked while slowed, failures still limited.

A model-based Hypothesis test drives the real Authenticator (api_keys mode, real scrypt-hashed keys in a
real key file) with random sequences of good and bad attempts from a few addresses and users, and checks
every answer against the model; an end-to-end case shows it through a real gateway and the real client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import trino
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from trino.auth import BasicAuthentication

from gateway.errors import AuthenticationFailed
from gateway.identity.api_keys import ApiKeys
from gateway.identity.authenticator import Authenticator
from gateway.identity.failures import FailureLimiter, VerifiedCredentials, claimed_principal, limit_key
from gateway.identity.key_stores import FileKeyStore
from gateway.identity.model import Credentials
from gateway.testing import GatewayProcess
from tests.conftest import api_keys_file, demo_config

USERS = ("svc-a", "svc-b")
ADDRESSES = ("10.0.0.1", "10.0.0.2")
BURST = 3


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("keys") / "api_keys.yaml"
    return path, api_keys_file(path, {user: {"groups": ["analysts"]} for user in USERS})


attempt = st.tuples(st.sampled_from(USERS), st.sampled_from(ADDRESSES), st.booleans())
# the case the slow-down used to get wrong: verified, then a stale client fails past the burst, then good again
STALE_CLIENT = [("svc-a", "10.0.0.1", True), *[("svc-a", "10.0.0.1", False)] * (BURST + 1),
                ("svc-a", "10.0.0.1", True), ("svc-b", "10.0.0.1", True)]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(attempts=STALE_CLIENT)
@given(attempts=st.lists(attempt, min_size=1, max_size=30))
def test_slowdown_model(keys: tuple[Path, dict[str, str]], attempts: list[tuple[str, str, bool]]) -> None:
    path, secrets = keys
    frozen = [0.0]  # no refill during one example: the model counts failures exactly

    async def run() -> None:
        store = FileKeyStore(path)
        authenticator = Authenticator(mode="api_keys", api_keys=ApiKeys(store),
                                      limiter=FailureLimiter(burst=BURST, per_minute=1, clock=lambda: frozen[0]),
                                      verified=VerifiedCredentials(clock=lambda: frozen[0]))
        await authenticator.start()
        failures: dict[tuple[str, str], int] = {}
        verified: set[str] = set()
        for user, address, good in attempts:
            secret = secrets[user] if good else "gwk_wrong_secret"
            credentials = Credentials(scheme="basic", username=user, secret=secret, client_address=address)
            slowed = failures.get((address, user), 0) >= BURST
            try:
                identity = await authenticator.authenticate(credentials)
            except AuthenticationFailed as failure:
                if good:  # a good key is refused only when its bucket is empty and it never verified
                    assert slowed and user not in verified and failure.reason == "rate_limited", (user, address)
                elif slowed:
                    assert failure.reason == "rate_limited" and failure.retry_after is not None
                else:
                    assert failure.reason != "rate_limited"
                    failures[(address, user)] = failures.get((address, user), 0) + 1
                continue
            assert good and identity.user == user
            assert not slowed or user in verified  # served while slowed only when it verified before
            verified.add(user)

    asyncio.run(run())


@given(principal=st.text(max_size=300), address=st.sampled_from(ADDRESSES), secret=st.text(max_size=50))
def test_verified_set_holds_digests_only(principal: str, address: str, secret: str) -> None:
    verified = VerifiedCredentials(max_entries=4)
    credentials = Credentials(scheme="basic", username=principal, secret=secret, client_address=address)
    verified.remember(credentials)
    assert credentials in verified and len(verified) == 1
    assert Credentials(scheme="basic", username=principal, secret=secret + "x") not in verified
    assert all(len(digest) == 32 for digest in verified._entries)  # HMAC-SHA256: never the secret itself
    key = limit_key(credentials)
    assert key is not None and key.startswith(address) and len(key) <= len(address) + 1 + 256
    assert claimed_principal(Credentials(scheme="bearer", secret=secret)) == "bearer:"  # unreadable: one bucket


def test_bounded_verified_set() -> None:
    now = [0.0]
    verified = VerifiedCredentials(max_entries=2, ttl_seconds=10, clock=lambda: now[0])
    a, b, c = (Credentials(scheme="basic", username=u, secret="s") for u in "abc")
    for credentials in (a, b, c):
        verified.remember(credentials)
    assert len(verified) == 2 and a not in verified and c in verified  # oldest dropped
    now[0] = 11
    assert c not in verified  # expired


@pytest.mark.slow  # tens of seconds of real timeouts: in `make test-slow`
def test_stale_client_does_not_lock_out_others(demo_database: Path, tmp_path: Path) -> None:
    """Behind one address (a BI server): a client with a stale key keeps failing; the same service
    account's good key, which verified before, and every other account keep working."""
    keys_file = tmp_path / "keys.yaml"

    secrets = api_keys_file(keys_file, {user: {"groups": ["analysts"], "attributes": {"nations": [3]}}
                                        for user in ("bi", "other")})
    config = demo_config(demo_database, identity={"mode": "api_keys", "api_keys": {"file": str(keys_file)},
                                                  "failure_limit": {"burst": 2, "per_minute": 1}})
    with GatewayProcess(tmp_path, config) as gateway:
        url = f"{gateway.url}/v1/statement"

        def post(user: str, secret: str) -> int:
            return httpx.post(url, content="SELECT 1", headers={
                "Authorization": httpx.BasicAuth(user, secret)._auth_header}).status_code

        assert post("bi", secrets["bi"]) == 200  # verified once
        assert [post("bi", "gwk_stale_key") for _ in range(4)] == [401, 401, 429, 429]
        assert post("bi", secrets["bi"]) == 200  # the good key is still served
        assert post("other", secrets["other"]) == 200  # another principal behind the same address
        assert post("bi", "gwk_stale_key") == 429  # the stale one is still slowed
        conn = trino.dbapi.connect(host=gateway.host, port=gateway.port, user="bi", catalog="demo", schema="tpch",
                                   auth=BasicAuthentication("bi", secrets["bi"]), allow_insecure_auth=True,
                                   max_attempts=1)
        cursor = conn.cursor()
        cursor.execute("SELECT DISTINCT c_nationkey FROM customer ORDER BY 1")
        assert cursor.fetchall() == [[3]]
        conn.close()
