"""Bearer JWT verification against a real JWKS endpoint: each forged or broken token is rejected with the
reason a user can act on, and the token itself never appears in the message."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import jwt
import pytest

from gateway.errors import AuthenticationFailed
from gateway.identity.claims import claim, identity_from_claims
from gateway.identity.jwks import JwksUnavailable, JwksUrl, parse_jwks
from gateway.identity.jwt_verify import JwtVerifier
from gateway.identity.settings import ClaimSettings
from tests.idp import AUDIENCE, ISSUER, IdP, public_pem


def verifier(idp: IdP, **options: Any) -> JwtVerifier:
    keys = JwksUrl(idp.jwks_url, cache_seconds=options.pop("cache_seconds", 300),
                   min_refresh_seconds=options.pop("min_refresh_seconds", 0.0), timeout_seconds=2,
                   clock=options.pop("clock", time.monotonic))
    settings: dict[str, Any] = {"issuers": [ISSUER], "audiences": [AUDIENCE], "algorithms": ["RS256", "ES256"]}
    settings.update(options)
    return JwtVerifier(keys=keys, **settings)


def verify(v: JwtVerifier, token: str) -> dict[str, Any]:
    return asyncio.run(v.verify(token))


def rejected(v: JwtVerifier, token: str) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as caught:
        verify(v, token)
    if token:
        assert token not in caught.value.message
        assert token not in repr(caught.value)
    return caught.value


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed(header: dict[str, Any], payload: dict[str, Any], idp: IdP) -> str:
    """RS256 over any header (PyJWT itself refuses to encode some of the malformed ones)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = idp.keys["rsa-1"]
    assert isinstance(key, rsa.RSAPrivateKey)
    signing_input = f"{b64(header)}.{b64(payload)}"
    signature = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256).sign(signing_input.encode(), key)
    return f"{signing_input}.{b64(signature)}"


def test_valid_rsa_and_ec_tokens(idp: IdP) -> None:
    v = verifier(idp)
    assert verify(v, idp.token("rsa-1"))["sub"] == "alice@example.com"
    assert verify(v, idp.token("ec-1", sub="bob"))["sub"] == "bob"
    assert verify(v, idp.token(aud=["other", AUDIENCE]))["aud"] == ["other", AUDIENCE]  # aud as a list


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_in_any_case(idp: IdP, alg: str) -> None:
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "iat": int(time.time()),
               "exp": int(time.time()) + 300}
    token = f"{b64({'alg': alg, 'typ': 'JWT', 'kid': 'rsa-1'})}.{b64(payload)}."
    failure = rejected(verifier(idp), token + "x")  # three parts; PyJWT must never see it
    assert failure.reason == "bad_algorithm"
    assert "alg 'none'" in failure.message


def test_hs256_signed_with_the_rsa_public_key(idp: IdP) -> None:
    pem = public_pem(idp.keys["rsa-1"])
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "iat": int(time.time()),
               "exp": int(time.time()) + 300}
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': 'rsa-1'})}.{b64(payload)}"
    import hashlib
    import hmac

    signature = b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    failure = rejected(verifier(idp), f"{signing_input}.{signature}")
    assert failure.reason == "bad_algorithm"
    assert "'HS256' is not allowed" in failure.message


def test_hmac_algorithms_cannot_be_configured(idp: IdP) -> None:
    with pytest.raises(ValueError):
        verifier(idp, algorithms=["HS256"])


def test_expired(idp: IdP) -> None:
    now = int(time.time())
    failure = rejected(verifier(idp, leeway_seconds=30), idp.token(iat=now - 600, exp=now - 31))
    assert failure.reason == "expired"
    assert "expired" in failure.message
    verify(verifier(idp, leeway_seconds=30), idp.token(iat=now - 600, exp=now - 5))  # within the leeway


def test_leeway_is_capped_at_60_seconds(idp: IdP) -> None:
    now = int(time.time())
    assert rejected(verifier(idp, leeway_seconds=3600), idp.token(iat=now - 900, exp=now - 120)).reason == "expired"


def test_nbf_in_the_future(idp: IdP) -> None:
    failure = rejected(verifier(idp, leeway_seconds=0), idp.token(nbf=int(time.time()) + 600))
    assert failure.reason == "not_yet_valid"
    assert "not valid yet" in failure.message


@pytest.mark.parametrize("claim_name", ["exp", "iat", "sub", "iss", "aud"])
def test_required_claims(idp: IdP, claim_name: str) -> None:
    failure = rejected(verifier(idp), idp.token(drop=(claim_name,)))
    assert failure.reason == "missing_claim"
    assert f"'{claim_name}' is missing" in failure.message


@pytest.mark.parametrize("issuer", ["https://evil.example.test", ISSUER + "/evil", ISSUER + "x", "evil" + ISSUER,
                                    ISSUER[:-1], [ISSUER]])
def test_wrong_issuer_including_extended_ones(idp: IdP, issuer: Any) -> None:
    now = int(time.time())
    token = signed({"alg": "RS256", "kid": "rsa-1"}, {"iss": issuer, "aud": AUDIENCE, "sub": "x", "iat": now,
                                                      "exp": now + 60}, idp)
    failure = rejected(verifier(idp), token)
    assert failure.reason in ("wrong_issuer", "invalid")
    if not isinstance(issuer, list):
        assert failure.reason == "wrong_issuer"
        assert "wrong issuer" in failure.message


@pytest.mark.parametrize("audience", ["other-app", ["other-app", "another"], AUDIENCE + "-x", ""])
def test_wrong_audience(idp: IdP, audience: Any) -> None:
    failure = rejected(verifier(idp), idp.token(aud=audience))
    assert failure.reason in ("wrong_audience", "missing_claim")
    if audience:
        assert failure.reason == "wrong_audience"
        assert "wrong audience" in failure.message


def test_unknown_kid(idp: IdP) -> None:
    stranger = IdP()
    stranger.add_key("rsa-9")
    try:
        failure = rejected(verifier(idp), stranger.token("rsa-9"))
    finally:
        stranger.close()
    assert failure.reason == "unknown_key"
    assert "unknown signing key 'rsa-9'" in failure.message


@pytest.mark.parametrize("kid", ["../../etc/passwd", "/etc/passwd", "rsa-1' OR '1'='1", "rsa-1; DROP TABLE keys--",
                                 "a" * 200, "", "rsa 1", 42, ["rsa-1"]])
def test_kid_with_path_or_sql(idp: IdP, kid: Any) -> None:
    token = signed({"alg": "RS256", "kid": kid}, {"iss": ISSUER, "aud": AUDIENCE, "sub": "x",
                                                  "iat": int(time.time()), "exp": int(time.time()) + 60}, idp)
    failure = rejected(verifier(idp), token)
    assert failure.reason == "bad_kid"
    assert "kid" in failure.message


def test_tampered_payload(idp: IdP) -> None:
    header, payload, signature = idp.token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["groups"] = ["admins"]
    failure = rejected(verifier(idp), f"{header}.{b64(claims)}.{signature}")
    assert failure.reason == "bad_signature"
    assert "signature" in failure.message


def test_signature_from_another_key_with_the_same_kid(idp: IdP) -> None:
    impostor = IdP()
    impostor.add_key("rsa-1")
    try:
        assert rejected(verifier(idp), impostor.token("rsa-1")).reason == "bad_signature"
    finally:
        impostor.close()


def test_oversized_token_is_rejected_before_decoding(idp: IdP) -> None:
    token = idp.token(padding="x" * 9000)
    failure = rejected(verifier(idp), token)
    assert failure.reason == "too_large"
    assert "8192 bytes" in failure.message


def test_crit_header(idp: IdP) -> None:
    for crit in (["exp"], ["b64"], ["x-custom"]):
        failure = rejected(verifier(idp), idp.token(headers={"crit": crit, "x-custom": 1}))
        assert failure.reason == "bad_header"
        assert "crit" in failure.message


@pytest.mark.parametrize("name", ["jku", "x5u"])
def test_jku_and_x5u_are_never_fetched(idp: IdP, name: str) -> None:
    elsewhere = IdP()
    elsewhere.keys = dict(idp.keys)
    try:
        token = idp.token(headers={name: f"{elsewhere.base_url}/jwks.json"})
        failure = rejected(verifier(idp), token)
        assert elsewhere.requests == {}  # never fetched
    finally:
        elsewhere.close()
    assert failure.reason == "bad_header"
    assert f"'{name}' header is not accepted" in failure.message


def test_embedded_jwk_is_not_trusted(idp: IdP) -> None:
    from tests.idp import public_jwk, rsa_key

    attacker = rsa_key()
    token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": int(time.time()),
                        "exp": int(time.time()) + 60}, attacker, algorithm="RS256",
                       headers={"kid": "rsa-1", "jwk": public_jwk(attacker, "rsa-1")})
    assert rejected(verifier(idp), token).reason == "bad_header"


def test_algorithm_must_fit_the_key(idp: IdP) -> None:
    # ES256 configured, but the kid names an RSA key
    token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": int(time.time()),
                        "exp": int(time.time()) + 60}, idp.keys["ec-1"], algorithm="ES256", headers={"kid": "rsa-1"})
    failure = rejected(verifier(idp), token)
    assert failure.reason == "unknown_key"
    assert "does not fit" in failure.message or "is for" in failure.message


def test_algorithm_not_configured(idp: IdP) -> None:
    failure = rejected(verifier(idp, algorithms=["ES256"]), idp.token("rsa-1"))
    assert failure.reason == "bad_algorithm"
    assert "'RS256' is not allowed" in failure.message


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "!!!.???.###", f"{b64(b'[1]')}.e30.x"])
def test_garbage(idp: IdP, token: str) -> None:
    assert rejected(verifier(idp), token).reason == "malformed"


def test_tenant_allow_list(idp: IdP) -> None:
    v = verifier(idp, allowed_tenants=["tenant-a"])
    verify(v, idp.token(tid="tenant-a"))
    assert rejected(v, idp.token(tid="tenant-b")).reason == "wrong_tenant"
    assert rejected(v, idp.token()).reason == "wrong_tenant"


# -- JWKS: rotation, outage, rate-limited refresh ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rotation_at_the_idp_is_picked_up_on_an_unknown_kid() -> None:
    provider = IdP()
    provider.add_key("old")
    try:
        v = verifier(provider, min_refresh_seconds=0.0)
        verify(v, provider.token("old"))
        provider.add_key("new", "ec")
        del provider.keys["old"]
        assert verify(v, provider.token("new"))["sub"]
    finally:
        provider.close()


def test_unknown_kid_refreshes_are_rate_limited() -> None:
    provider, stranger = IdP(), IdP()
    provider.add_key("k1")
    stranger.add_key("bogus")
    clock = Clock()
    try:
        v = verifier(provider, min_refresh_seconds=30, clock=clock)
        verify(v, provider.token("k1"))
        for _ in range(5):
            assert rejected(v, stranger.token("bogus")).reason == "unknown_key"
        assert provider.requests["/jwks.json"] == 1  # five unknown kids within 30 s: no refetch
        clock.now += 31
        for _ in range(5):
            rejected(v, stranger.token("bogus"))
        assert provider.requests["/jwks.json"] == 2  # one refetch per interval
    finally:
        provider.close()
        stranger.close()


def test_idp_down_cached_keys_work_until_the_ttl_ends() -> None:
    provider = IdP()
    provider.add_key("k1")
    clock = Clock()
    try:
        v = verifier(provider, cache_seconds=300, min_refresh_seconds=0.0, clock=clock)
        token = provider.token("k1")
        verify(v, token)
        provider.available = False
        clock.now += 299
        verify(v, token)  # IdP down, cache still valid
        provider.add_key("k2")
        assert rejected(v, provider.token("k2")).reason == "unknown_key"  # refresh failed, cache kept
        verify(v, token)
        clock.now += 2  # TTL over, IdP still down: fail closed
        failure = rejected(v, token)
        assert failure.reason == "keys_unavailable"
        assert "unavailable" in failure.message
        provider.available = True
        clock.now += 2
        verify(v, token)  # back
    finally:
        provider.close()


def test_parse_jwks_skips_unusable_keys() -> None:
    keys = parse_jwks(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
                                           {"kty": "RSA", "use": "enc", "kid": "enc", "n": "x", "e": "AQAB"},
                                           {"kty": "RSA", "kid": "sig", "n": "x", "e": "AQAB"}]}))
    assert list(keys) == ["sig"]
    with pytest.raises(JwksUnavailable):
        parse_jwks(b'{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]}')
    with pytest.raises(JwksUnavailable):
        parse_jwks(b"<html>")


# -- claims -> Identity ----------------------------------------------------------------------------------------


def test_claim_paths() -> None:
    claims = {"realm_access": {"roles": ["r1"]}, "https://example.com/groups": ["g"], "a": {"b.c": {"d": 1}}}
    assert claim(claims, "realm_access.roles") == ["r1"]
    assert claim(claims, "https://example.com/groups") == ["g"]
    assert claim(claims, "a.b.c.d") == 1
    assert claim(claims, "realm_access.missing") is not None  # MISSING sentinel
    from gateway.identity.claims import MISSING

    assert claim(claims, "nope.roles") is MISSING


def test_identity_from_claims_okta_and_azure_shapes() -> None:
    okta = identity_from_claims(
        {"sub": "00u1", "email": "ann@example.com", "groups": ["analysts", "Everyone"], "nations": [1, 2],
         "cc": "CC-1"},
        ClaimSettings(user=("email", "sub"), groups=("groups",), cost_center="cc",
                      attributes={"nations": "nations", "missing": "nope"}))
    assert okta.user == "ann@example.com"
    assert okta.groups == {"analysts", "Everyone"}
    assert dict(okta.attributes) == {"nations": (1, 2)}
    assert okta.cost_center == "CC-1"
    assert okta.auth_method == "jwt"
    azure = identity_from_claims(
        {"sub": "x", "upn": "ann@contoso.com", "roles": ["Gateway.Analyst"], "groups": ["g-uuid"],
         "tid": "t1", "ext": {"region": "emea"}},
        ClaimSettings(user=("preferred_username", "upn"), groups=("roles", "groups"),
                      attributes={"region": "ext.region"}))
    assert azure.user == "ann@contoso.com"
    assert azure.groups == {"Gateway.Analyst", "g-uuid"}
    assert azure.attributes["region"] == "emea"


def test_bad_claim_shapes_fail_closed() -> None:
    with pytest.raises(AuthenticationFailed, match="no user claim"):
        identity_from_claims({"sub": ""}, ClaimSettings())
    with pytest.raises(AuthenticationFailed):
        identity_from_claims({"sub": "a\nb"}, ClaimSettings())
    odd = identity_from_claims({"sub": "u", "groups": {"a": 1}, "nations": {"x": 1}},
                               ClaimSettings(attributes={"nations": "nations"}))
    assert odd.groups == frozenset()
    assert "nations" not in odd.attributes


def test_identity_carries_kid_and_jti_for_the_audit_trail_but_not_as_identity(idp: IdP) -> None:
    from gateway.identity import Authenticator, Credentials

    authenticator = Authenticator(mode="jwt", jwt=verifier(idp))

    def identity(**claims: Any) -> Any:
        token = idp.token("rsa-1", **claims)
        return asyncio.run(authenticator.authenticate(Credentials(scheme="bearer", secret=token)))

    first, second = identity(jti="token-1"), identity(jti="token-2")
    assert (first.token_kid, first.token_jti) == ("rsa-1", "token-1")
    assert first == second and hash(first) == hash(second)  # the same caller: plans and caches are shared
