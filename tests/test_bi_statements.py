"""What BI tools send at connect time and while browsing (REFERENCE.md, "What BI tools send"), table-driven,
through the real trino client; then the statistics and plans those tools read, which must reveal nothing
about rows a row filter removes or values a mask hides."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trino
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.testing import GatewayProcess

JDBC_COLUMNS = 24

# (tool, statement, the result's column names or None to skip that check, a check of the rows or None)
STATEMENTS: list[tuple[str, str, list[str] | None, Any]] = [
    ("SQLAlchemy ping / Metabase", "SELECT 1", ["_col0"], lambda rows: rows == [[1]]),
    ("Superset", "SELECT version()", ["_col0"], lambda rows: isinstance(rows[0][0], str)),
    ("Superset", "SHOW CATALOGS", ["Catalog"], lambda rows: ["demo"] in rows and ["system"] in rows),
    ("Superset", 'SELECT "schema_name" FROM "information_schema"."schemata"', ["schema_name"],
     lambda rows: ["tpch"] in rows),
    ("Superset", "SELECT table_name FROM information_schema.tables WHERE table_schema = 'tpch' "
                 "AND table_type = 'BASE TABLE'", ["table_name"], lambda rows: ["nation"] in rows),
    ("Superset", "SELECT table_name FROM information_schema.tables WHERE table_schema = 'tpch' "
                 "AND table_type = 'VIEW'", ["table_name"], None),
    ("Superset", 'SHOW COLUMNS FROM "tpch"."nation"', ["Column", "Type", "Extra", "Comment"],
     lambda rows: rows[0][:2] == ["n_nationkey", "bigint"]),
    ("Superset", "SELECT comment FROM system.metadata.table_comments WHERE catalog_name = 'demo' AND "
                 "schema_name = 'tpch' AND table_name = 'customer'", ["comment"], lambda rows: len(rows) == 1),
    ("Superset", "SHOW FUNCTIONS", ["Function", "Return Type", "Argument Types", "Function Type", "Deterministic",
                                    "Description"], lambda rows: ["lower"] in [r[:1] for r in rows]),
    ("Superset", "SHOW FUNCTIONS LIKE 'date\\_%' ESCAPE '\\'", None,
     lambda rows: rows and all(r[0].startswith("date_") for r in rows)),
    ("Superset", "EXPLAIN (TYPE IO, FORMAT JSON) SELECT n_name FROM nation", ["Query Plan"],
     lambda rows: json.loads(rows[0][0])["estimate"]["outputRowCount"] == 25),
    ("Superset", 'SELECT "n_name" FROM "tpch"."nation" LIMIT 100', ["n_name"], lambda rows: len(rows) == 25),
    ("Superset", "SELECT date_trunc('week', CAST(o_orderdate AS TIMESTAMP)) AS w FROM orders LIMIT 1", ["w"], None),
    ("DBeaver", "SHOW CREATE TABLE demo.tpch.nation", ["Create Table"],
     lambda rows: rows[0][0].startswith("CREATE TABLE demo.tpch.nation (\n   n_nationkey bigint,")),
    ("DBeaver", "SHOW STATS FOR nation", ["column_name", "data_size", "distinct_values_count", "nulls_fraction",
                                          "row_count", "low_value", "high_value"],
     lambda rows: rows[-1][4] == 25 and rows[0][:1] == ["n_nationkey"]),
    ("DBeaver", "SHOW GRANTS ON TABLE nation", None, lambda rows: [r[6:8] for r in rows] == [["nation", "SELECT"]]),
    ("DBeaver", "SHOW ROLES", ["Role"], lambda rows: rows == [["analysts"]]),
    ("DBeaver", "SHOW CURRENT ROLES", ["Role"], lambda rows: rows == [["analysts"]]),
    ("DBeaver", "SELECT node_id, coordinator, state FROM system.runtime.nodes", ["node_id", "coordinator", "state"],
     lambda rows: len(rows) == 1 and rows[0][1:] == [True, "active"]),
    ("DBeaver", "SELECT * FROM system.metadata.table_properties", None, lambda rows: rows == []),
    ("DBeaver", "SELECT * FROM system.metadata.column_properties", None, lambda rows: rows == []),
    ("DBeaver", "EXPLAIN (TYPE VALIDATE) SELECT * FROM nation", ["Valid"], lambda rows: rows == [[True]]),
    ("dbt-trino", "SELECT * FROM system.metadata.materialized_views WHERE catalog_name = 'demo' "
                  "AND schema_name = 'tpch'", None, lambda rows: rows == []),
    ("Metabase", 'SHOW SCHEMAS FROM "demo"', ["Schema"], lambda rows: ["tpch"] in rows),
    ("Metabase", 'SHOW TABLES FROM "demo"."tpch"', ["Table"], lambda rows: ["nation"] in rows),
    ("Metabase", "SHOW TABLES FROM \"tpch\" LIKE 'nation'", ["Table"], lambda rows: rows == [["nation"]]),
    ("Metabase", 'DESCRIBE "demo"."tpch"."nation"', ["Column", "Type", "Extra", "Comment"], None),
    ("Metabase", "SELECT current_timezone()", None, None),
    ("Metabase", "-- Metabase:: userID: 1 queryType: native queryHash: ab12\nSELECT count(*) FROM nation", None,
     lambda rows: rows == [[25]]),
    ("Tableau / JDBC", "SELECT TABLE_CAT FROM system.jdbc.catalogs ORDER BY TABLE_CAT", ["table_cat"], None),
    ("Tableau / JDBC", "SELECT TABLE_SCHEM, TABLE_CATALOG FROM system.jdbc.schemas WHERE TABLE_CATALOG = 'demo' "
                       "AND TABLE_SCHEM LIKE 'tp%' ESCAPE '\\' ORDER BY TABLE_CATALOG, TABLE_SCHEM", None,
     lambda rows: rows == [["tpch", "demo"]]),
    ("Tableau / JDBC", "SELECT TABLE_CAT, TABLE_SCHEM, TABLE_NAME, TABLE_TYPE FROM system.jdbc.tables WHERE "
                       "TABLE_CAT = 'demo' AND TABLE_SCHEM LIKE 'tpch' ESCAPE '\\' AND TABLE_NAME LIKE '%' "
                       "ESCAPE '\\' AND TABLE_TYPE IN ('TABLE', 'VIEW') ORDER BY TABLE_TYPE, TABLE_CAT, "
                       "TABLE_SCHEM, TABLE_NAME", None, lambda rows: ["demo", "tpch", "nation", "TABLE"] in rows),
    ("Tableau / JDBC", "SELECT * FROM system.jdbc.columns WHERE TABLE_CAT = 'demo' AND TABLE_SCHEM = 'tpch' AND "
                       "TABLE_NAME = 'nation' ORDER BY ORDINAL_POSITION", None,
     lambda rows: len(rows) == 4 and len(rows[0]) == JDBC_COLUMNS),
    ("Tableau / JDBC", "SELECT TABLE_TYPE FROM system.jdbc.table_types ORDER BY TABLE_TYPE", None,
     lambda rows: rows == [["TABLE"], ["VIEW"]]),
    ("Tableau / JDBC", "SELECT TYPE_NAME FROM system.jdbc.types ORDER BY DATA_TYPE", None,
     lambda rows: ["varchar"] in rows),
    ("Tableau / JDBC", "SELECT * FROM (SELECT 1 AS x) t WHERE false", ["x"], lambda rows: rows == []),
]


def run(gateway: GatewayProcess, sql: str, user: str = "alice") -> tuple[list[str], list[list[Any]]]:
    with trino.dbapi.connect(host=gateway.host, port=gateway.port, user=user, catalog="demo", schema="tpch",
                             source="bi-statements") as connection:
        cursor = connection.cursor()
        cursor.execute(sql)
        rows = [list(r) for r in cursor.fetchall()]
        return [d[0] for d in cursor.description or []], rows


@pytest.mark.parametrize(("tool", "sql", "columns", "check"), STATEMENTS,
                         ids=[f"{tool}: {sql[:50]}" for tool, sql, _, _ in STATEMENTS])
def test_statements_bi_tools_send(gateway: GatewayProcess, tool: str, sql: str, columns: list[str] | None,
                                  check: Any) -> None:
    names, rows = run(gateway, sql)
    if columns is not None:
        assert names == columns, tool
    if check is not None:
        assert check(rows), (tool, rows[:5])


def test_explain_analyze_is_refused_in_words(gateway: GatewayProcess) -> None:
    with pytest.raises(trino.exceptions.TrinoUserError) as refused:
        run(gateway, "EXPLAIN ANALYZE SELECT * FROM nation")
    assert refused.value.error_name == "NOT_SUPPORTED" and "EXPLAIN ANALYZE" in refused.value.message


@pytest.mark.parametrize("sql", ["SHOW CREATE TABLE gateway.audit.queries", "SHOW STATS FOR gateway.audit.queries",
                                 "SHOW GRANTS ON TABLE gateway.audit.queries"])
def test_table_statements_need_read_access(gateway: GatewayProcess, sql: str) -> None:
    with pytest.raises(trino.exceptions.TrinoUserError) as denied:
        run(gateway, sql, user="alice")  # alice is no auditor
    assert denied.value.error_name == "PERMISSION_DENIED"


# TPC-H tables and who reads them through a row filter or a mask (policies/tables.yaml): customer and orders
# are filtered and masked for everyone but admins (whose rule is `filter: "true"` without masks: every row,
# every value); the rest of tpch is open to analysts, support, admins.
TABLES = ("nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem")
READERS = ("alice", "bob", "sam", "admin")


def _restricted(user: str, table: str) -> bool:
    return table in ("customer", "orders") and user != "admin"


@settings(max_examples=24, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=st.sampled_from(READERS), table=st.sampled_from(TABLES))
def test_statistics_and_io_plans_reveal_nothing_behind_a_filter_or_mask(gateway: GatewayProcess, user: str,
                                                                        table: str) -> None:
    _, stats = run(gateway, f"SHOW STATS FOR {table}", user=user)
    _, plan = run(gateway, f"EXPLAIN (TYPE IO, FORMAT JSON) SELECT * FROM {table}", user=user)
    io = json.loads(plan[0][0])
    estimates = [io["estimate"], *[info["estimate"] for info in io["inputTableColumnInfos"]]]
    if _restricted(user, table):
        assert all(value is None for row in stats for value in row[1:]), stats
        assert all(e["outputRowCount"] == "NaN" for e in estimates)
    else:
        _, count = run(gateway, f"SELECT count(*) FROM {table}", user=user)
        assert stats[-1][4] == count[0][0]
        assert io["inputTableColumnInfos"][0]["estimate"]["outputRowCount"] == count[0][0]
