"""A round-robin balancer of the tests' own in front of gateway replicas, with no stickiness: every HTTP request
goes to the next backend. It reads the head of each connection's request, marks it `Connection: close` (so
the answer ends the connection and the client's next request is a new connection, to the next backend) and
relays bytes both ways; it never parses the answer."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from types import TracebackType

from gateway.testing import HOST, free_port
from tests.tcp_proxy import TcpProxy

_relay = TcpProxy._relay


class RoundRobinBalancer:
    def __init__(self, ports: list[int]) -> None:
        self.port = free_port()
        self.ports = list(ports)
        self._next = itertools.cycle(range(len(self.ports)))
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server((HOST, self.port))
        self.connections = [0] * len(self.ports)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                index = next(self._next)
                self.connections[index] += 1
            threading.Thread(target=self._serve, args=(client, index), daemon=True).start()

    def _serve(self, client: socket.socket, index: int) -> None:
        head = bytearray()
        try:
            while b"\r\n\r\n" not in head:
                data = client.recv(65536)
                if not data:
                    client.close()
                    return
                head += data
            upstream = socket.create_connection((HOST, self.ports[index]), timeout=5)
        except OSError:
            client.close()  # a dead backend: the client sees the connection close
            return
        upstream.settimeout(None)
        end = head.index(b"\r\n\r\n")
        lines = [line for line in bytes(head[:end]).split(b"\r\n") if not line.lower().startswith(b"connection:")]
        upstream.sendall(b"\r\n".join([*lines, b"Connection: close"]) + bytes(head[end:]))
        with self._lock:
            self._sockets += [client, upstream]
        threading.Thread(target=_relay, args=(client, upstream), daemon=True).start()
        _relay(upstream, client)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for end in sockets:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def __enter__(self) -> RoundRobinBalancer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

