"""Settings (`identity.*`) -> a ready `Authenticator`, and the key store the `gateway keys` CLI uses."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gateway.identity.api_keys import ApiKeys, KeyStore
from gateway.identity.authenticator import Authenticator
from gateway.identity.caches import CachedKeyStore, VerifiedTokens
from gateway.identity.failures import FailureLimiter, VerifiedCredentials
from gateway.identity.jwks import JwksFile, JwksUrl, KeySource
from gateway.identity.jwt_verify import JwtVerifier
from gateway.identity.key_stores import FileKeyStore, PostgresKeyStore
from gateway.identity.model import Identity
from gateway.identity.settings import ApiKeySettings, IdentitySettings, JwtSettings


def build_key_store(settings: ApiKeySettings, *, cached: bool = False) -> KeyStore:
    """`cached`: for serving (the `gateway keys` CLI reads and writes the store itself)."""
    if settings.postgres is not None:
        store = PostgresKeyStore(settings.postgres)
        if cached and settings.cache_seconds > 0:
            return CachedKeyStore(store, ttl_seconds=settings.cache_seconds)
        return store
    if settings.file is None:
        raise ValueError("identity.api_keys needs file or postgres")
    return FileKeyStore(settings.file)


def build_key_source(settings: JwtSettings, on_fetch: Callable[[str], None] | None = None) -> KeySource:
    if settings.jwks_file is not None:
        return JwksFile(settings.jwks_file)
    if settings.jwks_url is None:
        raise ValueError("identity.jwt needs jwks_url or jwks_file")
    return JwksUrl(settings.jwks_url, cache_seconds=settings.jwks_cache_seconds,
                   min_refresh_seconds=settings.jwks_min_refresh_seconds,
                   timeout_seconds=settings.jwks_timeout_seconds, on_fetch=on_fetch)


def build_authenticator(settings: IdentitySettings, *, dev_users: Mapping[str, Identity] | None = None,
                        on_jwks_fetch: Callable[[str], None] | None = None) -> Authenticator:
    """Raises JwksUnavailable for an unreadable jwks_file (the gateway then refuses to start)."""
    verifier = None
    if settings.mode == "jwt" and settings.jwt is not None:
        jwt = settings.jwt
        verifier = JwtVerifier(keys=build_key_source(jwt, on_jwks_fetch), issuers=jwt.issuer,
                               audiences=jwt.audience, algorithms=jwt.algorithms, leeway_seconds=jwt.leeway_seconds,
                               allowed_tenants=jwt.allowed_tenants)
    api_keys = None
    if settings.mode != "dev" and settings.api_keys is not None:
        api_keys = ApiKeys(build_key_store(settings.api_keys, cached=True))
    limit = settings.failure_limit
    return Authenticator(mode=settings.mode, dev_users=dev_users if settings.mode == "dev" else None, jwt=verifier,
                         claims=settings.jwt.claims if settings.jwt is not None else None, api_keys=api_keys,
                         limiter=FailureLimiter(burst=limit.burst, per_minute=limit.per_minute),
                         verified=VerifiedCredentials(max_entries=limit.verified_cache_entries,
                                                      ttl_seconds=limit.verified_cache_seconds),
                         tokens=VerifiedTokens(max_entries=settings.jwt.token_cache_entries,
                                               ttl_seconds=settings.jwt.token_cache_seconds)
                         if settings.jwt is not None else None)
