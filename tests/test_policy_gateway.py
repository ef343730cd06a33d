"""Policies end to end: the shipped policies/ and dev users, through a real gateway and the real client.

The oracle: for each dev identity, every TPC-H query through the gateway returns exactly what DuckDB
returns for the same query over secure views written by hand here (plain DuckDB SQL, independent of
gateway/sql/masks.py) from what policies/tables.yaml says.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
import sqlglot
from trino.exceptions import TrinoUserError

from tests.conftest import POLICIES, GatewayProcess, demo_config, gateway_hash_key, keyed_hash_sql

TPCH = sorted((Path(__file__).parent / "tpch").glob("q*.sql"))
TABLES = ("customer", "orders", "lineitem", "nation", "region", "part", "partsupp", "supplier")
NATIONS = {"alice": "1, 2, 3", "bob": "6, 7", "sam": "1, 2, 3"}
CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def oracle_views(user: str, key: str) -> dict[str, str]:
    """What policies/tables.yaml lets `user` see, as plain DuckDB views over demo.tpch."""
    if user == "admin":
        return {t: f"SELECT * FROM demo.tpch.{t}" for t in TABLES}
    nations = NATIONS[user]
    phone = "c_phone" if user == "sam" else (
        f"CASE WHEN length(c_phone) > 4 THEN translate(left(c_phone, length(c_phone) - 4), '{CHARS}', "
        f"'{'x' * len(CHARS)}') || right(c_phone, 4) ELSE c_phone END")
    views = {t: f"SELECT * FROM demo.tpch.{t}" for t in TABLES}
    views["customer"] = (
        f"SELECT c_custkey, {keyed_hash_sql(key, 'c_name')} AS c_name, "
        f"translate(c_address, '{CHARS}', '{'x' * 52}{'n' * 10}') AS c_address, c_nationkey, {phone} AS c_phone, "
        f"CAST(round(c_acctbal, -3) AS DECIMAL(15,2)) AS c_acctbal, c_mktsegment, c_comment "
        f"FROM demo.tpch.customer WHERE c_nationkey IN ({nations})")
    views["orders"] = (
        "SELECT o_orderkey, o_custkey, o_orderstatus, o_totalprice, o_orderdate, o_orderpriority, "
        f"'Clerk#' || substr({keyed_hash_sql(key, 'o_clerk')}, 1, 9) AS o_clerk, o_shippriority, o_comment "
        "FROM demo.tpch.orders "
        f"WHERE o_custkey IN (SELECT c_custkey FROM demo.tpch.customer WHERE c_nationkey IN ({nations}))")
    return views


@pytest.fixture(scope="module")
def oracle(demo_database: Path, gateway: GatewayProcess) -> Iterator[duckdb.DuckDBPyConnection]:
    key = gateway_hash_key(gateway)
    connection = duckdb.connect()
    connection.execute(f"ATTACH '{demo_database}' AS demo (READ_ONLY)")
    for user in ("alice", "bob", "sam", "admin"):
        connection.execute(f"CREATE SCHEMA oracle_{user}")
        for table, select in oracle_views(user, key).items():
            connection.execute(f"CREATE VIEW oracle_{user}.{table} AS {select}")
    yield connection
    connection.close()


def through_gateway(connect: Any, user: str, sql: str) -> list[tuple[Any, ...]]:
    cursor = connect(user=user).cursor()
    cursor.execute(sql)
    return [tuple(r) for r in cursor.fetchall()]


@pytest.mark.parametrize("user", ["alice", "bob", "sam", "admin"])
@pytest.mark.parametrize("query", TPCH, ids=[q.stem for q in TPCH])
def test_tpch_matches_hand_built_views(connect: Any, oracle: duckdb.DuckDBPyConnection, user: str,
                                       query: Path) -> None:
    sql = query.read_text()
    oracle.execute(f"USE memory.oracle_{user}")
    expected = oracle.execute(sqlglot.transpile(sql, read="trino", write="duckdb")[0]).fetchall()
    assert through_gateway(connect, user, sql) == expected


def test_quickstart_alice_versus_admin(connect: Any) -> None:
    sql = "SELECT c_custkey, c_nationkey, c_phone FROM customer ORDER BY c_custkey LIMIT 3"
    alice = through_gateway(connect, "alice", sql)
    admin = through_gateway(connect, "admin", sql)
    assert {r[1] for r in alice} <= {1, 2, 3}
    assert all(r[2].startswith("xx-xxx-xxx-") for r in alice)
    assert admin[0] == (1, 15, "25-989-741-2988")
    # reference tables a newcomer tries first are readable as they are
    assert through_gateway(connect, "alice", "SELECT count(*) FROM nation") == [(25,)]


def test_masks_hold_in_where_group_by_and_joins(connect: Any) -> None:
    # a WHERE on a masked column compares the masked value (as Trino and Snowflake do)
    assert through_gateway(connect, "alice", "SELECT count(*) FROM customer WHERE c_phone = '11-719-748-3364'") \
        == [(0,)]
    assert through_gateway(connect, "alice", "SELECT count(*) FROM customer WHERE c_phone = 'xx-xxx-xxx-3364'") \
        == [(1,)]
    rows = through_gateway(connect, "alice", "SELECT c.c_phone FROM orders o JOIN customer c ON o_custkey = "
                                             "c_custkey GROUP BY c.c_phone ORDER BY 1 LIMIT 5")
    assert all(r[0].startswith("xx-") for r in rows)


@pytest.mark.parametrize("sql", [
    "WITH customer AS (SELECT * FROM demo.tpch.customer) SELECT c_phone FROM customer",
    "SELECT c_phone FROM (SELECT * FROM customer) t",
    "SELECT c_phone FROM customer UNION ALL SELECT c_phone FROM customer",
    'SELECT "C_PHONE" FROM "DEMO"."TPCH"."CUSTOMER"',
    "SELECT x.c_phone FROM customer AS x WHERE EXISTS (SELECT 1 FROM orders WHERE o_custkey = x.c_custkey)",
    "SELECT (SELECT max(c_phone) FROM customer)",
    "SELECT max(c_phone) OVER (PARTITION BY c_nationkey) FROM customer",
])
def test_no_raw_phone_reaches_alice(connect: Any, sql: str) -> None:
    for row in through_gateway(connect, "alice", sql):
        assert row[0] is None or row[0].startswith("xx-"), (sql, row)


@pytest.mark.parametrize(("user", "sql", "name"), [
    ("audrey", "SELECT * FROM customer", "PERMISSION_DENIED"),
    ("nobody", "SELECT * FROM nation", "PERMISSION_DENIED"),
    ("alice", "SELECT * FROM read_csv('/etc/passwd')", "NOT_SUPPORTED"),
    ("alice", "SELECT getenv('HOME')", "PERMISSION_DENIED"),
    ("alice", "SELECT * FROM customer FOR UPDATE", "NOT_SUPPORTED"),
    ("alice", "SELECT * FROM nation CROSS JOIN LATERAL histogram(customer, c_phone)", "NOT_SUPPORTED"),
    ("audrey", "DESCRIBE customer", "PERMISSION_DENIED"),
    ("audrey", "SHOW COLUMNS FROM demo.tpch.orders", "PERMISSION_DENIED"),
])
def test_denials(connect: Any, user: str, sql: str, name: str) -> None:
    with pytest.raises(TrinoUserError) as error:
        through_gateway(connect, user, sql)
    assert error.value.error_name == name, error.value.message


def test_denial_names_the_table(connect: Any) -> None:
    with pytest.raises(TrinoUserError) as error:
        through_gateway(connect, "audrey", "SELECT n_name FROM nation")
    assert error.value.message == "Access Denied: Cannot select from table demo.tpch.nation"


def test_metadata_shows_only_readable_tables(connect: Any) -> None:
    assert through_gateway(connect, "audrey", "SHOW TABLES FROM demo.tpch") == []
    assert through_gateway(connect, "audrey", "SHOW SCHEMAS FROM demo") == [("information_schema",),
                                                                             ("samples",)]
    assert through_gateway(connect, "audrey", "SELECT count(*) FROM information_schema.columns "
                                              "WHERE table_schema = 'tpch'") == [(0,)]
    assert through_gateway(connect, "audrey", "SELECT count(*) FROM system.jdbc.tables WHERE table_schem = 'tpch'") \
        == [(0,)]
    # alice sees every tpch table, masked columns by name with their real types
    assert len(through_gateway(connect, "alice", "SHOW TABLES FROM demo.tpch")) == 8
    assert ("c_phone", "varchar", "", "") in through_gateway(connect, "alice", "DESCRIBE customer")


def test_backend_errors_do_not_quote_row_values(connect: Any) -> None:
    # DuckDB may evaluate this cast on rows of other nations before the row filter removes them
    with pytest.raises(TrinoUserError) as error:
        through_gateway(connect, "alice", "SELECT * FROM customer WHERE CAST(c_comment AS integer) = 1")
    assert "'…'" in error.value.message
    comments = through_gateway(connect, "admin", "SELECT c_comment FROM customer")
    assert not any(c[0] in error.value.message for c in comments)


def test_deeply_nested_and_huge_statements_get_clear_errors(gateway: GatewayProcess, connect: Any) -> None:
    nested = "SELECT " + "(" * 5000 + "1" + ")" * 5000
    with pytest.raises(TrinoUserError) as error:
        through_gateway(connect, "alice", nested)
    assert "nests parentheses 5000 deep" in error.value.message  # refused before parsing (limits.py)
    headers = {"X-Trino-User": "alice", "X-Trino-Catalog": "demo", "X-Trino-Schema": "tpch"}
    over_limit = "SELECT count(*) FROM nation WHERE n_nationkey IN (" + ",".join(map(str, range(200_000))) + ")"
    assert len(over_limit) > 1024 * 1024
    response = httpx.post(f"{gateway.url}/v1/statement", content=over_limit, headers=headers, timeout=60)
    assert response.status_code == 413
    assert "larger than the limit" in response.json()["error"]["message"]
    # a large IN list under the limit is planned off the event loop and answers correctly
    large = "SELECT count(*) FROM nation WHERE n_nationkey IN (" + ",".join(map(str, range(30_000))) + ")"
    assert through_gateway(connect, "alice", large) == [(25,)]
    assert through_gateway(connect, "alice", "SELECT 1") == [(1,)]  # still serving


def test_policies_hot_reload_and_keep_the_last_valid_version(demo_database: Path, tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    gateway = GatewayProcess(tmp_path, {**demo_config(demo_database), "policies": {"dir": str(policies),
                                                                                    "reload_seconds": 0.2}})
    try:
        import trino

        def count_nations(user: str) -> Any:
            connection = trino.dbapi.connect(host=gateway.host, port=gateway.port, user=user, catalog="demo",
                                             schema="tpch")
            cursor = connection.cursor()
            cursor.execute("SELECT count(*) FROM nation")
            return cursor.fetchall()

        assert count_nations("alice") == [[25]]
        version = gateway.metric("gateway_policy_info")
        text = (policies / "tables.yaml").read_text()
        # analysts lose the tpch.* wildcard: nation is now for admins only
        (policies / "tables.yaml").write_text(text.replace(
            "  - name: tpch.*                        # the rest of tpch; the exact entries above win over this "
            "wildcard\n    owner: sales-analytics\n    cost_center: CC-1042\n    classification: internal\n"
            "    access:\n      - when: {groups: [analysts, support, admins]}",
            "  - name: tpch.*\n    access:\n      - when: {groups: [admins]}"))
        deadline = time.monotonic() + 10
        while True:
            try:
                count_nations("alice")
            except TrinoUserError as error:
                assert error.error_name == "PERMISSION_DENIED"
                break
            assert time.monotonic() < deadline, "the changed policy was not picked up"
            time.sleep(0.1)
        assert gateway.metric("gateway_policy_reloads_total", 'outcome="loaded"') == 1
        assert version == 1
        # an invalid file: logged, counted, and the last valid version stays in force
        (policies / "broken.yaml").write_text("tables:\n  - name: tpch.customer\n    acess: []\n")
        deadline = time.monotonic() + 10
        while gateway.metric("gateway_policy_reloads_total", 'outcome="invalid"') < 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert count_nations("admin") == [[25]]
        assert "broken.yaml:3" in gateway.log()
    finally:
        gateway.stop()
