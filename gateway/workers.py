"""`server.workers: N`: N gateway processes sharing the listening sockets, each one a replica.

The parent binds every public listener (`Listener`: generic, any frontend's port) before it forks, so the
workers share each socket's accept queue (the kernel hands each connection to one of them). Each worker then
builds its own gateway (its own backends, audit stream, query ids) and its own internal listener, the
address other replicas forward its queries' requests to (`gateway.replicas`), and coordinates with the
others exactly as separate replicas do: admission, cache, budgets and paging through `workload.redis`, which
the configuration requires when N > 1.

Worker 0 starts first and the others only once it is ready, so first-start work (generating the demo data,
creating the audit tables) happens once, and a configuration the gateway refuses is reported once. SIGTERM
(or SIGINT) to the parent reaches every worker once, and each drains as a single process does; the parent
exits when all have. A worker that dies otherwise is started again (after `RESTART_DELAY_SECONDS`). A worker
whose parent is gone drains and exits.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

log = logging.getLogger("gateway")

BACKLOG = 2048
RESTART_DELAY_SECONDS = 1.0
READY_TIMEOUT_SECONDS = 600.0  # first start may generate demo data


def worker_count(workers: int | None, *, shared_state: bool) -> int:
    """`server.workers`, or by default one per core when the workers can share state (workload.redis), else
    one process."""
    if workers is not None:
        return workers
    if not shared_state:
        return 1
    return usable_cores()


def usable_cores(cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (a container's CPU
    limit), so a pod limited to 2 CPUs on a 64-core node runs 2 workers, not 64."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    try:
        return max(1, min(cores, math.ceil(int(quota) / int(period))))
    except (ValueError, ZeroDivisionError):
        return cores


@dataclass(frozen=True)
class Listener:
    """A listening socket bound before the workers fork, shared by all of them."""

    name: str
    sock: socket.socket

    @classmethod
    def bind(cls, name: str, host: str, port: int) -> Listener:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.set_inheritable(True)
        return cls(name, sock)


Worker = Callable[[int, Callable[[], None]], int]  # (index, call once ready) -> exit code


class Supervisor:
    def __init__(self, count: int, worker: Worker) -> None:
        self.count = count
        self.worker = worker
        self._children: dict[int, int] = {}  # pid -> index
        self._stopping = False

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            first = self._spawn(0, wait_ready=True)
            if first is not None:
                return first  # worker 0 could not start: nor would the others
            for index in range(1, self.count):
                self._spawn(index, wait_ready=False)
            log.info("%d gateway workers serving", self.count)
            return self._watch()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _spawn(self, index: int, *, wait_ready: bool) -> int | None:
        """Fork worker `index`; with `wait_ready`, wait for it to serve. Its exit code if it ended first."""
        ready_read, ready_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(ready_read)
            code = 1
            try:
                os.setpgid(0, 0)  # a terminal's Ctrl-C reaches the parent, which tells each worker once
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                _exit_with_parent(os.getppid())
                code = self.worker(index, lambda: _signal_ready(ready_write))
            except BaseException:
                log.exception("gateway worker %d failed", index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(ready_write)
        self._children[pid] = index
        try:
            if not wait_ready:
                return None
            with os.fdopen(ready_read, "rb", closefd=False) as ready:
                if ready.read(1):
                    return None
            _, status = os.waitpid(pid, 0)  # it closed the pipe without being ready: it exited
            del self._children[pid]
            return os.waitstatus_to_exitcode(status) or 1
        finally:
            os.close(ready_read)

    def _watch(self) -> int:
        while self._children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            index = self._children.pop(pid, None)
            if index is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if self._stopping:
                continue
            log.error("gateway worker %d (pid %d) exited with %d; starting it again", index, pid, code)
            time.sleep(RESTART_DELAY_SECONDS)
            if not self._stopping:
                self._spawn(index, wait_ready=False)
        return 0

    def _stop(self, sig: int, frame: FrameType | None) -> None:
        first = not self._stopping
        self._stopping = True
        if first:
            log.info("stopping %d gateway workers (each drains its queries)", len(self._children))
        for pid in list(self._children):  # a second signal is passed on too: each worker then stops at once
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def _signal_ready(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, b"1")
        os.close(fd)


def _exit_with_parent(parent: int) -> None:
    """Drain and exit should the parent die (SIGKILL leaves no one to pass SIGTERM on)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
