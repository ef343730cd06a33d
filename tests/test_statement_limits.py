"""gateway/sql/limits.py: each bound refuses exactly the statements over it, before any parsing it guards."""

from __future__ import annotations

import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import UserError
from gateway.sql.limits import StatementLimits

LIMITS = StatementLimits(max_bytes=4096, max_tokens=300, max_depth=20, max_boolean_terms=30)


def refusal(check: object, argument: object) -> str | None:
    try:
        check(argument)  # type: ignore[operator]
    except UserError as error:
        return error.error_name
    return None


@settings(max_examples=400, deadline=None)
@given(depth=st.integers(min_value=0, max_value=40), pad=st.integers(min_value=0, max_value=5))
def test_nesting_is_counted_before_parsing(depth: int, pad: int) -> None:
    sql = "SELECT " + "(" * depth + "1" + " + 1" * pad + ")" * depth
    assert refusal(LIMITS.check_text, sql) == ("QUERY_REJECTED" if depth > 20 else None)


@settings(max_examples=400, deadline=None)
@given(values=st.integers(min_value=1, max_value=200))
def test_tokens_bound_the_tree_before_it_is_built(values: int) -> None:
    sql = "SELECT 1 FROM t WHERE x IN (" + ",".join("7" for _ in range(values)) + ")"
    tokens = 9 + 2 * values - 1  # SELECT 1 FROM t WHERE x IN ( ... )
    assert refusal(LIMITS.check_text, sql) == ("QUERY_REJECTED" if tokens > 300 else None)


@settings(max_examples=300, deadline=None)
@given(size=st.integers(min_value=0, max_value=8000), wide=st.booleans())
def test_bytes_count_utf8_not_characters(size: int, wide: bool) -> None:
    text = ("é" if wide else "e") * size  # é is two bytes in UTF-8
    sql = f"SELECT '{text}'"
    expected = "QUERY_TEXT_TOO_LARGE" if len(sql.encode()) > 4096 else None
    assert refusal(LIMITS.check_text, sql) == expected


@settings(max_examples=300, deadline=None)
@given(terms=st.lists(st.sampled_from(["x <> 1", "y = 2", "z IN (1, 2)", "NOT w"]), min_size=1, max_size=60),
       connectors=st.lists(st.sampled_from([" AND ", " OR "]), min_size=60, max_size=60))
def test_boolean_terms_are_counted_over_and_and_or(terms: list[str], connectors: list[str]) -> None:
    condition = terms[0] + "".join(c + t for c, t in zip(connectors, terms[1:], strict=False))
    tree = sqlglot.parse_one(f"SELECT 1 FROM t WHERE {condition}", read="trino")
    assert refusal(LIMITS.check_tree, tree) == ("QUERY_REJECTED" if len(terms) > 30 else None)


def test_messages_name_the_key_to_raise() -> None:
    with pytest.raises(UserError) as error:
        LIMITS.check_text("SELECT " + "(" * 30 + "1" + ")" * 30)
    assert "limits.max_nesting_depth" in error.value.message
    with pytest.raises(UserError) as error:
        LIMITS.check_text("SELECT '" + "x" * 5000 + "'")
    assert "limits.max_statement_bytes" in error.value.message
    assert refusal(LIMITS.check_text, "SELECT 'unterminated") is None  # left to the parser, which says where
