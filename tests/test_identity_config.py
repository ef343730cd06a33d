"""identity.* and server.tls settings, and `impersonation:` policy rules: loading, file:line errors, decisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_settings
from gateway.identity import Identity
from gateway.policy import PolicyError, decide_impersonation, parse_policies


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return load_settings(path, environ={})


def errors(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return "\n".join(caught.value.messages)


JWT = """identity:
  mode: jwt
  jwt:
    jwks_url: https://login.example.com/keys
    issuer: https://login.example.com/
    audience: [query-gateway, api://gw]
    algorithms: [RS256, ES256]
    leeway_seconds: 10
    allowed_tenants: [t1]
    claims: {user: [preferred_username, upn], groups: [roles, groups], cost_center: cc,
             attributes: {nations: ext.nations}}
  api_keys: {postgres: "postgresql://gw:hunter2@db/keys"}
"""


def test_full_identity_section(tmp_path: Path) -> None:
    settings = load(tmp_path, JWT)
    identity = settings.identity  # type: ignore[attr-defined]
    jwt = identity.jwt
    assert identity.mode == "jwt"
    assert jwt.issuer == ("https://login.example.com/",)
    assert jwt.audience == ("query-gateway", "api://gw")
    assert jwt.claims.user == ("preferred_username", "upn") and jwt.claims.attributes == {"nations": "ext.nations"}
    assert jwt.allowed_tenants == ("t1",) and jwt.leeway_seconds == 10
    assert "hunter2" not in repr(settings) and "hunter2" not in str(identity.api_keys)


def test_environment_sets_identity_keys(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(JWT)
    settings = load_settings(path, environ={"GATEWAY__IDENTITY__JWT__AUDIENCE": "other"})
    assert settings.identity.jwt is not None and settings.identity.jwt.audience == ("other",)


@pytest.mark.parametrize(("text", "message"), [
    ("identity: {mode: jwt}", "identity.jwt: is required when identity.mode is 'jwt'"),
    ("identity: {mode: api_keys}", "identity.api_keys: is required"),
    ("identity: {mode: jwt, jwt: {issuer: i, audience: a}}", "needs exactly one of jwks_url or jwks_file"),
    ("identity: {mode: jwt, jwt: {jwks_url: 'http://idp.example.com/k', issuer: i, audience: a}}",
     "must be an https:// URL"),
    ("identity: {mode: jwt, jwt: {jwks_url: 'file:///etc/passwd', issuer: i, audience: a}}", "must be an https://"),
    ("identity: {mode: jwt, jwt: {jwks_url: 'https://x/k', audience: a}}", "identity.jwt.issuer: is required"),
    ("identity: {mode: jwt, jwt: {jwks_url: 'https://x/k', issuer: i}}", "identity.jwt.audience: is required"),
    ("identity: {mode: jwt, jwt: {jwks_url: 'https://x/k', issuer: i, audience: a, algorithms: [HS256]}}",
     "algorithm 'HS256' is not allowed (HMAC"),
    ("identity: {mode: jwt, jwt: {jwks_url: 'https://x/k', issuer: i, audience: a, algorithms: [none]}}",
     "algorithm 'none' is not allowed"),
    ("identity: {mode: jwt, jwt: {jwks_url: 'https://x/k', issuer: i, audience: a, leeway_seconds: 300}}",
     "must be between 0 and 60 seconds"),
    ("identity: {mode: jwt, jwt: {jwks_file: missing.json, issuer: i, audience: a}}", "no such file"),
    ("identity: {mode: jwt, jwt: {jwks_url: 'https://x/k', issuer: i, audience: a, claim: {}}}",
     "unknown key (did you mean 'claims'?)"),
    ("identity: {mode: api_keys, api_keys: {}}", "needs exactly one of file or postgres"),
    ("identity: {mode: api_keys, api_keys: {postgres: 'mysql://x'}}", "must be a postgresql:// DSN"),
    ("identity: {failure_limit: {burst: 0}}", "must be greater than 0"),
    ("server: {tls: {cert: c.pem}}", "server.tls: needs both cert and key"),
    ("server: {tls: {cert: c.pem, key: k.pem}}", "server.tls.cert: no such file"),
])
def test_identity_errors_name_line_and_key(tmp_path: Path, text: str, message: str) -> None:
    found = errors(tmp_path, text)
    assert message in found
    assert "gateway.yaml:1" in found


def test_tls_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    settings = load(tmp_path, "server: {tls: {cert: c.pem, key: k.pem}}")
    assert settings.server.tls_cert == tmp_path / "c.pem"  # type: ignore[attr-defined]


RULES = """
impersonation:
  - when: {groups: [bi-service]}
    new_user: "admin|.*-svc"
    allow: false
  - when: {groups: [bi-service]}
    new_user: "[a-z]+"
  - when: {user: ops}
    new_user: ".*"
"""


def test_impersonation_rules() -> None:
    policy = parse_policies({"imp.yaml": RULES})
    bi = Identity.create("superset", groups=["bi-service"])
    assert decide_impersonation(policy, bi, "carol", None)[0]
    assert not decide_impersonation(policy, bi, "admin", None)[0]
    assert not decide_impersonation(policy, bi, "etl-svc", None)[0]
    assert not decide_impersonation(policy, bi, "carol2", None)[0]  # whole-name match only
    assert decide_impersonation(policy, Identity.create("ops"), "anyone-at-all", None)[0]
    assert not decide_impersonation(policy, Identity.create("alice", groups=["analysts"]), "bob", None)[0]
    assert decide_impersonation(policy, Identity.create("alice"), "alice", None)[0]
    assert not decide_impersonation(parse_policies({"none.yaml": "tables: []"}), bi, "carol", None)[0]


def test_impersonation_rule_errors() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policies({"imp.yaml": "impersonation:\n  - {when: {groups: [x]}}\n  - {new_user: '(', allow: 1}\n"
                                    "  - {new_user: a, users: [b]}\n"})
    text = "\n".join(caught.value.errors)
    assert "imp.yaml:2: impersonation rule is missing 'new_user'" in text
    assert "imp.yaml:3: new_user is not a valid regular expression" in text
    assert "imp.yaml:4: unknown key 'users' in impersonation rule" in text
