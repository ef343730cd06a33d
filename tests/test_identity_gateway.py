"""Identity end to end: a real gateway over TLS in `jwt` mode, a real JWKS server, tokens minted with PyJWT,
API keys made with the `gateway keys` CLI, and the real `trino` client with JWTAuthentication and
BasicAuthentication. Claims and key attributes drive the shipped row filters."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trino
from trino.auth import BasicAuthentication, JWTAuthentication

from gateway.identity.api_keys import parse_key
from tests.conftest import GatewayProcess, demo_config
from tests.idp import AUDIENCE, ISSUER, IdP, self_signed_cert


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("identity")


@pytest.fixture(scope="module")
def tls(workdir: Path) -> tuple[Path, Path]:
    return self_signed_cert(workdir)


def identity_config(idp: IdP, keys_file: Path, **overrides: Any) -> dict[str, Any]:
    identity: dict[str, Any] = {
        "mode": "jwt",
        "jwt": {"jwks_url": idp.jwks_url, "issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["RS256", "ES256"],
                "jwks_min_refresh_seconds": 0.2,
                "claims": {"user": ["preferred_username", "sub"], "groups": ["groups", "realm_access.roles"],
                           "cost_center": "cost_center", "attributes": {"nations": "nations"}}},
        "api_keys": {"file": str(keys_file)},
        "failure_limit": {"burst": 10000, "per_minute": 10000},
    }
    identity.update(overrides)
    return identity


@pytest.fixture(scope="module")
def secure(demo_database: Path, workdir: Path, idp: IdP, tls: tuple[Path, Path]) -> Iterator[GatewayProcess]:
    cert, key = tls
    config = demo_config(demo_database, identity=identity_config(idp, workdir / "api_keys.yaml"),
                         server={"tls": {"cert": str(cert), "key": str(key)}})
    process = GatewayProcess(workdir, config)
    yield process
    process.stop()


def connect(gateway: GatewayProcess, tls: tuple[Path, Path], auth: Any, user: str | None = None) -> Any:
    import requests

    session = requests.Session()
    session.verify = str(tls[0])  # the test CA; trust_env off, or REQUESTS_CA_BUNDLE would override it
    session.trust_env = False
    return trino.dbapi.connect(host=gateway.host, port=gateway.port, http_scheme="https", http_session=session,
                               auth=auth, user=user, catalog="demo", schema="tpch", max_attempts=1)


def query(gateway: GatewayProcess, tls: tuple[Path, Path], auth: Any, sql: str, user: str | None = None) -> Any:
    connection = connect(gateway, tls, auth, user)
    try:
        cursor = connection.cursor()
        cursor.execute(sql)
        return cursor.fetchall()
    finally:
        connection.close()
        connection._http_session.close()  # ours (see connect): the client does not close a session it was given


def client(tls: tuple[Path, Path]) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=str(tls[0])), timeout=10)


def post(gateway: GatewayProcess, tls: tuple[Path, Path], headers: dict[str, str],
         sql: str = "SELECT 1") -> httpx.Response:
    with client(tls) as http:
        return http.post(f"{gateway.url}/v1/statement", content=sql, headers=headers)


NATIONS = "SELECT DISTINCT c_nationkey FROM customer ORDER BY 1"


# -- JWT through the real client ----------------------------------------------------------------------------


def test_jwt_claims_drive_row_filters(secure: GatewayProcess, tls: tuple[Path, Path], idp: IdP) -> None:
    auth = JWTAuthentication(idp.token("rsa-1", nations=[1]))
    assert query(secure, tls, auth, NATIONS) == [[1]]
    assert query(secure, tls, auth, "SELECT current_user") == [["alice@example.com"]]
    # EC key, nested roles claim, preferred_username
    token = idp.token("ec-1", preferred_username="ann", groups=[], realm_access={"roles": ["support"]},
                      nations=[2, 3])
    assert query(secure, tls, JWTAuthentication(token), NATIONS) == [[2], [3]]
    admin = idp.token(groups=["admins"], nations=[])
    assert len(query(secure, tls, JWTAuthentication(admin), NATIONS)) == 25


def test_missing_attribute_denies(secure: GatewayProcess, tls: tuple[Path, Path], idp: IdP) -> None:
    token = idp.token(drop=("nations",))
    with pytest.raises(trino.exceptions.TrinoUserError) as caught:
        query(secure, tls, JWTAuthentication(token), NATIONS)
    assert caught.value.error_name == "PERMISSION_DENIED"


def test_rejected_tokens_get_401_with_reason(secure: GatewayProcess, tls: tuple[Path, Path], idp: IdP) -> None:
    now = int(time.time())
    header, payload, signature = idp.token().split(".")
    cases = {
        "has expired": idp.token(iat=now - 900, exp=now - 600),
        "wrong audience": idp.token(aud="another-app"),
        "wrong issuer": idp.token(iss=ISSUER + ".evil.example"),
        "unknown signing key": idp.token().replace(header, header),  # replaced below with a real stranger
        "signature does not verify": f"{header}.{payload[:-2]}AA.{signature}",
        "8192 bytes": idp.token(blob="y" * 9000),
        "not valid yet": idp.token(nbf=now + 3600),
    }
    stranger = IdP()
    stranger.add_key("rsa-unknown")
    cases["unknown signing key"] = stranger.token("rsa-unknown")
    stranger.close()
    for expected, token in cases.items():
        response = post(secure, tls, {"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, expected
        assert response.headers.get_list("www-authenticate") == ['Bearer realm="gateway"', 'Basic realm="gateway"']
        error = response.json()["error"]
        assert expected in error["message"], (expected, error)
        assert error["errorName"] == "PERMISSION_DENIED"
        assert token not in response.text and token[-20:] not in response.text


def test_no_credentials_and_other_schemes(secure: GatewayProcess, tls: tuple[Path, Path]) -> None:
    response = post(secure, tls, {"X-Trino-User": "admin"})
    assert response.status_code == 401
    assert "Authentication required" in response.json()["error"]["message"]
    response = post(secure, tls, {"Authorization": "Negotiate abc"})
    assert response.status_code == 401
    assert "not accepted" in response.json()["error"]["message"]


def test_real_client_sees_the_reason(secure: GatewayProcess, tls: tuple[Path, Path], idp: IdP) -> None:
    expired = idp.token(iat=int(time.time()) - 900, exp=int(time.time()) - 600)
    with pytest.raises(trino.exceptions.HttpError) as caught:
        query(secure, tls, JWTAuthentication(expired), "SELECT 1")
    assert "401" in str(caught.value) and "expired" in str(caught.value)


def test_head_statement_validates_credentials(secure: GatewayProcess, tls: tuple[Path, Path], idp: IdP) -> None:
    with client(tls) as http:
        url = f"{secure.url}/v1/statement"
        assert http.head(url, headers={"Authorization": f"Bearer {idp.token()}"}).status_code == 200
        bad = http.head(url, headers={"Authorization": "Bearer not.a.token"})
        assert bad.status_code == 401 and bad.headers["www-authenticate"]
        assert http.head(url).status_code == 401


def test_idp_key_rotation_without_restart(secure: GatewayProcess, tls: tuple[Path, Path], idp: IdP) -> None:
    idp.add_key("rsa-2", "rsa")
    time.sleep(0.3)  # jwks_min_refresh_seconds
    assert query(secure, tls, JWTAuthentication(idp.token("rsa-2", nations=[4])), NATIONS) == [[4]]


def test_jwks_down_uses_cached_keys(secure: GatewayProcess, tls: tuple[Path, Path], idp: IdP) -> None:
    idp.available = False
    try:
        assert query(secure, tls, JWTAuthentication(idp.token("rsa-1", nations=[5])), NATIONS) == [[5]]
        stranger = IdP()
        stranger.add_key("rsa-new")
        token = stranger.token("rsa-new")
        stranger.close()
        time.sleep(0.3)
        response = post(secure, tls, {"Authorization": f"Bearer {token}"})
        assert response.status_code == 401 and "unknown signing key" in response.json()["error"]["message"]
        assert query(secure, tls, JWTAuthentication(idp.token("ec-1", nations=[6])), NATIONS) == [[6]]
    finally:
        idp.available = True


# -- impersonation --------------------------------------------------------------------------------------------


def test_impersonation(secure: GatewayProcess, tls: tuple[Path, Path], idp: IdP) -> None:
    bi = JWTAuthentication(idp.token(sub="superset", groups=["bi-service"], nations=[]))
    assert query(secure, tls, bi, "SELECT current_user", user="carol") == [["carol"]]
    with pytest.raises(trino.exceptions.TrinoUserError) as caught:  # carol has no groups of her own here
        query(secure, tls, bi, NATIONS, user="carol")
    assert caught.value.error_name == "PERMISSION_DENIED"
    for target in ("admin", "etl-svc"):
        with pytest.raises(trino.exceptions.TrinoUserError) as caught:
            query(secure, tls, bi, "SELECT 1", user=target)
        assert caught.value.error_name == "PERMISSION_DENIED"
        assert f"User superset cannot impersonate user {target}" in caught.value.message
    analyst = JWTAuthentication(idp.token(nations=[1]))
    with pytest.raises(trino.exceptions.TrinoUserError, match="cannot impersonate user bob"):
        query(secure, tls, analyst, "SELECT 1", user="bob")
    assert query(secure, tls, analyst, NATIONS, user="alice@example.com") == [[1]]  # same user: fine
    assert secure.metric("gateway_impersonation_denials_total") >= 3


# -- API keys through the CLI and BasicAuthentication ---------------------------------------------------------


def keys_cli(gateway: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "keys", *args, "--config", str(gateway.config_path)],
                          capture_output=True, text=True, timeout=60)


def test_api_keys_lifecycle(secure: GatewayProcess, tls: tuple[Path, Path]) -> None:
    created = keys_cli(secure, "create", "--name", "etl-nightly", "--groups", "analysts", "--attr", "nations=1,2",
                       "--expires", "90d")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("gwk_") and "shown only now" in created.stderr
    basic = BasicAuthentication("etl-nightly", key)
    assert query(secure, tls, basic, NATIONS, user="etl-nightly") == [[1], [2]]
    assert query(secure, tls, basic, "SELECT current_user", user="etl-nightly") == [["etl-nightly"]]

    rotated = keys_cli(secure, "rotate", "etl-nightly", "--grace", "1h")
    assert rotated.returncode == 0, rotated.stderr
    new_key = rotated.stdout.strip()
    for secret in (key, new_key):  # both valid during the grace period
        assert query(secure, tls, BasicAuthentication("etl-nightly", secret), "SELECT 1", user="etl-nightly")

    listed = keys_cli(secure, "list")
    assert listed.returncode == 0
    assert "etl-nightly" in listed.stdout and "active" in listed.stdout and "LAST USED" in listed.stdout
    assert key not in listed.stdout and new_key not in listed.stdout and "scrypt" not in listed.stdout
    file_text = Path(secure.config_path.parent / "api_keys.yaml").read_text()
    secrets_given = [parsed[1] for parsed in (parse_key(key), parse_key(new_key)) if parsed is not None]
    assert len(secrets_given) == 2 and not any(secret in file_text for secret in secrets_given)

    revoked = keys_cli(secure, "revoke", "etl-nightly")
    assert revoked.returncode == 0 and "revoked 2 key(s)" in revoked.stderr
    response = post(secure, tls, {"Authorization": httpx.BasicAuth("etl-nightly", new_key)._auth_header})
    assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]

    short = keys_cli(secure, "create", "--name", "tmp-job", "--groups", "analysts", "--expires", "1s")
    assert short.returncode == 0
    time.sleep(1.2)
    with pytest.raises(trino.exceptions.HttpError) as caught:
        query(secure, tls, BasicAuthentication("tmp-job", short.stdout.strip()), "SELECT 1", user="tmp-job")
    assert "expired on" in str(caught.value)

    wrong = post(secure, tls, {"Authorization": httpx.BasicAuth("etl-nightly", "gwk_nope")._auth_header})
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "Invalid API key"


def test_keys_cli_errors(secure: GatewayProcess) -> None:
    assert keys_cli(secure, "rotate", "nobody").returncode == 1
    assert keys_cli(secure, "create", "--name", "Bad Name").returncode == 1
    bad = keys_cli(secure, "create", "--name", "x", "--expires", "soon")
    assert bad.returncode == 2 and "not a duration" in bad.stderr


def test_secrets_never_logged(secure: GatewayProcess, idp: IdP) -> None:
    log = secure.log()
    assert "authentication failed" in log and "reason" in log
    assert "eyJ" not in log  # no JWT (their header always starts so) anywhere in the log
    assert "gwk_" not in log
    assert secure.metric("gateway_auth_failures_total", 'reason="expired"') >= 1
    assert secure.metric("gateway_authentications_total", 'method="jwt"') >= 1


# -- rate limiting, api_keys mode over plain http ---------------------------------------------------------------


@pytest.mark.slow  # tens of seconds of real timeouts: in `make test-slow`
def test_repeated_failures_are_slowed(demo_database: Path, workdir: Path) -> None:
    keys_file = workdir / "limited_keys.yaml"
    config = demo_config(demo_database, identity={"mode": "api_keys", "api_keys": {"file": str(keys_file)},
                                                  "failure_limit": {"burst": 3, "per_minute": 6}})
    gateway = GatewayProcess(workdir, config)
    try:
        key = keys_cli(gateway, "create", "--name", "svc", "--groups", "analysts", "--attr", "nations=3").stdout.strip()
        good = {"Authorization": httpx.BasicAuth("svc", key)._auth_header}
        bad = {"Authorization": httpx.BasicAuth("svc", "gwk_wrong")._auth_header}
        url = f"{gateway.url}/v1/statement"
        statuses = [httpx.post(url, content="SELECT 1", headers=bad).status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        limited = httpx.post(url, content="SELECT 1", headers=good)  # even a good key waits: no guessing
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert "Too many failed authentication attempts" in limited.json()["error"]["message"]
        other = {**good, "X-Forwarded-For": "10.1.2.3"}  # another client (via the trusted local proxy)
        assert httpx.post(url, content="SELECT 1", headers=other).status_code == 200
        jwt_attempt = httpx.post(url, content="SELECT 1",
                                 headers={"Authorization": "Bearer x", "X-Forwarded-For": "10.1.2.5"})
        assert jwt_attempt.status_code == 401 and jwt_attempt.headers["www-authenticate"] == 'Basic realm="gateway"'
        conn = trino.dbapi.connect(host=gateway.host, port=gateway.port, user="svc", catalog="demo", schema="tpch",
                                   auth=BasicAuthentication("svc", key), allow_insecure_auth=True, max_attempts=1,
                                   http_headers={"X-Forwarded-For": "10.1.2.4"})
        cursor = conn.cursor()
        cursor.execute(NATIONS)
        assert cursor.fetchall() == [[3]]
        conn.close()
    finally:
        gateway.stop()
