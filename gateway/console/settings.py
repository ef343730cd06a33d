"""`console:` — the browser console for auditors and admins (gateway/console/), served under /console."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from gateway.config_reader import Check, Reader, environment_name, one_of, positive, read_section

SECURE_COOKIE = ("auto", "always", "never")


@dataclass(frozen=True, kw_only=True)
class ConsoleSettings:
    """Where the console's session key comes from and how long a sign-in lasts. Never the key itself."""

    enabled: bool = True  # serve /console (every page still needs a sign-in and the right group)
    session_seconds: int = 3600  # a sign-in lasts this long at most (and never past the token's own exp)
    key_env: str | None = None  # environment variable with the session signing key (wins over key_file)
    key_file: Path = Path("data/console.key")  # created with a random key (mode 0600) when missing
    secure_cookie: str = "auto"  # auto: Secure when server.tls is set; always (TLS ends at a proxy); never
    page_size: int = 50  # audit records per page
    max_form_bytes: int = 65536  # a POSTed form larger than this is refused (413)

    CHECKS: ClassVar[Mapping[str, Check]] = {
        "key_env": environment_name, "secure_cookie": one_of(SECURE_COOKIE, "secure_cookie"),
        **{name: positive for name in ("session_seconds", "max_form_bytes")},
        "page_size": lambda value: None if 1 <= value <= 1000 else f"must be from 1 to 1000, not {value!r}",
    }


def read_console(r: Reader, data: Mapping[str, Any]) -> ConsoleSettings:
    return read_section(r, data, ("console",), ConsoleSettings)
