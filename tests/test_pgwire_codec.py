"""The PostgreSQL wire codec and the frontend's bounds under any input: decoders raise only FrameError, values
round-trip through the binary formats, and a live gateway answers any sequence of well- or ill-formed frames
with valid messages (a clear ErrorResponse where it must), never a crash, within its message size, startup
and idle bounds; a fresh connection works after each."""

from __future__ import annotations

import datetime as dt
import decimal
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.frontends import pg_messages as pm
from gateway.frontends import pg_types as pt
from tests.conftest import demo_config
from tests.pgwire_support import PgGateway

MAX_MESSAGE = 4096
MAX_CONNECTIONS = 4
MAX_PREPARED = 5
DECODERS = (pm.startup_parameters, pm.cancel_request, pm.decode_query, pm.decode_parse, pm.decode_bind,
            pm.decode_describe, pm.decode_close, pm.decode_execute, pm.decode_password, pm.decode_sasl_initial)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decoders_raise_only_frame_errors(data: bytes) -> None:
    for decode in DECODERS:
        try:
            decode(data)
        except pm.FrameError as error:
            assert error.message and error.sqlstate


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20).filter(lambda s: "\x00" not in s), st.text(max_size=20).filter(lambda s: "\x00" not in s),
       st.lists(st.one_of(st.none(), st.binary(max_size=30)), max_size=8), st.lists(st.sampled_from([0, 1]),
                                                                                      max_size=8))
def test_bind_round_trips(portal: str, statement: str, values: list[bytes | None], results: list[int]) -> None:
    formats = [1] if values else []
    body = pm.cstr(portal) + pm.cstr(statement) + struct.pack("!h", len(formats)) + b"".join(
        struct.pack("!h", f) for f in formats) + struct.pack("!h", len(values)) + b"".join(
        struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v for v in values) + struct.pack(
        "!h", len(results)) + b"".join(struct.pack("!h", f) for f in results)
    bind = pm.decode_bind(body)
    assert (bind.portal, bind.statement, list(bind.parameters), list(bind.result_formats)) == (
        portal, statement, values, results)


VALUES = st.one_of(
    st.tuples(st.just(pt.INT2), st.integers(-2**15, 2**15 - 1)),
    st.tuples(st.just(pt.INT4), st.integers(-2**31, 2**31 - 1)),
    st.tuples(st.just(pt.INT8), st.integers(-2**63, 2**63 - 1)),
    st.tuples(st.just(pt.FLOAT8), st.floats(allow_nan=False)),
    st.tuples(st.just(pt.BOOL), st.booleans()),
    st.tuples(st.just(pt.NUMERIC), st.decimals(allow_nan=False, allow_infinity=False, min_value=-10**20,
                                               max_value=10**20)),
    st.tuples(st.just(pt.DATE), st.dates()),
    st.tuples(st.just(pt.TIMESTAMP), st.datetimes(min_value=dt.datetime(1, 1, 2))),
    st.tuples(st.just(pt.UUID), st.uuids()),
    st.tuples(st.just(pt.BYTEA), st.binary(max_size=40)),
    st.tuples(st.just(pt.TEXT), st.text(max_size=40)),
)


@settings(max_examples=500, deadline=None)
@given(VALUES)
def test_binary_values_round_trip(typed: tuple[int, object]) -> None:
    oid, value = typed
    encoded = pt.encode(value, oid, True)
    assert encoded is not None
    decoded = pt._decode_binary(encoded, oid)
    if isinstance(value, decimal.Decimal):
        assert decimal.Decimal(decoded) == value  # type: ignore[arg-type]
    else:
        assert decoded == value


@pytest.fixture(scope="module")
def bounded(demo_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgGateway]:
    server = {"pgwire_max_message_bytes": MAX_MESSAGE, "pgwire_startup_timeout_seconds": 1,
              "pgwire_idle_timeout_seconds": 2, "pgwire_max_connections": MAX_CONNECTIONS,
              "pgwire_max_prepared": MAX_PREPARED}
    gateway = PgGateway(tmp_path_factory.mktemp("pgwire-codec"), demo_config(demo_database, server=server))
    yield gateway
    gateway.stop()


def startup(user: str = "alice") -> bytes:
    body = b"user\x00" + user.encode() + b"\x00database\x00demo\x00options\x00-c search_path=tpch\x00\x00"
    return struct.pack("!ii", len(body) + 8, pm.PROTOCOL_3) + body


def frame(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def messages(data: bytes) -> list[tuple[bytes, bytes]]:
    """Backend messages in `data`; asserts each is well framed."""
    found, at = [], 0
    while at < len(data):
        assert at + 5 <= len(data), data[at:]
        kind, length = data[at:at + 1], struct.unpack_from("!i", data, at + 1)[0]
        assert length >= 4 and at + 1 + length <= len(data)
        found.append((kind, data[at + 5:at + 1 + length]))
        at += 1 + length
    return found


def error_fields(body: bytes) -> dict[str, str]:
    return {part[:1]: part[1:] for part in body.decode().split("\x00") if part}


KINDS = st.sampled_from([b"Q", b"P", b"B", b"D", b"E", b"C", b"S", b"H", b"F", b"d", b"c", b"f", b"p", b"z",
                         b"\x00", b"X"])
FRAMES = st.one_of(
    st.tuples(KINDS, st.binary(max_size=64)).map(lambda kb: frame(*kb)),
    st.sampled_from([frame(b"Q", b"SELECT 1\x00"), frame(b"S", b""), frame(b"P", b"\x00SELECT $1\x00\x00\x00"),
                     frame(b"B", b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01x\x00\x00"),
                     frame(b"E", b"\x00\x00\x00\x00\x00"),
                     frame(b"D", b"P\x00"), frame(b"C", b"S\x00")]),
    st.integers(-5, 3).map(lambda n: b"Q" + struct.pack("!i", n)),  # impossible lengths
    st.just(b"Q" + struct.pack("!i", MAX_MESSAGE + 100) + b"x" * 16),  # beyond the bound
    st.binary(min_size=1, max_size=12),  # bytes that are not a frame at all
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(FRAMES, max_size=8))
def test_any_frames_get_valid_answers_and_never_a_crash(bounded: PgGateway, frames: list[bytes]) -> None:
    with socket.create_connection((bounded.host, bounded.pg_port), timeout=10) as sock:
        sock.sendall(startup())
        sock.sendall(b"".join(frames))
        sock.shutdown(socket.SHUT_WR)  # no more input: the server must finish with what it has
        answer = read_all(sock)
    parsed = messages(answer)
    assert parsed[0] == (b"R", struct.pack("!i", 0))  # AuthenticationOk
    for kind, body in parsed:
        assert kind in b"RSKZTDCEINnst123v"
        if kind == b"E":
            fields = error_fields(body)
            assert fields["S"] in ("ERROR", "FATAL") and len(fields["C"]) == 5 and fields["M"]
            assert "Traceback" not in fields["M"] and "internal error" not in fields["M"]
    with psycopg.connect(bounded.dsn(options="-c search_path=tpch -c application_name=fuzz")) as connection:
        assert connection.execute("SELECT count(*) FROM region").fetchone() == (5,)


def test_oversized_message_is_refused_with_54000(bounded: PgGateway) -> None:
    with socket.create_connection((bounded.host, bounded.pg_port), timeout=10) as sock:
        sock.sendall(startup())
        sock.sendall(frame(b"Q", b"SELECT '" + b"x" * (MAX_MESSAGE * 2) + b"'\x00"))
        parsed = messages(read_all(sock))
    errors = [error_fields(body) for kind, body in parsed if kind == b"E"]
    assert errors and errors[-1]["C"] == "54000" and errors[-1]["S"] == "FATAL"
    assert "server.pgwire_max_message_bytes" in errors[-1]["M"]


def test_silent_client_is_dropped_after_the_startup_timeout(bounded: PgGateway) -> None:
    began = time.monotonic()
    with socket.create_connection((bounded.host, bounded.pg_port), timeout=10) as sock:
        sock.sendall(struct.pack("!i", 40))  # a startup packet that never completes
        answer = read_all(sock)
    assert 0.5 < time.monotonic() - began < 8
    errors = [error_fields(body) for kind, body in messages(answer) if kind == b"E"]
    assert errors and errors[0]["C"] == "08006"


def test_idle_session_is_closed_after_the_idle_timeout(bounded: PgGateway) -> None:
    with socket.create_connection((bounded.host, bounded.pg_port), timeout=10) as sock:
        sock.sendall(startup())
        began = time.monotonic()
        answer = read_all(sock)
    assert 1.5 < time.monotonic() - began < 8
    errors = [error_fields(body) for kind, body in messages(answer) if kind == b"E"]
    assert errors and errors[0]["C"] == "57P05"


def test_uuid_and_interval_text_forms() -> None:
    assert pt.text_value(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert pt.text_value(dt.timedelta(days=2, seconds=3661)) == "2 days 01:01:01"
    assert pt.text_value([1, None, "a b"]) == '{1,NULL,"a b"}'


def test_connections_beyond_the_bound_are_refused_53300_even_while_others_are_starting(bounded: PgGateway) -> None:
    held = [socket.create_connection((bounded.host, bounded.pg_port), timeout=10) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)  # accepted: each waits in startup, none authenticated
        with socket.create_connection((bounded.host, bounded.pg_port), timeout=10) as extra:
            errors = [error_fields(body) for kind, body in messages(read_all(extra)) if kind == b"E"]
        assert errors and errors[0]["C"] == "53300" and "pgwire_max_connections" in errors[0]["M"]
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    with psycopg.connect(bounded.dsn()) as connection:  # the slots are free again
        assert connection.execute("SELECT 1").fetchone() == (1,)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.from_regex(r"s[a-z0-9]{1,8}", fullmatch=True), min_size=1, max_size=2 * MAX_PREPARED,
                      unique=True))
def test_named_statements_are_bounded_per_connection(bounded: PgGateway, names: list[str]) -> None:
    """Any number of distinct names: each fits until the bound, then Parse gets 53400 and the connection
    stays usable; a name already kept gets PostgreSQL's own answer (42P05), not the bound's."""
    with socket.create_connection((bounded.host, bounded.pg_port), timeout=10) as sock:
        sock.sendall(startup())
        assert b"Z" in read_until_ready(sock)
        refused = 0
        for name in names:
            sock.sendall(frame(b"P", name.encode() + b"\x00SELECT 1\x00\x00\x00") + frame(b"S", b""))
            answer = read_until_ready(sock)
            refused += b"53400" in answer
        assert refused == max(0, len(names) - MAX_PREPARED)
        sock.sendall(frame(b"P", names[0].encode() + b"\x00SELECT 2\x00\x00\x00") + frame(b"S", b""))
        again = read_until_ready(sock)
        assert b"42P05" in again and b"53400" not in again


def read_until_ready(sock: socket.socket) -> bytes:
    """Messages up to and including ReadyForQuery."""
    sock.settimeout(10)
    data = b""
    while True:
        chunk = sock.recv(65536)
        assert chunk, "the gateway closed the connection"
        data += chunk
        at = data.rfind(b"Z\x00\x00\x00\x05")
        if at != -1 and len(data) >= at + 6:
            return data
