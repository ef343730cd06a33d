"""What a PostgreSQL client's statement text is, before it reaches the pipeline: a list of statements (a
simple Query may hold several), the connection-level commands the frontend answers itself (transaction
control, SET/SHOW/RESET of session parameters, cursors), and `$n` parameters bound as literal trees.

These commands touch only the connection's own state; they read no data, so no access decision is involved.
Everything else is one pipeline statement, parsed there in the postgres dialect.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import TokenType

from gateway.errors import SqlSyntaxError
from gateway.sql.parse import parse_one_statement

# The same transaction commands the Trino side classifies (re-exported: pgwire dispatches on them here).
from gateway.sql.statements import EndTransaction as EndTransaction
from gateway.sql.statements import StartTransaction as StartTransaction

DIALECT = "postgres"


def statement_spans(sql: str) -> list[tuple[int, str]]:
    """The statements of a simple Query, split at top-level semicolons (quotes, comments and dollar quoting
    respected), empty ones dropped, each with where it starts in `sql` (0-based, for error positions). Text
    that does not tokenize is one statement, for the parser to report."""
    try:
        tokens = sqlglot.Dialect.get_or_raise(DIALECT).tokenize(sql)
    except SqlglotError:
        return [(0, sql)] if sql.strip() else []
    parts, start = [], 0
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            parts.append((start, sql[start:token.start]))
            start = token.end + 1
    parts.append((start, sql[start:]))
    return [(offset, p) for offset, p in parts if _strip_comments(p)]


_LEADING = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.S)


def _strip_comments(text: str) -> str:
    return text[_LEADING.match(text).end():].strip()  # type: ignore[union-attr]


@dataclass(frozen=True)
class SetParameter:
    name: str
    value: str | None  # None: RESET / SET ... TO DEFAULT


@dataclass(frozen=True)
class ShowParameter:
    name: str  # lower case; "all" for SHOW ALL


@dataclass(frozen=True)
class Declare:
    name: str
    query: str


@dataclass(frozen=True)
class Fetch:
    name: str
    count: int | None  # None: ALL


@dataclass(frozen=True)
class CloseCursor:
    name: str | None  # None: CLOSE ALL


@dataclass(frozen=True)
class Discard:
    pass


@dataclass(frozen=True)
class Deallocate:
    name: str | None  # None: ALL


Command = (StartTransaction | EndTransaction | SetParameter | ShowParameter | Declare | Fetch | CloseCursor | Discard
           | Deallocate)

_NAME = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_BEGIN = re.compile(r"(?:BEGIN|START\s+TRANSACTION)(?:\s+(?:WORK|TRANSACTION))?(?P<modes>(?:\s|,|[A-Za-z])*)\Z",
                    re.I)
_END = re.compile(r"(?P<word>COMMIT|END|ROLLBACK|ABORT)(?:\s+(?:WORK|TRANSACTION))?(?:\s+AND\s+NO\s+CHAIN)?\Z",
                  re.I)
_SET = re.compile(rf"SET\s+(?:SESSION\s+|LOCAL\s+)?(?P<name>{_NAME}(?:\.{_NAME})?)\s*(?:=|\s+TO\s+)\s*"
                  r"(?P<value>.+?)\Z", re.I | re.S)
_SET_TIME_ZONE = re.compile(r"SET\s+(?:SESSION\s+|LOCAL\s+)?TIME\s+ZONE\s+(?P<value>.+?)\Z", re.I | re.S)
_SET_TRANSACTION = re.compile(r"SET\s+(?:SESSION\s+CHARACTERISTICS\s+AS\s+)?TRANSACTION\b.*\Z", re.I | re.S)
_RESET = re.compile(rf"RESET\s+(?P<name>ALL|{_NAME}(?:\.{_NAME})?)\Z", re.I)
_SHOW = re.compile(r"SHOW\s+(?P<name>[A-Za-z_][A-Za-z0-9_. ]*?)\s*\Z", re.I)
_DECLARE = re.compile(rf"DECLARE\s+(?P<name>{_NAME})\s+(?:(?:BINARY|ASENSITIVE|INSENSITIVE|NO\s+SCROLL|SCROLL)\s+)*"
                      r"CURSOR\s+(?:WITH(?:OUT)?\s+HOLD\s+)?FOR\s+(?P<query>.+)\Z", re.I | re.S)
_FETCH = re.compile(rf"(?:FETCH|MOVE)\s+(?:(?:NEXT|FORWARD)\s+)?(?P<count>ALL|\d+)?\s*(?:(?:FROM|IN)\s+)?"
                    rf"(?P<name>{_NAME})\Z", re.I)
_FETCH_FORWARD = re.compile(rf"FETCH\s+FORWARD\s+(?P<count>ALL|\d+)\s+(?:(?:FROM|IN)\s+)?(?P<name>{_NAME})\Z", re.I)
_CLOSE = re.compile(rf"CLOSE\s+(?P<name>ALL|{_NAME})\Z", re.I)
_DISCARD = re.compile(r"DISCARD\s+(?:ALL|PLANS|SEQUENCES|TEMP|TEMPORARY)\Z", re.I)
_DEALLOCATE = re.compile(rf"DEALLOCATE\s+(?:PREPARE\s+)?(?P<name>ALL|{_NAME})\Z", re.I)


def identifier(text: str) -> str:
    if text.startswith('"'):
        return text[1:-1].replace('""', '"')
    return text.lower()


def _value(text: str) -> str:
    """A SET value as PostgreSQL keeps it: quotes removed, list items joined by ', '."""
    items = []
    for match in re.finditer(r"'((?:[^']|'')*)'|([^,\s][^,]*)", text.strip()):
        items.append(match.group(1).replace("''", "'") if match.group(1) is not None else match.group(2).strip())
    return ", ".join(items)


def command_of(text: str) -> Command | None:
    """The connection command `text` is, or None when it is a statement for the pipeline."""
    sql = _strip_comments(text).rstrip(";").strip()
    if (match := _BEGIN.match(sql)) is not None:
        modes = match.group("modes").upper()
        return StartTransaction(read_only="READ WRITE" not in " ".join(modes.split()))
    if (match := _END.match(sql)) is not None:
        return EndTransaction(commit=match.group("word").upper() in ("COMMIT", "END"))
    if _SET_TRANSACTION.match(sql) is not None:
        return SetParameter("transaction", None)
    if (match := _SET_TIME_ZONE.match(sql)) is not None:
        return SetParameter("timezone", _value(match.group("value")))
    if (match := _SET.match(sql)) is not None:
        value = _value(match.group("value"))
        return SetParameter(_parameter_name(match.group("name")), None if value.upper() == "DEFAULT" else value)
    if (match := _RESET.match(sql)) is not None:
        name = match.group("name")
        return SetParameter("all" if name.upper() == "ALL" else _parameter_name(name), None)
    if (match := _SHOW.match(sql)) is not None:
        return ShowParameter(" ".join(match.group("name").lower().split()))
    if (match := _DECLARE.match(sql)) is not None:
        return Declare(identifier(match.group("name")), match.group("query"))
    if (match := _FETCH_FORWARD.match(sql) or _FETCH.match(sql)) is not None:
        count = match.group("count")
        return Fetch(identifier(match.group("name")),
                     None if count is not None and count.upper() == "ALL" else int(count or 1))
    if (match := _CLOSE.match(sql)) is not None:
        name = match.group("name")
        return CloseCursor(None if name.upper() == "ALL" else identifier(name))
    if _DISCARD.match(sql) is not None:
        return Discard()
    if (match := _DEALLOCATE.match(sql)) is not None:
        name = match.group("name")
        return Deallocate(None if name.upper() == "ALL" else identifier(name))
    return None


def _parameter_name(text: str) -> str:
    return ".".join(identifier(part) for part in re.findall(_NAME, text))


def parameter_numbers(sql: str) -> list[tuple[int, str | None]]:
    """(n, cast type name or None) of each `$n` in `sql`, by n; an unparsable text has none (the pipeline
    reports its syntax error)."""
    try:
        tree = sqlglot.parse_one(sql, read=DIALECT)
    except SqlglotError:
        return []
    found: dict[int, str | None] = {}
    for node in tree.find_all(exp.Parameter):
        number = _number(node)
        if number is None:
            continue
        cast = node.parent.to.sql(DIALECT) if isinstance(node.parent, exp.Cast) else None
        if found.get(number) is None:
            found[number] = cast
    return sorted(found.items())


def _number(node: exp.Parameter) -> int | None:
    inner = node.this
    if isinstance(inner, exp.Literal) and not inner.is_string and str(inner.this).isdigit():
        return int(inner.this)
    return None


def bind(sql: str, values: Sequence[exp.Expr]) -> str:
    """`sql` with each `$n` replaced by the n-th value, as postgres-dialect text for the pipeline. Binding
    happens on the tree, so a value can never become SQL syntax."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except SqlglotError:
        if values:
            parse_one_statement(sql, dialect=DIALECT)  # raises the syntax error, located in `sql`
            raise SqlSyntaxError("syntax error in a statement with parameters") from None
        return sql
    if not values:
        return sql
    if len(statements) != 1:
        raise SqlSyntaxError("cannot insert multiple commands into a prepared statement")
    tree = statements[0]
    for node in list(tree.find_all(exp.Parameter)):
        number = _number(node)
        if number is None or not 1 <= number <= len(values):
            raise SqlSyntaxError(f"there is no parameter ${node.this.sql()}" if number is not None else
                                 "named parameters are not supported")
        node.replace(values[number - 1].copy())
    return tree.sql(dialect=DIALECT)
