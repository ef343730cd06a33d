"""A real gateway in a subprocess on a free loopback port, for the test suite and the load tests.

Like starlette's TestClient this ships with the package but is never imported by the server. Each process
gets its own config file and log in `workdir`; `stop()` sends SIGTERM (a graceful drain) and kills only if
the process does not exit in time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import yaml

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` holds the socket listening on TCP `port` (Linux: /proc; elsewhere assumed)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            return True  # no /proc to ask
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for descriptor in descriptors:
        try:
            if os.readlink(descriptor) in inodes:
                return True
        except OSError:
            continue
    return False


class GatewayProcess:
    """A gateway subprocess on ports of its own. `free_port` only names a port free at that moment: a test on
    another pytest worker can be handed the same number before either process listens. So the process counts
    as ready only once the sockets listening on its ports (HTTP, and pgwire when the config opens it: any
    `server.pgwire_port` is replaced by one picked here, `pgwire_port`) are its own, and one that finds a
    port taken starts again on others (BIND_ATTEMPTS in all)."""

    BIND_ATTEMPTS = 3

    def __init__(self, workdir: Path, config: dict[str, Any], *, env: dict[str, str] | None = None,
                 module: str = "gateway.cli", cwd: Path | None = None, ready_timeout: float = 60.0) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        for attempt in range(1, self.BIND_ATTEMPTS + 1):
            self._spawn(workdir, config, env=env, module=module, cwd=cwd)
            try:
                self._wait_ready(ready_timeout)
                return
            except BaseException:
                taken = self._port_was_taken()  # before stop(): the process ended on its own
                self.stop()
                if attempt == self.BIND_ATTEMPTS or not taken:
                    raise

    def _spawn(self, workdir: Path, config: dict[str, Any], *, env: dict[str, str] | None, module: str,
               cwd: Path | None) -> None:
        self.port = free_port()
        server = config.get("server", {})
        # A config that opens the PostgreSQL wire port gets one picked here too, per attempt (`pgwire_port`)
        self.pgwire_port: int | None = free_port() if server.get("pgwire_port") else None
        # One process unless a test asks for workers: most tests read one process's metrics and state.
        config = {**config, "server": {"workers": 1, **server, "host": self.host, "port": self.port,
                                       **({"pgwire_port": self.pgwire_port} if self.pgwire_port else {})}}
        self.scheme = "https" if config["server"].get("tls") else "http"
        self.config_path = workdir / f"gateway-{self.port}.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))  # backends: first is default
        self.log_path = workdir / f"gateway-{self.port}.log"
        self._log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "serve", "--config", str(self.config_path)],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd,
        )

    def _port_was_taken(self) -> bool:
        return self.process.poll() is not None and "address already in use" in self.log().lower()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log()}")
            try:
                if (httpx.get(f"{self.url}/health/ready", timeout=1, verify=False).status_code == 200
                        and all(listens_on(self.process.pid, port) for port in (self.port, self.pgwire_port)
                                if port is not None)):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway did not become ready in {timeout:.0f}s:\n{self.log()}")

    def version(self) -> str:
        info = httpx.get(f"{self.url}/v1/info", timeout=5, verify=False).json()
        return str(info["nodeVersion"]["version"])

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def metric(self, name: str, labels: str = "") -> float:
        """Sum of a metric's samples whose label text contains `labels`."""
        text = httpx.get(f"{self.url}/metrics", timeout=5, verify=False).text
        total = 0.0
        found = False
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {") and labels in line:
                total += float(line.rsplit(" ", 1)[1])
                found = True
        if not found:
            raise KeyError(f"metric {name}{{{labels}}} not exposed")
        return total

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._log.closed:
            self._log.close()
        return self.process.returncode

    def __enter__(self) -> GatewayProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def follow_statement(first: httpx.Response, *, headers: dict[str, str] | None = None,
                     client: httpx.Client | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """Follow a POST /v1/statement answer's nextUri to the end, as a Trino client does, sending `headers`
    on every poll. The last response, with `columns` from whichever response had them and every row under
    `data`."""
    http = client or httpx.Client(timeout=timeout, verify=False)
    try:
        body: dict[str, Any] = first.json()
        columns, data = body.get("columns"), list(body.get("data", []))
        while "nextUri" in body and "error" not in body:
            body = http.get(body["nextUri"], headers=headers or {}).json()
            columns = columns or body.get("columns")
            data += body.get("data", [])
        result = {**body, "data": data}
        if columns is not None:
            result["columns"] = columns
        return result
    finally:
        if client is None:
            http.close()


def process_tree(pid: int) -> list[int]:
    """`pid` and every process it started that still runs, children after their parent (from /proc)."""
    found = [pid]
    for parent in found:  # grows while read: a breadth-first walk
        try:
            found.extend(int(child) for task in Path(f"/proc/{parent}/task").iterdir()
                         for child in (task / "children").read_text().split())
        except OSError:  # ended meanwhile
            continue
    return found


class RssWatchdog:
    """Samples the resident memory of a process and of the processes it started (a DuckDB backend's engine
    process, `isolation: process`) every `interval` seconds and SIGKILLs them all above `limit_bytes`: a test
    that may use a lot of memory sets its own ceiling, and reads the peak it saw (`peak_bytes`)."""

    def __init__(self, pid: int, *, limit_bytes: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.limit_bytes = limit_bytes
        self.interval = interval
        self.peak_bytes = 0
        self.killed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"rss-watchdog-{pid}", daemon=True)

    def rss_bytes(self) -> int:
        return sum(_rss_bytes(pid) for pid in process_tree(self.pid))

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            rss = self.rss_bytes()
            self.peak_bytes = max(self.peak_bytes, rss)
            if rss > self.limit_bytes and not self.killed:
                self.killed = True
                for pid in reversed(process_tree(self.pid)):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> RssWatchdog:
        self.peak_bytes = self.rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
