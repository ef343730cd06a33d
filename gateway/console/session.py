"""The console's sign-in, kept by the browser: a signed cookie that holds who signed in, never a credential.

A browser cannot send a bearer header when it follows a link, so the console verifies the credential once
(at sign-in, with the gateway's authenticator) and hands the browser a cookie holding the verified identity,
a per-session CSRF token and an absolute expiry: `console.session_seconds` after sign-in, and never later
than the token's own `exp`. The cookie is signed with the console key (itsdangerous, HMAC-SHA256), so a
browser can read its own identity but not change it, and any replica with the same key accepts it. It is
HttpOnly, SameSite=Strict, Secure when the gateway serves TLS, and scoped to /console. Nothing here does I/O.

Sign-in forms carry their own CSRF token before a session exists: a signed random nonce, set as a short
cookie and repeated in the form (double submit), so another site cannot post credentials into a victim's
browser (login CSRF).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from gateway.identity import Identity

SESSION_COOKIE = "gateway_console"
SIGN_IN_COOKIE = "gateway_console_sign_in"
COOKIE_PATH = "/console"
SIGN_IN_SECONDS = 900  # a sign-in form is good for this long
MAX_COOKIE_BYTES = 3800  # browsers keep at least 4096 bytes per cookie, name and attributes included


class SessionTooLarge(ValueError):
    """The identity does not fit in a cookie (thousands of groups or attributes)."""


@dataclass(frozen=True, kw_only=True)
class ConsoleSession:
    identity: Identity
    csrf: str  # repeated in every form this session posts
    expires_at: float  # epoch seconds

    def accepts(self, token: str | None) -> bool:
        """Whether a posted form's token is this session's (constant time)."""
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


class SessionCodec:
    """Issues and reads the session and sign-in cookies. Keyword-only; the key is never shown."""

    def __init__(self, *, key: bytes, lifetime_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self._sessions = URLSafeTimedSerializer(key, salt="gateway.console.session")
        self._sign_ins = URLSafeTimedSerializer(key, salt="gateway.console.sign-in")
        self.lifetime_seconds = lifetime_seconds
        self._clock = clock

    def __repr__(self) -> str:
        return f"SessionCodec(lifetime_seconds={self.lifetime_seconds})"

    def issue(self, identity: Identity, *, not_after: float | None = None) -> tuple[str, ConsoleSession]:
        """A new session for `identity` (verified by the caller) and its cookie value. `not_after`: the
        credential's own expiry (a JWT's exp), which the session never outlives."""
        expires = self._clock() + self.lifetime_seconds
        if not_after is not None:
            expires = min(expires, not_after)
        session = ConsoleSession(identity=identity, csrf=secrets.token_urlsafe(32), expires_at=expires)
        value = self._sessions.dumps({"identity": _identity_fields(identity), "csrf": session.csrf,
                                      "expires_at": session.expires_at})
        if len(value) > MAX_COOKIE_BYTES:
            raise SessionTooLarge(f"this identity is too large for a console session ({len(value)} bytes signed; "
                                  f"at most {MAX_COOKIE_BYTES})")
        return value, session

    def read(self, value: str | None) -> ConsoleSession | None:
        """The session a cookie holds; None when absent, tampered with, signed with another key or expired."""
        if not value or len(value) > MAX_COOKIE_BYTES:
            return None
        try:
            data = self._sessions.loads(value, max_age=self.lifetime_seconds)
            session = ConsoleSession(identity=_identity_from(data["identity"]), csrf=str(data["csrf"]),
                                     expires_at=float(data["expires_at"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        return session if session.expires_at > self._clock() else None

    def sign_in_token(self) -> tuple[str, str]:
        """(cookie value, form value) for a sign-in form."""
        nonce = secrets.token_urlsafe(24)
        return self._sign_ins.dumps(nonce), nonce

    def sign_in_accepted(self, cookie: str | None, form_value: str | None) -> bool:
        if not cookie or not form_value or len(cookie) > 200:
            return False
        try:
            nonce = self._sign_ins.loads(cookie, max_age=SIGN_IN_SECONDS)
        except BadSignature:
            return False
        return isinstance(nonce, str) and hmac.compare_digest(nonce.encode(), form_value.encode())


def _identity_fields(identity: Identity) -> dict[str, Any]:
    return {"user": identity.user, "groups": sorted(identity.groups),
            "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in identity.attributes.items()},
            "cost_center": identity.cost_center, "auth_method": identity.auth_method,
            "principal": identity.principal}


def _identity_from(data: dict[str, Any]) -> Identity:
    if not isinstance(data["user"], str) or not isinstance(data["groups"], list):
        raise TypeError("not an identity")
    return Identity.create(data["user"], groups=[str(g) for g in data["groups"]], attributes=dict(data["attributes"]),
                           cost_center=data["cost_center"], auth_method=str(data["auth_method"]),
                           principal=data["principal"])
