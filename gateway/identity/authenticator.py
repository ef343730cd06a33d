"""Credentials -> the authenticated principal, for every identity mode.

    dev       X-Trino-User is trusted; groups and attributes from the dev users file. Loopback only,
              announced at start-up (`cli.py`). Authorization headers are ignored.
    jwt       `Authorization: Bearer <JWT>` (jwt_verify + claims); also `Basic` with an API key as the
              password when identity.api_keys is configured
    api_keys  `Authorization: Basic <user>:<API key>` only

Every failure raises `AuthenticationFailed` and is counted against the client address and the principal
the credentials claim (failures.py); a key with too many recent failures gets `retry_after` set without its
credentials being checked, unless they verified recently (then they are checked and served).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from gateway.errors import AuthenticationFailed
from gateway.identity.api_keys import ApiKeys
from gateway.identity.caches import VerifiedTokens
from gateway.identity.claims import identity_from_claims
from gateway.identity.failures import FailureLimiter, VerifiedCredentials, limit_key
from gateway.identity.jwt_verify import JwtVerifier, unverified_header
from gateway.identity.model import Credentials, Identity
from gateway.identity.scram import ScramError, ScramExchange
from gateway.identity.settings import ClaimSettings


class Authenticator:
    def __init__(self, *, mode: str = "dev", dev_users: Mapping[str, Identity] | None = None,
                 jwt: JwtVerifier | None = None, claims: ClaimSettings | None = None,
                 api_keys: ApiKeys | None = None, limiter: FailureLimiter | None = None,
                 verified: VerifiedCredentials | None = None, tokens: VerifiedTokens | None = None) -> None:
        if mode not in ("dev", "jwt", "api_keys"):
            raise ValueError(f"unknown identity mode {mode!r}")
        if (mode == "jwt" and jwt is None) or (mode == "api_keys" and api_keys is None):
            raise ValueError(f"identity mode {mode!r} needs its verifier")
        self.mode = mode
        self._dev_users = dict(dev_users or {})
        self._jwt = jwt if mode == "jwt" else None
        self._claims = claims or ClaimSettings()
        self._api_keys = api_keys if mode != "dev" else None
        self._limiter = limiter or FailureLimiter(burst=10, per_minute=30)
        self._verified = verified if verified is not None else VerifiedCredentials()
        self._tokens = tokens if tokens is not None else VerifiedTokens()

    @property
    def requires_credentials(self) -> bool:
        return self.mode != "dev"

    @property
    def challenges(self) -> list[str]:
        """`WWW-Authenticate` values for a 401: the schemes this gateway accepts."""
        schemes = []
        if self._jwt is not None:
            schemes.append('Bearer realm="gateway"')
        if self._api_keys is not None:
            schemes.append('Basic realm="gateway"')
        return schemes

    async def start(self) -> None:
        if self._jwt is not None:
            await self._jwt.keys.start()
        if self._api_keys is not None:
            await self._api_keys.store.start()

    async def close(self) -> None:
        if self._api_keys is not None:
            await self._api_keys.store.close()

    def dev_identity(self, user: str) -> Identity:
        """Dev mode: the dev users file's entry for `user`, or just the name."""
        known = self._dev_users.get(user)
        return known if known is not None else Identity.create(user, auth_method="dev")

    async def authenticate(self, credentials: Credentials) -> Identity:
        if self.mode == "dev":
            if credentials.session_user is None:
                raise AuthenticationFailed("missing", "User must be set (X-Trino-User header)")
            return self.dev_identity(credentials.session_user)
        if credentials.scheme is None or credentials.secret is None:
            raise AuthenticationFailed("missing", f"Authentication required: send {self._accepted()}")
        if credentials.scheme == "bearer" and self._jwt is not None:
            # a token that verified (and is served from memory) is a recently verified credential: it is
            # served while its key is slowed as well, as below
            known = await self._tokens.get(credentials.secret, self._jwt.keys)
            if known is not None:
                return known
        key = limit_key(credentials)
        wait = self._limiter.retry_after(key)
        remembered = credentials
        if credentials.scram is not None:  # each SCRAM proof is new; the ClientKey it implies is not
            remembered = dataclasses.replace(credentials, secret=credentials.scram.claimed_key(credentials.secret))
        if wait is not None and remembered not in self._verified:
            raise AuthenticationFailed("rate_limited", f"Too many failed authentication attempts for this "
                                                       f"user from this address; retry in {max(1, round(wait))} s",
                                       retry_after=wait)
        try:
            identity = await self._verify(credentials)
        except AuthenticationFailed:
            self._limiter.failed(key)
            raise
        self._verified.remember(remembered)
        return identity

    async def _verify(self, credentials: Credentials) -> Identity:
        secret = credentials.secret or ""
        if credentials.scheme == "bearer" and self._jwt is not None:
            claims, key = await self._jwt.verify_with_key(secret)
            kid, jti = unverified_header(secret).get("kid"), claims.get("jti")
            identity = dataclasses.replace(identity_from_claims(claims, self._claims),
                                           token_kid=kid if isinstance(kid, str) else None,
                                           token_jti=jti if isinstance(jti, str) else None)
            exp = claims.get("exp")
            if isinstance(exp, int | float) and not isinstance(exp, bool):
                self._tokens.remember(secret, identity, kid=kid if isinstance(kid, str) else None, key=key,
                                      expires_at=float(exp))
            return identity
        if credentials.scheme == "basic" and self._api_keys is not None:
            return await self._api_keys.authenticate(credentials.username, secret)
        if credentials.scheme == "scram" and self._api_keys is not None and credentials.scram is not None:
            exchange = credentials.scram
            try:
                exchange.verify(secret)
            except ScramError as error:
                raise AuthenticationFailed("invalid_api_key", f"password authentication failed for user "
                                                              f"{(credentials.username or '')[:64]!r} ({error})"
                                           ) from None
            assert exchange.key_id is not None  # a decoy exchange never verifies
            return await self._api_keys.authenticate_verified(exchange.key_id, credentials.username)
        raise AuthenticationFailed("wrong_scheme", f"{(credentials.scheme or '').capitalize()} authentication "
                                                   f"is not accepted here; send {self._accepted()}")

    @property
    def accepts_api_keys(self) -> bool:
        return self._api_keys is not None

    @property
    def accepts_tokens(self) -> bool:
        return self._jwt is not None

    async def scram_exchange(self, username: str) -> ScramExchange:
        """The server side of a SCRAM-SHA-256 exchange for service account `username` (a decoy that always
        fails when it has no key with a verifier, so names are not revealed)."""
        candidate = await self._api_keys.scram_candidate(username) if self._api_keys is not None else None
        if candidate is None:
            return ScramExchange(None, username)
        key_id, verifier = candidate
        return ScramExchange(verifier, username, key_id=key_id)

    def _accepted(self) -> str:
        accepted = []
        if self._jwt is not None:
            accepted.append("Authorization: Bearer <JWT>")
        if self._api_keys is not None:
            accepted.append("Authorization: Basic <user>:<API key>")
        return " or ".join(accepted)
