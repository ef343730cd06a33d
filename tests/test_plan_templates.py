"""Plan templates (sql/templates.py): a statement that differs from an earlier one only in its comparison
constants gets exactly the plan — or the error — that planning it from scratch gives, for every identity.

The properties generate statements over the demo tables with literals in every kind of place (comparisons,
IN lists, BETWEEN, under NOT/OR, and places that are not parameters: LIMIT, the select list, function and
cast arguments, LIKE patterns, arithmetic), values with quotes, backslashes, percent signs and any Unicode,
integers of each of Trino's literal classes, and ask each frame several times with new values, as several
identities, comparing each answer with a planner that has never seen the statement.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.identity import Identity
from gateway.planner import Plan, Planner
from gateway.sql.limits import StatementLimits
from gateway.sql.templates import STRING, cut_literals, literals_are_parameters
from tests.planning_world import World, open_world
from tests.test_fast_path_caches import identities, outcome


@pytest.fixture(scope="module")
def world(demo_database: Path) -> Iterator[World]:
    yield from open_world(demo_database)


ALICE = Identity.create("alice", groups=["analysts"], attributes={"nations": [1, 2, 3], "clearance": 2})
ADMIN = Identity.create("admin", groups=["admins"])

integers = st.one_of(st.integers(0, 40), st.integers(0, 2**31 - 1), st.integers(2**31, 2**63 - 1),
                     st.integers(2**63, 2**70))
texts = st.one_of(st.sampled_from(["BUILDING", "AUTOMOBILE", "Customer#000000001", "", "O", "F"]),
                  st.text(alphabet=st.sampled_from("ab'\\%_\" \n;-/*é€😀"), max_size=8), st.text(max_size=6))


def quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


INTEGER_COLUMNS = ("c_custkey", "c_nationkey")
TEXT_COLUMNS = ("c_name", "c_mktsegment", "c_phone")
OPERATORS = ("=", "<>", "!=", "<", "<=", ">", ">=")


@st.composite
def predicate(draw: st.DrawFn, depth: int = 0) -> str:
    """A condition on customer, with placeholders `{i}` / `{s}` where an integer / a string literal goes."""
    kinds = ["compare_int", "compare_text", "in_int", "in_text", "between", "flipped", "not_parameter"]
    if depth < 2:
        kinds += ["and", "or", "not"]
    kind = draw(st.sampled_from(kinds))
    if kind == "compare_int":
        return f"{draw(st.sampled_from(INTEGER_COLUMNS))} {draw(st.sampled_from(OPERATORS))} {{i}}"
    if kind == "compare_text":
        return f"{draw(st.sampled_from(TEXT_COLUMNS))} {draw(st.sampled_from(OPERATORS))} {{s}}"
    if kind == "in_int":
        return f"{draw(st.sampled_from(INTEGER_COLUMNS))} IN ({', '.join(['{i}'] * draw(st.integers(1, 3)))})"
    if kind == "in_text":
        return f"{draw(st.sampled_from(TEXT_COLUMNS))} NOT IN ({', '.join(['{s}'] * draw(st.integers(1, 3)))})"
    if kind == "between":
        return f"{draw(st.sampled_from(INTEGER_COLUMNS))} BETWEEN {{i}} AND {{i}}"
    if kind == "flipped":
        return f"{{i}} {draw(st.sampled_from(OPERATORS))} {draw(st.sampled_from(INTEGER_COLUMNS))}"
    if kind == "not_parameter":
        return draw(st.sampled_from([
            "c_name LIKE {s}", "substr(c_name, 1, {i}) = {s}", "c_acctbal > {i}", "c_custkey + {i} = {i}",
            "c_custkey = -{i}", "CAST({s} AS varchar) = c_name", "c_custkey = CAST({s} AS bigint)",
            "length(c_name) = {i}", "c_phone = concat({s}, {s})", "c_custkey IN (SELECT {i})",
            "{s} = {s}", "c_nationkey = {i} * 2", "coalesce(c_name, {s}) = {s}"]))
    if kind == "not":
        return f"NOT ({draw(predicate(depth + 1))})"
    return f"({draw(predicate(depth + 1))}) {kind.upper()} ({draw(predicate(depth + 1))})"


@st.composite
def statement_frame(draw: st.DrawFn) -> str:
    select = draw(st.sampled_from(["*", "c_name, c_phone", "count(*)", "c_custkey, {s} AS label",
                                   "c_mktsegment, sum(c_acctbal)"]))
    where = draw(predicate())
    tail = ""
    if "sum(" in select:
        tail = " GROUP BY c_mktsegment" + draw(st.sampled_from(["", " HAVING count(*) > {i}"]))
    tail += draw(st.sampled_from(["", " ORDER BY 1", " LIMIT {i}", " ORDER BY 1 LIMIT {i}"]))
    return f"SELECT {select} FROM customer WHERE {where}{tail}"


def filled(frame: str, draw: st.DrawFn) -> str:
    parts = frame.replace("{i}", "\0i\0").replace("{s}", "\0s\0").split("\0")
    return "".join(str(draw(integers)) if part == "i" else quoted(draw(texts)) if part == "s" else part
                   for part in parts)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(frame=statement_frame(), who=st.lists(st.sampled_from([ALICE, ADMIN]) | identities, min_size=1, max_size=2),
       data=st.data())
def test_a_templated_plan_is_the_plan_from_scratch(world: World, frame: str, who: list[Identity],
                                                   data: st.DataObject) -> None:
    """Each frame is asked four times per identity with new literals (the second plans the probe, the rest
    are answered from the template where one was proven): every answer equals a fresh planner's."""
    shared = world.planner()
    for _ in range(4):
        for identity in who:
            sql = filled(frame, data.draw)
            assert outcome(shared, world, sql, identity) == outcome(world.planner(), world, sql, identity), sql


def test_a_point_query_is_planned_once_then_from_its_template(world: World) -> None:
    planner = world.planner()
    for key in range(1, 30):
        for identity in (ALICE, ADMIN):
            sql = f"SELECT * FROM customer WHERE c_custkey = {key} AND c_mktsegment <> 'it''s'"
            plan = outcome(planner, world, sql, identity)
            assert isinstance(plan, Plan) and plan == outcome(world.planner(), world, sql, identity)
            assert f"c_custkey = {key}" in (plan.sql or "")
    counts = {sample.labels["result"]: sample.value for sample in planner.metrics.plan_cache.collect()[0].samples
              if sample.name.endswith("_total")}
    assert counts["miss"] == 4 and counts["template"] == 2 * 29 - 4  # two misses each: the first, the probe's
    proven = planner.metrics.plan_templates.labels("proven")._value.get()
    assert proven == 2


def test_literals_that_are_not_parameters_are_planned_in_full(world: World) -> None:
    """A LIMIT, a LIKE pattern, a cast's argument: each new value is planned from scratch (and a value that
    fails to plan still fails)."""
    planner = world.planner()
    for frame in ("SELECT c_name FROM customer WHERE c_name LIKE {} LIMIT 3",
                  "SELECT c_name FROM customer WHERE c_custkey = CAST({} AS integer)"):
        for value in ("'1'", "'2'", "'1.5'", "'x'", "'3'"):
            sql = frame.format(value)
            assert outcome(planner, world, sql, ADMIN) == outcome(world.planner(), world, sql, ADMIN), sql
    assert planner.metrics.plan_templates.labels("proven")._value.get() == 0


def test_the_frame_keeps_every_character_but_the_literals() -> None:
    sql = "SELECT 'a''b', x FROM t WHERE k = 42 AND s = E'q' AND n = 1.5 AND b = 9223372036854775808"
    cut = cut_literals(sql, "trino")
    assert cut is not None
    assert cut.values == ("a'b", "42", "q")  # E'q' in Trino is an identifier, then a string: still cut
    assert cut.classes == (STRING, "integer", STRING)
    assert cut.with_values(cut.values) == sql
    postgres = cut_literals("SELECT 1 WHERE s = E'a\\nb' AND t = 'x'", "postgres")
    assert postgres is not None and postgres.values == ("1", "x")  # E'' reads escapes: never cut
    assert cut_literals("SELECT x FROM t", "trino") is None


def test_a_template_keeps_statement_bounds(world: World) -> None:
    """A template answers no statement that planning would refuse as too large."""
    def planner() -> Planner:
        return world.planner(StatementLimits(max_bytes=120))

    shared = planner()
    for size in (1, 2, 3, 60, 100):
        sql = f"SELECT c_name FROM customer WHERE c_name = '{'x' * size}'"
        answer = outcome(shared, world, sql, ADMIN)
        assert answer == outcome(planner(), world, sql, ADMIN)
        assert isinstance(answer, Plan) == (len(sql) <= 120)



POSITIONS = [  # a condition whose only literal is P, and whether P is a parameter there
    ("k = P", True), ("P <> k", True), ("k IN (j, P)", True), ("k BETWEEN P AND j", True),
    ("NOT (k >= P) OR (j < k AND k <= j)", True), ("(k = P)", True),
    ("k = P + j", False), ("k = -P", False), ("f(k) = P", False), ("k = f(P)", False), ("P = P", False),
    ("k LIKE P", False), ("CAST(P AS integer) = k", False), ("k = (SELECT P)", False), ("P IN (k)", False),
    ("CASE WHEN k = P THEN true END", False), ("coalesce(k = P, false)", False), ("k = j AND P", False),
]


@pytest.mark.parametrize(("condition", "parameter"), POSITIONS)
def test_a_literal_is_a_parameter_only_as_a_comparisons_plain_operand(condition: str, parameter: bool) -> None:
    for probe in ("'gwprobe0'", "1234567890"):
        sql = f"SELECT a FROM t WHERE {condition.replace('P', probe)}"
        cut = cut_literals(sql, "trino")
        assert cut is not None
        assert literals_are_parameters(sqlglot.parse_one(sql, read="trino"), cut, cut.values) == parameter, sql
    for clause in ("SELECT a FROM t GROUP BY a HAVING max(a) = 3", "SELECT a FROM t JOIN u ON t.a = 3",
                   "SELECT a = 3 FROM t", "SELECT a FROM t LIMIT 3"):
        cut = cut_literals(clause, "trino")
        assert cut is not None
        expected = "HAVING" in clause and False  # max(a) is not a column: not a parameter either
        assert literals_are_parameters(sqlglot.parse_one(clause, read="trino"), cut, cut.values) is expected
    having = "SELECT a FROM t GROUP BY a HAVING a = 3"
    cut = cut_literals(having, "trino")
    assert cut is not None and literals_are_parameters(sqlglot.parse_one(having, read="trino"), cut, cut.values)
