"""Bounds on one statement, checked before the expensive work: the text before sqlglot builds a tree, the
tree before it is resolved, rewritten and sent to the engine.

    check_text   size in bytes, then tokens and parenthesis nesting from sqlglot's tokenizer (linear, and
                 about ten times cheaper than parsing): a huge or deeply nested statement never becomes a tree
    check_tree   AND/OR conditions: DuckDB's filter optimizer is quadratic in them (`x <> n` terms on one
                 column: 500 took 0.8 s and ~140 MB, 1,000 took 1.4 s and ~600 MB, 2,000 took 8.6 s and 2.1 GB,
                 none of it bounded by the engine's memory_limit)

Every statement text passes here, whatever channel it arrived by: the request body, a prepared statement from
`X-Trino-Prepared-Statement` or PREPARE, the text of EXECUTE IMMEDIATE. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlglot import exp
from sqlglot.dialects.trino import Trino
from sqlglot.errors import TokenError
from sqlglot.tokenizer_core import TokenType

from gateway.config_reader import Check, Reader, positive, read_section
from gateway.errors import UserError


@dataclass(frozen=True, kw_only=True)
class LimitSettings:
    """`limits:` — bounds on what one statement may cost the gateway (the statement ones are checked here)."""

    max_statement_bytes: int = 256 * 1024  # any statement text: body, prepared statement, EXECUTE IMMEDIATE
    max_statement_tokens: int = 100_000  # counted before parsing: bounds the syntax tree's size
    max_nesting_depth: int = 100  # parentheses inside each other, counted before parsing
    max_boolean_terms: int = 500  # AND/OR conditions in one statement (DuckDB's optimizer is quadratic in them)
    max_result_bytes: int = 1024**3  # JSON bytes of one query's result; a resource group may set its own
    planning_threads: int = 2  # large statements are planned on these threads, off the event loop
    failed_plan_cache_entries: int = 1024  # statements that failed to plan, answered again without planning

    CHECKS: ClassVar[Mapping[str, Check]] = {
        name: positive for name in ("max_statement_tokens", "max_nesting_depth", "max_boolean_terms",
                                    "planning_threads", "failed_plan_cache_entries")
    }
    SIZES: ClassVar[frozenset[str]] = frozenset({"max_statement_bytes", "max_result_bytes"})


def read_limits(r: Reader, data: Mapping[str, Any]) -> LimitSettings:
    return read_section(r, data, ("limits",), LimitSettings)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatementLimits:
    max_bytes: int = 256 * 1024
    max_tokens: int = 100_000
    max_depth: int = 100
    max_boolean_terms: int = 500

    def check_text(self, sql: str) -> None:
        """Raise QUERY_TEXT_TOO_LARGE / QUERY_REJECTED for a statement over a bound; a statement that does not
        even tokenize is left to the parser, which explains where it fails."""
        self.check_size(sql)
        try:
            tokens = Trino().tokenize(sql)
        except TokenError:
            return
        if len(tokens) > self.max_tokens:
            raise UserError(f"The statement has {len(tokens)} tokens, more than the limit of {self.max_tokens} "
                            f"(limits.max_statement_tokens); simplify it", error_name="QUERY_REJECTED")
        depth = deepest = 0
        for token in tokens:
            if token.token_type == TokenType.L_PAREN:
                depth += 1
                deepest = max(deepest, depth)
            elif token.token_type == TokenType.R_PAREN:
                depth -= 1
        if deepest > self.max_depth:
            raise UserError(f"The statement nests parentheses {deepest} deep, more than the limit of "
                            f"{self.max_depth} (limits.max_nesting_depth); simplify it",
                            error_name="QUERY_REJECTED")

    def check_size(self, sql: str) -> None:
        """The byte bound alone: for a statement whose tokens are those of one checked before (a plan
        template's, with other literals)."""
        size = len(sql.encode("utf-8", "surrogatepass")) if len(sql) * 4 > self.max_bytes else len(sql)
        if size > self.max_bytes:
            raise UserError(f"The statement is {size} bytes, more than the limit of {self.max_bytes} "
                            f"(limits.max_statement_bytes)", error_name="QUERY_TEXT_TOO_LARGE")

    def check_tree(self, tree: exp.Expr) -> None:
        terms = 1 + sum(1 for _ in tree.find_all(exp.Connector))
        if terms > self.max_boolean_terms:
            raise UserError(f"The statement has {terms} AND/OR conditions, more than the limit of "
                            f"{self.max_boolean_terms} (limits.max_boolean_terms); use IN (...) for lists of "
                            f"values", error_name="QUERY_REJECTED")
