"""Deployment secrets read from an environment variable or a file created on first start.

One rule for every secret the gateway keys something with (the mask key, the console's session key): the
variable wins; else the file, created with a random value (mode 0600) when it does not exist, so a single
gateway keeps it across restarts and its workers share it. Replicas must share one: the same file or
variable. Only the loading lives here; each secret's own class decides how it is used and never prints it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

MIN_BYTES = 16


class SecretError(Exception):
    """A configured secret cannot be read: the gateway does not start."""


def read_secret(*, env: str | None, file: Path, setting: str, what: str,
                environ: Mapping[str, str] | None = None) -> tuple[bytes, str]:
    """The secret and where it came from (`$NAME` or the file path, for logs). `setting` names the config
    section (`masking`) in errors, `what` the secret (`the mask key`)."""
    environ = os.environ if environ is None else environ
    if env is not None:
        value = environ.get(env)
        if not value:
            raise SecretError(f"{setting}.key_env: environment variable {env} is not set")
        return _checked(value.strip().encode(), f"${env}", what)
    try:
        if not file.exists():
            file.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
        return _checked(file.read_bytes().strip(), str(file), what)
    except FileExistsError:  # another worker created it between the check and the open
        return _checked(file.read_bytes().strip(), str(file), what)
    except OSError as exc:
        raise SecretError(f"{setting}.key_file: cannot read or create {file}: {exc.strerror}") from exc


def _checked(secret: bytes, source: str, what: str) -> tuple[bytes, str]:
    if len(secret) < MIN_BYTES:
        raise SecretError(f"{what} in {source} is shorter than {MIN_BYTES} bytes")
    return secret, source
