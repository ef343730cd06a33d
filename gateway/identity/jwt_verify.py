"""Bearer JWT -> verified claims, with PyJWT, against keys from the configured JWKS only.

Checks, in order (each failure names its reason; the token itself is never echoed):

1. size <= 8 KB, before anything is decoded
2. header: `alg` is one of the configured algorithms (never `none` in any case, never HMAC); no `crit`
   (no extension is supported); no key-carrying headers (`jku`, `x5u`, `jwk`, `x5c`: RFC 8725 3.10, keys come
   from configuration); `kid` is a short plain token (no paths, quotes or spaces)
3. key: the JWKS key for `kid` exists (an unknown kid refetches the JWKS once, rate-limited) and its type and
   curve fit `alg`
4. PyJWT: signature with exactly that key and algorithm, required `exp`, `iat`, `sub`, `iss`, `aud`; `nbf`
   when present; exact `iss`; `aud` (string or list) contains a configured audience; leeway <= 60 s
5. `tid` in the tenant allow-list, when one is configured (Azure AD)
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from typing import Any

import jwt

from gateway.errors import AuthenticationFailed
from gateway.identity.jwks import JwksUnavailable, KeySource

MAX_TOKEN_BYTES = 8 * 1024
REQUIRED_CLAIMS = ("exp", "iat", "sub", "iss", "aud")
FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c")
_KID = re.compile(r"[A-Za-z0-9_=+-][A-Za-z0-9._=+-]{0,127}")
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521", "EdDSA": "Ed25519"}


def _fail(reason: str, message: str) -> AuthenticationFailed:
    return AuthenticationFailed(reason, f"Invalid bearer token: {message}")


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, decoded strictly (PyJWT's own parser would also accept what we reject later)."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise _fail("malformed", "not a JWT (expected three base64url parts separated by dots)")
    try:
        raw = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4))
        header = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _fail("malformed", "the header is not base64url-encoded JSON") from None
    if not isinstance(header, dict):
        raise _fail("malformed", "the header is not a JSON object")
    return header


def token_expiry(token: str) -> float | None:
    """The `exp` of a token the verifier has already accepted (a session bounded by it never outlives it);
    None when it cannot be read."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


class JwtVerifier:
    def __init__(self, *, keys: KeySource, issuers: Sequence[str], audiences: Sequence[str],
                 algorithms: Sequence[str], leeway_seconds: float = 30.0,
                 allowed_tenants: Sequence[str] = ()) -> None:
        if not issuers or not audiences or not algorithms:
            raise ValueError("issuer, audience and algorithms are required")
        if any(a.upper().startswith("HS") or a.lower() == "none" for a in algorithms):
            raise ValueError("only asymmetric algorithms are allowed")
        self.keys = keys
        self.issuers = tuple(issuers)
        self.audiences = list(audiences)
        self.algorithms = tuple(algorithms)
        self.leeway = min(max(leeway_seconds, 0.0), 60.0)
        self.allowed_tenants = frozenset(allowed_tenants)

    async def verify(self, token: str) -> dict[str, Any]:
        return (await self.verify_with_key(token))[0]

    async def verify_with_key(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the verified claims, the JWK that verified the signature)."""
        if len(token) > MAX_TOKEN_BYTES:
            raise _fail("too_large", f"the token is larger than {MAX_TOKEN_BYTES} bytes")
        header = unverified_header(token)
        algorithm = self._algorithm(header)
        key = await self._key(header, algorithm)
        try:
            jwk = jwt.PyJWK(key, algorithm=algorithm)
        except jwt.PyJWTError:
            raise _fail("unknown_key", f"the signing key {header.get('kid')!r} is not usable with "
                                       f"{algorithm}") from None
        claims = self._decode(token, jwk, algorithm)
        if self.allowed_tenants and claims.get("tid") not in self.allowed_tenants:
            raise _fail("wrong_tenant", "the token's tenant (tid) is not allowed")
        return claims, key

    def _algorithm(self, header: dict[str, Any]) -> str:
        alg = header.get("alg")
        if not isinstance(alg, str) or not alg:
            raise _fail("bad_algorithm", "the header has no algorithm (alg)")
        if alg.lower() == "none":
            raise _fail("bad_algorithm", "unsigned tokens (alg 'none') are not accepted")
        if alg not in self.algorithms:
            shown = alg if re.fullmatch(r"[A-Za-z0-9]{1,10}", alg) else "?"
            raise _fail("bad_algorithm", f"algorithm {shown!r} is not allowed (accepted: "
                                         f"{', '.join(self.algorithms)})")
        for name in FORBIDDEN_HEADERS:
            if name in header:
                raise _fail("bad_header", f"the '{name}' header is not accepted (keys come only from the "
                                          f"configured JWKS)")
        if "crit" in header:
            raise _fail("bad_header", "critical header extensions (crit) are not supported")
        return alg

    async def _key(self, header: dict[str, Any], algorithm: str) -> dict[str, Any]:
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or not _KID.fullmatch(kid) or ".." in kid):
            raise _fail("bad_kid", "the key id (kid) is malformed")
        try:
            key = await self.keys.get(kid)
        except JwksUnavailable as error:
            raise AuthenticationFailed("keys_unavailable", f"Cannot verify bearer tokens right now: the "
                                                           f"identity provider's keys are unavailable ({error})"
                                       ) from None
        if key is None:
            raise _fail("unknown_key", f"unknown signing key {kid!r}" if kid else
                        "the token names no key (kid) and the key set has several")
        expected = _KEY_TYPES[algorithm[:2]]
        if key.get("kty") != expected or (algorithm in _CURVES and key.get("kty") in ("EC", "OKP")
                                          and key.get("crv") != _CURVES[algorithm]):
            raise _fail("unknown_key", f"the signing key {kid!r} does not fit algorithm {algorithm}")
        if "alg" in key and key["alg"] != algorithm:
            raise _fail("unknown_key", f"the signing key {kid!r} is for {key['alg']}, not {algorithm}")
        return key

    def _decode(self, token: str, jwk: jwt.PyJWK, algorithm: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key=jwk, algorithms=[algorithm], audience=self.audiences,
                issuer=self.issuers if len(self.issuers) > 1 else self.issuers[0], leeway=self.leeway,
                options={"require": list(REQUIRED_CLAIMS), "verify_signature": True,
                         "enforce_minimum_key_length": True})
        except jwt.ExpiredSignatureError:
            raise _fail("expired", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise _fail("not_yet_valid", "the token is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise _fail("wrong_audience", f"wrong audience (aud); expected {', '.join(self.audiences)}") from None
        except jwt.InvalidIssuerError:
            raise _fail("wrong_issuer", f"wrong issuer (iss); expected {', '.join(self.issuers)}") from None
        except jwt.MissingRequiredClaimError as error:
            raise _fail("missing_claim", f"the required claim {error.claim!r} is missing") from None
        except jwt.InvalidSignatureError:
            raise _fail("bad_signature", "the signature does not verify") from None
        except jwt.InvalidKeyError:
            raise _fail("unknown_key", "the signing key is too weak") from None
        except (jwt.InvalidTokenError, TypeError, ValueError) as error:  # PyJWT raises TypeError for some shapes
            raise _fail("invalid", f"{type(error).__name__}: malformed or invalid claims") from None
        if claims.get("iss") not in self.issuers:  # belt and braces: exact match, never a prefix/suffix
            raise _fail("wrong_issuer", f"wrong issuer (iss); expected {', '.join(self.issuers)}")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise _fail("missing_claim", "the subject (sub) must be a non-empty string")
        return claims
