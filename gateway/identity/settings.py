"""`identity:` — how callers are authenticated: dev users, JWTs verified against a JWKS, API keys."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from gateway.config_reader import Check, Reader, one_of, positive, read_fields, section_keys

IDENTITY_MODES = ("dev", "jwt", "api_keys")
# Asymmetric only: keys come from a JWKS, and an HMAC "key" there would be public (key confusion, CVE-2022-29217).
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
MAX_JWT_LEEWAY_SECONDS = 60.0


@dataclass(frozen=True, kw_only=True)
class ClaimSettings:
    """identity.jwt.claims: which claim (a name, or a dotted path into nested objects) gives what."""

    user: tuple[str, ...] = ("sub",)  # the first present one wins (Azure AD: preferred_username, upn)
    groups: tuple[str, ...] = ("groups",)  # all present ones are merged (Azure AD: roles, groups)
    cost_center: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)  # attribute name -> claim path


def _jwks_url(value: Any) -> str | None:
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return None  # a local test IdP; anything else must be https
    return f"must be an https:// URL (http only on a loopback address), not {value!r}"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else f"must be 0 or more, not {value!r}"


def _leeway(value: Any) -> str | None:
    return None if 0 <= value <= MAX_JWT_LEEWAY_SECONDS else f"must be between 0 and 60 seconds, not {value!r}"


@dataclass(frozen=True, kw_only=True)
class JwtSettings:
    jwks_url: str | None = None
    jwks_file: Path | None = None
    issuer: tuple[str, ...] = ()  # exact match against one of these
    audience: tuple[str, ...] = ()  # the token's aud (string or list) must contain one of these
    algorithms: tuple[str, ...] = ("RS256",)
    leeway_seconds: float = 30.0
    jwks_cache_seconds: float = 300.0  # cached keys are used this long, even while the IdP is down
    jwks_min_refresh_seconds: float = 30.0  # an unknown kid refetches the JWKS at most this often
    jwks_timeout_seconds: float = 5.0
    allowed_tenants: tuple[str, ...] = ()  # when set, the `tid` claim must be one of these (Azure AD)
    token_cache_seconds: float = 300.0  # a token that verified is served from memory this long at most (< exp)
    token_cache_entries: int = 10_000  # 0: every token checked in full every time
    claims: ClaimSettings = field(default_factory=ClaimSettings)

    CHECKS: ClassVar[Mapping[str, Check]] = {
        "jwks_url": _jwks_url, "leeway_seconds": _leeway, "jwks_cache_seconds": positive,
        "jwks_min_refresh_seconds": positive, "jwks_timeout_seconds": positive, "token_cache_seconds": positive,
        "token_cache_entries": _non_negative,
    }


@dataclass(frozen=True, kw_only=True)
class ApiKeySettings:
    file: Path | None = None
    postgres: str | None = None  # asyncpg DSN; may hold a password, so repr masks it
    # PostgreSQL: a key record read is reused this long, so a key revoked or rotated out from another machine
    # stops working within it (the file store sees every change at once)
    cache_seconds: float = 5.0

    def __repr__(self) -> str:
        dsn = re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", self.postgres) if self.postgres else None
        return f"ApiKeySettings(file={self.file!r}, postgres={dsn!r}, cache_seconds={self.cache_seconds:g})"


@dataclass(frozen=True, kw_only=True)
class FailureLimitSettings:
    """Failed authentications per client address and claimed principal: a token bucket of `burst`, refilled
    `per_minute`; credentials that verified within `verified_cache_seconds` are still checked while slowed."""

    burst: int = 10
    per_minute: float = 30.0
    verified_cache_entries: int = 10_000  # keyed hashes of recently verified credentials (never the secret)
    verified_cache_seconds: float = 900.0

    CHECKS: ClassVar[Mapping[str, Check]] = {
        name: positive for name in ("burst", "per_minute", "verified_cache_entries", "verified_cache_seconds")
    }


@dataclass(frozen=True, kw_only=True)
class IdentitySettings:
    mode: str = "dev"
    dev_users_file: Path | None = None  # default: dev_users.yaml in the policies directory, if present
    allow_dev_on_public_host: bool = False
    jwt: JwtSettings | None = None
    api_keys: ApiKeySettings | None = None
    failure_limit: FailureLimitSettings = field(default_factory=FailureLimitSettings)

    CHECKS: ClassVar[Mapping[str, Check]] = {"mode": one_of(IDENTITY_MODES, "identity mode")}


_SUBSECTIONS = ("jwt", "api_keys", "failure_limit")


def read_identity(r: Reader, data: Mapping[str, Any]) -> IdentitySettings:
    p = ("identity",)
    s = r.section(data, p, section_keys(IdentitySettings))
    values = read_fields(r, s, p, IdentitySettings, skip=_SUBSECTIONS)
    jwt = _jwt(r, s) if s.get("jwt") is not None else None
    api_keys = _api_keys(r, s) if s.get("api_keys") is not None else None
    if values["mode"] == "jwt" and jwt is None:
        r.fail((*p, "jwt"), "is required when identity.mode is 'jwt'")
    if values["mode"] == "api_keys" and api_keys is None:
        r.fail((*p, "api_keys"), "is required when identity.mode is 'api_keys'")
    fp = (*p, "failure_limit")
    failure_limit = FailureLimitSettings(**read_fields(r, r.section(s, fp, section_keys(FailureLimitSettings)), fp,
                                                       FailureLimitSettings))
    return IdentitySettings(**values, jwt=jwt, api_keys=api_keys, failure_limit=failure_limit)


def _jwt(r: Reader, data: Mapping[str, Any]) -> JwtSettings:
    p = ("identity", "jwt")
    s = r.section(data, p, section_keys(JwtSettings))
    values = read_fields(r, s, p, JwtSettings, skip=("claims",))
    if (s.get("jwks_url") is None) == (s.get("jwks_file") is None):
        r.fail(p, "needs exactly one of jwks_url or jwks_file")
    file = values["jwks_file"]
    if file is not None and not file.is_file():
        r.fail((*p, "jwks_file"), f"no such file: {file}")
    for key in ("issuer", "audience"):
        if not values[key] and key not in s:
            r.fail((*p, key), "is required")
    for alg in values["algorithms"]:
        if alg not in JWT_ALGORITHMS:
            why = " (HMAC needs a shared secret; keys here come from a public JWKS)" if alg.upper().startswith(
                "HS") else ""
            r.fail((*p, "algorithms"), f"algorithm {alg!r} is not allowed{why}; use some of: "
                                       f"{', '.join(JWT_ALGORITHMS)}")
    return JwtSettings(**values, claims=_claims(r, s))


def _claims(r: Reader, data: Mapping[str, Any]) -> ClaimSettings:
    p = ("identity", "jwt", "claims")
    s = r.section(data, p, section_keys(ClaimSettings))
    attributes = r.section(s, (*p, "attributes"), set(s.get("attributes") or {}))
    for name, claim in attributes.items():
        if not isinstance(claim, str) or not claim:
            r.fail((*p, "attributes", name), f"must be a claim name or path, not {claim!r}")
    return ClaimSettings(
        **read_fields(r, s, p, ClaimSettings, skip=("attributes",)),
        attributes={str(k): v for k, v in attributes.items() if isinstance(v, str) and v},
    )


def _api_keys(r: Reader, data: Mapping[str, Any]) -> ApiKeySettings:
    p = ("identity", "api_keys")
    s = r.section(data, p, section_keys(ApiKeySettings))
    file = r.get(s, (*p, "file"), Path, None)
    postgres = r.get(s, (*p, "postgres"), str, None)
    cache_seconds = r.get(s, (*p, "cache_seconds"), float, ApiKeySettings.cache_seconds, _non_negative)
    if (file is None) == (postgres is None):
        r.fail(p, "needs exactly one of file or postgres")
    if postgres is not None and not postgres.startswith(("postgresql://", "postgres://")):
        r.fail((*p, "postgres"), "must be a postgresql:// DSN")
    return ApiKeySettings(file=file, postgres=postgres, cache_seconds=cache_seconds)
