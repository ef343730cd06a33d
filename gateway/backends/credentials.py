"""Backend secrets (passwords, keys) from the environment, a file or a command, rotated without a restart.

    password: {env: PGPASSWORD}
    password: {file: /var/run/secrets/pg/password}                       # re-read when it changes
    password: {command: [vault, kv, get, -field=password, secret/pg], refresh_seconds: 300, timeout_seconds: 10}

`SecretSpec` is the configured value (frozen, safe to print: it names where the secret is, never the secret);
`secret_source(spec)` makes the live `SecretSource`, whose `current()` answers the secret with a version that
changes exactly when the secret does (a hash of it), so a backend can tell connections opened with an old
secret from new ones and drain them.

A file is checked with `os.stat` (which follows symlinks, so Kubernetes' swap of the `..data` link of a mounted
Secret changes the inode) at most once per `check_seconds`, and re-read only when inode, mtime or size moved.
A command runs again after `refresh_seconds`; its output (stripped) is the secret; its stderr may hold the
secret or a token, so only its size is ever reported; a non-zero exit or a timeout is an error naming the
command's program, never its output. `invalidate()` forgets the cache: a backend calls it when the server
refused the secret, so the next attempt reads the newest one.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import BackendError

log = logging.getLogger("gateway.backends.credentials")

SECRET_KINDS = ("env", "file", "command")
DEFAULT_FILE_CHECK_SECONDS = 1.0
DEFAULT_REFRESH_SECONDS = 300.0
DEFAULT_COMMAND_TIMEOUT_SECONDS = 10.0
MAX_SECRET_BYTES = 64 * 1024  # a password or a PEM key; anything larger is a misconfiguration


class CredentialError(BackendError):
    """The secret could not be obtained. The message names its source, never its content."""


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret and its version. `repr`/`str` never show the value."""

    value: str = field(repr=False)
    version: str

    def __str__(self) -> str:
        return f"Secret(version={self.version})"


def secret_version(value: str) -> str:
    """A short fingerprint: equal secrets, equal versions (no secret can be recovered from 12 hex digits)."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


@dataclass(frozen=True, kw_only=True)
class SecretSpec:
    """Where a secret comes from, as configured. Printing it shows the source, never the secret."""

    kind: str  # env | file | command
    env: str | None = None
    file: Path | None = None
    command: tuple[str, ...] = ()
    check_seconds: float = DEFAULT_FILE_CHECK_SECONDS  # file: how often it is stat()ed at most
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS  # command: how long its output is reused
    timeout_seconds: float = DEFAULT_COMMAND_TIMEOUT_SECONDS  # command: how long it may run

    def describe(self) -> str:
        if self.kind == "env":
            return f"environment variable {self.env}"
        if self.kind == "file":
            return f"file {self.file}"
        return f"command {Path(self.command[0]).name if self.command else '?'}"

    def __repr__(self) -> str:
        # A command's arguments may carry a token (`--token=...`): only its program is shown.
        if self.kind == "command":
            return (f"SecretSpec(command={self.command[0] if self.command else None!r} (+{len(self.command) - 1} "
                    f"args), refresh_seconds={self.refresh_seconds}, timeout_seconds={self.timeout_seconds})")
        if self.kind == "file":
            return f"SecretSpec(file={str(self.file)!r}, check_seconds={self.check_seconds})"
        return f"SecretSpec(env={self.env!r})"


_OPTIONS = {"env": set[str](), "file": {"check_seconds"}, "command": {"refresh_seconds", "timeout_seconds"}}


def parse_secret_spec(raw: Any, *, base: Path) -> SecretSpec | str:
    """A config value -> its spec, or the problem with it (a sentence for the config error)."""
    if not isinstance(raw, Mapping):
        return "must be a mapping with one of env, file, command"
    kinds = [k for k in SECRET_KINDS if k in raw]
    if len(kinds) != 1:
        return "must have exactly one of env, file, command"
    kind = kinds[0]
    allowed = {kind} | _OPTIONS[kind]
    unknown = sorted(set(raw) - allowed)
    if unknown:
        return f"unknown key {unknown[0]!r} for a {kind} secret (allowed: {', '.join(sorted(allowed))})"
    numbers: dict[str, float] = {}
    for key in sorted(allowed - {kind}):
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            return f"{key} must be a positive number"
        numbers[key] = float(value)
    value = raw[kind]
    if kind == "env":
        if not isinstance(value, str) or not value:
            return "env must name an environment variable"
        return SecretSpec(kind=kind, env=value)
    if kind == "file":
        if not isinstance(value, str) or not value:
            return "file must be a path"
        path = Path(value).expanduser()
        return SecretSpec(kind=kind, file=path if path.is_absolute() else base / path,
                          check_seconds=numbers.get("check_seconds", DEFAULT_FILE_CHECK_SECONDS))
    if not isinstance(value, list) or not value or not all(isinstance(a, str) and a for a in value):
        return "command must be a list of program and arguments (no shell)"
    return SecretSpec(kind=kind, command=tuple(value),
                      refresh_seconds=numbers.get("refresh_seconds", DEFAULT_REFRESH_SECONDS),
                      timeout_seconds=numbers.get("timeout_seconds", DEFAULT_COMMAND_TIMEOUT_SECONDS))


class SecretSource(abc.ABC):
    def __init__(self, spec: SecretSpec, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self._clock = clock
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"

    @abc.abstractmethod
    async def current(self) -> Secret:
        """The secret in force now (cached as the source allows); raises CredentialError."""

    def invalidate(self) -> None:  # noqa: B027 - the environment has no cache to forget
        """The server refused the secret: read it afresh next time."""

    def _error(self, problem: str) -> CredentialError:
        return CredentialError(f"Backend credentials from {self.spec.describe()}: {problem}")

    def _checked(self, value: str) -> Secret:
        value = value.strip("\r\n")
        if not value:
            raise self._error("the secret is empty")
        if len(value.encode()) > MAX_SECRET_BYTES:
            raise self._error(f"the secret is larger than {MAX_SECRET_BYTES} bytes")
        return Secret(value, secret_version(value))


class EnvSecret(SecretSource):
    async def current(self) -> Secret:
        assert self.spec.env is not None
        value = os.environ.get(self.spec.env)
        if value is None:
            raise self._error("the variable is not set")
        return self._checked(value)


class FileSecret(SecretSource):
    def __init__(self, spec: SecretSpec, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(spec, clock=clock)
        self._cached: Secret | None = None
        self._stat_key: tuple[int, int, int, int] | None = None
        self._checked_at = float("-inf")

    def invalidate(self) -> None:
        self._checked_at = float("-inf")
        self._stat_key = None

    async def current(self) -> Secret:
        now = self._clock()
        if self._cached is not None and now - self._checked_at < self.spec.check_seconds:
            return self._cached
        async with self._lock:
            if self._cached is not None and self._clock() - self._checked_at < self.spec.check_seconds:
                return self._cached
            self._cached = await asyncio.to_thread(self._read_if_changed)
            self._checked_at = self._clock()
            return self._cached

    def _read_if_changed(self) -> Secret:
        path = self.spec.file
        assert path is not None
        try:
            # stat() follows the symlinks: a swapped `..data` link shows as another inode.
            info = os.stat(path)
            key = (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)
            if key == self._stat_key and self._cached is not None:
                return self._cached
            if info.st_size > MAX_SECRET_BYTES:
                raise self._error(f"the file is larger than {MAX_SECRET_BYTES} bytes")
            value = path.read_text(encoding="utf-8")
        except OSError as error:
            raise self._error(f"cannot read the file ({error.strerror or type(error).__name__})") from None
        except UnicodeDecodeError:
            raise self._error("the file is not UTF-8 text") from None
        secret = self._checked(value)
        if self._cached is not None and secret.version != self._cached.version:
            log.info("backend secret in %s changed (version %s -> %s)", path, self._cached.version, secret.version)
        self._stat_key = key
        return secret


class CommandSecret(SecretSource):
    def __init__(self, spec: SecretSpec, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(spec, clock=clock)
        self._cached: Secret | None = None
        self._fetched_at = float("-inf")

    def invalidate(self) -> None:
        self._fetched_at = float("-inf")

    async def current(self) -> Secret:
        if self._cached is not None and self._clock() - self._fetched_at < self.spec.refresh_seconds:
            return self._cached
        async with self._lock:
            if self._cached is not None and self._clock() - self._fetched_at < self.spec.refresh_seconds:
                return self._cached
            self._cached = await self._run(self.spec.command)
            self._fetched_at = self._clock()
            return self._cached

    async def _run(self, argv: Sequence[str]) -> Secret:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        except OSError as error:
            raise self._error(f"cannot run it ({error.strerror or type(error).__name__})") from None
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout=self.spec.timeout_seconds)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise self._error(f"no answer within {self.spec.timeout_seconds:g}s") from None
        if process.returncode != 0:
            # stderr may echo the secret or a token: only its size is reported.
            log.warning("secret command %s exited with status %s (%d bytes on stderr, not shown)",
                        Path(argv[0]).name, process.returncode, len(err))
            raise self._error(f"it exited with status {process.returncode}")
        if len(out) > MAX_SECRET_BYTES:
            raise self._error(f"it printed more than {MAX_SECRET_BYTES} bytes")
        try:
            return self._checked(out.decode("utf-8"))
        except UnicodeDecodeError:
            raise self._error("its output is not UTF-8 text") from None


def secret_source(spec: SecretSpec, *, clock: Callable[[], float] = time.monotonic) -> SecretSource:
    kinds: dict[str, type[SecretSource]] = {"env": EnvSecret, "file": FileSecret, "command": CommandSecret}
    return kinds[spec.kind](spec, clock=clock)
