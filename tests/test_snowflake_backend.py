"""The Snowflake warehouse backend, end to end, against fakesnow's Snowflake server (DuckDB underneath).

fakesnow runs in its own environment (.venv-fakesnow, tests/fakesnow/requirements.txt: it pins an older
sqlglot than the gateway's) through tests/fakesnow/serve.py, which records the statement parameters the
connector sends (fakesnow ignores them and has no QUERY_HISTORY): QUERY_TAG and STATEMENT_TIMEOUT_IN_SECONDS
are checked on the wire. The database of this module's own (`GW_<random>`) holds the demo's TPC-H tables with
upper-case names, as Snowflake stores unquoted names, a table of every mapped type and a mixed-case table;
a gateway serves it as catalog `sf` (the demo DuckDB beside it as `demo`, the oracle for TPC-H and masks).

What fakesnow cannot show (say so, not fake it): SYSTEM$CANCEL_ALL_QUERIES stopping a running statement
(fakesnow has no such function: the local cancel path is tested), the server enforcing
STATEMENT_TIMEOUT_IN_SECONDS (the gateway's own timer ends the query here), case-sensitive resolution of
quoted names (DuckDB matches names case-insensitively: the quoting is checked on the generated SQL instead),
key-pair login, and Snowflake's execution time for a query id (fakesnow reports none: credits come from the
local time, and the test checks which source was used).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
import sqlglot
import trino
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from gateway import types as t
from gateway.backends.base import ExecutionContext
from gateway.backends.snowflake import QUERY_TAG_MAX, describe_catalog, query_tag, statement_parameters
from gateway.backends.snowflake_settings import CREDITS_PER_HOUR, warehouse_size
from gateway.backends.snowflake_types import to_sql_type
from gateway.policy.model import MaskRef
from gateway.sql.masks import mask_expression, parse_type
from tests.conftest import POLICIES, GatewayProcess, gateway_hash_key
from tests.fakesnow_warehouse import FAKESNOW_PYTHON, FakeSnow, load_tpch, snowflake_backend

ROOT = Path(__file__).resolve().parent.parent
TPCH = sorted((Path(__file__).parent / "tpch").glob("q*.sql"))
# All 22 TPC-H queries run on fakesnow; these in `make test`, the rest (same path, more of it) in `make test-slow`.
TPCH_FAST = ("q01", "q03", "q04", "q05", "q06", "q10", "q12", "q14", "q19")
TPCH_CASES = [q if q.stem in TPCH_FAST else pytest.param(q, marks=pytest.mark.slow) for q in TPCH]

pytestmark = pytest.mark.skipif(not FAKESNOW_PYTHON.exists(),
                                reason="fakesnow is installed by `make test` into .venv-fakesnow")


KINDS = """
CREATE TABLE KINDS.ALL_TYPES (K INT, N NUMBER(12,3), SMALLN NUMBER(9,0), F FLOAT, FLAG BOOLEAN, V VARCHAR,
    DAY DATE, TM TIME, TS TIMESTAMP_NTZ, TSTZ TIMESTAMP_TZ, TSL TIMESTAMP_LTZ, BIN BINARY, DOC VARIANT,
    OBJ OBJECT, ARR ARRAY)
"""
KINDS_ROWS = """
INSERT INTO KINDS.ALL_TYPES SELECT 1, 12.345, 7, 2.25, TRUE, 'short', '2024-02-29', '13:14:15.123456',
    '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15'::TIMESTAMP_TZ, '2024-02-29 13:14:15'::TIMESTAMP_LTZ,
    TO_BINARY('0102ff', 'HEX'), PARSE_JSON('{"a": [1, 2]}'), OBJECT_CONSTRUCT('b', TRUE), ARRAY_CONSTRUCT(1, 2, 3)
"""
KINDS_NULLS = "INSERT INTO KINDS.ALL_TYPES (K) SELECT 2"
# ~7 s of DuckDB under fakesnow, which has no sleep: the long query of the time-limit and cancel tests
# About 16 s on a quiet core (DuckDB counts 20 billion generated rows in 1.6 s): longer than every limit here.
SLOW_VIEW = "CREATE VIEW KINDS.SLOW AS SELECT COUNT(*) AS N FROM TABLE(GENERATOR(ROWCOUNT => 200000000000))"
MIXED = """
CREATE TABLE "MixedCase"."Orders" ("OrderKey" INT, "Amount" NUMBER(10,2), "SecretNote" VARCHAR, PLAIN VARCHAR)
"""
MIXED_ROWS = """
INSERT INTO "MixedCase"."Orders" SELECT * FROM (VALUES (1, 10.50, 'Top Secret 1', 'a'), (2, 20.00, 'hidden-2', 'b'),
    (3, 30.25, 'note 3', 'c'))
"""
EXTRA_POLICIES = {
    "tables": [
        {"name": "sf.kinds.*", "owner": "platform", "access": [{"when": {"groups": ["admins", "analysts"]}}]},
        {"name": "sf.mixedcase.*", "owner": "platform", "access": [{"when": {"groups": ["admins", "analysts"]}}],
         "row_filters": [{"when": {"groups": ["admins"]}, "filter": "true"}, {"filter": "orderkey <= 2"}],
         "columns": {"secretnote": {"mask": "redact", "unmask_when": {"groups": ["admins"]}}}},
    ],
}
LIMITED_GROUP = {"name": "limited", "priority": 5, "max_concurrency": 4, "max_queued": 10,
                 "max_execution_time": "2s", "selectors": [{"client_tags": ["limited"]}]}


@pytest.fixture(scope="module")
def fakesnow(demo_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeSnow]:
    work = tmp_path_factory.mktemp("fakesnow")
    server = FakeSnow(work)
    try:
        load_tpch(server, demo_database, work)
        server.sql("CREATE SCHEMA KINDS", KINDS, KINDS_ROWS, KINDS_NULLS, SLOW_VIEW, 'CREATE SCHEMA "MixedCase"', MIXED,
                   MIXED_ROWS)
        yield server
    finally:
        server.stop()


def policies_dir(target: Path) -> Path:
    import shutil

    import yaml

    shutil.copytree(POLICIES, target)
    (target / "sf_extra.yaml").write_text(yaml.safe_dump(EXTRA_POLICIES))
    workload = yaml.safe_load((target / "workload.yaml").read_text())
    workload["resource_groups"].insert(0, LIMITED_GROUP)
    (target / "workload.yaml").write_text(yaml.safe_dump(workload))
    return target


@pytest.fixture(scope="module")
def sf_gateway(fakesnow: FakeSnow, demo_database: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    work = tmp_path_factory.mktemp("sf-gw")
    config = {"backends": {"sf": snowflake_backend(fakesnow),
                           "demo": {"type": "duckdb", "path": str(demo_database), "schema": "tpch"}},
              "policies": {"dir": str(policies_dir(work / "policies"))}, "protocol": {"page_rows": 2000},
              "audit": {"store": f"sqlite:///{work / 'audit.db'}", "spool_dir": str(work / "spool")}}
    process = GatewayProcess(work, config, env={"GW_TEST_SNOWFLAKE_PASSWORD": "not-a-real-secret-42"})
    yield process
    process.stop()


def cursor_for(gateway: GatewayProcess, user: str, **options: Any) -> Any:
    settings_ = {"catalog": "sf", "schema": "tpch", **options}
    return trino.dbapi.connect(host=gateway.host, port=gateway.port, user=user, **settings_).cursor()


def rows_of(gateway: GatewayProcess, user: str, sql: str, **options: Any) -> list[tuple[Any, ...]]:
    cursor = cursor_for(gateway, user, **options)
    cursor.execute(sql)
    return [tuple(r) for r in cursor.fetchall()]


def error_of(gateway: GatewayProcess, user: str, sql: str, **options: Any) -> Any:
    with pytest.raises(trino.exceptions.TrinoQueryError) as failure:
        rows_of(gateway, user, sql, **options)
    return failure.value


# --- queries and TPC-H -------------------------------------------------------------------------------------


def test_a_query_runs_on_snowflake(sf_gateway: GatewayProcess) -> None:
    assert rows_of(sf_gateway, "admin", "SELECT count(*), max(n_name) FROM nation") == [(25, "VIETNAM")]
    assert rows_of(sf_gateway, "admin", "SELECT N_NAME FROM NATION WHERE n_nationkey = 1") == [("ARGENTINA",)]


def normalised(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows comparable across engines: numbers as Decimal rounded to 4 places (float sums differ in the last bits)."""
    def value(v: Any) -> Any:
        if isinstance(v, float | Decimal | int) and not isinstance(v, bool):
            return Decimal(str(v)).quantize(Decimal("0.0001"))
        return v

    return [tuple(value(v) for v in row) for row in rows]


@pytest.mark.parametrize("query", TPCH_CASES, ids=[q.stem for q in TPCH])
@pytest.mark.parametrize("user", ["admin", "alice"])
def test_tpch_on_snowflake_equals_the_duckdb_demo(sf_gateway: GatewayProcess, query: Path, user: str) -> None:
    sql = query.read_text()
    assert normalised(rows_of(sf_gateway, user, sql)) == normalised(rows_of(sf_gateway, user, sql, catalog="demo"))


# --- policies ------------------------------------------------------------------------------------------------


def test_masks_and_filters_match_the_duckdb_demo(sf_gateway: GatewayProcess) -> None:
    sql = "SELECT c_custkey, c_name, c_address, c_phone, c_acctbal, c_nationkey FROM customer ORDER BY c_custkey"
    alice = rows_of(sf_gateway, "alice", sql)
    assert alice and {r[5] for r in alice} <= {1, 2, 3}
    assert normalised(alice) == normalised(rows_of(sf_gateway, "alice", sql, catalog="demo"))
    clerks = "SELECT o_orderkey, o_clerk FROM orders ORDER BY o_orderkey LIMIT 50"
    assert rows_of(sf_gateway, "alice", clerks) == rows_of(sf_gateway, "alice", clerks, catalog="demo")
    assert rows_of(sf_gateway, "admin", "SELECT c_phone FROM customer WHERE c_custkey = 1") == [("25-989-741-2988",)]


def test_the_keyed_hash_is_the_digest_of_its_definition(sf_gateway: GatewayProcess) -> None:
    import hashlib

    key = gateway_hash_key(sf_gateway)
    name = rows_of(sf_gateway, "admin", "SELECT c_name FROM customer WHERE c_custkey = 3")[0][0]

    def sha(text: str) -> str:
        return hashlib.sha256((key + text).encode()).hexdigest()

    assert rows_of(sf_gateway, "alice", "SELECT c_name FROM customer WHERE c_custkey = 3") == [(sha(sha(name)),)]


def test_a_filtered_row_answers_like_a_missing_one(sf_gateway: GatewayProcess) -> None:
    """The leak-proof form (CASE WHEN __gw_visible) runs on Snowflake: an error a hidden row would raise is
    not raised, exactly as for a key that does not exist."""
    statement = "SELECT count(*) FROM orders o WHERE o.o_orderkey = {key} AND CAST(o.o_comment AS integer) = 1"
    hidden, missing = 1, 8  # order 1 belongs to a customer of nation 15: filtered out for alice
    alice_hidden = rows_of(sf_gateway, "alice", statement.format(key=hidden))
    assert alice_hidden == rows_of(sf_gateway, "alice", statement.format(key=missing)) == [(0,)]
    assert error_of(sf_gateway, "admin", statement.format(key=hidden)).error_name == "INVALID_CAST_ARGUMENT"


def test_mixed_case_names_resolve_filtered_and_masked(sf_gateway: GatewayProcess) -> None:
    assert rows_of(sf_gateway, "admin", "SELECT orderkey, amount, secretnote, plain FROM mixedcase.orders "
                                        "ORDER BY 1") == [(1, Decimal("10.50"), "Top Secret 1", "a"),
                                                          (2, Decimal("20.00"), "hidden-2", "b"),
                                                          (3, Decimal("30.25"), "note 3", "c")]
    assert rows_of(sf_gateway, "alice", "SELECT OrderKey, SecretNote FROM MixedCase.Orders ORDER BY 1") == [
        (1, "xxx xxxxxx n"), (2, "xxxxxx-n")]
    tables = rows_of(sf_gateway, "admin", "SELECT table_schema, table_name FROM information_schema.tables "
                                          "WHERE table_schema IN ('mixedcase', 'kinds') ORDER BY 1, 2")
    assert tables == [("kinds", "all_types"), ("kinds", "slow"), ("mixedcase", "orders")]


SF_NAME = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(
    lambda n: not n.lower().startswith("__gw"))


@settings(max_examples=60, deadline=None)
@given(schema=SF_NAME, table=SF_NAME, columns=st.lists(SF_NAME, min_size=1, max_size=5,
                                                        unique_by=lambda n: n.lower()))
def test_generated_sql_names_every_stored_spelling_quoted(schema: str, table: str, columns: list[str]) -> None:
    """For any stored spelling (upper, lower, mixed), the SQL sent to Snowflake names exactly the stored names,
    each quoted (so Snowflake cannot fold it), and no other name of the table unquoted."""
    from gateway.catalog import TableName
    from gateway.sql.generate import SessionValues, to_backend_sql

    rows = [(schema, table, "BASE TABLE", None, c, "TEXT", None, None, None, None, "YES", None) for c in columns]
    described = describe_catalog(rows)[0]
    query = exp.select(*[exp.column(exp.to_identifier(c.name, quoted=True)) for c in described.columns]).from_(
        exp.table_(exp.to_identifier(described.name, quoted=True), db=exp.to_identifier(described.schema, quoted=True),
                   catalog="sf"))
    values = SessionValues(user="u", version="1", catalog="sf", schema=described.schema, time_zone="UTC")
    generated = to_backend_sql(query, dialect="snowflake", session=values, metadata=None,
                               tables=lambda name: described if name == TableName("sf", described.schema,
                                                                                  described.name) else None)
    parsed = sqlglot.parse_one(generated, read="snowflake")
    identifiers = list(parsed.find_all(exp.Identifier))
    assert all(i.quoted for i in identifiers), generated
    names = {i.this for i in identifiers}
    assert {schema, table, *columns} <= names, generated


# --- types -------------------------------------------------------------------------------------------------

EXPECTED_TYPES = {
    "k": "decimal(38,0)", "n": "decimal(12,3)", "smalln": "bigint", "f": "double", "flag": "boolean",
    "v": "varchar", "day": "date", "tm": "time(6)", "ts": "timestamp(6)", "tstz": "timestamp(6) with time zone",
    "tsl": "timestamp(6) with time zone", "bin": "varbinary", "doc": "json", "obj": "json", "arr": "json",
}


def test_every_type_is_described_as_trino_names_it(sf_gateway: GatewayProcess) -> None:
    described = dict(rows_of(sf_gateway, "admin", "SELECT column_name, data_type FROM information_schema.columns "
                                                  "WHERE table_schema = 'kinds' AND table_name = 'all_types'"))
    assert described == EXPECTED_TYPES


def test_every_type_reads_back(sf_gateway: GatewayProcess) -> None:
    rows = rows_of(sf_gateway, "admin", "SELECT * FROM kinds.all_types ORDER BY k")
    assert rows[0][:11] == (
        Decimal(1), Decimal("12.345"), 7, 2.25, True, "short", date(2024, 2, 29), time_of_day(13, 14, 15, 123456),
        datetime(2024, 2, 29, 13, 14, 15, 123456), rows[0][9], rows[0][10])
    assert rows[0][9].astimezone(UTC) == datetime(2024, 2, 29, 13, 14, 15, tzinfo=UTC)
    assert rows[0][11:] == (b"\x01\x02\xff", '{"a":[1,2]}', '{"b":true}', "[1,2,3]")
    # fakesnow sends a NULL timestamp as the epoch (its Arrow encoding; the connector reads what it is sent)
    assert rows[1][:8] == (Decimal(2), *([None] * 7)) and rows[1][11:] == tuple([None] * 4)


@given(precision=st.integers(1, 38), scale=st.integers(0, 12), length=st.integers(1, 16777216),
       digits=st.integers(0, 9))
def test_type_mapping_follows_the_modifiers(precision: int, scale: int, length: int, digits: int) -> None:
    scale = min(scale, precision)
    number = to_sql_type("NUMBER", precision, scale)
    assert number == (t.BIGINT if scale == 0 and precision <= 18 else t.decimal(precision, scale))
    assert to_sql_type("FIXED", precision, scale) == number  # result metadata names it FIXED
    text = to_sql_type("TEXT", length=length)
    assert text == (t.VARCHAR if length >= 16777216 else t.varchar(length))
    assert to_sql_type("TIMESTAMP_TZ", scale=digits) == t.timestamp(min(digits, 6), with_time_zone=True)
    assert to_sql_type("TIMESTAMP_NTZ", scale=digits) == t.timestamp(min(digits, 6))
    assert to_sql_type("TIME", scale=digits) == t.time(min(digits, 6))
    assert to_sql_type("GEOGRAPHY") == t.VARCHAR


# --- masks in the snowflake dialect, on the engine -------------------------------------------------------------

# No `$`: fakesnow replaces `$name` with a session variable even inside a string literal (Snowflake does not),
# and the connector binds %s parameters into the statement text.
MASK_TEXT = st.text(alphabet=st.characters(exclude_characters="\x00$", exclude_categories=("Cs",)), max_size=24)
STRING_MASKS = ("redact", "last4", "first4", "email_domain", "hash")
KEY = "gwtestkey-0123456789abcdef"


@pytest.fixture(scope="module")
def fakesnow_cursor(fakesnow: FakeSnow) -> Iterator[Any]:
    with fakesnow.connect(database=fakesnow.database) as connection, connection.cursor() as cursor:
        yield cursor


@settings(max_examples=40, deadline=None)
@given(value=MASK_TEXT, mask=st.sampled_from(STRING_MASKS))
def test_string_masks_mean_the_same_on_snowflake(fakesnow_cursor: Any, value: str, mask: str) -> None:
    column = exp.column("v")
    results = []
    for dialect in ("duckdb", "snowflake"):
        masked, _ = mask_expression(MaskRef(builtin=mask), column, parse_type("varchar"), dialect=dialect,
                                    hash_key=KEY)
        results.append(masked.sql(dialect))
    duck = duckdb.connect().execute(f"SELECT {results[0]} FROM (SELECT ?::VARCHAR AS v)", [value]).fetchone()
    fakesnow_cursor.execute(f"SELECT {results[1]} FROM (SELECT %s::VARCHAR AS v)", (value,))
    assert fakesnow_cursor.fetchone()[0] == (duck[0] if duck else None)


TYPED_VALUE = st.one_of(
    st.tuples(st.integers(-10**12, 10**12), st.just("NUMBER(38,0)")),
    st.tuples(st.decimals(-10**6, 10**6, places=2, allow_nan=False), st.just("NUMBER(12,2)")),
    st.tuples(st.dates(date(1900, 1, 1), date(2200, 12, 31)), st.just("DATE")),
    st.tuples(st.booleans(), st.just("BOOLEAN")),
    st.tuples(MASK_TEXT, st.just("VARCHAR")))


@settings(max_examples=40, deadline=None)
@given(typed=TYPED_VALUE)
def test_gateway_hash_of_any_value_is_the_duckdb_digest(fakesnow_cursor: Any, typed: tuple[Any, str]) -> None:
    value, snowflake_type = typed
    duck_type = {"NUMBER(38,0)": "BIGINT", "NUMBER(12,2)": "DECIMAL(12,2)"}.get(snowflake_type, snowflake_type)
    mask = MaskRef(sql="gateway_hash({column})")
    sql = {d: mask_expression(mask, exp.column("v"), parse_type("varchar"), dialect=d, hash_key=KEY)[0].sql(d)
           for d in ("duckdb", "snowflake")}
    duck = duckdb.connect().execute(f"SELECT {sql['duckdb']} FROM (SELECT CAST(? AS {duck_type}) AS v)",
                                    [value]).fetchall()
    fakesnow_cursor.execute(f"SELECT {sql['snowflake']} FROM (SELECT CAST(%s AS {snowflake_type}) AS v)",
                            (str(value) if isinstance(value, Decimal | date) else value,))
    assert fakesnow_cursor.fetchone()[0] == duck[0][0]


# --- QUERY_TAG, time cap, cancel, cost ---------------------------------------------------------------------------


def test_query_tag_and_time_limit_travel_with_the_statement(sf_gateway: GatewayProcess, fakesnow: FakeSnow) -> None:
    marker = f"tagged_{uuid.uuid4().hex[:8]}"
    cursor = cursor_for(sf_gateway, "alice", source=marker, client_tags=["limited", "team-x"])
    cursor.execute("SELECT count(*) FROM region")
    assert cursor.fetchall() == [[5]]
    sent = [s for s in fakesnow.sent() if (s.get("parameters") or {}).get("QUERY_TAG") and
            json.loads(s["parameters"]["QUERY_TAG"]).get("source") == marker]
    assert len(sent) == 1
    tag = json.loads(sent[0]["parameters"]["QUERY_TAG"])
    assert tag == {"gateway_query_id": cursor.query_id, "user": "alice", "cost_center": tag["cost_center"],
                   "source": marker, "client_tags": ["limited", "team-x"]}
    assert tag["cost_center"]  # the meter's: the identity's claim or the group mapping
    assert sent[0]["parameters"]["STATEMENT_TIMEOUT_IN_SECONDS"] == "2"  # the `limited` group's 2s
    assert "REGION" in sent[0]["sqlText"].upper() and "not-a-real-secret" not in json.dumps(sent)


@given(query_id=st.text(min_size=1, max_size=40), user=st.text(max_size=400), source=st.none() | st.text(max_size=400),
       tags=st.lists(st.text(max_size=300), max_size=20), limit=st.none() | st.floats(0.001, 1e6))
def test_the_query_tag_is_json_within_snowflakes_limit(query_id: str, user: str, source: str | None,
                                                        tags: list[str], limit: float | None) -> None:
    context = ExecutionContext(query_id=query_id, user=user, source=source, client_tags=tuple(tags),
                               cost_center="CC-1")
    tag = query_tag(context)
    assert tag is not None and len(tag) <= QUERY_TAG_MAX
    decoded = json.loads(tag)
    assert decoded["gateway_query_id"] == query_id and decoded["cost_center"] == "CC-1"
    assert decoded["client_tags"] == tags[:len(decoded["client_tags"])]
    parameters = statement_parameters(context, limit)
    assert ("STATEMENT_TIMEOUT_IN_SECONDS" in parameters) == (limit is not None)
    if limit is not None:
        assert int(parameters["STATEMENT_TIMEOUT_IN_SECONDS"]) >= limit


SLOW = "SELECT n FROM kinds.slow"


@pytest.mark.slow
def test_the_time_limit_ends_a_long_query(sf_gateway: GatewayProcess) -> None:
    began = time.monotonic()
    failure = error_of(sf_gateway, "admin", SLOW, client_tags=["limited"])
    assert failure.error_name == "EXCEEDED_TIME_LIMIT"
    assert time.monotonic() - began < 15
    assert rows_of(sf_gateway, "admin", "SELECT count(*) FROM nation") == [(25,)]  # the pool still serves


@pytest.mark.slow
def test_a_cancelled_query_ends_and_its_connection_is_not_reused(sf_gateway: GatewayProcess) -> None:
    cursor = cursor_for(sf_gateway, "admin")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            cursor.execute(SLOW)
            cursor.fetchall()
        except BaseException as error:
            errors.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 10
    while cursor.query_id is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    began = time.monotonic()
    cursor.cancel()
    worker.join(15)
    assert not worker.is_alive() and time.monotonic() - began < 10
    assert (errors and "USER_CANCELED" in str(errors[0])) or "canceled" in str(errors[0]).lower()
    info = httpx.get(f"{sf_gateway.url}/v1/query/{cursor.query_id}", headers={"X-Trino-User": "admin"}).json()
    assert info["state"] == "FAILED"
    for _ in range(6):  # more than the pool's 4 connections: none is stuck behind the cancelled statement
        assert rows_of(sf_gateway, "admin", "SELECT count(*) FROM region") == [(5,)]


def test_errors_are_the_gateways_without_internal_names(sf_gateway: GatewayProcess) -> None:
    missing = error_of(sf_gateway, "admin", "SELECT nope FROM nation")
    assert missing.error_name == "COLUMN_NOT_FOUND"
    table = error_of(sf_gateway, "admin", "SELECT * FROM tpch.no_such_table")
    assert table.error_name == "TABLE_NOT_FOUND"
    hidden = error_of(sf_gateway, "alice", "SELECT CAST(c_comment AS integer) FROM customer")
    assert hidden.error_name == "INVALID_CAST_ARGUMENT"
    for failure in (missing, table, hidden):
        assert "__gw" not in failure.message.lower() and "duckdb" not in failure.message.lower()


def test_cost_is_credits_of_the_warehouse_size(sf_gateway: GatewayProcess) -> None:
    cursor = cursor_for(sf_gateway, "admin")
    cursor.execute("SELECT count(*) FROM lineitem")
    cursor.fetchall()
    ledger = sf_gateway.config_path.parent / "audit.db"
    deadline, rows = time.monotonic() + 10, []
    while not rows and time.monotonic() < deadline:
        with sqlite3.connect(ledger) as connection:
            rows = connection.execute("SELECT cost, figures FROM charges WHERE query_id = ?",
                                      (cursor.query_id,)).fetchall()
        time.sleep(0.1)
    cost, figures_text = rows[0]
    figures = json.loads(figures_text)
    assert figures["warehouse_size"] == "MEDIUM"  # the backend's size, not the rate's default
    assert figures["credits"] > 0
    assert cost == pytest.approx(3.0 * figures["credits"])  # policies/cost.yaml: per_credit 3
    # fakesnow reports no execution time for a query id: the local time, as many credits as the size says
    assert figures["credits"] <= CREDITS_PER_HOUR["MEDIUM"] * figures["elapsed_seconds"] / 3600 + 1e-9


@given(st.sampled_from(sorted(CREDITS_PER_HOUR)))
def test_warehouse_sizes_are_snowflakes_table(size: str) -> None:
    assert warehouse_size(size) == size
    assert CREDITS_PER_HOUR[size] == 2 ** list(CREDITS_PER_HOUR).index(size)


# --- authentication, health, secrets ----------------------------------------------------------------------------


def encrypted_key_file(path: Path, passphrase: str) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(passphrase.encode())))
    return path


@pytest.mark.slow
def test_health_names_snowflake_when_it_is_down_and_secrets_stay_out(fakesnow: FakeSnow, demo_database: Path,
                                                                     tmp_path: Path) -> None:
    """Key-pair login (fakesnow accepts any key: that Snowflake accepts this one only a real account shows),
    an outage through a TCP proxy, recovery; the passphrase never appears in logs, errors or `gateway config`."""
    from tests.tcp_proxy import TcpProxy

    passphrase = "pp-never-shown-5e1c"
    proxy = TcpProxy(fakesnow.port)
    key_file = encrypted_key_file(tmp_path / "key.p8", passphrase)
    backend = snowflake_backend(fakesnow, port=proxy.port, connect_timeout_seconds=2, password=None,
                                credentials={"private_key": {"file": str(key_file)},
                                             "private_key_passphrase": {"env": "GW_TEST_SF_PASSPHRASE"}})
    config = {"backends": {"sf": backend, "demo": {"type": "duckdb", "path": str(demo_database), "schema": "tpch"}},
              "policies": {"dir": str(POLICIES)}}
    gateway = GatewayProcess(tmp_path, config, env={"GW_TEST_SF_PASSPHRASE": passphrase})
    try:
        with httpx.Client(base_url=gateway.url, timeout=15) as client:
            assert client.get("/health/ready").json()["backends"] == ["demo", "sf"]
            assert rows_of(gateway, "admin", "SELECT count(*) FROM nation") == [(25,)]
            proxy.cut()
            ready = client.get("/health/ready")
            assert ready.status_code == 503 and set(ready.json()["backends"]) == {"sf"}
            # the connector retries until its network timeout: the probe may give up first
            assert ready.json()["backends"]["sf"].startswith(("Snowflake is unavailable", "no answer in time"))
            failure = error_of(gateway, "admin", "SELECT count(*) FROM region")
            assert failure.error_name != "GENERIC_INTERNAL_ERROR"
            assert rows_of(gateway, "admin", "SELECT count(*) FROM demo.tpch.nation") == [(25,)]
            proxy.restore()
            deadline = time.monotonic() + 20
            while client.get("/health/ready").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert rows_of(gateway, "admin", "SELECT count(*) FROM region") == [(5,)]
        shown = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "gateway.cli", "config", "--config",
                                str(gateway.config_path)], capture_output=True, text=True, timeout=60,
                               env={"GW_TEST_SF_PASSPHRASE": passphrase, "PATH": "/usr/bin:/bin"})
        assert "GW_TEST_SF_PASSPHRASE" in shown.stdout and shown.returncode == 0
        for text in (shown.stdout, shown.stderr, gateway.log(), failure.message):
            assert passphrase not in text
    finally:
        gateway.stop()
        proxy.cut()


def test_configuration_is_checked(tmp_path: Path) -> None:
    from gateway.config import ConfigError, load_settings

    def problems(**backend: Any) -> str:
        path = tmp_path / "gateway.yaml"
        import yaml

        path.write_text(yaml.safe_dump({"backends": {"sf": {"type": "snowflake", **backend}}}))
        with pytest.raises(ConfigError) as failure:
            load_settings(path, environ={})
        return str(failure.value)

    missing = problems()
    assert all(f"backends.sf.{key}: is required" in missing for key in ("account", "user", "database"))
    assert "needs password or credentials.private_key" in missing
    both = problems(account="a", user="u", database="d", password={"env": "P"},
                    credentials={"private_key": {"file": "k.p8"}})
    assert "not both" in both
    assert "unknown warehouse size 'HUGE'" in problems(account="a", user="u", database="d", warehouse_size="HUGE")
    assert "unknown kind(s) token" in problems(account="a", user="u", database="d", password={"env": "P"},
                                               credentials={"token": {"env": "T"}})


@given(name=st.from_regex(r"__gw_[a-z_]{1,12}", fullmatch=True), value=st.text(alphabet="abcXYZ019 -", max_size=12),
       errno=st.sampled_from([100038, 100035, 2003, 2043, 1003]),
       prefix=st.sampled_from(["", "SQL compilation error:\n"]))
def test_errors_never_show_generated_names_or_row_values(name: str, value: str, errno: int, prefix: str) -> None:
    from snowflake.connector.errors import ProgrammingError

    from gateway.backends.snowflake import translate_error

    data_error = errno >= 100000
    message = f"{prefix}Numeric value '{value}' is not recognized near {name}.x or \"{name.upper()}\""
    state = "22018" if data_error else "42000"
    translated = translate_error(ProgrammingError(msg=message, errno=errno, sqlstate=state))
    assert "__gw" not in translated.message.lower()
    if data_error:
        assert f"'{value}'" not in translated.message
