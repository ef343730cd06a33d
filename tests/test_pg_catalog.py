"""The PostgreSQL view of the catalog (gateway/pg_catalog.py), driven through the planner with the postgres
dialect, as the PostgreSQL-wire frontend will: the exact statements psql, pgJDBC, DBeaver, Npgsql, psqlODBC,
psycopg and SQLAlchemy send (tests/pgwire_corpus/*.sql) answer correctly for a filtered identity, and no
catalog table, lookup or function ever reveals a table the identity may not read."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.backends.duckdb import DuckDBBackend
from gateway.errors import GatewayError, NotFound
from gateway.identity import Identity
from gateway.mask_key import MaskKey
from gateway.metadata import MetadataTables, build_metadata
from gateway.metrics import Metrics
from gateway.pg_catalog_tables import PG_TABLES, database_oid, insert_rows, namespace_oid, relation_oid, role_oid
from gateway.pg_types import BY_NAME, BY_OID, format_type, pg_type_for
from gateway.planner import Plan, Planner, PolicyContext
from gateway.policy.load import load_policies
from gateway.relations import Column, Table
from gateway.session import Session
from gateway.sql.rewrite import SecureViews
from gateway.types import (
    BIGINT,
    BOOLEAN,
    DATE,
    DOUBLE,
    INTEGER,
    REAL,
    SMALLINT,
    VARBINARY,
    VARCHAR,
    SqlType,
    array,
    decimal,
    timestamp,
    varchar,
)

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).parent / "pgwire_corpus"
CATALOG = "demo"
HIDDEN_SCHEMA, HIDDEN_TABLE = "hr", "salaries"  # no policy entry: nobody but nobody reads it


@dataclass
class Catalog:
    metadata: MetadataTables
    planner: Planner
    policy: PolicyContext
    users: dict[str, Identity]

    def plan(self, sql: str, user: str = "bob", *, dialect: str = "postgres", schema: str = "tpch",
             properties: dict[str, str] | None = None) -> Plan:
        session = Session(user=user, catalog=CATALOG, schema=schema, dialect=dialect, properties=properties or {})
        return self.planner.plan(sql, session=session, identity=self.users[user], snapshot=self.metadata.snapshot,
                                 policy=self.policy)

    def run(self, sql: str, user: str = "bob", *, pipeline: bool = False) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Plan and run `sql` on the metadata engine; `pipeline`: through its execution, as the pipeline runs
        it (typed columns, batches), else on a plain cursor (faster, for the property tests)."""
        plan = self.plan(sql, user)
        assert plan.target == "system" and plan.sql is not None, plan
        if pipeline:
            return asyncio.run(self._execute(plan.sql))
        cursor = self.metadata.engine.cursor()
        try:
            result = cursor.execute(plan.sql)
            return [d[0] for d in result.description], result.fetchall()
        finally:
            cursor.close()

    async def _execute(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        execution = self.metadata.engine.execution(sql)
        await execution.start()
        rows: list[tuple[Any, ...]] = []
        while (batch := await execution.fetch(1000)) is not None:
            rows.extend(tuple(r) for r in batch)
        await execution.cancel()
        for column in execution.columns:  # every result column has a PostgreSQL type to be described as
            assert pg_type_for(column.type).oid in BY_OID, column
        return [column.name for column in execution.columns], rows


def _warehouse(path: Path) -> None:
    connection = duckdb.connect(str(path))
    connection.execute("CREATE SCHEMA tpch; CREATE SCHEMA hr; CREATE SCHEMA samples")
    connection.execute("CREATE TABLE tpch.nation (n_nationkey BIGINT NOT NULL, n_name VARCHAR, n_regionkey BIGINT, "
                       "n_comment VARCHAR)")
    connection.execute("CREATE TABLE tpch.customer (c_custkey BIGINT, c_name VARCHAR, c_address VARCHAR, "
                       "c_nationkey BIGINT, c_phone VARCHAR, c_acctbal DECIMAL(15,2), c_mktsegment VARCHAR, "
                       "c_comment VARCHAR)")
    connection.execute("CREATE TABLE tpch.orders (o_orderkey BIGINT, o_custkey BIGINT, o_orderstatus VARCHAR, "
                       "o_totalprice DECIMAL(15,2), o_orderdate DATE, o_orderpriority VARCHAR, o_clerk VARCHAR, "
                       "o_shippriority INTEGER, o_comment VARCHAR)")
    connection.execute("CREATE TABLE hr.salaries (employee VARCHAR, salary DECIMAL(12,2))")
    connection.execute("COMMENT ON TABLE hr.salaries IS 'secret pay'")
    connection.execute("CREATE TABLE samples.types (b BOOLEAN, i INTEGER, s SMALLINT, r REAL, d DOUBLE, "
                       "ts TIMESTAMP, tstz TIMESTAMPTZ, dt DATE, bl BLOB, a INTEGER[], dec DECIMAL(10,3))")
    connection.execute("COMMENT ON TABLE tpch.nation IS 'the nations'")
    connection.execute("COMMENT ON COLUMN tpch.nation.n_name IS 'name of the nation'")
    connection.execute("INSERT INTO tpch.nation VALUES (6, 'FRANCE', 3, 'x'), (7, 'GERMANY', 3, 'y'), "
                       "(1, 'ARGENTINA', 1, 'z')")
    connection.close()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    path = tmp_path_factory.mktemp("pgcatalog") / "warehouse.duckdb"
    _warehouse(path)
    backend = DuckDBBackend(name=CATALOG, path=path)

    async def tables() -> Any:
        await backend.start()
        return await backend.tables()

    metadata = build_metadata({CATALOG: asyncio.run(tables())}, workers=1)
    planner = Planner(backends={CATALOG: backend}, default_catalog=CATALOG, version="test", metrics=Metrics(),
                      mask_key=MaskKey.generate())
    dev_users = yaml.safe_load((ROOT / "policies" / "dev_users.yaml").read_text())["users"]
    users = {name: Identity.create(name, groups=facts.get("groups", []), attributes=facts.get("attributes", {}))
             for name, facts in dev_users.items()}
    users["nobody"] = Identity.create("nobody")
    yield Catalog(metadata, planner, PolicyContext(load_policies(ROOT / "policies"), SecureViews()), users)
    metadata.engine.close()
    asyncio.run(backend.close())


# -- the corpus --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    name: str
    source: str
    sql: str
    contains: tuple[str, ...] | None
    empty: bool
    columns: tuple[str, ...] | None


def _blocks() -> list[Block]:
    blocks: list[Block] = []
    for file in sorted(CORPUS.glob("*.sql")):
        for chunk in re.split(r"^(?=-- name: )", file.read_text(), flags=re.MULTILINE):
            if not chunk.strip():
                continue
            headers: dict[str, str] = {}
            body: list[str] = []
            for line in chunk.splitlines():
                header = re.match(r"^-- (name|source|contains|empty|columns)\b:?\s*(.*)$", line)
                if header and not body:
                    headers[header.group(1)] = header.group(2).strip()
                else:
                    body.append(line)
            sql = "\n".join(body).strip().rstrip(";")
            blocks.append(Block(
                name=f"{file.stem}: {headers['name']}", source=headers["source"], sql=sql,
                contains=tuple(v.strip() for v in headers["contains"].split("|")) if "contains" in headers else None,
                empty="empty" in headers,
                columns=tuple(v.strip() for v in headers["columns"].split(",")) if "columns" in headers else None))
    return blocks


BLOCKS = _blocks()


def _oids(text: str) -> str:
    def oid(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2)
        if kind == "nsp":
            return str(namespace_oid(CATALOG, name))
        if name == "database":
            return str(database_oid(CATALOG))
        if name == "role":
            return str(role_oid("bob"))
        if name.startswith("type:"):
            return str(BY_NAME[name.removeprefix("type:")].oid)
        schema, table = name.split(".")
        return str(relation_oid(CATALOG, schema, table))

    return re.sub(r"\{(oid|nsp):([a-z_.:]+)\}", oid, text)


def _hidden_values() -> set[str]:
    return {HIDDEN_TABLE, HIDDEN_SCHEMA, "secret pay", str(relation_oid(CATALOG, HIDDEN_SCHEMA, HIDDEN_TABLE)),
            str(namespace_oid(CATALOG, HIDDEN_SCHEMA)), "employee", "salary"}


def _leaks(rows: list[tuple[Any, ...]], hidden: set[str]) -> list[Any]:
    found = []
    for row in rows:
        for value in row:
            items = value if isinstance(value, list | tuple) else [value]
            found.extend(v for v in items if v is not None and str(v) in hidden)
    return found


def test_the_corpus_names_its_sources() -> None:
    assert len(BLOCKS) >= 30
    assert all(block.source for block in BLOCKS)
    assert {b.name.split(":")[0] for b in BLOCKS} >= {"psql", "pgjdbc", "dbeaver", "bi"}


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_client_statement_answers_for_a_filtered_identity(catalog: Catalog, block: Block) -> None:
    columns, rows = catalog.run(_oids(block.sql), pipeline=True)
    assert not _leaks(rows, _hidden_values())
    if block.empty:
        assert rows == []
    if block.columns is not None:
        assert tuple(columns) == block.columns
    if block.contains is not None:
        expected = [_oids(v) for v in block.contains]
        assert any(_matches(row, expected) for row in rows), (expected, rows[:10])


def _matches(row: tuple[Any, ...], expected: list[str]) -> bool:
    """The row starts with the expected values (as text; `x*` matches any text starting with x)."""
    return len(row) >= len(expected) and all(
        str(value).startswith(want[:-1]) if want.endswith("*") else str(value) == want
        for value, want in zip(row, expected, strict=False))


# -- nothing about hidden tables -------------------------------------------------------------------------------

DATA_TABLES = {("tpch", "nation"), ("tpch", "customer"), ("tpch", "orders"), ("samples", "types"),
               (HIDDEN_SCHEMA, HIDDEN_TABLE)}
IDENTITIES = ["bob", "alice", "sam", "audrey", "fiona", "nobody", "admin"]


def _visible(catalog: Catalog, user: str) -> set[tuple[str, str]]:
    visibility = catalog.planner.visibility(catalog.users[user], None, catalog.metadata.snapshot,
                                            catalog.policy.policy)
    return {(t.schema, t.table) for t in visibility.tables if t.catalog == CATALOG}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=st.sampled_from(IDENTITIES), table=st.sampled_from(sorted(PG_TABLES)),
       star=st.booleans())
def test_no_catalog_table_shows_a_table_the_identity_cannot_read(catalog: Catalog, user: str,
                                                                  table: tuple[str, str], star: bool) -> None:
    schema, name = table
    visible = _visible(catalog, user)
    every = DATA_TABLES
    hidden: set[str] = set()
    for hidden_schema, hidden_table in every - visible:
        hidden |= {hidden_table, str(relation_oid(CATALOG, hidden_schema, hidden_table))}
    for hidden_schema in {s for s, _ in every} - {s for s, _ in visible}:
        hidden |= {hidden_schema, str(namespace_oid(CATALOG, hidden_schema))}
    hidden |= {"secret pay", "employee", "salary"} if ("hr", "salaries") not in visible else set()
    sql = f"SELECT {'*' if star else 'count(*)'} FROM {schema}.{name}"
    columns, rows = catalog.run(sql, user)
    assert not _leaks(rows, hidden)
    if (schema, name) == ("pg_catalog", "pg_class") and star:
        assert {r[columns.index("relname")] for r in rows} == {t for _, t in visible}


@pytest.mark.parametrize(("user", "schema", "table"), [("bob", "hr", "salaries"), ("bob", "hr", "missing"),
                                                       ("bob", "tpch", "nation"), ("audrey", "tpch", "nation")])
def test_a_hidden_table_resolves_as_a_missing_one(catalog: Catalog, user: str, schema: str, table: str) -> None:
    _resolves_as_missing(catalog, user, schema, table)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=st.sampled_from(IDENTITIES),
       schema=st.sampled_from(["tpch", "hr", "samples", "nope"]),
       table=st.sampled_from(["nation", "customer", "orders", "salaries", "types", "missing"]))
def test_any_hidden_table_resolves_as_a_missing_one(catalog: Catalog, user: str, schema: str, table: str) -> None:
    _resolves_as_missing(catalog, user, schema, table)


def _resolves_as_missing(catalog: Catalog, user: str, schema: str, table: str) -> None:
    """regclass, to_regclass and has_table_privilege answer for a table the caller may not read exactly as for
    one that does not exist: same error, same NULL."""
    readable = (schema, table) in _visible(catalog, user)
    name = f"{schema}.{table}"
    for sql in (f"SELECT '{name}'::regclass", f"SELECT has_table_privilege('{name}', 'SELECT')"):
        if readable:
            assert catalog.run(sql, user)[1][0][0] in (relation_oid(CATALOG, schema, table), True)
        else:
            with pytest.raises(NotFound) as refused:
                catalog.plan(sql, user)
            assert refused.value.message == f'relation "{name}" does not exist'
    oid = catalog.run(f"SELECT to_regclass('{name}')", user)[1][0][0]
    assert oid == (relation_oid(CATALOG, schema, table) if readable else None)
    # an OID guessed from the name: lookups by OID see only readable rows too
    guessed = relation_oid(CATALOG, schema, table)
    _, rows = catalog.run(f"SELECT obj_description({guessed}, 'pg_class'), pg_table_is_visible({guessed}), "
                          f"col_description({guessed}, 1), has_table_privilege({guessed}, 'select')", user)
    if not readable:
        assert rows == [(None, False, None, False)]


# -- functions and types ---------------------------------------------------------------------------------------


def test_builtin_type_oids_are_postgresql_s() -> None:
    expected = {"bool": 16, "bytea": 17, "int8": 20, "int2": 21, "int4": 23, "text": 25, "oid": 26, "json": 114,
                "float4": 700, "float8": 701, "bpchar": 1042, "varchar": 1043, "date": 1082, "time": 1083,
                "timestamp": 1114, "timestamptz": 1184, "interval": 1186, "timetz": 1266, "numeric": 1700,
                "uuid": 2950, "jsonb": 3802, "_int4": 1007, "_text": 1009, "_int8": 1016, "_varchar": 1015,
                "_bool": 1000, "_float8": 1022, "_numeric": 1231, "_timestamptz": 1185, "regclass": 2205}
    assert {name: BY_NAME[name].oid for name in expected} == expected


@pytest.mark.parametrize(("kind", "oid", "typname", "typmod", "formatted"), [
    (BOOLEAN, 16, "bool", -1, "boolean"), (SMALLINT, 21, "int2", -1, "smallint"),
    (INTEGER, 23, "int4", -1, "integer"), (BIGINT, 20, "int8", -1, "bigint"), (REAL, 700, "float4", -1, "real"),
    (DOUBLE, 701, "float8", -1, "double precision"), (VARCHAR, 1043, "varchar", -1, "character varying"),
    (varchar(25), 1043, "varchar", 29, "character varying(25)"), (decimal(15, 2), 1700, "numeric", 983046,
                                                                  "numeric(15,2)"),
    (DATE, 1082, "date", -1, "date"), (timestamp(3), 1114, "timestamp", 3, "timestamp(3) without time zone"),
    (timestamp(9, with_time_zone=True), 1184, "timestamptz", 6, "timestamp(6) with time zone"),
    (VARBINARY, 17, "bytea", -1, "bytea"), (array(INTEGER), 25, "text", -1, "text"),
    (SqlType("uuid"), 2950, "uuid", -1, "uuid"),
])
def test_trino_types_map_to_postgresql_types(kind: SqlType, oid: int, typname: str, typmod: int,
                                             formatted: str) -> None:
    pg = pg_type_for(kind)
    assert (pg.oid, pg.typname, pg.typmod) == (oid, typname, typmod)
    assert format_type(pg.oid, pg.typmod) == formatted


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(oid=st.sampled_from([*sorted({t.oid for t in BY_NAME.values()}), 0, 99999]),
       typmod=st.one_of(st.none(), st.integers(min_value=-1, max_value=(1000 << 16) + 1000)))
def test_format_type_in_sql_agrees_with_the_table(catalog: Catalog, oid: int, typmod: int | None) -> None:
    """The SQL format_type (over pg_attribute's columns) gives what the Python table gives, for any typmod."""
    mod = "NULL" if typmod is None else str(typmod)
    _, rows = catalog.run(f"SELECT format_type(t.oid, {mod}) FROM (SELECT {oid} AS oid) t")
    assert rows[0][0] == (format_type(oid, typmod) or "???")


def test_columns_of_a_table_in_pg_attribute_and_information_schema(catalog: Catalog) -> None:
    relid = relation_oid(CATALOG, "samples", "types")
    _, attributes = catalog.run(f"SELECT attname, atttypid, format_type(atttypid, atttypmod) FROM pg_attribute "
                                f"WHERE attrelid = {relid} ORDER BY attnum")
    _, columns = catalog.run("SELECT column_name, data_type, udt_name FROM information_schema.columns "
                             "WHERE table_name = 'types' ORDER BY ordinal_position")
    assert attributes == [("b", 16, "boolean"), ("i", 23, "integer"), ("s", 21, "smallint"), ("r", 700, "real"),
                          ("d", 701, "double precision"), ("ts", 1114, "timestamp(6) without time zone"),
                          ("tstz", 1184, "timestamp(6) with time zone"), ("dt", 1082, "date"),
                          ("bl", 17, "bytea"), ("a", 25, "text"), ("dec", 1700, "numeric(10,3)")]
    assert [(c, u) for c, _, u in columns] == [("b", "bool"), ("i", "int4"), ("s", "int2"), ("r", "float4"),
                                                ("d", "float8"), ("ts", "timestamp"), ("tstz", "timestamptz"),
                                                ("dt", "date"), ("bl", "bytea"), ("a", "text"), ("dec", "numeric")]
    assert columns[9][1] == "text" and columns[0][1] == "boolean"


def test_session_functions(catalog: Catalog) -> None:
    columns, rows = catalog.run("SELECT version(), current_schema(), current_schemas(false), current_schemas(true), "
                                "current_database(), current_user, session_user, pg_backend_pid(), "
                                "quote_ident('Mixed Case'), quote_ident('plain'), set_config('a', 'b', false), "
                                "array_upper(ARRAY[1, 2, 3], 1), array_lower(ARRAY[1, 2, 3], 1), "
                                "pg_encoding_to_char(6), has_schema_privilege('tpch', 'USAGE')")
    assert columns[:3] == ["version", "current_schema", "current_schemas"]
    assert rows[0][0].startswith("PostgreSQL 16.4 ")
    assert rows[0][1:] == ("tpch", ["tpch"], ["pg_catalog", "tpch"], "demo", "bob", "bob", 0, '"Mixed Case"',
                           "plain", "b", 3, 1, "UTF8", True)


def test_unknown_setting_and_hidden_schema_fail_as_postgresql_does(catalog: Catalog) -> None:
    with pytest.raises(NotFound, match='unrecognized configuration parameter "no_such"'):
        catalog.plan("SELECT current_setting('no_such')")
    assert catalog.run("SELECT current_setting('no_such', true)")[1] == [(None,)]
    for schema in ("hr", "nope"):
        with pytest.raises(NotFound, match=f'schema "{schema}" does not exist'):
            catalog.plan(f"SELECT has_schema_privilege('{schema}', 'USAGE')")


def test_engine_catalogs_and_generated_names_are_unreachable(catalog: Catalog) -> None:
    for sql in ("SELECT * FROM duckdb_tables()", "SELECT * FROM pg_catalog.pg_statistic",
                "SELECT * FROM information_schema_tables", "SELECT __gw_catalog FROM pg_class",
                "SELECT * FROM pg_class c JOIN nation n ON true", "SELECT pg_read_file('/etc/passwd')",
                "SELECT * FROM main.pg_catalog_pg_class"):
        with pytest.raises(GatewayError):
            plan = catalog.plan(sql)
            raise AssertionError(f"planned {sql!r}: {plan.sql}")


def test_dialect_is_part_of_the_plan_cache_key(catalog: Catalog) -> None:
    postgres = catalog.plan("SELECT version()")
    trino = catalog.plan("SELECT version()", dialect="trino")
    assert postgres.target == "system" and "PostgreSQL" in (postgres.sql or "")
    assert "PostgreSQL" not in (trino.sql or "")


# -- PostgreSQL-dialect queries over data tables ---------------------------------------------------------------


def test_postgres_dialect_data_query_gets_the_policy_rewrite(catalog: Catalog) -> None:
    plan = catalog.plan('SELECT "c_name", c_nationkey::varchar AS k, now() AS at FROM customer '
                        "WHERE c_mktsegment ILIKE 'b%' AND c_acctbal > 0 AND true ORDER BY 1 LIMIT 5 OFFSET 1")
    assert plan.target == CATALOG and plan.sql is not None
    assert "IN (6, 7)" in plan.sql and "ILIKE" in plan.sql and "LIMIT 5 OFFSET 1" in plan.sql
    assert plan.restricted and any("c_name" in rule for rule in plan.rules)
    assert catalog.plan("SELECT now()").target == CATALOG  # no catalog table, no catalog function: a backend query
    with pytest.raises(GatewayError, match="Access Denied"):
        catalog.plan("SELECT * FROM hr.salaries")


@dataclass(frozen=True)
class Spelled:
    trino: str
    postgres: str


def _query_pair(table: str, columns: list[str], cast: bool, quoted: bool, bound: int, limit: int | None,
                offset: int | None, truth: bool) -> Spelled:
    names = [f'"{c}"' if quoted else c for c in columns]
    trino_select, postgres_select = list(names), list(names)
    if cast:
        trino_select[0] = f"CAST({names[0]} AS varchar) AS v"
        postgres_select[0] = f"{names[0]}::varchar AS v"
    key = {"customer": "c_custkey", "orders": "o_orderkey", "nation": "n_nationkey"}[table]
    where = f"{key} >= {bound}" + (" AND true" if truth else " OR false")
    tail = " ORDER BY 1"
    trino_tail = tail + (f" OFFSET {offset}" if offset is not None else "") + (
        f" LIMIT {limit}" if limit is not None else "")
    postgres_tail = tail + (f" LIMIT {limit}" if limit is not None else "") + (
        f" OFFSET {offset}" if offset is not None else "")
    return Spelled(trino=f"SELECT {', '.join(trino_select)} FROM tpch.{table} WHERE {where}{trino_tail}",
                   postgres=f"SELECT {', '.join(postgres_select)} FROM tpch.{table} WHERE {where}{postgres_tail}")


TABLE_COLUMNS = {
    "customer": ["c_custkey", "c_name", "c_address", "c_nationkey", "c_phone", "c_acctbal"],
    "orders": ["o_orderkey", "o_custkey", "o_totalprice", "o_orderdate", "o_clerk", "o_comment"],
    "nation": ["n_nationkey", "n_name", "n_regionkey", "n_comment"],
}


@st.composite
def query_pairs(draw: st.DrawFn) -> Spelled:
    table = draw(st.sampled_from(sorted(TABLE_COLUMNS)))
    columns = draw(st.lists(st.sampled_from(TABLE_COLUMNS[table]), min_size=1, max_size=4, unique=True))
    return _query_pair(table, columns, draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, 10**6)),
                       draw(st.none() | st.integers(0, 1000)), draw(st.none() | st.integers(0, 1000)),
                       draw(st.booleans()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=query_pairs(), user=st.sampled_from(IDENTITIES))
def test_the_same_query_in_trino_and_postgresql_plans_the_same(catalog: Catalog, pair: Spelled, user: str) -> None:
    """Row filters, masks and refusals do not depend on the dialect a query is written in."""
    outcomes = []
    for dialect, sql in (("trino", pair.trino), ("postgres", pair.postgres)):
        try:
            plan = catalog.plan(sql, user, dialect=dialect)
            outcomes.append((plan.target, plan.sql, plan.rules, plan.restricted))
        except GatewayError as error:
            outcomes.append((type(error).__name__, error.message, (), False))
    assert outcomes[0] == outcomes[1]


def test_catalog_queries_are_counted(catalog: Catalog) -> None:
    counter = catalog.planner.metrics.pg_catalog_queries
    before = counter._value.get()
    catalog.plan(f"SELECT relname FROM pg_class WHERE relname = 'counted_{before}'")
    assert counter._value.get() == before + 1


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pid=st.integers(1, 2**31 - 1), style=st.sampled_from(["ISO, MDY", "ISO, DMY", "German"]))
def test_answers_follow_the_session_s_settings(catalog: Catalog, pid: int, style: str) -> None:
    """Two connections of one identity never share a cached answer that depends on their settings."""
    plan = catalog.plan("SELECT pg_backend_pid(), current_setting('datestyle')",
                        properties={"pg_backend_pid": str(pid), "DateStyle": style})
    assert plan.sql is not None and str(pid) in plan.sql and style in plan.sql


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(st.none() | st.integers(-2**63, 2**63 - 1), st.none() | st.text(max_size=20),
                               st.none() | st.booleans(), st.none() | st.lists(st.integers(-2**31, 2**31 - 1),
                                                                                max_size=3)),
                     max_size=40))
def test_bulk_insert_keeps_every_row_as_it_was(rows: list[tuple[Any, ...]]) -> None:
    connection = duckdb.connect()
    try:
        connection.execute("CREATE TABLE t (n BIGINT, s VARCHAR, b BOOLEAN, l BIGINT[])")
        insert_rows(connection, "t", rows)
        assert connection.execute("SELECT * FROM t").fetchall() == rows
    finally:
        connection.close()


_SCALARS = st.sampled_from([BOOLEAN, SMALLINT, INTEGER, BIGINT, REAL, DOUBLE, VARCHAR, VARBINARY, DATE,
                            SqlType("uuid"), SqlType("json"), SqlType("interval day to second"),
                            SqlType("unknown")])
_TYPES = st.recursive(
    _SCALARS | st.builds(varchar, st.integers(1, 2**31 - 2)) | st.builds(decimal, st.integers(1, 38),
                                                                         st.integers(0, 38))
    | st.builds(timestamp, st.integers(0, 12), with_time_zone=st.booleans())
    | st.builds(lambda n: SqlType("char", (n,)), st.integers(1, 2**31 - 5)),
    lambda inner: st.builds(array, inner) | st.builds(lambda k, v: SqlType("map", children=(k, v)), inner, inner),
    max_leaves=4)


@settings(max_examples=20, deadline=None)
@given(kinds=st.lists(_TYPES, min_size=1, max_size=8))
def test_every_column_type_builds_the_catalog(kinds: list[SqlType]) -> None:
    """A type no test thought of must not stop the catalog build (the gateway would not start)."""
    table = Table(schema="s", name="t", columns=tuple(Column(f"c{i}", kind) for i, kind in enumerate(kinds)))
    metadata = build_metadata({CATALOG: [table]}, workers=1)
    try:
        rows = metadata.engine.cursor().execute(
            "SELECT atttypid, atttypmod FROM pg_catalog_pg_attribute ORDER BY attnum").fetchall()
        assert rows == [(pg_type_for(k).oid, pg_type_for(k).typmod) for k in kinds]
    finally:
        metadata.engine.close()
