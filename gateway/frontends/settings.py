"""Settings of the endpoints clients connect to: `server` (listening, TLS, connection bounds) and
`protocol` (how the Trino endpoint pages results and keeps finished queries)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from gateway.config_reader import Check, Reader, positive, read_fields, read_section, section_keys
from gateway.config_reader import port as port_number


def http_url(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return None
    return "must be an http:// or https:// URL"


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    environment: str = "gateway"
    max_request_bytes: int = 1024 * 1024
    shutdown_grace_seconds: float = 30.0
    # Connection bounds (gateway/connection_guard.py): a slow or silent client never holds a socket for long.
    header_timeout_seconds: float = 10.0  # from connect (or the end of the last response) to a request's headers
    body_timeout_seconds: float = 30.0  # from the end of the headers to the end of the body
    keep_alive_timeout_seconds: float = 5.0  # an idle keep-alive connection is closed after this long
    max_connections: int = 4096  # open connections at once; beyond it the oldest stalled one is dropped
    max_header_bytes: int = 256 * 1024  # request line and headers together
    shutdown_delivery_seconds: float = 5.0  # then: how long cancelled queries' clients have to fetch the news
    tls_cert: Path | None = None  # server.tls.cert / server.tls.key: PEM files; both set -> HTTPS
    tls_key: Path | None = None
    # Scale-out (docs/scale-out.md): processes sharing the port, and how replicas reach each other.
    workers: int | None = None  # None: one per usable core when workload.redis is set, else 1
    internal_url: str | None = None  # how other replicas reach this one; None: its own listener on server.host
    forward_timeout_seconds: float = 30.0  # a request forwarded to the replica holding its query
    replica_ttl_seconds: float = 15.0  # a replica (and its queries) count as gone this long after its heartbeat
    # PostgreSQL wire frontend (gateway/frontends/pgwire.py): off unless a port is set; TLS from server.tls.
    pgwire_port: int | None = None
    pgwire_max_message_bytes: int = 4 * 1024 * 1024  # one client message (a query text, a Bind)
    pgwire_startup_timeout_seconds: float = 10.0  # connect to authenticated
    pgwire_idle_timeout_seconds: float = 3600.0  # waiting for the next message between statements
    pgwire_max_connections: int = 1024
    pgwire_max_prepared: int = 1000  # named prepared statements, and portals/cursors, each, per connection

    CHECKS: ClassVar[Mapping[str, Check]] = {
        "port": port_number, "max_request_bytes": positive, "header_timeout_seconds": positive,
        "body_timeout_seconds": positive, "keep_alive_timeout_seconds": positive, "max_connections": positive,
        "shutdown_delivery_seconds": positive, "workers": positive, "internal_url": http_url,
        "forward_timeout_seconds": positive, "replica_ttl_seconds": positive, "pgwire_port": port_number,
        "pgwire_startup_timeout_seconds": positive,
        "pgwire_idle_timeout_seconds": positive, "pgwire_max_connections": positive, "pgwire_max_prepared": positive,
    }
    SIZES: ClassVar[frozenset[str]] = frozenset({"max_header_bytes", "pgwire_max_message_bytes"})


_TLS = ("tls_cert", "tls_key")



def read_server(r: Reader, data: Mapping[str, Any]) -> ServerSettings:
    p = ("server",)
    s = r.section(data, p, section_keys(ServerSettings, skip=_TLS, extra={"tls"}))
    tls = r.section(s, (*p, "tls"), {"cert", "key"})
    cert = r.get(tls, (*p, "tls", "cert"), Path, None)
    key = r.get(tls, (*p, "tls", "key"), Path, None)
    if (cert is None) != (key is None):
        r.fail((*p, "tls"), "needs both cert and key")
    for name, file in (("cert", cert), ("key", key)):
        if file is not None and not file.is_file():
            r.fail((*p, "tls", name), f"no such file: {file}")
    return ServerSettings(**read_fields(r, s, p, ServerSettings, skip=_TLS), tls_cert=cert, tls_key=key)


@dataclass(frozen=True, kw_only=True)
class ProtocolSettings:
    page_rows: int = 4096  # at most this many rows per response
    page_bytes: int = 1024 * 1024  # and about this many bytes of JSON
    max_wait_seconds: float = 1.0  # how long one poll waits for new rows before answering RUNNING
    client_timeout_seconds: float = 300.0  # a query nobody polls for this long is cancelled (Trino: 5m)
    inline_first_page: bool = False  # answer POST /v1/statement with the first rows (Trino: always QUEUED)
    query_history_max: int = 1000  # ended queries kept for GET /v1/query/{id} and system.runtime.queries
    query_history_seconds: float = 900.0  # and for at most this long after they ended

    CHECKS: ClassVar[Mapping[str, Check]] = {
        name: positive for name in ("page_rows", "page_bytes", "max_wait_seconds", "client_timeout_seconds",
                                    "query_history_max", "query_history_seconds")
    }


def read_protocol(r: Reader, data: Mapping[str, Any]) -> ProtocolSettings:
    return read_section(r, data, ("protocol",), ProtocolSettings)
