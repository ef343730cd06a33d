"""Errors in Trino's words, generated: syntax errors of malformed statements, and DuckDB's own errors for
unknown names, bad casts, overflows and divisions by zero, raised by the real engine and translated. No
message may name a Python class, a parser token, the engine or its internal types."""

from __future__ import annotations

import re

import duckdb
import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.backends.duckdb import translate_error
from gateway.errors import GatewayError, SqlSyntaxError
from gateway.sql import statements
from gateway.sql.trino_semantics import trino_arithmetic

LEAKS = re.compile(r"<class|sqlglot|Token|SENTINEL|Binder|Catalog Error|Conversion Error|Parser Error|"
                   r"Out of Range|Invalid Input|Candidate|DuckDB|duckdb|INT32|INT64|INT16|INT8\b|TRY\(|"
                   r"error_on_division_by_zero|Error:")
SYNTAX = re.compile(r"^line \d+:\d+: (mismatched input '.*'(\. Expecting: .+)?|cannot read the statement: .*)$",
                    re.DOTALL)

words = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
KEYWORDS = ("SELECT", "FROM", "WHERE", "GROUP", "BY", "ORDER", "(", ")", ",", "=", "*", "+", "AND", "OR", "JOIN",
            "ON", "AS", "CAST", "'x'", "1", "1.5", ";", "LIMIT", "IN", "NOT", "NULL", "CASE", "WHEN", "END")
fragments = st.lists(st.one_of(st.sampled_from(KEYWORDS), words), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(parts=fragments, newlines=st.lists(st.booleans(), min_size=12, max_size=12))
def test_malformed_statements_get_trino_syntax_errors(parts: list[str], newlines: list[bool]) -> None:
    sql = "".join(part + ("\n" if newline else " ") for part, newline in zip(parts, newlines, strict=False))
    try:
        statements.classify(sql)
    except SqlSyntaxError as error:
        if "only one statement" in error.message or "empty" in error.message or "nested too deeply" in error.message:
            return
        assert SYNTAX.match(error.message), error.message
        assert not LEAKS.search(error.message), error.message
        assert error.line is not None and error.line <= sql.count("\n") + 1
        assert error.column is not None and error.column >= 1
    except GatewayError as error:
        assert not LEAKS.search(error.message), error.message


@settings(max_examples=100, deadline=None)
@given(word=words.filter(lambda w: w.upper() not in sqlglot.tokens.Tokenizer.KEYWORDS))
def test_a_statement_starting_with_an_unknown_word(word: str) -> None:
    with pytest.raises(SqlSyntaxError) as error:
        statements.classify(f"{word} * FROM nation")
    assert error.value.message.startswith(f"line 1:1: mismatched input '{word}'. Expecting: 'ALTER'")


@pytest.fixture(scope="module")
def engine() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.execute("CREATE TABLE nation AS SELECT range AS n_nationkey, 'n' || range AS n_name FROM range(25)")
    return connection


def duckdb_error(connection: duckdb.DuckDBPyConnection, trino_sql: str) -> GatewayError:
    tree = trino_arithmetic(sqlglot.parse_one(trino_sql, read="trino"))
    with pytest.raises(duckdb.Error) as raised:
        connection.execute(tree.sql(dialect="duckdb")).fetchall()
    return translate_error(raised.value)


@settings(max_examples=60, deadline=None)
@given(column=words.filter(lambda w: w not in ("n_nationkey", "n_name")))
def test_unknown_columns(engine: duckdb.DuckDBPyConnection, column: str) -> None:
    error = duckdb_error(engine, f'SELECT "{column}" FROM nation')
    assert (error.error_name, error.message) == ("COLUMN_NOT_FOUND", f"Column '{column}' cannot be resolved")
    error = duckdb_error(engine, f'SELECT x."{column}" FROM nation AS x')
    assert (error.error_name, error.message) == ("COLUMN_NOT_FOUND", f"Column 'x.{column}' cannot be resolved")


INTEGER_TYPES = {"tinyint": 2**7, "smallint": 2**15, "integer": 2**31, "bigint": 2**63}


@settings(max_examples=80, deadline=None)
@given(kind=st.sampled_from(sorted(INTEGER_TYPES)), text=st.text(
    alphabet=st.characters(categories=("L", "P", "S")), min_size=1, max_size=12).filter(lambda t: "'" not in t))
def test_bad_casts(engine: duckdb.DuckDBPyConnection, kind: str, text: str) -> None:
    error = duckdb_error(engine, f"SELECT CAST('{text}' AS {kind})")
    assert error.error_name == "INVALID_CAST_ARGUMENT"
    assert error.message == f"Cannot cast '…' to {kind}"  # the value stays out: it may come from a hidden row


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(sorted(INTEGER_TYPES)), operation=st.sampled_from(["+", "-", "*"]),
       extra=st.integers(1, 100))
def test_integer_overflow(engine: duckdb.DuckDBPyConnection, kind: str, operation: str, extra: int) -> None:
    limit = INTEGER_TYPES[kind]
    left, right = {"+": (limit - 1, extra), "-": (-limit, extra), "*": (limit // 2 + 1, 2 + extra % 3)}[operation]
    error = duckdb_error(engine, f"SELECT CAST({left} AS {kind}) {operation} CAST({right} AS {kind})")
    names = {"+": "addition", "-": "subtraction", "*": "multiplication"}
    assert (error.error_name, error.message) == ("NUMERIC_VALUE_OUT_OF_RANGE", f"{kind} {names[operation]} overflow")


@settings(max_examples=60, deadline=None)
@given(numerator=st.one_of(st.integers(-10**6, 10**6).map(str),
                           st.decimals(-1000, 1000, places=2, allow_nan=False).map(str)),
       divisor=st.sampled_from(["0", "0.0", "CAST(0 AS bigint)", "n_nationkey - n_nationkey"]),
       modulo=st.booleans())
def test_division_by_zero(engine: duckdb.DuckDBPyConnection, numerator: str, divisor: str, modulo: bool) -> None:
    operator = "%" if modulo and "." not in numerator + divisor else "/"
    error = duckdb_error(engine, f"SELECT {numerator} {operator} {divisor} FROM nation")
    assert (error.error_name, error.message) == ("DIVISION_BY_ZERO", "Division by zero")


def test_integer_division_and_double_infinity(engine: duckdb.DuckDBPyConnection) -> None:
    def value(sql: str) -> object:
        return engine.execute(trino_arithmetic(sqlglot.parse_one(sql, read="trino")).sql(dialect="duckdb")
                              ).fetchone()[0]  # type: ignore[index]

    assert value("SELECT 7 / 2") == 3 and value("SELECT -7 / 2") == -3  # truncated, as Trino
    assert value("SELECT 1e0 / 0") == float("inf")  # double: IEEE, as Trino
    assert value("SELECT 7.0 / 2") == 3.5


@settings(max_examples=80, deadline=None)
@given(kind=st.sampled_from(["integer", "bigint"]), whole=st.integers(-10**6, 10**6),
       fraction=st.integers(1, 99), padded=st.booleans())
def test_string_to_integer_casts_follow_trino(engine: duckdb.DuckDBPyConnection, kind: str, whole: int,
                                              fraction: int, padded: bool) -> None:
    """An integer literal casts (spaces around it allowed); a fractional one fails where DuckDB would round."""
    pad = " " if padded else ""
    tree = trino_arithmetic(sqlglot.parse_one(f"SELECT CAST(s AS {kind}) FROM (VALUES ('{pad}{whole}{pad}')) t(s)",
                                              read="trino"))
    assert engine.execute(tree.sql(dialect="duckdb")).fetchone() == (whole,)
    error = duckdb_error(engine, f"SELECT CAST(s AS {kind}) FROM (VALUES ('{whole}.{fraction:02d}')) t(s)")
    assert (error.error_name, error.message) == ("INVALID_CAST_ARGUMENT", f"Cannot cast '…' to {kind}")
