"""Binding EXECUTE ... USING values to the ? placeholders of a prepared query, as tree nodes (never text).

Values go to the placeholders in the order the placeholders appear in the statement's text. A parsed tree
does not keep that order (sqlglot keeps LIMIT before WHERE among a SELECT's parts), so `number_placeholders`
names each `?` by its position in the text before the statement is parsed, and binding goes by those names.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import TokenType

from gateway.errors import UserError

_NAME = "__gw_param_"


def number_placeholders(sql: str) -> str:
    """`sql` with its n-th `?` written `:__gw_param_n`; text that does not tokenize is returned as it is,
    for the parser to report."""
    try:
        tokens = sqlglot.Dialect.get_or_raise("trino").tokenize(sql)
    except SqlglotError:
        return sql
    parts: list[str] = []
    end = 0
    index = 0
    for token in tokens:
        if token.token_type == TokenType.PLACEHOLDER and token.text == "?":
            parts.append(sql[end:token.start])
            parts.append(f" :{_NAME}{index} ")
            end = token.end + 1
            index += 1
    parts.append(sql[end:])
    return "".join(parts)


def bind_parameters(tree: exp.Query, values: Sequence[exp.Expr]) -> exp.Query:
    """A copy of `tree` (parsed from `number_placeholders` text) with each placeholder replaced by the
    constant expression at its position in `values`."""
    bound = tree.copy()
    placeholders = list(bound.find_all(exp.Placeholder))
    positions: dict[int, exp.Placeholder] = {}
    for placeholder in placeholders:
        name = placeholder.name
        if not name.startswith(_NAME) or not name[len(_NAME):].isdigit() or int(name[len(_NAME):]) in positions:
            shown = f":{name}" if name not in ("", "?") else "?"
            raise UserError(f"named parameters are not supported: {shown}", error_name="SYNTAX_ERROR")
        positions[int(name[len(_NAME):])] = placeholder
    if sorted(positions) != list(range(len(positions))):
        raise UserError("named parameters are not supported", error_name="SYNTAX_ERROR")
    if len(positions) != len(values):
        raise UserError(
            f"Incorrect number of parameters: expected {len(positions)} but found {len(values)}",
            error_name="GENERIC_USER_ERROR",
        )
    for index, value in enumerate(values):
        positions[index].replace(value.copy())
    return bound
