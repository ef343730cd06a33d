"""Bounds on client connections, below the ASGI application: no connection holds a socket for long without
sending a request, and the number of open connections is capped below the process's file limit.

uvicorn closes idle keep-alive connections (`timeout_keep_alive`) but never a connection that connects and
then sends nothing, or sends its headers or body a byte at a time: 20,000 of those exhausted the file
descriptors and every legitimate request failed. `guarded_protocol` wraps uvicorn's httptools protocol:

    header timeout    from connect (or from the first byte of a keep-alive request) to the end of the headers
    header bytes      the request line and headers together (each X-Trino-* value is also capped at 64 KB by
                      the frontend; this bounds how many there are): beyond it, 431
    body timeout      from the end of the headers to the end of the body
    max connections   at the cap, a new connection evicts the oldest one still waiting for its headers (a
                      slow client is always waiting; a legitimate one waits milliseconds); with none to
                      evict, the new connection gets 503 and is closed

A timed-out client gets `408` (`503` when refused) with a JSON error body, then the connection is closed.
Every close is counted (`gateway_http_connections_closed_total{reason}`) and summarised in the log at most
every `LOG_EVERY_SECONDS`, so an attack is visible without flooding the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, OrderedDict
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.metrics import Metrics

log = logging.getLogger("gateway.connections")

LOG_EVERY_SECONDS = 10.0
REASONS = ("header_timeout", "header_bytes", "body_timeout", "evicted", "refused")


def _response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": {"message": message, "errorCode": 0, "errorName": "GENERIC_USER_ERROR",
                                 "errorType": "USER_ERROR"}, "message": message}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"connection: close\r\n\r\n").encode()
    return head + body


class ConnectionGuard:
    """The state every connection of one server shares: which are open, which wait for headers, what was
    closed. One per server (never process-wide), handed to the protocol class built by `guarded_protocol`."""

    def __init__(self, *, header_timeout: float, body_timeout: float, max_connections: int,
                 metrics: Metrics, max_header_bytes: int = 256 * 1024) -> None:
        self.header_timeout = header_timeout
        self.max_header_bytes = max_header_bytes
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self.metrics = metrics
        self.open: set[GuardedProtocol] = set()
        self.waiting: OrderedDict[GuardedProtocol, None] = OrderedDict()  # for headers, oldest first
        self._unlogged: Counter[str] = Counter()
        self._logged_at = 0.0
        metrics.http_connections_open.set_function(lambda: float(len(self.open)))
        for reason in REASONS:
            metrics.http_connections_closed.labels(reason)  # exposed as 0 from the start

    def admit(self, connection: GuardedProtocol) -> bool:
        """A new connection: True if it may stay (perhaps after evicting the oldest waiting one)."""
        if len(self.open) >= self.max_connections:
            if not self.waiting:
                self.closed(connection, "refused", 503, "Service Unavailable",
                            f"The gateway has {len(self.open)} open connections, its limit "
                            f"(server.max_connections); retry shortly")
                return False
            oldest, _ = self.waiting.popitem(last=False)
            self.open.discard(oldest)  # its socket closes in this loop iteration; count it gone now
            self.closed(oldest, "evicted", 408, "Request Timeout",
                        "Connection closed: the gateway is at its connection limit and this connection had "
                        "not sent a complete request")
        self.open.add(connection)
        return True

    def closed(self, connection: GuardedProtocol, reason: str, status: int, phrase: str, message: str) -> None:
        self.metrics.http_connections_closed.labels(reason).inc()
        self._unlogged[reason] += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_SECONDS:
            counts = ", ".join(f"{name} {count}" for name, count in sorted(self._unlogged.items()))
            log.warning("closed client connections since the last report: %s; %d open (limits: "
                        "server.header_timeout_seconds, body_timeout_seconds, max_connections)", counts,
                        len(self.open))
            self._unlogged.clear()
            self._logged_at = now
        connection.abort(_response(status, phrase, message))

    def forget(self, connection: GuardedProtocol) -> None:
        self.open.discard(connection)
        self.waiting.pop(connection, None)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the header and body deadlines of its `guard`."""

    guard: ConnectionGuard  # set on the subclass `guarded_protocol` builds for one server

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._aborted = False
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.guard.admit(self):
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._aborted:
            super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._deadline is None:  # a keep-alive request: its header deadline starts with its first byte
            self._await_headers()

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value) + 4)
        if not self._aborted:
            super().on_header(name, value)

    def _count_header_bytes(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.guard.max_header_bytes and not self._aborted:
            self.guard.waiting.pop(self, None)
            self.guard.closed(self, "header_bytes", 431, "Request Header Fields Too Large",
                              f"The request line and headers are larger than {self.guard.max_header_bytes} bytes "
                              f"(server.max_header_bytes)")

    def on_headers_complete(self) -> None:
        if self._aborted:
            return
        self._disarm()
        self.guard.waiting.pop(self, None)
        super().on_headers_complete()
        self._arm(self.guard.body_timeout, "body_timeout",
                  f"The request body did not arrive within {self.guard.body_timeout:g}s "
                  f"(server.body_timeout_seconds)")

    def on_body(self, body: bytes) -> None:
        if not self._aborted:  # the parser finishes the data it was fed after an abort
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        if not self._aborted:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.guard.waiting[self] = None  # idle keep-alive: evictable; uvicorn's keep-alive timer runs

    def _await_headers(self) -> None:
        self.guard.waiting[self] = None
        self._arm(self.guard.header_timeout, "header_timeout",
                  f"The request headers did not arrive within {self.guard.header_timeout:g}s "
                  f"(server.header_timeout_seconds)")

    def _arm(self, seconds: float, reason: str, message: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, reason, message)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, reason: str, message: str) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.guard.waiting.pop(self, None)
            self.guard.closed(self, reason, 408, "Request Timeout", message)

    def abort(self, response: bytes) -> None:
        """Answer `response` (unless a response is already under way) and close the connection."""
        self._disarm()
        self._aborted = True
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(response)
        self.transport.close()


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedProtocol]:
    """A protocol class for one uvicorn server, bound to `guard` (uvicorn instantiates it per connection)."""
    return type("GuardedHttpToolsProtocol", (GuardedProtocol,), {"guard": guard})
