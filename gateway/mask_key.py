"""The deployment secret that keys hash masks, and the only code that ever handles it.

An unkeyed hash mask (`sha256(value)`, `md5(value)`) is reversible by dictionary: anyone can hash candidate
values and join. So `hash` and `gateway_hash(...)` in mask templates are keyed:
`sha256(k || sha256(k || value))` with `k` derived from the secret and the policies' `mask_key_version`
(HMAC-SHA256), which no one without the secret can compute, and which the double hash keeps from length
extension.

The key must reach the backend inside the SQL (the only channel every engine has), yet the SQL is shown in
EXPLAIN, `gateway explain`, audit records, logs and, in some engines, error messages. Planning therefore
puts a *sentinel* in its place: a token that is itself derived from the secret (so no client can write one
into a literal and have it replaced), carries the key version, and is unique to the key. Only the execute
stage `reveal`s it, right before the SQL goes to the backend; everything that displays SQL shows
`display`; any message coming back from the backend is passed through `redact`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from gateway.config_reader import Check, Reader, environment_name, read_section
from gateway.secret_file import SecretError, read_secret

_SENTINEL = re.compile(r"gwmaskkey(\d{1,7})x([0-9a-f]{24})")
SHOWN_AS = "<mask key v{version}>"
_MAX_VERSIONS = 64  # key versions remembered (a deployment uses one or two at a time)


@dataclass(frozen=True, kw_only=True)
class MaskingSettings:
    """`masking:` — where the secret that keys hash masks comes from. Never the secret itself."""

    key_env: str | None = None  # name of an environment variable holding the key (wins over key_file)
    key_file: Path = Path("data/mask.key")  # created with a random key (mode 0600) when missing

    CHECKS: ClassVar[Mapping[str, Check]] = {"key_env": environment_name}


def read_masking(r: Reader, data: Mapping[str, Any]) -> MaskingSettings:
    return read_section(r, data, ("masking",), MaskingSettings)


class MaskKey:
    """Holds the secret; never printed (repr, str and logs show only a fingerprint)."""

    def __init__(self, secret: bytes, *, source: str) -> None:
        if len(secret) < 16:
            raise ValueError("the mask key must be at least 16 bytes")
        self._secret = secret
        self.source = source  # where it came from (a file path, an environment variable name): for the log
        self._revealed: dict[int, str] = {}  # version -> derived key, for redacting backend messages
        self._tags: dict[int, str] = {}  # version -> sentinel tag: both HMACs once per version, not per query
        self._lock = threading.Lock()

    @classmethod
    def generate(cls, *, source: str = "generated") -> MaskKey:
        return cls(secrets.token_bytes(32), source=source)

    @property
    def fingerprint(self) -> str:
        return hmac.new(self._secret, b"fingerprint", hashlib.sha256).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"MaskKey(fingerprint={self.fingerprint!r}, source={self.source!r})"

    __str__ = __repr__

    def sentinel(self, version: int) -> str:
        """What planning writes where the key of `version` goes."""
        return f"gwmaskkey{version}x{self._tag(version)}"

    def reveal(self, sql: str) -> str:
        """`sql` as the backend must run it: every genuine sentinel replaced by its key."""
        if "gwmaskkey" not in sql:
            return sql
        return _SENTINEL.sub(lambda m: self._key_for(m) or m.group(0), sql)

    def display(self, text: str) -> str:
        """`text` (planned SQL) as it may be shown: sentinels named, never valid, never the key."""
        if "gwmaskkey" not in text:
            return text
        return _SENTINEL.sub(lambda m: SHOWN_AS.format(version=m.group(1)), text)

    def redact(self, text: str) -> str:
        """`text` (a backend message, which may quote the SQL it ran) with every key it could hold removed."""
        text = self.display(text)
        with self._lock:
            revealed = dict(self._revealed)
        for version, key in revealed.items():
            if key in text:
                text = text.replace(key, SHOWN_AS.format(version=version))
            # A message may quote a truncated stretch of the SQL: no 16-character run of the key survives.
            for start in range(0, len(key) - 15, 8):
                text = text.replace(key[start:start + 16], SHOWN_AS.format(version=version))
        return text

    def _tag(self, version: int) -> str:
        tag = self._tags.get(version)
        if tag is None:
            tag = hmac.new(self._secret, f"sentinel:{version}".encode(), hashlib.sha256).hexdigest()[:24]
            with self._lock:
                if len(self._tags) < _MAX_VERSIONS:  # a client can write any version in a literal: bounded
                    self._tags[version] = tag
        return tag

    def _key_for(self, match: re.Match[str]) -> str | None:
        version = int(match.group(1))
        if not hmac.compare_digest(match.group(2), self._tag(version)):
            return None  # not ours: left as it is (a client's own text)
        key = self._revealed.get(version)
        if key is None:
            key = hmac.new(self._secret, f"mask-key:{version}".encode(), hashlib.sha256).hexdigest()
            with self._lock:  # only genuine sentinels get here: the versions the policies used
                self._revealed[version] = key
        return key

    def derived_key(self, version: int) -> str:
        """The key of `version` itself: for tests that check a masked value against its definition."""
        match = _SENTINEL.fullmatch(self.sentinel(version))
        assert match is not None
        key = self._key_for(match)
        assert key is not None
        return key


class MaskKeyError(SecretError):
    """The configured mask key cannot be read: the gateway does not start (never runs unkeyed)."""


def load_mask_key(*, key_env: str | None, key_file: Path, environ: Mapping[str, str] | None = None) -> MaskKey:
    """The key from `key_env` when set, else from `key_file`, which is created with a new random key (mode
    0600) when it does not exist, so a single gateway keeps its masked values stable across restarts.
    Replicas must share one key: give them the same file or variable (gateway.secret_file)."""
    try:
        secret, source = read_secret(env=key_env, file=key_file, setting="masking", what="the mask key",
                                     environ=environ)
    except SecretError as error:
        raise MaskKeyError(str(error)) from error
    return MaskKey(secret, source=source)
