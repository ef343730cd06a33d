"""PostgreSQL wire authentication against a real gateway (JWT + API keys + TLS): SCRAM-SHA-256 with API keys
(the same Identity as HTTP Basic with that key), cleartext passwords (JWT or key) over TLS only, failures
answered 28P01 and audited, and TLS verified by psql against the test CA."""

from __future__ import annotations

import socket
import struct
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from trino.auth import BasicAuthentication

from gateway.identity.scram import ScramExchange, ScramVerifier, make_verifier
from tests.conftest import api_keys_file, demo_config
from tests.idp import IdP, self_signed_cert
from tests.pgwire_support import PgGateway
from tests.test_identity_gateway import identity_config, query

KEYS = {"svc-bi": {"groups": ["analysts"], "attributes": {"nations": [2], "clearance": 2}},
        "svc-eu": {"groups": ["analysts"], "attributes": {"nations": [6, 7], "clearance": 2}}}
NATIONS = "SELECT DISTINCT c_nationkey FROM customer ORDER BY 1"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pgwire-auth")


@pytest.fixture(scope="module")
def tls(workdir: Path) -> tuple[Path, Path]:
    return self_signed_cert(workdir)


@pytest.fixture(scope="module")
def keys(workdir: Path) -> dict[str, str]:
    return api_keys_file(workdir / "api_keys.yaml", KEYS)


@pytest.fixture(scope="module")
def secure(demo_database: Path, workdir: Path, idp: IdP, tls: tuple[Path, Path],
           keys: dict[str, str]) -> Iterator[PgGateway]:
    cert, key = tls
    config = demo_config(demo_database, identity=identity_config(idp, workdir / "api_keys.yaml"),
                         server={"tls": {"cert": str(cert), "key": str(key)}},
                         audit={"store": f"sqlite:///{workdir / 'audit.db'}", "spool_dir": str(workdir / "spool"),
                                "flush_interval_seconds": 0.01})
    gateway = PgGateway(workdir, config)
    yield gateway
    gateway.stop()


def nations(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as connection:
        return [row[0] for row in connection.execute(NATIONS).fetchall()]


def test_scram_with_an_api_key_gives_the_identity_http_gives(secure: PgGateway, keys: dict[str, str],
                                                              tls: tuple[Path, Path]) -> None:
    for name in KEYS:
        over_pgwire = nations(secure.dsn(name, password=keys[name], sslmode="disable"))
        over_http = [row[0] for row in query(secure.process, tls, BasicAuthentication(name, keys[name]), NATIONS)]
        assert over_pgwire == over_http == KEYS[name]["attributes"]["nations"]  # type: ignore[index]


def test_scram_failures_are_28p01_and_audited(secure: PgGateway, keys: dict[str, str], workdir: Path) -> None:
    source = f"bad-{uuid.uuid4().hex[:8]}"
    wrong = keys["svc-bi"][:-4] + "AAAA"
    for user, password in (("svc-bi", wrong), ("svc-bi", keys["svc-eu"]), ("nobody", keys["svc-bi"])):
        with pytest.raises(psycopg.OperationalError) as caught:
            psycopg.connect(secure.dsn(user, password=password, sslmode="disable", application_name=source))
        assert "password authentication failed" in str(caught.value), caught.value
        assert password not in str(caught.value)
    failures = _auth_failures(workdir / "audit.db", ("svc-bi", "nobody"))
    assert len(failures) >= 3
    assert {r["frontend"] for r in failures} == {"pgwire"}
    assert all(keys["svc-bi"] not in (r["error_message"] or "") for r in failures)


def _auth_failures(db: Path, users: tuple[str, ...]) -> list[dict[str, object]]:
    import sqlite3
    import time

    deadline = time.monotonic() + 10
    while True:
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        connection.row_factory = sqlite3.Row
        try:
            found = [dict(r) for r in connection.execute(
                "SELECT * FROM queries WHERE error_name = 'AUTHENTICATION_FAILED' AND user_name IN (?, ?)", users)]
        finally:
            connection.close()
        if len(found) >= 3 or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_jwt_as_cleartext_password_over_tls(secure: PgGateway, idp: IdP, tls: tuple[Path, Path]) -> None:
    user = "ann"
    token = idp.token("rsa-1", preferred_username=user, nations=[4])
    dsn = secure.dsn(user, password=token, sslmode="verify-full", sslrootcert=str(tls[0]), host="localhost")
    assert nations(dsn) == [4]
    with psycopg.connect(dsn) as connection:
        assert connection.info.pgconn.ssl_in_use


def test_api_key_as_cleartext_password_over_tls(secure: PgGateway, keys: dict[str, str],
                                                tls: tuple[Path, Path]) -> None:
    dsn = secure.dsn("svc-eu", password=keys["svc-eu"], sslmode="verify-full", sslrootcert=str(tls[0]))
    assert nations(dsn) == [6, 7]


def test_no_cleartext_password_is_asked_without_tls(secure: PgGateway, idp: IdP) -> None:
    with socket.create_connection((secure.host, secure.pg_port), timeout=5) as raw:
        body = b"user\x00ann\x00database\x00demo\x00\x00"
        raw.sendall(struct.pack("!ii", len(body) + 8, 196608) + body)
        kind, _length, code = struct.unpack("!cii", raw.recv(9))
    assert (kind, code) == (b"R", 10)  # AuthenticationSASL, never 3 (cleartext)
    with pytest.raises(psycopg.OperationalError):  # a JWT over plain TCP does not pass as a SCRAM password
        psycopg.connect(secure.dsn("ann", password=idp.token("rsa-1", preferred_username="ann"),
                                   sslmode="disable"))


def test_psql_over_verified_tls(secure: PgGateway, keys: dict[str, str], tls: tuple[Path, Path]) -> None:
    done = subprocess.run(["psql", secure.dsn("svc-bi", sslmode="verify-full", sslrootcert=str(tls[0])),
                           "-X", "-A", "-t", "-c", "SELECT count(*) FROM nation"],
                          capture_output=True, text=True, timeout=60, env={"PGPASSWORD": keys["svc-bi"],
                                                                           "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "25"


def test_scram_exchange_property_only_the_key_verifies() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=40, deadline=None)
    @given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40), st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=","), min_size=8,
        max_size=32))
    def check(password: str, other: str, nonce: str) -> None:
        verifier = make_verifier(password, iterations=64)
        assert ScramVerifier.parse(verifier.text()) == verifier
        for attempt in {password, other}:
            exchange = ScramExchange(verifier, "u", key_id="k")
            first = exchange.first(f"n,,n=u,r={nonce}")
            final = _client_final(attempt, f"n=u,r={nonce}", first)
            again = ScramExchange(verifier, "u", key_id="k")
            same = exchange.claimed_key(final) == again.claimed_key(_client_final(
                attempt, f"n=u,r={nonce}", again.first(f"n,,n=u,r={nonce}")))
            assert same == (attempt == password)  # stable for the right password only (fresh nonces otherwise)
            if attempt == password:
                exchange.verify(final)
                assert exchange.server_final().startswith("v=")
            else:
                with pytest.raises(Exception, match="password authentication failed"):
                    exchange.verify(final)

    check()


def _client_final(password: str, client_first_bare: str, server_first: str) -> str:
    """The client side of SCRAM-SHA-256 (RFC 5802), written from the RFC, independent of the server code."""
    import base64
    import hashlib
    import hmac

    fields = dict(part.split("=", 1) for part in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    without_proof = f"c=biws,r={fields['r']}"
    message = f"{client_first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(stored_key, message, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return f"{without_proof},p={base64.b64encode(proof).decode()}"


@pytest.fixture(scope="module")
def strict(demo_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PgGateway, str]]:
    workdir = tmp_path_factory.mktemp("pgwire-strict")
    key = api_keys_file(workdir / "api_keys.yaml", {"svc-bi": KEYS["svc-bi"]})["svc-bi"]
    identity = {"mode": "api_keys", "api_keys": {"file": str(workdir / "api_keys.yaml")},
                "failure_limit": {"burst": 2, "per_minute": 1}}
    gateway = PgGateway(workdir, demo_config(demo_database, identity=identity))
    yield gateway, key
    gateway.stop()


def test_scram_failures_are_slowed_down_but_a_recently_verified_key_still_works(strict: tuple[PgGateway, str]) -> None:
    gateway, key = strict
    assert nations(gateway.dsn("svc-bi", password=key, sslmode="disable")) == [2]  # verified once
    reasons = []
    for _ in range(3):
        with pytest.raises(psycopg.OperationalError) as caught:
            psycopg.connect(gateway.dsn("svc-bi", password=key[:-4] + "AAAA", sslmode="disable"))
        reasons.append(str(caught.value))
    assert "password authentication failed" in reasons[0] and "Too many failed" in reasons[-1], reasons
    assert nations(gateway.dsn("svc-bi", password=key, sslmode="disable")) == [2]  # not locked out
    assert gateway.process.metric("gateway_pgwire_auth_failures_total", 'method="scram"') >= 3
