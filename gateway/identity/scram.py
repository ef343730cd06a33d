"""SCRAM-SHA-256 (RFC 5802 / 7677) as PostgreSQL speaks it: verifiers kept next to API key hashes, and the
server side of one exchange.

The gateway never sees a SCRAM client's password, so it cannot check it against the key's scrypt hash. When a
key is issued, `make_verifier` derives PostgreSQL's stored form from the key text (the password) —
`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` — and the record keeps it beside the hash. Neither
half reveals the key: StoredKey is H(HMAC(SaltedPassword, "Client Key")), and the key itself holds 256 random
bits, so the iteration count guards no weak password and is PostgreSQL's default.

An exchange for a name with no verifier runs to the end against a per-process decoy (same messages, same work)
and fails there, so the exchange does not tell which service-account names exist.

Channel binding is not offered (`n,,` / `y,,` only): PostgreSQL's SCRAM-SHA-256-PLUS over TLS is a later step.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

ITERATIONS = 4096
MECHANISM = "SCRAM-SHA-256"
_DECOY_KEY = secrets.token_bytes(32)
MAX_MESSAGE = 4096  # characters of a client SCRAM message; real ones are ~100


class ScramError(Exception):
    """The client's SCRAM message is malformed or its proof is wrong (the text is safe to show)."""


@dataclass(frozen=True)
class ScramVerifier:
    salt: bytes
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)

    def text(self) -> str:
        b64 = _b64
        return f"{MECHANISM}${self.iterations}:{b64(self.salt)}${b64(self.stored_key)}:{b64(self.server_key)}"

    @classmethod
    def parse(cls, text: str) -> ScramVerifier | None:
        try:
            mechanism, counts, keys = text.split("$")
            iterations, salt = counts.split(":")
            stored, server = keys.split(":")
            if mechanism != MECHANISM:
                return None
            return cls(base64.b64decode(salt, validate=True), int(iterations),
                       base64.b64decode(stored, validate=True), base64.b64decode(server, validate=True))
        except (ValueError, TypeError):
            return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def make_verifier(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> ScramVerifier:
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return ScramVerifier(salt, iterations, hashlib.sha256(client_key).digest(), _hmac(salted, b"Server Key"))


def decoy_verifier(name: str) -> ScramVerifier:
    """A stable verifier no password matches, for names without one (same salt on every attempt)."""
    salt = _hmac(_DECOY_KEY, name.encode("utf-8", "surrogatepass"))[:16]
    return ScramVerifier(salt, ITERATIONS, secrets.token_bytes(32), secrets.token_bytes(32))


def _attributes(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or len(name) != 1:
            raise ScramError("malformed SCRAM message")
        values.setdefault(name, value)
    return values


class ScramExchange:
    """The server side of one SCRAM-SHA-256 authentication: `first` answers the client-first message,
    `verify` checks the client-final message (raises ScramError), `server_final` is the reply on success."""

    def __init__(self, verifier: ScramVerifier | None, name: str, *, key_id: str | None = None) -> None:
        self.key_id = key_id  # the API key whose verifier this is; None for a decoy
        self.genuine = verifier is not None
        self.verifier = verifier if verifier is not None else decoy_verifier(name)
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._signature = b""

    def first(self, client_first: str) -> str:
        if len(client_first) > MAX_MESSAGE:
            raise ScramError("SCRAM message too long")
        header, sep, bare = client_first.partition(",")
        authzid, sep2, bare = bare.partition(",")
        if not sep or not sep2 or header not in ("n", "y") or authzid:
            raise ScramError("unsupported SCRAM options (channel binding and authzid are not offered)")
        attributes = _attributes(bare)
        client_nonce = attributes.get("r", "")
        if not client_nonce or "m" in attributes:
            raise ScramError("malformed SCRAM client-first message")
        self._client_first_bare = bare
        self._nonce = client_nonce + base64.b64encode(secrets.token_bytes(18)).decode("ascii")
        verifier = self.verifier
        self._server_first = f"r={self._nonce},s={_b64(verifier.salt)},i={verifier.iterations}"
        return self._server_first

    def _client_key(self, client_final: str) -> tuple[bytes, bytes]:
        """(the ClientKey the client's proof implies, the auth message); raises ScramError if malformed."""
        if not self._server_first or len(client_final) > MAX_MESSAGE:
            raise ScramError("unexpected SCRAM message")
        without_proof, sep, proof_part = client_final.rpartition(",p=")
        if not sep:
            raise ScramError("malformed SCRAM client-final message")
        attributes = _attributes(without_proof)
        if attributes.get("c") not in ("biws", "eSws"):  # base64 of "n,," and "y,,"
            raise ScramError("unsupported SCRAM channel binding")
        if not hmac.compare_digest(attributes.get("r", "").encode(), self._nonce.encode()):
            raise ScramError("SCRAM nonce mismatch")
        try:
            proof = base64.b64decode(proof_part, validate=True)
        except ValueError:
            raise ScramError("malformed SCRAM proof") from None
        message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        signature = _hmac(self.verifier.stored_key, message)
        if len(proof) != len(signature):
            raise ScramError("malformed SCRAM proof")
        return bytes(a ^ b for a, b in zip(proof, signature, strict=True)), message

    def claimed_key(self, client_final: str) -> str:
        """A stable stand-in for the password, unverified: the ClientKey the proof implies — the same on every
        exchange with the right password, unlike the proof (a wrong password gives a different one each time).
        Lets the failure limiter recognise a credential that verified recently; "" for a malformed message."""
        try:
            return self._client_key(client_final)[0].hex()
        except ScramError:
            return ""

    def verify(self, client_final: str) -> None:
        client_key, message = self._client_key(client_final)
        verifier = self.verifier
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), verifier.stored_key) or not self.genuine:
            raise ScramError("password authentication failed")
        self._signature = _hmac(verifier.server_key, message)

    def server_final(self) -> str:
        return f"v={_b64(self._signature)}"
