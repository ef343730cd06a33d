"""secure_rewrite, checked by execution: the rewritten query must return exactly what the same query returns
over hand-written secure views in DuckDB (the oracle), for several identities. As in sqlglot's
tests/test_optimizer.py::check_file, nothing here trusts the shape of the generated SQL alone.

The oracle views are written in plain DuckDB SQL, independently of gateway/sql/masks.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
from sqlglot import exp
from sqlglot.optimizer.qualify_tables import qualify_tables

from gateway.errors import NotSupported, PermissionDenied
from gateway.identity import Identity
from gateway.policy import PolicySet, parse_policies
from gateway.sql.rewrite import Catalog, RewriteResult, SecureViews, secure_rewrite
from tests.conftest import keyed_hash_sql, prepare, tpch_in_memory

TPCH_DIR = Path(__file__).resolve().parent / "tpch"
TABLES = ("customer", "orders", "lineitem", "nation", "region", "part", "partsupp", "supplier")

POLICY = """\
tables:
  - name: tpch.customer
    access: [{when: {groups: [analysts, support, admins]}}]
    row_filters:
      - {when: {groups: [admins]}, filter: "true"}
      - {filter: "c_nationkey IN (:nations)"}
    columns:
      c_phone: {mask: last4, unmask_when: {groups: [support, admins]}}
      c_name: {classification: pii}
      c_acctbal: {mask: {sql: "round({column}, -3)"}, unmask_when: {groups: [admins]}}
  - name: tpch.orders
    access: [{when: {groups: [analysts, support, admins]}}]
    row_filters:
      - {when: {groups: [admins]}, filter: "true"}
      - {filter: "o_custkey IN (SELECT c_custkey FROM customer WHERE c_nationkey IN (:nations))"}
    columns:
      o_orderdate: {mask: year_only, unmask_when: {groups: [admins]}}
      o_clerk: {mask: hash, unmask_when: {groups: [admins]}}
  - name: "tpch.*"
    access: [{when: {groups: [analysts, support, admins]}}]
  - name: demo.tpch.secret
    access: [{when: {groups: [admins]}}]
classification_masks:
  pii: {mask: redact, unmask_when: {groups: [admins]}}
"""

ALICE = Identity.create("alice", groups=["analysts"], attributes={"nations": [1, 2, 3]})
BOB = Identity.create("bob", groups=["analysts"], attributes={"nations": [6]})
SAM = Identity.create("sam", groups=["support"], attributes={"nations": [1, 2, 3]})
ADMIN = Identity.create("admin", groups=["admins"])
IDENTITIES = {"alice": ALICE, "bob": BOB, "sam": SAM, "admin": ADMIN}

LAST4 = (
    "CASE WHEN length(c_phone) > 4 THEN regexp_replace(left(c_phone, length(c_phone) - 4), '[A-Za-z0-9]', 'x', 'g')"
    " || right(c_phone, 4) ELSE c_phone END"
)
REDACT = "regexp_replace(regexp_replace(c_name, '[A-Za-z]', 'x', 'g'), '[0-9]', 'n', 'g')"


def oracle_views(identity: Identity) -> dict[str, str]:
    """Hand-written secure views for `identity`: table -> SELECT over demo.tpch."""
    admin = "admins" in identity.groups
    granted = identity.attributes.get("nations", ())
    nations = ", ".join(str(n) for n in (granted if isinstance(granted, tuple) else (granted,))) or "NULL"
    customer_filter = "true" if admin else f"c_nationkey IN ({nations})"
    orders_filter = (
        "true" if admin else f"o_custkey IN (SELECT c_custkey FROM demo.tpch.customer WHERE c_nationkey IN ({nations}))"
    )
    phone = "c_phone" if identity.groups & {"support", "admins"} else LAST4
    name = "c_name" if admin else REDACT
    acctbal = "c_acctbal" if admin else "CAST(round(c_acctbal, -3) AS DECIMAL(15, 2))"
    orderdate = "o_orderdate" if admin else "CAST(date_trunc('year', o_orderdate) AS DATE)"
    clerk = "o_clerk" if admin else keyed_hash_sql("gwmaskkey1xtest", "o_clerk")
    views = {t: f"SELECT * FROM demo.tpch.{t}" for t in TABLES}
    views["customer"] = (
        f"SELECT c_custkey, {name} AS c_name, c_address, c_nationkey, {phone} AS c_phone, {acctbal} AS c_acctbal,"
        f" c_mktsegment, c_comment FROM demo.tpch.customer WHERE {customer_filter}"
    )
    views["orders"] = (
        f"SELECT o_orderkey, o_custkey, o_orderstatus, o_totalprice, {orderdate} AS o_orderdate, o_orderpriority,"
        f" {clerk} AS o_clerk, o_shippriority, o_comment FROM demo.tpch.orders WHERE {orders_filter}"
    )
    return views


@dataclass
class Warehouse:
    con: duckdb.DuckDBPyConnection
    schema: Catalog
    policy: PolicySet
    views: SecureViews

    def rewrite(self, sql: str, identity: Identity, *, policy: PolicySet | None = None) -> RewriteResult:
        return secure_rewrite(
            prepare(sql),
            identity=identity,
            policy=policy or self.policy,
            schema=self.schema,
            source=None,
            dialect="duckdb",
            views=self.views, hash_key="gwmaskkey1xtest",
        )

    def run(self, sql: str, identity: Identity, *, policy: PolicySet | None = None) -> list[tuple[Any, ...]]:
        result = self.rewrite(sql, identity, policy=policy)
        return self.con.execute(result.tree.sql(dialect="duckdb")).fetchall()

    def oracle(self, sql: str, user: str) -> list[tuple[Any, ...]]:
        self.con.execute(f"USE demo.oracle_{user}")
        try:
            return self.con.execute(sqlglot.transpile(sql, read="trino", write="duckdb")[0]).fetchall()
        finally:
            self.con.execute("USE memory")


@pytest.fixture(scope="module")
def warehouse(demo_database: Path) -> Iterator[Warehouse]:
    con, _ = tpch_in_memory(demo_database)
    con.execute("CREATE TABLE demo.tpch.secret AS SELECT 42 AS answer")
    for user, identity in IDENTITIES.items():
        con.execute(f"CREATE SCHEMA demo.oracle_{user}")
        for table, select in oracle_views(identity).items():
            con.execute(f"CREATE VIEW demo.oracle_{user}.{table} AS {select}")
    schema: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
    rows = con.execute(
        "SELECT table_catalog, table_schema, table_name, column_name, lower(data_type) FROM information_schema.columns"
        " WHERE table_catalog = 'demo' AND table_schema = 'tpch' ORDER BY table_name, ordinal_position"
    ).fetchall()
    for catalog, db, table, column, data_type in rows:
        schema.setdefault(catalog, {}).setdefault(db, {}).setdefault(table, {})[column] = data_type
    yield Warehouse(con, schema, parse_policies({"test.yaml": POLICY}), SecureViews())
    con.close()


def normalized(rows: list[tuple[Any, ...]]) -> list[str]:
    """Order-insensitive, float-tolerant comparison form (plans may sum in different orders)."""

    def value(v: Any) -> Any:
        if isinstance(v, float):
            return round(v, 6)
        if isinstance(v, Decimal):
            return round(v, 6)
        return v

    return sorted(repr(tuple(value(v) for v in row)) for row in rows)


CASES: list[tuple[str, str]] = [
    ("select_star", "SELECT * FROM customer"),
    ("star_qualified", "SELECT c.*, n.n_name FROM customer c JOIN nation n ON c.c_nationkey = n.n_nationkey"),
    ("join", "SELECT c_phone, o_orderdate, o_clerk FROM customer JOIN orders ON c_custkey = o_custkey"),
    (
        "left_join",
        "SELECT n_name, count(c_custkey) FROM nation LEFT JOIN customer ON n_nationkey = c_nationkey GROUP BY 1",
    ),
    (
        "self_join",
        "SELECT a.c_phone, b.c_phone FROM customer a JOIN customer b ON a.c_nationkey = b.c_nationkey"
        " AND a.c_custkey + 1 = b.c_custkey",
    ),
    ("cte_shadow", "WITH customer AS (SELECT * FROM customer) SELECT count(*), min(c_phone) FROM customer"),
    (
        "cte_shadow_filter_table",  # a user CTE named like the table the orders filter reads
        "WITH customer AS (SELECT 1 AS c_custkey, 1 AS c_nationkey) SELECT count(*) FROM orders",
    ),
    ("cte_chain", "WITH a AS (SELECT * FROM customer), b AS (SELECT c_phone FROM a) SELECT * FROM b"),
    ("derived", "SELECT x.p FROM (SELECT c_phone AS p FROM customer WHERE c_acctbal > 0) AS x"),
    ("union", "SELECT c_phone FROM customer UNION ALL SELECT n_name FROM nation"),
    ("intersect", "SELECT c_nationkey FROM customer INTERSECT SELECT n_nationkey FROM nation"),
    ("except", "SELECT n_nationkey FROM nation EXCEPT SELECT c_nationkey FROM customer"),
    (
        "correlated_exists",
        "SELECT n_name FROM nation n WHERE EXISTS (SELECT 1 FROM customer c WHERE c.c_nationkey = n.n_nationkey)",
    ),
    ("in_subquery", "SELECT count(*) FROM orders WHERE o_custkey IN (SELECT c_custkey FROM customer)"),
    (
        "scalar_subquery",
        "SELECT n_name, (SELECT max(c_phone) FROM customer WHERE c_nationkey = n_nationkey) FROM nation",
    ),
    (
        "lateral",
        "SELECT n.n_name, x.cnt FROM nation n, LATERAL (SELECT count(*) AS cnt FROM customer c"
        " WHERE c.c_nationkey = n.n_nationkey) AS x",
    ),
    ("unnest", "SELECT c_phone, u.x FROM customer CROSS JOIN UNNEST(ARRAY[1, 2]) AS u(x)"),
    ("quoted_mixed_case", 'SELECT "C_PHONE", C.C_Name FROM "CUSTOMER" AS "C" WHERE C."c_nationkey" > 0'),
    ("alias_columns", "SELECT a, e FROM customer AS c(a, b, cc, d, e, f, g, h)"),
    ("whole_row", "SELECT c FROM customer c"),
    ("mask_in_where", "SELECT count(*) FROM customer WHERE c_phone LIKE 'xx-%'"),
    ("mask_in_where_date", "SELECT count(*) FROM orders WHERE o_orderdate = DATE '1995-01-01'"),
    ("mask_in_group_by", "SELECT o_orderdate, count(*) FROM orders GROUP BY o_orderdate"),
    ("mask_in_join", "SELECT count(*) FROM customer a JOIN customer b ON a.c_phone = b.c_phone"),
    ("mask_in_order_limit", "SELECT c_custkey, c_phone FROM customer ORDER BY c_phone, c_custkey LIMIT 5"),
    ("window", "SELECT c_phone, row_number() OVER (PARTITION BY c_nationkey ORDER BY c_custkey) FROM customer"),
    ("having", "SELECT c_nationkey, count(*) FROM customer GROUP BY 1 HAVING max(c_acctbal) >= 0"),
    ("unrestricted_table", "SELECT r_name FROM region"),
    ("values", "SELECT * FROM (VALUES (1, 'a')) AS v(k, s) JOIN customer ON k = c_custkey"),
]


@pytest.mark.parametrize("user", sorted(IDENTITIES))
@pytest.mark.parametrize(("name", "sql"), CASES, ids=[c[0] for c in CASES])
def test_matches_oracle(warehouse: Warehouse, user: str, name: str, sql: str) -> None:
    assert normalized(warehouse.run(sql, IDENTITIES[user])) == normalized(warehouse.oracle(sql, user))


QUALIFIED = [
    ("SELECT count(*), max(c_phone) FROM tpch.customer", "SELECT count(*), max(c_phone) FROM customer"),
    ("SELECT count(*), max(c_phone) FROM demo.tpch.customer", "SELECT count(*), max(c_phone) FROM customer"),
    (
        "WITH customer AS (SELECT 1 AS c_phone) SELECT max(c_phone) FROM demo.tpch.customer",
        "SELECT max(c_phone) FROM customer",
    ),
]


@pytest.mark.parametrize(("sql", "oracle_sql"), QUALIFIED)
def test_two_and_three_part_names(warehouse: Warehouse, sql: str, oracle_sql: str) -> None:
    assert normalized(warehouse.run(sql, ALICE)) == normalized(warehouse.oracle(oracle_sql, "alice"))


QUERIES = sorted(TPCH_DIR.glob("q*.sql"))


@pytest.mark.parametrize("user", sorted(IDENTITIES))
@pytest.mark.parametrize("path", QUERIES, ids=[p.stem for p in QUERIES])
def test_tpch_matches_oracle(warehouse: Warehouse, user: str, path: Path) -> None:
    sql = path.read_text()
    assert normalized(warehouse.run(sql, IDENTITIES[user])) == normalized(warehouse.oracle(sql, user))


def test_raw_values_never_reach_analysts(warehouse: Warehouse) -> None:
    raw = warehouse.con.execute("SELECT c_phone, c_nationkey FROM demo.tpch.customer").fetchall()
    seen = warehouse.run("SELECT c_phone, c_nationkey FROM customer", ALICE)
    assert seen and {n for _, n in seen} == {1, 2, 3}
    assert not {p for p, _ in seen} & {p for p, _ in raw}
    assert all(p.startswith("xx-xxx-xxx-") for p, _ in seen)


def test_rules_tables_and_version(warehouse: Warehouse) -> None:
    result = warehouse.rewrite("SELECT * FROM customer JOIN orders ON c_custkey = o_custkey JOIN nation ON 1=1", ALICE)
    assert result.tables == ("demo.tpch.customer", "demo.tpch.orders", "demo.tpch.nation")
    assert "row_filter demo.tpch.customer #2" in result.rules_applied
    assert "mask demo.tpch.customer.c_phone:last4" in result.rules_applied
    assert "mask demo.tpch.orders.o_orderdate:year_only" in result.rules_applied
    assert result.policy_version == warehouse.policy.version
    # nation has no restrictions: it stays a plain table reference
    assert any(t.name == "nation" for t in result.tree.find_all(exp.Table))


def test_input_tree_is_not_modified(warehouse: Warehouse) -> None:
    tree = prepare("SELECT c_phone FROM customer")
    before = tree.sql()
    secure_rewrite(
        tree, identity=ALICE, policy=warehouse.policy, schema=warehouse.schema, source=None, dialect="duckdb",
            hash_key="gwmaskkey1xtest"
    )
    assert tree.sql() == before


def test_list_attribute_becomes_in_list(warehouse: Warehouse) -> None:
    sql = warehouse.rewrite("SELECT c_custkey FROM customer", ALICE).tree.sql(dialect="duckdb")
    assert "c_nationkey IN (1, 2, 3)" in sql


def test_views_are_shared_only_by_equal_facts(warehouse: Warehouse) -> None:
    views = SecureViews()

    def sql_for(identity: Identity) -> str:
        tree = prepare("SELECT c_phone FROM customer")
        result = secure_rewrite(
            tree, identity=identity, policy=warehouse.policy, schema=warehouse.schema, source=None,
            dialect="duckdb", views=views, hash_key="gwmaskkey1xtest",
        )  # fmt: skip
        return result.tree.sql(dialect="duckdb")

    alice_sql = sql_for(ALICE)
    assert sql_for(BOB) != alice_sql
    twin = Identity.create("alice2", groups=["analysts"], attributes={"nations": [1, 2, 3]})
    assert sql_for(twin) == alice_sql


@pytest.mark.parametrize(
    "attributes",
    [{}, {"region": "x"}],
    ids=["no_attributes", "other_attribute"],
)
def test_missing_attribute_denies(warehouse: Warehouse, attributes: dict[str, Any]) -> None:
    identity = Identity.create("carol", groups=["analysts"], attributes=attributes)
    with pytest.raises(PermissionDenied, match="nations"):
        warehouse.rewrite("SELECT count(*) FROM customer", identity)


def test_missing_attribute_never_widens_even_under_not(warehouse: Warehouse) -> None:
    text = 'tables:\n  - {name: tpch.customer, access: [{}], row_filters: [{filter: "NOT (c_nationkey IN (:x))"}]}'
    policy = parse_policies({"p.yaml": text})
    with pytest.raises(PermissionDenied):
        warehouse.run("SELECT count(*) FROM customer", ALICE, policy=policy)


def test_empty_list_attribute_gives_no_rows(warehouse: Warehouse) -> None:
    nobody = Identity.create("dan", groups=["analysts"], attributes={"nations": []})
    assert warehouse.run("SELECT count(*) FROM customer", nobody) == [(0,)]
    assert warehouse.run("SELECT count(*) FROM orders", nobody) == [(0,)]


def test_injection_through_list_attribute_is_a_literal(warehouse: Warehouse) -> None:
    mallory = Identity.create("mallory", groups=["analysts"], attributes={"nations": ["1) OR (1=1"]})
    result = warehouse.rewrite("SELECT count(*) FROM customer", mallory)
    literals = [lit.this for lit in result.tree.find_all(exp.Literal) if lit.is_string]
    assert "1) OR (1=1" in literals
    with pytest.raises(duckdb.ConversionException):  # an integer column cannot equal that string
        warehouse.con.execute(result.tree.sql(dialect="duckdb")).fetchall()


def test_injection_through_string_attribute_is_a_literal(warehouse: Warehouse) -> None:
    policy = parse_policies(
        {"p.yaml": 'tables:\n  - {name: tpch.customer, access: [{}], row_filters: [{filter: "c_mktsegment = :seg"}]}\n'}
    )
    for attack in ["BUILDING' OR '1'='1", "x'; DROP TABLE demo.tpch.customer; --", "\\' OR 1=1 --"]:
        identity = Identity.create("m", attributes={"seg": attack})
        assert warehouse.run("SELECT count(*) FROM customer", identity, policy=policy) == [(0,)]
    building = Identity.create("m", attributes={"seg": "BUILDING"})
    assert warehouse.run("SELECT count(*) FROM customer", building, policy=policy)[0][0] > 0


def test_filter_column_must_resolve_inside_the_view(warehouse: Warehouse) -> None:
    # Unchecked, `n_nationkey` would bind to the user's nation table through correlation.
    policy = parse_policies(
        {"p.yaml": 'tables:\n  - {name: "tpch.*", access: [{}]}\n'
         '  - {name: tpch.customer, access: [{}], row_filters: [{filter: "n_nationkey = 1"}]}\n'}
    )  # fmt: skip
    sql = "SELECT n_name FROM nation WHERE EXISTS (SELECT 1 FROM customer WHERE c_nationkey = n_nationkey)"
    with pytest.raises(PermissionDenied, match="cannot resolve"):
        warehouse.run(sql, ALICE, policy=policy)


@pytest.mark.parametrize(
    ("sql", "identity", "match"),
    [
        ("SELECT * FROM secret", ALICE, "Cannot select from table demo.tpch.secret"),
        ("SELECT * FROM nowhere.tpch.customer", ALICE, "Cannot select from table nowhere.tpch.customer"),
        ("SELECT * FROM demo.other.t", ADMIN, "Cannot select from table demo.other.t"),
        ("SELECT * FROM customer", Identity.create("eve"), "Cannot select from table demo.tpch.customer"),
        ("SELECT * FROM read_csv('/etc/passwd')", ADMIN, "not a fully qualified table name"),
        ("SELECT (SELECT max(answer) FROM secret) FROM region", ALICE, "demo.tpch.secret"),
        ("WITH x AS (SELECT * FROM secret) SELECT 1", ALICE, "demo.tpch.secret"),
    ],
)
def test_denied_tables(warehouse: Warehouse, sql: str, identity: Identity, match: str) -> None:
    with pytest.raises(PermissionDenied, match=match):
        warehouse.rewrite(sql, identity)


def test_admin_reads_secret(warehouse: Warehouse) -> None:
    assert warehouse.run("SELECT * FROM secret", ADMIN) == [(42,)]


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM customer",
        "INSERT INTO customer SELECT * FROM customer",
        "UPDATE customer SET c_phone = 'x'",
        "CREATE TABLE t AS SELECT * FROM customer",
        "DROP TABLE customer",
        "CALL system.runtime.kill_query(query_id => '1')",
        "SET SESSION x = 1",
    ],
)
def test_statements_other_than_queries_are_rejected(warehouse: Warehouse, sql: str) -> None:
    with pytest.raises(NotSupported):
        warehouse.rewrite(sql, ADMIN)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM customer WHERE c_custkey = ?",
        "SELECT * FROM customer FOR UPDATE",
        "SELECT * INTO stolen FROM customer",
    ],
)
def test_nodes_that_are_not_plain_queries_are_rejected(sql: str, warehouse: Warehouse) -> None:
    tree = sqlglot.parse_one(sql, read="postgres")  # Trino cannot even parse some of these
    with pytest.raises(NotSupported):
        secure_rewrite(
            qualify_tables(tree, catalog="demo", db="tpch"),
            identity=ADMIN, policy=warehouse.policy, schema=warehouse.schema, source=None, dialect="duckdb",
            hash_key="gwmaskkey1xtest",
        )  # fmt: skip


def test_unqualified_base_table_is_denied(warehouse: Warehouse) -> None:
    with pytest.raises(PermissionDenied, match="fully qualified"):
        secure_rewrite(
            sqlglot.parse_one("SELECT * FROM customer", read="trino"),
            identity=ADMIN, policy=warehouse.policy, schema=warehouse.schema, source=None, dialect="duckdb",
            hash_key="gwmaskkey1xtest",
        )  # fmt: skip


def test_shipped_policies_for_dev_users(warehouse: Warehouse) -> None:
    from gateway.policy import load_dev_users, load_policies

    root = Path(__file__).resolve().parent.parent / "policies"
    policy = load_policies(root)
    users = load_dev_users(root / "dev_users.yaml")
    count = "SELECT count(DISTINCT c_nationkey), count(*) FROM customer"
    assert warehouse.run(count, users["alice"], policy=policy)[0][0] == 3
    assert warehouse.run(count, users["admin"], policy=policy)[0] == (25, 1500)
    phones = "SELECT c_phone FROM customer ORDER BY c_custkey LIMIT 1"
    assert warehouse.run(phones, users["alice"], policy=policy)[0][0].startswith("xx-xxx-xxx-")
    assert not warehouse.run(phones, users["sam"], policy=policy)[0][0].startswith("xx")
    assert warehouse.run("SELECT count(*) FROM nation", users["alice"], policy=policy) == [(25,)]
    with pytest.raises(PermissionDenied):
        warehouse.run("SELECT count(*) FROM nation", users["audrey"], policy=policy)
    orders = warehouse.run("SELECT count(*), max(o_clerk) FROM orders", users["bob"], policy=policy)[0]
    assert orders[0] > 0 and orders[1].startswith("Clerk#") and len(orders[1]) == 15


def test_sample_applies_inside_the_view(warehouse: Warehouse) -> None:
    result = warehouse.rewrite("SELECT c_nationkey FROM customer AS c TABLESAMPLE BERNOULLI (50)", ALICE)
    [sampled] = [t for t in result.tree.find_all(exp.Table) if t.find(exp.TableSample) is not None]
    assert sampled.name == "customer" and sampled.find_ancestor(exp.Subquery) is not None  # inside the view
    rows = warehouse.con.execute(result.tree.sql(dialect="duckdb")).fetchall()
    assert {n for (n,) in rows} <= {1, 2, 3}


def test_time_travel_on_protected_table_is_refused(warehouse: Warehouse) -> None:
    with pytest.raises(NotSupported, match="version"):
        warehouse.rewrite("SELECT * FROM customer FOR VERSION AS OF 3", ALICE)
