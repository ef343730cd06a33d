"""Planning of the statements BI tools send at connect time besides queries and catalog listings: the SHOW
forms of sql/show_answers.py and the EXPLAIN variants (ANALYZE, TYPE IO / VALIDATE / LOGICAL / DISTRIBUTED,
FORMAT JSON / TEXT). Called from two small hooks in planner.py; decisions about what a caller may see are
made here from the plan of the query they stand for, never from the engine.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol

from sqlglot import exp

from gateway.catalog import CatalogSnapshot, TableName
from gateway.errors import NotSupported, PermissionDenied
from gateway.identity import Identity
from gateway.relations import Column, Row
from gateway.session import Session
from gateway.sql import show_answers
from gateway.sql import statements as st
from gateway.sql.explain_io import COLUMN, IoExplain, io_plan_json
from gateway.sql.resolve import METADATA_TARGET
from gateway.sql.show import describe_target
from gateway.types import BOOLEAN, VARCHAR

if TYPE_CHECKING:
    from gateway.planner import Plan

SHOW_FORMS = frozenset({"FUNCTIONS", "CREATE TABLE", "STATS", "GRANTS", "ROLES"})


class Planning(Protocol):
    """What these plans need from one statement's planning (planner._Planning)."""

    session: Session
    identity: Identity
    snapshot: CatalogSnapshot

    def query(self, tree: exp.Query, kind: str) -> Plan: ...

    def answer(self, kind: str, columns: tuple[Column, ...], rows: tuple[Row, ...], *,
               based_on: Plan | None = None) -> Plan: ...

    def visible_tables(self) -> frozenset[TableName]: ...

    def dialect_of(self, target: str) -> str: ...


def plan_show(planning: Planning, show: st.Show) -> Plan:
    if show.what == "FUNCTIONS":
        return planning.answer("show", *show_answers.show_functions(show.like, show.escape))
    if show.what == "ROLES":
        return planning.answer("show", *show_answers.show_roles(planning.identity.groups))
    if show.what == "GRANTS":
        tables = planning.visible_tables()
        if show.target:
            name = _table(planning, show.target)
            tables = frozenset(t for t in tables if t == name)
        return planning.answer("show", *show_answers.show_grants(planning.identity.user, tables))
    name = _table(planning, show.target)
    table = planning.snapshot.table(name)
    assert table is not None  # _table checked it exists
    # Both forms stand for reading the table: the plan of `SELECT *` applies access (PERMISSION_DENIED if
    # the caller may not read it) and says whether a row filter or mask would apply.
    reading = planning.query(exp.select("*").from_(exp.table_(name.table, db=name.schema, catalog=name.catalog)),
                             "show")
    if show.what == "CREATE TABLE":
        return planning.answer("show", *show_answers.show_create_table(name, table), based_on=reading)
    if reading.restricted or name.is_metadata:
        return planning.answer("show", *show_answers.unknown_stats(table), based_on=reading)
    return planning.query(show_answers.stats_query(name, table), "show")


def _table(planning: Planning, parts: tuple[str, ...]) -> TableName:
    session = planning.session
    name = describe_target(parts, catalog=session.catalog, schema=session.schema, snapshot=planning.snapshot)
    if not name.is_metadata and name not in planning.visible_tables():
        raise PermissionDenied(f"Cannot select from table {name}")
    return name


def plan_explain(planning: Planning, explain: st.Explain) -> Plan | None:
    """The plan of an EXPLAIN variant; None for the forms that are plain EXPLAIN (TYPE LOGICAL/DISTRIBUTED,
    FORMAT TEXT), which the planner's own EXPLAIN answers."""
    if explain.analyze:
        raise NotSupported("EXPLAIN ANALYZE is not supported by the gateway: it runs the statement and reports "
                           "the engine's runtime statistics; use EXPLAIN, or run the query")
    options = _options(explain.options)
    kind, form = options.get("TYPE", "DISTRIBUTED"), options.get("FORMAT", "TEXT")
    if kind == "VALIDATE":
        planned = planning.query(explain.query.tree, "explain")  # fails as running it would, without running it
        return planning.answer("explain", (Column("Valid", BOOLEAN),), ((True,),), based_on=planned)
    if kind == "IO":
        if form not in ("JSON", "TEXT"):
            raise NotSupported(f"EXPLAIN (TYPE IO, FORMAT {form}) is not supported; use FORMAT JSON")
        return _explain_io(planning, planning.query(explain.query.tree, "explain"))
    if kind in ("LOGICAL", "DISTRIBUTED") and form == "TEXT":
        return None
    raise NotSupported(f"EXPLAIN (TYPE {kind}, FORMAT {form}) is not supported; use plain EXPLAIN, "
                       f"EXPLAIN (TYPE IO, FORMAT JSON) or EXPLAIN (TYPE VALIDATE)")


def _explain_io(planning: Planning, planned: Plan) -> Plan:
    tables = tuple(t for t in planned.tables if not t.is_metadata)
    # Estimates come from DuckDB's own EXPLAIN (FORMAT JSON); other engines' plans are not read (yet).
    if planned.restricted or planned.target in (None, METADATA_TARGET) or planned.sql is None \
            or planning.dialect_of(planned.target) != "duckdb":
        return planning.answer("explain", (Column(COLUMN, VARCHAR),), ((io_plan_json(tables),),), based_on=planned)
    return dataclasses.replace(planned, statement_kind="explain", sql=f"EXPLAIN (FORMAT JSON) {planned.sql}",
                               io_explain=IoExplain(tables), deterministic=False)


def _options(words: tuple[str, ...]) -> dict[str, str]:
    """("TYPE", "IO", "FORMAT", "JSON") -> {"TYPE": "IO", "FORMAT": "JSON"}."""
    options: dict[str, str] = {}
    for key, value in zip(words[::2], words[1::2], strict=False):
        if key not in ("TYPE", "FORMAT") or key in options:
            raise NotSupported(f"EXPLAIN option {key} is not supported (TYPE and FORMAT are)")
        options[key] = value
    if len(words) % 2:
        raise NotSupported(f"EXPLAIN option {words[-1]} needs a value")
    return options
