"""The Trino backend against Trino's recorded protocol shapes, for what a chained gateway cannot produce: a
real coordinator's final stats (every field, non-zero peak memory and bytes), its error objects (with Java
failureInfo stacks and positions), old and new typeSignature spellings, IO plans with estimates. Plus
properties over generated members: every gateway type survives typeSignature and information_schema text,
every value survives Trino's JSON encoding and the backend's decoding unchanged, remote messages never carry
internal names or row values, and the keyed hash in Trino's dialect is the DuckDB/PostgreSQL digest.

Shapes recorded from Trino 4xx responses (trino-python-client's test fixtures and the client protocol docs)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from datetime import time as time_of_day
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from gateway import types as t
from gateway.backends.base import ExecutionContext
from gateway.backends.trino import TrinoBackend, TrinoExecution, scan_bytes_from_io_plan, translate_error
from gateway.backends.trino_settings import TrinoSettings
from gateway.backends.trino_types import decoder_for, to_sql_type, type_from_text
from gateway.config import ConfigError, load_settings
from gateway.cost.meter import price
from gateway.cost.model import Rate
from gateway.errors import BackendError, InsufficientResources, NotFound, QueryCanceled, UserError
from gateway.frontends.trino_values import encoder_for, type_signature
from gateway.policy.model import MaskRef
from gateway.sql.generate import _unreserved_internal_names
from gateway.sql.masks import mask_expression, parse_type

FINAL_PAGE: dict[str, Any] = {
    "id": "20240301_101010_00042_abcde",
    "infoUri": "https://trino.example.com/ui/query.html?20240301_101010_00042_abcde",
    "columns": [
        {"name": "n", "type": "decimal(15,2)",
         "typeSignature": {"rawType": "decimal", "arguments": [{"kind": "LONG", "value": 15},
                                                               {"kind": "LONG", "value": 2}]}},
        {"name": "tags", "type": "array(varchar(3))",
         "typeSignature": {"rawType": "array", "arguments": [{"kind": "TYPE", "value": {
             "rawType": "varchar", "arguments": [{"kind": "LONG", "value": 3}]}}]}},
    ],
    "data": [["12345678901234.56", ["abc", None]], [None, []]],
    "stats": {"state": "FINISHED", "queued": False, "scheduled": True, "progressPercentage": 100.0,
              "runningPercentage": 0.0, "nodes": 3, "totalSplits": 52, "queuedSplits": 0, "runningSplits": 0,
              "completedSplits": 52, "cpuTimeMillis": 12345, "wallTimeMillis": 23456, "queuedTimeMillis": 7,
              "elapsedTimeMillis": 3456, "processedRows": 6001215, "processedBytes": 2_500_000_000,
              "physicalInputBytes": 2_400_000_000, "physicalWrittenBytes": 0, "peakMemoryBytes": 987_654_321,
              "spilledBytes": 0, "rootStage": {"stageId": "0", "state": "FINISHED", "done": True, "nodes": 1,
                                                "totalSplits": 17, "cpuTimeMillis": 345, "subStages": []}},
    "warnings": [],
}

JAVA_STACK = {"type": "io.trino.spi.TrinoException", "message": "internal detail",
              "suppressed": [], "stack": ["io.trino.sql.analyzer.StatementAnalyzer$Visitor.visitQuery(Analyzer.java:1)",
                                          "io.trino.execution.SqlQueryExecution.analyze(SqlQueryExecution.java:2)"]}


def recorded_error(name: str, kind: str, message: str, code: int = 1) -> dict[str, Any]:
    return {"message": message, "errorCode": code, "errorName": name, "errorType": kind,
            "errorLocation": {"lineNumber": 1, "columnNumber": 8}, "failureInfo": JAVA_STACK}


def backend(**options: Any) -> TrinoBackend:
    return TrinoBackend(name="warehouse", settings=TrinoSettings(url="https://trino.example.com", catalog="hive",
                                                                 **options), schema="sales")


def taken(body: Any, *, time_limit: float | None = None) -> TrinoExecution:
    execution = backend().execution("SELECT 1", time_limit_seconds=time_limit)
    execution._take(httpx.Response(200, json=body))
    return execution


# --- stats, rows and cost ------------------------------------------------------------------------------------


def test_final_stats_become_the_cost_figures() -> None:
    execution = taken(FINAL_PAGE)
    stats = execution.stats
    assert stats.backend_query_id == "20240301_101010_00042_abcde"
    assert stats.cpu_seconds == 12.345 and stats.bytes == 2_500_000_000 and stats.rows == 2
    assert stats.extra["processed_rows"] == 6001215 and stats.extra["peak_memory_bytes"] == 987_654_321
    assert stats.extra["wall_time_ms"] == 23456 and stats.extra["processed_bytes"] == 2_500_000_000
    cost, figures = price(Rate(per_cpu_second=0.5, per_gb_scanned=2.0), stats)
    assert figures["cpu_seconds"] == 12.345 and figures["processed_bytes"] == 2_500_000_000
    assert cost == pytest.approx(0.5 * 12.345 + 2.0 * 2.5)


def test_columns_and_rows_of_a_page_are_decoded_exactly() -> None:
    execution = taken(FINAL_PAGE)
    assert [c.type for c in execution.columns] == [t.decimal(15, 2), t.array(t.varchar(3))]
    assert list(execution._buffer) == [(Decimal("12345678901234.56"), ["abc", None]), (None, [])]


def test_an_error_page_ends_the_query_with_the_gateways_error() -> None:
    body = {"id": "q1", "stats": {"state": "FAILED"},
            "error": recorded_error("EXCEEDED_TIME_LIMIT", "INSUFFICIENT_RESOURCES",
                                    "Query exceeded maximum time limit of 2.00s", 131075)}
    with pytest.raises(InsufficientResources) as error:
        taken(body, time_limit=2.0)
    assert error.value.error.name == "EXCEEDED_TIME_LIMIT" and "2s" in error.value.message


# --- errors ------------------------------------------------------------------------------------------------


def test_recorded_user_errors_keep_their_meaning_without_positions() -> None:
    found = translate_error(recorded_error("COLUMN_NOT_FOUND", "USER_ERROR",
                                           "line 1:8: Column 'nope' cannot be resolved", 47))
    assert isinstance(found, UserError) and found.error.name == "COLUMN_NOT_FOUND"
    assert found.message == "Column 'nope' cannot be resolved"
    missing = translate_error(recorded_error("TABLE_NOT_FOUND", "USER_ERROR",
                                             "line 1:15: Table 'hive.sales.gone' does not exist", 46),
                              catalog=("hive", "warehouse"))
    assert isinstance(missing, NotFound) and missing.message == "Table 'warehouse.sales.gone' does not exist"


def test_value_errors_lose_the_values_they_quote() -> None:
    found = translate_error(recorded_error("INVALID_CAST_ARGUMENT", "USER_ERROR",
                                           "line 3:4: Cannot cast 'hidden-row-value' to INT"))
    assert found.error.name == "INVALID_CAST_ARGUMENT" and "hidden-row-value" not in found.message


@pytest.mark.parametrize("name, kind", [("GENERIC_INTERNAL_ERROR", "INTERNAL_ERROR"),
                                        ("HIVE_METASTORE_ERROR", "EXTERNAL"), ("REMOTE_TASK_ERROR", "INTERNAL_ERROR")])
def test_internal_errors_never_show_the_remotes_internals(name: str, kind: str) -> None:
    found = translate_error(recorded_error(name, kind, "java.lang.NullPointerException at io.trino.Foo"))
    assert isinstance(found, BackendError) and found.message == f"Trino error {name}"


def test_cancellation_is_a_cancellation() -> None:
    assert isinstance(translate_error(recorded_error("USER_CANCELED", "USER_ERROR", "Query was canceled")),
                      QueryCanceled)


NAME = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
VALUE = st.text(alphabet="abcdefXYZ0123456789-#@ ", min_size=3, max_size=20).filter(str.strip)


@settings(max_examples=100, deadline=None)
@given(internal=NAME, value=VALUE, n=st.integers(0, 20),
       name=st.sampled_from(["INVALID_CAST_ARGUMENT", "DIVISION_BY_ZERO", "NUMERIC_VALUE_OUT_OF_RANGE",
                             "INVALID_FUNCTION_ARGUMENT", "GENERIC_USER_ERROR", "SYNTAX_ERROR"]),
       shape=st.sampled_from(["line 1:{c}: Cannot cast '{v}' to DATE in {i}",
                              "Value '{v}' of {i}.x is invalid", "{i}: bad input '{v}'"]))
def test_messages_carry_no_internal_names_and_no_values(internal: str, value: str, n: int, name: str,
                                                        shape: str) -> None:
    for spelled in (f'"__gw_{internal}"', f"gw{n}_{internal}"):
        message = shape.format(c=n + 1, v=value.replace("'", ""), i=spelled)
        found = translate_error(recorded_error(name, "USER_ERROR", message))
        assert "__gw_" not in found.message and f"gw{n}_" not in found.message
        assert value not in found.message and not found.message.startswith("line ")


# --- types and values --------------------------------------------------------------------------------------


def test_old_and_new_type_signature_spellings_agree() -> None:
    new = {"rawType": "row", "arguments": [
        {"kind": "NAMED_TYPE", "value": {"fieldName": {"name": "a"}, "typeSignature": {
            "rawType": "timestamp with time zone", "arguments": [{"kind": "LONG", "value": 3}]}}},
        {"kind": "NAMED_TYPE", "value": {"fieldName": {"name": "b"}, "typeSignature": {
            "rawType": "map", "arguments": [{"kind": "TYPE", "value": {"rawType": "varchar", "arguments": []}},
                                            {"kind": "TYPE", "value": {"rawType": "bigint", "arguments": []}}]}}}]}
    old = json.loads(json.dumps(new).replace('"NAMED_TYPE"', '"NAMED_TYPE_SIGNATURE"')
                     .replace('"TYPE"', '"TYPE_SIGNATURE"').replace('"LONG"', '"LONG_LITERAL"'))
    expected = t.row([("a", t.timestamp(3, with_time_zone=True)), ("b", t.map_of(t.VARCHAR, t.BIGINT))])
    assert to_sql_type(new) == to_sql_type(old) == expected
    assert to_sql_type({"rawType": "ipaddress", "arguments": []}) == t.VARCHAR


SCALARS = st.sampled_from([t.BOOLEAN, t.TINYINT, t.SMALLINT, t.INTEGER, t.BIGINT, t.REAL, t.DOUBLE, t.VARCHAR,
                           t.VARBINARY, t.DATE, t.UUID, t.JSON, t.INTERVAL_DAY_TO_SECOND, t.INTERVAL_YEAR_TO_MONTH,
                           t.varchar(25), t.SqlType("char", (3,))]) | st.builds(
    t.decimal, st.integers(1, 38), st.integers(0, 10)).filter(lambda k: k.arguments[1] <= k.arguments[0]) | st.builds(
    lambda p, z, ts: (t.timestamp if ts else t.time)(p, with_time_zone=z), st.integers(0, 12), st.booleans(),
    st.booleans())
# Map keys: types whose text form (a JSON object key) reads back as the same key.
KEYS = st.sampled_from([t.VARCHAR, t.BIGINT, t.INTEGER, t.DATE, t.decimal(10, 2), t.SqlType("char", (3,))])
TYPES = st.recursive(SCALARS, lambda inner: st.builds(t.array, inner) | st.builds(t.map_of, KEYS, inner)
                     | st.builds(t.row, st.lists(st.tuples(NAME, inner), min_size=1, max_size=3,
                                                 unique_by=lambda f: f[0])), max_leaves=6)


@settings(max_examples=150, deadline=None)
@given(kind=TYPES)
def test_every_type_survives_its_signature_and_its_text(kind: t.SqlType) -> None:
    assert to_sql_type(type_signature(kind)) == kind
    assert type_from_text(kind.display()) == kind


ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))])


def values_of(kind: t.SqlType) -> st.SearchStrategy[Any]:
    """Python values of `kind` as a backend hands them to the encoder (microsecond resolution)."""
    name = kind.name
    simple: dict[str, st.SearchStrategy[Any]] = {
        "boolean": st.booleans(), "tinyint": st.integers(-128, 127), "smallint": st.integers(-2**15, 2**15 - 1),
        "integer": st.integers(-2**31, 2**31 - 1), "bigint": st.integers(-2**63, 2**63 - 1),
        "double": st.floats(), "real": st.floats(width=32), "varchar": st.text(), "char": st.text(max_size=3),
        "varbinary": st.binary(), "date": st.dates(), "uuid": st.uuids().map(str),
        "json": st.text().map(json.dumps),
        "interval year to month": st.from_regex(r"-?[0-9]{1,4}-[0-9]{1,2}", fullmatch=True),
        "interval day to second": st.timedeltas(min_value=timedelta(days=-99999), max_value=timedelta(days=99999))
        .map(lambda d: timedelta(milliseconds=int(d.total_seconds() * 1000)) if d >= timedelta(0)
             else -timedelta(milliseconds=int(-d.total_seconds() * 1000))),
    }
    if name in simple:
        return simple[name]
    if name == "decimal":
        precision, scale = kind.arguments
        return st.decimals(allow_nan=False, allow_infinity=False, places=scale,
                           min_value=-(10 ** (precision - scale)) + 1, max_value=10 ** (precision - scale) - 1)
    if name in ("timestamp", "timestamp with time zone"):
        precision = min(kind.arguments[0], 6)
        values = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
            lambda v: v.replace(microsecond=v.microsecond // 10 ** (6 - precision) * 10 ** (6 - precision)))
        if name == "timestamp":
            return values
        return st.tuples(values, ZONES).map(lambda p: p[0].replace(tzinfo=p[1]))
    if name in ("time", "time with time zone"):
        precision = min(kind.arguments[0], 6)
        times = st.times().map(lambda v: v.replace(
            microsecond=v.microsecond // 10 ** (6 - precision) * 10 ** (6 - precision)))
        if name == "time":
            return times
        return st.tuples(times, ZONES).map(lambda p: p[0].replace(tzinfo=p[1]))
    if name == "array":
        return st.lists(st.none() | values_of(kind.children[0]), max_size=3)
    if name == "map":
        return st.dictionaries(values_of(kind.children[0]), st.none() | values_of(kind.children[1]), max_size=3)
    if name == "row":
        return st.tuples(*(st.none() | values_of(c) for c in kind.children)).map(list)
    raise AssertionError(name)




def encoded(kind: t.SqlType, value: Any) -> Any:
    encode = encoder_for(kind)
    return value if value is None or encode is None else encode(value)


def decoded(kind: t.SqlType, wire: Any) -> Any:
    decode = decoder_for(kind)
    return wire if wire is None or decode is None else decode(wire)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), kind=TYPES)
def test_every_value_survives_the_wire_exactly(data: st.DataObject, kind: t.SqlType) -> None:
    value = data.draw(values_of(kind))
    wire = json.loads(json.dumps(encoded(kind, value)))  # what a Trino server sends
    again = json.loads(json.dumps(encoded(kind, decoded(kind, wire))))  # what the outer gateway sends on
    assert json.dumps(again, sort_keys=True) == json.dumps(wire, sort_keys=True)


def test_doubles_keep_their_non_finite_values() -> None:
    assert math.isnan(decoded(t.DOUBLE, "NaN")) and decoded(t.DOUBLE, "-Infinity") == -math.inf
    assert decoded(t.timestamp(9), "2024-02-29 13:14:15.123456789") == datetime(2024, 2, 29, 13, 14, 15, 123456)
    assert decoded(t.time(3, with_time_zone=True), "01:02:03.456+05:30") == time_of_day(
        1, 2, 3, 456000, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert decoded(t.DATE, "2024-02-29") == date(2024, 2, 29)


def test_an_out_of_range_value_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="outside the range"):
        decoded(t.timestamp(3), "+12345-01-01 00:00:00.000")


# --- requests ----------------------------------------------------------------------------------------------


def test_headers_carry_identity_source_tags_and_the_time_limit() -> None:
    context = ExecutionContext(user="alice", source="superset", client_tags=frozenset({"b", "a", "has,comma"}),
                               query_id="20240301_000000_00001_gw000", cost_center="CC-1")
    forwarded = backend(forward_identity=True).headers(context, 2.5)
    assert forwarded["X-Trino-User"] == "alice" and forwarded["X-Trino-Source"] == "superset"
    assert forwarded["X-Trino-Client-Tags"] == "a,b" and forwarded["X-Trino-Catalog"] == "hive"
    assert forwarded["X-Trino-Session"] == "query_max_execution_time=3s"
    assert forwarded["X-Trino-Trace-Token"] == context.query_id and "Authorization" not in forwarded
    assert backend().headers(context, None)["X-Trino-User"] == "gateway"  # the service user
    with pytest.raises(UserError, match="printable ASCII"):
        backend(forward_identity=True).headers(ExecutionContext(user="al\nice"), None)


def test_credentials_come_from_the_environment_at_each_query(monkeypatch: pytest.MonkeyPatch) -> None:
    basic = backend(user="svc", password_env="TRINO_TEST_PASSWORD")
    monkeypatch.setenv("TRINO_TEST_PASSWORD", "pw-first")
    assert basic.headers(None, None)["Authorization"] == "Basic c3ZjOnB3LWZpcnN0"  # svc:pw-first
    monkeypatch.setenv("TRINO_TEST_PASSWORD", "pw-second")  # rotated: the next query uses it
    assert basic.headers(None, None)["Authorization"] == "Basic c3ZjOnB3LXNlY29uZA=="
    monkeypatch.setenv("TRINO_TEST_TOKEN", "tok")
    assert backend(token_env="TRINO_TEST_TOKEN").headers(None, None)["Authorization"] == "Bearer tok"
    assert "pw-" not in repr(basic) + repr(basic.settings)


IO_PLAN = {"inputTableColumnInfos": [
    {"table": {"catalog": "hive", "schemaTable": {"schema": "tpch", "table": "orders"}}, "columnConstraints": [],
     "estimate": {"outputRowCount": 15000.0, "outputSizeInBytes": 1_350_000.0, "cpuCost": 1_350_000.0,
                  "maxMemory": 0.0, "networkCost": 0.0}},
    {"table": {"catalog": "hive", "schemaTable": {"schema": "tpch", "table": "customer"}}, "columnConstraints": [],
     "estimate": {"outputRowCount": 1500.0, "outputSizeInBytes": 150_000.0, "cpuCost": 0.0, "maxMemory": 0.0,
                  "networkCost": 0.0}}],
    "estimate": {"outputRowCount": 10.0, "outputSizeInBytes": 900.0, "cpuCost": 1.0, "maxMemory": 1.0,
                 "networkCost": 1.0}}


def test_scan_bytes_come_from_the_io_plan() -> None:
    assert scan_bytes_from_io_plan(IO_PLAN) == 1_500_000
    unknown = json.loads(json.dumps(IO_PLAN).replace("1350000.0", '"NaN"'))
    assert scan_bytes_from_io_plan(unknown) == 900  # a table without an estimate: the plan's own
    assert scan_bytes_from_io_plan({"inputTableColumnInfos": [], "estimate": {"outputSizeInBytes": "NaN"}}) is None


# --- generated SQL -----------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(names=st.lists(st.from_regex(r"(gw[0-9]_|__gw_)?[a-z]{1,6}", fullmatch=True), min_size=1, max_size=8))
def test_internal_names_are_renamed_apart_from_the_statements_own(names: list[str]) -> None:
    tree = exp.select(*[exp.column(n) for n in names]).from_("t")
    own = {n for n in names if not n.startswith("__gw_")}
    renamed = _unreserved_internal_names(tree)
    result = [c.name for c in renamed.expressions]
    assert not any(n.startswith("__gw_") for n in result)
    new = [r for r, n in zip(result, names, strict=True) if n.startswith("__gw_")]
    assert not set(new) & own and len(set(new)) == len({n for n in names if n.startswith("__gw_")})


def run_trino_hash(sql: str, value: str) -> str:
    """Evaluates the generated Trino expression by Trino's documented semantics: to_utf8 gives UTF-8 bytes,
    sha256 takes and gives varbinary, to_hex writes upper-case hex, lower folds it, || concatenates."""
    def evaluate(node: exp.Expr) -> Any:
        if isinstance(node, exp.Cast):
            inner = evaluate(node.this)
            return inner if isinstance(inner, str) else str(inner)
        if isinstance(node, exp.Column):
            return value
        if isinstance(node, exp.Literal):
            return node.name
        if isinstance(node, exp.DPipe):
            left, right = evaluate(node.this), evaluate(node.expression)
            assert isinstance(left, str) and isinstance(right, str), "|| of varchar only"
            return left + right
        if isinstance(node, exp.Lower):
            text = evaluate(node.this)
            assert isinstance(text, str)
            return text.lower()
        if isinstance(node, exp.SHA2Digest):
            assert node.text("length") in ("", "256")
        # sqlglot reads Trino's to_utf8 as Encode, sha256 as SHA2Digest, lower(to_hex(..)) as LowerHex
        functions: dict[type[exp.Expr], Callable[[Any], Any]] = {
            exp.Encode: lambda s: s.encode("utf-8") if isinstance(s, str) else pytest.fail("to_utf8(varchar)"),
            exp.SHA2Digest: lambda b: hashlib.sha256(b).digest() if isinstance(b, bytes)
            else pytest.fail("sha256(varbinary)"),
            exp.Hex: lambda b: b.hex().upper() if isinstance(b, bytes) else pytest.fail("to_hex(varbinary)"),
            exp.LowerHex: lambda b: b.hex().upper().lower() if isinstance(b, bytes)
            else pytest.fail("to_hex(varbinary)")}
        assert type(node) in functions, f"unexpected {type(node).__name__}"
        return functions[type(node)](evaluate(node.this))

    assert "LOWER(TO_HEX(SHA256(TO_UTF8(" in sql  # the text Trino runs
    return str(evaluate(sqlglot.parse_one(sql, read="trino")))


@settings(max_examples=100, deadline=None)
@given(value=st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=24))
def test_the_keyed_hash_in_trinos_dialect_is_the_duckdb_digest(value: str) -> None:
    key = "gwtestkey-0123456789abcdef"
    generated = {d: mask_expression(MaskRef(builtin="hash"), exp.column("v"), parse_type("varchar"), dialect=d,
                                    hash_key=key)[0].sql(d) for d in ("duckdb", "trino")}
    connection = duckdb.connect()
    try:
        duck = connection.execute(f"SELECT {generated['duckdb']} FROM (SELECT ?::VARCHAR AS v)", [value]).fetchone()
        # what a gateway downstream does with the Trino SQL: transpile it to DuckDB
        chained = sqlglot.transpile(f"SELECT {generated['trino']} FROM (SELECT CAST(? AS VARCHAR) AS v)",
                                    read="trino", write="duckdb")[0]
        via_chain = connection.execute(chained, [value]).fetchone()
    finally:
        connection.close()
    assert duck is not None and via_chain is not None
    assert run_trino_hash(generated["trino"], value) == duck[0] == via_chain[0]


# --- configuration -----------------------------------------------------------------------------------------


def config_problems(tmp_path: Path, backend_yaml: str, environ: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "gateway.yaml"
    path.write_text(f"backends:\n  warehouse:\n{backend_yaml}")
    try:
        load_settings(path, environ=environ or {})
    except ConfigError as error:
        return error.messages
    return []


def test_trino_configuration_is_validated(tmp_path: Path) -> None:
    assert config_problems(tmp_path, "    type: trino\n    url: https://t:8443\n    catalog: hive\n") == []
    assert any("url: is required" in m for m in config_problems(tmp_path, "    type: trino\n"))
    insecure = config_problems(tmp_path, "    type: trino\n    url: http://t:8080\n    password_env: P\n")
    assert any("must be https://" in m for m in insecure)
    assert config_problems(tmp_path, "    type: trino\n    url: http://t:8080\n    password_env: P\n"
                                     "    allow_insecure_auth: true\n") == []
    both = config_problems(tmp_path, "    type: trino\n    url: https://t\n    password_env: P\n    token_env: T\n")
    assert any("exclusive" in m for m in both)
    assert any("credentials" in m for m in config_problems(tmp_path, "    type: trino\n    url: https://u:pw@t\n"))
    misplaced = config_problems(tmp_path, "    type: duckdb\n    path: x.duckdb\n    url: https://t\n")
    assert any("applies to trino backends only" in m for m in misplaced)


@pytest.mark.parametrize("body", [{"id": "q", "data": [[1]]}, {**FINAL_PAGE, "data": [["1.00"]]},
                                  {**FINAL_PAGE, "data": ["not a row"]}, ["not", "an", "object"]])
def test_pages_that_do_not_fit_their_columns_are_backend_errors(body: Any) -> None:
    with pytest.raises(BackendError):
        taken(body)
