"""Statement classification and name resolution, as pure functions."""

from __future__ import annotations

import pytest
import sqlglot
from hypothesis import given
from hypothesis import strategies as st_h
from sqlglot import exp

from gateway.catalog import CatalogSnapshot, TableName
from gateway.errors import GatewayError, UserError
from gateway.relations import Column, Table
from gateway.sql import statements as st
from gateway.sql.generate import SessionValues, to_backend_sql
from gateway.sql.parameters import bind_parameters, number_placeholders
from gateway.sql.resolve import resolve_query
from gateway.types import BIGINT, VARCHAR

SNAPSHOT = CatalogSnapshot({
    "demo": [Table(schema="tpch", name="nation", columns=(Column("n_nationkey", BIGINT), Column("n_name", VARCHAR))),
             Table(schema="tpch", name="region", columns=(Column("r_regionkey", BIGINT),))],
})
SESSION = SessionValues(user="alice", version="9.9", catalog="demo", schema="tpch", time_zone="UTC")


def resolve(sql: str) -> tuple[list[TableName], str]:
    statement = st.classify(sql)
    assert isinstance(statement, st.QueryStatement)
    resolved = resolve_query(statement.tree, catalog="demo", schema="tpch", snapshot=SNAPSHOT, default_catalog="demo")
    return list(resolved.tables), to_backend_sql(resolved.tree, dialect="duckdb", session=SESSION, metadata=None)


@pytest.mark.parametrize(("sql", "expected"), [
    ("USE demo.tpch", st.Use("demo", "tpch")),
    ('USE "TPCH"', st.Use(None, "tpch")),
    ("SET SESSION query_max_run_time = '1h'", st.SetSession("query_max_run_time", "1h")),
    ("SET SESSION hive.x = true", st.SetSession("hive.x", "true")),
    ("RESET SESSION query_max_run_time", st.ResetSession("query_max_run_time")),
    ("DEALLOCATE PREPARE s1", st.Deallocate("s1")),
    ("START TRANSACTION READ ONLY", st.StartTransaction(read_only=True)),
    ("START TRANSACTION READ WRITE", st.StartTransaction(read_only=False)),
    ("COMMIT", st.EndTransaction(commit=True)),
    ("ROLLBACK", st.EndTransaction(commit=False)),
    ("SHOW CATALOGS LIKE 'd%'", st.Show("CATALOGS", (), "d%")),
    ("SHOW TABLES FROM demo.tpch LIKE 'n\\_%' ESCAPE '\\'", st.Show("TABLES", ("demo", "tpch"), "n\\_%", "\\")),
    ('DESCRIBE "Demo".tpch.nation', st.Show("COLUMNS", ("demo", "tpch", "nation"))),
    ("DESCRIBE OUTPUT s1", st.DescribeOutput("s1")),
    ("CALL system.runtime.kill_query(query_id => '20250101_000000_00001_abcde', message => 'it''s late')",
     st.Call(("system", "runtime", "kill_query"),
             (("query_id", "20250101_000000_00001_abcde"), ("message", "it's late")))),
    ("call System.Runtime.Kill_Query('q1')", st.Call(("system", "runtime", "kill_query"), ((None, "q1"),))),
])
def test_classify(sql: str, expected: object) -> None:
    assert st.classify(sql) == expected


def test_prepare_keeps_the_text_and_checks_it() -> None:
    assert st.classify("PREPARE s1 FROM SELECT ? + 1") == st.Prepare("s1", "SELECT ? + 1")
    with pytest.raises(GatewayError) as error:
        st.classify("PREPARE s1 FROM DELETE FROM nation")
    assert error.value.error_name == "READ_ONLY_VIOLATION"


@pytest.mark.parametrize(("sql", "name"), [
    ("SHOW TRANSACTIONS", "NOT_SUPPORTED"),
    ("CALL system.runtime.kill_query(query_id => 'x'", "SYNTAX_ERROR"),
    ("CALL system.runtime.kill_query(query_id => x)", "SYNTAX_ERROR"),
    ("COMMENT ON TABLE nation IS 'x'", "NOT_SUPPORTED"),
    ("UPDATE nation SET n_name = 'x'", "READ_ONLY_VIOLATION"),
    ("EXECUTE s1 USING n_name", "SYNTAX_ERROR"),
    ("EXECUTE s1 USING (SELECT 1)", "SYNTAX_ERROR"),
    ("", "SYNTAX_ERROR"),
])
def test_refused_statements(sql: str, name: str) -> None:
    with pytest.raises(GatewayError) as error:
        st.classify(sql)
    assert error.value.error_name == name


def test_parameters_are_bound_in_textual_order_as_nodes() -> None:
    statement = st.classify("EXECUTE IMMEDIATE 'SELECT ? AS a FROM t WHERE x = ? AND y IN (?)' USING 1, 'it''s', 3")
    assert isinstance(statement, st.Execute) and statement.sql is not None
    tree = st.classify(number_placeholders(statement.sql))
    assert isinstance(tree, st.QueryStatement)
    bound = bind_parameters(tree.tree, statement.parameters)
    assert bound.sql(dialect="trino") == "SELECT 1 AS a FROM t WHERE x = 'it''s' AND y IN (3)"


@given(st_h.lists(st_h.sampled_from(["select", "where", "limit", "offset", "having", "order"]), min_size=1,
                  max_size=6, unique=True))
def test_parameters_go_where_they_stand_in_the_text(places: list[str]) -> None:
    # The regression: `WHERE n_regionkey = ? LIMIT ?` with (1, 2) bound 1 to LIMIT.
    slots = {place: "?" if place in places else "" for place in ["select", "where", "limit", "offset", "having",
                                                                 "order"]}
    sql = (f"SELECT a{', ? AS p' if slots['select'] else ''} FROM t"
           f"{' WHERE x = ?' if slots['where'] else ''} GROUP BY a"
           f"{' HAVING count(*) > ?' if slots['having'] else ''}"
           f"{' ORDER BY a + ?' if slots['order'] else ''}"
           f"{' OFFSET ?' if slots['offset'] else ''}{' LIMIT ?' if slots['limit'] else ''}")
    count = sql.count("?")
    values = [exp.Literal.number(1000 + i) for i in range(count)]
    tree = st.classify(number_placeholders(sql))
    assert isinstance(tree, st.QueryStatement)
    bound = bind_parameters(tree.tree, values).sql(dialect="trino")
    expected = sql
    for i in range(count):
        expected = expected.replace("?", str(1000 + i), 1)
    assert sqlglot.parse_one(bound, read="trino") == sqlglot.parse_one(expected, read="trino")


def test_placeholder_names_cannot_be_forged() -> None:
    tree = st.classify(number_placeholders("SELECT ? AS a, :__gw_param_0 AS b"))
    assert isinstance(tree, st.QueryStatement)
    with pytest.raises(UserError, match="named parameters"):
        bind_parameters(tree.tree, [exp.Literal.number(1), exp.Literal.number(2)])


def test_resolve_qualifies_and_generates_backend_names() -> None:
    tables, sql = resolve("SELECT n_name FROM nation JOIN demo.tpch.region ON n_nationkey = r_regionkey")
    assert tables == [TableName("demo", "tpch", "nation"), TableName("demo", "tpch", "region")]
    assert sql == "SELECT n_name FROM tpch.nation JOIN tpch.region ON n_nationkey = r_regionkey"


def test_a_cte_cannot_hide_a_qualified_table() -> None:
    tables, sql = resolve("WITH nation AS (SELECT 1 AS n_name) SELECT * FROM nation, tpch.nation AS real")
    assert tables == [TableName("demo", "tpch", "nation")]
    assert "FROM __gw_cte_0 AS nation, tpch.nation AS real" in sql


def test_quoted_mixed_case_names_fold_to_lower_case() -> None:
    tables, _ = resolve('SELECT * FROM "DEMO"."TPCH"."Nation"')
    assert tables == [TableName("demo", "tpch", "nation")]


def test_session_functions_and_column_names() -> None:
    _, sql = resolve("SELECT current_user, version(), 1 + 1, n_name FROM nation")
    assert sql == "SELECT 'alice' AS _col0, '9.9' AS _col1, 1 + 1 AS _col2, n_name FROM tpch.nation"


def test_unknown_names_fail_with_trino_errors() -> None:
    for sql, name in [("SELECT * FROM nope", "TABLE_NOT_FOUND"), ("SELECT * FROM x.nation", "SCHEMA_NOT_FOUND"),
                      ("SELECT * FROM c.x.nation", "CATALOG_NOT_FOUND"),
                      ("SELECT * FROM a.b.c.d", "SYNTAX_ERROR")]:
        with pytest.raises(GatewayError) as error:
            resolve(sql)
        assert error.value.error_name == name, sql


def test_table_functions_are_refused() -> None:
    statement = st.classify("SELECT * FROM TABLE(sequence(1, 3))")
    assert isinstance(statement, st.QueryStatement)
    with pytest.raises(GatewayError):
        resolve_query(statement.tree, catalog="demo", schema="tpch", snapshot=SNAPSHOT, default_catalog="demo")


def test_placeholder_nodes_are_not_text() -> None:
    assert isinstance(exp.Placeholder(), exp.Expr)
