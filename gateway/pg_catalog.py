"""PostgreSQL-dialect queries over pg_catalog and information_schema, answered from the gateway's catalog.

psql, pgJDBC, DBeaver, Tableau, Power BI (Npgsql), psycopg and asyncpg learn what exists by querying
pg_catalog and information_schema, and call PostgreSQL's catalog functions while doing it. A PostgreSQL-wire
session's statement that reads those tables (or calls those functions with no data table in it) is planned
here, onto the metadata engine's copies (gateway/pg_catalog_tables.py):

- every catalog table becomes a fenced subquery (sql/barrier.py) exposing only PostgreSQL's columns, keeping
  only rows about the current database's tables the caller may read (and builtins); pg_roles, pg_user and
  pg_settings are the caller's own row and the session's settings, as VALUES;
- catalog functions become SQL the metadata engine runs over those same fenced tables (obj_description,
  pg_table_is_visible, has_table_privilege), plan-time literals (version(), current_setting('...'),
  '...'::regclass) or expressions (format_type, quote_ident). A name the caller may not read resolves as
  PostgreSQL resolves a name that does not exist, so neither a lookup nor an error tells it apart;
- the engine's own catalogs are never reachable: every table reference is one of ours, and whatever
  functions remain pass the same allowlist as any query (sql/functions.py).

Session functions (version(), current_user, current_setting(...), ...) are answered the same way in
PostgreSQL-dialect queries over data tables, which then go through the normal planning.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

from gateway.catalog import INFORMATION_SCHEMA, TableName
from gateway.errors import NotFound, NotSupported, UserError
from gateway.pg_catalog_tables import (
    DATABASE_WIDE,
    HIDDEN,
    OWNER_PLACEHOLDER,
    PG_CATALOG,
    PG_CATALOG_OID,
    PG_CLASS_OID,
    PG_TABLES,
    SESSION_TABLES,
    UTF8_ENCODING,
    Columns,
    derived_oid,
    function_oid,
    local_table,
    namespace_oid,
    relation_oid,
    role_oid,
)
from gateway.pg_types import BUILTIN_TYPES, BY_NAME, BY_OID, BY_SQL_NAME, VARHDRSZ, format_type
from gateway.session import Session
from gateway.sql.barrier import RESERVED_PREFIX, fenced, is_reserved
from gateway.sql.generate import Visibility

PG_DIALECT = "postgres"
SERVER_VERSION = "16.4"
SERVER_VERSION_NUM = "160004"
BACKEND_PID_PROPERTY = "pg_backend_pid"  # set by the PostgreSQL-wire frontend: its BackendKeyData process id

# PostgreSQL's own OIDs for its catalog relations (clients compare classoid with 'pg_class'::regclass).
BUILTIN_RELATIONS: dict[str, int] = {
    "pg_type": 1247, "pg_attribute": 1249, "pg_proc": 1255, "pg_class": 1259, "pg_database": 1262,
    "pg_tablespace": 1213, "pg_am": 2601, "pg_attrdef": 2604, "pg_constraint": 2606, "pg_description": 2609,
    "pg_index": 2610, "pg_inherits": 2611, "pg_namespace": 2615, "pg_extension": 3079, "pg_collation": 3456,
    "pg_enum": 3501, "pg_range": 3541,
}  # fmt: skip
CLASS_OIDS = {"pg_class": PG_CLASS_OID, "pg_namespace": 2615, "pg_type": 1247, "pg_proc": 1255,
              "pg_database": 1262, "pg_constraint": 2606}
OWNER_COLUMNS = frozenset({"nspowner", "relowner", "typowner", "proowner", "datdba", "collowner", "spcowner",
                           "extowner"})
OWNER_NAME_COLUMNS = frozenset({"tableowner", "viewowner", "schema_owner"})
ALL_TABLES: dict[tuple[str, str], Columns] = {**PG_TABLES, **SESSION_TABLES}
PG_CATALOG_NAMES = frozenset(t for s, t in ALL_TABLES if s == PG_CATALOG)


@dataclass(frozen=True)
class PgFacts:
    """What catalog queries of one PostgreSQL session answer with."""

    user: str
    database: str  # the gateway catalog the session connected to
    search_path: tuple[str, ...]  # schemas, in order; pg_catalog is searched first implicitly
    gateway_version: str
    time_zone: str = "UTC"
    application_name: str = ""
    backend_pid: int = 0
    properties: Mapping[str, str] = field(default_factory=dict)  # the session's SET values

    @property
    def version(self) -> str:
        return f"PostgreSQL {SERVER_VERSION} (query gateway {self.gateway_version}) on x86_64-pc-linux-gnu, 64-bit"

    @property
    def role_oid(self) -> int:
        return role_oid(self.user)

    def settings(self) -> dict[str, str]:
        """Setting name (lower case) -> value, as current_setting() and pg_settings show them."""
        values = {
            "server_version": SERVER_VERSION, "server_version_num": SERVER_VERSION_NUM,
            "server_encoding": "UTF8", "client_encoding": "UTF8", "datestyle": "ISO, MDY",
            "intervalstyle": "postgres", "timezone": self.time_zone, "integer_datetimes": "on",
            "standard_conforming_strings": "on", "search_path": ", ".join(self.search_path),
            "max_identifier_length": "63", "max_index_keys": "32", "block_size": "8192",
            "default_transaction_read_only": "on", "transaction_read_only": "on",
            "transaction_isolation": "read committed", "default_transaction_isolation": "read committed",
            "is_superuser": "off", "application_name": self.application_name, "lc_collate": "C.UTF-8",
            "lc_ctype": "C.UTF-8", "extra_float_digits": "1", "statement_timeout": "0", "bytea_output": "hex",
            "session_authorization": self.user, "default_text_search_config": "pg_catalog.english",
        }  # fmt: skip
        for name, value in self.properties.items():
            if name.lower() != BACKEND_PID_PROPERTY:
                values[name.lower()] = value
        return values


# -- which statements are ours ---------------------------------------------------------------------------------


def _cte_names(tree: exp.Expr) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def catalog_table(table: exp.Table, database: str, ctes: set[str]) -> tuple[str, str] | None:
    """(schema, table) when `table` names one of the emulated catalog tables, else None."""
    name, schema, catalog = table.name.lower(), table.db.lower(), table.catalog.lower()
    if catalog and catalog != database:
        return None
    if not schema:
        # pg_catalog is always searched first, before the search_path; CTEs shadow it.
        return (PG_CATALOG, name) if name in PG_CATALOG_NAMES and name not in ctes else None
    if (schema, name) in ALL_TABLES:
        return schema, name
    if schema in (PG_CATALOG, INFORMATION_SCHEMA):
        raise NotFound(f'relation "{schema}.{name}" does not exist', error_name="TABLE_NOT_FOUND")
    return None


def _plain_tables(tree: exp.Expr) -> list[exp.Table]:
    """Table references in FROM/JOIN position (not the name parts of columns or functions)."""
    return [t for t in tree.find_all(exp.Table) if isinstance(t.this, exp.Identifier)]


def reads_catalog(tree: exp.Query, database: str) -> bool:
    ctes = _cte_names(tree)
    return any(catalog_table(t, database, ctes) is not None for t in _plain_tables(tree))


# -- functions -------------------------------------------------------------------------------------------------


def _parse(sql: str, **parts: exp.Expr) -> exp.Expr:
    """A PostgreSQL expression with `{name}` placeholders replaced by the given trees."""
    tree = sqlglot.parse_one(sql.format(**{k: f"__gw_ph_{k}" for k in parts}), read=PG_DIALECT)

    def put(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and not node.table and node.name.startswith("__gw_ph_"):
            return parts[node.name.removeprefix("__gw_ph_")].copy()
        return node

    return tree.transform(put, copy=False)


def _string(value: str | None) -> exp.Expr:
    return exp.Null() if value is None else exp.Literal.string(value)


def _literal_text(node: exp.Expr) -> str | None:
    return node.this if isinstance(node, exp.Literal) and node.is_string else None


def _literal_bool(node: exp.Expr) -> bool | None:
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    text = _literal_text(node)
    return text.lower() in ("t", "true", "on", "1", "yes") if text is not None else None


def _identifier_parts(text: str) -> list[str]:
    """A qualified name as PostgreSQL's regclass input reads it: dots split, quotes keep case."""
    parts: list[str] = []
    current, quoted, index = "", False, 0
    while index < len(text):
        char = text[index]
        if quoted:
            if char == '"' and text[index + 1:index + 2] == '"':
                current, index = current + '"', index + 2
                continue
            if char == '"':
                quoted = False
            else:
                current += char
        elif char == '"':
            quoted = True
        elif char == ".":
            parts.append(current)
            current = ""
        else:
            current += char.lower()
        index += 1
    parts.append(current)
    return [p.strip() for p in parts]


class _Resolver:
    """Names to OIDs for the caller: only what they may read resolves."""

    def __init__(self, facts: PgFacts, visible: Visibility) -> None:
        self.facts = facts
        self.visible = visible
        database = facts.database
        self.tables = {(t.schema, t.table) for t in visible.tables if t.catalog == database}
        self.schemas = {s for c, s in visible.schemas if c == database} | {PG_CATALOG, INFORMATION_SCHEMA}

    def relation(self, text: str) -> int | None:
        parts = _identifier_parts(text)
        if len(parts) == 3 and parts[0] == self.facts.database:
            parts = parts[1:]
        if len(parts) == 1:
            candidates = [(PG_CATALOG, parts[0]), *((s, parts[0]) for s in self.facts.search_path)]
        elif len(parts) == 2:
            candidates = [(parts[0], parts[1])]
        else:
            return None
        for schema, name in candidates:
            if schema == PG_CATALOG and name in PG_CATALOG_NAMES:
                return BUILTIN_RELATIONS.get(name, derived_oid("relation", "", schema, name))
            if schema == INFORMATION_SCHEMA and (schema, name) in ALL_TABLES:
                return derived_oid("relation", "", schema, name)
            if (schema, name) in self.tables:
                return relation_oid(self.facts.database, schema, name)
        return None

    def namespace(self, text: str) -> int | None:
        parts = _identifier_parts(text)
        if len(parts) != 1 or parts[0] not in self.schemas:
            return None
        return namespace_oid(self.facts.database, parts[0])

    def path_namespaces(self) -> list[int]:
        return [PG_CATALOG_OID, *(namespace_oid(self.facts.database, s) for s in self.facts.search_path
                                  if s in self.schemas)]


def _type_oid(text: str) -> int | None:
    name = text.strip().lower().removeprefix("pg_catalog.").strip('"')
    aliases = {"int": "int4", "integer": "int4", "bigint": "int8", "smallint": "int2", "boolean": "bool",
               "real": "float4", "double precision": "float8", "float": "float8", "decimal": "numeric",
               "character varying": "varchar", "character": "bpchar", "char": "bpchar"}
    found = BY_NAME.get(aliases.get(name, name)) or BY_SQL_NAME.get(name)
    return found.oid if found is not None else None


def _format_type_sql(type_oid: exp.Expr, typmod: exp.Expr) -> exp.Expr:
    """format_type(oid, typmod) as one CASE over the builtin types (the typmod-dependent ones first)."""
    if isinstance(type_oid, exp.Literal) and not type_oid.is_string and (
            isinstance(typmod, exp.Null) or (isinstance(typmod, exp.Literal) and not typmod.is_string)):
        mod = None if isinstance(typmod, exp.Null) else int(typmod.this)
        return _string(format_type(int(type_oid.this), mod) or "???")
    m = exp.func("coalesce", typmod.copy(), exp.Literal.number(-1))
    header = exp.Literal.number(VARHDRSZ)
    ifs: list[exp.If] = []

    def when(oids: tuple[int, ...], condition: str, result: str) -> None:
        # the array type too: its typmod is its element's (format_type(1015, 29) = character varying(25)[])
        for oid, suffix in ((oids[0], ""), (BY_OID[oids[0]].array_oid, "[]")):
            test = _parse(f"({{t}} = {oid}) AND ({condition})", t=type_oid, m=m, h=header)
            ifs.append(exp.If(this=test, true=_parse(f"{result} || '{suffix}'", m=m, h=header)))

    when((1043,), "{m} >= {h}", "'character varying(' || CAST({m} - {h} AS TEXT) || ')'")
    when((1042,), "{m} >= {h}", "'character(' || CAST({m} - {h} AS TEXT) || ')'")
    when((1700,), "{m} >= {h}", "'numeric(' || CAST(CAST(floor(({m} - {h}) / 65536) AS BIGINT) AS TEXT) || ',' || "
                                "CAST(({m} - {h}) % 65536 AS TEXT) || ')'")
    for oid, head, zone in ((1114, "timestamp", "without"), (1184, "timestamp", "with"), (1083, "time", "without"),
                            (1266, "time", "with")):
        when((oid,), "{m} >= 0", f"'{head}(' || CAST({{m}} AS TEXT) || ') {zone} time zone'")
    for kind in BUILTIN_TYPES:
        ifs.append(exp.If(this=exp.EQ(this=type_oid.copy(), expression=exp.Literal.number(kind.oid)),
                          true=exp.Literal.string(kind.sql_name)))
    return exp.Case(ifs=[exp.If(this=exp.Is(this=type_oid.copy(), expression=exp.Null()), true=exp.Null()), *ifs],
                    default=exp.Literal.string("???"))


def _privilege(privilege: exp.Expr, granted: str) -> exp.Expr:
    """Whether a privilege list ('SELECT', 'select, references WITH GRANT OPTION', ...) asks for `granted`:
    the gateway is read-only, so SELECT on tables and USAGE on schemas are the only privileges anyone has."""
    text = _literal_text(privilege)
    if text is not None:
        return exp.Boolean(this=granted in text.upper())
    return _parse(f"upper({{p}}) LIKE '%{granted}%'", p=privilege)


# Catalog lookups the function rewrites generate, over the same fenced tables as the client's references.
# Aliases use the reserved prefix, so no name in the client's query can capture them.
_RELATION_BY_NAME = ("(SELECT __gw_c.oid FROM pg_catalog.pg_class __gw_c JOIN pg_catalog.pg_namespace __gw_n ON "
                     "__gw_n.oid = __gw_c.relnamespace WHERE __gw_c.relname = {x} OR "
                     "__gw_n.nspname || '.' || __gw_c.relname = {x} LIMIT 1)")
_RELATION_NAME = "(SELECT __gw_c.relname FROM pg_catalog.pg_class __gw_c WHERE __gw_c.oid = {x})"
_DESCRIPTION = "(SELECT __gw_d.description FROM pg_catalog.pg_description __gw_d WHERE __gw_d.objoid = {o}"


@dataclass
class _Rewrite:
    facts: PgFacts
    resolver: _Resolver
    needs_catalog: bool = False  # a rewritten function reads the catalog tables
    changed: bool = False  # something was rewritten

    def function(self, name: str, args: list[exp.Expr]) -> exp.Expr | None:
        """The replacement of catalog function `name(args)`, or None when it is not one of ours."""
        facts = self.facts
        handler = _FUNCTIONS.get(name)
        if handler is None:
            return None
        return handler(self, facts, args)

    def catalog(self, sql: str, **parts: exp.Expr) -> exp.Expr:
        self.needs_catalog = True
        return _parse(sql, **parts)

    def regclass(self, node: exp.Expr, *, missing_ok: bool) -> exp.Expr:
        text = _literal_text(node)
        if text is None:
            if missing_ok:
                return self.catalog(_RELATION_BY_NAME, x=node)
            return exp.cast(node, "BIGINT")
        oid = self.resolver.relation(text)
        if oid is None:
            if missing_ok:
                return exp.cast(exp.Null(), "BIGINT")
            raise NotFound(f'relation "{text}" does not exist', error_name="TABLE_NOT_FOUND")
        return exp.Literal.number(oid)

    def cast(self, node: exp.Cast) -> exp.Expr | None:
        target = _cast_type(node.to)
        operand = node.this
        if target == "regclass":
            return self.regclass(operand, missing_ok=False)
        if target == "regtype":
            text = _literal_text(operand)
            if text is None:
                return exp.cast(operand, "BIGINT")
            oid = _type_oid(text)
            if oid is None:
                raise NotFound(f'type "{text}" does not exist', error_name="TYPE_NOT_FOUND")
            return exp.Literal.number(oid)
        if target == "regnamespace":
            text = _literal_text(operand)
            if text is None:
                return exp.cast(operand, "BIGINT")
            oid = self.resolver.namespace(text)
            if oid is None:
                raise NotFound(f'schema "{text}" does not exist', error_name="SCHEMA_NOT_FOUND")
            return exp.Literal.number(oid)
        if target in ("regproc", "regprocedure") and (text := _literal_text(operand)) is not None:
            # 'pg_catalog.array_in'::regproc (pgJDBC's TypeInfoCache tells arrays by typinput)
            name = text.split("(", 1)[0].strip().lower().removeprefix("pg_catalog.")
            return exp.Literal.number(function_oid(name))
        if target in ("oid", "regproc", "regprocedure", "xid", "cid"):
            return exp.cast(operand, "BIGINT")
        if target in ("name", "char", '"char"'):
            return exp.cast(operand, "VARCHAR")
        if target in ("int2vector", "oidvector"):
            kept: exp.Expr = operand
            return kept
        return None


def _cast_type(to: exp.Expr) -> str | None:
    if isinstance(to, exp.ObjectIdentifier):
        return to.name.lower()
    if isinstance(to, exp.DataType) and to.this == exp.DType.USERDEFINED:
        kind = to.args.get("kind")
        if isinstance(kind, exp.Dot):
            return kind.expression.name.lower() if kind.this.name.lower() == PG_CATALOG else None
        if isinstance(kind, exp.Expr):
            return kind.name.lower()
    if isinstance(to, exp.DataType) and to.this == exp.DType.NAME:
        return "name"
    return None


def _arg(args: list[exp.Expr], index: int) -> exp.Expr:
    if index >= len(args):
        raise UserError("function called with too few arguments", error_name="FUNCTION_NOT_FOUND")
    return args[index]


def _current_setting(rewrite: _Rewrite, facts: PgFacts, args: list[exp.Expr]) -> exp.Expr:
    settings = facts.settings()
    name = _literal_text(_arg(args, 0))
    missing_ok = len(args) > 1 and _literal_bool(args[1]) is True
    if name is not None:
        if name.lower() not in settings:
            if missing_ok:
                return exp.cast(exp.Null(), "VARCHAR")
            raise NotFound(f'unrecognized configuration parameter "{name}"', error_name="NOT_FOUND")
        return exp.Literal.string(settings[name.lower()])
    return exp.Case(this=exp.func("lower", args[0]),
                    ifs=[exp.If(this=exp.Literal.string(k), true=exp.Literal.string(v)) for k, v in settings.items()])


def _current_schemas(facts: PgFacts, implicit: exp.Expr) -> exp.Expr:
    explicit = [exp.Literal.string(s) for s in facts.search_path]
    with_implicit = [exp.Literal.string(PG_CATALOG), *[e.copy() for e in explicit]]
    flag = _literal_bool(implicit)
    if flag is not None:
        return exp.Array(expressions=with_implicit if flag else explicit)
    return exp.If(this=implicit, true=exp.Array(expressions=with_implicit), false=exp.Array(expressions=explicit))


def _description(rewrite: _Rewrite, args: list[exp.Expr], *, column: bool) -> exp.Expr:
    if column:
        return rewrite.catalog(_DESCRIPTION + f" AND __gw_d.classoid = {PG_CLASS_OID} AND __gw_d.objsubid = {{n}})",
                               o=_arg(args, 0), n=_arg(args, 1))
    if len(args) > 1:
        class_name = _literal_text(args[1])
        class_oid = CLASS_OIDS.get((class_name or "").lower().removeprefix("pg_catalog."), 0)
        return rewrite.catalog(_DESCRIPTION + f" AND __gw_d.classoid = {class_oid} AND __gw_d.objsubid = 0)",
                               o=args[0])
    return rewrite.catalog(_DESCRIPTION + " AND __gw_d.objsubid = 0 LIMIT 1)", o=_arg(args, 0))


def _has_table_privilege(rewrite: _Rewrite, facts: PgFacts, args: list[exp.Expr]) -> exp.Expr:
    # The three-argument form names a role; the gateway knows only the caller's privileges and answers those.
    table, privilege = (args[1], args[2]) if len(args) == 3 else (_arg(args, 0), _arg(args, 1))
    wanted = _privilege(privilege, "SELECT")
    if _literal_text(table) is not None:
        rewrite.regclass(table, missing_ok=False)  # a name the caller cannot read does not exist
        return wanted
    return exp.and_(exp.paren(wanted), exp.paren(rewrite.catalog(
        "{t} IN (SELECT __gw_c.oid FROM pg_catalog.pg_class __gw_c)", t=table)))


def _has_schema_privilege(rewrite: _Rewrite, facts: PgFacts, args: list[exp.Expr]) -> exp.Expr:
    schema, privilege = (args[1], args[2]) if len(args) == 3 else (_arg(args, 0), _arg(args, 1))
    wanted = _privilege(privilege, "USAGE")
    text = _literal_text(schema)
    if text is not None:
        if rewrite.resolver.namespace(text) is None:
            raise NotFound(f'schema "{text}" does not exist', error_name="SCHEMA_NOT_FOUND")
        return wanted
    return exp.and_(exp.paren(wanted), exp.paren(rewrite.catalog(
        "{s} IN (SELECT __gw_n.oid FROM pg_catalog.pg_namespace __gw_n)", s=schema)))


def _quote_ident(rewrite: _Rewrite, facts: PgFacts, args: list[exp.Expr]) -> exp.Expr:
    return _parse("CASE WHEN {x} ~ '^[a-z_][a-z0-9_$]*$' THEN {x} ELSE '\"' || replace({x}, '\"', '\"\"') || '\"' "
                  "END", x=_arg(args, 0))


def _array_bound(upper: bool) -> Callable[[_Rewrite, PgFacts, list[exp.Expr]], exp.Expr]:
    def bound(rewrite: _Rewrite, facts: PgFacts, args: list[exp.Expr]) -> exp.Expr:
        result = "array_length({a}, 1)" if upper else "1"
        return _parse(f"CASE WHEN {{d}} = 1 AND array_length({{a}}, 1) > 0 THEN {result} END", a=_arg(args, 0),
                      d=_arg(args, 1))

    return bound


def _to_regtype(name: exp.Expr) -> exp.Expr:
    text = _literal_text(name)
    if text is None:
        return _parse("(SELECT __gw_t.oid FROM pg_catalog.pg_type __gw_t WHERE __gw_t.typname = {x})", x=name)
    oid = _type_oid(text)
    return exp.Literal.number(oid) if oid is not None else exp.cast(exp.Null(), "BIGINT")


def _null_text(rewrite: _Rewrite, facts: PgFacts, args: list[exp.Expr]) -> exp.Expr:
    return exp.cast(exp.Null(), "VARCHAR")


Handler = Callable[[_Rewrite, PgFacts, list[exp.Expr]], exp.Expr]
_FUNCTIONS: dict[str, Handler] = {
    "version": lambda r, f, a: exp.Literal.string(f.version),
    "current_database": lambda r, f, a: exp.Literal.string(f.database),
    "current_catalog": lambda r, f, a: exp.Literal.string(f.database),
    "current_schema": lambda r, f, a: _string(f.search_path[0] if f.search_path else None),
    "current_schemas": lambda r, f, a: _current_schemas(f, _arg(a, 0)),
    "current_user": lambda r, f, a: exp.Literal.string(f.user),
    "session_user": lambda r, f, a: exp.Literal.string(f.user),
    "user": lambda r, f, a: exp.Literal.string(f.user),
    "current_role": lambda r, f, a: exp.Literal.string(f.user),
    "current_setting": _current_setting,
    # Answers the value it was given, as PostgreSQL does; it does not change the session (SET is the
    # frontend's, per connection).
    "set_config": lambda r, f, a: exp.cast(_arg(a, 1), "VARCHAR"),
    "pg_backend_pid": lambda r, f, a: exp.Literal.number(f.backend_pid),
    "pg_is_in_recovery": lambda r, f, a: exp.false(),
    "pg_get_userbyid": lambda r, f, a: _parse(
        f"CASE WHEN {{x}} IN ({OWNER_PLACEHOLDER}, {f.role_oid}) THEN {{u}} ELSE 'unknown (OID=' || "
        "CAST({x} AS TEXT) || ')' END", x=_arg(a, 0), u=exp.Literal.string(f.user)),
    "format_type": lambda r, f, a: _format_type_sql(_arg(a, 0), _arg(a, 1)),
    "pg_get_expr": lambda r, f, a: exp.cast(_arg(a, 0), "VARCHAR"),
    "obj_description": lambda r, f, a: _description(r, a, column=False),
    "col_description": lambda r, f, a: _description(r, a, column=True),
    "shobj_description": _null_text,
    "pg_table_is_visible": lambda r, f, a: r.catalog(
        "{x} IN (SELECT __gw_c.oid FROM pg_catalog.pg_class __gw_c WHERE __gw_c.relnamespace IN "
        f"({', '.join(map(str, r.resolver.path_namespaces()))}))", x=_arg(a, 0)),
    "pg_type_is_visible": lambda r, f, a: _parse(
        f"{{x}} IN ({', '.join(str(t.oid) for t in BUILTIN_TYPES)})", x=_arg(a, 0)),
    "pg_function_is_visible": lambda r, f, a: exp.true(),
    "pg_encoding_to_char": lambda r, f, a: _parse(
        f"CASE {{x}} WHEN {UTF8_ENCODING} THEN 'UTF8' WHEN 0 THEN 'SQL_ASCII' ELSE '' END", x=_arg(a, 0)),
    "has_table_privilege": _has_table_privilege,
    "has_schema_privilege": _has_schema_privilege,
    "has_database_privilege": lambda r, f, a: _privilege(a[-1], "CONNECT") if a else exp.false(),
    "pg_get_indexdef": _null_text,
    "pg_get_partkeydef": _null_text,
    "pg_get_statisticsobjdef_columns": _null_text,
    "pg_get_ruledef": _null_text,
    "pg_relation_is_publishable": lambda r, f, a: exp.false(),
    "to_regtype": lambda r, f, a: _to_regtype(_arg(a, 0)),
    "pg_get_constraintdef": _null_text,
    "pg_get_viewdef": _null_text,
    "pg_get_triggerdef": _null_text,
    "array_lower": _array_bound(upper=False),
    "array_upper": _array_bound(upper=True),
    "quote_ident": _quote_ident,
    "to_regclass": lambda r, f, a: r.regclass(_arg(a, 0), missing_ok=True),
    # information_schema._pg_expandarray(int2vector): only pg_index's keys are expanded, and pg_index is empty.
    "_pg_expandarray": lambda r, f, a: exp.Struct(expressions=[
        exp.PropertyEQ(this=exp.to_identifier("x"), expression=_parse("{a}[1]", a=_arg(a, 0))),
        exp.PropertyEQ(this=exp.to_identifier("n"), expression=exp.Literal.number(1))]),
}

_SESSION_CLASSES: dict[type[exp.Expr], str] = {
    exp.CurrentVersion: "version", exp.CurrentDatabase: "current_database", exp.CurrentCatalog: "current_catalog",
    exp.CurrentSchema: "current_schema", exp.CurrentUser: "current_user", exp.SessionUser: "session_user",
}
_OPERATORS = frozenset({"~", "!~", "~*", "!~*", "~~", "!~~", "~~*", "!~~*", "=", "<>", "!=", "<", ">", "<=", ">=",
                        "||", "+", "-", "*", "/"})
_BARE_FUNCTIONS = frozenset({"current_user", "session_user", "user", "current_role", "current_catalog",
                             "current_schema"})


def _object_names(tree: exp.Expr, rewrite: _Rewrite) -> None:
    """`x::regtype::text` and `x::regclass::text` are the object's name (regtype prints format_type)."""
    for cast in list(tree.find_all(exp.Cast)):
        inner = cast.this
        if not (isinstance(inner, exp.Cast) and cast.to.is_type("text", "varchar", "name")):
            continue
        target = _cast_type(inner.to)
        if target == "regtype" and _literal_text(inner.this) is None:
            cast.replace(_format_type_sql(inner.this, exp.Null()))
        elif target == "regclass" and _literal_text(inner.this) is None:
            cast.replace(rewrite.catalog(_RELATION_NAME, x=inner.this))


def _series_tables(tree: exp.Expr) -> None:
    """`FROM generate_series(a, b) AS s(r)` (pgJDBC's TypeInfoCache) as a subquery over the scalar function,
    since table functions are refused everywhere."""
    for table in list(tree.find_all(exp.Table)):
        series = table.this
        if not isinstance(series, exp.ExplodingGenerateSeries):
            continue
        alias = table.args.get("alias")
        # PostgreSQL names the single column of `FROM generate_series(...) s` after its alias, s
        column = alias.columns[0] if alias is not None and alias.columns else exp.to_identifier(
            alias.name if alias is not None else "generate_series")
        values = exp.GenerateSeries(start=series.args["start"], end=series.args["end"],
                                    step=series.args.get("step"))
        select = exp.select(exp.alias_(exp.Unnest(expressions=[values]), column.copy()))
        table.replace(exp.Subquery(this=select, alias=alias or exp.TableAlias(this=exp.to_identifier("s"))))


def _unqualify_columns(tree: exp.Expr) -> None:
    """`pg_catalog.pg_class.relname` (SQLAlchemy) is `pg_class.relname`: the reference's alias is its name."""
    for column in tree.find_all(exp.Column):
        if column.args.get("db") is not None and column.text("db").lower() in (PG_CATALOG, INFORMATION_SCHEMA):
            column.set("db", None)
            column.set("catalog", None)


def _unqualify_functions(tree: exp.Expr) -> None:
    """pg_catalog.f(...) is f(...), and pg_catalog.text is text: the only functions and types with those
    qualifiers are PostgreSQL's own."""
    for data_type in list(tree.find_all(exp.DataType)):
        kind = data_type.args.get("kind")
        if data_type.this == exp.DType.USERDEFINED and isinstance(kind, exp.Dot) and \
                kind.this.name.lower() == PG_CATALOG:
            name = kind.expression.name.lower()
            try:
                data_type.replace(exp.DataType.build("varchar" if name == "char" else name, dialect=PG_DIALECT))
            except (sqlglot.errors.ParseError, ValueError):
                continue  # left as written: the cast rewrite knows the reg* types, the engine refuses the rest
    for dot in list(tree.find_all(exp.Dot)):
        if isinstance(dot.this, exp.Identifier) and dot.this.name.lower() in (PG_CATALOG, INFORMATION_SCHEMA) \
                and isinstance(dot.expression, exp.Func):
            dot.replace(dot.expression)


def _call(node: exp.Expr) -> tuple[str, list[exp.Expr]] | None:
    """(lower-case name, arguments) of a function call node that may be one of ours."""
    if isinstance(node, exp.Anonymous):
        return node.name.lower(), list(node.expressions)
    name = _SESSION_CLASSES.get(type(node))
    if name is not None:
        return name, [a for a in (node.args.get("this"),) if isinstance(a, exp.Expr)]
    if isinstance(node, exp.CurrentSchemas):
        return "current_schemas", [node.this]
    if isinstance(node, exp.Column) and not node.table and not node.this.quoted and node.name.lower() in \
            _BARE_FUNCTIONS:
        return node.name.lower(), []
    return None


def rewrite_functions(tree: exp.Expr, facts: PgFacts, visible: Visibility) -> tuple[bool, bool]:
    """Replace the catalog functions, casts and operators of PostgreSQL-dialect `tree` in place. Returns
    (whether anything was replaced, whether the result reads the catalog tables: obj_description, ...)."""
    rewrite = _Rewrite(facts, _Resolver(facts, visible))
    _unqualify_functions(tree)
    _object_names(tree, rewrite)
    _series_tables(tree)

    def replace(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Collate):
            collated: exp.Expr = node.this
            return collated  # pg_catalog."default", "C": the metadata engine compares bytewise either way
        if isinstance(node, exp.Operator):
            operator = str(node.args.get("operator") or "").lower().removeprefix("pg_catalog.")
            if operator not in _OPERATORS:
                raise NotSupported(f"operator {operator} is not supported")
            return _parse(f"({{l}}) {operator} ({{r}})", l=node.this, r=node.expression)
        if isinstance(node, exp.Cast):
            replaced = rewrite.cast(node)
            return replaced if replaced is not None else node
        call = _call(node)
        if call is not None:
            replaced = rewrite.function(*call)
            if replaced is not None:
                return replaced
        return node

    # Children first (post-order), so an operand is rewritten before the call that uses it.
    for node in list(tree.walk(bfs=False))[::-1]:
        if node is tree or node.parent is None:
            continue
        new = replace(node)
        if new is not node:
            rewrite.changed = True
            node.replace(new)
    return rewrite.changed, rewrite.needs_catalog


# -- tables ----------------------------------------------------------------------------------------------------


def _values(columns: Columns, rows: list[tuple[object, ...]]) -> exp.Expr:
    """A relation of literal rows with PostgreSQL's column names and the engine types of `columns`."""
    def literal(value: object, kind: str) -> exp.Expr:
        if value is None:
            return exp.cast(exp.Null(), kind)
        if isinstance(value, bool):
            return exp.Boolean(this=value)
        if isinstance(value, int):
            return exp.cast(exp.Literal.number(value), kind)
        return exp.cast(exp.Literal.string(str(value)), kind)

    selects = [exp.select(*[exp.alias_(literal(v, k), exp.to_identifier(c, quoted=True))
                            for v, (c, k) in zip(row, columns, strict=True)]) for row in rows]
    query: exp.Query = selects[0]
    for select in selects[1:]:
        query = exp.union(query, select, distinct=False)
    return query


def _session_rows(name: str, facts: PgFacts) -> list[tuple[object, ...]]:
    role = facts.role_oid
    if name == "pg_roles":
        return [(facts.user, False, True, False, False, True, False, -1, "********", None, False, None, role)]
    if name == "pg_user":
        return [(facts.user, role, False, False, False, False, "********", None, None)]
    return [(key, value, None, "gateway", None, None, "user", "string", "session", None, None, None, value, value,
             None, None, False) for key, value in sorted(facts.settings().items())]


def _visible_condition(schema: str, table: str, facts: PgFacts, visible: Visibility) -> exp.Expr:
    catalog, row_schema, row_table = (exp.column(exp.to_identifier(c, quoted=True)) for c in HIDDEN)
    if (schema, table) in DATABASE_WIDE:
        return catalog.isin(*[exp.Literal.string(c) for c in sorted(visible.catalogs)]) if visible.catalogs \
            else exp.false()
    database = facts.database
    schemas = sorted(s for c, s in visible.schemas if c == database)
    tables = sorted((t.schema, t.table) for t in visible.tables if t.catalog == database)
    about_schema = exp.and_(exp.Is(this=row_table, expression=exp.Null()),
                            row_schema.copy().isin(*[exp.Literal.string(s) for s in schemas])) if schemas \
        else exp.false()
    key = exp.Tuple(expressions=[row_schema.copy(), row_table.copy()])
    about_table = key.isin(*[exp.Tuple(expressions=[exp.Literal.string(s), exp.Literal.string(t)])
                             for s, t in tables]) if tables else exp.false()
    return exp.or_(exp.Is(this=catalog.copy(), expression=exp.Null()),
                   exp.and_(catalog.copy().eq(exp.Literal.string(database)),
                            exp.paren(exp.or_(about_schema, about_table))))


def relation(schema: str, table: str, facts: PgFacts, visible: Visibility) -> exp.Expr:
    """The catalog table as the caller sees it (a query over the metadata engine's local table)."""
    columns = ALL_TABLES[(schema, table)]
    if (schema, table) in SESSION_TABLES:
        return _values(columns, _session_rows(table, facts))
    projections: list[tuple[str, exp.Expr]] = []
    for name, _kind in columns:
        value: exp.Expr = exp.column(exp.to_identifier(name, quoted=True))
        if name in OWNER_COLUMNS:
            value = exp.Literal.number(facts.role_oid)
        elif name in OWNER_NAME_COLUMNS:
            value = exp.Literal.string(facts.user)
        projections.append((name, value))
    raw = [name for name, _ in columns] + list(HIDDEN)
    return fenced(exp.to_table(local_table(schema, table)), raw, projections,
                  _visible_condition(schema, table, facts, visible))


def _output_names(tree: exp.Query) -> None:
    """Unnamed result columns get PostgreSQL's names: the function's or type's name, else ?column?."""
    select = tree
    while isinstance(select, exp.SetOperation):
        select = select.this
    if not isinstance(select, exp.Select):
        return
    named: list[exp.Expr] = []
    for projection in select.expressions:
        if isinstance(projection, exp.Alias | exp.Column | exp.Star | exp.Dot):
            named.append(projection)
            continue
        call = _call(projection)
        if call is not None:
            name = call[0]
        elif isinstance(projection, exp.Cast):
            name = _cast_type(projection.to) or projection.to.sql(PG_DIALECT).lower()
        elif isinstance(projection, exp.Func):
            name = projection.sql_name().lower()
        else:
            name = "?column?"
        named.append(exp.alias_(projection, exp.to_identifier(name, quoted=True)))
    select.set("expressions", named)


@dataclass(frozen=True)
class CatalogQuery:
    sql: str  # for the metadata engine (DuckDB)
    tables: tuple[TableName, ...]


def plan_catalog_query(tree: exp.Query, facts: PgFacts, visible: Visibility,
                       check: Callable[[exp.Expr], None]) -> CatalogQuery | None:
    """The metadata-engine SQL answering PostgreSQL-dialect `tree`, or None when it reads data tables only
    (then its session functions are already replaced and it is planned as any query). `check` is the
    function allowlist, run after the catalog functions are replaced."""
    database = facts.database
    for identifier in tree.find_all(exp.Identifier):
        if is_reserved(identifier.name):  # the generated SQL's own names (hidden columns, aliases)
            raise UserError(f"names starting with {RESERVED_PREFIX!r} are reserved by the gateway",
                            error_name="SYNTAX_ERROR")
    ctes = _cte_names(tree)
    tables = _plain_tables(tree)
    ours = [(t, catalog_table(t, database, ctes)) for t in tables]
    reads = [(t, name) for t, name in ours if name is not None]
    _unqualify_functions(tree)
    _unqualify_columns(tree)
    _output_names(tree)
    changed, needs_catalog = rewrite_functions(tree, facts, visible)
    others = [t for t, name in ours if name is None and t.name.lower() not in ctes]
    if not reads and not needs_catalog and (others or not changed):
        return None  # a data query (or one without tables or catalog functions): planned as any other
    if others:
        raise NotSupported("a query can read the PostgreSQL catalog (pg_catalog, information_schema) or data "
                           "tables, not both")
    check(tree)
    read: list[TableName] = []

    def rename(node: exp.Expr) -> exp.Expr:
        if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
            return node
        name = catalog_table(node, database, ctes)
        if name is None:
            return node
        read.append(TableName(database, *name))
        alias = node.alias or name[1]
        return exp.Subquery(this=relation(*name, facts, visible), alias=exp.TableAlias(this=exp.to_identifier(alias)))

    result = tree.transform(rename, copy=False)
    return CatalogQuery(sql=result.sql(dialect="duckdb", comments=False), tables=tuple(dict.fromkeys(read)))


def pg_facts(session: Session, *, default_catalog: str, version: str) -> PgFacts:
    """The catalog facts of a PostgreSQL session: its database is the session catalog, its search_path the
    session schema (`public` without one)."""
    pid = session.properties.get(BACKEND_PID_PROPERTY, "0")
    return PgFacts(user=session.user, database=session.catalog or default_catalog,
                   search_path=(session.schema or "public",), gateway_version=version,
                   time_zone=session.time_zone or "UTC", application_name=session.source or "",
                   backend_pid=int(pid) if pid.isdigit() else 0, properties=session.properties)


_SHOW = re.compile(r"^\s*SHOW\s+(?:(ALL)|([A-Za-z_][A-Za-z0-9_.]*)|\"([^\"]+)\")\s*;?\s*$", re.IGNORECASE)


def show_as_query(text: str) -> str | None:
    """PostgreSQL's `SHOW name` / `SHOW ALL` (psqlODBC asks `SHOW transaction_isolation` at connect) as the
    query over the session's settings it stands for; None for any other statement."""
    if re.match(r"^\s*SHOW\s+TRANSACTION\s+ISOLATION\s+LEVEL\s*;?\s*$", text, re.IGNORECASE):
        text = "SHOW transaction_isolation"  # the SQL-standard spelling (SQLAlchemy asks it at connect)
    match = _SHOW.match(text)
    if match is None:
        return None
    if match.group(1):
        return "SELECT name, setting, short_desc AS description FROM pg_catalog.pg_settings ORDER BY name"
    name = (match.group(2) or match.group(3)).lower()
    quoted = name.replace("'", "''").replace('"', '""')
    return f"SELECT current_setting('{quoted}') AS \"{quoted}\""
