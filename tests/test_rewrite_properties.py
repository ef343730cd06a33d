"""Property: whatever query an analyst writes over customer / orders / nation, secure_rewrite never lets a raw
value of a masked column or a row the filter excludes reach the result.

Hypothesis generates queries (projections of masked and plain columns, expressions and aggregates over them,
predicates on masked columns and on the filter column, joins, GROUP BY, ORDER BY, DISTINCT, UNION ALL, derived
tables, CTEs including one named like the table, IN / EXISTS / scalar subqueries) for the demo identities in
policies/dev_users.yaml under the shipped policies/tables.yaml. Each query is rewritten at the pure level (as in
tests/test_rewrite.py), run on DuckDB over TPC-H sf0.01, and every output column is checked by what it is made
of: a phone must look masked (or, for support, be a phone of an allowed customer), a name must be a hash, an
address redacted, a balance rounded to thousands, a key one of the caller's rows. Independently of that
bookkeeping, no string cell anywhere may equal a raw value the caller must not see.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.identity import Identity
from gateway.policy import PolicySet, load_dev_users, load_policies
from gateway.sql.rewrite import Catalog, SecureViews, secure_rewrite
from tests.conftest import prepare, tpch_in_memory

POLICIES = Path(__file__).resolve().parent.parent / "policies"
TABLES = ("customer", "orders", "nation", "region")
USERS = ("alice", "bob", "sam")

# --- the warehouse and what each identity may see ---------------------------------------------------------


@dataclass
class Visible:
    """What one identity may see, computed from the raw tables (not through the gateway)."""

    nations: frozenset[int]
    custkeys: frozenset[int]
    orderkeys: frozenset[int]
    phones: frozenset[str]  # raw phones of allowed customers (support sees them unmasked)
    phones_unmasked: bool
    forbidden: frozenset[str]  # raw strings that must never appear in any cell


@dataclass
class Warehouse:
    con: duckdb.DuckDBPyConnection
    schema: Catalog
    policy: PolicySet
    views: SecureViews
    identities: dict[str, Identity]
    visible: dict[str, Visible]
    raw_phones: tuple[str, ...]
    raw_names: tuple[str, ...]
    raw_acctbals: tuple[Decimal, ...]


@pytest.fixture(scope="module")
def warehouse(demo_database: Path) -> Iterator[Warehouse]:
    con, schema = tpch_in_memory(demo_database)

    customers = con.execute(
        "SELECT c_custkey, c_name, c_address, c_nationkey, c_phone, c_acctbal FROM demo.tpch.customer"
    ).fetchall()
    orders = con.execute("SELECT o_orderkey, o_custkey, o_clerk FROM demo.tpch.orders").fetchall()
    names = frozenset(c[1] for c in customers)
    # An address with no letter or digit is its own redaction; anything else must never come back whole.
    addresses = frozenset(c[2] for c in customers if re.search("[A-Za-z0-9]", c[2]))
    clerks = frozenset(o[2] for o in orders)

    identities = load_dev_users(POLICIES / "dev_users.yaml")
    visible: dict[str, Visible] = {}
    for user in USERS:
        identity = identities[user]
        granted = identity.attributes["nations"]
        nations = frozenset(int(n) for n in (granted if isinstance(granted, tuple) else (granted,)))
        allowed = [c for c in customers if c[3] in nations]
        custkeys = frozenset(c[0] for c in allowed)
        phones = frozenset(c[4] for c in allowed)
        unmasked = bool(identity.groups & {"support", "admins"})
        all_phones = frozenset(c[4] for c in customers)
        forbidden_phones = all_phones - phones if unmasked else all_phones
        visible[user] = Visible(
            nations=nations,
            custkeys=custkeys,
            orderkeys=frozenset(o[0] for o in orders if o[1] in custkeys),
            phones=phones,
            phones_unmasked=unmasked,
            forbidden=forbidden_phones | names | addresses | clerks,
        )
    yield Warehouse(
        con=con,
        schema=schema,
        policy=load_policies(POLICIES),
        views=SecureViews(),
        identities=identities,
        visible=visible,
        raw_phones=tuple(sorted(c[4] for c in customers)),
        raw_names=tuple(sorted(c[1] for c in customers)),
        raw_acctbals=tuple(sorted(c[5] for c in customers)),
    )
    con.close()


# --- what an output column is made of, and how to check it -------------------------------------------------

MASKED_PHONE = re.compile(r"xx-xxx-xxx-\d{4}")
HASH = re.compile(r"[0-9a-f]{64}")


def check_cell(kind: str, value: Any, seen: Visible) -> str | None:
    """None if `value` is acceptable for an output column of `kind`, else why not."""
    if value is None or kind == "other":
        return None
    if kind == "phone":
        ok = value in seen.phones if seen.phones_unmasked else bool(MASKED_PHONE.fullmatch(value))
    elif kind == "name":
        ok = bool(HASH.fullmatch(value))
    elif kind == "address":
        ok = not re.search("[A-Za-mo-wyzA-Z0-9]", value)  # only x, n and punctuation/space remain
    elif kind == "acctbal":
        ok = Decimal(value) % 1000 == 0
    elif kind == "custkey":
        ok = value in seen.custkeys
    elif kind == "orderkey":
        ok = value in seen.orderkeys
    elif kind == "nation":
        ok = value in seen.nations
    elif kind == "clerk":
        ok = isinstance(value, str) and value.startswith("Clerk#")
    else:
        raise AssertionError(f"unknown kind {kind}")
    return None if ok else f"{kind} value {value!r} is not protected"


# --- the query generator ----------------------------------------------------------------------------------

Col = tuple[str, str]  # (SQL, kind)

CUSTOMER: list[Col] = [
    ("c.c_custkey", "custkey"),
    ("c.c_name", "name"),
    ("c.c_address", "address"),
    ("c.c_nationkey", "nation"),
    ("c.c_phone", "phone"),
    ("c.c_acctbal", "acctbal"),
    ("c.c_mktsegment", "other"),
    ("c.c_comment", "other"),
]
ORDERS: list[Col] = [
    ("o.o_orderkey", "orderkey"),
    ("o.o_custkey", "custkey"),
    ("o.o_orderstatus", "other"),
    ("o.o_totalprice", "other"),
    ("o.o_orderdate", "other"),
    ("o.o_clerk", "clerk"),
]
NATION: list[Col] = [("n.n_nationkey", "other"), ("n.n_name", "other")]

# Row expressions over a column that keep what it is made of.
WRAPPERS: dict[str, list[Callable[[str], str]]] = {
    "phone": [lambda c: c, lambda c: f"substr({c}, 1)", lambda c: f"{c} || ''", lambda c: f"trim({c})"],
    "name": [lambda c: c, lambda c: f"lower({c})", lambda c: f"CASE WHEN {c} IS NOT NULL THEN {c} END"],
    "address": [lambda c: c, lambda c: f"lower({c})", lambda c: f"concat({c}, '')"],
    "acctbal": [lambda c: c, lambda c: f"{c} + 0", lambda c: f"abs({c})", lambda c: f"coalesce({c}, 0)"],
}
# Aggregates that return one of their inputs (so the kind survives).
AGGREGATES = ["max({})", "min({})", "arbitrary({})", "max_by({}, c_or_o_key)"]
WINDOWS = ["first_value({c}) OVER (ORDER BY {k})", "lag({c}) OVER (ORDER BY {k})", "max({c}) OVER (PARTITION BY {p})"]


@dataclass(frozen=True)
class Source:
    sql: str  # FROM ... JOINs
    columns: tuple[Col, ...]
    key: str  # a column to order windows by
    tables: frozenset[str]


def sources() -> st.SearchStrategy[Source]:
    c, o, n = tuple(CUSTOMER), tuple(ORDERS), tuple(NATION)
    options = [
        Source("customer AS c", c, "c.c_custkey", frozenset("c")),
        Source("orders AS o", o, "o.o_orderkey", frozenset("o")),
        Source("customer AS c JOIN orders AS o ON c.c_custkey = o.o_custkey", c + o, "o.o_orderkey", frozenset("co")),
        Source("customer AS c JOIN nation AS n ON c.c_nationkey = n.n_nationkey", c + n, "c.c_custkey",
               frozenset("cn")),
        Source("nation AS n LEFT JOIN customer AS c ON n.n_nationkey = c.c_nationkey", c + n, "n.n_nationkey",
               frozenset("cn")),
        Source("customer AS c LEFT JOIN orders AS o ON c.c_custkey = o.o_custkey JOIN nation AS n"
               " ON c.c_nationkey = n.n_nationkey", c + o + n, "c.c_custkey", frozenset("con")),
        Source("orders AS o JOIN customer AS c ON o.o_custkey = c.c_custkey AND c.c_acctbal > -1000", o + c,
               "o.o_orderkey", frozenset("co")),
        Source("customer AS c CROSS JOIN (SELECT max(c_phone) AS mp FROM customer) AS m", (*c, ("m.mp", "phone")),
               "c.c_custkey", frozenset("c")),
    ]  # fmt: skip
    return st.sampled_from(options)


@st.composite
def predicates(draw: st.DrawFn, source: Source, warehouse: Warehouse, depth: int = 0) -> str:
    tables = source.tables
    raw_phone = draw(st.sampled_from(warehouse.raw_phones))
    raw_name = draw(st.sampled_from(warehouse.raw_names))
    raw_bal = draw(st.sampled_from(warehouse.raw_acctbals))
    nation = draw(st.integers(0, 24))
    price = draw(st.integers(0, 40)) * 10000
    atoms: list[str] = []
    if "c" in tables:
        atoms += [
            f"c.c_nationkey = {nation}",
            f"c.c_nationkey IN ({nation}, {draw(st.integers(0, 24))})",
            f"c.c_nationkey <> {nation}",
            "c.c_nationkey IS NULL",
            f"c.c_phone = '{raw_phone}'",
            f"c.c_phone LIKE '{raw_phone[:3]}%'",
            "c.c_phone LIKE 'xx%'",
            f"c.c_name = '{raw_name}'",
            "c.c_name LIKE 'Customer%'",
            f"c.c_acctbal = {raw_bal}",
            f"c.c_acctbal > {raw_bal}",
            "c.c_address LIKE '%a%'",
            f"c.c_custkey < {draw(st.integers(1, 1500))}",
            "EXISTS (SELECT 1 FROM orders AS o2 WHERE o2.o_custkey = c.c_custkey)",
            f"c.c_custkey IN (SELECT o3.o_custkey FROM orders AS o3 WHERE o3.o_totalprice > {price})",
            f"c.c_phone IN (SELECT c4.c_phone FROM customer AS c4 WHERE c4.c_nationkey = {nation})",
        ]  # fmt: skip
    if "o" in tables:
        atoms += [
            "o.o_orderstatus = 'F'",
            f"o.o_totalprice > {price}",
            "o.o_clerk = 'Clerk#000000001'",
            f"o.o_custkey IN (SELECT c5.c_custkey FROM customer AS c5 WHERE c5.c_nationkey = {nation})",
        ]
    if "n" in tables:
        atoms += [f"n.n_nationkey = {nation}", "n.n_name LIKE 'A%'"]
    atom = draw(st.sampled_from(atoms))
    if depth >= 2:
        return atom
    shape = draw(st.sampled_from(["atom", "atom", "not", "and", "or"]))
    if shape == "atom":
        return atom
    if shape == "not":
        return f"NOT ({atom})"
    other = draw(predicates(source, warehouse, depth + 1))
    return f"({atom}) {shape.upper()} ({other})"


@dataclass(frozen=True)
class Query:
    sql: str
    kinds: tuple[str, ...]
    twin: str = ""  # the same block under another predicate: same column types, for UNION ALL


@st.composite
def selects(draw: st.DrawFn, warehouse: Warehouse) -> Query:
    """One SELECT block with output columns v0..vN."""
    source = draw(sources())
    where, twin_where = (f" WHERE {draw(predicates(source, warehouse))}" if draw(st.booleans()) else "" for _ in "ab")
    grouped = draw(st.integers(0, 3)) == 0
    projections: list[Col] = []
    if grouped:
        group = draw(st.sampled_from(source.columns))
        projections.append(group)
        for _ in range(draw(st.integers(1, 3))):
            column, kind = draw(st.sampled_from([c for c in source.columns if c[1] != "other"]))
            aggregate = draw(st.sampled_from(AGGREGATES)).format(column).replace("c_or_o_key", source.key)
            projections.append((aggregate, kind))
        if draw(st.booleans()):
            projections.append(("count(*)", "other"))
        items = [f"{sql} AS v{i}" for i, (sql, _) in enumerate(projections)]
        having = " HAVING count(*) > 0" if draw(st.booleans()) else ""
        sql, twin = (f"SELECT {', '.join(items)} FROM {source.sql}{w} GROUP BY 1{having}" for w in (where, twin_where))
        return Query(sql, tuple(kind for _, kind in projections), twin)
    if draw(st.integers(0, 5)) == 0 and "c" in source.tables and source.columns[0][0] == "c.c_custkey":
        # c.* expands to the masked projection, in table order
        projections = list(CUSTOMER)
        items = ["c.*"]
    else:
        protected = [c for c in source.columns if c[1] != "other"]
        for _ in range(draw(st.integers(1, 5))):
            column, kind = draw(st.sampled_from(protected if draw(st.integers(0, 2)) else source.columns))
            if kind in WRAPPERS and draw(st.booleans()):
                column = draw(st.sampled_from(WRAPPERS[kind]))(column)
            elif kind != "other" and draw(st.integers(0, 4)) == 0:
                partition = draw(st.sampled_from(source.columns))[0]
                column = draw(st.sampled_from(WINDOWS)).format(c=column, k=source.key, p=partition)
            projections.append((column, kind))
        items = [f"{sql} AS v{i}" for i, (sql, _) in enumerate(projections)]
    distinct = "DISTINCT " if draw(st.integers(0, 3)) == 0 else ""
    order = " ORDER BY 1" if draw(st.booleans()) else ""
    limit = f" LIMIT {draw(st.integers(1, 500))}" if draw(st.integers(0, 3)) == 0 else ""
    sql, twin = (f"SELECT {distinct}{', '.join(items)} FROM {source.sql}{w}{order}{limit}" for w in (where, twin_where))
    return Query(sql, tuple(kind for _, kind in projections), twin)


def _names(query: Query) -> str:
    if query.sql.startswith("SELECT c.*") or query.sql.startswith("SELECT DISTINCT c.*"):
        return ", ".join(col.split(".")[1] for col, _ in CUSTOMER)
    return ", ".join(f"v{i}" for i in range(len(query.kinds)))


@st.composite
def queries(draw: st.DrawFn, warehouse: Warehouse) -> Query:
    base = draw(selects(warehouse))
    shape = draw(st.sampled_from(["plain", "plain", "union", "derived", "cte", "cte_shadow", "scalar"]))
    if shape == "plain":
        return base
    if shape == "union":
        return Query(f"({base.sql}) UNION ALL ({base.twin})", base.kinds)
    names = _names(base)
    if shape == "derived":
        return Query(f"SELECT {names} FROM ({base.sql}) AS s", base.kinds)
    if shape == "cte":
        return Query(f"WITH x AS ({base.sql}) SELECT {names} FROM x", base.kinds)
    if shape == "cte_shadow":
        # A CTE named like the protected table must read the protected table, not hide it.
        return Query(f"WITH customer AS (SELECT * FROM customer) {base.sql}", base.kinds)
    # scalar subquery per nation
    column, kind = draw(st.sampled_from([c for c in CUSTOMER if c[1] != "other"]))
    aggregate = draw(st.sampled_from(["max", "min"]))
    sql = (
        f"SELECT n.n_name AS v0, (SELECT {aggregate}({column}) FROM customer AS c"
        " WHERE c.c_nationkey = n.n_nationkey) AS v1 FROM nation AS n"
    )
    return Query(sql, ("other", kind))


# --- the properties ---------------------------------------------------------------------------------------


def run(warehouse: Warehouse, sql: str, user: str) -> list[tuple[Any, ...]]:
    result = secure_rewrite(
        prepare(sql),
        identity=warehouse.identities[user],
        policy=warehouse.policy,
        schema=warehouse.schema,
        source=None,
        dialect="duckdb",
        views=warehouse.views, hash_key="gwmaskkey1xtest",
    )
    return warehouse.con.execute(result.tree.sql(dialect="duckdb")).fetchall()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_queries_never_leak(warehouse: Warehouse, data: st.DataObject) -> None:
    user = data.draw(st.sampled_from(USERS), label="user")
    query = data.draw(queries(warehouse), label="query")
    rows = run(warehouse, query.sql, user)
    seen = warehouse.visible[user]
    for row in rows:
        assert len(row) == len(query.kinds), (query.sql, row)
        for value, kind in zip(row, query.kinds, strict=True):
            problem = check_cell(kind, value, seen)
            assert problem is None, f"{user}: {problem}\n{query.sql}"
            if isinstance(value, str):
                assert value not in seen.forbidden, f"{user}: raw value {value!r} returned\n{query.sql}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_predicates_on_masked_columns_compare_masked_values(warehouse: Warehouse, data: st.DataObject) -> None:
    """Filtering on a raw value cannot single out a row: WHERE sees the masked value, as in Trino."""
    user = data.draw(st.sampled_from(["alice", "bob"]), label="user")
    phone = data.draw(st.sampled_from(warehouse.raw_phones), label="phone")
    name = data.draw(st.sampled_from(warehouse.raw_names), label="name")
    balance = data.draw(st.sampled_from([b for b in warehouse.raw_acctbals if b % 1000]), label="balance")
    for predicate in [f"c_phone = '{phone}'", f"c_name = '{name}'", f"c_acctbal = {balance}"]:
        assert run(warehouse, f"SELECT count(*) FROM customer WHERE {predicate}", user) == [(0,)], predicate
