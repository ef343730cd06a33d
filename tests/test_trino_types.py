"""Trino's type system through the real trino client, against each backend: every case is a literal or cast as a
client's own type tests write it, with the type and value Trino answers (values from Trino's documentation,
"Data types", where it gives them), read with legacy_primitive_types on (the JSON value as sent) and off (the
client's Python value). A case the backend cannot answer exactly must fail with NOT_SUPPORTED naming its type
(docs/types.md has the table)."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import trino
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import types as t
from gateway.errors import UserError
from gateway.frontends.trino_values import encoder_for, row_encoder
from gateway.sql.trino_output_types import OutputType, declared
from gateway.testing import GatewayProcess
from tests.conftest import POLICIES
from tests.fakesnow_warehouse import FAKESNOW_PYTHON, FakeSnow, snowflake_backend
from tests.pg_warehouse import PgWarehouse, available

ANY = object()  # the Python value is not compared (checked through the legacy value)


@dataclass(frozen=True)
class Case:
    sql: str  # one expression
    type: str  # as the client's cursor.description shows it
    legacy: Any  # the JSON value Trino sends
    value: Any = ANY  # what the client maps it to with legacy_primitive_types off
    backends: dict[str, tuple[str, Any] | str] = field(default_factory=dict)  # backend -> (type, legacy) | refusal
    refused: str | None = None  # the type a refusal names, when not the head of `type`


NS = "NOT_SUPPORTED"
CASES = [
    # boolean and integers, at their edges
    Case("true", "boolean", True, True),
    Case("CAST(NULL AS boolean)", "boolean", None, None),
    Case("TINYINT '127'", "tinyint", 127, 127),
    Case("TINYINT '-128'", "tinyint", -128, -128),
    Case("TINYINT '1' + TINYINT '2'", "tinyint", 3, 3),
    Case("SMALLINT '1' * 2", "integer", 2, 2),
    Case("SMALLINT '-32768'", "smallint", -32768, -32768),
    Case("2147483647", "integer", 2147483647, 2147483647),
    Case("9223372036854775807", "bigint", 9223372036854775807, 9223372036854775807),
    Case("-9223372036854775807 - 1", "bigint", -9223372036854775808, -9223372036854775808),
    # floating point: real printed as Java prints a float, non-finite values as strings
    Case("REAL '10.3'", "real", 10.3, 10.3),
    Case("REAL '1.1'", "real", 1.1, 1.1),
    Case("REAL '-0.1'", "real", -0.1, -0.1),
    Case("REAL '3.4028235E38'", "real", 3.4028235e38, 3.4028235e38),
    Case("REAL '1.4E-45'", "real", 1.4e-45, 1.4e-45),
    Case("CAST(nan() AS real)", "real", "NaN", ANY),
    Case("DOUBLE '10.3e0'", "double", 10.3, 10.3),
    Case("DOUBLE '1.7976931348623157E308'", "double", 1.7976931348623157e308, 1.7976931348623157e308),
    Case("DOUBLE '4.9E-324'", "double", 5e-324, 5e-324),
    Case("nan()", "double", "NaN", ANY),
    Case("infinity()", "double", "Infinity", float("inf")),
    Case("-infinity()", "double", "-Infinity", float("-inf")),
    # decimals: literals typed by their digits, division exact in decimal
    Case("DECIMAL '123456.789'", "decimal(9,3)", "123456.789", Decimal("123456.789")),
    Case("CAST('1.5' AS decimal(10,2))", "decimal(10,2)", "1.50", Decimal("1.50")),
    Case("1.5 + 2.25", "decimal(4,2)", "3.75", Decimal("3.75")),
    Case("1.5 * 2.25", "decimal(5,3)", "3.375", Decimal("3.375")),
    Case("CAST('-0.01' AS decimal(38,2))", "decimal(38,2)", "-0.01", Decimal("-0.01")),
    Case("DECIMAL '1.5' / DECIMAL '2.25'", "decimal(5,2)", "0.67", Decimal("0.67")),
    Case("10.00 / 3", "decimal(4,2)", "3.33", Decimal("3.33")),
    Case("-1.5 / 2.25", "decimal(5,2)", "-0.67", Decimal("-0.67")),
    # text
    Case("''", "varchar(0)", "", ""),
    Case("'ünïcødé ✓ 𝄞'", "varchar(11)", "ünïcødé ✓ 𝄞", "ünïcødé ✓ 𝄞"),  # code points, not bytes
    Case("CAST('abcdef' AS varchar(3))", "varchar(3)", "abc", "abc"),
    Case("ARRAY['a', 'bcd']", "array(varchar(3))", ["a", "bcd"], ["a", "bcd"]),
    Case("CAST(NULL AS varchar)", "varchar", None, None),
    Case("CAST('a' AS char(3))", "char(3)", "a  ", "a  "),
    Case("CAST('abcd' AS char(3))", "char(3)", "abc", "abc"),
    Case("CAST('a' AS char)", "char(1)", "a", "a"),
    Case("CAST('b' AS char(3)) = CAST('b  ' AS char(3))", "boolean", True, True),
    # binary, uuid, json
    Case("X'65683F'", "varbinary", "ZWg/", b"eh?"),
    Case("X''", "varbinary", "", b""),
    Case("UUID '12151fd2-7586-11e9-8f9e-2a86e4085a59'", "uuid", "12151fd2-7586-11e9-8f9e-2a86e4085a59",
         UUID("12151fd2-7586-11e9-8f9e-2a86e4085a59")),
    Case("JSON '[1, 23, 456]'", "json", "[1,23,456]", "[1,23,456]"),
    Case("JSON '{\"a\": null, \"b\": [\"ü\"]}'", "json", '{"a":null,"b":["ü"]}', '{"a":null,"b":["ü"]}'),
    # dates and times: four-digit years at both ends
    Case("DATE '2001-08-22'", "date", "2001-08-22", date(2001, 8, 22)),
    Case("DATE '0001-01-01'", "date", "0001-01-01", date(1, 1, 1)),
    Case("DATE '0999-12-31'", "date", "0999-12-31", date(999, 12, 31)),
    Case("DATE '9999-12-31'", "date", "9999-12-31", date(9999, 12, 31)),
    Case("TIMESTAMP '2001-08-22 03:04:05.321'", "timestamp(3)", "2001-08-22 03:04:05.321",
         datetime(2001, 8, 22, 3, 4, 5, 321000)),
    Case("TIMESTAMP '2001-08-22 03:04:05.32'", "timestamp(2)", "2001-08-22 03:04:05.32",
         datetime(2001, 8, 22, 3, 4, 5, 320000)),
    Case("TIMESTAMP '0001-01-01 00:00:00'", "timestamp(0)", "0001-01-01 00:00:00", datetime(1, 1, 1)),
    Case("CAST('2001-08-22 03:04:05.123456' AS timestamp)", "timestamp(3)", "2001-08-22 03:04:05.123",
         datetime(2001, 8, 22, 3, 4, 5, 123000)),
    Case("CAST(TIMESTAMP '2001-08-22 03:04:05.99951' AS timestamp(3))", "timestamp(3)",
         "2001-08-22 03:04:06.000", datetime(2001, 8, 22, 3, 4, 6)),  # rounded half up, as Trino casts
    Case("TIMESTAMP '9999-12-31 23:59:59.999999'", "timestamp(6)", "9999-12-31 23:59:59.999999",
         datetime(9999, 12, 31, 23, 59, 59, 999999)),
    Case("TIMESTAMP '2001-08-22 03:04:05.123456000'", "timestamp(9)", "2001-08-22 03:04:05.123456000",
         datetime(2001, 8, 22, 3, 4, 5, 123456), backends={"postgres": NS}),
    Case("TIMESTAMP '2001-08-22 03:04:05.123456789'", "timestamp(9)", "2001-08-22 03:04:05.123456789",
         backends={"duckdb": NS, "postgres": NS}),
    Case("TIMESTAMP '2001-08-22 03:04:05.123456789012'", "timestamp(12)", "2001-08-22 03:04:05.123456789012",
         backends={"duckdb": NS, "postgres": NS}),
    Case("CAST(TIMESTAMP '2001-08-22 03:04:05.321' AS timestamp(0))", "timestamp(0)", "2001-08-22 03:04:05",
         datetime(2001, 8, 22, 3, 4, 5)),
    # with time zone: shown in the literal's zone (a zone id or an offset), as Trino does
    Case("TIMESTAMP '2001-08-22 03:04:05.321 America/Los_Angeles'", "timestamp(3) with time zone",
         "2001-08-22 03:04:05.321 America/Los_Angeles"),
    Case("TIMESTAMP '2001-08-22 03:04:05.321 Europe/Brussels'", "timestamp(3) with time zone",
         "2001-08-22 03:04:05.321 Europe/Brussels"),
    Case("TIMESTAMP '2001-08-22 03:04:05.321 +05:30'", "timestamp(3) with time zone",
         "2001-08-22 03:04:05.321 +05:30"),
    Case("TIMESTAMP '2001-08-22 03:04:05 UTC'", "timestamp(0) with time zone", "2001-08-22 03:04:05 UTC"),
    # the instant is exact: AT TIME ZONE shows it in another zone
    Case("TIMESTAMP '2001-08-22 03:04:05.321 America/Bahia_Banderas' AT TIME ZONE 'UTC'",
         "timestamp(3) with time zone", "2001-08-22 09:04:05.321 UTC"),  # MDT then: Central time since 2010
    Case("TIMESTAMP '2001-08-22 03:04:05.321 +05:30' AT TIME ZONE 'America/Los_Angeles'",
         "timestamp(3) with time zone", "2001-08-21 14:34:05.321 America/Los_Angeles"),  # PDT
    Case("with_timezone(TIMESTAMP '2001-08-22 03:04:05.321', 'Asia/Kolkata') AT TIME ZONE 'UTC'",
         "timestamp(3) with time zone", "2001-08-21 21:34:05.321 UTC"),
    # DST boundaries: 02:30 does not exist in Brussels on 2024-03-31; 02:30 on 2024-10-27 happens twice
    Case("TIMESTAMP '2024-03-31 01:59:59 Europe/Brussels' AT TIME ZONE 'UTC'", "timestamp(0) with time zone",
         "2024-03-31 00:59:59 UTC"),
    Case("TIMESTAMP '2024-03-31 03:00:00 Europe/Brussels' AT TIME ZONE 'UTC'", "timestamp(0) with time zone",
         "2024-03-31 01:00:00 UTC"),
    Case("TIMESTAMP '2024-10-27 03:00:00 Europe/Brussels' AT TIME ZONE 'UTC'", "timestamp(0) with time zone",
         "2024-10-27 02:00:00 UTC"),
    Case("TIME '01:02:03.456'", "time(3)", "01:02:03.456", time(1, 2, 3, 456000)),
    Case("TIME '01:02:03'", "time(0)", "01:02:03", time(1, 2, 3)),
    Case("TIME '23:59:59.999999'", "time(6)", "23:59:59.999999", time(23, 59, 59, 999999)),
    Case("CAST(TIME '23:59:59.9996' AS time(3))", "time(3)", "00:00:00.000", time(0, 0)),  # wraps, as Trino's
    Case("TIME '01:02:03.456 -08:00'", "time(3) with time zone", "01:02:03.456-08:00"),
    Case("TIME '01:02:03.456789123'", "time(9)", "01:02:03.456789123", backends={"duckdb": NS, "postgres": NS}),
    # intervals
    Case("INTERVAL '2' DAY", "interval day to second", "2 00:00:00.000", timedelta(days=2)),
    Case("INTERVAL '1 2:03:04' DAY TO SECOND", "interval day to second", "1 02:03:04.000",
         timedelta(days=1, hours=2, minutes=3, seconds=4)),
    Case("INTERVAL '1 2:03:04.5' DAY TO SECOND", "interval day to second", "1 02:03:04.500",
         timedelta(days=1, hours=2, minutes=3, seconds=4.5)),
    Case("INTERVAL '3' MONTH", "interval year to month", "0-3", backends={"duckdb": NS, "postgres": NS}),
    Case("INTERVAL '1-2' YEAR TO MONTH", "interval year to month", "1-2", backends={"duckdb": NS, "postgres": NS}),
    Case("DATE '2024-01-31' + INTERVAL '1' MONTH", "date", "2024-02-29", date(2024, 2, 29)),
    Case("DATE '2024-01-31' + INTERVAL '1-2' YEAR TO MONTH", "date", "2025-03-31", date(2025, 3, 31)),
    Case("INTERVAL '2' MONTH + DATE '2024-01-31'", "date", "2024-03-31", date(2024, 3, 31)),
    Case("DATE '2024-01-31' - INTERVAL '2' DAY", "date", "2024-01-29", date(2024, 1, 29)),
    Case("TIMESTAMP '2024-01-31 01:02:03.4' + INTERVAL '1' MONTH", "timestamp(1)", "2024-02-29 01:02:03.4",
         datetime(2024, 2, 29, 1, 2, 3, 400000)),
    Case("ARRAY[INTERVAL '1' YEAR]", "array(interval year to month)", ["1-0"],
         backends={"duckdb": NS, "postgres": NS}, refused="interval year to month"),
    # types no backend has
    Case("IPADDRESS '10.0.0.1'", "ipaddress", "10.0.0.1", backends={"duckdb": NS, "postgres": NS}),
    Case("CAST('10.0.0.1' AS ipaddress)", "ipaddress", "10.0.0.1", backends={"duckdb": NS, "postgres": NS}),
    # structural types, nested
    Case("ARRAY[1, 2, NULL]", "array(integer)", [1, 2, None], [1, 2, None]),
    Case("ARRAY[ARRAY[1, 2], ARRAY[3]]", "array(array(integer))", [[1, 2], [3]], [[1, 2], [3]],
         backends={"postgres": NS}),
    Case("CAST(ARRAY[1, 2] AS array(varchar))", "array(varchar)", ["1", "2"], ["1", "2"]),
    Case("ARRAY[REAL '1.1', nan()]", "array(real)", [1.1, "NaN"], ANY,
         backends={"duckdb": ("array(double)", [1.100000023841858, "NaN"]),
                   "postgres": ("array(double)", [1.100000023841858, "NaN"])}),
    Case("ARRAY[DATE '0001-01-01']", "array(date)", ["0001-01-01"], [date(1, 1, 1)]),
    Case("ARRAY[X'00ff']", "array(varbinary)", ["AP8="], [b"\x00\xff"]),
    Case("MAP(ARRAY['a', 'b'], ARRAY[1, 2])", "map(varchar(1), integer)", {"a": 1, "b": 2}, {"a": 1, "b": 2},
         backends={"postgres": NS}),
    Case("MAP(ARRAY[1], ARRAY[ARRAY[DECIMAL '1.5']])", "map(integer, array(decimal(2,1)))", {"1": ["1.5"]},
         {1: [Decimal("1.5")]}, backends={"postgres": NS}),
    Case("CAST(ROW(1, 'a') AS ROW(x bigint, y varchar))", 'row(x bigint, y varchar)', [1, "a"], ANY,
         backends={"duckdb": ('row("x" bigint, "y" varchar)', [1, "a"]), "postgres": NS}),
    Case("ROW(1, 2.0)", "row(integer, decimal(2,1))", [1, "2.0"], ANY, backends={"postgres": NS}),
    Case("ROW(ARRAY[ROW(X'00')])", "row(array(row(varbinary)))", [[["AA=="]]], ANY, backends={"postgres": NS}),
]


# Measured on Snowflake's fakesnow (docs/types.md): what the gateway refuses there, beyond the cases refused on
# every backend, and where its answer differs from Trino's.
SNOWFLAKE_REFUSED = {
    "UUID '12151fd2-7586-11e9-8f9e-2a86e4085a59'", "TIME '01:02:03.456 -08:00'",  # no uuid, no time with zone
    "TIMESTAMP '2001-08-22 03:04:05.123456000'",  # precision above 6
    "INTERVAL '2' DAY", "INTERVAL '1 2:03:04' DAY TO SECOND", "INTERVAL '1 2:03:04.5' DAY TO SECOND",
    "ARRAY['a', 'bcd']", "ARRAY[1, 2, NULL]", "ARRAY[ARRAY[1, 2], ARRAY[3]]", "CAST(ARRAY[1, 2] AS array(varchar))",
    "ARRAY[REAL '1.1', nan()]", "ARRAY[DATE '0001-01-01']", "ARRAY[X'00ff']",  # ARRAY, OBJECT are untyped JSON
    "MAP(ARRAY['a', 'b'], ARRAY[1, 2])", "MAP(ARRAY[1], ARRAY[ARRAY[DECIMAL '1.5']])",
    "CAST(ROW(1, 'a') AS ROW(x bigint, y varchar))", "ROW(1, 2.0)", "ROW(ARRAY[ROW(X'00')])",
}
SNOWFLAKE_EMULATED: dict[str, tuple[str, Any]] = {  # decimal division: the engine's double
    "DECIMAL '1.5' / DECIMAL '2.25'": ("double", 0.6666666666666666),
    "10.00 / 3": ("double", 3.3333333333333335), "-1.5 / 2.25": ("double", -0.6666666666666666),
}


def _expected(case: Case, backend: str) -> tuple[str, Any] | str:
    if backend == "snowflake" and case.sql in SNOWFLAKE_REFUSED:
        return NS
    if backend == "snowflake" and case.sql in SNOWFLAKE_EMULATED:
        return SNOWFLAKE_EMULATED[case.sql]
    refused_elsewhere = {v for k, v in case.backends.items() if isinstance(v, str)}
    if backend == "snowflake" and refused_elsewhere == {NS} and set(case.backends) == {"duckdb", "postgres"}:
        return NS
    return case.backends.get(backend, (case.type, case.legacy))


@pytest.fixture(scope="module")
def duckdb_gateway(demo_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = {"backends": {"demo": {"type": "duckdb", "path": str(demo_database), "schema": "tpch"}},
              "policies": {"dir": str(POLICIES)}}
    process = GatewayProcess(tmp_path_factory.mktemp("types-duckdb"), config)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def postgres_gateway(demo_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    if not available():
        pytest.skip("needs PostgreSQL on 127.0.0.1:5432")
    warehouse = PgWarehouse(demo_database)
    try:
        config = {"backends": {"demo": {"type": "postgres", "dsn": warehouse.dsn}},
                  "policies": {"dir": str(POLICIES)}}
        process = GatewayProcess(tmp_path_factory.mktemp("types-pg"), config)
        yield process
        process.stop()
    finally:
        warehouse.drop()


@pytest.fixture(scope="module")
def snowflake_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    if not FAKESNOW_PYTHON.exists():
        pytest.skip("fakesnow is installed by `make test` into .venv-fakesnow")
    work = tmp_path_factory.mktemp("types-sf")
    server = FakeSnow(work)
    try:
        server.sql("CREATE SCHEMA TPCH")
        config = {"backends": {"demo": snowflake_backend(server)}, "policies": {"dir": str(POLICIES)}}
        process = GatewayProcess(work, config, env={"GW_TEST_SNOWFLAKE_PASSWORD": "not-a-real-secret-42"})
        yield process
        process.stop()
    finally:
        server.stop()


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.slow),
                        pytest.param("snowflake", marks=pytest.mark.slow)])
def backend(request: pytest.FixtureRequest) -> tuple[str, GatewayProcess]:
    return request.param, request.getfixturevalue(f"{request.param}_gateway")


def run(gateway: GatewayProcess, sql: str, *, legacy: bool) -> tuple[list[list[Any]], list[str]]:
    connection = trino.dbapi.connect(host=gateway.host, port=gateway.port, user="alice", catalog="demo",
                                     schema="tpch", legacy_primitive_types=legacy, request_timeout=30)
    cursor = connection.cursor()
    cursor.execute(sql)
    rows = cursor.fetchall()
    return rows, [d[1] for d in cursor.description]


def refusal(gateway: GatewayProcess, sql: str) -> trino.exceptions.TrinoUserError:
    with pytest.raises(trino.exceptions.TrinoUserError) as raised:
        run(gateway, sql, legacy=True)
    return raised.value


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, float) and isinstance(actual, float):
        return actual == expected or (actual != actual and expected != expected)
    return bool(actual == expected and type(actual) is type(expected))


@pytest.mark.parametrize("case", CASES, ids=[c.sql for c in CASES])
def test_every_trino_type_as_trino_answers_it(backend: tuple[str, GatewayProcess], case: Case) -> None:
    name, gateway = backend
    expected = _expected(case, name)
    sql = f"SELECT {case.sql}"
    if isinstance(expected, str):  # refused, naming the type
        error = refusal(gateway, sql)
        assert error.error_name == expected, error
        assert (case.refused or case.type.split("(")[0]) in error.message, error.message
        return
    kind, legacy = expected
    rows, types = run(gateway, sql, legacy=True)
    assert (types, len(rows)) == ([kind], 1)
    assert rows[0][0] == legacy and type(rows[0][0]) is type(legacy), (rows[0][0], legacy)
    mapped, _ = run(gateway, sql, legacy=False)
    if case.value is not ANY and expected == (case.type, case.legacy):
        assert _same(mapped[0][0], case.value), (mapped[0][0], case.value)


# --- properties: each closes a class of values, not the examples above ---------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_a_real_is_the_shortest_text_of_its_float32(value: float) -> None:
    encode = encoder_for(t.REAL)
    assert encode is not None
    encoded = encode(value)
    assert struct.pack("<f", encoded) == struct.pack("<f", value)
    mantissa = repr(abs(encoded)).split("e")[0].replace(".", "").strip("0")
    assert len(mantissa) <= 9, encoded


SHAPES = st.tuples(st.integers(1, 18), st.integers(0, 6)).filter(lambda ps: ps[1] <= ps[0])


@st.composite
def decimal_literal(draw: st.DrawFn) -> tuple[str, Decimal, int, int]:
    precision, scale = draw(SHAPES)
    unscaled = draw(st.integers(-(10 ** precision) + 1, 10 ** precision - 1))
    value = Decimal(unscaled).scaleb(-scale)
    return f"CAST('{value:f}' AS decimal({precision},{scale}))", value, precision, scale


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(decimal_literal(), decimal_literal())
def test_decimal_division_is_trinos_decimal(duckdb_gateway: GatewayProcess, left: tuple[str, Decimal, int, int],
                                            right: tuple[str, Decimal, int, int]) -> None:
    (a_sql, a, p1, s1), (b_sql, b, _, s2) = left, right
    sql = f"SELECT {a_sql} / {b_sql}"
    if b == 0:
        assert refusal(duckdb_gateway, sql).error_name == "DIVISION_BY_ZERO"
        return
    scale = max(s1, s2)
    precision = min(38, p1 + s2 + max(0, s2 - s1))
    expected = (a / b).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP) if abs(a / b) < 10 ** 20 \
        else None
    rows, types = run(duckdb_gateway, sql, legacy=True)
    assert types == [f"decimal({precision},{scale})"]
    if expected is not None:
        assert Decimal(rows[0][0]) == expected, (sql, rows, expected)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 12), st.integers(0, 10 ** 12 - 1), st.datetimes(min_value=datetime(1, 1, 1),
                                                                      max_value=datetime(9999, 12, 31)))
def test_a_timestamp_literal_is_exact_or_refused(duckdb_gateway: GatewayProcess, precision: int, fraction: int,
                                                 moment: datetime) -> None:
    digits = f"{fraction:012d}"[:precision]
    text = f"{moment.year:04d}-{moment:%m-%d %H:%M:%S}" + (f".{digits}" if precision else "")
    sql = f"SELECT TIMESTAMP '{text}'"
    nanosecond_range = "1677-09-22" <= text[:10] <= "2262-04-11"
    if precision > 9 or digits[6:].strip("0") or (precision > 6 and not nanosecond_range):
        error = refusal(duckdb_gateway, sql)
        assert error.error_name == "NOT_SUPPORTED" and "timestamp(" in error.message
        return
    rows, _ = run(duckdb_gateway, sql, legacy=True)
    assert rows[0][0].startswith(text) and set(rows[0][0][len(text):]) <= {"0", "."}, (text, rows)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 10000), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999),
       st.booleans())
def test_a_day_to_second_literal_reads_back_as_trino_writes_it(duckdb_gateway: GatewayProcess, days: int,
                                                               hours: int, minutes: int, seconds: int,
                                                               millis: int, negative: bool) -> None:
    sign = "-" if negative and (days or hours or minutes or seconds or millis) else ""
    literal = f"{sign}{days} {hours}:{minutes:02d}:{seconds:02d}.{millis:03d}"
    rows, types = run(duckdb_gateway, f"SELECT INTERVAL '{literal}' DAY TO SECOND", legacy=True)
    assert types == ["interval day to second"]
    assert rows[0][0] == f"{sign}{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


# Values DuckDB hands out that no Trino client can read, and the Trino type of each.
OUT_OF_RANGE = [("DATE '10000-01-01'", "date"), ("CAST('24:00:00' AS time)", "time(3)")]


@st.composite
def nested_out_of_range(draw: st.DrawFn) -> tuple[str, str]:
    sql, kind = draw(st.sampled_from(OUT_OF_RANGE))
    for _ in range(draw(st.integers(0, 3))):
        wrap = draw(st.sampled_from(["array", "row", "map"]))
        if wrap == "array":
            sql, kind = f"ARRAY[{sql}]", f"array({kind})"
        elif wrap == "row":
            sql, kind = f"ROW({sql})", f"row({kind})"
        else:
            sql, kind = f"MAP(ARRAY[1], ARRAY[{sql}])", f"map(integer, {kind})"
    return sql, kind


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(nested_out_of_range(), st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True), st.booleans())
def test_a_value_the_encoder_refuses_ends_the_query_naming_column_and_type(
        duckdb_gateway: GatewayProcess, case: tuple[str, str], column: str, legacy: bool) -> None:
    sql, kind = case
    with pytest.raises(trino.exceptions.TrinoUserError) as raised:
        run(duckdb_gateway, f'SELECT 1 AS "one", {sql} AS "{column}"', legacy=legacy)
    assert raised.value.error_name == "NUMERIC_VALUE_OUT_OF_RANGE"
    assert f"Column '{column}' of type {kind}" in raised.value.message, raised.value.message


class Exploding:
    """A value whose encoding raises an arbitrary (non-gateway) exception."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        raise self.error

    def __iter__(self) -> Iterator[Any]:
        raise self.error

    def __str__(self) -> str:
        raise self.error


ENCODED_TYPES = [t.DOUBLE, t.REAL, t.decimal(10, 2), t.DATE, t.timestamp(3), t.timestamp(6, with_time_zone=True),
                 t.time(6), t.VARBINARY, t.UUID, t.JSON, t.INTERVAL_DAY_TO_SECOND, t.INTERVAL_YEAR_TO_MONTH,
                 t.array(t.DATE), t.map_of(t.VARCHAR, t.DOUBLE), t.row([("a", t.BIGINT), ("", t.DATE)])]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(ENCODED_TYPES), st.sampled_from([TypeError("x"), KeyError("x"), AttributeError("x"),
                                                        ValueError("x"), OverflowError("x")]),
       st.from_regex(r"[A-Za-z_][A-Za-z0-9_ ]{0,10}", fullmatch=True))
def test_any_encoder_failure_is_a_user_error_naming_column_and_type(kind: t.SqlType, error: Exception,
                                                                    column: str) -> None:
    encode = row_encoder([t.BIGINT, kind], None, ["id", column])
    with pytest.raises(UserError) as failure:
        encode([1, Exploding(error)])
    assert f"Column '{column}' of type {kind.display()}" in failure.value.message


# The session zone (X-Trino-Time-Zone), for values whose zone the plan does not know, across Brussels' DST
# changes: 02:00-03:00 skipped in March, 02:00-03:00 twice in October; Trino shows the zone's id.
SESSION_ZONE_CASES = [
    ("from_unixtime(1711846799)", "2024-03-31 01:59:59.000 Europe/Brussels"),  # 2024-03-31 00:59:59 UTC
    ("from_unixtime(1711846800)", "2024-03-31 03:00:00.000 Europe/Brussels"),
    ("from_unixtime(1729989000)", "2024-10-27 02:30:00.000 Europe/Brussels"),  # 00:30 UTC
    ("from_unixtime(1729992600)", "2024-10-27 02:30:00.000 Europe/Brussels"),  # 01:30 UTC
    ("from_unixtime(-62135553600)", "0001-01-01 12:17:30.000 Europe/Brussels"),  # local mean time
    # a literal's own zone wins over the session's, as in Trino
    ("TIMESTAMP '2024-03-31 00:59:59 UTC'", "2024-03-31 00:59:59 UTC"),
    ("TIMESTAMP '2024-03-31 00:59:59 UTC' AT TIME ZONE 'Europe/Brussels'", "2024-03-31 01:59:59 Europe/Brussels"),
]


@pytest.mark.parametrize(("sql", "legacy"), SESSION_ZONE_CASES, ids=[c[0] for c in SESSION_ZONE_CASES])
def test_timestamps_with_time_zone_show_in_the_session_zone(duckdb_gateway: GatewayProcess, sql: str,
                                                            legacy: str) -> None:
    connection = trino.dbapi.connect(host=duckdb_gateway.host, port=duckdb_gateway.port, user="alice",
                                     catalog="demo", schema="tpch", legacy_primitive_types=True,
                                     timezone="Europe/Brussels")
    cursor = connection.cursor()
    cursor.execute(f"SELECT {sql}")
    assert cursor.fetchall() == [[legacy]]


# --- declared types: Trino's rules for the type of literals, casts and arithmetic on them ------------------
# Each generated expression comes with the type Trino's rules give it (restated here from Trino's documentation,
# independently of gateway/sql/trino_output_types.py) and its exact text as Trino writes a value of that type.

Typed = tuple[str, str, str]  # (sql, Trino type, the JSON value's text)
WORDS = st.text(alphabet="abcxyz äé", min_size=0, max_size=8)
INTEGER_KINDS = [("TINYINT", "tinyint", 127), ("SMALLINT", "smallint", 32767), ("", "integer", 2**31 - 1),
                 ("", "bigint", 2**63 - 1)]


def _half_up(micros: int, digits: int) -> int:
    unit = 10 ** (6 - digits)
    return (micros + unit // 2) // unit * unit


@st.composite
def integer_literal(draw: st.DrawFn) -> tuple[Typed, Decimal, tuple[int, int]]:
    prefix, kind, top = draw(st.sampled_from(INTEGER_KINDS))
    low = 2**31 if kind == "bigint" else 0
    value = draw(st.integers(low, top))
    sql = f"{prefix} '{value}'" if prefix else str(value)
    digits = {"tinyint": 3, "smallint": 5, "integer": 10, "bigint": 19}[kind]
    return (sql, kind, str(value)), Decimal(value), (digits, 0)


@st.composite
def decimal_literal_typed(draw: st.DrawFn) -> tuple[Typed, Decimal, tuple[int, int]]:
    whole = draw(st.integers(0, 10**6))
    scale = draw(st.integers(1, 5))
    fraction = draw(st.integers(0, 10**scale - 1))
    text = f"{whole}.{fraction:0{scale}d}"
    precision = max(len(str(whole).lstrip("0")) + scale, 1)
    return (text, f"decimal({precision},{scale})", text), Decimal(text), (precision, scale)


def numeric_leaf() -> st.SearchStrategy[tuple[Typed, Decimal, tuple[int, int]]]:
    return st.one_of(integer_literal(), decimal_literal_typed())


@st.composite
def arithmetic(draw: st.DrawFn) -> Typed:
    (a_sql, a_kind, _), a, (p1, s1) = draw(numeric_leaf())
    (b_sql, b_kind, _), b, (p2, s2) = draw(numeric_leaf())
    op = draw(st.sampled_from(["+", "-", "*"]))
    exact = a + b if op == "+" else a - b if op == "-" else a * b
    if not a_kind.startswith("decimal") and not b_kind.startswith("decimal"):
        order = ["tinyint", "smallint", "integer", "bigint"]
        kind = max(a_kind, b_kind, key=order.index)
        bound = {"tinyint": 2**7, "smallint": 2**15, "integer": 2**31, "bigint": 2**63}[kind]
        if not -bound <= exact < bound:  # Trino raises NUMERIC_VALUE_OUT_OF_RANGE: not this property's case
            return a_sql, a_kind, str(a)
        return f"{a_sql} {op} {b_sql}", kind, str(exact)
    if op == "*":
        precision, scale = min(38, p1 + p2), s1 + s2
    else:
        scale = max(s1, s2)
        precision = min(38, 1 + scale + max(p1 - s1, p2 - s2))
    return f"{a_sql} {op} {b_sql}", f"decimal({precision},{scale})", f"{exact.quantize(Decimal(1).scaleb(-scale)):f}"


@st.composite
def text_typed(draw: st.DrawFn) -> Typed:
    word = draw(WORDS)
    shape = draw(st.sampled_from(["literal", "char", "varchar", "array"]))
    if shape == "literal":
        return f"'{word}'", f"varchar({len(word)})", word
    if shape == "array":
        other = draw(WORDS)
        return (f"ARRAY['{word}', '{other}']", f"array(varchar({max(len(word), len(other))}))",
                json.dumps([word, other], ensure_ascii=False, separators=(",", ":")))
    length = draw(st.integers(1, 10))
    if shape == "char":
        return f"CAST('{word}' AS char({length}))", f"char({length})", word[:length].ljust(length)
    return f"CAST('{word}' AS varchar({length}))", f"varchar({length})", word[:length]


@st.composite
def temporal_typed(draw: st.DrawFn) -> Typed:
    moment = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 30)))
    digits = draw(st.integers(0, 6))
    target = draw(st.integers(0, 6))
    day = f"{moment.year:04d}-{moment:%m-%d}"
    shape = draw(st.sampled_from(["timestamp", "time", "cast timestamp", "cast time", "date plus"]))
    fraction = f"{moment.microsecond:06d}"[:digits]
    clock = f"{moment:%H:%M:%S}" + (f".{fraction}" if digits else "")
    if shape == "timestamp":
        return f"TIMESTAMP '{day} {clock}'", f"timestamp({digits})", f"{day} {clock}"
    if shape == "time":
        return f"TIME '{clock}'", f"time({digits})", clock
    if shape == "date plus":
        months = draw(st.integers(0, 11))
        shifted = date(moment.year, moment.month, 1)
        month = shifted.month - 1 + months
        year, month = moment.year + month // 12, month % 12 + 1
        first = date(year, month, 1)
        last = ((first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)).day
        expected = date(year, month, min(moment.day, last))
        return f"DATE '{day}' + INTERVAL '{months}' MONTH", "date", f"{expected.year:04d}-{expected:%m-%d}"
    rounded = moment.replace(microsecond=0) + timedelta(microseconds=_half_up(moment.microsecond, target))
    kept = f"{rounded.microsecond:06d}"[:target]
    if shape == "cast time":
        text = f"{rounded:%H:%M:%S}" + (f".{kept}" if target else "")
        return f"CAST(TIME '{moment:%H:%M:%S.%f}' AS time({target}))", f"time({target})", text
    if rounded.year > 9999:
        return f"TIMESTAMP '{day} {clock}'", f"timestamp({digits})", f"{day} {clock}"
    text = f"{rounded.year:04d}-{rounded:%m-%d %H:%M:%S}" + (f".{kept}" if target else "")
    return f"CAST(TIMESTAMP '{day} {moment:%H:%M:%S.%f}' AS timestamp({target}))", f"timestamp({target})", text


def _text_of(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(arithmetic(), text_typed(), temporal_typed()), min_size=1, max_size=8), st.booleans())
def test_declared_types_follow_trinos_rules(duckdb_gateway: GatewayProcess, cases: list[Typed],
                                           legacy: bool) -> None:
    sql = "SELECT " + ", ".join(case[0] for case in cases)
    rows, types = run(duckdb_gateway, sql, legacy=True)
    assert types == [case[1] for case in cases], sql
    assert [_text_of(v) for v in rows[0]] == [case[2] for case in cases], sql
    if not legacy:  # the client's own parsers read every value by its declared type
        run(duckdb_gateway, sql, legacy=False)


@given(narrow=st.sampled_from([("tinyint", 2**7), ("smallint", 2**15)]), data=st.data())
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_an_integer_literal_is_an_integer_beside_a_narrow_operand(
        duckdb_gateway: GatewayProcess, narrow: tuple[str, int], data: st.DataObject) -> None:
    """Trino types `SMALLINT '1' + 32767` as integer (32768); DuckDB would give the literal the operand's narrow
    type and overflow. Any operator, either side, literals up to the narrow type's edge."""
    name, bound = narrow
    cases = data.draw(st.lists(st.tuples(st.integers(-bound, bound - 1), st.integers(0, bound - 1),
                                         st.sampled_from(["+", "-", "*"]), st.booleans()), min_size=1, max_size=6))
    columns, expected = [], []
    for value, literal, op, literal_first in cases:
        typed = f"{name.upper()} '{value}'"
        columns.append(f"{literal} {op} {typed}" if literal_first else f"{typed} {op} {literal}")
        left, right = (literal, value) if literal_first else (value, literal)
        expected.append(str(left + right if op == "+" else left - right if op == "-" else left * right))
    rows, types = run(duckdb_gateway, "SELECT " + ", ".join(columns), legacy=True)
    assert types == ["integer"] * len(cases)
    assert [_text_of(v) for v in rows[0]] == expected


@st.composite
def exact_decimal_literal(draw: st.DrawFn) -> tuple[str, Decimal, int, int]:
    precision = draw(st.integers(1, 18))
    scale = draw(st.integers(0, precision))
    unscaled = draw(st.integers(10 ** (precision - 1) if precision > 1 else 0, 10**precision - 1))
    value = Decimal(unscaled).scaleb(-scale)
    return f"{value:f}" if scale else f"DECIMAL '{value:f}'", value, precision, scale


@given(pairs=st.lists(st.tuples(exact_decimal_literal(), exact_decimal_literal()), min_size=1, max_size=6))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_decimal_products_are_exact_past_eighteen_digits(
        duckdb_gateway: GatewayProcess, pairs: list[tuple[tuple[str, Decimal, int, int], ...]]) -> None:
    """decimal(p1,s1) * decimal(p2,s2) is decimal(p1 + p2, s1 + s2) in Trino, exact; DuckDB overflows past 18
    digits when both operands have at most 18."""
    sql = "SELECT " + ", ".join(f"{a[0]} * {b[0]}" for a, b in pairs)
    rows, types = run(duckdb_gateway, sql, legacy=True)
    assert types == [f"decimal({a[2] + b[2]},{a[3] + b[3]})" for a, b in pairs], sql
    with localcontext(prec=80):  # products of up to 36 digits, exactly
        expected = [f"{(a[1] * b[1]).quantize(Decimal(1).scaleb(-(a[3] + b[3]))):f}" for a, b in pairs]
    assert [_text_of(v) for v in rows[0]] == expected, sql


LEAF_TYPES = [t.TINYINT, t.SMALLINT, t.INTEGER, t.BIGINT, t.REAL, t.DOUBLE, t.decimal(10, 2), t.decimal(38, 0),
              t.VARCHAR, t.varchar(3), t.SqlType("char", (2,)), t.DATE, t.timestamp(3), t.timestamp(6),
              t.timestamp(3, with_time_zone=True), t.time(0), t.time(6, with_time_zone=True), t.VARBINARY, t.UUID,
              t.JSON, t.INTERVAL_DAY_TO_SECOND, t.BOOLEAN]


def sql_types() -> st.SearchStrategy[t.SqlType]:
    return st.recursive(st.sampled_from(LEAF_TYPES), lambda inner: st.one_of(
        inner.map(t.array), st.tuples(inner, inner).map(lambda kv: t.map_of(*kv)),
        st.lists(inner, min_size=1, max_size=3).map(lambda fields: t.row([("", f) for f in fields]))), max_leaves=5)


def _same_values(engine: t.SqlType, kind: t.SqlType) -> bool:
    """Whether a value the engine hands out for `engine` is one the encoder of `kind` takes as it is."""
    if kind.name in ("array", "map", "row"):
        return engine.name == kind.name and len(engine.children) == len(kind.children) and all(
            _same_values(e, k) for e, k in zip(engine.children, kind.children, strict=True))
    groups = [{"tinyint", "smallint", "integer", "bigint"}, {"real", "double"}, {"varchar", "char"}]
    if kind.name in groups[0] and engine.name == "decimal":
        return engine.arguments[1] == 0
    if kind.name == "date":
        return engine.name in ("date", "timestamp")
    return engine.name == kind.name or any(engine.name in g and kind.name in g for g in groups)


@settings(max_examples=200, deadline=None)
@given(sql_types(), sql_types())
def test_a_declared_type_applies_only_over_values_its_encoder_takes(engine: t.SqlType, kind: t.SqlType) -> None:
    reported = declared(engine, OutputType(kind))
    assert reported == (kind if _same_values(engine, kind) else engine)
    assert declared(engine, None) == engine
