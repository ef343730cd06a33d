"""Binding EXECUTE ... USING values to the ? placeholders of a prepared query, as tree nodes (never text)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from gateway.errors import UserError


def bind_parameters(tree: exp.Query, values: Sequence[exp.Expr]) -> exp.Query:
    """A copy of `tree` with each `?` replaced, in order, by the matching constant expression."""
    bound = tree.copy()
    placeholders = [p for p in bound.find_all(exp.Placeholder, bfs=False) if p.name in ("", "?")]
    named = [p for p in bound.find_all(exp.Placeholder, bfs=False) if p.name not in ("", "?")]
    if named:
        raise UserError(f"named parameters are not supported: :{named[0].name}", error_name="SYNTAX_ERROR")
    if len(placeholders) != len(values):
        raise UserError(
            f"Incorrect number of parameters: expected {len(placeholders)} but found {len(values)}",
            error_name="GENERIC_USER_ERROR",
        )
    for placeholder, value in zip(placeholders, values, strict=True):
        placeholder.replace(value.copy())
    return bound
