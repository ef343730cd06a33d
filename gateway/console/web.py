"""The console's frame: sign-in and sign-out, the guard every page passes, rendering, and security headers.

Every page and action goes through `Console.page`: the session cookie must hold a valid sign-in (else the
browser is sent to the sign-in form), a POST must carry the session's CSRF token and must not come from
another site, its body is bounded (`console.max_form_bytes`), and a gateway error becomes an HTML page with
its message, never a stack trace. What each page may show is decided by `gateway.access`, in the pages
(pages.py), exactly as the JSON APIs decide it. Every response under /console carries a strict
Content-Security-Policy (no script at all, styles from the console's own stylesheet only), and is never
cached or framed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jinja2
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.console.session import (
    COOKIE_PATH,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    SIGN_IN_SECONDS,
    ConsoleSession,
    SessionCodec,
    SessionTooLarge,
)
from gateway.console.settings import ConsoleSettings
from gateway.errors import AuthenticationFailed, GatewayError, NotFound, PermissionDenied
from gateway.frontends.api import AUDIT_TABLE
from gateway.identity import Credentials, Identity
from gateway.identity.jwt_verify import token_expiry
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline

log = logging.getLogger("gateway.console")

HERE = Path(__file__).resolve().parent
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                           "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",  # audit filters in the URL name users and tables
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
}
MAX_FORM_FIELDS = 50


class SecurityHeaders:
    """ASGI middleware: the headers above on every console response (pages, errors, the stylesheet)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class FormRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Visit:
    """One authenticated request to a console page: who, and what they posted."""

    request: Request
    session: ConsoleSession
    form: Mapping[str, str] = field(default_factory=dict)

    @property
    def identity(self) -> Identity:
        return self.session.identity

    def param(self, name: str) -> str | None:
        """A query parameter or form field; blank counts as absent (an empty filter box)."""
        value = self.form.get(name) if self.request.method == "POST" else self.request.query_params.get(name)
        value = value.strip() if value is not None else None
        return value or None


Handler = Callable[[Visit], Awaitable[Response]]


class Console:
    def __init__(self, *, pipeline: Pipeline, settings: ConsoleSettings, key: bytes, tls: bool,
                 metrics: Metrics) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.metrics = metrics
        self.codec = SessionCodec(key=key, lifetime_seconds=settings.session_seconds)
        self.secure_cookie = settings.secure_cookie == "always" or (settings.secure_cookie == "auto" and tls)
        environment = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                         undefined=jinja2.StrictUndefined)
        self.templates = Jinja2Templates(env=environment)

    # -- rendering ---------------------------------------------------------------------------------------------

    def render(self, request: Request, template: str, context: Mapping[str, Any], *, status: int = 200,
               session: ConsoleSession | None = None) -> Response:
        identity = session.identity if session is not None else None
        base = {"identity": identity, "csrf": session.csrf if session is not None else "",
                "nav": self.navigation(identity) if identity is not None else [], "error": None, "notice": None}
        return self.templates.TemplateResponse(request, template, {**base, **context}, status_code=status)

    def error_page(self, visit: Visit | Request, status: int, message: str) -> Response:
        if isinstance(visit, Visit):
            return self.render(visit.request, "error.html", {"status": status, "message": message}, status=status,
                               session=visit.session)
        return self.render(visit, "error.html", {"status": status, "message": message}, status=status)

    def navigation(self, identity: Identity) -> list[tuple[str, str]]:
        """The pages this identity may open (each page checks again: the list only hides dead links)."""
        pages = [("/console/", "Home")]
        if self.may_read_audit(identity):
            pages.append(("/console/audit", "Audit"))
        if self.may_read_chargeback(identity):
            pages.append(("/console/chargeback", "Chargeback"))
        pages += [("/console/queue", "Queue"), ("/console/access", "Access requests"),
                  ("/console/explain", "Policy explain")]
        return pages

    def may_read_audit(self, identity: Identity) -> bool:
        return self.pipeline.access.table(identity, AUDIT_TABLE, None).allowed

    def may_read_chargeback(self, identity: Identity) -> bool:
        try:
            self.pipeline.access.require_finance(identity, "chargeback")
        except PermissionDenied:
            return False
        return True

    # -- the guard ---------------------------------------------------------------------------------------------

    def page(self, name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """`handler` behind sign-in, CSRF (POST) and error pages; counted per page and outcome."""

        async def endpoint(request: Request) -> Response:
            session = self.codec.read(request.cookies.get(SESSION_COOKIE))
            if session is None:
                self.metrics.console_requests.labels(name, "signed_out").inc()
                if request.method == "GET":
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return RedirectResponse(f"/console/login?{urlencode({'next': target})}", status_code=303)
                return self.error_page(request, 401, "Your console session has ended: sign in again.")
            visit = Visit(request, session)
            if request.method == "POST":
                try:
                    form = await self.read_form(request)
                except FormRefused as refused:
                    self.metrics.console_requests.labels(name, "refused").inc()
                    return self.error_page(visit, refused.status, refused.message)
                if not session.accepts(form.get("csrf")):
                    self.metrics.console_requests.labels(name, "refused").inc()
                    return self.error_page(visit, 403, "This form's CSRF token is missing or does not belong to "
                                                       "your session: reload the page and submit it again.")
                visit = Visit(request, session, form)
            try:
                response = await handler(visit)
            except GatewayError as error:
                status = status_of(error)
                self.metrics.console_requests.labels(name, "denied" if status == 403 else "refused").inc()
                return self.error_page(visit, status, error.message)
            except Exception:
                log.exception("console page %s failed", name)
                self.metrics.console_requests.labels(name, "error").inc()
                return self.error_page(visit, 500, "Internal error in the gateway")
            outcome = "ok" if response.status_code < 400 else "denied" if response.status_code == 403 else "refused"
            self.metrics.console_requests.labels(name, outcome).inc()
            return response

        return endpoint

    async def read_form(self, request: Request) -> dict[str, str]:
        """A urlencoded form, bounded; posts from another site are refused whatever they carry."""
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            raise FormRefused(403, "Console forms can only be posted from the console itself.")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.settings.max_form_bytes:
                raise FormRefused(413, f"The form is larger than {self.settings.max_form_bytes} bytes "
                                       "(console.max_form_bytes).")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if body and content_type != "application/x-www-form-urlencoded":
            raise FormRefused(415, "Console forms are posted as application/x-www-form-urlencoded.")
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                              max_num_fields=MAX_FORM_FIELDS)
        except (UnicodeDecodeError, ValueError):
            raise FormRefused(400, "The form could not be read (not UTF-8, or too many fields).") from None
        return dict(pairs)

    # -- sign-in -----------------------------------------------------------------------------------------------

    async def sign_in_form(self, request: Request, *, status: int = 200, error: str | None = None,
                           user: str = "") -> Response:
        if error is None and self.codec.read(request.cookies.get(SESSION_COOKIE)) is not None:
            return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
        cookie, token = self.codec.sign_in_token()
        response = self.render(request, "login.html", {
            "token": token, "mode": self.pipeline.authenticator.mode, "error": error, "user": user,
            "next": _safe_next(request.query_params.get("next")),
            "accepts_tokens": self.pipeline.authenticator.accepts_tokens,
            "accepts_api_keys": self.pipeline.authenticator.accepts_api_keys}, status=status)
        self._set_cookie(response, SIGN_IN_COOKIE, cookie, SIGN_IN_SECONDS)
        return response

    async def sign_in(self, request: Request) -> Response:
        try:
            form = await self.read_form(request)
        except FormRefused as refused:
            self.metrics.console_sign_ins.labels("refused").inc()
            return await self.sign_in_form(request, status=refused.status, error=refused.message)
        if not self.codec.sign_in_accepted(request.cookies.get(SIGN_IN_COOKIE), form.get("csrf")):
            self.metrics.console_sign_ins.labels("refused").inc()
            return await self.sign_in_form(request, status=403, error="The sign-in form expired or was not posted "
                                                                      "from this console: try again.")
        user = form.get("user", "").strip()
        credentials = self._credentials(request, user, form.get("secret", "").strip())
        try:
            identity = await self.pipeline.authenticate(credentials, frontend="console")
        except AuthenticationFailed as failure:
            self.metrics.console_sign_ins.labels("failed").inc()
            message = failure.message
            if failure.reason == "missing":
                message = "Enter a user name." if self.pipeline.authenticator.mode == "dev" else (
                    "Paste a token, or enter a service account and its API key.")
            return await self.sign_in_form(request, status=429 if failure.retry_after else 401, error=message,
                                           user=user)
        not_after = token_expiry(credentials.secret) if credentials.scheme == "bearer" and credentials.secret else None
        try:
            cookie, session = self.codec.issue(identity, not_after=not_after)
        except SessionTooLarge as error:
            self.metrics.console_sign_ins.labels("refused").inc()
            return await self.sign_in_form(request, status=400, error=str(error), user=user)
        self.metrics.console_sign_ins.labels("ok").inc()
        log.info("console sign-in by %s (%s)", identity.user, identity.auth_method)
        response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
        self._set_cookie(response, SESSION_COOKIE, cookie, max(1, round(session.expires_at - time.time())))
        response.delete_cookie(SIGN_IN_COOKIE, path=COOKIE_PATH)
        return response

    async def sign_out(self, visit: Visit) -> Response:
        response = RedirectResponse("/console/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, secure=self.secure_cookie, httponly=True,
                               samesite="strict")
        return response

    def _credentials(self, request: Request, user: str, secret: str) -> Credentials:
        """What the sign-in form presents, as the authenticator takes it from headers: a user name (dev
        mode), a bearer token, or a service account with its API key."""
        address = request.client.host if request.client else None
        if self.pipeline.authenticator.mode == "dev":
            return Credentials(session_user=user or None, client_address=address)
        if not secret:
            return Credentials(session_user=user or None, client_address=address)
        if user:
            return Credentials(scheme="basic", username=user, secret=secret, client_address=address)
        return Credentials(scheme="bearer", secret=secret, client_address=address)

    def _set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH, secure=self.secure_cookie,
                            httponly=True, samesite="strict")


def status_of(error: GatewayError) -> int:
    if isinstance(error, PermissionDenied):
        return 403
    if isinstance(error, NotFound):
        return 404
    return 400 if error.error_name != "GENERIC_INTERNAL_ERROR" else 500


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (never another site, `//host` or `/\\host`)."""
    if target and target.startswith("/console") and not target.startswith(("//", "/\\")) and "\\" not in target \
            and all(31 < ord(c) < 127 for c in target):
        return target
    return "/console/"

