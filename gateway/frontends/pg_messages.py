"""PostgreSQL frontend/backend protocol 3.0 messages: bounded reading of client frames, typed decoding of the
messages the gateway understands, and encoding of every message it sends.

Every malformed frame raises `FrameError` (a short text safe to show the client); nothing here does I/O beyond
reading one frame, and nothing knows about queries or policy.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PROTOCOL_3 = 196608  # 3.0
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
MAX_STARTUP_BYTES = 10_000  # PostgreSQL's own bound on a startup packet

_INT16 = struct.Struct("!h")
_INT32 = struct.Struct("!i")
_HEADER = struct.Struct("!ci")


class FrameError(Exception):
    """The client sent bytes that are not a valid message (the text is safe to show it)."""

    def __init__(self, message: str, *, sqlstate: str = "08P01") -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate


async def _read_exactly(reader: asyncio.StreamReader, size: int) -> bytes:
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise ConnectionResetError("client closed the connection") from None


async def read_startup(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(request code, the rest) of a startup-phase packet: StartupMessage, SSLRequest, GSSENCRequest or
    CancelRequest, which carry a length but no type byte."""
    length = _INT32.unpack(await _read_exactly(reader, 4))[0]
    if length < 8 or length > MAX_STARTUP_BYTES:
        raise FrameError(f"invalid startup packet length {length}")
    body = await _read_exactly(reader, length - 4)
    return _INT32.unpack_from(body)[0], body[4:]


async def read_message(reader: asyncio.StreamReader, max_bytes: int) -> tuple[bytes, bytes]:
    """(type byte, body) of one regular client message, never longer than `max_bytes`."""
    kind, length = _HEADER.unpack(await _read_exactly(reader, 5))
    if length < 4:
        raise FrameError(f"invalid message length {length}")
    if length - 4 > max_bytes:
        raise FrameError(f"message of {length - 4} bytes exceeds the limit of {max_bytes} bytes "
                         f"(server.pgwire_max_message_bytes)", sqlstate="54000")
    return kind, await _read_exactly(reader, length - 4)


class Body:
    """A cursor over one message body; reading past its end or leaving bytes unread is a FrameError."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.what = what
        self.at = 0

    def _take(self, size: int) -> bytes:
        if size < 0 or self.at + size > len(self.data):
            raise FrameError(f"malformed {self.what} message")
        chunk = self.data[self.at:self.at + size]
        self.at += size
        return chunk

    def int16(self) -> int:
        return int(_INT16.unpack(self._take(2))[0])

    def uint16(self) -> int:
        return int.from_bytes(self._take(2), "big")

    def int32(self) -> int:
        return int(_INT32.unpack(self._take(4))[0])

    def cstring(self) -> str:
        end = self.data.find(b"\x00", self.at)
        if end < 0:
            raise FrameError(f"malformed {self.what} message (unterminated string)")
        raw = self.data[self.at:end]
        self.at = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError(f"invalid UTF-8 in {self.what} message", sqlstate="22021") from None

    def raw(self, size: int) -> bytes:
        return self._take(size)

    def rest(self) -> bytes:
        return self._take(len(self.data) - self.at)

    def end(self) -> None:
        if self.at != len(self.data):
            raise FrameError(f"malformed {self.what} message (trailing bytes)")


def startup_parameters(data: bytes) -> dict[str, str]:
    body = Body(data, "startup")
    parameters: dict[str, str] = {}
    while True:
        name = body.cstring()
        if not name:
            break
        parameters[name] = body.cstring()
    body.end()
    return parameters


def cancel_request(data: bytes) -> tuple[int, int]:
    body = Body(data, "cancel")
    process_id, secret = body.int32(), body.int32()
    body.end()
    return process_id, secret


# -- client messages --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parse:
    name: str
    query: str
    parameter_types: tuple[int, ...]


@dataclass(frozen=True)
class Bind:
    portal: str
    statement: str
    parameter_formats: tuple[int, ...]
    parameters: tuple[bytes | None, ...]
    result_formats: tuple[int, ...]

    def parameter_format(self, index: int) -> int:
        formats = self.parameter_formats
        return formats[0] if len(formats) == 1 else formats[index] if formats else 0


@dataclass(frozen=True)
class Describe:
    kind: str  # "S" statement, "P" portal
    name: str


@dataclass(frozen=True)
class Execute:
    portal: str
    max_rows: int


@dataclass(frozen=True)
class Close:
    kind: str
    name: str


def _formats(body: Body) -> tuple[int, ...]:
    formats = tuple(body.int16() for _ in range(body.uint16()))
    if any(f not in (0, 1) for f in formats):
        raise FrameError("format codes must be 0 (text) or 1 (binary)")
    return formats


def decode_query(data: bytes) -> str:
    body = Body(data, "Query")
    text = body.cstring()
    body.end()
    return text


def decode_parse(data: bytes) -> Parse:
    body = Body(data, "Parse")
    name, query = body.cstring(), body.cstring()
    types = tuple(body.int32() for _ in range(body.uint16()))
    body.end()
    return Parse(name, query, types)


def decode_bind(data: bytes) -> Bind:
    body = Body(data, "Bind")
    portal, statement = body.cstring(), body.cstring()
    formats = _formats(body)
    values: list[bytes | None] = []
    for _ in range(body.uint16()):
        size = body.int32()
        values.append(None if size == -1 else body.raw(size))
    if len(formats) not in (0, 1, len(values)):
        raise FrameError(f"Bind has {len(formats)} parameter formats for {len(values)} parameters")
    bind = Bind(portal, statement, formats, tuple(values), _formats(body))
    body.end()
    return bind


def _kind_and_name(data: bytes, what: str) -> tuple[str, str]:
    body = Body(data, what)
    kind = body.raw(1).decode("latin-1")
    if kind not in ("S", "P"):
        raise FrameError(f"invalid {what} target {kind!r} (expected 'S' or 'P')")
    name = body.cstring()
    body.end()
    return kind, name


def decode_describe(data: bytes) -> Describe:
    return Describe(*_kind_and_name(data, "Describe"))


def decode_close(data: bytes) -> Close:
    return Close(*_kind_and_name(data, "Close"))


def decode_execute(data: bytes) -> Execute:
    body = Body(data, "Execute")
    portal, max_rows = body.cstring(), body.int32()
    body.end()
    return Execute(portal, max(0, max_rows))


def decode_password(data: bytes) -> str:
    body = Body(data, "PasswordMessage")
    text = body.cstring()
    body.end()
    return text


def decode_sasl_initial(data: bytes) -> tuple[str, str]:
    body = Body(data, "SASLInitialResponse")
    mechanism = body.cstring()
    size = body.int32()
    response = b"" if size == -1 else body.raw(size)
    body.end()
    return mechanism, response.decode("utf-8", "replace")


# -- server messages --------------------------------------------------------------------------------------------


def message(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + _INT32.pack(len(payload) + 4) + payload


def cstr(text: str) -> bytes:
    return text.replace("\x00", "").encode("utf-8") + b"\x00"


def authentication(code: int, extra: bytes = b"") -> bytes:
    return message(b"R", _INT32.pack(code) + extra)


AUTH_OK, AUTH_CLEARTEXT, AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL = 0, 3, 10, 11, 12


def parameter_status(name: str, value: str) -> bytes:
    return message(b"S", cstr(name) + cstr(value))


def backend_key_data(process_id: int, secret: int) -> bytes:
    return message(b"K", _INT32.pack(process_id) + _INT32.pack(secret))


def ready_for_query(status: str) -> bytes:
    return message(b"Z", status.encode("ascii"))


@dataclass(frozen=True)
class Field:
    name: str
    type_oid: int
    type_size: int
    type_modifier: int = -1
    format: int = 0


def row_description(fields: Sequence[Field]) -> bytes:
    parts = [struct.pack("!h", len(fields))]
    for f in fields:
        parts.append(cstr(f.name) + struct.pack("!ihihih", 0, 0, f.type_oid, f.type_size, f.type_modifier, f.format))
    return message(b"T", b"".join(parts))


def data_row(values: Sequence[bytes | None]) -> bytes:
    parts = [struct.pack("!h", len(values))]
    for value in values:
        parts.append(b"\xff\xff\xff\xff" if value is None else _INT32.pack(len(value)) + value)
    return message(b"D", b"".join(parts))


def parameter_description(oids: Iterable[int]) -> bytes:
    types = list(oids)
    return message(b"t", struct.pack("!h", len(types)) + b"".join(_INT32.pack(o) for o in types))


def command_complete(tag: str) -> bytes:
    return message(b"C", cstr(tag))


def error_response(sqlstate: str, text: str, *, severity: str = "ERROR", detail: str | None = None,
                   hint: str | None = None, position: int | None = None) -> bytes:
    fields = [(b"S", severity), (b"V", severity), (b"C", sqlstate), (b"M", text)]
    if detail:
        fields.append((b"D", detail))
    if hint:
        fields.append((b"H", hint))
    if position is not None:
        fields.append((b"P", str(position)))
    return message(b"E", b"".join(code + cstr(value) for code, value in fields) + b"\x00")


def notice_response(text: str) -> bytes:
    fields = [(b"S", "NOTICE"), (b"V", "NOTICE"), (b"C", "00000"), (b"M", text)]
    return message(b"N", b"".join(code + cstr(value) for code, value in fields) + b"\x00")


PARSE_COMPLETE = message(b"1")
BIND_COMPLETE = message(b"2")
CLOSE_COMPLETE = message(b"3")
NO_DATA = message(b"n")
EMPTY_QUERY = message(b"I")
PORTAL_SUSPENDED = message(b"s")
